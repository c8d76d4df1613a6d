"""``jangbu demo clearance|livestock``: the workflows' Definition-of-done, on a running network.

Both demos replay the steps their contract tests run (``contracts/*/scenario.py``) against a
network made by ``jangbu network init`` / ``jangbu devnet up``: each step is signed with the
key of the organisation (or device) that acts, submitted to that organisation's own node,
and printed as it commits, with the events that matter to someone (pre-alerts, violations,
alerts, recall notices). A background task follows the event stream of the node that cares
(the seller's, the regulator's) to show the push. At the end every node must answer the same
history. Exit code 1 with a one-line reason when a receipt code is not the expected one or
the nodes disagree.

Keys come from ``DIR/<org>/member.key`` (the org admin); device keys of the livestock demo
are created once under ``DIR/<org>/devices/<name>.key`` and reused. Each run picks fresh
order ids / animal, carcass and lot numbers, so a demo can run any number of times.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from nacl.public import SealedBox
from nacl.signing import SigningKey, VerifyKey

from cli.errors import CliError
from cli.output import subcommand_help
from consensus import canonical
from contracts.clearance import buyer_payload, buyer_ref
from contracts.clearance import scenario as clearance_scenario
from contracts.livestock import identifiers
from contracts.livestock import scenario as livestock_scenario
from node.client import Client, ClientError
from node.genesis import GenesisError, load_genesis
from node.keys import KeyFileError, load_key_file, write_key_file

TAG_DEVICE = "jangbu/device/v1"
PROGRESS_AFTER_S = 1.0
CLEARANCE_EVENTS = ("pre_alert", "buyer_notice", "duty_assessed", "combined_taxation_late")
LIVESTOCK_EVENTS = ("violation", "alert", "recall_notice")
DEMO_BUYERS = (  # fictitious buyers; PCCC format P + 12 digits
    ("P100000000001", "Hong Gildong", "Seoul Jongno-gu Sejong-daero 1"),
    ("P100000000002", "Kim Cheolsu", "Busan Haeundae-gu Haeundae-ro 2"),
    ("P100000000003", "Lee Younghee", "Incheon Yeonsu-gu Songdo 3"),
)


# --- the network --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoNetwork:
    """What a demo needs from a network directory: genesis, node URLs, admin keys."""

    directory: Path
    chain_id: str
    apis: Mapping[str, str]  # org id -> API URL of its (first) validator
    orgs: Mapping[str, Mapping[str, Any]]  # org id -> genesis record

    @classmethod
    def load(cls, directory: Path) -> DemoNetwork:
        path = directory / "genesis.json"
        if not path.exists() and (directory.is_dir() or not directory.exists()):
            raise CliError(f"{path} not found: make a network with 'jangbu network init'")
        try:  # the node's own checks: a genesis of any other shape is one error line
            genesis = load_genesis(path)  # (regression: tracebacks for [], {}, bytes)
        except GenesisError as exc:
            raise CliError(str(exc)) from None
        apis: dict[str, str] = {}
        for validator in genesis.validators:
            apis.setdefault(validator.org, validator.api)
        return cls(directory, genesis.chain_id, apis,
                   {str(org["id"]): org for org in genesis.orgs})

    def org_with_role(self, role: str) -> str:
        for org_id, org in self.orgs.items():
            if role in org.get("roles", []) and org_id in self.apis:
                return org_id
        raise CliError(f"no organisation with role {role!r} runs a node in {self.directory}")

    def require_orgs(self, org_ids: list[str], preset: str) -> None:
        missing = [o for o in org_ids if o not in self.apis]
        if missing:
            raise CliError(f"{self.directory} has no node of {', '.join(missing)}: "
                           f"make it with 'jangbu network init --preset {preset}'")

    def member_key(self, org: str) -> SigningKey:
        try:
            return load_key_file(self.directory / org / "member.key")
        except KeyFileError as exc:
            raise CliError(str(exc)) from None

    def admin_pubkey(self, org: str) -> bytes:
        """The org admin's Ed25519 public key, as written in genesis."""
        for key in self.orgs[org].get("keys", []):
            if "admin" in key.get("roles", []):
                return bytes.fromhex(str(key["pubkey"]))
        raise CliError(f"genesis has no admin key for {org!r}")

    def device_key(self, org: str, name: str) -> SigningKey:
        """The device key ``DIR/<org>/devices/<name>.key``, created on first use."""
        path = self.directory / org / "devices" / f"{name}.key"
        try:
            if path.exists():
                return load_key_file(path)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = SigningKey.generate()
            write_key_file(path, key, "device")
            return key
        except KeyFileError as exc:
            raise CliError(str(exc)) from None


# --- sealing buyer data to customs (docs/contracts-clearance.md, "Sealing to customs") -----------


def seal_to_member(member_pubkey: bytes, plaintext: bytes) -> str:
    """Base64 SealedBox to the X25519 twin of an Ed25519 member key (customs' admin key)."""
    recipient = VerifyKey(member_pubkey).to_curve25519_public_key()
    return base64.b64encode(SealedBox(recipient).encrypt(plaintext)).decode()


def open_as_member(member_key: SigningKey, sealed_b64: str) -> bytes:
    """What customs does: open a sealed blob with its member key's X25519 twin."""
    return SealedBox(member_key.to_curve25519_private_key()).decrypt(base64.b64decode(sealed_b64))


def make_demo_buyers(customs_pubkey: bytes, salt: bytes
                     ) -> list[clearance_scenario.DemoBuyer]:
    return [clearance_scenario.DemoBuyer(buyer_ref(salt, pccc),
                                         seal_to_member(customs_pubkey,
                                                        buyer_payload(pccc, name, address)))
            for pccc, name, address in DEMO_BUYERS]


# --- output -------------------------------------------------------------------------------------


@dataclass
class StepResult:
    n: int
    org: str
    signer: str
    action: str
    object: str
    height: int | None
    code: str
    expect: str
    text: str
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    """Collects what the demo did; prints it as it goes unless ``--json``."""

    demo: str
    as_json: bool
    started: float = field(default_factory=time.monotonic)
    steps: list[StepResult] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    streamed: list[dict[str, Any]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def say(self, line: str = "") -> None:
        if not self.as_json:
            print(line, flush=True)

    def step(self, result: StepResult) -> None:
        self.steps.append(result)
        height = "-" if result.height is None else str(result.height)
        mark = ("" if result.code == "OK" else " (as expected)" if result.code == result.expect
                else f" (expected {result.expect})")
        self.say(f"{result.n:>3}  {result.org:<8} {result.action:<18} {result.object:<16} "
                 f"h={height:<5} {result.code}{mark}  {result.text}")
        for event in result.events:
            self.say(f"       ! {describe_event(event)}")

    def check(self, line: str) -> None:
        self.checks.append(line)
        self.say(f"  ok  {line}")

    def summary(self, ok: bool, reason: str | None) -> dict[str, Any]:
        return {"demo": self.demo, "ok": ok, "reason": reason, **self.info,
                "duration_s": round(time.monotonic() - self.started, 2),
                "steps": [asdict(s) for s in self.steps], "checks": self.checks,
                "streamed_events": self.streamed, "urls": self.urls}


@asynccontextmanager
async def progress(label: str) -> AsyncIterator[None]:
    """Tell the user (on stderr) what we are waiting for, if it takes over a second."""
    tty = sys.stderr.isatty()
    shown = False

    async def show() -> None:
        nonlocal shown
        await asyncio.sleep(PROGRESS_AFTER_S)
        start = time.monotonic() - PROGRESS_AFTER_S
        shown = True
        if not tty:
            print(f"  ... {label}", file=sys.stderr, flush=True)
            return
        while True:
            print(f"\r  ... {label} ({time.monotonic() - start:.0f} s)", end="", file=sys.stderr,
                  flush=True)
            await asyncio.sleep(0.5)

    task = asyncio.create_task(show())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        if shown and tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def describe_event(event: Mapping[str, Any]) -> str:
    """One plain line for an event of interest."""
    kind, a = event["type"], event.get("attrs", {})
    if kind == "pre_alert":
        reasons = ", ".join(f"{r.get('code')}" + (f" ({r['detail']})" if r.get("detail") else "")
                            for r in a.get("reasons", []))
        return f"pre_alert to {a.get('seller')}: {a.get('order_id')} {reasons}"
    if kind == "buyer_notice":
        return f"buyer_notice to {a.get('buyer_platform')}: {a.get('notice')}"
    if kind == "duty_assessed":
        return (f"duty_assessed: duty KRW {a.get('duty_krw'):,} + VAT KRW {a.get('vat_krw'):,}"
                f" = KRW {a.get('total_krw'):,}")
    if kind == "violation":
        subject = a.get("animal") or a.get("carcass") or a.get("number") or a.get("herd")
        return f"violation {a.get('code')} for the regulator: {subject}"
    if kind == "alert":
        return (f"alert {a.get('reason')} for the regulator: {a.get('animal') or a.get('site')}"
                f" {a.get('kind')} {describe_reading(a)}")
    if kind == "recall_notice":
        return f"recall_notice to {a.get('org')}: lots {', '.join(a.get('lots', [])) or '-'}"
    return f"{kind}: {json.dumps(a, ensure_ascii=False)[:100]}"


# --- talking to nodes ---------------------------------------------------------------------------


class Nodes:
    """One client per organisation's node; every call names the org whose node it uses."""

    def __init__(self, net: DemoNetwork) -> None:
        self.net = net
        self.clients = {org: Client(url, chain_id=net.chain_id) for org, url in net.apis.items()}

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()

    async def guard(self, org: str, coro: Any) -> Any:
        try:
            return await coro
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise CliError(f"cannot reach {org}'s node at {self.net.apis[org]} ({exc}): "
                           f"is the network running?") from None
        except ClientError as exc:
            raise CliError(f"{org}'s node answered {exc}") from None

    async def submit(self, org: str, key: SigningKey, contract: str, action: str,
                     args: Mapping[str, Any]) -> dict[str, Any]:
        """Sign with ``key``, submit to ``org``'s node, wait for the committed receipt."""
        client = self.clients[org]
        try:
            tx = await client.make_tx(contract, action, args, key=key)
            receipt: dict[str, Any] = await client.submit(tx, wait=True)
            return receipt
        except ClientError as exc:  # refused at admission: no height, the code says why
            return {"code": exc.code, "message": exc.message, "height": None, "events": []}
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise CliError(f"cannot reach {org}'s node at {self.net.apis[org]} ({exc}): "
                           f"is the network running?") from None

    async def signed_query(self, org: str, key: SigningKey, contract: str, name: str,
                           args: Mapping[str, str]) -> Any:
        """A query signed by ``key`` (signed reads), with plain ``?name=value`` arguments.

        Plain URL-safe arguments keep the signed path byte-identical to what the node sees
        (``Client.query`` signs the percent-encoded JSON form, which the node decodes first).
        """
        client = self.clients[org]
        path = f"/v1/query/{contract}/{name}?" + "&".join(f"{k}={v}" for k, v in args.items())

        async def get() -> Any:
            headers = client.read_headers("GET", path, key)
            async with client.session.get(client.base_url + path, headers=headers) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise ClientError(resp.status, body.get("code", "E_HTTP"),
                                      body.get("message", ""))
                return body["result"]

        return await self.guard(org, get())

    async def query(self, org: str, contract: str, name: str, args: Mapping[str, Any],
                    **kw: Any) -> Any:
        return await self.guard(org, self.clients[org].query(contract, name, args, **kw))

    async def state(self, org: str, contract: str, key: str) -> Any:
        answer = await self.guard(org, self.clients[org].state(contract, key))
        return answer.get("value")

    async def height(self, org: str) -> int:
        return int((await self.guard(org, self.clients[org].status()))["height"])

    async def wait_all(self, height: int, timeout_s: float = 30.0) -> None:
        """Wait until every node has committed ``height``."""
        deadline = time.monotonic() + timeout_s
        async with progress(f"waiting for all {len(self.clients)} nodes to reach height {height}"):
            while True:
                heights = {org: await self.height(org) for org in self.clients}
                if min(heights.values()) >= height:
                    return
                if time.monotonic() > deadline:
                    behind = ", ".join(f"{o}={h}" for o, h in heights.items() if h < height)
                    raise CliError(f"nodes did not reach height {height} in {timeout_s:.0f} s: "
                                   f"{behind}")
                await asyncio.sleep(0.1)

    async def same_answer(self, contract: str, name: str, args: Mapping[str, Any]) -> Any:
        """Ask every node; fail with a one-line reason unless all answers are identical."""
        answers = {org: await self.query(org, contract, name, args) for org in self.clients}
        texts = {org: json.dumps(a, sort_keys=True) for org, a in answers.items()}
        first = next(iter(texts.values()))
        differ = [org for org, text in texts.items() if text != first]
        if differ:
            raise CliError(f"nodes disagree on {contract} {name} {json.dumps(dict(args))}: "
                           f"{', '.join(differ)} differ from {next(iter(texts))}")
        return next(iter(answers.values()))


async def follow_events(nodes: Nodes, org: str, contract: str, types: tuple[str, ...],
                        from_height: int, report: Report) -> None:
    """Background: record events of interest as ``org``'s node pushes them."""
    client = Client(nodes.net.apis[org])
    try:
        async for record in client.events(contract=contract, from_height=from_height):
            if record["type"] in types:
                report.streamed.append({"node": org, "height": record["height"],
                                        "type": record["type"], "attrs": record["attrs"],
                                        "received_ms": int(time.time() * 1000)})
    except (aiohttp.ClientError, ClientError, asyncio.CancelledError):
        pass
    finally:
        await client.close()


async def check_stream(report: Report, org: str, committed: list[dict[str, Any]],
                       types: tuple[str, ...]) -> None:
    """The streamed events should be the committed ones; wait a little for stragglers."""
    expected = sorted(e["type"] for e in committed if e["type"] in types)
    deadline = time.monotonic() + 5
    while sorted(e["type"] for e in report.streamed) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    got = sorted(e["type"] for e in report.streamed)
    counts = ", ".join(f"{t} x{got.count(t)}" for t in dict.fromkeys(got)) or "nothing"
    if got == expected:
        report.check(f"{org}'s node pushed every event of interest on its stream ({counts})")
    else:
        report.say(f"  warn {org}'s stream delivered {counts}; receipts had {len(expected)}")


# --- clearance ----------------------------------------------------------------------------------

ClearanceText = Callable[[Mapping[str, Any]], str]
CLEARANCE_TEXT: Mapping[str, ClearanceText] = {
    "set_rates": lambda a: "customs publishes exchange rates (thresholds, duty in KRW)",
    "set_restricted": lambda a: f"customs restricts ingredient {', '.join(a['keywords'])!r}",
    "create_order": lambda a: ("seller records the order: " + ", ".join(
        f"{i['quantity']} x {i['description']}" for i in a["items"])
        + f" from {a['ship_from']}; screened on commit"),
    "ship": lambda a: f"courier flies it: waybill {a['waybill']}, flight {a['carrier']}",
    "declare": lambda a: "courier declares it from the order's ledger data (nothing retyped)",
    "arrive": lambda a: f"arrival at port of entry {a['port']}",
    "release": lambda a: "customs releases it (list clearance)",
    "select_inspection": lambda a: f"customs selects it for inspection: {a['reason']}",
    "inspection_result": lambda a: (f"inspection: {a['result']}, {a['reason']}; documents "
                                    f"needed: {', '.join(a.get('documents', []))}"),
    "resolve_hold": lambda a: f"hold resolved -> {a['to']} ({a['note']})",
    "pay_duty": lambda a: f"buyer platform pays duty + VAT: KRW {a['amount_krw']:,}",
    "out_for_delivery": lambda a: "out for delivery",
    "deliver": lambda a: "delivered to the buyer",
    "confirm_receipt": lambda a: "buyer confirms receipt",
    "cancel": lambda a: f"seller cancels before shipping: {a['reason']}",
}


async def pick_clearance_prefix(nodes: Nodes, org: str) -> str:
    """``D<height>``, bumped until no order of that prefix exists (waybills: <= 12 chars)."""
    height = await nodes.height(org)
    for candidate in range(height, height + 1000):
        prefix = f"D{candidate}"
        if await nodes.state(org, "clearance", f"order/{prefix}-1") is None:
            return prefix
    raise CliError("could not find an unused order prefix")


async def run_clearance(net: DemoNetwork, report: Report) -> None:
    role_org = {role: net.org_with_role(role) for role in ("customs", "seller", "courier",
                                                            "buyer")}
    customs = role_org["customs"]
    keys = {org: net.member_key(org) for org in set(role_org.values())}
    nodes = Nodes(net)
    follower: asyncio.Task[None] | None = None
    try:
        async with progress("connecting to the nodes"):
            prefix = await pick_clearance_prefix(nodes, role_org["seller"])
            start_height = await nodes.height(role_org["seller"])
        salt = secrets.token_bytes(16)  # the buyer platform's secret, agreed with customs
        buyers = make_demo_buyers(net.admin_pubkey(customs), salt)
        steps = clearance_scenario.demo_steps(buyers, courier_org=role_org["courier"],
                                              buyer_org=role_org["buyer"], prefix=prefix)
        orders = [f"{prefix}-{n}" for n in (1, 2, 3)]
        report.info.update(chain_id=net.chain_id, run=prefix, orders=orders,
                           nodes=dict(net.apis))
        report.say(f"jangbu demo clearance: chain {net.chain_id}, {len(net.apis)} nodes, "
                   f"orders {', '.join(orders)}")
        report.say("  1: list clearance   2: pre-alert, cancelled   "
                   "3: inspected, held, released, duty paid")
        report.say(f"{'#':>3}  {'who':<8} {'action':<18} {'object':<16} {'height':<7} code")
        follower = asyncio.create_task(follow_events(
            nodes, role_org["seller"], "clearance", ("pre_alert",), start_height + 1, report))
        committed: list[dict[str, Any]] = []
        for n, (role, action, args) in enumerate(steps, 1):
            org = role_org[role]
            async with progress(f"step {n}: {org} {action} waiting for commit"):
                receipt = await nodes.submit(org, keys[org], "clearance", action, args)
            events = [e for e in receipt.get("events", []) if e["type"] in CLEARANCE_EVENTS]
            committed += receipt.get("events", [])
            obj = str(args.get("order_id") or {"set_rates": "rates"}.get(action, "restricted"))
            result = StepResult(n, org, org, action, obj, receipt.get("height"),
                                receipt["code"], "OK", CLEARANCE_TEXT[action](args), events)
            report.step(result)
            if result.code != result.expect:
                raise CliError(f"step {n} ({org} {action} {obj}) got {result.code}, expected OK:"
                               f" {receipt.get('message', '')}")
        top = max(s.height or 0 for s in report.steps)
        report.say("")
        await nodes.wait_all(top)
        for order in orders:
            history = await nodes.same_answer("clearance", "history", {"order_id": order})
            await nodes.same_answer("clearance", "parcel", {"order_id": order})
            trail = " -> ".join(h["state"] for h in history["history"])
            report.check(f"all {len(net.apis)} nodes answer the same history of {order}: {trail}")
        parcel = await nodes.signed_query(customs, keys[customs], "clearance", "parcel",
                                          {"order_id": orders[0]})
        opened = json.loads(open_as_member(keys[customs], parcel["buyer_sealed"]))
        if opened["pccc"] != DEMO_BUYERS[0][0]:
            raise CliError("customs opened the buyer data of the wrong buyer")
        report.check(f"customs (signed read) opens the sealed buyer data of {orders[0]}: "
                     f"PCCC {opened['pccc'][:5]}********, {opened['name']}")
        await check_stream(report, role_org["seller"], committed, ("pre_alert",))
        web = net.apis[role_org["buyer"]]
        report.urls = [f"{web}/track/{order}" for order in orders]
        report.info["height"] = top
    finally:
        if follower is not None:
            follower.cancel()
            with suppress(asyncio.CancelledError):
                await follower
        await nodes.close()


# --- livestock ----------------------------------------------------------------------------------

LivestockText = Callable[[Mapping[str, Any]], str]
LIVESTOCK_TEXT: Mapping[str, LivestockText] = {
    "add_member": lambda a: f"registers device {a['label']} ({a['pubkey'][:12]}...)",
    "register_birth": lambda a: (f"{a['breed']} calf born {a['birth_date']}, {a['sex']}"
                                 + (f", dam {a['dam']}" if a.get("dam") else "")),
    "transfer_out": lambda a: f"ships the calf to {a['to']}",
    "transfer_in": lambda a: "confirms the calf arrived",
    "treat": lambda a: (f"treats with {a['drug']}, withdrawal {a['withdrawal_days']} days"
                        + (f" (treated {a['date']})" if a.get("date") else "")),
    "record_readings": lambda a: ", ".join(describe_reading(r) for r in a["readings"]),
    "arrival": lambda a: f"calf arrives from {a['from']}",
    "slaughter": lambda a: (f"slaughter dated {a['date']}: carcass {a['carcass']}, "
                            f"{a['weight_g'] // 1000} kg, grade {a['grade']}"),
    "cut": lambda a: "cuts into " + ", ".join(
        f"{lot['lot']} ({lot['weight_g'] // 1000} kg)" for lot in a["lots"]),
    "bundle": lambda a: f"bundles {' + '.join(a['inputs'])} ({a['weight_g'] // 1000} kg)",
    "receive": lambda a: "the shop receives the lot",
    "sell": lambda a: (f"sells {a['weight_g']} g" + (f" as package {a['package']}"
                                                     if a.get("package") else "")),
    "recall": lambda a: f"the regulator recalls it: {a['reason']}",
}


def describe_reading(reading: Mapping[str, Any]) -> str:
    value = reading["value"]
    if reading["kind"] == "temperature":
        return f"{value / 10:.1f} °C"
    if reading["kind"] == "weight":
        return f"{value / 1000:.0f} kg"
    return f"at {value['lat_e6'] / 1e6:.2f}N {value['lon_e6'] / 1e6:.2f}E"


def livestock_object(action: str, args: Mapping[str, Any]) -> str:
    if action == "record_readings":
        return f"{len(args['readings'])} readings"
    if action == "cut":
        return str(args["carcass"])
    for name in ("lot", "id", "animal", "number", "label"):
        if args.get(name):
            return str(args[name])
    return "-"


async def pick_livestock_run(nodes: Nodes, org: str, today: int) -> int:
    """The first run from ``height mod 100000`` whose numbers are all unused on the chain."""
    start = await nodes.height(org)
    yymmdd = identifiers.format_yymmdd(today)
    for offset in range(2000):
        run = (start + offset) % (livestock_scenario.MAX_RUN + 1)
        numbers = livestock_scenario.demo_numbers(run)
        keys = [f"animal/{c}" for c in numbers.calves]
        keys += [f"carcass/{c}" for c in numbers.carcasses]
        keys += [f"lot/L0{yymmdd}4521{s:03d}" for s in numbers.lot_serials]
        if all([await nodes.state(org, "livestock", key) is None for key in keys]):
            return run
    raise CliError("could not find unused animal and lot numbers for today")


async def run_livestock(net: DemoNetwork, report: Report) -> None:
    orgs = [str(org["id"]) for org in livestock_scenario.DEMO_ORGS]
    net.require_orgs(orgs, "livestock")
    keys: dict[str, SigningKey] = {org: net.member_key(org) for org in orgs}
    device_org = dict(livestock_scenario.DEMO_DEVICES)
    for device, org in device_org.items():
        keys[device] = net.device_key(org, device)
    regulator = next(str(o["id"]) for o in livestock_scenario.DEMO_ORGS
                     if "regulator" in o["roles"])
    shop = next(str(o["id"]) for o in livestock_scenario.DEMO_ORGS if "shop" in o["roles"])
    nodes = Nodes(net)
    follower: asyncio.Task[None] | None = None

    def pub(name: str) -> str:
        return keys[name].verify_key.encode().hex()

    def sign(device: str, body: Mapping[str, Any]) -> str:
        return canonical.sign(keys[device], TAG_DEVICE, net.chain_id, dict(body)).hex()

    try:
        now_ms = int(time.time() * 1000)
        async with progress("connecting to the nodes"):
            run = await pick_livestock_run(nodes, shop, identifiers.compute_kst_day(now_ms))
            registered = {d for d in device_org
                          if await nodes.state(device_org[d], "membership",
                                               f"key/{pub(d)}") is not None}
            guards = [await nodes.state(device_org[d], "livestock", f"device/{pub(d)}")
                      for d in device_org]
            seq_base = max([int(g["last_seq"]) for g in guards if g is not None], default=0)
            start_height = await nodes.height(regulator)
        # Block time is the wall clock: the story's days travel in date arguments.
        t0 = now_ms - livestock_scenario.STORY_DAYS * identifiers.DAY_MS
        steps = livestock_scenario.demo_steps(pub, sign, t0, run=run, seq_base=seq_base,
                                              dated=True)
        numbers = livestock_scenario.demo_numbers(run)
        sold_lot = next(s.args["lot"] for s in steps
                        if s.action == "sell" and s.args.get("package"))
        report.info.update(chain_id=net.chain_id, run=run, calves=list(numbers.calves),
                           package=numbers.package, lot=sold_lot, nodes=dict(net.apis))
        report.say(f"jangbu demo livestock: chain {net.chain_id}, {len(net.apis)} nodes, "
                   f"run {run}, calves {', '.join(numbers.calves)}")
        report.say(f"{'#':>3}  {'who':<8} {'action':<18} {'object':<16} {'height':<7} code")
        follower = asyncio.create_task(follow_events(
            nodes, regulator, "livestock", LIVESTOCK_EVENTS, start_height + 1, report))
        committed: list[dict[str, Any]] = []
        for n, step in enumerate(steps, 1):
            if step.kind == "query":
                await run_livestock_query(nodes, report, n, step, shop, regulator)
                continue
            assert step.signer is not None
            org = device_org.get(step.signer, step.signer)
            if step.action == "add_member" and step.args["label"] in registered:
                report.say(f"{n:>3}  {org:<8} {'add_member':<18} {step.args['label']:<16} "
                           f"{'':<7} skip  already registered by an earlier run")
                continue
            async with progress(f"step {n}: {step.signer} {step.action} waiting for commit"):
                receipt = await nodes.submit(org, keys[step.signer], step.contract, step.action,
                                             step.args)
            committed += receipt.get("events", [])
            text = LIVESTOCK_TEXT[step.action](step.args)
            if step.note and step.action != "add_member":
                text += f" — {step.note}"
            who = step.signer if step.signer == org else f"{org}/{step.signer}"
            result = StepResult(n, org, who, step.action,
                                livestock_object(step.action, step.args), receipt.get("height"),
                                receipt["code"], step.expect, text,
                                [e for e in receipt.get("events", [])
                                 if e["type"] in LIVESTOCK_EVENTS])
            report.step(result)
            if result.code != result.expect:
                raise CliError(f"step {n} ({who} {step.action} {result.object}) got "
                               f"{result.code}, expected {step.expect}: "
                               f"{receipt.get('message', '')}")
        top = max(s.height or 0 for s in report.steps)
        report.say("")
        await nodes.wait_all(top)
        trace = await nodes.same_answer("livestock", "trace", {"number": sold_lot})
        state = "recalled" if trace["consumer"]["recalled"] else "not recalled"
        report.check(f"all {len(net.apis)} nodes answer the same trace of {sold_lot} "
                     f"({len(trace['consumer']['origins'])} calves, {state})")
        await check_stream(report, regulator, committed, LIVESTOCK_EVENTS)
        report.urls = [f"{net.apis[shop]}/trace/{sold_lot}"]
        report.info["height"] = top
    finally:
        if follower is not None:
            follower.cancel()
            with suppress(asyncio.CancelledError):
                await follower
        await nodes.close()


async def run_livestock_query(nodes: Nodes, report: Report, n: int,
                              step: livestock_scenario.Step, shop: str, regulator: str) -> None:
    """A query step: the consumer's trace at the shop, the recall scope at the regulator."""
    org = shop if step.action == "trace" else regulator
    answer = await nodes.query(org, step.contract, step.action, step.args)
    for name, expected in step.checks.items():
        got = ([o["animal"] for o in answer["consumer"]["origins"]] if name == "origins"
               else answer[name])
        if got != expected:
            raise CliError(f"step {n} ({step.action} on {org}): {name} is {got}, "
                           f"expected {expected}")
    if step.action == "trace":
        origins = "; ".join(f"{o['animal']} {o['breed']} {o['sex']} born {o['birth_date']} at "
                            f"{o['farm']}, {o['slaughterhouse']} {o['slaughter_date']} grade "
                            f"{o['grade']}" for o in answer["consumer"]["origins"])
        text = f"{step.note}: {origins}"
    else:
        text = (f"{step.note}: lots {', '.join(answer['lots'])}; "
                f"parties {', '.join(answer['parties'])}")
    report.say(f"{n:>3}  {org:<8} {step.action:<18} {step.args['number']:<16} {'query':<7} "
               f"OK  {text}")


# --- the command --------------------------------------------------------------------------------

Runner = Callable[[DemoNetwork, Report], Any]


def run_demo(name: str, runner: Runner, args: argparse.Namespace) -> int:
    """Run one demo; a failure prints its one-line reason here and returns 1.

    (Handled here rather than by ``cli.main``: under ``python -m cli.main`` that module is
    ``__main__``, whose ``CliError`` is not the class this module imports.)
    """
    report = Report(name, args.json)
    try:
        net = DemoNetwork.load(Path(args.dir))
        asyncio.run(runner(net, report))
    except CliError as exc:
        if args.json:
            print(json.dumps(report.summary(False, str(exc)), ensure_ascii=False))
        print(f"jangbu: error: {exc}", file=sys.stderr)
        return 1
    summary = report.summary(True, None)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    committed = [s for s in report.steps if s.height is not None]
    report.say(f"done: {len(committed)} steps committed (heights {committed[0].height}-"
               f"{committed[-1].height}) in {summary['duration_s']:.1f} s, every code as "
               f"expected, every node agrees")
    report.say("web pages:")
    for url in report.urls:
        report.say(f"  {url}")
    return 0


def cmd_demo_clearance(args: argparse.Namespace) -> int:
    return run_demo("clearance", run_clearance, args)


def cmd_demo_livestock(args: argparse.Namespace) -> int:
    return run_demo("livestock", run_livestock, args)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="run a workflow's Definition-of-done on a running network")
    scenarios = demo.add_subparsers(dest="demo_command", metavar="SCENARIO")
    for name, func, text in (
        ("clearance", cmd_demo_clearance,
         "three parcels: list clearance; pre-alert and cancel; inspection, hold, duty (4 nodes)"),
        ("livestock", cmd_demo_livestock,
         "calves from birth to sale with device readings, a consumer trace, a recall (5 nodes)"),
    ):
        p = scenarios.add_parser(name, help=text, description=text)
        p.add_argument("--dir", required=True,
                       help="network directory (jangbu network init / devnet up), running")
        p.add_argument("--json", action="store_true", help="print one JSON summary")
        p.set_defaults(func=func)
    demo.set_defaults(func=subcommand_help(demo))
