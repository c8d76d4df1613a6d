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

from node.genesis import GenesisError

from driver_chain import Chain
from ledger_support import make_genesis

pytestmark = pytest.mark.timeout(60)

PACE_MS = 400


@pytest.fixture
async def paced(tmp_path: Any) -> Any:
    built = Chain(tmp_path, consensus={"min_block_interval_ms": PACE_MS})
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


async def test_a_full_block_waiting_starts_at_once_whatever_the_pace(tmp_path):
    chain = Chain(tmp_path, consensus={"min_block_interval_ms": 30_000, "max_block_txs": 3})
    try:
        await chain.driver.start()
        chain.submit()
        await chain.until_height(1)
        chain.submit()
        chain.submit()
        await asyncio.sleep(0.05)
        assert chain.driver.started_height == 1  # two of three: pacing holds height 2
        chain.submit()  # the third fills a block: waiting could not make it larger
        await chain.until_height(2)
        assert block_sizes(chain) == [1, 3]
    finally:
        await chain.driver.stop()
        chain.store.close()


async def test_a_block_full_by_bytes_starts_at_once(tmp_path):
    probe = Chain(tmp_path / "probe")
    probe.submit()
    size = probe.mempool.size_bytes  # one transaction's bytes (all are alike in size)
    probe.driver.wal.close()
    probe.store.close()
    chain = Chain(tmp_path / "chain", consensus={"min_block_interval_ms": 30_000,
                                                 "max_block_bytes": 2 * size})
    try:
        await chain.driver.start()
        chain.submit()
        await chain.until_height(1)
        chain.submit()
        chain.submit()
        await chain.until_height(2)
        assert block_sizes(chain) == [1, 2]
    finally:
        await chain.driver.stop()
        chain.store.close()


async def test_a_paced_height_decided_by_sync_meanwhile_does_not_stall_the_next(paced: Chain):
    # Review finding (while adding pacing): the timer armed for height 2 stayed armed when
    # sync decided height 2; when it fired its start was dropped as stale, and the work
    # waiting was never started until another transaction arrived.
    driver = paced.driver
    await driver.start()
    paced.submit()
    await paced.until_height(1)
    paced.submit()
    await asyncio.sleep(0.02)
    assert driver._idle_timer is not None and driver._idle_height == 2
    block, cert = paced.block(2, 900)  # height 2 as sync brings it, with another tx
    driver._commit(block, cert)
    paced.store.settle()
    await paced.until_height(3)
    assert block_sizes(paced) == [1, 1, 1]


@pytest.mark.parametrize("value", [-1, 1.5, True, "100"])
def test_invalid_min_block_interval_is_refused_naming_the_field(value: Any):
    with pytest.raises(GenesisError, match=r"consensus\.min_block_interval_ms"):
        make_genesis(consensus={"min_block_interval_ms": value})


def test_min_block_interval_defaults_to_zero_and_is_read_from_genesis():
    assert make_genesis().params.min_block_interval_ms == 0
    assert make_genesis(consensus={"min_block_interval_ms": 150}).params \
        .min_block_interval_ms == 150
