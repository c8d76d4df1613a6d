"""Whether a transaction is committed is looked up in LevelDB only for hashes the mempool
does not hold: the mempool never holds a committed one (it refuses them, and drops each
block's hashes when the block commits). A committed transaction offered again in a block
is still refused, and one the mempool holds costs no lookup at build or check."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.block import BlockError
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
