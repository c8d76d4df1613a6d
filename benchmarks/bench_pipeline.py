"""Per-node CPU cost of the transaction pipeline, in one process (no network).

Prints CPU microseconds (process time, robust to other load) per transaction for each
stage a node runs on every transaction:
decode, admission (signature + checks), block build (execute + roots), validation
(re-execute on a second store), commit (LevelDB batch). Run:

    .venv/bin/python benchmarks/bench_pipeline.py [--txs 2000] [--profile] [--sort KEY] [--top N]
        [--setup-only] [--pure-codec]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from nacl.signing import SigningKey

from consensus import canonical
from consensus.types import ValidatorSet
from node.block import BLOCK_VERSION_SIGNED
from node.engine import Engine, SignatureCache
from node.execution import Receipt, committed_member_lookup
from node.genesis import parse_genesis
from node.mempool import Mempool
from node.registry import installed_version, load_contracts
from node.state_tree import DEFAULT_CACHE_ENTRIES
from node.store import LedgerStore
from node.tx import Transaction

CHAIN = "bench"


def key(name: str) -> SigningKey:
    return SigningKey(canonical.digest(name.encode()))


def genesis():
    orgs = []
    for org, role in [("customs", "customs"), ("seller", "seller"), ("courier", "courier"),
                      ("buyer", "buyer")]:
        orgs.append({"id": org, "roles": [role], "keys": [
            {"pubkey": key(org).verify_key.encode().hex(), "roles": [role, "admin"]}]})
    return parse_genesis({
        "chain_id": CHAIN, "genesis_time_ms": 0, "orgs": orgs,
        "validators": [{"name": "v", "org": "customs",
                        "pubkey": key("v").verify_key.encode().hex(),
                        "p2p": "127.0.0.1:1", "api": "http://127.0.0.1:2"}],
        "contracts": [{"name": name, "version": installed_version(name)}
                      for name in ("membership", "clearance")],
        "consensus": {"block_version": BLOCK_VERSION_SIGNED},  # as devnets are made
    })


def open_engine(path: str, g, tree_cache_entries: int = DEFAULT_CACHE_ENTRIES):
    store = LedgerStore.open(path, chain_id=CHAIN, genesis_hash=g.hash)
    tree = store.initialise(chain_id=CHAIN, genesis_hash=g.hash, state=g.initial_state(),
                            tree_cache_entries=tree_cache_entries)
    vset = ValidatorSet(tuple(g.validator_pubkeys()))
    contracts = load_contracts(g.contracts)
    cache = SignatureCache()
    members = committed_member_lookup(store.state, lambda: store.height)  # as node/app.py
    engine = Engine(chain_id=CHAIN, contracts=contracts, store=store, tree=tree,
                    validators_hash=vset.hash(), validators=vset.validators,
                    max_block_txs=100_000, max_block_bytes=64 * 1024 * 1024,
                    block_version=g.params.block_version, sig_cache=cache,
                    committed_members=members)
    pool = Mempool(chain_id=CHAIN, contracts=contracts, is_committed=store.has_tx,
                   lookup_member=members, sig_cache=cache)
    # As node/app.py: what the mempool admitted already passed its contract check here.
    # (Until the twentieth round the benchmarks left this out, so every build re-ran each
    # order's contract check and committed-transaction lookup, which no node does.)
    engine.is_prechecked = pool.__contains__
    return store, engine, pool


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--txs", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="cumulative", help="profile order (pstats key)")
    parser.add_argument("--top", type=int, default=25, help="profile lines to print")
    parser.add_argument("--setup-only", action="store_true",
                        help="stop once the transactions are signed (bench_instructions.py "
                             "subtracts this run's count)")
    parser.add_argument("--pure-codec", action="store_true",
                        help="the pure-Python canonical encoder instead of the compiled one")
    args = parser.parse_args()
    canonical.use_compiled_encoder(not args.pure_codec)
    g = genesis()
    tmp = tempfile.mkdtemp(prefix="jangbu-pipeline-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    _store_a, engine_a, pool_a = open_engine(tmp + "/a", g)
    store_b, engine_b, pool_b = open_engine(tmp + "/b", g)
    proposer = key("v").verify_key.encode()
    # set-up block: exchange rates
    rates = Transaction.create(key("customs"), CHAIN, "clearance", "set_rates",
                               {"rates": {"USD": {"usd_micro": 1_000_000, "krw_centi": 145_025}}},
                               1)
    import ledger_support
    from ledger_support import certify  # type: ignore
    ledger_support.CHAIN_ID = CHAIN
    block = engine_a.build_block(proposer=proposer, time_ms=1000, txs=[rates], last_commit=None)
    cert = certify(1, block.hash, [key("v")])
    engine_a.commit(block, cert)
    engine_b.commit(block, cert)
    sealed = base64.b64encode(b"s" * 120).decode()
    txs = [Transaction.create(key("seller"), CHAIN, "clearance", "create_order", {
        "order_id": f"O-{i}", "courier": "courier", "buyer_platform": "buyer",
        "buyer_ref": canonical.digest(f"b{i}".encode()).hex(), "buyer_sealed": sealed,
        "currency": "USD", "ship_from": "US",
        "items": [{"hs": "6109.10-0000", "description": "cotton T-shirt", "kind": "general",
                   "quantity": 1, "unit_price": 1500}]}, i + 10) for i in range(args.txs)]
    wire = [tx.encoded for tx in txs]
    if args.setup_only:
        return
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    n = len(txs)
    timings = {}
    t = time.process_time()
    decoded_a = [Transaction.decode(raw) for raw in wire]
    timings["decode"] = time.process_time() - t
    t = time.process_time()
    for tx in decoded_a:
        pool_a.add(tx)
    timings["admit (sig+check)"] = time.process_time() - t
    decoded_b = [Transaction.decode(raw) for raw in wire]
    for tx in decoded_b:
        pool_b.add(tx)
    t = time.process_time()
    block = engine_a.build_block(proposer=proposer, time_ms=2000,
                                 txs=pool_a.reap(100_000, 64 * 1024 * 1024), last_commit=cert)
    timings["build (execute+roots)"] = time.process_time() - t
    t = time.process_time()
    encoded = block.encoded
    timings["encode block"] = time.process_time() - t
    from node.block import Block
    t = time.process_time()
    received = Block.decode(encoded)
    timings["decode block"] = time.process_time() - t
    t = time.process_time()
    engine_b.validate_block(received)
    timings["validate (re-execute)"] = time.process_time() - t
    cert2 = certify(2, block.hash, [key("v")])
    t = time.process_time()
    engine_b.commit(received, cert2)
    timings["commit (LevelDB batch)"] = time.process_time() - t
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    total = 0.0
    print(f"transactions: {n}, block bytes: {len(encoded)}")
    for stage, seconds in timings.items():
        if stage != "build (execute+roots)":
            total += seconds
        print(f"{stage:<24} {seconds * 1e6 / n:8.1f} us/tx")
    print(f"{'validator total':<24} {total * 1e6 / n:8.1f} us/tx "
          f"(=> {n / total:,.0f} tx/s per node core)")
    assert all(isinstance(r, Receipt) and r.ok for r in store_b.receipts_of(2)), "failures"


if __name__ == "__main__":
    main()
