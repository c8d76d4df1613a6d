"""Where a node's start goes: a timeline of ``jangbu node start``'s steps on copies of a
node's home, each run in a fresh interpreter.

    .venv/bin/python benchmarks/bench_start.py --home NODE_HOME [--runs 3]

``NODE_HOME`` is a stopped node's home (``config.toml``, keys, ``data/``): for the restart
of a killed node, a copy its kill left (``bench_scale.py --restart-behind N --keep`` keeps
the networks). Each run copies the home to a temporary directory (so every run replays the
same LevelDB log), then starts the node there as ``jangbu node start`` does (the store's
open begun on a thread first, then the node's imports), timing each step from the
interpreter's start, until the node listens; it then stops it. Peers are not needed.

Why: a killed node's catch-up is its start plus its sync, and the start is a race between
LevelDB's log replay (on a thread) and the imports, then the state pass; the steps' ends
show which is on the critical path (docs/benchmarks.md, twenty-first round).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import sys, time
T0 = time.perf_counter()
marks = []


def mark(what):
    marks.append((time.perf_counter() - T0, what))


home = sys.argv[1]
import cli.main
import node.store_open as store_open

run = store_open.PendingOpen.run


def timed_run(self, path):
    run(self, path)
    mark("LevelDB open ended (its thread)")


store_open.PendingOpen.run = timed_run
cli.main._begin_opening_the_store(["--home", home])
mark("store open begun")
import asyncio
from node.lean_import import without_eager_ca_bundle
with without_eager_ca_bundle():
    import node.app as app
mark("node imported")
from node import state_check, store


def timed(owner, name, label):
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter() - T0
        result = real(*args, **kwargs)
        marks.append((started, label + " began"))
        mark(label + " ended")
        return result

    setattr(owner, name, wrapper)


timed(store.LedgerStore, "open", "store taken")
timed(store.LedgerStore, "load_state_tree", "state pass")
timed(app, "engine_root_mismatch", "last block check")
from node.config import load_config

config = load_config(home)


async def main():
    node = app.Node(config)
    mark("node built")
    await node.start()
    mark("listening")
    await node.stop()
    node.store.close()


app.setup_logging("warning", "text")
with asyncio.Runner(loop_factory=app.event_loop_factory()) as runner:
    runner.run(main())
for at, what in sorted(marks):
    print(f"{at:7.3f} s  {what}")
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, type=Path, help="a stopped node's home")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not (args.home / "config.toml").is_file():
        parser.error(f"{args.home} is not a node's home (no config.toml)")
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="jangbu-start-") as work:
            home = Path(work) / "home"
            shutil.copytree(args.home, home)
            out = subprocess.run([sys.executable, "-c", CHILD, str(home)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                sys.exit(f"run {run} failed:\n{out.stderr}")
            print(f"run {run}:\n{out.stdout}", flush=True)


if __name__ == "__main__":
    main()
