"""HTTP API behaviour that only shows with real processes: signed reads, shutdown."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import urllib.request

import pytest

from node.client import Client, ClientError

from netutil import make_network

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    net = make_network(tmp_path_factory.mktemp("api") / "net")
    net.start_all()
    yield net
    net.stop_all()


def test_signed_query_with_arguments_verifies(network):
    """Regression: the client signs the percent-encoded target; the node must check that."""
    async def go():
        async with Client(network.api("customs"), key=network.member_key("customs")) as c:
            result = await c.query("membership", "members", {"org": "customs"}, signed=True)
            assert any(m["org"] == "customs" for m in result)
    asyncio.run(go())


def test_invalid_signed_query_with_another_target_is_refused(network):
    async def go():
        async with Client(network.api("customs"), key=network.member_key("customs")) as c:
            await c.ensure_chain_id()
            headers = c.read_headers("GET", "/v1/query/membership/orgs")
            with pytest.raises(ClientError) as err:
                await c._request("GET", "/v1/query/membership/members?org=seller",
                                 headers=headers)
            assert err.value.status == 401 and err.value.code == "E_AUTH"
    asyncio.run(go())


def test_open_event_stream_does_not_delay_shutdown(network):
    """Regression: a node with an SSE client took ~15 s to stop on SIGTERM."""
    stream = urllib.request.urlopen(network.api("buyer") + "/v1/events", timeout=30)
    reader = threading.Thread(target=lambda: stream.read(), daemon=True)
    reader.start()
    time.sleep(0.5)
    started = time.monotonic()
    network.kill("buyer", signal.SIGTERM)
    assert time.monotonic() - started < 5
    network.start("buyer")
    network.wait_ready("buyer")


def test_metrics_report_height_mempool_peers_and_commit_latency(network):
    async def go():
        async with Client(network.api("seller"), key=network.member_key("seller")) as c:
            from nacl.signing import SigningKey
            receipt = await c.call("membership", "add_member",
                                   {"pubkey": SigningKey.generate().verify_key.encode().hex()})
            assert receipt["code"] == "OK"
    asyncio.run(go())
    text = urllib.request.urlopen(network.api("seller") + "/metrics", timeout=10).read().decode()
    for name in ("jangbu_height", "jangbu_round", "jangbu_mempool_txs", "jangbu_peers 3",
                 "jangbu_txs_committed_total", "jangbu_tx_commit_latency_seconds_count 1",
                 "jangbu_commit_seconds_bucket"):
        assert name in text, name


def test_idle_network_makes_no_empty_blocks(network):
    """With empty_block_interval_ms = 0 (the default) an idle network does not spin."""
    before = {org: network.status(org)["height"] for org in network.orgs}
    time.sleep(2.5)
    assert {org: network.status(org)["height"] for org in network.orgs} == before
