"""Executing an announced block ahead of its proposal (Engine.speculate).

A validator may execute the transactions a proposer announced before the proposal itself
arrives; the proposal then takes that result only when its inputs are exactly the ones
executed (committed tip, height, time, the transactions' hashes in order), and its roots
are compared with the header's as always. Real stores and engines, no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node.block import Block, BlockError, Header
from node.engine import Engine
from node.tx import Transaction

from ledger_support import T0, add_member_tx, certify, make_genesis, open_engine, seed_key

VALIDATOR, ADMIN = seed_key("v0"), seed_key("admin")
PROPOSER = VALIDATOR.verify_key.encode()


@pytest.fixture
def pair(tmp_path: Path) -> Any:
    """A proposer's engine and a validator's, on the same genesis."""
    genesis = make_genesis()
    a = open_engine(str(tmp_path / "a"), genesis)
    b = open_engine(str(tmp_path / "b"), genesis)
    yield a[1], b[1]
    a[0].close()
    b[0].close()


def counting(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every block ``engine`` executes."""
    runs: list[int] = []
    real = engine.execute_txs

    def execute_txs(height: int, time_ms: int, txs: Any) -> Any:
        runs.append(len(txs))
        return real(height, time_ms, txs)

    monkeypatch.setattr(engine, "execute_txs", execute_txs)
    return runs


def members(start: int, count: int) -> list[Any]:
    return [add_member_tx(ADMIN, f"m{i}", i) for i in range(start, start + count)]


def test_a_proposal_with_the_announced_inputs_takes_the_speculative_result(
        pair: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    proposer, validator = pair
    txs = members(1, 5)
    block = proposer.build_block(proposer=PROPOSER, time_ms=T0 + 10, txs=txs, last_commit=None)
    runs = counting(validator, monkeypatch)
    assert validator.speculate(1, block.header.time_ms, txs)
    assert runs == [5]
    result = validator.validate_block(Block.decode(block.encoded))
    assert runs == [5]  # not executed again
    assert validator.speculations_used == 1
    assert result.state_root == block.header.state_root
    validator.commit(block, certify(1, block.hash, [VALIDATOR]))
    assert validator.store.height == 1


@pytest.mark.parametrize("change", ["time", "order", "fewer", "other"])
def test_a_proposal_with_other_inputs_is_executed_afresh(
        pair: Any, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    proposer, validator = pair
    txs = members(1, 5)
    block = proposer.build_block(proposer=PROPOSER, time_ms=T0 + 10, txs=txs, last_commit=None)
    announced = {"time": (T0 + 11, txs), "order": (T0 + 10, txs[::-1]),
                 "fewer": (T0 + 10, txs[:4]), "other": (T0 + 10, members(6, 5))}[change]
    runs = counting(validator, monkeypatch)
    assert validator.speculate(1, *announced)
    validator.validate_block(Block.decode(block.encoded))
    assert len(runs) == 2
    assert validator.speculations_used == 0


def test_the_roots_are_still_checked_against_the_header(
        pair: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Same transactions and time as announced, but a header whose state root lies: the
    # speculative result is taken and the block is refused all the same.
    proposer, validator = pair
    txs = members(1, 3)
    good = proposer.build_block(proposer=PROPOSER, time_ms=T0 + 10, txs=txs, last_commit=None)
    fields = {name: getattr(good.header, name) for name in good.header.__dataclass_fields__}
    fields["state_root"] = b"\x01" * 32
    forged = Block(Header(**fields), good.txs, good.last_commit)
    assert validator.speculate(1, T0 + 10, txs)
    with pytest.raises(BlockError, match="state_root"):
        validator.validate_block(Block.decode(forged.encoded))
    assert validator.speculations_used == 1


def test_a_speculation_on_another_tip_is_not_taken(pair: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Same height, time and transactions, but executed on another committed state than
    # the one the proposal builds on: executed afresh.
    proposer, validator = pair
    txs = members(1, 3)
    block = proposer.build_block(proposer=PROPOSER, time_ms=T0 + 10, txs=txs, last_commit=None)
    assert validator.speculate(1, T0 + 10, txs)
    assert validator._speculated is not None
    key, result = validator._speculated
    validator._speculated = ((b"\x09" * 32, *key[1:]), result)
    runs = counting(validator, monkeypatch)
    validator.validate_block(Block.decode(block.encoded))
    assert runs == [3] and validator.speculations_used == 0


def test_a_commit_drops_the_speculation(pair: Any) -> None:
    proposer, validator = pair
    first = proposer.build_block(proposer=PROPOSER, time_ms=T0 + 10, txs=members(1, 2),
                                 last_commit=None)
    assert validator.speculate(1, T0 + 10, members(1, 2))
    validator.commit(Block.decode(first.encoded), certify(1, first.hash, [VALIDATOR]))
    assert validator._speculated is None


def test_version_1_signatures_are_checked_even_with_a_speculated_result(
        tmp_path: Path) -> None:
    # Under block version 1 a transaction's hash covers its body, not its signature: a
    # proposal may carry the announced hashes with forged signature bytes. The speculative
    # result is keyed by hashes, so it matches; the signature check still refuses it.
    genesis = make_genesis(block_version=1)
    store_a, proposer = open_engine(str(tmp_path / "a"), genesis)
    store_b, validator = open_engine(str(tmp_path / "b"), genesis)
    try:
        txs = members(1, 3)
        good = proposer.build_block(proposer=PROPOSER, time_ms=T0 + 10, txs=txs,
                                    last_commit=None)
        forged_tx = Transaction(*(getattr(txs[1], name) for name in (
            "chain_id", "contract", "action", "args", "signer", "nonce")), b"\x05" * 64)
        assert forged_tx.hash == txs[1].hash
        forged = Block(good.header, (txs[0], forged_tx, txs[2]), good.last_commit)
        assert forged.hash == good.hash
        assert validator.speculate(1, T0 + 10, txs)
        with pytest.raises(BlockError, match="E_BAD_SIGNATURE"):
            validator.validate_block(Block.decode(forged.encoded))
    finally:
        store_a.close()
        store_b.close()


def test_only_the_next_height_is_speculated(pair: Any) -> None:
    _, validator = pair
    assert not validator.speculate(2, T0 + 10, members(1, 2))  # not the next height
    assert not validator.speculate(1, 0, members(1, 2))  # not after the tip's time
    assert validator._speculated is None


def test_an_announced_time_beyond_the_proposal_bound_is_not_executed(
        pair: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review: an announcement is unsigned, and ``time`` 2**63 made the livestock
    contract's date arithmetic raise OverflowError on every node holding its
    transactions; the time is now bounded as a proposal's is (now + 30 s)."""
    _, validator = pair
    runs = counting(validator, monkeypatch)
    now = T0 + 1_000
    assert not validator.speculate(1, 2**63, members(1, 2), now_ms=now)
    assert not validator.speculate(1, now + 30_001, members(1, 2), now_ms=now)
    assert runs == []
    assert validator.speculate(1, now + 30_000, members(1, 2), now_ms=now)
    assert runs == [2]
