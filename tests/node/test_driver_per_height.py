"""The consensus driver's per-height bookkeeping: the WAL file, stale timeouts, tx gossip.

A one-validator chain run by a real driver (real store, engine, signer guard file), no
network: the single validator decides every height alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from consensus import canonical
from consensus.events import ProposalValueReady, Start, TimeoutFired, TimeoutStep
from consensus.types import Height, Round
from consensus.wal import WalRecord
from node.driver import TX_GOSSIP_INTERVAL_S, WAL_PREFIX
from node.wal_file import encode_record

from driver_chain import Chain
from ledger_support import add_member_tx, seed_key

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def reopened(tmp_path: Any) -> Iterator[Chain]:
    """The chain opened again on the data a previous :class:`Chain` left, closed after."""
    again = Chain(tmp_path)
    try:
        yield again
    finally:
        again.driver.wal.close()
        again.store.close()


@pytest.fixture
async def chain(tmp_path: Any) -> Any:
    built = Chain(tmp_path)
    yield built
    await built.driver.stop()
    built.store.close()


async def test_commit_empties_the_wal_and_leveldb_holds_none_of_it(chain: Chain, monkeypatch):
    # Regression (twentieth round): every WAL record, a whole proposed block among them,
    # went through LevelDB's log, memtable and compactions, 41% of a loaded node's writes.
    put_record = chain.store.put_record

    def no_wal_in_leveldb(key: bytes, value: bytes, *, sync: bool) -> None:
        assert not key.startswith(WAL_PREFIX), "WAL records belong in the WAL file"
        put_record(key, value, sync=sync)

    monkeypatch.setattr(chain.store, "put_record", no_wal_in_leveldb)
    await chain.driver.start()
    for height in (1, 2, 3):
        chain.submit()
        await chain.until_height(height)
    await asyncio.sleep(0.05)
    assert chain.store.height == 3
    assert chain.wal_records() == []  # an idle node holds no records for the next height
    assert chain.driver.wal.size == 0
    assert list(chain.store.scan_records(WAL_PREFIX)) == []


async def test_wal_records_are_appended_in_order_and_a_reset_replaces_them(chain: Chain):
    driver = chain.driver
    first = [TimeoutFired(Height(1), Round(r), TimeoutStep.PROPOSE) for r in range(3)]
    for event in first:
        driver._wal_append(event)
    assert [WalRecord.from_obj(canonical.decode(raw)).event
            for raw in chain.wal_records()] == first
    driver._reset_wal([Start(Height(2))])
    assert [WalRecord.from_obj(canonical.decode(raw)).event
            for raw in chain.wal_records()] == [Start(Height(2))]
    driver._reset_wal([])
    assert chain.wal_records() == [] and driver.wal.size == 0


async def test_wal_found_at_start_is_loaded_then_cleared_by_the_first_reset(tmp_path):
    first = Chain(tmp_path)
    left = [TimeoutFired(Height(1), Round(seq), TimeoutStep.PROPOSE) for seq in range(3)]
    for event in left:  # left by a previous run for height 1
        first.driver._wal_append(event)
    first.driver.wal.close()
    first.store.close()
    with reopened(tmp_path) as again:
        assert again.driver._load_wal() == [*left, Start(Height(1))]
        # The Start added at load is logged in its place: a second crash replays the same.
        assert again.wal_events() == [*left, Start(Height(1))]
        again.driver._reset_wal([])
        assert again.wal_records() == []


async def test_a_torn_wal_tail_is_dropped_and_the_next_record_still_reads(tmp_path):
    first = Chain(tmp_path)
    for seq in range(2):
        first.driver._wal_append(TimeoutFired(Height(1), Round(seq), TimeoutStep.PROPOSE))
    path = first.driver.wal.path
    first.driver.wal.close()
    first.store.close()
    with open(path, "ab") as file:  # a third record cut short by a crash in mid-write
        file.write(encode_record(b"\x81\xa4kind\xa5start")[:-3])
    with reopened(tmp_path) as again:
        assert again.driver.wal.dropped_bytes > 0
        again.driver._wal_append(Start(Height(1)))
        events = [WalRecord.from_obj(canonical.decode(raw)).event
                  for raw in again.wal_records()]
        assert events == [TimeoutFired(Height(1), Round(0), TimeoutStep.PROPOSE),
                          TimeoutFired(Height(1), Round(1), TimeoutStep.PROPOSE),
                          Start(Height(1))]


async def test_a_wal_left_in_leveldb_by_an_older_node_moves_to_the_file(tmp_path):
    # Stores written before the WAL file kept its records under w/<seq> in LevelDB.
    first = Chain(tmp_path)
    left = [TimeoutFired(Height(1), Round(r), TimeoutStep.PREVOTE) for r in range(2)]
    for seq, event in enumerate(left):
        first.store.put_record(WAL_PREFIX + seq.to_bytes(8, "big"),
                               canonical.encode(WalRecord(event).to_obj()), sync=False)
    first.driver.wal.close()
    first.store.close()
    with reopened(tmp_path) as again:
        assert list(again.store.scan_records(WAL_PREFIX)) == []
        assert [WalRecord.from_obj(canonical.decode(raw)).event
                for raw in again.wal_records()] == left
        assert again.driver._load_wal() == [*left, Start(Height(1))]


async def test_timeouts_of_a_committed_height_are_cancelled_and_not_logged(chain: Chain):
    await chain.driver.start()
    chain.submit()
    await chain.until_height(1)
    await asyncio.sleep(0.05)
    assert all(height > 1 for height, _ in chain.driver._timers)
    # One that fired before its height committed is dropped without a WAL record.
    chain.driver._handle(TimeoutFired(Height(1), Round(0), TimeoutStep.PRECOMMIT))
    assert chain.wal_records() == []


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


async def test_a_proposed_block_in_the_wal_comes_back_byte_for_byte(tmp_path):
    # The record a height's WAL mostly holds: the proposal's whole block (~0.7 MB for a
    # full one), framed in the file like any other record.
    first = Chain(tmp_path)
    txs = [add_member_tx(seed_key("admin"), f"m{n}", n) for n in range(1, 301)]
    block = first.engine.build_block(proposer=first.driver.pubkey, time_ms=1_000, txs=txs,
                                     last_commit=None)
    assert len(block.txs) == 300 and len(block.encoded) > 50_000
    ready = ProposalValueReady(Height(1), Round(0), block.hash, block.encoded)
    first.driver._wal_append(Start(Height(1)))
    first.driver._wal_append(ready)
    first.driver.wal.close()  # killed here: no commit, no reset
    first.store.close()
    with reopened(tmp_path) as again:
        assert again.driver._load_wal() == [Start(Height(1)), ready]


async def test_a_synced_block_keeps_its_heights_wal_until_it_is_written(chain: Chain):
    # Review finding: a synced block's batch is written on the store's thread after
    # _commit returns, and the WAL of its height was emptied at once; a kill in between
    # left neither the block nor the lock the core held at that height.
    driver = chain.driver
    lock = TimeoutFired(Height(1), Round(0), TimeoutStep.PRECOMMIT)
    driver._wal_append(lock)  # what the core at height 1 logged before the sync
    block, cert = chain.block(1, 900)
    driver._commit(block, cert, background=True)
    assert chain.wal_events() == [lock]  # block 1 may not be on disk yet
    block, cert = chain.block(2, 901)
    driver._commit(block, cert, background=True)  # waited for block 1's write first
    assert chain.wal_events() == []
    chain.store.settle()
    assert chain.store.height == 2


async def test_records_of_a_height_committed_before_the_reset_are_skipped(tmp_path):
    # A kill between a commit and the WAL's reset: the block is stored, its height's
    # records are still in the file.
    first = Chain(tmp_path)
    first.driver._wal_append(Start(Height(1)))
    first.driver._wal_append(TimeoutFired(Height(1), Round(0), TimeoutStep.PROPOSE))
    block, cert = first.block(1, 902)
    first.engine.commit(block, cert)
    first.driver.wal.close()
    first.store.close()
    with reopened(tmp_path) as again:
        assert again.store.height == 1
        assert again.driver._load_wal() == []


async def test_invalid_undecodable_wal_record_is_cut_off_with_everything_after_it(tmp_path):
    first = Chain(tmp_path)
    good = TimeoutFired(Height(1), Round(0), TimeoutStep.PROPOSE)
    first.driver._wal_append(good)
    first.driver.wal.append(b"\xff\xfe not a record")  # whole, checked, not a record
    first.driver._wal_append(TimeoutFired(Height(1), Round(1), TimeoutStep.PROPOSE))
    first.driver.wal.close()
    first.store.close()
    with reopened(tmp_path) as again:
        assert again.driver._load_wal() == [good, Start(Height(1))]
        # Cut back to the good records, so what this run logs is read at the next start.
        assert again.wal_events() == [good, Start(Height(1))]
        again.driver._wal_append(Start(Height(1)))
        assert again.wal_events()[-1] == Start(Height(1))


async def test_invalid_empty_legacy_wal_record_ends_what_is_moved(tmp_path):
    first = Chain(tmp_path)
    kept = TimeoutFired(Height(1), Round(0), TimeoutStep.PREVOTE)
    first.store.put_record(WAL_PREFIX + (0).to_bytes(8, "big"),
                           canonical.encode(WalRecord(kept).to_obj()), sync=False)
    first.store.put_record(WAL_PREFIX + (1).to_bytes(8, "big"), b"", sync=False)
    first.store.put_record(WAL_PREFIX + (2).to_bytes(8, "big"),
                           canonical.encode(WalRecord(Start(Height(1))).to_obj()), sync=False)
    first.driver.wal.close()
    first.store.close()
    with reopened(tmp_path) as again:
        assert again.wal_events() == [kept]
        assert list(again.store.scan_records(WAL_PREFIX)) == []


def test_invalid_wal_that_cannot_be_opened_stops_the_start_with_a_message(tmp_path):
    from cli.network import init_network
    from cli.presets import CONTRACTS, PRESETS
    from node.app import Node, NodeStartError
    from node.config import load_config
    from node.wal_file import FILE_NAME

    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="wal-open", base_port=40340)
    config = load_config(tmp_path / "net" / "customs")
    node = Node(config)
    node.driver.wal.close()
    node.store.close()
    wal_path = config.data_dir / FILE_NAME
    wal_path.unlink()
    wal_path.mkdir()  # something that is not a file where the WAL goes
    with pytest.raises(NodeStartError, match="consensus WAL"):
        Node(config)
    # The store was closed on the way out: it opens again at once.
    wal_path.rmdir()
    node = Node(config)
    node.driver.wal.close()
    node.store.close()
