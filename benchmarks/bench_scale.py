"""The scale curve and the cost of catch-up, on real node processes on this machine.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 4,7,10] [--txs 3000]

For each validator count it creates a network (customs, seller, courier, buyer plus
``observer`` organisations), runs ``jangbu bench --json`` against it and prints one line.
Then, on the 4-validator network, it stops one node, wipes its data directory, restarts it
and measures how fast it catches up (blocks/s and tx/s replayed through block sync): its
peers send the blocks with their state diffs, which it applies after checking them against
the certified roots. ``--catch-up-without-diffs`` restarts the peers first (they then hold
no diffs), so every block is executed: the cost of catch-up by execution alone.
``--restart-behind N`` measures a killed node instead, restarted with its data once N more
orders have committed: start-up (opening and checking its state) included. The
networks' directories are removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from cli.network import init_network  # noqa: E402

from netutil import Network, free_base_port, http_json  # noqa: E402

ROLES = [("customs", "customs"), ("seller", "seller"), ("courier", "courier"),
         ("buyer", "buyer")]


def make(directory: Path, n: int) -> Network:
    orgs = [(org, org, [role]) for org, role in ROLES]
    orgs += [(f"observer{i}", f"observer{i}", ["observer"]) for i in range(n - len(ROLES))]
    base = free_base_port(2 * n)
    init_network(directory, orgs, ["membership", "clearance"], chain_id=f"scale-{n}",
                 base_port=base)
    return Network(directory, [o[0] for o in orgs], base)


def bench(directory: Path, txs: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "cli.main", "bench", "--dir", str(directory),
                          "--txs", str(txs), "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def orders_between(net: Network, low: int, high: int) -> int:
    """Transactions in the blocks above ``low`` up to ``high``."""
    return sum(len(http_json(f"{net.api('customs')}/v1/blocks/{h}")["txs"])
               for h in range(low + 1, high + 1))


def catch_up(net: Network, with_diffs: bool = True) -> dict[str, float]:
    target = net.status("customs")["height"]
    total_txs = orders_between(net, 0, target)
    if not with_diffs:  # restarted peers hold no diffs: every block is executed
        for org in ("customs", "seller", "courier"):
            net.kill(org, signal.SIGTERM)
            net.start(org)
            net.wait_ready(org, timeout=60)
    net.kill("buyer")
    shutil.rmtree(net.home("buyer") / "data")
    started = time.monotonic()
    net.start("buyer")
    # Polled every 10 ms (a status answer is cheap): the 0.1 s of the test helpers' polls
    # was up to a seventh of a 20,000-transaction catch-up.
    net.wait_ready("buyer", timeout=60, poll=0.01)
    net.wait_height(target, ["buyer"], timeout=600, poll=0.01)
    elapsed = time.monotonic() - started
    return {"diffs": with_diffs, "blocks": target, "txs": total_txs,
            "seconds": round(elapsed, 2), "blocks_per_s": round(target / elapsed, 1),
            "txs_per_s": round(total_txs / elapsed)}


def restart_catch_up(net: Network, behind: int) -> dict[str, object]:
    """A node killed, kept down while ``behind`` more orders commit, then restarted with the
    data the kill left: the recovery aim's case (DESIGN.md: a killed node rejoins and
    catches up >= 10x faster than the chain grows), start-up included.

    The chain has to grow while the node is down, but ``jangbu bench`` offers to every
    node: so the node's data directory is copied as a kill leaves it, the node goes on
    running while the orders commit, and is then killed again and restarted on the copy.
    Its signer state (outside the data directory) stays the newest, as after a real outage.
    """
    from_height = net.status("buyer")["height"]  # idle network: the height it is killed at
    net.kill("buyer")  # SIGKILL: what a crash leaves
    data = net.home("buyer") / "data"
    snapshot = net.home("buyer").parent / "buyer-data-at-kill"
    shutil.copytree(data, snapshot)
    net.start("buyer")
    net.wait_ready("buyer", timeout=120)
    growth = bench(net.directory, behind)
    target = net.status("customs")["height"]
    net.kill("buyer")
    shutil.rmtree(data)
    snapshot.rename(data)
    started = time.monotonic()
    net.start("buyer")
    net.wait_ready("buyer", timeout=120, poll=0.01)
    ready = time.monotonic() - started
    net.wait_height(target, ["buyer"], timeout=600, poll=0.01)
    elapsed = time.monotonic() - started
    txs = orders_between(net, from_height, target)
    rate = txs / elapsed
    return {"mode": "restart", "state_height": from_height, "blocks": target - from_height,
            "txs": txs, "start_s": round(ready, 2), "seconds": round(elapsed, 2),
            "txs_per_s": round(rate), "growth_tx_per_s": growth["tx_per_s"],
            "ratio_to_growth": round(rate / float(str(growth["tx_per_s"])), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="4,7,10")
    parser.add_argument("--txs", type=int, default=3000)
    parser.add_argument("--catch-up-without-diffs", action="store_true",
                        help="restart the peers before the catch-up, so it executes every block")
    parser.add_argument("--restart-behind", type=int, default=0, metavar="N",
                        help="instead of a wiped node: one killed after the run and restarted "
                             "with its data once N more orders have committed")
    parser.add_argument("--keep", action="store_true",
                        help="keep the networks' directories (logs, stores) and print where")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="jangbu-scale-"))
    try:
        for n in sizes:
            net = make(work / f"n{n}", n)
            try:
                net.start_all()
                result = bench(net.directory, args.txs)
                print(json.dumps({"validators": n, **result}), flush=True)
                if n == sizes[0] and args.restart_behind:
                    catch = restart_catch_up(net, args.restart_behind)
                    print(json.dumps({"catch_up": catch}), flush=True)
                elif n == sizes[0]:
                    catch = catch_up(net, with_diffs=not args.catch_up_without_diffs)
                    print(json.dumps({"catch_up": catch}), flush=True)
            finally:
                net.stop_all()
    finally:
        # Each run leaves ~150 MB of stores (GBs for large --txs): gone unless asked.
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
