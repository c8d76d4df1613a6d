"""``GET /v1/events``, in one process over a real LedgerStore: a replay shares the event
loop with consensus, and ``from_height`` bounds live records too.

Regressions from a review of the API: a replay whose filter matched nothing never
reached an ``await``, so every height it read held the node's event loop (consensus
included: 20 streams on a 256-block chain held commits back by 4.5 s); and a stream
opened with ``from_height`` beyond the tip got the next commit's records anyway.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_block_files import commit_blocks

from node import connection_watch
from node.api import Api
from node.events import EventBus
from node.store import LedgerStore

from ledger_support import make_genesis

HEIGHTS = 40


def open_store(path: Path) -> LedgerStore:
    genesis = make_genesis()
    return LedgerStore.open(str(path), chain_id=genesis.chain_id, genesis_hash=genesis.hash)


async def serve(store: LedgerStore, bus: EventBus) -> TestServer:
    api = Api(SimpleNamespace(store=store, bus=bus))  # type: ignore[arg-type]  # what get_events reads
    app = web.Application()
    app.router.add_get("/v1/events", api.get_events)
    server = TestServer(app)
    await server.start_server()
    return server


async def read_until(response: aiohttp.ClientResponse, marker: bytes) -> bytes:
    """What the stream sends until ``marker`` has arrived (at most 10 s)."""
    seen = b""
    async with asyncio.timeout(10):
        while marker not in seen:
            chunk = await response.content.readany()
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.asyncio
async def test_a_replay_matching_nothing_lets_the_event_loop_run_between_heights(
        tmp_path: Path) -> None:
    commit_blocks(str(tmp_path), HEIGHTS)
    store, bus = open_store(tmp_path), EventBus()
    server = await serve(store, bus)
    ticks = 0

    async def other_work() -> None:  # consensus, other clients: anything on the loop
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.create_task(other_work())
    try:
        async with aiohttp.ClientSession() as session:
            url = server.make_url("/v1/events?from_height=1&type=nothing_has_this_type")
            async with session.get(url) as response:
                assert response.status == 200  # the headers are out: the replay runs
                before = ticks
                assert b": live" in await read_until(response, b": live")
                during = ticks - before
        # Before: 0 or a few (the HTTP writes' own awaits) for 40 heights read back to back.
        assert during >= HEIGHTS - 1, during
    finally:
        ticker.cancel()
        await server.close()
        store.close()


@pytest.mark.asyncio
async def test_from_height_beyond_the_tip_bounds_live_records_too(tmp_path: Path) -> None:
    blocks = commit_blocks(str(tmp_path), 3)
    store, bus = open_store(tmp_path), EventBus()
    server = await serve(store, bus)
    last = blocks[-1]
    receipts = store.receipts_of(3)
    assert any(receipt.events for receipt in receipts)
    tx_hashes = [tx.hash for tx in last.txs]
    try:
        url = server.make_url("/v1/events?from_height=100")
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert await read_until(response, b": live") == b": live\n\n"
            bus.publish_block(4, last.header.time_ms, tx_hashes, receipts)   # below 100
            bus.publish_block(99, last.header.time_ms, tx_hashes, receipts)  # below 100
            bus.publish_block(100, last.header.time_ms, tx_hashes, receipts)
            seen = await read_until(response, b"id: 100:")
        ids = [line for line in seen.decode().splitlines() if line.startswith("id: ")]
        assert ids and all(line.startswith("id: 100:") for line in ids), ids
    finally:
        await server.close()
        store.close()


@pytest.mark.asyncio
async def test_a_replay_stops_reading_once_its_client_has_gone(tmp_path: Path) -> None:
    """Review: the stream ended on a lost connection only once live; a replay matching
    nothing wrote nothing, so nothing failed, and it read every block to the tip for a
    client long gone (and a closed connection no longer counts against the cap)."""
    from node.app import CappedConnections

    heights = 300
    commit_blocks(str(tmp_path), heights, txs_per_block=1)
    store, bus = open_store(tmp_path), EventBus()
    read: list[int] = []
    real_get_block = store.get_block

    def counting_get_block(height: int) -> Any:
        read.append(height)
        return real_get_block(height)

    store.get_block = counting_get_block  # type: ignore[method-assign]
    api = Api(SimpleNamespace(store=store, bus=bus))  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_get("/v1/events", api.get_events)
    runner = web.AppRunner(app)
    await runner.setup()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(CappedConnections(runner.server, 10), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/events?from_height=1&type=nothing_has_this_type HTTP/1.1\r\n"
                     b"Host: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.transport.abort()  # gone, mid-replay
        seen = -1
        for _ in range(50):  # until the replay has stopped reading (at most 5 s)
            await asyncio.sleep(0.1)
            if len(read) == seen:
                break
            seen = len(read)
        assert bus.subscribers == 0 and connection_watch.watched() == 0
        assert len(read) < heights / 2, len(read)  # before: every height, to the tip
    finally:
        server.close()
        await runner.cleanup()
        store.close()
