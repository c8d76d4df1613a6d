"""The API's connection limits against a real node process: ``[api] max_connections``
answers one connection too many with ``503 E_BUSY`` (and the node keeps committing), and
``[api] idle_timeout_s`` closes a connection that never completes its request or its body.

Regression (review): a client could hold any number of half-sent requests open for good
(after 120 s they were all still open), each a file descriptor the store and the peers'
links also need.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import urllib.request

import pytest

from node.tx import Transaction

from netutil import make_network

pytestmark = pytest.mark.e2e

LIMIT = 6
IDLE_S = 2


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    network = make_network(tmp_path_factory.mktemp("limits") / "net")
    config = network.home("customs") / "config.toml"
    text = config.read_text()
    assert "max_connections = 1000" in text and "idle_timeout_s = 60" in text
    config.write_text(text.replace("max_connections = 1000", f"max_connections = {LIMIT}")
                      .replace("idle_timeout_s = 60", f"idle_timeout_s = {IDLE_S}"))
    network.start_all()
    yield network
    network.stop_all()


def address(api: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(api)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def status(api: str) -> dict:
    with urllib.request.urlopen(api + "/v1/status", timeout=5) as resp:
        return json.loads(resp.read())


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Did the server close ``sock`` within ``within_s`` (without answering)?"""
    sock.settimeout(within_s)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_one_connection_over_the_limit_is_told_busy(net):
    api = net.api("customs")
    held = [socket.create_connection(address(api)) for _ in range(LIMIT)]
    try:
        time.sleep(0.3)
        with socket.create_connection(address(api), timeout=5) as extra:
            answer = b""
            while chunk := extra.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer
        assert json.loads(body)["code"] == "E_BUSY"
        # Consensus does not notice: a transaction sent to another node commits, and
        # this node, whose API is full, votes for it.
        tx = Transaction.create(net.member_key("seller"), "e2e-customs", "membership",
                                "add_member", {"pubkey": "ab" * 32, "label": "busy"}, 1)
        request = urllib.request.Request(
            net.api("seller") + "/v1/txs?wait=commit&timeout=20", data=tx.encoded,
            headers={"Content-Type": "application/msgpack"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            committed = json.loads(resp.read())["height"]
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while True:  # the held ones closed: the node answers again, at that height or later
        try:
            if status(api)["height"] >= committed:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the API did not come back"
        time.sleep(0.2)
    # (read once the held connections are gone: /metrics needs a connection too)
    assert net.metric("customs", "jangbu_api_connections_refused_total") >= 1


def test_a_half_sent_request_is_closed_after_the_idle_timeout(net):
    api = net.api("customs")
    with socket.create_connection(address(api)) as sock:
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        started = time.monotonic()
        assert closed_by_server(sock, IDLE_S + 5)
        assert time.monotonic() - started < IDLE_S + 5


def test_a_body_that_never_arrives_is_a_408(net):
    api = net.api("customs")
    with socket.create_connection(address(api)) as sock:
        sock.sendall(b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        sock.settimeout(IDLE_S + 5)
        answer = sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(body)["code"] == "E_TIMEOUT"
