"""Instructions per transaction of the node pipeline, counted by valgrind (callgrind).

    .venv/bin/python benchmarks/bench_instructions.py [--txs 1000] [--pure-contracts]

Why: on a shared VM the CPU time of the same run moves by ±5% from one minute to the
next, more than most single changes save, so timing alone cannot tell a 1% gain from
noise. Under callgrind the same ``bench_pipeline.py`` run executes the same instructions
to within a few hundred in billions (``PYTHONHASHSEED=0`` fixes dict order; the keys,
nonces and signatures of the run are derived, not random). Two runs of the same size, one
stopped once its transactions are signed (``--setup-only``), give by difference the
instructions of everything ``bench_pipeline`` times: decode, admission on each of its two
nodes (two signature checks), build, block decode, validate, commit.

Instructions are not time: a SHA-256 under valgrind does not use the CPU's SHA
extensions, and a cache miss costs no instruction. Use it to compare two builds of the
same code path, and time (``bench_pipeline.py``, ``jangbu bench``) for the size of a gain.
Takes ~40 s per 1,000 transactions.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def count(txs: int, env: dict[str, str], *extra: str) -> int:
    """Instructions of one ``bench_pipeline.py --txs txs`` run (the whole process)."""
    with tempfile.TemporaryDirectory(prefix="jangbu-callgrind-") as tmp:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
             sys.executable, str(ROOT / "benchmarks" / "bench_pipeline.py"), "--txs", str(txs),
             *extra],
            env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=1000)
    parser.add_argument("--pure-contracts", action="store_true",
                        help="run the contracts from source (JANGBU_PURE_CONTRACTS=1)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if args.pure_contracts:
        env["JANGBU_PURE_CONTRACTS"] = "1"
    setup = count(args.txs, env, "--setup-only")
    full = count(args.txs, env)
    print(f"instructions, --txs {args.txs}: {full:,} (set-up and signing alone: {setup:,})")
    print(f"per transaction, the timed stages: {(full - setup) / args.txs:,.0f}")


if __name__ == "__main__":
    main()
