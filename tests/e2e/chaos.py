"""Chaos run: a 4-process devnet under steady load while a seeded nemesis injects faults.

    python tests/e2e/chaos.py --minutes 30 --seed 7 [--dir /tmp/chaos] [--param NAME=VALUE]

The nemesis (one fault at a time, so at most f = 1 faulty node) picks a node and one of:

* ``kill``: SIGKILL, wait, restart (crash in the middle of whatever it was doing);
* ``term``: SIGTERM (graceful stop), wait, restart;
* ``pause``: SIGSTOP, wait, SIGCONT (a frozen process: its peers see a silent link);
* ``isolate``: cut every p2p link to and from the node with the partition proxy
  (``tests/e2e/proxy.py``), wait, heal.

Before the next fault it waits (bounded) until the victim has caught up again. Load: a
few workers submit ``membership.add_member`` transactions with ``?wait=commit`` to random
nodes and remember every one answered "committed" (hash, height, block hash).

At the end it heals everything and checks:

* liveness: a probe transaction on every node commits and all nodes reach the same height
  within ``recover_bound_s`` (``recovered_in_s``);
* agreement: every node has the same block hash and state root at every height
  (``divergent_heights``);
* durability: every transaction answered "committed" is in the chain of every node, at the
  height and block it was answered with (``lost``);
* no equivocation: no node stored evidence of conflicting votes (all keys are honest).

and prints ``faults=N committed=C lost=0 divergent_heights=0 recovered_in_s=T``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cli.network import init_network, parse_params
from cli.presets import CONTRACTS, PRESETS
from node.tx import Transaction

from netutil import Network, free_base_port
from proxy import PartitionProxy

CHAIN_ID = "e2e-chaos"
FAULTS = ("kill", "kill", "term", "pause", "isolate", "isolate")


@dataclass
class ChaosConfig:
    seconds: float = 90
    seed: int = 1
    workers: int = 4
    fault_min_s: float = 2.0
    fault_max_s: float = 8.0
    gap_min_s: float = 1.0
    gap_max_s: float = 4.0
    catch_up_bound_s: float = 45.0
    recover_bound_s: float = 60.0
    request_timeout_s: float = 8.0
    consensus: dict[str, int] = field(default_factory=dict)  # genesis parameters to set


@dataclass
class ChaosResult:
    faults: int = 0
    fault_log: list[str] = field(default_factory=list)
    committed: dict[str, tuple[int, str]] = field(default_factory=dict)
    submitted: int = 0
    indeterminate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)
    divergent_heights: int = 0
    divergence_examples: list[str] = field(default_factory=list)
    duplicate_txs: int = 0
    evidence: int = 0
    recovered_in_s: float = -1.0
    top_height: int = 0
    slow_catch_ups: int = 0
    tracebacks: int = 0
    proxy: str = ""

    def summary(self) -> str:
        return (f"faults={self.faults} committed={len(self.committed)} lost={self.lost} "
                f"divergent_heights={self.divergent_heights} "
                f"recovered_in_s={self.recovered_in_s:.1f}")

    def details(self) -> str:
        return (f"height={self.top_height} submitted={self.submitted} "
                f"indeterminate={self.indeterminate} rejected={self.rejected} "
                f"evidence={self.evidence} duplicate_txs={self.duplicate_txs} "
                f"slow_catch_ups={self.slow_catch_ups} tracebacks={self.tracebacks} "
                f"proxy[{self.proxy}]")


# --- the network behind proxies ----------------------------------------------------------

def make_proxied_network(directory: Path, preset: str = "customs",
                         consensus: dict[str, int] | None = None
                         ) -> tuple[Network, dict[str, tuple[int, int]]]:
    """Init a network whose genesis p2p addresses are proxy ports (see proxy.py)."""
    orgs = PRESETS[preset]
    n = len(orgs)
    base = free_base_port(3 * n)
    init_network(directory, orgs, CONTRACTS[preset], chain_id=CHAIN_ID, base_port=base,
                 consensus=consensus)
    names = [o[0] for o in orgs]
    routes = {name: (base + 2 * n + i, base + 2 * i) for i, name in enumerate(names)}
    genesis = json.loads((directory / "genesis.json").read_text())
    for validator in genesis["validators"]:
        validator["p2p"] = f"127.0.0.1:{routes[validator['name']][0]}"
    text = json.dumps(genesis, indent=2) + "\n"
    (directory / "genesis.json").write_text(text)
    for name in names:  # identical bytes everywhere, before the first start
        (directory / name / "genesis.json").write_text(text)
    return Network(directory, names, base), routes


# --- the run -------------------------------------------------------------------------------

class Chaos:
    def __init__(self, directory: Path, cfg: ChaosConfig, log: Any = print) -> None:
        self.directory = directory
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.log = log
        self.net, routes = make_proxied_network(directory, consensus=cfg.consensus)
        self.proxy = PartitionProxy(routes, self._pids)
        self.result = ChaosResult()
        self.paused: set[str] = set()
        self.down: set[str] = set()
        self._nonce = 0
        self._keys = {org: self.net.member_key(org) for org in self.net.orgs}

    def _pids(self) -> dict[int, str]:
        return {proc.pid: org for org, proc in self.net.procs.items()}

    # --- helpers ---------------------------------------------------------------------------

    async def _status(self, session: aiohttp.ClientSession, org: str) -> dict[str, Any] | None:
        try:
            async with session.get(self.net.api(org) + "/v1/status",
                                   timeout=aiohttp.ClientTimeout(total=3)) as resp:
                return await resp.json() if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def _heights(self, session: aiohttp.ClientSession) -> dict[str, int]:
        out = {}
        for org in self.net.orgs:
            status = await self._status(session, org)
            if status is not None:
                out[org] = status["height"]
        return out

    def _new_tx(self, org: str) -> Transaction:
        self._nonce += 1
        return Transaction.create(self._keys[org], CHAIN_ID, "membership", "add_member",
                                  {"pubkey": SigningKey.generate().verify_key.encode().hex()},
                                  self.cfg.seed * 10**9 + self._nonce)

    async def _submit(self, session: aiohttp.ClientSession, org: str, tx: Transaction,
                      timeout: float) -> dict[str, Any] | None:
        url = f"{self.net.api(org)}/v1/txs?wait=commit&timeout={timeout}"
        async with session.post(url, json=tx.to_json(),
                                timeout=aiohttp.ClientTimeout(total=timeout + 3)) as resp:
            body = await resp.json(content_type=None)
            if resp.status == 200 and body.get("status") == "committed":
                return body
            code = body.get("code", str(resp.status)) if isinstance(body, dict) else "?"
            if resp.status != 504:
                self.result.rejected[code] = self.result.rejected.get(code, 0) + 1
            return None

    # --- load ------------------------------------------------------------------------------

    async def _worker(self, session: aiohttp.ClientSession, stop: asyncio.Event,
                      wid: int) -> None:
        rng = random.Random(self.cfg.seed * 1000 + wid)
        while not stop.is_set():
            org = rng.choice(self.net.orgs)
            tx = self._new_tx(rng.choice(self.net.orgs))
            self.result.submitted += 1
            try:
                body = await self._submit(session, org, tx, self.cfg.request_timeout_s)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                body = None
                await asyncio.sleep(0.2)
            if body is None:
                self.result.indeterminate += 1
                continue
            assert body["hash"] == tx.hash.hex()
            self.result.committed[body["hash"]] = (body["height"], body["block_hash"])

    # --- nemesis ---------------------------------------------------------------------------

    async def _sleep(self, lo: float, hi: float, deadline: float) -> None:
        await asyncio.sleep(max(0.0, min(self.rng.uniform(lo, hi), deadline - time.time())))

    async def _restart(self, org: str) -> None:
        self.net.start(org)
        await asyncio.to_thread(self.net.wait_ready, org, 60)
        self.down.discard(org)

    async def _inject(self, org: str, kind: str, deadline: float) -> None:
        cfg = self.cfg
        proc = self.net.procs[org]
        self.result.faults += 1
        self.result.fault_log.append(f"{time.strftime('%H:%M:%S')} {kind} {org}")
        self.log(f"[nemesis] {kind} {org}")
        if kind in ("kill", "term"):
            sig = signal.SIGKILL if kind == "kill" else signal.SIGTERM
            self.down.add(org)
            await asyncio.to_thread(self.net.kill, org, sig)
            await self._sleep(cfg.fault_min_s, cfg.fault_max_s, deadline)
            await self._restart(org)
        elif kind == "pause":
            self.paused.add(org)
            proc.send_signal(signal.SIGSTOP)
            await self._sleep(cfg.fault_min_s, cfg.fault_max_s, deadline)
            proc.send_signal(signal.SIGCONT)
            self.paused.discard(org)
        elif kind == "isolate":
            self.proxy.isolate(org)
            await self._sleep(cfg.fault_min_s, cfg.fault_max_s, deadline)
            self.proxy.heal()

    async def _wait_caught_up(self, session: aiohttp.ClientSession, org: str) -> None:
        deadline = time.time() + self.cfg.catch_up_bound_s
        while time.time() < deadline:
            heights = await self._heights(session)
            if org in heights and heights[org] >= max(heights.values()) - 2:
                return
            await asyncio.sleep(0.5)
        self.result.slow_catch_ups += 1
        self.log(f"[nemesis] {org} did not catch up within {self.cfg.catch_up_bound_s}s")

    async def _nemesis(self, session: aiohttp.ClientSession, deadline: float) -> None:
        cfg = self.cfg
        while time.time() < deadline:
            await self._sleep(cfg.gap_min_s, cfg.gap_max_s, deadline)
            if time.time() >= deadline:
                break
            org = self.rng.choice(self.net.orgs)
            kind = self.rng.choice(FAULTS)
            await self._inject(org, kind, deadline)
            await self._wait_caught_up(session, org)

    # --- final checks ----------------------------------------------------------------------

    async def _recover(self, session: aiohttp.ClientSession) -> None:
        started = time.time()
        bound = self.cfg.recover_bound_s
        probes = {org: self._new_tx(org) for org in self.net.orgs}

        async def probe(org: str) -> int:
            while time.time() - started < bound:
                try:
                    body = await self._submit(session, org, probes[org], 5)
                    if body is not None:
                        return int(body["height"])
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                    await asyncio.sleep(0.5)
                # a retry of the same tx may answer 409 once it is in: ask for its status
                try:
                    async with session.get(f"{self.net.api(org)}/v1/txs/"
                                           f"{probes[org].hash.hex()}") as resp:
                        body = await resp.json(content_type=None)
                        if body.get("status") == "committed":
                            return int(body["height"])
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                    pass
            raise TimeoutError(f"probe on {org} not committed within {bound}s")

        heights = await asyncio.gather(*(probe(org) for org in self.net.orgs),
                                       return_exceptions=True)
        failures = [h for h in heights if isinstance(h, BaseException)]
        if failures:
            self.log(f"[check] liveness lost: {failures}")
            return
        target = max(int(h) for h in heights)  # type: ignore[arg-type]
        while time.time() - started < bound:
            now = await self._heights(session)
            if len(now) == len(self.net.orgs) and min(now.values()) >= target:
                self.result.recovered_in_s = time.time() - started
                return
            await asyncio.sleep(0.2)
        self.log("[check] nodes did not reach the probe height in time")

    async def _check_chains(self, session: aiohttp.ClientSession) -> None:
        heights = await self._heights(session)
        top = min(heights.values())
        self.result.top_height = top
        in_chain: dict[str, tuple[int, str]] = {}
        for height in range(1, top + 1):
            blocks = []
            for org in self.net.orgs:
                async with session.get(f"{self.net.api(org)}/v1/blocks/{height}") as resp:
                    blocks.append(await resp.json())
            seen = {(b["hash"], b["header"]["state_root"]) for b in blocks}
            if len(seen) != 1:
                self.result.divergent_heights += 1
                if len(self.result.divergence_examples) < 5:
                    self.result.divergence_examples.append(f"{height}: {sorted(seen)}")
            for tx in blocks[0]["txs"]:
                if tx["hash"] in in_chain:
                    self.result.duplicate_txs += 1
                in_chain[tx["hash"]] = (height, blocks[0]["hash"])
        for tx_hash, (height, block_hash) in self.result.committed.items():
            if in_chain.get(tx_hash) != (height, block_hash):
                self.result.lost += 1
                if len(self.result.lost_examples) < 5:
                    self.result.lost_examples.append(
                        f"{tx_hash[:16]} answered at {height}, chain has {in_chain.get(tx_hash)}")

    def _count_evidence(self) -> None:
        """After the nodes stopped: conflicting-vote evidence recorded in any store."""
        import plyvel  # local: only needed here

        for org in self.net.orgs:
            db = plyvel.DB(str(self.net.home(org) / "data"))
            try:
                self.result.evidence += sum(1 for _ in db.iterator(prefix=b"e/"))
            finally:
                db.close()
            text = (self.net.home(org) / "node.log").read_text(errors="replace")
            self.result.tracebacks += text.count("Traceback")

    # --- main ------------------------------------------------------------------------------

    async def run(self) -> ChaosResult:
        await self.proxy.start()
        await asyncio.to_thread(self.net.start_all)
        stop = asyncio.Event()
        try:
            async with aiohttp.ClientSession() as session:
                deadline = time.time() + self.cfg.seconds
                workers = [asyncio.create_task(self._worker(session, stop, i))
                           for i in range(self.cfg.workers)]
                try:
                    await self._nemesis(session, deadline)
                finally:
                    self.proxy.heal()
                    for org in list(self.paused):
                        self.net.procs[org].send_signal(signal.SIGCONT)
                    self.paused.clear()
                    for org in list(self.down):
                        await self._restart(org)
                    stop.set()
                    await asyncio.gather(*workers, return_exceptions=True)
                self.log(f"[check] nemesis done after {self.result.faults} faults; recovering")
                await self._recover(session)
                await self._check_chains(session)
        finally:
            await asyncio.to_thread(self.net.stop_all)
            await self.proxy.stop()
            p = self.proxy
            self.result.proxy = f"cut={p.cut} refused={p.refused} unidentified={p.unidentified}"
        self._count_evidence()
        return self.result


def run_chaos(directory: Path, cfg: ChaosConfig, log: Any = print) -> ChaosResult:
    return asyncio.run(Chaos(directory, cfg, log).run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None,
                        help="network directory, always kept (a temporary one is removed "
                        "after a passing run)")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="a genesis consensus parameter, as `jangbu network init "
                        "--param` (e.g. min_block_interval_ms=100); repeatable")
    args = parser.parse_args(argv)
    try:
        consensus = parse_params(args.param)
    except ValueError as exc:
        parser.error(str(exc))
    directory = args.dir or Path(tempfile.mkdtemp(prefix="jangbu-chaos-"))
    net_dir = directory / "net"
    cfg = ChaosConfig(seconds=args.minutes * 60, seed=args.seed, workers=args.workers,
                      consensus=consensus)
    print(f"chaos: {args.minutes} min, seed {args.seed}, network in {net_dir}"
          + (f", genesis {consensus}" if consensus else ""), flush=True)
    result = run_chaos(net_dir, cfg, log=lambda m: print(m, flush=True))
    print(result.details())
    for line in result.lost_examples + result.divergence_examples:
        print("  " + line)
    print(result.summary(), flush=True)
    ok = (result.lost == 0 and result.divergent_heights == 0 and result.evidence == 0
          and result.duplicate_txs == 0 and 0 <= result.recovered_in_s <= cfg.recover_bound_s)
    if ok and args.dir is None:
        shutil.rmtree(directory, ignore_errors=True)  # a passing run's logs are not needed
    elif not ok:
        print(f"logs and stores kept in {net_dir}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
