"""Run many seeded consensus simulations and print a summary.

    python tests/simulation/run.py --seeds 1000 [--start 0] [--nodes 4] [--byzantine k]

Prints one line per failing seed, then ``runs=N violations=V liveness_failures=L``; exits 1
when any safety violation or liveness failure was found.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jangbu_sim import BEHAVIOURS, SimConfig, run_seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--byzantine", type=int, default=None, help="default: f")
    parser.add_argument("--heights", type=int, default=5)
    parser.add_argument(
        "--behaviours", default=",".join(BEHAVIOURS), help="comma-separated byzantine kinds"
    )
    parser.add_argument(
        "--no-liveness", action="store_true", help="do not check liveness (beyond-bound runs)"
    )
    args = parser.parse_args(argv)
    config = SimConfig(
        n=args.nodes,
        byzantine=args.byzantine,
        heights=args.heights,
        behaviours=tuple(args.behaviours.split(",")),
        check_liveness=not args.no_liveness,
    )
    violations = liveness = 0
    started = time.perf_counter()
    for seed in range(args.start, args.start + args.seeds):
        result = run_seed(seed, config)
        if result.violations:
            violations += 1
            print(f"seed={seed} behaviours={result.behaviours} violations={result.violations}")
        if result.liveness_failure:
            liveness += 1
            print(f"seed={seed} behaviours={result.behaviours} liveness={result.liveness_failure}")
        sys.stdout.flush()
    elapsed = time.perf_counter() - started
    print(f"# nodes={args.nodes} elapsed={elapsed:.1f}s", file=sys.stderr)
    print(f"runs={args.seeds} violations={violations} liveness_failures={liveness}")
    return 1 if violations or liveness else 0


if __name__ == "__main__":
    sys.exit(main())
