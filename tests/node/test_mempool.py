"""Mempool rules: bounded, signature checked once, no duplicates or replays, fair."""

from __future__ import annotations

import pytest

from node.execution import member_lookup
from node.mempool import AdmissionError, Mempool, MempoolFull, MempoolLimits
from node.tx import Transaction

from ledger_support import CHAIN_ID, add_member_tx, make_genesis, open_engine, seed_key


@pytest.fixture
def pool_parts(tmp_path):
    genesis = make_genesis()
    store, engine = open_engine(str(tmp_path / "data"), genesis)
    yield store, engine
    store.close()


def make_pool(store, engine, **limits) -> Mempool:
    return Mempool(chain_id=CHAIN_ID, contracts=engine.contracts, is_committed=store.has_tx,
                   lookup_member=member_lookup(store.state), sig_cache=engine.sig_cache,
                   limits=MempoolLimits(**limits) if limits else None)


def test_admits_and_reaps_in_arrival_order(pool_parts):
    pool = make_pool(*pool_parts)
    txs = [add_member_tx(seed_key("admin"), f"m{i}", i) for i in range(5)]
    for tx in txs:
        pool.add(tx)
    assert [tx.hash for tx in pool.reap(10, 10**9)] == [tx.hash for tx in txs]
    assert len(pool) == 5  # reaping does not remove: the block may not commit


def test_invalid_duplicate_is_refused(pool_parts):
    pool = make_pool(*pool_parts)
    tx = add_member_tx(seed_key("admin"), "m", 1)
    pool.add(tx)
    with pytest.raises(AdmissionError) as err:
        pool.add(tx)
    assert err.value.code == "E_DUPLICATE"


def test_invalid_bad_signature_unknown_signer_and_bad_args_are_refused(pool_parts):
    pool = make_pool(*pool_parts)
    tx = add_member_tx(seed_key("admin"), "m", 1)
    forged = Transaction(tx.chain_id, tx.contract, tx.action, tx.args, tx.signer, tx.nonce,
                         b"\x01" * 64)
    stranger = add_member_tx(seed_key("stranger"), "m", 2)
    bad_args = Transaction.create(seed_key("admin"), CHAIN_ID, "membership", "add_member",
                                  {"pubkey": "nothex"}, 3)
    codes = []
    for candidate in (forged, stranger, bad_args):
        with pytest.raises(AdmissionError) as err:
            pool.add(candidate)
        codes.append(err.value.code)
    assert codes == ["E_BAD_SIGNATURE", "E_UNKNOWN_SIGNER", "E_ARGS"]
    assert len(pool) == 0


def test_full_pool_refuses_with_retryable_error_and_keeps_what_it_accepted(pool_parts):
    pool = make_pool(*pool_parts, max_txs=3, max_bytes=10**9)
    accepted = [add_member_tx(seed_key("admin"), f"m{i}", i) for i in range(3)]
    for tx in accepted:
        pool.add(tx)
    with pytest.raises(MempoolFull) as err:
        pool.add(add_member_tx(seed_key("admin"), "late", 99))
    assert err.value.code == "E_MEMPOOL_FULL"
    assert all(tx.hash in pool for tx in accepted)


def test_committed_transactions_are_removed_and_never_readmitted(pool_parts):
    store, engine = pool_parts
    pool = make_pool(store, engine)
    tx = add_member_tx(seed_key("admin"), "m", 1)
    pool.add(tx)
    block = engine.build_block(proposer=seed_key("v0").verify_key.encode(), time_ms=10**12,
                               txs=pool.reap(10, 10**9), last_commit=None)
    from ledger_support import certify
    engine.commit(block, certify(1, block.hash, [seed_key("v0")]))
    pool.remove([tx.hash])
    assert tx.hash not in pool
    with pytest.raises(AdmissionError) as err:
        pool.add(tx)
    assert err.value.code == "E_ALREADY_COMMITTED"


def test_reaping_is_fair_across_signers(pool_parts):
    store, engine = pool_parts
    pool = make_pool(store, engine)
    # A busy signer with many transactions and a second signer with one: registered first.
    admin = seed_key("admin")
    other = seed_key("other")
    block = engine.build_block(proposer=seed_key("v0").verify_key.encode(), time_ms=10**12,
                               txs=[add_member_tx(admin, "other", 0)], last_commit=None)
    from ledger_support import certify
    engine.commit(block, certify(1, block.hash, [seed_key("v0")]))
    busy = [add_member_tx(admin, f"b{i}", 100 + i) for i in range(10)]
    for tx in busy:
        pool.add(tx)
    quiet = Transaction.create(other, CHAIN_ID, "membership", "revoke_member",
                               {"pubkey": "00" * 32}, 1)
    pool.add(quiet)
    first_two = pool.reap(2, 10**9)
    assert quiet.hash in {tx.hash for tx in first_two}


def test_stranger_junk_is_refused_before_any_signature_check(pool_parts):
    """Regression: an unknown signer's transaction used to cost a signature verification."""
    store, engine = pool_parts
    pool = make_pool(store, engine)
    calls = []
    original = Transaction.verify_signature

    def counting(self):
        calls.append(self.hash)
        return original(self)

    Transaction.verify_signature = counting
    try:
        junk = add_member_tx(seed_key("stranger"), "x", 1)
        with pytest.raises(AdmissionError) as err:
            pool.add(junk)
    finally:
        Transaction.verify_signature = original
    assert err.value.code == "E_UNKNOWN_SIGNER" and calls == []


def test_cached_member_lookup_sees_each_commit(pool_parts):
    """The mempool's memo of signers is per committed height: a revocation committed in
    a block is seen by the next admission (never a stale 'active member')."""
    from node.execution import committed_member_lookup

    from ledger_support import certify

    store, engine = pool_parts
    lookup = committed_member_lookup(store.state, lambda: store.height)
    newcomer = seed_key("newcomer").verify_key.encode()
    assert lookup(newcomer) is None
    validator = seed_key("v0")
    added = add_member_tx(seed_key("admin"), "newcomer", 1)
    block = engine.build_block(proposer=validator.verify_key.encode(), time_ms=1,
                               txs=[added], last_commit=None)
    engine.commit(block, certify(1, block.hash, [validator]))
    member = lookup(newcomer)
    assert member is not None and not member.revoked
    revoke = Transaction.create(seed_key("admin"), CHAIN_ID, "membership", "revoke_member",
                                {"pubkey": newcomer.hex()}, 2)
    block = engine.build_block(proposer=validator.verify_key.encode(), time_ms=2,
                               txs=[revoke], last_commit=certify(1, block.hash, [validator]))
    engine.commit(block, certify(2, block.hash, [validator]))
    assert lookup(newcomer).revoked


def test_removing_from_the_middle_keeps_order_size_and_fairness(pool_parts):
    """Committed hashes leave a queue at its front; ones committed from further in (another
    node's proposal ordered them differently) are skipped by reap until they get there."""
    pool = make_pool(*pool_parts)
    admin = seed_key("admin")
    txs = [add_member_tx(admin, f"m{i}", i) for i in range(6)]
    for tx in txs:
        pool.add(tx)
    size = pool.size_bytes
    pool.remove([txs[2].hash, txs[4].hash])  # from the middle
    assert [tx.hash for tx in pool.reap(10, 10**9)] == [txs[i].hash for i in (0, 1, 3, 5)]
    assert [tx.hash for tx in pool.reap(2, 10**9)] == [txs[0].hash, txs[1].hash]
    assert len(pool) == 4 and txs[2].hash not in pool
    assert pool.size_bytes == size - len(txs[2].encoded) - len(txs[4].encoded)
    def queued() -> list[bytes]:
        return [h for _, h in pool._by_signer[admin.verify_key.encode()]]

    pool.remove([txs[0].hash, txs[1].hash])  # the front goes, and the stale 2 behind it
    assert queued() == [txs[3].hash, txs[4].hash, txs[5].hash]
    pool.remove([txs[3].hash])  # 4, stale, goes once it is at the front
    assert queued() == [txs[5].hash]
    pool.remove([txs[5].hash])
    assert len(pool) == 0 and pool.reap(10, 10**9) == [] and not pool._by_signer
    pool.add(add_member_tx(admin, "again", 99))  # a signer's queue starts over
    assert len(pool.reap(10, 10**9)) == 1


def test_commit_and_reap_do_not_walk_the_whole_queue(pool_parts):
    """Regression: each commit rebuilt every touched signer's queue and each reap copied
    it: O(pending) per block, ~1% of node CPU with one busy signer and a deep pool."""
    from collections import deque

    class CountingDeque(deque):
        walked = 0

        def __iter__(self):
            for item in super().__iter__():
                CountingDeque.walked += 1
                yield item

    pool = make_pool(*pool_parts)
    admin = seed_key("admin")
    txs = [add_member_tx(admin, f"m{i}", i) for i in range(200)]
    for tx in txs:
        pool.add(tx)
    signer = admin.verify_key.encode()
    pool._by_signer[signer] = CountingDeque(pool._by_signer[signer])
    assert len(pool.reap(10, 10**9)) == 10
    pool.remove([tx.hash for tx in txs[:10]])
    assert CountingDeque.walked <= 11  # the ten reaped (and one look), not all 200


def test_a_front_transaction_that_stays_pending_does_not_pin_a_growing_tail(pool_parts):
    """Review finding: stale entries were dropped only at the front, so one transaction that
    never commits here (gossip is sent once; a peer may never propose it) kept every later
    committed hash of its signer queued: 20,000 commits left a queue 20,001 long."""
    pool = make_pool(*pool_parts)
    admin = seed_key("admin")
    stuck, *rest = [add_member_tx(admin, f"m{i}", i) for i in range(201)]
    pool.add(stuck)
    for tx in rest:
        pool.add(tx)
        pool.remove([tx.hash])  # committed from another node's block
        assert len(pool._by_signer[admin.verify_key.encode()]) <= 3
    assert [tx.hash for tx in pool.reap(10, 10**9)] == [stuck.hash]


def test_a_hash_removed_and_admitted_again_is_reaped_once_in_its_new_place(pool_parts):
    """Not reachable through commits today (a committed hash is refused), but any other
    eviction would have reaped the hash twice, once at its old place."""
    pool = make_pool(*pool_parts)
    admin = seed_key("admin")
    a, b, c = (add_member_tx(admin, f"m{i}", i) for i in range(3))
    for tx in (a, b, c):
        pool.add(tx)
    pool.remove([b.hash])  # evicted while still uncommitted
    pool.add(b)
    assert [tx.hash for tx in pool.reap(10, 10**9)] == [a.hash, c.hash, b.hash]


def test_a_transaction_cut_from_a_synced_block_is_shape_checked_at_admission(pool_parts):
    """Review finding: a transaction from Transaction.decode_certified (block sync) passes
    validate_basic without its fields; should one ever reach admission, its shape is
    checked there (a well-signed transaction with nonce -1 is refused with a code, not a
    stray TxError), and a good one is admitted with its fields decoded."""
    pool = make_pool(*pool_parts)
    admin = seed_key("admin")
    bad = Transaction.create(admin, CHAIN_ID, "membership", "add_member",
                             {"pubkey": seed_key("n").verify_key.encode().hex(), "label": "n"},
                             -1)
    lazy_bad = Transaction.decode_certified(bad.encoded, CHAIN_ID)
    assert lazy_bad is not None
    with pytest.raises(AdmissionError) as err:
        pool.add(lazy_bad)
    assert err.value.code == "E_MALFORMED_TX"
    good = add_member_tx(admin, "g", 1)
    lazy_good = Transaction.decode_certified(good.encoded, CHAIN_ID)
    assert lazy_good is not None
    pool.add(lazy_good)
    assert lazy_good.__dict__["args"] == good.args and len(pool) == 1


def two_org_parts(tmp_path):
    """A chain of two organisations, each with one admin key (``admin``, ``other``)."""
    from node.genesis import parse_genesis

    base = make_genesis()
    raw = {
        "chain_id": base.chain_id, "genesis_time_ms": base.genesis_time_ms,
        "validators": [{"name": "v0", "org": "operator",
                        "pubkey": seed_key("v0").verify_key.encode().hex(),
                        "p2p": "127.0.0.1:27000", "api": "http://127.0.0.1:28000"}],
        "orgs": [{"id": org, "name": org.title(), "roles": ["operator"],
                  "keys": [{"pubkey": seed_key(key).verify_key.encode().hex(),
                            "roles": ["operator", "admin"]}]}
                 for org, key in (("operator", "admin"), ("other", "other"))],
        "contracts": [{"name": "membership", "version": "1"}],
        "consensus": {"block_version": base.params.block_version},
    }
    return open_engine(str(tmp_path / "data"), parse_genesis(raw))


def test_one_organisation_takes_at_most_its_share_of_the_pool(tmp_path):
    """Review: a Byzantine validator's organisation filled every honest mempool with valid
    transactions signed by its own key; honest clients got ``E_MEMPOOL_FULL`` (120 of 300).
    With several organisations, one holds at most half of the count and of the bytes."""
    store, engine = two_org_parts(tmp_path)
    try:
        limits = MempoolLimits.for_orgs(max_txs=10, max_bytes=10**9, orgs=2)
        assert limits.org_share == 0.5
        pool = Mempool(chain_id=CHAIN_ID, contracts=engine.contracts,
                       is_committed=store.has_tx, lookup_member=member_lookup(store.state),
                       sig_cache=engine.sig_cache, limits=limits)
        flood = [add_member_tx(seed_key("admin"), f"f{i}", i) for i in range(6)]
        for tx in flood[:5]:
            pool.add(tx)
        with pytest.raises(MempoolFull) as full:
            pool.add(flood[5])
        assert full.value.code == "E_MEMPOOL_FULL" and "'operator'" in full.value.message
        honest = [add_member_tx(seed_key("other"), f"h{i}", 100 + i) for i in range(5)]
        for tx in honest:
            pool.add(tx)  # the other half is still theirs
        pool.remove([flood[0].hash])
        pool.add(flood[5])  # room again once one of its own committed
        assert len(pool) == 10
        # Bytes too: a share of the byte limit.
        size = len(flood[0].encoded)
        by_bytes = Mempool(chain_id=CHAIN_ID, contracts=engine.contracts,
                           is_committed=store.has_tx, lookup_member=member_lookup(store.state),
                           sig_cache=engine.sig_cache,
                           limits=MempoolLimits.for_orgs(1000, 4 * size, 2))
        for tx in flood[:2]:
            by_bytes.add(tx)
        with pytest.raises(MempoolFull):
            by_bytes.add(flood[2])
    finally:
        store.close()


def test_a_single_organisation_chain_has_the_whole_pool(pool_parts):
    assert MempoolLimits.for_orgs(10, 10**9, orgs=1).org_share == 1.0
    pool = Mempool(chain_id=CHAIN_ID, contracts=pool_parts[1].contracts,
                   is_committed=pool_parts[0].has_tx,
                   lookup_member=member_lookup(pool_parts[0].state),
                   sig_cache=pool_parts[1].sig_cache, limits=MempoolLimits.for_orgs(10, 10**9, 1))
    for i in range(10):
        pool.add(add_member_tx(seed_key("admin"), f"s{i}", i))
    assert len(pool) == 10
