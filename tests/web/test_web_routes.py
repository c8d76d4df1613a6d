"""The page addresses, static assets, headers and 404s, on a real Node's HTTP application.

The node is built in process from a real network home (``jangbu network init`` code); only
its HTTP application is served (aiohttp's test server): no consensus or peers are needed to
check routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cli.network import init_network
from cli.presets import CONTRACTS, PRESETS
from node.api import Api
from node.app import Node
from node.config import load_config
from node.webpage import ASSETS, WEB_DIR, add_web_routes, pick_language


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="web-routes", base_port=40000)
    node = Node(load_config(tmp_path / "net" / "customs"))
    app = Api(node).app()
    add_web_routes(app, node)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    node.store.close()


@pytest.mark.parametrize("path", ["/", "/track/DEMO-1", "/track/DEMOHAWB0001",
                                  "/trace/L02601054521005", "/trace/002100000016",
                                  "/explorer", "/track", "/trace/"])
async def test_page_addresses_return_the_shell(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    body = await resp.text()
    assert '<main id="app"' in body and "/static/app.js?v=" in body
    assert "{{" not in body  # every placeholder filled


async def test_pages_carry_security_headers(client: TestClient) -> None:
    resp = await client.get("/track/DEMO-1")
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-cache"


async def test_the_shell_has_no_inline_script_or_external_url(client: TestClient) -> None:
    body = await (await client.get("/")).text()
    assert "<script>" not in body and "<style" not in body and " style=" not in body
    assert "http://" not in body and "https://" not in body  # works offline, no CDN
    for name in ASSETS:
        text = (WEB_DIR / name).read_text(encoding="utf-8")
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_script_never_writes_html() -> None:
    script = (WEB_DIR / "app.js").read_text(encoding="utf-8")
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


async def test_language_default_follows_accept_language(client: TestClient) -> None:
    ko = await (await client.get("/", headers={"Accept-Language": "ko-KR,ko;q=0.9"})).text()
    en = await (await client.get("/", headers={"Accept-Language": "en-US,en;q=0.9"})).text()
    assert 'data-default-lang="ko"' in ko and 'data-default-lang="en"' in en


@pytest.mark.parametrize("header,expected", [
    ("", "en"), ("ko", "ko"), ("en-GB,ko;q=0.8", "en"), ("fr-FR,ko;q=0.5,en;q=0.4", "ko"),
    ("ko;q=0.1,en;q=0.9", "en"), ("de", "en"), ("ko;q=bad", "en"),
])
def test_pick_language(header: str, expected: str) -> None:
    assert pick_language(header) == expected


async def test_static_assets_are_versioned_and_cached(client: TestClient) -> None:
    body = await (await client.get("/")).text()
    version = body.split("/static/app.js?v=")[1].split('"')[0]
    resp = await client.get(f"/static/app.js?v={version}")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in resp.headers["Cache-Control"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    again = await client.get("/static/app.js", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    css = await client.get("/static/style.css")
    assert css.headers["Content-Type"].startswith("text/css")
    assert "max-age=300" in css.headers["Cache-Control"]


@pytest.mark.parametrize("path", ["/static/../webpage.py", "/static/index.html",
                                  "/static/nope.js", "/static/%2e%2e%2fapp.py"])
async def test_invalid_static_paths_are_not_served(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert "def add_web_routes" not in await resp.text()


async def test_invalid_page_path_gets_an_html_404(client: TestClient) -> None:
    resp = await client.get("/no/such/page")
    assert resp.status == 404
    assert resp.content_type == "text/html"
    assert "404" in await resp.text()
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_invalid_api_path_stays_json(client: TestClient) -> None:
    resp = await client.get("/v1/no-such-thing")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert (await resp.json())["code"] == "E_NOT_FOUND"


async def test_api_still_answers_beside_the_page(client: TestClient) -> None:
    status = await (await client.get("/v1/status")).json()
    assert status["chain_id"] == "web-routes"
    resp = await client.get("/v1/query/clearance/parcel", params={"args": '{"order_id":"X-1"}'})
    assert resp.status == 404 and resp.content_type == "application/json"


async def test_favicon_redirects_to_the_static_icon(client: TestClient) -> None:
    resp = await client.get("/favicon.ico", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/static/favicon.svg")


async def test_node_name_is_escaped_in_the_shell(client: TestClient) -> None:
    body = await (await client.get("/explorer")).text()
    assert "<code>customs</code>" in body and "<code>web-routes</code>" in body
