"""Real multi-process networks for end-to-end tests: init, start, stop, wait.

Everything goes through the public surfaces: ``jangbu network init`` code, ``jangbu node
start`` processes, and the HTTP API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:  # chaos.py and bench_scale.py run as scripts
    sys.path.append(str(ROOT / "tests"))

import port_support  # noqa: E402

from cli.network import init_network  # noqa: E402
from cli.presets import CONTRACTS, PRESETS  # noqa: E402
from node.keys import load_key_file  # noqa: E402


def free_base_port(count: int) -> int:
    """An even base port with ``count`` free ports above it, below the ephemeral range."""
    return port_support.free_base_port(count, step=2)


def http_json(url: str, body: Any = None, timeout: float = 10) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_text(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text: str = resp.read().decode()
        return text


@dataclass
class Network:
    directory: Path
    orgs: list[str]
    base_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def home(self, org: str) -> Path:
        return self.directory / org

    def api(self, org: str) -> str:
        return f"http://127.0.0.1:{self.base_port + 2 * self.orgs.index(org) + 1}"

    def member_key(self, org: str):
        return load_key_file(self.home(org) / "member.key")

    def start(self, org: str, extra_env: dict[str, str] | None = None) -> None:
        log = open(self.home(org) / "node.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs[org] = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "node", "start", "--home", str(self.home(org))],
            cwd=ROOT, stdout=log, stderr=log, env={**os.environ, **(extra_env or {})})

    def start_all(self) -> None:
        for org in self.orgs:
            self.start(org)
        self.wait_connected()

    def status(self, org: str) -> dict[str, Any]:
        return http_json(self.api(org) + "/v1/status")

    def wait_ready(self, org: str, timeout: float = 30, poll: float = 0.1) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            proc = self.procs.get(org)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{org} exited: {self.log_tail(org)}")
            try:
                self.status(org)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(poll)
        raise TimeoutError(f"{org} not ready: {self.log_tail(org)}")

    def wait_connected(self, timeout: float = 30) -> None:
        for org in self.orgs:
            self.wait_ready(org, timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(len(self.status(o)["peers"]) == len(self.orgs) - 1 for o in self.orgs):
                return
            time.sleep(0.1)
        raise TimeoutError("nodes did not connect to each other")

    def kill(self, org: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(org)
        proc.send_signal(sig)
        proc.wait(timeout=20)

    def stop_all(self) -> None:
        for org in list(self.procs):
            proc = self.procs.pop(org)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def log_tail(self, org: str, lines: int = 20) -> str:
        path = self.home(org) / "node.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def heights(self) -> dict[str, int]:
        return {org: self.status(org)["height"] for org in self.procs}

    def metric(self, org: str, name: str) -> float:
        """The sum of metric ``name`` (every label set) on ``org``'s ``/metrics``."""
        url = self.api(org) + "/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))

    def wait_height(self, height: int, orgs: list[str] | None = None, timeout: float = 60,
                    poll: float = 0.1) -> None:
        deadline = time.time() + timeout
        targets = orgs or list(self.procs)
        while time.time() < deadline:
            if all(self.status(o)["height"] >= height for o in targets):
                return
            time.sleep(poll)
        raise TimeoutError(f"height {height} not reached: {self.heights()}")

    def assert_identical_chains(self, orgs: list[str] | None = None) -> int:
        """Every node has the same block hash and state root at every height."""
        targets = orgs or list(self.procs)
        top = min(self.status(o)["height"] for o in targets)
        for height in range(1, top + 1):
            seen = {(b["hash"], b["header"]["state_root"]) for b in
                    (http_json(f"{self.api(o)}/v1/blocks/{height}") for o in targets)}
            assert len(seen) == 1, f"divergence at height {height}: {seen}"
        return top


def run_bench(net: Network, txs: int, batch: int, *extra: str) -> dict[str, Any]:
    """``jangbu bench --json`` against ``net`` as a separate process; its result, after
    checking that it committed every order and had none rejected."""
    out = subprocess.run([sys.executable, "-m", "cli.main", "bench", "--dir",
                          str(net.directory), "--txs", str(txs), "--batch", str(batch),
                          *extra, "--json"], cwd=ROOT, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["committed"] == txs and result["rejected"] == 0, result
    return result


def make_network(directory: Path, preset: str = "customs", consensus: dict[str, int] | None = None
                 ) -> Network:
    orgs = PRESETS[preset]
    base = free_base_port(2 * len(orgs))
    init_network(directory, orgs, CONTRACTS[preset], chain_id=f"e2e-{preset}", base_port=base,
                 consensus=consensus)
    return Network(directory, [o[0] for o in orgs], base)
