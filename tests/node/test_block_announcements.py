"""The driver's block announcements: a proposer tells the validators its next block's
transactions and time before it builds the block, and a validator executes them ahead of
the proposal (Engine.speculate) — only for the proposer of that height and round, only
for the height it is deciding, and only when it holds every transaction announced.

Real drivers, stores and engines; messages are handed over by hand (no sockets).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from node.block import Block
from node.driver import MIN_ANNOUNCED_TXS, ConsensusDriver
from node.engine import SignatureCache
from node.events import EventBus
from node.execution import committed_member_lookup
from node.mempool import Mempool
from node.metrics import Metrics
from node.signer_state import SignerStateFile

from ledger_support import T0, add_member_tx, make_genesis, open_engine, seed_key

pytestmark = pytest.mark.timeout(60)
ADMIN = seed_key("admin")


class Node:
    def __init__(self, tmp_path: Path, names: list[str], me: str, *,
                 speculate: bool = True) -> None:
        self.genesis = make_genesis(names)
        self.store, self.engine = open_engine(str(tmp_path / me / "data"), self.genesis)
        self.mempool = Mempool(
            chain_id=self.genesis.chain_id, contracts=self.engine.contracts,
            is_committed=self.store.has_tx,
            lookup_member=committed_member_lookup(self.store.state, lambda: self.store.height),
            sig_cache=SignatureCache())
        self.engine.is_prechecked = self.mempool.__contains__
        self.metrics = Metrics()
        (tmp_path / me).mkdir(exist_ok=True)
        self.driver = ConsensusDriver(
            genesis=self.genesis, node_key=seed_key(me), store=self.store,
            engine=self.engine, mempool=self.mempool, bus=EventBus(), metrics=self.metrics,
            guard_file=SignerStateFile(tmp_path / me / "signer-state.bin"),
            speculate=speculate)
        self.sent: list[Any] = []
        self.driver.broadcast = self.sent.append

    def count(self, name: str) -> float:
        return self.metrics.counters.get(name, 0.0)

    def close(self) -> None:
        self.store.close()


def txs(count: int, start: int = 1) -> list[Any]:
    return [add_member_tx(ADMIN, f"m{i}", i) for i in range(start, start + count)]


async def until_height(node: Node, height: int) -> None:
    for _ in range(500):
        if node.store.height >= height:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"height {height} not reached")


async def test_the_proposer_announces_its_block_after_the_gossip_of_its_transactions(
        tmp_path: Path) -> None:
    node = Node(tmp_path, ["v0"], "v0")
    try:
        pending = txs(MIN_ANNOUNCED_TXS + 8)
        for tx in pending:
            node.driver.submit_local(tx)
        await node.driver.start()
        await until_height(node, 1)
        block = node.store.get_block(1)
        assert block is not None and len(block.txs) == len(pending)
        kinds = [msg.get("t") for msg in node.sent]
        announced = [msg for msg in node.sent if msg.get("t") == "next"]
        assert len(announced) == 1
        assert announced[0]["h"] == 1 and announced[0]["r"] == 0
        assert announced[0]["time"] == block.header.time_ms
        assert announced[0]["txs"] == [tx.hash for tx in block.txs]
        # Every announced transaction went out before the announcement, on the same links.
        gossiped = [raw for msg in node.sent[:kinds.index("next")] if msg.get("t") == "txs"
                    for raw in msg["txs"]]
        assert sorted(gossiped) == sorted(tx.encoded for tx in pending)
        assert node.count("jangbu_blocks_announced_total") == 1
    finally:
        await node.driver.stop()
        node.close()


async def test_small_blocks_and_a_switched_off_node_are_not_announced(tmp_path: Path) -> None:
    for speculate, count in ((True, MIN_ANNOUNCED_TXS - 1), (False, MIN_ANNOUNCED_TXS + 8)):
        node = Node(tmp_path / str(speculate), ["v0"], "v0", speculate=speculate)
        try:
            for tx in txs(count):
                node.driver.submit_local(tx)
            await node.driver.start()
            await until_height(node, 1)
            assert not [msg for msg in node.sent if msg.get("t") == "next"]
        finally:
            await node.driver.stop()
            node.close()


# Four validators; at height 1, round 0 the proposer is validators[1] (v1), and v2 listens.
NAMES = ["v0", "v1", "v2", "v3"]
PROPOSER_KEY = seed_key("v1").verify_key.encode()
OTHER_KEY = seed_key("v3").verify_key.encode()


@pytest.fixture
def validator(tmp_path: Path) -> Any:
    node = Node(tmp_path, NAMES, "v2")
    yield node
    node.close()


def announce(hashes: list[bytes], *, height: int = 1, round_: int = 0,
             time_ms: int = T0 + 10) -> dict[str, Any]:
    return {"t": "next", "h": height, "r": round_, "time": time_ms, "txs": hashes}


def handle_queued(node: Node) -> None:
    while not node.driver.queue.empty():
        node.driver._handle(node.driver.queue.get_nowait())


def test_an_announcement_from_the_proposer_is_executed_ahead(validator: Node) -> None:
    held = txs(4)
    for tx in held:
        validator.mempool.add(tx)
    validator.driver.on_peer_message(PROPOSER_KEY, announce([tx.hash for tx in held]))
    handle_queued(validator)
    assert validator.count("jangbu_speculations_total") == 1
    assert validator.engine._speculated is not None
    # The same announcement again (a replay) is not executed twice: one per peer and height.
    validator.driver.on_peer_message(PROPOSER_KEY, announce([tx.hash for tx in held]))
    handle_queued(validator)
    assert validator.count("jangbu_speculations_total") == 1


def test_a_missing_transaction_skips_the_speculation(validator: Node) -> None:
    held = txs(3)
    for tx in held[:2]:
        validator.mempool.add(tx)
    validator.driver.on_peer_message(PROPOSER_KEY, announce([tx.hash for tx in held]))
    handle_queued(validator)
    assert validator.count("jangbu_speculations_skipped_total") == 1
    assert validator.count("jangbu_speculations_total") == 0
    assert validator.engine._speculated is None


@pytest.mark.parametrize("sender, message", [
    (OTHER_KEY, announce([b"\x01" * 32])),  # not the proposer of (1, 0)
    (PROPOSER_KEY, announce([b"\x01" * 31])),  # a hash of the wrong size
    (PROPOSER_KEY, announce([b"\x01" * 32], round_=-1)),
    (PROPOSER_KEY, {"t": "next", "h": "1", "r": 0, "time": T0, "txs": []}),
    (PROPOSER_KEY, {"t": "next", "h": 1, "r": 0, "time": T0}),
])
def test_a_wrong_announcement_is_counted_as_bad_and_not_executed(
        validator: Node, sender: bytes, message: dict[str, Any]) -> None:
    validator.driver.on_peer_message(sender, message)
    assert validator.driver.queue.empty()
    assert validator.count("jangbu_p2p_bad_messages_total") == 1


def test_an_announcement_for_another_height_is_ignored(validator: Node) -> None:
    # Height 2's round-0 proposer is v2 itself; height 5's is v1: not the height we decide.
    validator.driver.on_peer_message(PROPOSER_KEY, announce([b"\x01" * 32], height=5))
    assert validator.driver.queue.empty()
    assert validator.count("jangbu_p2p_bad_messages_total") == 0


def test_a_switched_off_node_ignores_announcements(tmp_path: Path) -> None:
    node = Node(tmp_path, NAMES, "v2", speculate=False)
    try:
        node.driver.on_peer_message(PROPOSER_KEY, announce([b"\x01" * 32]))
        assert node.driver.queue.empty()
    finally:
        node.close()


def test_the_announced_execution_serves_the_proposal(tmp_path: Path) -> None:
    proposer = Node(tmp_path, NAMES, "v1")
    validator = Node(tmp_path, NAMES, "v2")
    try:
        held = txs(5)
        for tx in held:
            proposer.mempool.add(tx)
            validator.mempool.add(tx)
        block = proposer.engine.build_block(proposer=PROPOSER_KEY, time_ms=T0 + 10, txs=held,
                                            last_commit=None)
        validator.driver.on_peer_message(PROPOSER_KEY, announce([tx.hash for tx in held]))
        handle_queued(validator)
        validator.engine.validate_block(Block.decode(block.encoded,
                                                     known=validator.mempool.get))
        assert validator.engine.speculations_used == 1
    finally:
        proposer.close()
        validator.close()


def test_announcements_outside_the_current_and_next_round_are_ignored(validator: Node) -> None:
    # v1 proposes rounds 0, 4, 8, ... of height 1. Were any round taken, one Byzantine
    # validator could have us execute a block per message, and a far round's announcement
    # would shut out the honest one of the round we are in.
    held = txs(2)
    for tx in held:
        validator.mempool.add(tx)
    for far in (4, 4_000_000_000):
        validator.driver.on_peer_message(PROPOSER_KEY, announce([tx.hash for tx in held],
                                                                round_=far))
    assert validator.driver.queue.empty()
    assert validator.count("jangbu_p2p_bad_messages_total") == 0
    validator.driver.on_peer_message(PROPOSER_KEY, announce([tx.hash for tx in held]))
    handle_queued(validator)
    assert validator.count("jangbu_speculations_total") == 1


def test_a_list_no_proposer_could_propose_is_not_executed(validator: Node) -> None:
    held = txs(2)
    for tx in held:
        validator.mempool.add(tx)
    repeated = [held[0].hash] * 20 + [held[1].hash]
    validator.driver.on_peer_message(PROPOSER_KEY, announce(repeated))
    handle_queued(validator)
    assert validator.count("jangbu_speculations_skipped_total") == 1
    assert validator.engine._speculated is None


async def test_a_build_whose_round_has_moved_on_is_dropped(tmp_path: Path) -> None:
    from consensus.actions import RequestProposalValue
    from consensus.types import Height, Round
    from node.driver import _BuildProposal

    node = Node(tmp_path, ["v0"], "v0")
    try:
        # The core has not started height 1 (it is not in its propose step): nothing is
        # built, and no value is fed to it.
        ask = RequestProposalValue(Height(1), Round(0))
        node.driver._handle(_BuildProposal(ask, txs(2), T0 + 10))
        assert node.driver.queue.empty()
    finally:
        node.close()


def test_an_announcement_with_an_absurd_time_is_not_executed(validator: Node) -> None:
    """Review: ``time`` 2**63 (an announcement is unsigned) reached a contract's date
    arithmetic, whose OverflowError stopped consensus on every node holding the block's
    transactions. Now it is bounded as a proposal's time is."""
    held = txs(2)
    for tx in held:
        validator.mempool.add(tx)
    validator.driver.on_peer_message(
        PROPOSER_KEY, announce([tx.hash for tx in held], time_ms=2**63))
    handle_queued(validator)
    assert validator.count("jangbu_speculations_total") == 0
    assert validator.engine._speculated is None
    assert validator.driver.fatal is None


def test_a_speculation_that_raises_is_dropped_not_fatal(
        validator: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever an execution on an unverified announcement raises, the proposal is
    executed (or refused) by the usual path later: the driver logs it and goes on."""
    held = txs(2)
    for tx in held:
        validator.mempool.add(tx)

    def overflow(*args: Any) -> Any:
        raise OverflowError("signed integer is greater than maximum")

    monkeypatch.setattr(validator.engine, "execute_txs", overflow)
    validator.driver.on_peer_message(PROPOSER_KEY, announce([tx.hash for tx in held]))
    handle_queued(validator)
    assert validator.count("jangbu_speculations_failed_total") == 1
    assert validator.driver.fatal is None
