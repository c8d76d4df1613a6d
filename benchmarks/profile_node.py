"""Where one node's CPU goes under ``jangbu bench`` load, by library and by symbol (Linux perf).

    .venv/bin/python benchmarks/profile_node.py [--txs 20000] [--warm 0] [--node seller]
                                                [--freq 999] [--top 25] [--keep]

Why perf and not py-spy: four nodes and the load generator share two cores, so a node's
threads are often runnable but not running. py-spy samples wall time and counts such a
thread as busy in whatever it last did; in a 20,000-order run it put 15% of the seller's
samples in ``LedgerStore.commit_block``, most of it the synced write waiting on the disk.
``perf record -e cpu-clock`` samples only while the process is on a CPU and sees every
library the node runs (libpython, libsodium's Ed25519, LevelDB, snappy, OpenSSL, the
compiled modules, the kernel): what the node pays, not what it waits for. It cannot name
Python functions on CPython 3.11 (3.12's perf trampoline can); py-spy ``--gil`` still
answers which Python code holds the interpreter.

It creates a 4-node customs network in a temporary directory, profiles one node while
``jangbu bench --txs N`` runs against the network, and prints the node's CPU per committed
transaction split by library (the share of samples times the node's measured CPU per
transaction: user and system time of the process, all threads), then by thread, then the
top symbols. ``--warm N`` first commits N orders unprofiled, so the profile is of a node
whose store has grown and whose LevelDB compacts (the sustained regime) rather than of a
fresh one.
Needs ``perf`` (linux-perf / linux-tools) and permission to attach to the node (root, or
``kernel.perf_event_paranoid`` ≤ 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from cli.bench import COMPACTION_METRIC, parse_samples  # noqa: E402

from netutil import make_network  # noqa: E402

REPORT_LINE = re.compile(r"^\s*([\d.]+)%\s+(.+?)\s*$")


def parse_report(text: str) -> list[tuple[float, str]]:
    """``perf report --stdio -g none`` lines as (percent, what), in the report's order."""
    rows = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = REPORT_LINE.match(line)
        if match:
            rows.append((float(match.group(1)), match.group(2)))
    return rows


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` so far, all threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def perf_report(data: Path, sort: str) -> list[tuple[float, str]]:
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                          "-g", "none", "--sort", sort], capture_output=True, text=True,
                         check=True)
    return parse_report(out.stdout)


def leveldb_figures(api: str) -> tuple[float, float]:
    """The node's LevelDB write buffer (bytes) and compaction seconds so far, from
    ``/metrics``: whether the profiled window saw a flush or a compaction at all (a node
    with a 96 MiB buffer first flushes ~50% later than one with 64)."""
    text = urllib.request.urlopen(api + "/metrics", timeout=10).read().decode()
    samples = parse_samples(text)
    return (samples.get("jangbu_leveldb_write_buffer_bytes", math.nan),
            samples.get(COMPACTION_METRIC, math.nan))


def run_bench(directory: Path, txs: int) -> subprocess.CompletedProcess[str]:
    """``jangbu bench --txs txs`` against the network in ``directory``; exits on failure."""
    bench = subprocess.run([sys.executable, "-m", "cli.main", "bench", "--dir", str(directory),
                            "--txs", str(txs), "--json"],
                           cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if bench.returncode != 0:
        sys.exit(f"profile_node: the bench failed:\n{bench.stderr}")
    return bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=20_000)
    parser.add_argument("--node", default="seller", help="organisation whose node to profile")
    parser.add_argument("--freq", type=int, default=999, help="samples per second")
    parser.add_argument("--top", type=int, default=25, help="symbols to print")
    parser.add_argument("--keep", action="store_true", help="keep the network and perf.data")
    parser.add_argument("--warm", type=int, default=0,
                        help="orders to commit unprofiled first (a grown store)")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        sys.exit("profile_node: needs Linux perf on PATH (package linux-perf or linux-tools)")
    work = Path(tempfile.mkdtemp(prefix="jangbu-profile-"))
    net = make_network(work / "net")
    data = work / "perf.data"
    try:
        net.start_all()
        pid = net.procs[args.node].pid
        if args.warm:
            run_bench(net.directory, args.warm)
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", str(args.freq),
                                 "-p", str(pid), "-o", str(data)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        user0, sys0 = cpu_seconds(pid)
        leveldb0 = leveldb_figures(net.api(args.node))
        bench = run_bench(net.directory, args.txs)
        user1, sys1 = cpu_seconds(pid)
        leveldb1 = leveldb_figures(net.api(args.node))
        perf.send_signal(signal.SIGINT)
        _, perf_err = perf.communicate(timeout=60)
        if not data.exists():
            sys.exit(f"profile_node: perf recorded nothing:\n{perf_err.decode()}")
        result = json.loads(bench.stdout.strip().splitlines()[-1])
        committed = result["committed"]
        user_us = (user1 - user0) / committed * 1e6
        sys_us = (sys1 - sys0) / committed * 1e6
        node_us = user_us + sys_us
        print(f"{committed} orders, {result['tx_per_s']:.0f} tx/s; node {args.node}: "
              f"{node_us:.0f} µs of CPU per transaction ({user_us:.0f} user, "
              f"{sys_us:.0f} system)")
        print(f"LevelDB: write buffer {leveldb1[0] / 2**20:.0f} MiB, "
              f"{leveldb1[1] - leveldb0[1]:.0f} s of compactions while profiled "
              f"({leveldb1[1]:.0f} s since the node started)")
        print("\nby library: share of samples, µs per transaction")
        for percent, dso in perf_report(data, "dso"):
            if percent >= 0.1:
                print(f"  {percent:5.1f}%  {percent / 100 * node_us:6.1f}  {dso}")
        print("\nby thread: share of samples, µs per transaction")
        for percent, thread in perf_report(data, "pid"):  # perf's "pid" is per thread
            if percent >= 0.1:
                print(f"  {percent:5.1f}%  {percent / 100 * node_us:6.1f}  {thread}")
        print(f"\ntop {args.top} symbols")
        for percent, symbol in perf_report(data, "dso,sym")[:args.top]:
            print(f"  {percent:5.1f}%  {symbol}")
    finally:
        net.stop_all()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
