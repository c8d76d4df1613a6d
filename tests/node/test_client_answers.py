"""How the HTTP client reads answers: the API's errors by their code, another server's
answers as "not a jangbu node", and query parameters in the form the API parses."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.api import _SECONDS
from node.client import Client, ClientError
from node.tx import Transaction

from ledger_support import CHAIN_ID, seed_key


async def serve(handler: Any) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.mark.asyncio
async def test_an_api_error_among_the_accepted_statuses_keeps_its_code() -> None:
    """Review: ``state`` accepts 404 (a proof of absence); a 404 of the API without a
    proof (an unknown contract) was reported as "not a jangbu node API"."""
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"code": "E_UNKNOWN_CONTRACT", "message": "no such"},
                                 status=404)

    server = await serve(handler)
    try:
        async with Client(str(server.make_url(""))) as client:
            with pytest.raises(ClientError) as refused:
                await client.state("nope", "k")
        assert (refused.value.status, refused.value.code) == (404, "E_UNKNOWN_CONTRACT")
    finally:
        await server.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("timeout_s", [1e-05, 0.001, 2.5, 30.0, 300.0])
async def test_the_wait_timeout_is_sent_as_the_api_parses_it(timeout_s: float) -> None:
    """Review: ``str(timeout_s)`` gave ``1e-05`` for small floats, which the API's strict
    parsing refuses."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.query["timeout"])
        return web.json_response({"hash": "00" * 32, "status": "committed"})

    server = await serve(handler)
    try:
        async with Client(str(server.make_url(""))) as client:
            tx = Transaction.create(seed_key("a"), CHAIN_ID, "c", "a", {}, 1)
            await client.submit(tx, wait=True, timeout_s=timeout_s)
        assert _SECONDS.fullmatch(seen[0]), seen
        assert abs(float(seen[0]) - timeout_s) < 0.001
    finally:
        await server.close()
