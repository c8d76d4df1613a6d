"""``jangbu bench``: committed throughput and submit-to-commit latency of a running devnet.

Method (so the numbers mean something):

1. set-up transactions (exchange rates) are committed first, outside the clock;
2. N realistic ``clearance.create_order`` transactions (each screened on commit) are signed
   *before* the clock starts, spread over several seller member keys;
3. they are offered at ``--rate`` tx/s (0 = as fast as possible) by ``--clients``
   concurrent HTTP clients, round-robin over every node's ``POST /v1/txs/batch``;
4. commits are observed through each node's event stream (``/v1/events``): a
   transaction's latency is from the moment its batch was sent to the first commit event
   of it seen on the node it was sent to;
5. the Ed25519 verification bound is measured in the same run on the same machine:
   ``verifies/s per core x cores / nodes`` (every node checks every transaction once),
   with libsodium's check; ``keyed_verify_per_s_per_core`` is the rate of the check a node
   pays for a key seen before, from its table (node/_ed25519_keyed.c; None where off);
6. ``node_cpu_us_per_tx``: the CPU the node processes used from the first offer to the
   last commit (``process_cpu_seconds_total`` of each node's ``/metrics``), per committed
   transaction and node. Unlike tx/s it hardly moves with the load on a shared machine,
   so it is the figure that compares two builds (docs/benchmarks.md);
7. ``loop_thread_cpu_us_per_tx``: the part of it the nodes' event loop threads ran, and,
   when the nodes run with ``JANGBU_STAGE_CPU=1`` (node/stage_cpu.py), ``stage_cpu_us_per_tx``:
   the same per stage of a node's work (intake, admission, signature checks, execution,
   commit, ...), each inclusive of the stages it contains, averaged over the nodes that
   report it (``stage_cpu_nodes``);
8. ``client_cpu_us_per_tx``: the load generator's own CPU over the same window, per
   committed transaction (it shares the machine, so its CPU is the nodes' loss), and
   ``machine_busy``: the share of all cores' time that was busy then (Linux ``/proc/stat``;
   the window ends up to 0.25 s after the last commit). Near 1.0 the run was bound by CPU;
   well below it, by waiting (timeouts, the disk, the network);
9. with ``--window S``, ``windows``: the run cut into S-second windows, each with the
   commits seen in it (as tx/s), their latency percentiles and the nodes' CPU per such
   transaction, to see a long run change as the store grows; and, averaged over the
   nodes, the CPU seconds their threads other than the event loop used in it
   (``background_cpu_s``: LevelDB's memtable flushes and compactions, chiefly) and the
   time LevelDB counted for those (``leveldb_compaction_s``, its own whole seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
from nacl.public import PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

from cli.errors import CliError
from consensus import canonical
from node.client import Client, ClientError
from node.keys import load_key_file
from node.metrics import interpreter
from node.tx import Transaction

TX_FIELD = re.compile(rb'"tx":"([0-9a-f]{64})"')
"""The transaction hash of an event record as the node writes it (compact JSON)."""
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?) '
                    r"([0-9.eE+-]+)$", re.MULTILINE)
"""One sample line of the Prometheus text format: name (with its labels) and value."""
CPU_METRIC = "process_cpu_seconds_total"
LOOP_CPU_METRIC = "jangbu_event_loop_thread_cpu_seconds_total"
COMPACTION_METRIC = "jangbu_leveldb_compaction_seconds_total"
STAGE_METRIC = re.compile(r'^jangbu_stage_cpu_seconds_total\{stage="([a-z0-9_]+)"\}$')


def parse_samples(text: str) -> dict[str, float]:
    """The samples of a ``/metrics`` page by name (labels included); a value that is not a
    number is left out (the bench only reads counters, which always are)."""
    samples = {}
    for name, value in SAMPLE.findall(text):
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


PYTHON_INFO = re.compile(r'^python_info\{.*\bbuild="((?:[^"\\]|\\.)*)"')


def node_pythons(samples: list[dict[str, float]]) -> list[str]:
    """The interpreters the nodes run (``python_info``'s ``build`` label), each once, in
    the order first seen. Why report it: the same node code uses ~10% less CPU per
    transaction on a CPython built with profile-guided and link-time optimisation
    (docs/benchmarks.md, twenty-third round), so a figure is only comparable with others
    from the same interpreter."""
    found: list[str] = []
    for sample in samples:
        for name in sample:
            match = PYTHON_INFO.match(name)
            if match:
                build = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], match[1])
                if build not in found:
                    found.append(build)
    return found


def stage_nodes(samples: list[dict[str, float]]) -> int:
    """How many nodes report CPU by stage (they run with JANGBU_STAGE_CPU=1)."""
    return sum(1 for sample in samples if any(STAGE_METRIC.match(name) for name in sample))


def mean_delta(before: list[dict[str, float]], after: list[dict[str, float]],
               name: str) -> float | None:
    """How much counter ``name`` grew between two readings, averaged over the nodes that
    report it at both; None if none does."""
    grown = [a[name] - b[name] for b, a in zip(before, after, strict=True)
             if name in b and name in a]
    return sum(grown) / len(grown) if grown else None


def cpu_per_tx(before: list[dict[str, float]], after: list[dict[str, float]], name: str,
               committed: int) -> float | None:
    """Microseconds of ``name`` (a CPU-seconds counter) per committed transaction and node,
    over the nodes that report it at both readings; None if none does."""
    spent = mean_delta(before, after, name)
    if spent is None or committed == 0:
        return None
    return round(spent / committed * 1e6, 1)


def background_cpu_s(before: list[dict[str, float]],
                     after: list[dict[str, float]]) -> float | None:
    """CPU seconds a node's threads other than its event loop used between two readings,
    averaged over the nodes that report both figures: LevelDB's memtable flushes and
    compactions, chiefly (a block write and a block's signature checks move off the loop
    only while a node catches up)."""
    spent = [(a[CPU_METRIC] - b[CPU_METRIC]) - (a[LOOP_CPU_METRIC] - b[LOOP_CPU_METRIC])
             for b, a in zip(before, after, strict=True)
             if all(name in sample for name in (CPU_METRIC, LOOP_CPU_METRIC)
                    for sample in (b, a))]
    return round(max(0.0, sum(spent) / len(spent)), 2) if spent else None


def stage_cpu_per_tx(before: list[dict[str, float]], after: list[dict[str, float]],
                     committed: int) -> dict[str, float] | None:
    """:func:`cpu_per_tx` of every stage the nodes report (JANGBU_STAGE_CPU=1), by stage."""
    found = {match.group(1): match.group(0) for sample in after for name in sample
             if (match := STAGE_METRIC.match(name)) is not None}
    stages = {}
    for stage, name in sorted(found.items()):
        figure = cpu_per_tx(before, after, name, committed)
        if figure is not None:
            stages[stage] = figure
    return stages or None


def machine_cpu_ticks(stat: str = "/proc/stat") -> tuple[int, int] | None:
    """(busy, total) clock ticks of all of the machine's cores so far, from Linux's
    ``/proc/stat`` (idle and iowait are not busy); None where there is no such file."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]]  # user .. steal: guest is inside user
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


def busy_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time that was busy between two readings of
    :func:`machine_cpu_ticks`: 1.0 means every core ran something all the time, so the
    run was bound by CPU, not by waiting (timeouts, the disk, the network)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def window_rows(t0: float, marks: list[tuple[float, list[dict[str, float]] | None]],
                committed_at: dict[str, float], sent_at: dict[str, float]) -> list[dict[str, Any]]:
    """The run cut into the windows between consecutive ``marks`` (time, the nodes'
    /metrics samples then): per window, the transactions whose commit was seen in it, as
    a rate, their latency percentiles, the nodes' CPU per such transaction, and what their
    other threads and LevelDB's compactions took (:func:`background_cpu_s`).

    Why: a long run's totals hide how it changed as the chain and the store grew (LevelDB's
    compactions, a backlog that builds up): the rows show when, and by how much.
    """
    commits = sorted((at, (at - sent_at[h]) * 1000) for h, at in committed_at.items())
    rows: list[dict[str, Any]] = []
    index = 0
    for (start, before), (end, after) in pairwise(marks):
        latencies = []
        while index < len(commits) and commits[index][0] < end:
            if commits[index][0] >= start:
                latencies.append(commits[index][1])
            index += 1
        span = max(1e-9, end - start)
        cpu = background = compaction = None
        if before is not None and after is not None:
            cpu = cpu_per_tx(before, after, CPU_METRIC, len(latencies))
            background = background_cpu_s(before, after)
            compaction = mean_delta(before, after, COMPACTION_METRIC)
        rows.append({
            "t_s": round(start - t0, 1),
            "committed": len(latencies),
            "tx_per_s": round(len(latencies) / span, 1),
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "node_cpu_us_per_tx": cpu,
            "background_cpu_s": background,
            "leveldb_compaction_s": None if compaction is None else round(compaction, 1),
        })
    return rows


def checks_per_second(check: Callable[[bytes, bytes, bytes], object],
                      seconds: float = 1.0, key_seed: bytes = b"\x11" * 32) -> float:
    """How many times a second ``check(pubkey, message, signature)`` runs on one core, for
    one good 200-byte message's signature (four calls first, outside the clock)."""
    key = SigningKey(key_seed)
    message = b"x" * 200
    sig = bytes(key.sign(message).signature)
    pub = key.verify_key.encode()
    for _ in range(4):  # (for the key tables: the third valid signature builds one)
        check(pub, message, sig)
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            check(pub, message, sig)
        count += 200
    return count / (time.perf_counter() - started)


def measure_verify_rate(seconds: float = 1.0) -> float:
    """Ed25519 verifications per second on one core, libsodium's check (the one the design's
    bound counts: every node checks every transaction once)."""
    return checks_per_second(canonical.verify_raw, seconds)


def measure_keyed_verify_rate(seconds: float = 1.0) -> float | None:
    """As :func:`measure_verify_rate`, through a key's table (node/_ed25519_keyed.c), the
    check a node pays for a key seen before; None where the tables are off or not built."""
    from node import sigcheck

    if not sigcheck.keyed_checks():
        return None
    return checks_per_second(sigcheck.verify_one, seconds, key_seed=b"\x12" * 32)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


DEFAULT_BUYERS = 5000
ORDERS_PER_BUYER = 4  # what a 20,000-order run with the default buyers makes


def default_buyers(txs: int) -> int:
    """Buyers for a run of ``txs`` orders when ``--buyers`` is not given: at least
    ``DEFAULT_BUYERS``, and enough that each buyer's group stays at ~``ORDERS_PER_BUYER``
    orders however long the run.

    Why: a combined-taxation group (one buyer, one seller, one day) is read and written
    back whole by each order that joins it, so a run of 240,000 orders over 5,000 buyers
    made groups of 48 orders (1.5 KB records rewritten per order) and measured the
    workload's growth instead of the node's: 289 µs of node CPU per order on average,
    against 244 with groups of 4 (docs/benchmarks.md, twenty-fourth round). A buyer with
    48 parcels from one seller in one day is not what customs sees.
    """
    return max(DEFAULT_BUYERS, -(-txs // ORDERS_PER_BUYER))


def order_args(run: str, i: int, buyers: int, *, courier: str, buyer: str,
               sealed: str) -> dict[str, Any]:
    """The ``create_order`` arguments of the ``i``-th order of benchmark run ``run``.

    Buyers cycle through ``buyers`` references that are new in every run. Why: the
    clearance contract groups a buyer's orders from one seller on one day for combined
    taxation, and each new order of a group that is over its threshold reads every other
    order of the group (``reassess_group``). With references shared by every run, groups
    grew by ~1 order per 5,000 with each run of the day, and the same command measured
    ~290 µs of node CPU per order on a fresh devnet and ~470 after 50,000 orders.
    """
    return {
        "order_id": f"B{run}-{i}", "courier": courier, "buyer_platform": buyer,
        "buyer_ref": canonical.digest(f"bench-{run}-buyer-{i % buyers}".encode()).hex(),
        "buyer_sealed": sealed, "currency": "USD", "ship_from": "US",
        "items": [{"hs": "6109.10-0000", "description": "cotton T-shirt",
                   "kind": "general", "quantity": 1, "unit_price": 1_500 + i % 500}],
    }


class Bench:
    def __init__(self, directory: Path, txs: int, rate: float, clients: int, batch: int,
                 buyers: int | None = None, window: float = 0.0) -> None:
        self.directory = directory
        self.window = window
        self.buyers = default_buyers(txs) if buyers is None else buyers
        self.genesis = json.loads((directory / "genesis.json").read_text())
        self.chain_id = self.genesis["chain_id"]
        self.urls = [v["api"] for v in self.genesis["validators"]]
        self.names = {v["api"]: v["name"] for v in self.genesis["validators"]}
        self.skipped: list[str] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.txs = txs
        self.rate = rate
        self.clients = clients
        self.batch = batch
        self.sent_at: dict[str, float] = {}
        self.node_of: dict[str, int] = {}
        self.committed_at: dict[str, float] = {}
        self.rejected = 0
        self.rejected_codes: dict[str, int] = {}

    def key(self, org: str) -> SigningKey:
        return load_key_file(self.directory / org / "member.key")

    def org_with_role(self, role: str) -> str:
        for org in self.genesis["orgs"]:
            if role in org["roles"]:
                return str(org["id"])
        raise CliError(f"the network has no organisation with role {role!r} "
                       "(bench runs the customs preset)")

    async def setup(self) -> tuple[str, str, str, list[SigningKey]]:
        customs, seller = self.org_with_role("customs"), self.org_with_role("seller")
        courier, buyer = self.org_with_role("courier"), self.org_with_role("buyer")
        async with Client(self.urls[0], key=self.key(customs), chain_id=self.chain_id) as c:
            await c.call("clearance", "set_rates", {"rates": {
                "USD": {"usd_micro": 1_000_000, "krw_centi": 145_025}}})
        # Several seller member keys: one integrator per key, like a real platform fleet.
        admin = self.key(seller)
        sellers = [SigningKey(canonical.digest(f"bench-{self.chain_id}-{i}".encode()))
                   for i in range(8)]
        async with Client(self.urls[1 % len(self.urls)], key=admin,
                          chain_id=self.chain_id) as c:
            members = await c.query("membership", "members", {"org": seller})
            known = {m["pubkey"] for m in members}
            for key in sellers:
                pub = key.verify_key.encode().hex()
                if pub not in known:
                    await c.call("membership", "add_member", {"pubkey": pub,
                                                              "label": "bench seller"})
        return customs, courier, buyer, sellers

    def presign(self, customs: str, courier: str, buyer: str,
                sellers: list[SigningKey]) -> list[Transaction]:
        customs_pub = next(k["pubkey"] for o in self.genesis["orgs"] if o["id"] == customs
                           for k in o["keys"])
        box = SealedBox(PublicKey(bytes(VerifyKey(bytes.fromhex(customs_pub))
                                        .to_curve25519_public_key())))
        import base64
        sealed = base64.b64encode(box.encrypt(b'{"pccc":"P123456789012","name":"bench"}')
                                  ).decode()
        run = f"{int(time.time())}"
        out = []
        for i in range(self.txs):
            args = order_args(run, i, self.buyers, courier=courier, buyer=buyer, sealed=sealed)
            tx = Transaction.create(sellers[i % len(sellers)], self.chain_id, "clearance",
                                    "create_order", args, i + 1)
            _ = tx.encoded, tx.hash  # computed now, not on the clock
            out.append(tx)
        return out

    async def follow(self, index: int, stop: asyncio.Event) -> None:
        """Time each commit on the node the transaction was sent to, from its event stream.

        The load generator shares the machine with the nodes, so the stream is read in
        chunks and only each record's ``"tx"`` field is picked out: a full SSE line parser
        and ``json.loads`` per record cost this process ~200 µs per transaction (four
        streams), CPU the nodes under test then lacked.
        """
        async with Client(self.urls[index]) as client:
            params = {"contract": "clearance", "type": "create_order"}
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            async with client.session.get(self.urls[index] + "/v1/events", params=params,
                                          timeout=timeout) as resp:
                if resp.status != 200:
                    raise CliError(f"event stream of {self.urls[index]}: HTTP {resp.status}")
                pending = b""
                async for chunk in resp.content.iter_any():
                    now = time.perf_counter()
                    pending += chunk
                    complete, _, pending = pending.rpartition(b"\n\n")
                    if b"event: overflow" in complete:
                        raise CliError(f"{self.urls[index]} dropped the benchmark's event "
                                       "stream (it fell behind); results would be partial")
                    for tx in TX_FIELD.findall(complete):
                        tx_hex = tx.decode()
                        if tx_hex not in self.committed_at and self.node_of.get(tx_hex) == index:
                            self.committed_at[tx_hex] = now
                    if stop.is_set():
                        return
                if not stop.is_set():
                    # The node closed it (a node stopped cleanly does): review, the run
                    # then reported what it had seen so far and exited 0.
                    raise CliError(f"the event stream of {self.urls[index]} ended during "
                                   "the run (the node stopped?); results would be partial")

    async def offer(self, txs: list[Transaction], progress: Any) -> float:
        batches = [txs[i:i + self.batch] for i in range(0, len(txs), self.batch)]
        queue: asyncio.Queue[tuple[int, list[Transaction]]] = asyncio.Queue()
        for i, b in enumerate(batches):
            queue.put_nowait((i, b))
        started = time.perf_counter()

        async def client_task(worker: int) -> None:
            clients = [Client(url, chain_id=self.chain_id) for url in self.urls]
            try:
                while not queue.empty():
                    i, chunk = queue.get_nowait()
                    if self.rate > 0:
                        due = started + (i * self.batch) / self.rate
                        delay = due - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    node = i % len(self.urls)
                    sent = time.perf_counter()
                    for tx in chunk:
                        h = tx.hash.hex()
                        self.sent_at[h] = sent
                        self.node_of[h] = node
                    while True:
                        try:
                            result = await clients[node].submit_batch(chunk)
                            break
                        except ClientError as exc:
                            if exc.status == 503:
                                await asyncio.sleep(0.05)
                                continue
                            raise
                    for item in result["results"]:
                        if item["status"] != "pending":
                            self.rejected += 1
                            code = item.get("code", "?")
                            self.rejected_codes[code] = self.rejected_codes.get(code, 0) + 1
                    progress(len(chunk))
            finally:
                for c in clients:
                    await c.close()

        workers = [asyncio.create_task(client_task(w)) for w in range(self.clients)]
        self._tasks.extend(workers)
        await asyncio.gather(*workers)  # the first failure ends the run (run() ends the rest)
        return time.perf_counter() - started

    async def sample_windows(self, marks: list[tuple[float, list[dict[str, float]] | None]],
                             stop: asyncio.Event) -> None:
        """Every ``window`` seconds, note the time and the nodes' /metrics samples."""
        while not stop.is_set():
            await asyncio.sleep(self.window)
            marks.append((time.perf_counter(), await self.node_samples()))

    async def node_samples(self) -> list[dict[str, float]] | None:
        """Each node's ``/metrics`` samples; None if a node cannot be read."""
        samples = []
        async with aiohttp.ClientSession() as session:
            for url in self.urls:
                try:
                    async with session.get(url + "/metrics") as resp:
                        if resp.status != 200:
                            return None
                        text = await resp.text()
                except aiohttp.ClientError:
                    return None
                samples.append(parse_samples(text))
        return samples

    async def unreachable(self) -> list[str]:
        """The validators' APIs that do not answer ``/v1/status`` within 5 s."""
        async def down(url: str) -> bool:
            try:
                async with Client(url, chain_id=self.chain_id) as client:
                    await asyncio.wait_for(client.status(), 5)
                return False
            except (OSError, TimeoutError, ClientError, aiohttp.ClientError):
                return True

        answers = await asyncio.gather(*(down(url) for url in self.urls))
        return [url for url, is_down in zip(self.urls, answers, strict=True) if is_down]

    async def run(self, quiet: bool, skip_unreachable: bool = False) -> dict[str, Any]:
        """Check every node answers (or leave out those that do not, when asked), run, and
        end every task the run started whatever happens: a node that went down mid-run
        used to leave the event-stream tasks failing unseen, so the run reported 0
        committed and exited 0, or printed their tracebacks at exit (review)."""
        down = await self.unreachable()
        if down:
            names = ", ".join(f"{self.names[url]} ({url})" for url in down)
            if not skip_unreachable:
                raise CliError(f"cannot reach {names}: start it (jangbu devnet up --dir "
                               f"{self.directory}), or pass --skip-unreachable to run "
                               "against the others")
            if len(down) == len(self.urls):
                raise CliError(f"cannot reach any node: {names}")
            self.skipped = [self.names[url] for url in down]
            self.urls = [url for url in self.urls if url not in down]
        try:
            return await self._run(quiet)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _stream_failure(self, followers: list[asyncio.Task[None]]) -> CliError | None:
        """Why a follower failed (None: none did; :meth:`follow` fails when its stream ends
        before the run does)."""
        for index, task in enumerate(followers):
            if not task.done() or task.cancelled() or task.exception() is None:
                continue
            exc = task.exception()
            if isinstance(exc, CliError):
                return exc
            return CliError(f"lost the event stream of {self.names[self.urls[index]]} "
                            f"({self.urls[index]}): {exc or type(exc).__name__}")
        return None

    async def _run(self, quiet: bool) -> dict[str, Any]:
        customs, courier, buyer, sellers = await self.setup()
        txs = self.presign(customs, courier, buyer, sellers)
        async with Client(self.urls[0]) as c:
            start_height = (await c.status())["height"]
        stop = asyncio.Event()
        followers = [asyncio.create_task(self.follow(i, stop)) for i in range(len(self.urls))]
        self._tasks.extend(followers)
        await asyncio.sleep(0.3)  # let the event streams attach
        failure = self._stream_failure(followers)
        if failure is not None:
            raise failure
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if not quiet:
                bar = "#" * int(30 * done / len(txs))
                print(f"\r  offered [{bar:<30}] {done}/{len(txs)}  committed "
                      f"{len(self.committed_at)}", end="", file=sys.stderr, flush=True)

        metrics_before = await self.node_samples()
        ticks_before = machine_cpu_ticks()
        client_cpu0 = time.process_time()
        t0 = time.perf_counter()
        marks: list[tuple[float, list[dict[str, float]] | None]] = [(t0, metrics_before)]
        sampler = (asyncio.create_task(self.sample_windows(marks, stop))
                   if self.window > 0 else None)
        if sampler is not None:
            self._tasks.append(sampler)
        offer_s = await self.offer(txs, progress)
        expected = len(txs) - self.rejected
        deadline = time.perf_counter() + 60
        shown = -1
        while (len(self.committed_at) < expected and time.perf_counter() < deadline
               and not any(task.done() for task in followers)):
            await asyncio.sleep(0.25)
            if not quiet and len(self.committed_at) != shown:
                shown = len(self.committed_at)
                print(f"\r  offered {done}/{len(txs)}  committed {shown}" + " " * 20,
                      end="", file=sys.stderr, flush=True)
        client_cpu = time.process_time() - client_cpu0
        ticks_after = machine_cpu_ticks()
        metrics_after = await self.node_samples()
        if sampler is not None:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            marks.append((time.perf_counter(), metrics_after))
        if not quiet:
            print(file=sys.stderr)
        failure = self._stream_failure(followers)
        if failure is not None:
            raise failure
        stop.set()
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        last_commit = max(self.committed_at.values(), default=t0)
        latencies = [(self.committed_at[h] - self.sent_at[h]) * 1000 for h in self.committed_at]
        async with Client(self.urls[0]) as c:
            end_height = (await c.status())["height"]
        blocks = end_height - start_height
        verify_rate = measure_verify_rate()
        keyed_rate = measure_keyed_verify_rate()
        cores = os.cpu_count() or 1
        bound = verify_rate * cores / len(self.urls)
        elapsed = max(1e-9, last_commit - t0)
        tps = len(self.committed_at) / elapsed
        node_cpu = loop_cpu = stages = None
        if metrics_before is not None and metrics_after is not None:
            committed = len(self.committed_at)
            node_cpu = cpu_per_tx(metrics_before, metrics_after, CPU_METRIC, committed)
            loop_cpu = cpu_per_tx(metrics_before, metrics_after, LOOP_CPU_METRIC, committed)
            stages = stage_cpu_per_tx(metrics_before, metrics_after, committed)
        return {
            "nodes": len(self.urls),
            **({"nodes_skipped": self.skipped} if self.skipped else {}),
            "offered": len(txs),
            "buyers": self.buyers,
            "offered_rate": round(len(txs) / offer_s, 1) if self.rate == 0 else self.rate,
            "committed": len(self.committed_at),
            "rejected": self.rejected,
            "rejected_codes": self.rejected_codes,
            "tx_per_s": round(tps, 1),
            "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "mean_ms": round(statistics.fmean(latencies), 1) if latencies else 0.0,
            "blocks": blocks,
            "mean_block_txs": round(len(self.committed_at) / blocks, 1) if blocks else 0.0,
            "elapsed_s": round(elapsed, 2),
            "verify_per_s_per_core": round(verify_rate),
            "verify_bound_tx_per_s": round(bound),
            "bound_fraction": round(tps / bound, 3) if bound else 0.0,
            "keyed_verify_per_s_per_core": round(keyed_rate) if keyed_rate else None,
            "node_cpu_us_per_tx": node_cpu,
            "loop_thread_cpu_us_per_tx": loop_cpu,
            "client_cpu_us_per_tx": (round(client_cpu / len(self.committed_at) * 1e6, 1)
                                     if self.committed_at else None),
            "machine_busy": busy_fraction(ticks_before, ticks_after),
            "node_python": node_pythons(metrics_after or []),
            "client_python": interpreter(),
            **({"windows": window_rows(t0, marks, self.committed_at, self.sent_at)}
               if self.window > 0 else {}),
            **({"stage_cpu_us_per_tx": stages,
                "stage_cpu_nodes": stage_nodes(metrics_after or [])} if stages else {}),
        }


def cmd_bench(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not (directory / "genesis.json").exists():
        raise CliError(f"{directory} has no genesis.json; start a devnet first "
                       "(jangbu devnet up --preset customs --dir DIR)")
    if (args.txs < 1 or args.clients < 1 or args.batch < 1
            or (args.buyers is not None and args.buyers < 1)):
        raise CliError("--txs, --clients, --batch and --buyers must be positive")
    # Not `< 0` alone: nan passes it, and --json then printed NaN, which is not JSON (review).
    if not (math.isfinite(args.rate) and args.rate >= 0):
        raise CliError("--rate must be a finite number of tx/s, >= 0 (0 = as fast as possible)")
    if not (math.isfinite(args.window) and args.window >= 0):
        raise CliError("--window must be a finite number of seconds, >= 0")
    bench = Bench(directory, args.txs, args.rate, args.clients, args.batch, args.buyers,
                  args.window)
    try:
        result = asyncio.run(bench.run(quiet=args.json, skip_unreachable=args.skip_unreachable))
    except ClientError as exc:
        raise CliError(f"node refused: {exc}") from None
    except (OSError, aiohttp.ClientError) as exc:  # (ServerDisconnectedError is no OSError)
        raise CliError(f"cannot reach the devnet: {exc or type(exc).__name__}") from None
    if args.json:
        print(json.dumps(result))
        return 0
    stages = result.pop("stage_cpu_us_per_tx", None)
    counted = result.pop("stage_cpu_nodes", 0)
    windows = result.pop("windows", None)
    width = max(len(k) for k in result)
    for name, value in result.items():
        print(f"{name:<{width}}  {value}")
    if stages:
        print(f"\nCPU per transaction and node by stage, µs, over the {counted} of "
              f"{result['nodes']} nodes that report it (each inclusive of the stages inside):")
        for name, value in sorted(stages.items(), key=lambda item: -item[1]):
            print(f"  {name:<22} {value:8.1f}")
    if windows:
        print(f"\nby window of {args.window:g} s (commits seen in it):")
        print(f"  {'t_s':>7} {'committed':>9} {'tx/s':>8} {'p50 ms':>9} {'p99 ms':>9} "
              f"{'node µs/tx':>10} {'bg cpu s':>8} {'compact s':>9}")
        for row in windows:
            shown = ["-" if row[key] is None else row[key] for key in
                     ("node_cpu_us_per_tx", "background_cpu_s", "leveldb_compaction_s")]
            print(f"  {row['t_s']:>7} {row['committed']:>9} {row['tx_per_s']:>8} "
                  f"{row['p50_ms']:>9} {row['p99_ms']:>9} {shown[0]:>10} {shown[1]:>8} "
                  f"{shown[2]:>9}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="measure committed tx/s and latency on a running devnet")
    p.add_argument("--dir", required=True, help="the devnet directory (with genesis.json)")
    p.add_argument("--txs", type=int, default=5000, help="transactions to offer")
    p.add_argument("--rate", type=float, default=0, help="offered tx/s (0 = as fast as possible)")
    p.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    p.add_argument("--batch", type=int, default=100, help="transactions per batch request")
    p.add_argument("--buyers", type=int, default=None,
                   help=f"distinct buyers per run, new in each run (default: {DEFAULT_BUYERS}, "
                        f"or one per {ORDERS_PER_BUYER} orders in longer runs; fewer make "
                        "larger combined-taxation groups)")
    p.add_argument("--window", type=float, default=0,
                   help="also report each WINDOW seconds of the run on its own (commits, "
                        "latency, node CPU per transaction; 0 = off)")
    p.add_argument("--preset", choices=["customs"], default="customs",
                   help="workload (the clearance workflow)")
    p.add_argument("--skip-unreachable", action="store_true",
                   help="run against the nodes that answer, leaving out those that do not "
                        "(without it, a node that does not answer is an error)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)
