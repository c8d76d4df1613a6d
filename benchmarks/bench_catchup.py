"""Catch-up in one process: applying certified blocks from their diffs vs executing them.

    .venv/bin/python benchmarks/bench_catchup.py [--blocks 10] [--mode diff|exec] [--profile]

One engine builds ``--blocks`` blocks of 1,000 clearance orders and remembers each block's
diff as a node does; each block then travels as the sync message a peer would send
(``{"t": "blocks", "items": [[block, certificate, diff]]}``, canonically encoded) to a
second engine, which decodes it, verifies the certificate and either applies the diff
(``--mode diff``: checked against the certified roots) or executes the block (``exec``),
then commits. Prints CPU µs per transaction of the receiving side: the ceiling of catch-up
on this machine without network round trips or process start.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import bench_pipeline as pipeline  # noqa: E402

from consensus import canonical  # noqa: E402
from consensus.types import ValidatorSet  # noqa: E402
from node.block import Block  # noqa: E402
from node.engine import certificate_verifier  # noqa: E402
from node.recent_diffs import RecentDiffs, diff_from_wire  # noqa: E402
from node.tx import Transaction  # noqa: E402

import ledger_support  # noqa: E402


def order(i: int, sealed: str) -> Transaction:
    return Transaction.create(pipeline.key("seller"), pipeline.CHAIN, "clearance",
                              "create_order", {
                                  "order_id": f"O-{i}", "courier": "courier",
                                  "buyer_platform": "buyer",
                                  "buyer_ref": canonical.digest(f"b{i}".encode()).hex(),
                                  "buyer_sealed": sealed, "currency": "USD", "ship_from": "US",
                                  "items": [{"hs": "6109.10-0000", "description": "T-shirt",
                                             "kind": "general", "quantity": 1,
                                             "unit_price": 1500}]}, i + 10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--mode", choices=["diff", "exec"], default="diff")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    ledger_support.CHAIN_ID = pipeline.CHAIN
    genesis = pipeline.genesis()
    work = tempfile.mkdtemp(prefix="jangbu-catchup-")
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    _, source, pool = pipeline.open_engine(work + "/source", genesis)
    _, target, _ = pipeline.open_engine(work + "/target", genesis)
    verify = certificate_verifier(pipeline.CHAIN,
                                  ValidatorSet(tuple(genesis.validator_pubkeys())))
    target.verify_commit = verify
    validator = pipeline.key("v")
    proposer = validator.verify_key.encode()
    diffs = RecentDiffs(max_bytes=1 << 34)
    rates = Transaction.create(pipeline.key("customs"), pipeline.CHAIN, "clearance",
                               "set_rates", {"rates": {"USD": {"usd_micro": 1_000_000,
                                                               "krw_centi": 145_025}}}, 1)
    sealed = base64.b64encode(b"s" * 120).decode()
    batches = [[rates]] + [[order(b * 1000 + i, sealed) for i in range(1000)]
                           for b in range(args.blocks)]
    messages, cert = [], None
    for height, txs in enumerate(batches, 1):
        for tx in txs:
            pool.add(tx)
        block = source.build_block(proposer=proposer, time_ms=1000 + height,
                                   txs=pool.reap(10**6, 10**9), last_commit=cert)
        cert = ledger_support.certify(height, block.hash, [validator])
        result = source.commit(block, cert)
        pool.remove([tx.hash for tx in block.txs])
        diffs.remember(height, result.state_writes, result.receipts)
        messages.append(canonical.encode(
            {"t": "blocks", "items": [[block.encoded, cert, diffs.wire(height)]]}))
    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    wall_started = time.perf_counter()
    if profiler:
        profiler.enable()
    for message in messages:
        raw, item_cert, diff = canonical.decode(message)["items"][0]
        block = Block.decode(raw, synced=True)
        # As node/driver.py does: the engine verifies the certificate either way.
        if args.mode == "diff":
            receipts, writes = diff_from_wire(diff)
            target.apply_certified_diff(block, item_cert, receipts, writes)
        else:
            target.validate_block(block, certificate=item_cert)
        target.commit(block, item_cert, background=True)  # as node/driver.py does
    target.store.settle()
    if profiler:
        profiler.disable()
    elapsed = time.process_time() - started
    wall = time.perf_counter() - wall_started
    txs = sum(len(batch) for batch in batches)
    assert target.tree.root == source.tree.root
    print(f"{args.mode}: {elapsed / txs * 1e6:.1f} µs CPU per transaction (all threads), "
          f"{wall / txs * 1e6:.1f} µs wall: {txs / wall:,.0f} tx/s; "
          f"{sum(map(len, messages)) / len(messages):,.0f} bytes per block message")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
