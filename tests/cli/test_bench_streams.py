"""How ``jangbu bench`` reads an event stream that ends: as a failed run, never as a
finished one. Review: a node stopped cleanly (SIGTERM) closes its streams without an error;
the bench then stopped waiting and reported the commits seen so far, exit code 0."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cli.bench import Bench
from cli.errors import CliError


async def closing_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b": live\n\n")
    return response  # and the stream ends, as a node's does when it stops


@pytest.mark.asyncio
async def test_a_stream_the_node_ends_fails_the_follower(tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_get("/v1/events", closing_stream)
    server = TestServer(app)
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        genesis = {"chain_id": "c", "validators": [{"name": "n0", "api": url}], "orgs": []}
        (tmp_path / "genesis.json").write_text(json.dumps(genesis))
        bench = Bench(tmp_path, txs=1, rate=0, clients=1, batch=1)
        stop = asyncio.Event()
        with pytest.raises(CliError, match="ended during the run"):
            await asyncio.wait_for(bench.follow(0, stop), 10)
        # Once the run is over (stop set), the same end is the normal one.
        stop.set()
        await asyncio.wait_for(bench.follow(0, stop), 10)
    finally:
        await server.close()
