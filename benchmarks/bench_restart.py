"""A killed node's restart and catch-up, many times over on the same data, alternating
builds of the code: a pair of runs in seconds instead of minutes.

    .venv/bin/python benchmarks/bench_restart.py [--pairs 6] [--txs 40000] [--behind 20000]
        [--tree new=/work/main --tree old=/tmp/old]

It creates a 4-node customs network, commits ``--txs`` orders, kills one node (SIGKILL)
and copies its data directory as the kill left it, lets ``--behind`` more orders commit,
then, with the peers idle, restarts the node on fresh copies of that directory again and
again, each time until it has caught up. Every run does the same work: the same log
replay, state and blocks to sync (the peers hold the blocks' diffs in memory). Each
``--tree NAME=PATH`` is a checkout of the code (built in place:
``setup.py build_ext --inplace``) whose node is started for a run, by the checkout's own
``.venv/bin/python`` if it has one (to compare interpreters), else by this one; pairs
alternate which goes first. Per run it prints the time to the first API answer, the whole
catch-up, and the process's CPU (all threads) in the start and in the sync, then the
medians.

Why: ``bench_scale.py --restart-behind`` measures the same thing once per network, which
takes minutes, and this machine's speed drifts by 30% and more over minutes; alternated
runs seconds apart drift together. CPU seconds drift less than wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_scale  # noqa: E402


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_trees(items: list[str]) -> dict[str, Path]:
    trees: dict[str, Path] = {}
    for item in items:
        name, _, path = item.partition("=")
        if not name or not path or not (Path(path) / "cli" / "main.py").is_file():
            raise SystemExit(f"--tree {item!r}: expected NAME=PATH of a checkout of this code")
        trees[name] = Path(path).resolve()
    return trees


def interpreter_of(tree: Path) -> Path:
    """The tree's own venv's Python if it has one (interpreters compared: each checkout's
    venv made by one of them, benchmarks/bench_alternate.py), else this one's (builds
    compared: ``setup.py build_ext --inplace`` with this interpreter)."""
    own = tree / ".venv" / "bin" / "python"
    return own if own.is_file() else Path(sys.executable)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--txs", type=int, default=40000)
    parser.add_argument("--behind", type=int, default=20000)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                        help="a checkout to run the restarted node from (repeatable; default: "
                             "this one)")
    args = parser.parse_args()
    trees = parse_trees(args.tree) if args.tree else {"this": ROOT}
    work = Path(tempfile.mkdtemp(prefix="jangbu-restart-"))
    net = bench_scale.make(work / "n4", 4)
    net.start_all()
    try:
        bench_scale.bench(net.directory, args.txs)
        from_height = net.status("buyer")["height"]
        net.kill("buyer")
        data = net.home("buyer") / "data"
        snapshot = work / "buyer-data-at-kill"
        shutil.copytree(data, snapshot)
        net.start("buyer")
        net.wait_ready("buyer", timeout=120)
        growth = bench_scale.bench(net.directory, args.behind)
        target = net.status("customs")["height"]
        net.wait_height(target, ["buyer"], timeout=120)
        net.kill("buyer")
        txs = bench_scale.orders_between(net, from_height, target)
        print(f"chain grew at {growth['tx_per_s']} tx/s; each run catches up "
              f"{target - from_height} blocks, {txs} orders", flush=True)
        runs: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in trees}
        names = list(trees)
        for pair in range(args.pairs):
            for name in names if pair % 2 == 0 else names[::-1]:
                shutil.rmtree(data)
                shutil.copytree(snapshot, data)
                tree = trees[name]
                with open(net.home("buyer") / "node.log", "ab") as log:
                    started = time.monotonic()
                    proc = subprocess.Popen(
                        [str(interpreter_of(tree)), "-m", "cli.main", "node", "start", "--home",
                         str(net.home("buyer"))],
                        cwd=tree, stdout=log, stderr=log,
                        env={**os.environ, "PYTHONPATH": str(tree)})
                net.procs["buyer"] = proc
                net.wait_ready("buyer", timeout=120, poll=0.01)
                ready = time.monotonic() - started
                start_cpu = process_cpu_s(proc.pid)
                net.wait_height(target, ["buyer"], timeout=600, poll=0.01)
                total = time.monotonic() - started
                sync_cpu = process_cpu_s(proc.pid) - start_cpu
                net.kill("buyer")
                runs[name].append((ready, total, start_cpu, sync_cpu))
                print(f"{name}: start {ready:.3f} s (CPU {start_cpu:.2f}), whole catch-up "
                      f"{total:.3f} s, sync {total - ready:.3f} s (CPU {sync_cpu:.2f}), "
                      f"{txs / total:,.0f} tx/s", flush=True)
        for name, results in runs.items():
            columns = list(zip(*results, strict=True))
            ready, total, start_cpu, sync_cpu = (statistics.median(c) for c in columns)
            print(f"{name} medians: start {ready:.3f} s (CPU {start_cpu:.2f}), whole catch-up "
                  f"{total:.3f} s = {txs / total:,.0f} tx/s, sync CPU {sync_cpu:.2f} s")
    finally:
        for org in list(net.procs):
            with contextlib.suppress(Exception):  # already gone
                net.kill(org, signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
