"""Security properties as tests, against real node processes: only genesis keys may connect,
forged signatures, cross-chain and replayed transactions and role violations are refused,
private records need a signed read by the right role, and key files are private."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest
from nacl.signing import SigningKey
from test_api_fuzz import request

from consensus import canonical
from node.api import TAG_READ
from node.p2p.peer_manager import P2PConfig, PeerManager
from node.tx import Transaction

from netutil import ROOT, http_json

pytestmark = pytest.mark.e2e
CHAIN = "e2e-customs"


def signed_read_headers(key: SigningKey, path: str, chain: str = CHAIN,
                        time_ms: int | None = None, sign_path: str | None = None
                        ) -> dict[str, str]:
    now = int(time.time() * 1000) if time_ms is None else time_ms
    body = {"method": "GET", "path": sign_path or path, "time_ms": now}
    sig = canonical.sign(key, TAG_READ, chain, body)
    return {"X-Jangbu-Key": key.verify_key.encode().hex(), "X-Jangbu-Time": str(now),
            "X-Jangbu-Signature": sig.hex()}


def test_key_files_are_private_and_a_readable_one_is_refused(network, tmp_path):
    for org in network.orgs:
        for name in ("node.key", "member.key"):
            mode = stat.S_IMODE((network.home(org) / name).stat().st_mode)
            assert mode & 0o077 == 0, f"{org}/{name} has mode {mode:04o}"
    home = tmp_path / "leaky"
    shutil.copytree(network.home("buyer"), home, ignore=shutil.ignore_patterns("data", "*.log"))
    os.chmod(home / "node.key", 0o644)
    proc = subprocess.run([sys.executable, "-m", "cli.main", "node", "start", "--home", str(home)],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "node.key" in proc.stderr and "others" in proc.stderr, proc.stderr


def test_invalid_peer_without_a_genesis_key_cannot_connect_or_send(network):
    port = network.base_port  # customs is the first org: its p2p port is the base port
    target = bytes.fromhex(network.status("customs")["node_id"])
    outsider = SigningKey.generate()
    received: list[object] = []

    async def attempt() -> list[bytes]:
        mgr = PeerManager(CHAIN, outsider, {target: ("customs", "127.0.0.1", port)},
                          port=0, on_message=lambda s, m: received.append(m),
                          config=P2PConfig(backoff_cap=0.2))
        await mgr.start()
        try:
            for _ in range(10):
                mgr.broadcast({"t": "status", "height": 10**9})
                await asyncio.sleep(0.2)
            return mgr.connected_peers()
        finally:
            await mgr.stop()

    assert asyncio.run(attempt()) == []
    assert received == []
    assert all(p["node_id"] != outsider.verify_key.encode().hex()
               for p in network.status("customs")["peers"])


def test_invalid_forged_cross_chain_and_replayed_transactions_are_refused(network):
    api = network.api("customs")
    key = network.member_key("customs")
    args = {"pubkey": SigningKey.generate().verify_key.encode().hex()}
    good = Transaction.create(key, CHAIN, "membership", "add_member", args, 77)
    forged = dict(good.to_json(), sig=SigningKey.generate().sign(b"x").signature.hex())
    status, body = request(api + "/v1/txs", "POST", json.dumps(forged).encode(),
                           {"Content-Type": "application/json"})
    assert (status, body["code"]) == (400, "E_BAD_SIGNATURE")
    other = Transaction.create(key, "another-chain", "membership", "add_member", args, 77)
    status, body = request(api + "/v1/txs", "POST", json.dumps(other.to_json()).encode(),
                           {"Content-Type": "application/json"})
    assert status == 400 and body["code"] == "E_WRONG_CHAIN"
    committed = http_json(api + "/v1/txs?wait=commit", good.to_json(), timeout=30)
    assert committed["status"] == "committed"
    for org in network.orgs:  # a replay to any node, after commit
        status, body = request(network.api(org) + "/v1/txs", "POST",
                               json.dumps(good.to_json()).encode(),
                               {"Content-Type": "application/json"})
        assert (status, body["code"]) == (409, "E_ALREADY_COMMITTED"), (org, body)


def test_invalid_role_violation_is_refused(network):
    seller = network.member_key("seller")
    tx = Transaction.create(seller, CHAIN, "clearance", "set_restricted",
                            {"op": "add", "hs": ["9999"], "note": "seller tries customs' job"},
                            int(time.time()))
    status, body = request(network.api("seller") + "/v1/txs?wait=commit", "POST",
                           json.dumps(tx.to_json()).encode(), {"Content-Type": "application/json"})
    if status == 200:
        assert body["code"] == "E_ROLE", body
    else:
        assert 400 <= status < 500 and body["code"].startswith("E_"), body
    status, _ = request(network.api("customs") + "/v1/state/clearance/restricted/hs/9999")
    assert status == 404


def test_private_records_need_a_signed_read_by_the_right_role(network):
    api = network.api("customs")
    path = "/v1/query/clearance/work_queue"
    status, body = request(api + path)
    assert (status, body["code"]) == (403, "E_FORBIDDEN")
    status, body = request(api + path, headers=signed_read_headers(network.member_key("seller"),
                                                                   path))
    assert (status, body["code"]) == (403, "E_FORBIDDEN")
    customs = network.member_key("customs")
    status, body = request(api + path, headers=signed_read_headers(customs, path))
    assert status == 200, body
    forged = signed_read_headers(SigningKey.generate(), path)
    forged["X-Jangbu-Key"] = customs.verify_key.encode().hex()
    status, body = request(api + path, headers=forged)
    assert (status, body["code"]) == (401, "E_AUTH")
    stale = signed_read_headers(customs, path, time_ms=int(time.time() * 1000) - 3_600_000)
    status, body = request(api + path, headers=stale)
    assert (status, body["code"]) == (401, "E_AUTH_EXPIRED")
    other_path = signed_read_headers(customs, path, sign_path="/v1/query/clearance/parcel")
    status, body = request(api + path, headers=other_path)
    assert (status, body["code"]) == (401, "E_AUTH")
    wrong_chain = signed_read_headers(customs, path, chain="another-chain")
    status, body = request(api + path, headers=wrong_chain)
    assert (status, body["code"]) == (401, "E_AUTH")
    status, body = request(api + path, headers={"X-Jangbu-Key": "zz"})
    assert status == 401 and body["code"] == "E_AUTH"
