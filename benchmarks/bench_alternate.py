"""Throughput of fresh devnets, alternating checkouts (or interpreters) run by run.

    .venv/bin/python benchmarks/bench_alternate.py --tree a=/work/main --tree b=/tmp/other
        [--pairs 6] [--txs 20000] [--warmup 0] [--rate 0] [--client PATH] [--json]

Each ``--tree NAME=PATH`` is a checkout of this code with its own virtualenv
(``PATH/.venv``, installed with ``pip install -e .``, which builds the compiled modules in
place for that venv's interpreter). A run is what a user does by hand: ``jangbu devnet up
--preset customs --fresh`` with the tree's ``jangbu``, ``jangbu bench --txs N --json``,
``jangbu devnet down``. Pairs alternate which tree goes first. It prints each run's
committed tx/s, the nodes' CPU per transaction and node, latency, the Ed25519 rate the
bench measured and the interpreter the nodes ran, then each tree's medians and how many
pairs each tree used less CPU per transaction in.

``--warmup N`` first commits N orders on the fresh devnet, unmeasured, then runs the
measured bench on the same network: a store past its first memtable flush, with LevelDB's
compactions running, is the sustained regime of a node that has run for a while (a fresh
devnet's first 20,000 orders never flush the 64 MiB memtable).

To compare interpreters rather than code, give two checkouts of the same commit whose
venvs were made by different interpreters (``git worktree add /tmp/deb HEAD``, then in it
``/usr/bin/python3.11 -m venv .venv && .venv/bin/pip install -e .``), and ``--client`` one
of them so that the same load generator drives both.

Why: this machine's speed drifts by a third within minutes, more than most changes save,
so single runs of one tree then the other compare the machine's phases, not the trees.
Runs seconds apart drift together, and CPU per transaction and node (read from the nodes'
``/metrics``) moves less than tx/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any


def parse_trees(items: list[str]) -> dict[str, Path]:
    """``NAME=PATH`` items as names to checkouts, each with a ``.venv/bin/jangbu``."""
    trees: dict[str, Path] = {}
    for item in items:
        name, _, path = item.partition("=")
        if not name or not path:
            raise SystemExit(f"--tree {item!r}: expected NAME=PATH")
        if name in trees:
            raise SystemExit(f"--tree {item!r}: the name {name!r} is given twice")
        if not (Path(path) / ".venv" / "bin" / "jangbu").is_file():
            raise SystemExit(f"--tree {item!r}: {path}/.venv/bin/jangbu is missing (make a "
                             "venv there and pip install -e . into it)")
        trees[name] = Path(path).resolve()
    if len(trees) < 2:
        raise SystemExit("give at least two --tree NAME=PATH to alternate")
    return trees


def jangbu(tree: Path, *args: str, timeout: float = 900) -> str:
    """Run ``tree``'s jangbu with ``args`` in ``tree``; its stdout (exits on failure)."""
    done = subprocess.run([str(tree / ".venv" / "bin" / "jangbu"), *args], cwd=tree,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: jangbu {' '.join(args)} failed "
                         f"({done.returncode}): {done.stderr.strip()[-600:]}")
    return done.stdout


def one_run(tree: Path, client: Path | None, args: argparse.Namespace,
            workdir: Path) -> dict[str, Any]:
    """A fresh devnet of ``tree``, loaded by ``client``'s (else ``tree``'s) jangbu bench."""
    net = workdir / "net"
    shutil.rmtree(net, ignore_errors=True)
    jangbu(tree, "devnet", "up", "--preset", "customs", "--dir", str(net), "--fresh",
           "--base-port", str(args.base_port))
    try:
        if args.warmup:
            jangbu(client or tree, "bench", "--dir", str(net), "--txs", str(args.warmup),
                   "--json")
        out = jangbu(client or tree, "bench", "--dir", str(net), "--txs", str(args.txs),
                     "--rate", str(args.rate), "--json")
    finally:
        jangbu(tree, "devnet", "down", "--dir", str(net))
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def median_of(runs: list[dict[str, Any]], field: str) -> float:
    values = [run[field] for run in runs if isinstance(run.get(field), (int, float))]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--pairs", type=int, default=6, help="rounds of one run per tree")
    parser.add_argument("--txs", type=int, default=20_000, help="orders per run")
    parser.add_argument("--warmup", type=int, default=0,
                        help="orders committed on each fresh devnet before the measured run")
    parser.add_argument("--rate", type=float, default=0, help="offered tx/s (0 = at once)")
    parser.add_argument("--client", default="",
                        help="the checkout whose jangbu bench loads every run (default: "
                             "each tree's own)")
    parser.add_argument("--base-port", type=int, default=27400)
    parser.add_argument("--json", action="store_true", help="one JSON object at the end")
    args = parser.parse_args()
    trees = parse_trees(args.tree)
    client = Path(args.client).resolve() if args.client else None
    if args.pairs < 1 or args.txs < 1 or args.warmup < 0:
        raise SystemExit("--pairs and --txs must be positive, --warmup not negative")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    names = list(trees)
    with tempfile.TemporaryDirectory(prefix="jangbu-alternate-") as tmp:
        for pair in range(args.pairs):
            order = names if pair % 2 == 0 else names[::-1]
            for name in order:
                result = one_run(trees[name], client, args, Path(tmp))
                runs[name].append(result)
                if not args.json:
                    print(f"pair {pair + 1} {name:<10} {result['tx_per_s']:8.1f} tx/s "
                          f"{result['node_cpu_us_per_tx'] or float('nan'):7.1f} µs/node·tx "
                          f"p50 {result['p50_ms']:7.1f} p99 {result['p99_ms']:7.1f} ms "
                          f"Ed25519 {result['verify_per_s_per_core']:6d}/s "
                          f"{'; '.join(result.get('node_python', []))}", flush=True)
    # A pair is won by the tree that used the least CPU per transaction and node in it.
    wins = {name: 0 for name in trees}
    for pair in range(args.pairs):
        cpu: dict[str, float] = {}
        for name in trees:
            value = runs[name][pair].get("node_cpu_us_per_tx")
            if isinstance(value, (int, float)):
                cpu[name] = float(value)
        if len(cpu) == len(trees):
            wins[min(cpu, key=cpu.__getitem__)] += 1
    summary = {name: {"median_tx_per_s": median_of(runs[name], "tx_per_s"),
                      "median_node_cpu_us_per_tx": median_of(runs[name], "node_cpu_us_per_tx"),
                      "median_p50_ms": median_of(runs[name], "p50_ms"),
                      "pairs_with_least_cpu": wins[name],
                      "node_python": runs[name][0].get("node_python", [])}
               for name in trees}
    if args.json:
        print(json.dumps({"summary": summary, "runs": runs}))
        return
    print()
    for name, row in summary.items():
        print(f"{name:<10} median {row['median_tx_per_s']:8.1f} tx/s "
              f"{row['median_node_cpu_us_per_tx']:7.1f} µs/node·tx "
              f"p50 {row['median_p50_ms']:7.1f} ms; least CPU in "
              f"{row['pairs_with_least_cpu']} of {args.pairs} pairs")


if __name__ == "__main__":
    main()
