"""Block pacing (genesis ``min_block_interval_ms``): fewer, larger blocks under a steady load.

A real driver deciding a one-validator chain alone (tests/node/driver_chain.py). What is
checked is behaviour, not speed: which transactions share a block, and that a height held
back by pacing still starts (never stalls) whatever happens while it waits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from consensus.types import Height, Round, Vote, VoteType
from node.driver import ConsensusDriver
from node.genesis import GenesisError

from driver_chain import Chain
from ledger_support import make_genesis

pytestmark = pytest.mark.timeout(60)

PACE_MS = 1500  # long enough for a commit and a trickle on a loaded machine


@pytest.fixture
async def paced(tmp_path: Any) -> Any:
    built = Chain(tmp_path, consensus={"min_block_interval_ms": PACE_MS,
                                       "timeout_propose_ms": 2 * PACE_MS})
    yield built
    await built.driver.stop()
    built.store.close()


def block_sizes(chain: Chain) -> list[int]:
    return [len(chain.store.get_block(h).txs) for h in range(1, chain.store.height + 1)]


async def test_transactions_arriving_while_a_height_is_held_back_share_one_block(paced: Chain):
    await paced.driver.start()
    paced.submit()
    await paced.until_height(1)  # the first height has no previous start: it starts at once
    started_first = paced.driver._last_start_at
    for _ in range(5):  # a trickle, each arriving after the previous one was admitted
        paced.submit()
        await asyncio.sleep(0.02)
    assert paced.store.height == 1 and paced.driver.started_height == 1  # held back
    await paced.until_height(2)
    assert paced.driver._last_start_at - started_first >= PACE_MS / 1000
    assert block_sizes(paced) == [1, 5]


async def test_without_pacing_the_next_height_starts_as_soon_as_there_is_work(tmp_path):
    chain = Chain(tmp_path)
    try:
        await chain.driver.start()
        chain.submit()
        await chain.until_height(1)
        before = time.monotonic()
        chain.submit()
        await chain.until_height(2)
        assert chain.driver._last_start_at - before < PACE_MS / 1000 / 2
    finally:
        await chain.driver.stop()
        chain.store.close()


async def fill_height_two(chain: Chain, held: int) -> None:
    """Commit height 1; then ``held`` transactions, which pacing holds back, and one more
    that fills a block and starts height 2 at once (waiting could not make it larger)."""
    try:
        await chain.driver.start()
        chain.submit()
        await chain.until_height(1)
        for _ in range(held):
            chain.submit()
        await asyncio.sleep(0.05)
        assert chain.driver.started_height == 1  # not full yet: the 30 s pace holds it
        chain.submit()
        await chain.until_height(2)
        assert block_sizes(chain) == [1, held + 1]
    finally:
        await chain.driver.stop()
        chain.store.close()


async def test_a_full_block_waiting_starts_at_once_whatever_the_pace(tmp_path):
    await fill_height_two(Chain(tmp_path, consensus={
        "min_block_interval_ms": 30_000, "timeout_propose_ms": 60_000, "max_block_txs": 3}),
        held=2)


async def test_a_block_full_by_bytes_starts_at_once(tmp_path):
    probe = Chain(tmp_path / "probe")
    probe.submit()
    size = probe.mempool.size_bytes  # one transaction's bytes (all are alike in size)
    probe.driver.wal.close()
    probe.store.close()
    await fill_height_two(Chain(tmp_path / "chain", consensus={
        "min_block_interval_ms": 30_000, "timeout_propose_ms": 60_000,
        "max_block_bytes": 2 * size}), held=1)


async def hold_back_height_two(chain: Chain) -> ConsensusDriver:
    """Commit height 1, then submit one more: its height 2 is held back by the pace."""
    driver = chain.driver
    await driver.start()
    chain.submit()
    await chain.until_height(1)
    chain.submit()
    await asyncio.sleep(0.02)
    assert driver._idle_timer is not None and driver._idle_height == 2
    return driver


async def test_a_paced_height_decided_by_sync_meanwhile_does_not_stall_the_next(paced: Chain):
    # Review finding (while adding pacing): the timer armed for height 2 stayed armed when
    # sync decided height 2; when it fired its start was dropped as stale, and the work
    # waiting was never started until another transaction arrived.
    driver = await hold_back_height_two(paced)
    block, cert = paced.block(2, 900)  # height 2 as sync brings it, with another tx
    driver._commit(block, cert)
    paced.store.settle()
    await paced.until_height(3)
    assert block_sizes(paced) == [1, 1, 1]


async def test_a_start_fired_for_a_height_sync_decided_is_not_lost(paced: Chain):
    # The start timer fired for height 2 (its event queued) while sync was deciding height
    # 2: the event is stale when handled, and the work waiting must still get a height.
    driver = await hold_back_height_two(paced)
    driver._idle_timer.cancel()
    driver._fire_idle(2)  # fired: _StartIfIdle(2) is queued
    driver.syncing = True  # sync decides height 2 meanwhile (its end is not called here)
    block, cert = paced.block(2, 900)
    driver._commit(block, cert)
    paced.store.settle()
    driver.syncing = False
    await paced.until_height(3)
    assert block_sizes(paced) == [1, 1, 1]


async def test_a_start_that_fires_during_a_sync_waits_for_its_end(paced: Chain):
    driver = await hold_back_height_two(paced)
    driver._idle_timer.cancel()
    driver.syncing = True
    driver._fire_idle(2)  # the timer fires under the sync
    await asyncio.sleep(0.1)
    assert driver.started_height == 1  # no height started under a running sync
    driver.syncing = False
    driver._consider_start()  # what the end of a sync does
    await paced.until_height(2)


async def test_a_peers_message_of_the_next_height_held_during_our_commit_starts_it(
        paced: Chain, monkeypatch: pytest.MonkeyPatch):
    # Review finding: a peer's message of height h+1 that arrives while we still commit h
    # is buffered by the core (it is then two heights ahead of our store), not handed to
    # _on_consensus_message's start; pacing then held h+1 back with the proposal in hand.
    driver = paced.driver
    await driver.start()
    paced.submit()
    await paced.until_height(1)
    early = Vote(VoteType.PREVOTE, Height(2), Round(0), None, driver.pubkey)
    monkeypatch.setattr(driver.core, "pending_messages", lambda: [early])
    paced.submit()
    assert driver.started_height == 2  # at once, not a pace after height 1 started


async def test_an_idle_chain_still_makes_its_empty_blocks_beside_pacing(tmp_path):
    # The empty-block timer and the pacing timer are one timer: with no work, the
    # empty-block interval arms it; the earlier deadline always wins.
    chain = Chain(tmp_path, consensus={"empty_block_interval_ms": 100,
                                       "min_block_interval_ms": 400})
    try:
        await chain.driver.start()
        await chain.until_height(2)
        assert block_sizes(chain)[:2] == [0, 0]
        chain.submit()  # work arrives: the pace, not the idle interval, now decides
        height = chain.store.height
        await chain.until_height(height + 2)
        assert 1 in block_sizes(chain)[height:]
    finally:
        await chain.driver.stop()
        chain.store.close()


@pytest.mark.parametrize("value", [-1, 1.5, True, "100"])
def test_invalid_min_block_interval_is_refused_naming_the_field(value: Any):
    with pytest.raises(GenesisError, match=r"consensus\.min_block_interval_ms"):
        make_genesis(consensus={"min_block_interval_ms": value})


def test_min_block_interval_defaults_to_zero_and_is_read_from_genesis():
    assert make_genesis().params.min_block_interval_ms == 0
    assert make_genesis(consensus={"min_block_interval_ms": 150}).params \
        .min_block_interval_ms == 150


def test_invalid_pace_longer_than_half_the_propose_timeout_is_refused():
    # A validator that starts at once (a full block in its mempool) waits
    # timeout_propose_ms for a proposer still pacing; a longer pace would lose rounds.
    with pytest.raises(GenesisError, match=r"consensus\.min_block_interval_ms: must be at "
                                           r"most half of timeout_propose_ms \(500\)"):
        make_genesis(consensus={"min_block_interval_ms": 501})
    assert make_genesis(consensus={"min_block_interval_ms": 500}).params \
        .min_block_interval_ms == 500
    assert make_genesis(consensus={"min_block_interval_ms": 2000,
                                   "timeout_propose_ms": 4000}).params \
        .min_block_interval_ms == 2000


async def test_an_unasked_empty_blocks_answer_changes_nothing(tmp_path: Any) -> None:
    """Review: an empty ``blocks`` message nobody asked for, between a commit and the next
    start, fell through to the end of a sync and replaced the consensus core: the refusal
    counters on /metrics went back to 0 and the core's buffered messages were dropped."""
    from node.driver import _SyncBlocks

    chain = Chain(tmp_path)
    try:
        await chain.driver.start()
        chain.submit()
        await chain.until_height(1)
        driver = chain.driver
        core = driver.core
        core.rejected["bad_signature"] += 3  # as if a peer's junk had been refused
        for _ in range(5):
            driver.queue.put_nowait(_SyncBlocks(b"\x01" * 32, []))
        await asyncio.sleep(0.2)
        assert driver.core is core
        assert driver.consensus_rejected("bad_signature") == 3
        assert "jangbu_sync_ignored_total 5" in driver.metrics.render()
        # A replaced core (a real sync) carries the counts over.
        driver._replace_core()
        assert driver.core is not core and driver.consensus_rejected("bad_signature") == 3
    finally:
        await chain.driver.stop()
        chain.store.close()
