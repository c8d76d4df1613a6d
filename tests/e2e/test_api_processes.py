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
                                 headers=headers, expect="result")
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
                 "jangbu_commit_seconds_bucket", "# TYPE process_cpu_seconds_total counter",
                 "# TYPE jangbu_signature_checks_saved_total counter",
                 # the key tables are on in every node a test starts (the default)
                 "jangbu_signature_key_tables_on 1",
                 "# TYPE jangbu_signature_checks_from_tables_total counter",
                 "# TYPE jangbu_signature_checks_by_libsodium_total counter",
                 "# TYPE python_info gauge",
                 # declared from the start (an alert on a runtime or genesis mismatch after
                 # an upgrade has its series before the first refusal)
                 'jangbu_p2p_refused_total{reason="runtime"} 0',
                 'jangbu_p2p_refused_total{reason="genesis"} 0',
                 "jangbu_peers_other_runtime 0",
                 'jangbu_p2p_connects_total{peer="customs"}',
                 # LevelDB's own figures (node/leveldb_stats.py)
                 'jangbu_leveldb_files{level="0"}', 'jangbu_leveldb_bytes{level="6"} 0',
                 "# TYPE jangbu_leveldb_compaction_seconds_total counter",
                 "# TYPE jangbu_leveldb_compaction_written_bytes_total counter",
                 "# TYPE jangbu_leveldb_write_buffer_bytes gauge"):
        assert name in text, name
    assert int(text.split("\njangbu_leveldb_memory_bytes ", 1)[1].split()[0]) > 0
    cpu = float(text.split("\nprocess_cpu_seconds_total ", 1)[1].split()[0])
    assert 0 < cpu < 3600  # this process's own CPU, in seconds


def test_the_validators_write_buffers_are_spread_apart(network):
    """Regression: every node used a 64 MiB LevelDB write buffer, so all of them flushed
    and compacted at the same height (node/store_open.py WRITE_BUFFER_MIB)."""
    sizes = set()
    for org in ("customs", "seller", "courier", "buyer"):
        text = urllib.request.urlopen(network.api(org) + "/metrics", timeout=10).read().decode()
        sizes.add(int(text.split("\njangbu_leveldb_write_buffer_bytes ", 1)[1].split()[0]))
    assert sizes == {64 << 20, 75 << 20, 85 << 20, 96 << 20}


def test_status_names_this_nodes_runtime_and_no_peer_on_another(network):
    import sys
    import unicodedata
    status = network.status("seller")
    assert status["runtime"] == {"python": f"{sys.version_info[0]}.{sys.version_info[1]}",
                                 "unicode": unicodedata.unidata_version}
    assert len(status["peers"]) == 3
    assert all("other_runtime" not in peer for peer in status["peers"])


def test_idle_network_makes_no_empty_blocks(network):
    """With empty_block_interval_ms = 0 (the default) an idle network does not spin."""
    before = {org: network.status(org)["height"] for org in network.orgs}
    time.sleep(2.5)
    assert {org: network.status(org)["height"] for org in network.orgs} == before


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    import json
    import urllib.error
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_msgpack_bodies_carry_canonical_transaction_bytes(network):
    """The fast intake path: ``POST /v1/txs`` with the canonical bytes and a msgpack batch
    whose items are those bytes (each decoded as it is); broken items get their own code."""
    from consensus import canonical
    from node.tx import Transaction

    key = network.member_key("customs")
    chain = network.status("customs")["chain_id"]
    api = network.api("customs")

    def tx(nonce: int) -> Transaction:
        return Transaction.create(key, chain, "clearance", "set_rates", {"rates": {"USD": {
            "usd_micro": 1_000_000, "krw_centi": 145_000 + nonce % 1000}}}, nonce)

    one = tx(1_000_001)
    status, body = _post(api + "/v1/txs", one.encoded, "application/msgpack")
    assert status == 202 and body["hash"] == one.hash.hex(), body
    # Bytes that are not canonical msgpack: the body does not parse, as on the batch
    # endpoint and for JSON (review: this one was E_MALFORMED_TX, the batch's E_MALFORMED).
    for bad in (one.encoded + b"\x00", one.encoded[:-7], b""):
        status, body = _post(api + "/v1/txs", bad, "application/msgpack")
        assert status == 400 and body["code"] == "E_MALFORMED", body
        assert body["message"].startswith("body is not canonical msgpack"), body
    # Canonical msgpack that is not a transaction.
    status, body = _post(api + "/v1/txs", canonical.encode({"a": 1}), "application/msgpack")
    assert status == 400 and body["code"] == "E_MALFORMED_TX", body
    good = [tx(1_000_002), tx(1_000_003)]
    batch = canonical.encode({"txs": [good[0].encoded, b"\x93\x01\x02\x03", good[1].encoded,
                                      good[0].to_obj()]})
    status, body = _post(api + "/v1/txs/batch", batch, "application/msgpack")
    assert status == 200, body
    assert [r["status"] for r in body["results"]] == ["pending", "rejected", "pending",
                                                      "rejected"]
    assert body["results"][1]["code"] == "E_MALFORMED_TX"
    assert body["results"][3]["code"] == "E_DUPLICATE"
    assert body["results"][0]["hash"] == good[0].hash.hex()


def test_status_names_the_genesis_hash_the_handshake_compares(network):
    """Operators compare this across organisations: it is what a refused link's log line
    prints the start of (docs/operations.md §0), not ``sha256sum genesis.json``."""
    from node.genesis import load_genesis

    expected = load_genesis(network.home("customs") / "genesis.json").hash.hex()
    for org in network.orgs:
        assert network.status(org)["genesis_hash"] == expected
