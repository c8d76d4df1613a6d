"""Whether a transaction is committed is looked up in LevelDB only for hashes the mempool
does not hold: the mempool never holds a committed one (it refuses them, and drops each
block's hashes when the block commits). A committed transaction offered again in a block
is still refused, and one the mempool holds costs no lookup at build or check."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.block import BLOCK_VERSION_HASHES, BLOCK_VERSION_SIGNED, Block, BlockError
from node.engine import Engine

from ledger_support import T0, add_member_tx, certify, make_genesis, open_engine, seed_key

VALIDATOR, ADMIN = seed_key("v0"), seed_key("admin")
PROPOSER = VALIDATOR.verify_key.encode()


def count_lookups(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    looked: list[bytes] = []
    real = engine.store.has_tx

    def has_tx(tx_hash: bytes) -> bool:
        looked.append(tx_hash)
        return real(tx_hash)

    monkeypatch.setattr(engine.store, "has_tx", has_tx)
    return looked


def test_pending_hashes_cost_no_lookup_and_committed_ones_are_still_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, engine = open_engine(str(tmp_path / "data"), make_genesis())
    try:
        first = [add_member_tx(ADMIN, f"c{i}", i) for i in range(3)]
        block = engine.build_block(proposer=PROPOSER, time_ms=T0 + 1, txs=first,
                                   last_commit=None)
        cert = certify(1, block.hash, [VALIDATOR])
        engine.commit(block, cert)

        pending = [add_member_tx(ADMIN, f"p{i}", 10 + i) for i in range(3)]
        held = {tx.hash for tx in pending}
        engine.is_prechecked = held.__contains__  # what node/app.py wires: the mempool
        looked = count_lookups(engine, monkeypatch)
        # A committed transaction offered with pending ones: dropped from the proposal.
        proposal = engine.build_block(proposer=PROPOSER, time_ms=T0 + 2,
                                      txs=[first[0], *pending], last_commit=cert)
        assert [tx.hash for tx in proposal.txs] == [tx.hash for tx in pending]
        engine.validate_block(proposal)
        assert looked == [first[0].hash]  # the pending ones were never looked up

        # A block replaying it (built here with the proposer's filter turned off) is
        # refused by the check every validator runs.
        engine._results.clear()
        monkeypatch.setattr(engine, "admissible", list)
        replay = engine.build_block(proposer=PROPOSER, time_ms=T0 + 2,
                                    txs=[first[0], *pending], last_commit=cert)
        assert replay.txs[0].hash == first[0].hash
        engine._results.clear()
        with pytest.raises(BlockError, match="replays a committed transaction"):
            engine.validate_block(replay)
    finally:
        store.close()


@pytest.mark.parametrize("version", [BLOCK_VERSION_SIGNED, BLOCK_VERSION_HASHES])
def test_a_certified_block_costs_no_replay_lookups(tmp_path: Path, version: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Block sync: the certificate already says a quorum (so an honest validator) ran the
    replay check on this very chain, so a node catching up reads nothing per transaction,
    whether it applies a peer's diff or executes the block, under either block version;
    without a certificate (a proposal) the same block is still checked against the store,
    and a certificate for another block vouches for nothing."""
    genesis = make_genesis(block_version=version)
    source_store, source = open_engine(str(tmp_path / "source"), genesis)
    store, engine = open_engine(str(tmp_path / "syncing"), genesis)
    try:
        txs = [add_member_tx(ADMIN, f"s{i}", i) for i in range(4)]
        block = source.build_block(proposer=PROPOSER, time_ms=T0 + 1, txs=txs,
                                   last_commit=None)
        cert = certify(1, block.hash, [VALIDATOR])
        result = source.commit(block, cert)
        looked = count_lookups(engine, monkeypatch)

        engine.validate_block(Block.decode(block.encoded))  # a proposal: every hash looked up
        assert sorted(looked) == sorted(tx.hash for tx in txs)
        looked.clear()
        engine._results.clear()
        with pytest.raises(BlockError, match="certificate"):
            engine.validate_block(Block.decode(block.encoded, synced=True),
                                  certificate=certify(1, b"\x01" * 32, [VALIDATOR]))
        engine.validate_block(Block.decode(block.encoded, synced=True), certificate=cert)
        engine._results.clear()
        synced = Block.decode(block.encoded, synced=True)
        engine.apply_certified_diff(synced, cert, [r.encoded for r in result.receipts],
                                    dict(result.state_writes))  # sync from a diff
        engine.commit(synced, cert)
        assert looked == []
        assert store.height == 1 and store.has_tx(txs[0].hash)
    finally:
        source_store.close()
        store.close()


def test_a_certified_block_holding_a_transaction_twice_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The certificate spares the lookups among committed transactions, not the check of
    the block itself: the same transaction twice in it is refused, executed or applied
    from a diff."""
    genesis = make_genesis()
    source_store, source = open_engine(str(tmp_path / "source"), genesis)
    store, engine = open_engine(str(tmp_path / "syncing"), genesis)
    try:
        tx = add_member_tx(ADMIN, "twice", 1)
        monkeypatch.setattr(source, "admissible", list)  # a proposer without its filter
        block = source.build_block(proposer=PROPOSER, time_ms=T0 + 1, txs=[tx, tx],
                                   last_commit=None)
        assert [t.hash for t in block.txs] == [tx.hash, tx.hash]
        result = source._results[block.hash][1]
        cert = certify(1, block.hash, [VALIDATOR])
        with pytest.raises(BlockError, match="duplicate transaction in block"):
            engine.validate_block(Block.decode(block.encoded, synced=True), certificate=cert)
        with pytest.raises(BlockError, match="duplicate transaction in block"):
            engine.apply_certified_diff(Block.decode(block.encoded, synced=True), cert,
                                        [r.encoded for r in result.receipts],
                                        dict(result.state_writes))
        assert store.height == 0
    finally:
        source_store.close()
        store.close()
