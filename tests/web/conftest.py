"""Fixtures of the web page tests: real devnets (processes) and a real headless Chromium.

The browser is Debian's ``chromium`` driven by Playwright's Python API through
``executable_path`` (no ``playwright install`` download). Under CI (``CI`` set) a missing
browser or Playwright is a failure, never a skip: ``.ci/run`` must install them.
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey, SealedBox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from contracts.clearance.privacy import buyer_payload, buyer_ref
from contracts.clearance.rules import BUYER, COURIER, CUSTOMS, SELLER
from contracts.clearance.scenario import DemoBuyer, demo_steps
from node.client import Client

from netutil import ROOT, Network, free_base_port, make_network

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--lang=en-US",
]
INSTALL_HINT = ("install the browser tooling: `apt-get install -y chromium` (Debian's "
                "chromium package, /usr/bin/chromium) and `.venv/bin/pip install playwright` "
                "(no `playwright install` needed: the tests use executable_path)")
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
ROLE_ORG = {SELLER: "seller", COURIER: "courier", CUSTOMS: "customs", BUYER: "buyer"}
PREFIX = "WEB"
BUYER_SALT = b"web-test-buyer-platform-salt"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def require_browser() -> str:
    """The chromium path; fail under CI, skip locally, when the tooling is missing."""
    problems = []
    chromium = find_chromium()
    if chromium is None:
        problems.append("no `chromium` on PATH")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the Python package `playwright` is not importable")
    if problems:
        message = f"browser tests cannot run: {'; '.join(problems)}; {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    assert chromium is not None
    return chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium, headless=True,
                                      args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``shot(page, name)`` saves a PNG under pytest's tmp dir and copies it to docs/."""
    directory = tmp_path_factory.mktemp("screenshots")

    def shot(page: Any, name: str) -> Path:
        path = directory / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if os.environ.get("JANGBU_UPDATE_SCREENSHOTS"):  # refresh docs/screenshots on demand
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
        return path

    shot.directory = directory  # type: ignore[attr-defined]
    yield shot


from web_support import run_async  # noqa: E402  (shared with the test modules)

# --- the customs devnet with the clearance demo --------------------------------------------


def make_buyers(n: int = 3) -> list[DemoBuyer]:
    """What a buyer platform computes: salted refs and blobs sealed to customs' box key."""
    customs_box = PrivateKey.generate()
    buyers = []
    for i in range(n):
        pccc = f"P{700000000000 + i}"
        sealed = SealedBox(customs_box.public_key).encrypt(
            buyer_payload(pccc, f"Buyer {i}", f"Seoul Jung-gu {i}"))
        buyers.append(DemoBuyer(buyer_ref(BUYER_SALT, pccc), base64.b64encode(sealed).decode()))
    return buyers


async def run_clearance_demo(net: Network, buyers: list[DemoBuyer]) -> None:
    keys = {org: net.member_key(org) for org in net.orgs}
    async with Client(net.api("customs")) as client:
        for role, action, args in demo_steps(buyers, prefix=PREFIX):
            receipt = await client.call("clearance", action, args, key=keys[ROLE_ORG[role]])
            assert receipt["code"] == "OK", (role, action, receipt)


@pytest.fixture(scope="session")
def customs_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    net = make_network(tmp_path_factory.mktemp("customs-net"), "customs")
    buyers = make_buyers()
    try:
        net.start_all()
        run_async(run_clearance_demo(net, buyers))
        yield {"net": net, "buyers": buyers, "prefix": PREFIX}
    finally:
        net.stop_all()


# --- the livestock devnet with the livestock demo ------------------------------------------


def livestock_steps(pub: Any, sign: Any, now_ms: int) -> list[Any]:
    """The livestock demo's steps that make sense in wall-clock time.

    The demo's own clock advances by hours and days between steps (the withdrawal period);
    a real network's block time is the wall clock. So the demo is dated to *end* now (its
    start moved back by the time it advances: dates of birth, slaughter and lot numbers are
    then never in the future), and the treatment and the slaughter refused during its
    withdrawal period are left out (the contract tests cover them).
    """
    from contracts.livestock.scenario import demo_steps as livestock_demo

    advanced = sum(s.advance_ms for s in livestock_demo(pub, sign, 0) if s.kind == "apply")
    return [step for step in livestock_demo(pub, sign, now_ms - advanced - 60_000)
            if step.action != "treat" and step.expect != "E_WITHDRAWAL"]


def init_livestock_network(directory: Path) -> Network:
    """A 5-node network of the demo's organisations (ids and business ids as in the demo)."""
    from cli import network as cli_network
    from contracts.livestock.scenario import DEMO_ORGS

    names = {"farm-a": "Hanwoo farm A", "farm-b": "Hanwoo farm B", "plant": "Slaughterhouse",
             "meatco": "Meat packer and shop", "mafra": "Agriculture ministry"}
    orgs = [(o["id"], names.get(o["id"], o["id"]), list(o["roles"])) for o in DEMO_ORGS]
    base = free_base_port(2 * len(orgs))
    saved = dict(cli_network.BUSINESS_IDS)
    cli_network.BUSINESS_IDS.update({o["id"]: list(o["business_ids"]) for o in DEMO_ORGS})
    try:
        cli_network.init_network(directory, orgs, ["membership", "livestock"],
                                 chain_id="e2e-web-livestock", base_port=base)
    finally:
        cli_network.BUSINESS_IDS.clear()
        cli_network.BUSINESS_IDS.update(saved)
    return Network(directory, [o[0] for o in orgs], base)


class LivestockDemo:
    """Runs the livestock demo in two parts: up to the recall, then the recall onwards."""

    def __init__(self, net: Network) -> None:
        from nacl.signing import SigningKey

        from contracts.livestock.scenario import DEMO_DEVICES

        self.net = net
        self.keys: dict[str, Any] = {org: net.member_key(org) for org in net.orgs}
        for device in DEMO_DEVICES:
            self.keys[device] = SigningKey.generate()
        self.chain_id = net.status("mafra")["chain_id"]
        steps = livestock_steps(self.pub, self.sign, int(time.time() * 1000))
        cut = next(i for i, s in enumerate(steps) if s.action == "recall")
        self.before, self.after = steps[:cut], steps[cut:]
        self.answers: dict[str, Any] = {}
        self.recalled = False

    def pub(self, name: str) -> str:
        return str(self.keys[name].verify_key.encode().hex())

    def sign(self, device: str, body: Any) -> str:
        from consensus import canonical

        return canonical.sign(self.keys[device], "jangbu/device/v1", self.chain_id, body).hex()

    async def run(self, steps: list[Any]) -> None:
        async with Client(self.net.api("mafra"), chain_id=self.chain_id) as client:
            for step in steps:
                if step.kind == "query":
                    self.answers[step.action] = await client.query(step.contract, step.action,
                                                                   dict(step.args))
                    continue
                receipt = await client.call(step.contract, step.action, dict(step.args),
                                            key=self.keys[step.signer])
                assert receipt["code"] == step.expect, (step, receipt)

    def recall(self) -> None:
        if not self.recalled:
            run_async(self.run(self.after))
            self.recalled = True

    @property
    def bundle(self) -> str:
        """The bundle number of the package the consumer scans (a lot of two animals)."""
        return str(self.answers["trace"]["number"])


@pytest.fixture(scope="session")
def livestock_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivestockDemo]:
    pytest.importorskip("contracts.livestock.scenario",
                        reason="contracts/livestock/scenario.py is not there yet")
    net = init_livestock_network(tmp_path_factory.mktemp("livestock-net"))
    try:
        net.start_all()
        demo = LivestockDemo(net)
        run_async(demo.run(demo.before))
        yield demo
    finally:
        net.stop_all()
