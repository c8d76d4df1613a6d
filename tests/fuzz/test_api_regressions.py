"""Inputs a black-box review found answered with a 500, against real node processes. Each
must get a 4xx with a machine-readable code, and never make committed data unreadable."""

from __future__ import annotations

import time
import urllib.parse

import pytest
from test_api_fuzz import check, request

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


def test_an_over_long_url_is_a_400_logged_in_one_line(network):
    """aiohttp answers it itself (plain text: it never reaches our handlers); the node logs
    one warning line for it, not a traceback."""
    log = network.home("customs") / "node.log"
    before = log.read_text(errors="replace").count("Traceback")
    status, _ = request(network.api("customs") + "/v1/status?x=" + "a" * 9_000)
    assert status == 400
    assert wait_for_log(log, "Got more than 8190 bytes")
    assert log.read_text(errors="replace").count("Traceback") == before
