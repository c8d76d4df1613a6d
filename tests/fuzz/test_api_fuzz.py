"""The HTTP API against its own OpenAPI document: hypothesis-generated path parameters,
query strings and bodies for every operation. No 5xx (503 only as "mempool full"), and
every rejection is JSON ``{"code": "E_...", "message": ...}`` with a 4xx status. Slow
clients and oversized bodies do not hold up other clients."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from test_wire_fuzz import objects

from node.tx import Transaction

pytestmark = pytest.mark.e2e

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
SKIP = {"/v1/events"}  # a stream: only its argument errors are fuzzed (below)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
              st.text(max_size=30), st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=10), inner, max_size=6)),
    max_leaves=25)
segments = st.one_of(st.text(min_size=1, max_size=70), st.integers().map(str),
                     st.binary(min_size=32, max_size=32).map(bytes.hex),
                     st.sampled_from(["membership", "clearance", "livestock", "latest", "..",
                                      "%00", "0", "-1", "99999999999999999999999"]))
queries = st.dictionaries(st.sampled_from(["wait", "timeout", "args", "from_height", "x",
                                           "order_id", "contract", "key"]),
                          st.text(max_size=20), max_size=3)


def request(url: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def check(status: int, body: Any) -> None:
    assert status < 500 or (status == 503 and body.get("code") == "E_MEMPOOL_FULL"), \
        (status, body)
    if status >= 400:
        assert isinstance(body, dict), body
        assert re.fullmatch(r"E_[A-Z_]+", str(body.get("code"))), body
        assert isinstance(body.get("message"), str), body


def operations(api: str) -> list[tuple[str, str]]:
    _, spec = request(api + "/v1/openapi.json")
    return [(path, method) for path, ops in spec["paths"].items() for method in ops
            if path not in SKIP]


def test_openapi_lists_the_operations(network):
    ops = operations(network.api("customs"))
    assert ("/v1/txs", "post") in ops and ("/v1/blocks/{height}", "get") in ops


@FUZZ
@given(data=st.data())
def test_invalid_requests_get_a_4xx_with_a_code(network, data):
    api = network.api("customs")
    path, method = data.draw(st.sampled_from(operations_cache(api)))
    url_path = re.sub(r"\{[^}]+\}",
                      lambda _: urllib.parse.quote(data.draw(segments), safe=""), path)
    query = data.draw(queries)
    query.pop("wait", None) if query.get("wait") == "commit" else None
    url = api + url_path + ("?" + urllib.parse.urlencode(query) if query else "")
    body = None
    headers = {}
    if method == "post":
        kind = data.draw(st.sampled_from(["json", "bytes", "msgpack", "tx"]))
        if kind == "json":
            body = json.dumps(data.draw(json_values)).encode()
            headers["Content-Type"] = "application/json"
        elif kind == "bytes":
            body = data.draw(st.binary(max_size=500))
        elif kind == "msgpack":
            from consensus import canonical
            try:
                body = canonical.encode(data.draw(objects))
            except canonical.CanonicalError:
                body = b"\x93"
            headers["Content-Type"] = "application/msgpack"
        else:  # a valid transaction with one field replaced
            tx = Transaction.create(SigningKey.generate(), "e2e-customs", "membership",
                                    "add_member", {"pubkey": "00" * 32}, 1).to_json()
            tx[data.draw(st.sampled_from(sorted(tx)))] = data.draw(json_values)
            body = json.dumps({"txs": [tx]} if path.endswith("batch") else tx).encode()
            headers["Content-Type"] = "application/json"
    status, answer = request(url, method.upper(), body, headers)
    check(status, answer)


_OPS: dict[str, list[tuple[str, str]]] = {}


def operations_cache(api: str) -> list[tuple[str, str]]:
    if api not in _OPS:
        _OPS[api] = operations(api)
    return _OPS[api]


@pytest.mark.parametrize("query", ["from_height=abc", "from_height=1e9"])
def test_invalid_event_stream_arguments_get_a_4xx(network, query):
    status, body = request(network.api("customs") + "/v1/events?" + query)
    check(status, body)
    assert status == 400


def test_invalid_oversized_body_is_refused_with_413(network):
    body = b"{" + b" " * (9 * 1024 * 1024) + b"}"
    status, answer = request(network.api("customs") + "/v1/txs", "POST", body,
                             {"Content-Type": "application/json"})
    assert status == 413
    check(status, answer)


def _open_slow(port: int, count: int, head: bytes) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(head)
        socks.append(sock)
    return socks


def test_slow_clients_do_not_block_others(network):
    api = network.api("customs")
    port = int(api.rsplit(":", 1)[1])
    slow_headers = _open_slow(port, 150, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-A: ")
    slow_bodies = _open_slow(port, 50, b"POST /v1/txs HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 8000000\r\n\r\n{")
    try:
        for _ in range(5):  # dribble: a byte per slow client
            for sock in slow_headers + slow_bodies:
                with contextlib.suppress(OSError):
                    sock.send(b"a")
            started = time.time()
            status, body = request(api + "/v1/status", timeout=5)
            assert status == 200 and body["height"] >= 0
            assert time.time() - started < 2.0, "a normal client waited behind slow ones"
    finally:
        for sock in slow_headers + slow_bodies:
            sock.close()
    time.sleep(0.5)
    log = (network.home("customs") / "node.log").read_text(errors="replace")
    assert "Error handling request" not in log, "a vanished client left a traceback"
