"""The consensus driver's per-height bookkeeping: WAL clearing, stale timeouts, tx gossip.

A one-validator chain run by a real driver (real store, engine, signer guard file), no
network: the single validator decides every height alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consensus.events import Start, TimeoutFired, TimeoutStep
from consensus.types import Height, Round
from node.driver import TX_GOSSIP_INTERVAL_S, WAL_PREFIX, ConsensusDriver
from node.engine import SignatureCache
from node.events import EventBus
from node.execution import committed_member_lookup
from node.mempool import Mempool
from node.metrics import Metrics
from node.signer_state import SignerStateFile

from ledger_support import add_member_tx, make_genesis, open_engine, seed_key

pytestmark = pytest.mark.timeout(60)


class Chain:
    def __init__(self, tmp_path: Any) -> None:
        self.genesis = make_genesis(["v0"])
        self.store, self.engine = open_engine(str(tmp_path / "data"), self.genesis)
        self.mempool = Mempool(
            chain_id=self.genesis.chain_id, contracts=self.engine.contracts,
            is_committed=self.store.has_tx,
            lookup_member=committed_member_lookup(self.store.state, lambda: self.store.height),
            sig_cache=SignatureCache())
        self.driver = ConsensusDriver(
            genesis=self.genesis, node_key=seed_key("v0"), store=self.store,
            engine=self.engine, mempool=self.mempool, bus=EventBus(), metrics=Metrics(),
            guard_file=SignerStateFile(tmp_path / "signer-state.bin"))
        self.sent: list[Any] = []
        self.driver.broadcast = self.sent.append
        self.nonce = 0

    def submit(self) -> None:
        self.nonce += 1
        self.driver.submit_local(add_member_tx(seed_key("admin"), f"m{self.nonce}", self.nonce))

    async def until_height(self, height: int) -> None:
        for _ in range(500):
            if self.store.height >= height:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"height {height} not reached (at {self.store.height})")

    def wal_keys(self) -> list[bytes]:
        return [key for key, _ in self.store.scan_records(WAL_PREFIX)]


@pytest.fixture
async def chain(tmp_path: Any) -> Any:
    built = Chain(tmp_path)
    yield built
    await built.driver.stop()
    built.store.close()


async def test_commit_clears_the_wal_without_scanning_its_prefix(chain: Chain, monkeypatch):
    # Regression: a prefix scan over keys rewritten every height steps over every deleted
    # version still in LevelDB's memtable, and grew to tens of ms per height.
    def no_scan(prefix: bytes) -> None:
        raise AssertionError("the WAL must be cleared by key, not by a prefix scan")

    monkeypatch.setattr(chain.store, "delete_prefix", no_scan)
    await chain.driver.start()
    for height in (1, 2, 3):
        chain.submit()
        await chain.until_height(height)
    await asyncio.sleep(0.05)
    assert chain.store.height == 3
    assert chain.wal_keys() == []  # an idle node holds no records for the next height
    assert chain.driver._wal_high == 0


async def test_wal_clear_covers_records_left_above_a_reset_sequence(chain: Chain):
    # Block sync restarts the sequence at 0 without clearing: records the old core wrote
    # above what the new one rewrites must still go at the next commit.
    driver = chain.driver
    for _ in range(5):
        driver._wal_append(Start(Height(1)))
    driver._wal_seq = 0
    driver._wal_append(Start(Height(1)))
    assert len(chain.wal_keys()) == 5
    driver._clear_wal()
    assert chain.wal_keys() == []
    assert (driver._wal_seq, driver._wal_high) == (0, 0)


async def test_wal_found_at_start_is_cleared_by_the_first_clear(tmp_path):
    first = Chain(tmp_path)
    for seq in range(3):  # left by a previous run for height 1
        first.driver._wal_append(TimeoutFired(Height(1), Round(seq), TimeoutStep.PROPOSE))
    first.store.close()
    again = Chain(tmp_path)
    try:
        assert len(again.driver._load_wal()) == 4  # the three records, then Start(1)
        assert (again.driver._wal_seq, again.driver._wal_high) == (3, 3)
        again.driver._clear_wal()
        assert again.wal_keys() == []
    finally:
        again.store.close()


async def test_timeouts_of_a_committed_height_are_cancelled_and_not_logged(chain: Chain):
    await chain.driver.start()
    chain.submit()
    await chain.until_height(1)
    await asyncio.sleep(0.05)
    assert all(height > 1 for height, _ in chain.driver._timers)
    # One that fired before its height committed is dropped without a WAL record.
    chain.driver._handle(TimeoutFired(Height(1), Round(0), TimeoutStep.PRECOMMIT))
    assert chain.wal_keys() == []


async def test_gossip_flush_sends_one_message_per_burst_and_respects_the_interval(
        chain: Chain):
    chain.submit()
    chain.submit()  # admitted in the same turn of the loop: one message
    await asyncio.sleep(0)
    await asyncio.sleep(0.002)
    txs = [msg for msg in chain.sent if msg.get("t") == "txs"]
    assert len(txs) == 1 and len(txs[0]["txs"]) == 2
    chain.submit()  # right after a flush: armed for the interval's end, not sent at once
    flush = chain.driver._gossip_flush
    assert flush is not None
    assert flush.when() >= chain.driver._last_gossip_flush + TX_GOSSIP_INTERVAL_S
    for _ in range(200):  # (no wall-clock assertion: a loaded machine may be late)
        if len([msg for msg in chain.sent if msg.get("t") == "txs"]) == 2:
            break
        await asyncio.sleep(0.01)
    txs = [msg for msg in chain.sent if msg.get("t") == "txs"]
    assert len(txs) == 2 and len(txs[1]["txs"]) == 1
    assert chain.driver._gossip_flush is None
