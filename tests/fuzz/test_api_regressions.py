"""Inputs a black-box review found answered with a 500, against real node processes. Each
must get a 4xx with a machine-readable code, and never make committed data unreadable."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from nacl.signing import SigningKey
from test_api_fuzz import check, request

from consensus import canonical
from node.client import TAG_READ
from node.tx import Transaction

pytestmark = pytest.mark.e2e
CHAIN = "e2e-customs"
JSON = {"Content-Type": "application/json"}


def test_bytes_in_args_do_not_make_their_block_unreadable(network):
    """A msgpack transaction may carry bytes in ``args``; once committed, its block, the
    latest block and the transaction must still be served (as JSON: bytes become hex)."""
    api = network.api("customs")
    tx = Transaction.create(network.member_key("seller"), CHAIN, "clearance", "arrive",
                            {"order_id": "REVIEW-BYTES", "junk": b"\x00\x01"},
                            time.time_ns() // 1000)
    status, answer = request(f"{api}/v1/txs?wait=commit&timeout=20", "POST", tx.encoded,
                             {"Content-Type": "application/msgpack"}, timeout=30)
    assert status == 200 and answer["code"] != "OK", answer  # refused by the contract
    height = answer["height"]
    status, block = request(f"{api}/v1/blocks/{height}")
    assert status == 200, block
    [shown] = [t for t in block["txs"] if t["hash"] == tx.hash.hex()]
    assert shown["args"]["junk"] == "0001"
    status, _ = request(f"{api}/v1/txs/{tx.hash.hex()}")
    assert status == 200


@pytest.mark.parametrize("path", ["/v1/txs", "/v1/txs/batch"])
@pytest.mark.parametrize("body", [
    b"[" * 100_000,  # deeper than the JSON parser's recursion limit
    b'{"nonce": ' + b"9" * 5_000 + b"}",  # more digits than int() converts
], ids=["deep", "huge-int"])
def test_json_the_parser_cannot_hold_is_a_400(network, path, body):
    status, answer = request(network.api("customs") + path, "POST", body, JSON)
    check(status, answer)
    assert (status, answer["code"]) == (400, "E_MALFORMED"), answer


@pytest.mark.parametrize("args", ["[" * 7_000, '{"order_id": ' + "7" * 5_000 + "}"],
                         ids=["deep", "huge-int"])
def test_query_args_the_parser_cannot_hold_are_a_400(network, args):
    url = (network.api("customs") + "/v1/query/clearance/parcel?"
           + urllib.parse.urlencode({"args": args}, safe="[{}\":"))  # under 8 KiB
    status, answer = request(url)
    check(status, answer)
    assert (status, answer["code"]) == (400, "E_ARGS"), answer


def test_a_body_that_is_not_the_gzip_it_claims_is_a_400(network):
    log = network.home("customs") / "node.log"
    before = log.read_text(errors="replace").count("Traceback")
    status, answer = request(network.api("customs") + "/v1/txs", "POST", b"garbage",
                             {**JSON, "Content-Encoding": "gzip"})
    check(status, answer)
    assert (status, answer["code"]) == (400, "E_MALFORMED"), answer
    # aiohttp drains the body after the answer and logs what it finds: one line.
    assert wait_for_log(log, "Can not decode content-encoding")
    assert log.read_text(errors="replace").count("Traceback") == before


def wait_for_log(log, needle: str) -> bool:
    deadline = time.monotonic() + 5
    while needle not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize(("query", "logged"), [
    ("x=" + "a" * 9_000, "Got more than 8190 bytes"),
    # Regression: the client's URL went into the log line's format string, so ``%d`` in
    # it made logging print a "Logging error" traceback instead of the line.
    ("q=%25d%25s" + "a" * 9_000, "/v1/status?q=%25d%25s"),
], ids=["long", "percent-signs"])
def test_an_over_long_url_is_a_400_logged_in_one_line(network, query, logged):
    """aiohttp answers it itself (it never reaches our handlers), in the API's JSON form
    (regression, livestock review: it was ``text/plain``); the node logs one warning line
    for it, not a traceback."""
    log = network.home("customs") / "node.log"
    before = log.read_text(errors="replace").count("Traceback")
    status, body = request(network.api("customs") + "/v1/status?" + query)
    assert status == 400
    check(status, body)
    assert body["code"] == "E_MALFORMED_HTTP" and "8190" in body["message"], body
    assert wait_for_log(log, logged)
    assert log.read_text(errors="replace").count("Traceback") == before


def raw_http(api: str, data: bytes, *, half_close: bool = False, wait: float = 3) -> bytes:
    """Send ``data`` on one connection; what came back until the server closed it or went
    quiet for ``wait`` seconds."""
    host, port = urllib.parse.urlsplit(api).hostname, urllib.parse.urlsplit(api).port
    with socket.create_connection((host, port), timeout=wait) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                out += chunk
    return out


def test_what_is_not_http_is_answered_in_json_and_closed(network):
    """Any request aiohttp refuses before routing gets the API's error form."""
    api = network.api("customs")
    answer = raw_http(api, b"GARBAGE\x01 / HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0], answer[:300]
    assert b"application/json" in head, answer[:300]
    assert json.loads(body)["code"] == "E_MALFORMED_HTTP"
    huge = raw_http(api, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9_000
                    + b"\r\n\r\n")
    assert b"application/json" in huge.partition(b"\r\n\r\n")[0], huge[:300]
    assert request(api + "/healthz")[0] == 200


def test_a_client_that_leaves_after_expect_continue_is_no_traceback(network):
    """Regression: aiohttp's ``100 Continue`` written to a closed connection was logged
    as an error with a traceback, once per such request."""
    api = network.api("customs")
    log = network.home("customs") / "node.log"
    before = log.read_text(errors="replace").count("Traceback")
    for _ in range(3):
        raw_http(api, b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
                 half_close=True, wait=1)
    assert request(api + "/healthz")[0] == 200
    time.sleep(0.5)
    assert log.read_text(errors="replace").count("Traceback") == before


def test_head_on_the_event_stream_is_refused_and_the_connection_stays_in_step(network):
    """Regression: HEAD /v1/events streamed the events' body after the headers, so the
    next pipelined request on that connection was never answered."""
    out = raw_http(network.api("customs"),
                   b"HEAD /v1/events?from_height=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405"), out[:200]
    assert b"event:" not in out and b": live" not in out
    assert out.count(b"HTTP/1.1 ") == 2 and b'"ok": true' in out, out[-300:]


@pytest.mark.parametrize("path", [
    "/v1/blocks/1_0", "/v1/blocks/%D9%A1", "/v1/blocks/%201", "/v1/blocks/+1",
    "/v1/txs/" + "00%20" * 32, "/v1/events?from_height=-5", "/v1/events?from_height=1_0",
    "/v1/events?from_height=%201",
])
def test_numbers_and_hashes_spelled_loosely_are_a_400(network, path):
    """Regression: ``int()`` and ``bytes.fromhex`` also take underscores, spaces, signs and
    other scripts' digits, so ``/v1/blocks/1_0`` answered block 10."""
    status, answer = request(network.api("customs") + path, timeout=5)
    check(status, answer)
    assert (status, answer["code"]) == (400, "E_ARGS"), answer


@pytest.mark.parametrize("timeout", ["1_0", " 5", "inf", "nan", "1e1"])
def test_a_loosely_spelled_wait_timeout_is_a_400(network, timeout):
    tx = Transaction.create(network.member_key("seller"), CHAIN, "clearance", "arrive",
                            {"order_id": "REVIEW-TIMEOUT"}, time.time_ns() // 1000)
    status, answer = request(network.api("customs") + "/v1/txs?wait=commit&timeout="
                             + urllib.parse.quote(timeout), "POST", tx.encoded,
                             {"Content-Type": "application/msgpack"})
    check(status, answer)
    assert (status, answer["code"]) == (400, "E_ARGS"), answer


def test_a_loosely_spelled_signed_read_time_is_refused(network):
    """A correctly signed read whose ``X-Jangbu-Time`` is spelled with underscores: the
    same read with the plain digits is answered, this one is refused as malformed."""
    api = network.api("customs")
    path = "/v1/query/clearance/work_queue"  # a query that needs a signed caller
    now = time.time_ns() // 1_000_000
    sig = canonical.sign(network.member_key("customs"), TAG_READ, CHAIN,
                         {"method": "GET", "path": path, "time_ms": now})
    headers = {"X-Jangbu-Key": network.member_key("customs").verify_key.encode().hex(),
               "X-Jangbu-Signature": sig.hex()}
    assert request(api + path, headers={**headers, "X-Jangbu-Time": str(now)})[0] == 200
    for spelled in (f"{now:_}", f"+{now}", f"{now}.0"):  # (HTTP strips spaces around it)
        status, answer = request(api + path, headers={**headers, "X-Jangbu-Time": spelled})
        check(status, answer)
        assert (status, answer["code"]) == (401, "E_AUTH"), (spelled, answer)


def test_a_msgpack_batch_over_4_mib_is_taken_as_its_json_form_is(network):
    """Regression: a msgpack batch body was decoded under the 4 MiB p2p message limit
    instead of the request limit, so 70 valid 60 KB transactions were "malformed" as
    msgpack and accepted as JSON; the node then could not gossip them in one message."""
    api = network.api("courier")
    key = network.member_key("courier")
    txs = [Transaction.create(key, CHAIN, "membership", "add_member",
                              {"pubkey": SigningKey.generate().verify_key.encode().hex(),
                               "pad": "p" * 60_000}, time.time_ns() // 1000 + i)
           for i in range(70)]
    body = canonical.encode({"txs": [tx.encoded for tx in txs]}, max_bytes=8 << 20)
    assert len(body) > canonical.MAX_MESSAGE_BYTES
    log = network.home("courier") / "node.log"
    before = log.read_text(errors="replace").count("Traceback")
    status, answer = request(api + "/v1/txs/batch", "POST", body,
                             {"Content-Type": "application/msgpack"}, timeout=30)
    assert (status, answer["accepted"]) == (200, 70), answer
    other = network.api("customs")
    deadline = time.monotonic() + 30
    while request(f"{other}/v1/txs/{txs[-1].hash.hex()}")[1].get("status") != "committed":
        assert time.monotonic() < deadline, "the batch did not commit"
        time.sleep(0.2)
    assert log.read_text(errors="replace").count("Traceback") == before


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "limit=-1",
                                   "from_height=-1", "from_height=1_0",
                                   f"from_height={1 << 63}"])
def test_invalid_evidence_page_arguments_are_a_400(network, query):
    status, answer = request(network.api("customs") + "/v1/evidence?" + query, timeout=5)
    check(status, answer)
    assert (status, answer["code"]) == (400, "E_ARGS"), answer


def test_evidence_of_an_honest_network_is_an_empty_page(network):
    status, answer = request(network.api("customs") + "/v1/evidence?from_height=1&limit=5")
    assert (status, answer) == (200, {"evidence": [], "more": False})


# --- the HTTP API review of the twenty-eighth round ---------------------------------------


def test_a_405_says_which_methods_are_allowed(network):
    status, answer = request(network.api("customs") + "/v1/txs", "DELETE")
    assert (status, answer["code"]) == (405, "E_METHOD"), answer
    req = urllib.request.Request(network.api("customs") + "/v1/status", method="DELETE")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("DELETE /v1/status was answered")
    except urllib.error.HTTPError as exc:
        assert exc.code == 405 and "GET" in exc.headers.get("Allow", ""), dict(exc.headers)


@pytest.mark.parametrize("expect", [True, False])
def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(network, expect):
    """Review: ``Content-Length: 99999999`` with ``Expect: 100-continue`` got ``100
    Continue`` (an invitation to upload 99 MB); without Expect, the node waited for it."""
    head = (b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999999\r\n" + (b"Expect: 100-continue\r\n" if expect else b"")
            + b"\r\n")
    answer = raw_http(network.api("customs"), head, wait=5)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"100 Continue" not in answer and b'"E_TOO_LARGE"' in answer, answer[:400]


def test_an_acceptable_body_with_expect_still_gets_100_continue(network):
    head = (b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    answer = raw_http(network.api("customs"), head, wait=1)
    assert answer.startswith(b"HTTP/1.1 100 Continue"), answer[:200]


@pytest.mark.parametrize("query", ["order_id=D0-1&order_id=D0-2",
                                   'order_id=D0-1&args={"order_id":"D0-2"}'])
def test_a_query_argument_given_twice_is_a_400(network, query):
    """Review: the last value silently won (``?order_id=A&order_id=B`` answered for B)."""
    url = (network.api("customs") + "/v1/query/clearance/parcel?"
           + urllib.parse.quote(query, safe="=&"))
    status, answer = request(url, timeout=5)
    check(status, answer)
    assert (status, answer["code"]) == (400, "E_ARGS"), answer
    assert "order_id" in answer["message"]


def test_a_json_object_with_a_repeated_key_is_refused(network):
    """Review: JSON bodies with a repeated key were taken, the last value winning; the
    canonical msgpack form refuses it, so JSON does too."""
    body = b'{"chain_id": "x", "chain_id": "y"}'
    status, answer = request(network.api("customs") + "/v1/txs", "POST", body,
                             {"Content-Type": "application/json"}, timeout=5)
    check(status, answer)
    assert (status, answer["code"]) == (400, "E_MALFORMED"), answer
    assert "chain_id" in answer["message"] and "twice" in answer["message"]


def test_a_body_that_does_not_decompress_is_one_line_in_answer_and_log(network):
    """Review: aiohttp's text spans two lines ("400, message:\\n  Can not decode..."), and
    both the client's message and the node's log line carried the break."""
    head = (b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
            + b"not gzip!!")
    answer = raw_http(network.api("seller"), head, wait=5)
    body = answer.partition(b"\r\n\r\n")[2]
    assert b" 400 " in answer.split(b"\r\n")[0], answer[:300]
    message = json.loads(body)["message"]
    assert "\n" not in message, message
    time.sleep(0.3)
    log = (network.home("seller") / "node.log").read_text(errors="replace")
    lines = [line for line in log.splitlines() if "malformed HTTP request" in line
             or "does not decode" in line]
    assert lines and all("Can not decode" in line or "decode" in line for line in lines)
    assert not any(line.startswith("  Can not decode") for line in log.splitlines())
