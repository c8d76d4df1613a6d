"""Event-stream clients that go away: their subscriptions end with them (real node
processes, real sockets).

Regression (API review): ``GET /v1/events`` subscribed before sending its headers, outside
the ``try`` that ends a subscription, so a client that reset the connection at once left
a subscription behind for good (a filter that never matched never overflowed, so nothing
ever removed it). 5,000 of them took a node's commits from 316 to 45 tx/s, and closed
connections do not count against ``[api] max_connections``.
"""

from __future__ import annotations

import socket
import struct
import time
import urllib.request


def subscribers(api: str) -> int:
    text = urllib.request.urlopen(api + "/metrics", timeout=10).read().decode()
    line = next(line for line in text.splitlines()
                if line.startswith("jangbu_event_subscribers "))
    return int(float(line.split()[1]))


def reset_at_once(port: int, path: str) -> None:
    """Send the request, then close with a reset (SO_LINGER 0), reading nothing."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.close()


def wait_for(api: str, count: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while True:
        now = subscribers(api)
        if now == count or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def test_streams_reset_by_their_clients_leave_no_subscription(network):
    api = network.api("courier")
    port = int(api.rsplit(":", 1)[1])
    before = subscribers(api)
    for _ in range(40):
        reset_at_once(port, "/v1/events?key=nothing-has-this-key")
    # Ended when the connection is lost, not at the next keepalive (15 s) or never.
    assert wait_for(api, before, 5) == before


def test_a_stream_whose_client_left_later_ends_too(network):
    api = network.api("courier")
    port = int(api.rsplit(":", 1)[1])
    before = subscribers(api)
    socks = []
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /v1/events?key=nothing-has-this-key HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        socks.append(sock)
    assert wait_for(api, before + 10, 5) == before + 10
    for sock in socks:
        sock.close()
    assert wait_for(api, before, 5) == before
