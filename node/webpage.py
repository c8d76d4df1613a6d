"""The small web page each node serves: parcel tracking, meat traceability, an explorer.

Plain HTML + vanilla JS + CSS from ``node/web/`` (package data, no build step, no CDN: the
page works offline against the node it came from). Every page address returns the same
HTML shell; ``app.js`` reads the path and calls the same-origin JSON API (``/v1/query``,
``/v1/blocks``, ``/v1/status``, ``/v1/events``).

Addresses (shareable; a QR code on a meat label opens ``/trace/<number>``)::

    /                      search
    /track/{order id or waybill}
    /trace/{cattle or bundle number}
    /explorer
    /static/{asset}        the files of node/web/, cached (versioned by content hash)

Unknown paths outside ``/v1/`` get an HTML 404 page; the API keeps its JSON errors.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from node.app import Node

WEB_DIR: Final = Path(__file__).resolve().parent / "web"
LANGS: Final = ("en", "ko")

CONTENT_TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
# Served under /static/; the shell is served at the page addresses only.
ASSETS: Final = ("app.js", "i18n.js", "style.css", "favicon.svg")

CSP: Final = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
              "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
              "frame-ancestors 'none'")
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
ASSET_CACHE: Final = "public, max-age=31536000, immutable"  # URL carries ?v=<hash>
UNVERSIONED_CACHE: Final = "public, max-age=300"
PAGE_CACHE: Final = "no-cache"

API_PREFIXES: Final = ("/v1/", "/metrics", "/healthz")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pick_language(accept_language: str) -> str:
    """The first of ``LANGS`` named in an Accept-Language header (by q-value), else "en"."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, index, tag.strip().lower()[:2]))
    for neg_q, _, lang in sorted(ranked):
        if neg_q < 0 and lang in LANGS:
            return lang
    return "en"


class Assets:
    """The static files read once at start, with their content-hash version."""

    def __init__(self, directory: Path = WEB_DIR) -> None:
        self.files: dict[str, bytes] = {name: (directory / name).read_bytes() for name in ASSETS}
        digest = hashlib.sha256()
        for name in ASSETS:
            digest.update(self.files[name])
        self.version = digest.hexdigest()[:12]
        self.shell = (directory / "index.html").read_text(encoding="utf-8")
        self.not_found = (directory / "404.html").read_text(encoding="utf-8")

    def render(self, template: str, *, lang: str, node_name: str, chain_id: str) -> str:
        return (template.replace("{{v}}", self.version)
                .replace("{{lang}}", lang)
                .replace("{{node}}", html.escape(node_name))
                .replace("{{chain}}", html.escape(chain_id)))


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def add_web_routes(app: web.Application, node: Node) -> None:
    """Add the page addresses, /static/ and the HTML 404 to the API application."""
    assets = Assets()

    def page(template: str, status: int = 200, request: web.Request | None = None
             ) -> web.Response:
        lang = pick_language(request.headers.get("Accept-Language", "")) if request else "en"
        body = assets.render(template, lang=lang, node_name=node.config.name,
                             chain_id=node.chain_id)
        return web.Response(text=body, status=status, content_type="text/html",
                            charset="utf-8",
                            headers={**SECURITY_HEADERS, "Cache-Control": PAGE_CACHE,
                                     "Vary": "Accept-Language"})

    async def shell(request: web.Request) -> web.Response:
        return page(assets.shell, request=request)

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = assets.files.get(name)
        if body is None:
            raise web.HTTPNotFound()
        versioned = request.query.get("v") == assets.version
        etag = f'"{assets.version}"'
        headers = {**SECURITY_HEADERS, "ETag": etag,
                   "Cache-Control": ASSET_CACHE if versioned else UNVERSIONED_CACHE}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        content_type = CONTENT_TYPES[Path(name).suffix]
        return web.Response(body=body, headers={**headers, "Content-Type":
                                                f"{content_type}; charset=utf-8"})

    async def favicon(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/static/favicon.svg?v={assets.version}")

    @web.middleware
    async def html_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
        """An HTML 404 outside the API (the API's own middleware keeps JSON for /v1/...)."""
        try:
            return await handler(request)
        except web.HTTPNotFound:
            if is_api_path(request.path) or request.method not in ("GET", "HEAD"):
                raise
            return page(assets.not_found, status=404, request=request)

    r = app.router
    for path in ("/", "/track", "/track/", "/track/{ident}", "/trace", "/trace/",
                 "/trace/{number}", "/explorer"):
        r.add_get(path, shell)
    r.add_get("/static/{name}", static)
    r.add_get("/favicon.ico", favicon)
    app.middlewares.append(html_not_found)


__all__ = ["add_web_routes", "pick_language"]
