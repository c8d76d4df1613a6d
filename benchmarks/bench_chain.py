"""Committing a long chain through one engine: CPU and wall time per transaction.

    .venv/bin/python benchmarks/bench_chain.py [--blocks 100] [--txs-per-block 1000]
                                               [--leveldb-defaults] [--every N]
                                               [--wal file|leveldb|none]

The proposer's path for every block (mempool admission with signature check, build =
execute + roots, commit = one synced LevelDB batch) over a growing store, so LevelDB's
background compaction — invisible in a one-block benchmark — is counted: CPU time is the
whole process's (``getrusage``), threads included. ``--leveldb-defaults`` opens the store
with LevelDB's own defaults instead of ``node.store_open.LEVELDB_OPTIONS``, to show why they are
tuned. ``--every N`` also prints each stretch of N blocks on its own: a cost that grows
with the chain (a cache outgrown, compaction falling behind) shows as a rising line.
``--wal`` writes each block's consensus WAL record (the proposed block) as a node does:
to its file (``file``, node/wal_file.py, the default), or as nodes did before the
twentieth round (``leveldb``: put under ``w/`` unsynced, deleted at the commit), or not at
all (``none``).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import bench_pipeline as pipeline  # noqa: E402

from cli.bench import default_buyers  # noqa: E402
from consensus import canonical  # noqa: E402
from consensus.events import ProposalValueReady  # noqa: E402
from consensus.wal import WalRecord  # noqa: E402
from node import state_tree, store_open  # noqa: E402
from node.driver import WAL_PREFIX  # noqa: E402
from node.tx import Transaction  # noqa: E402
from node.wal_file import WalFile  # noqa: E402

import ledger_support  # noqa: E402


def buyer_ref(index: int) -> str:
    return canonical.digest(f"b{index}".encode()).hex()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--txs-per-block", type=int, default=1000)
    parser.add_argument("--leveldb-defaults", action="store_true")
    parser.add_argument("--leveldb", action="append", default=[], metavar="OPTION=VALUE",
                        help="override one LevelDB option (an int, or none), e.g. "
                             "write_buffer_size=33554432, or compression=snappy|none; "
                             "repeatable")
    parser.add_argument("--every", type=int, default=0,
                        help="also print CPU and wall per transaction for every N blocks")
    parser.add_argument("--tree-cache", type=int, default=state_tree.DEFAULT_CACHE_ENTRIES,
                        help="bound of the state tree's bucket cache ([state] "
                             "tree_cache_entries)")
    parser.add_argument("--buyers", type=int, default=0,
                        help="distinct buyers the orders cycle through (default: as "
                             "jangbu bench, one per 4 orders and at least 5,000; fewer "
                             "make larger combined-taxation groups, a cost that grows "
                             "with the chain)")
    parser.add_argument("--pure-codec", action="store_true",
                        help="the pure-Python canonical encoder instead of the compiled one")
    parser.add_argument("--wal", choices=("file", "leveldb", "none"), default="file",
                        help="where each block's WAL record goes (see above)")
    args = parser.parse_args()
    canonical.use_compiled_encoder(not args.pure_codec)
    if args.buyers <= 0:
        args.buyers = default_buyers(args.blocks * args.txs_per_block)
    if args.leveldb_defaults:
        store_open.LEVELDB_OPTIONS.clear()
        store_open.COMPRESSION = "snappy"  # LevelDB's own default
    for option in args.leveldb:
        name, _, value = option.partition("=")
        if name == "compression":  # its own setting (node/store_open.py COMPRESSION)
            store_open.COMPRESSION = None if value.lower() == "none" else value.lower()
            continue
        store_open.LEVELDB_OPTIONS[name] = (  # type: ignore[assignment]
            None if value.lower() == "none" else int(value))
    ledger_support.CHAIN_ID = pipeline.CHAIN
    genesis = pipeline.genesis()
    work = tempfile.mkdtemp(prefix="jangbu-chain-")
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    _store, engine, pool = pipeline.open_engine(work + "/chain", genesis, args.tree_cache)
    validator = pipeline.key("v")
    proposer = validator.verify_key.encode()
    rates = Transaction.create(pipeline.key("customs"), pipeline.CHAIN, "clearance",
                               "set_rates", {"rates": {"USD": {"usd_micro": 1_000_000,
                                                               "krw_centi": 145_025}}}, 1)
    block = engine.build_block(proposer=proposer, time_ms=1000, txs=[rates], last_commit=None)
    cert = ledger_support.certify(1, block.hash, [validator])
    engine.commit(block, cert)
    sealed = base64.b64encode(b"s" * 120).decode()
    total = args.blocks * args.txs_per_block
    txs = [Transaction.create(pipeline.key("seller"), pipeline.CHAIN, "clearance",
                              "create_order", {
                                  "order_id": f"O-{i}", "courier": "courier",
                                  "buyer_platform": "buyer",
                                  "buyer_ref": buyer_ref(i % args.buyers),
                                  "buyer_sealed": sealed, "currency": "USD", "ship_from": "US",
                                  "items": [{"hs": "6109.10-0000", "description": "T-shirt",
                                             "kind": "general", "quantity": 1,
                                             "unit_price": 1500}]}, i + 10)
           for i in range(total)]
    for tx in txs:  # what the client did: not this node's cost
        _ = tx.encoded, tx.hash
    wal = WalFile(work + "/consensus.wal")
    wal.open()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    mark = (cpu0, wall0)
    for b in range(args.blocks):
        for tx in txs[b * args.txs_per_block:(b + 1) * args.txs_per_block]:
            pool.add(tx)
        block = engine.build_block(proposer=proposer, time_ms=2000 + b,
                                   txs=pool.reap(10**6, 10**9), last_commit=cert)
        if args.wal != "none":  # "none" pays nothing, not even the record's encoding
            record = canonical.encode(WalRecord(ProposalValueReady(
                block.height, 0, block.hash, block.encoded)).to_obj())
            if args.wal == "file":
                wal.append(record)
            else:
                _store.put_record(WAL_PREFIX + bytes(8), record, sync=False)
        cert = ledger_support.certify(block.height, block.hash, [validator])
        engine.commit(block, cert)
        if args.wal == "file":
            wal.reset()
        elif args.wal == "leveldb":
            _store.delete_records([WAL_PREFIX + bytes(8)])
        pool.remove([tx.hash for tx in block.txs])
        if args.every and (b + 1) % args.every == 0:
            cpu_now, wall_now = cpu_seconds(), time.perf_counter()
            n = args.every * args.txs_per_block
            print(f"blocks {b + 2 - args.every:>5}-{b + 1:<5} tree cache "
                  f"{engine.tree._cache_size:>8} units: CPU "
                  f"{(cpu_now - mark[0]) * 1e6 / n:6.1f} µs/tx, wall "
                  f"{(wall_now - mark[1]) * 1e6 / n:6.1f} µs/tx", flush=True)
            mark = (cpu_now, wall_now)
    wall = time.perf_counter() - wall0
    wal.close()
    time.sleep(1.0)  # compaction still running is this chain's cost too
    cpu = cpu_seconds() - cpu0
    options = "LevelDB defaults" if args.leveldb_defaults else "LEVELDB_OPTIONS"
    if args.leveldb:
        options += " + " + ", ".join(args.leveldb)
    options += f", WAL {args.wal}"
    print(f"{options}: {total} transactions in {args.blocks} blocks: "
          f"CPU {cpu * 1e6 / total:.1f} µs/tx, wall {wall * 1e6 / total:.1f} µs/tx "
          f"({total / wall:,.0f} tx/s in one process)")
    leveldb, blocks = disk_bytes(Path(work) / "chain")
    print(f"on disk: LevelDB {leveldb / 2**20:.1f} MiB (log included), block files "
          f"{blocks / 2**20:.1f} MiB")


def disk_bytes(data: Path) -> tuple[int, int]:
    """Bytes of ``data``'s LevelDB files and of its block files (``blocks/``)."""
    leveldb = sum(f.stat().st_size for f in data.iterdir() if f.is_file())
    blocks = sum(f.stat().st_size for f in (data / "blocks").iterdir() if f.is_file())
    return leveldb, blocks


if __name__ == "__main__":
    main()
