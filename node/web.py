"""The small web page each node serves (issue: web page). Routes are added to the API app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from node.app import Node

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>jangbu node</title></head><body>
<h1>jangbu 장부 — node {name}</h1>
<p>Chain <code>{chain}</code>. API: <a href="/v1/status">/v1/status</a>,
<a href="/v1/openapi.json">/v1/openapi.json</a>, <a href="/metrics">/metrics</a>.</p>
</body></html>"""


def add_web_routes(app: web.Application, node: Node) -> None:
    async def index(request: web.Request) -> web.Response:
        return web.Response(text=PAGE.format(name=node.config.name, chain=node.chain_id),
                            content_type="text/html")

    app.router.add_get("/", index)


__all__: list[Any] = ["add_web_routes"]
