"""Storage faults on a real node process: corrupted or truncated LevelDB files, a corrupted
consensus WAL, a damaged state, a full disk. The node refuses to start (or stops) with a
clear one-line message and never commits on top of damaged state; once the operator follows
docs/operations.md (remove the data directory), it catches up and agrees with the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse

import plyvel
import pytest
from test_network_processes import member_txs, submit_all, wait_committed

from node.state_tree import StateProof, verify_state_proof

from netutil import ROOT, Network, http_json, make_network

pytestmark = pytest.mark.e2e

VICTIM = "buyer"
OTHERS = ["customs", "seller", "courier"]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    network = make_network(tmp_path_factory.mktemp("storage") / "net")
    network.start_all()
    batch = {org: member_txs(network, org, 30) for org in network.orgs}
    asyncio.run(submit_all(network, batch))
    wait_committed(network, "customs", [tx for txs in batch.values() for tx in txs])
    network.wait_height(network.status("customs")["height"])
    yield network
    network.stop_all()


def stop_victim(net: Network) -> None:
    if VICTIM in net.procs:
        net.kill(VICTIM, signal.SIGTERM)
    db = plyvel.DB(str(net.home(VICTIM) / "data"))
    db.compact_range()  # move everything from the log into table files
    db.close()


def start_expect_refusal(net: Network, timeout: float = 30) -> str:
    """Start the victim; it must exit non-zero with a message and no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "node", "start", "--home", str(net.home(VICTIM))],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode != 0, "the node started on damaged storage"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def resync_victim(net: Network, backup=None) -> None:
    """The documented recovery: remove the data directory and let the node catch up."""
    shutil.rmtree(net.home(VICTIM) / "data")
    if backup is not None:
        shutil.copytree(backup, net.home(VICTIM) / "data")
    net.start(VICTIM)
    net.wait_ready(VICTIM)
    more = {org: member_txs(net, org, 3, start=int(time.time() * 1000)) for org in OTHERS}
    asyncio.run(submit_all(net, more))
    wait_committed(net, VICTIM, [tx for txs in more.values() for tx in txs], timeout=60)
    net.wait_height(net.status("customs")["height"], [VICTIM])
    net.assert_identical_chains()


def table_files(net: Network) -> list:
    return sorted((net.home(VICTIM) / "data").glob("*.ldb"), key=lambda p: -p.stat().st_size)


def test_invalid_corrupted_table_file_refuses_to_start(net):
    stop_victim(net)
    table = table_files(net)[0]
    data = bytearray(table.read_bytes())
    for offset in range(64, len(data) - 64, max(1, len(data) // 50)):
        data[offset] ^= 0xFF
    table.write_bytes(bytes(data))
    message = start_expect_refusal(net)
    assert "corrupt" in message.lower() and "operations.md" in message, message
    resync_victim(net)


def test_invalid_truncated_table_file_refuses_to_start(net):
    stop_victim(net)
    table = table_files(net)[0]
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    message = start_expect_refusal(net)
    assert "corrupt" in message.lower() and "operations.md" in message, message
    resync_victim(net)


def test_invalid_missing_manifest_refuses_to_start(net):
    stop_victim(net)
    for manifest in (net.home(VICTIM) / "data").glob("MANIFEST-*"):
        manifest.unlink()
    message = start_expect_refusal(net)
    assert "operations.md" in message, message
    resync_victim(net)


def test_invalid_damaged_state_value_refuses_to_start(net):
    stop_victim(net)
    db = plyvel.DB(str(net.home(VICTIM) / "data"))
    key = next(k for k, _ in db.iterator(prefix=b"s/membership/"))
    db.put(key, b"\xc0damaged", sync=True)
    db.close()
    message = start_expect_refusal(net)
    assert "state_root" in message and "operations.md" in message, message
    resync_victim(net)


def test_damaged_leaf_index_entry_is_refused_where_it_is_read(net):
    """The start hashes the values, not the leaf index (StateTree.from_state): a damaged
    index entry lets the node start, whose root is the values' own, and is refused where the
    index is read: a proof of the key answers 500 E_STORE, never a wrong proof. `jangbu node
    rebuild-index` then repairs it from the values, and the node rejoins on its own data."""
    stop_victim(net)
    db = plyvel.DB(str(net.home(VICTIM) / "data"))
    state_key, _ = next(iter(db.iterator(prefix=b"s/membership/")))
    full_key = state_key[len(b"s/"):]
    db.put(b"l/" + hashlib.sha256(full_key).digest(), b"\x11" * 32, sync=True)
    db.close()
    net.start(VICTIM)
    net.wait_ready(VICTIM)
    contract, key = full_key.decode().split("/", 1)
    url = f"{net.api(VICTIM)}/v1/state/{contract}/{urllib.parse.quote(key)}"
    with pytest.raises(urllib.error.HTTPError) as answer:
        http_json(url)
    assert answer.value.code == 500
    body = json.loads(answer.value.read())
    assert body["code"] == "E_STORE" and "leaf index" in body["message"], body
    good = http_json(f"{net.api('customs')}/v1/state/{contract}/{urllib.parse.quote(key)}")
    # The documented repair: stop the node, rebuild the index from its values, start it.
    stop_victim(net)
    repair = subprocess.run(
        [sys.executable, "-m", "cli.main", "node", "rebuild-index", "--home",
         str(net.home(VICTIM))], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert repair.returncode == 0, repair.stderr
    assert "1 entries were wrong, missing or extra" in repair.stdout, repair.stdout
    net.start(VICTIM)
    net.wait_ready(VICTIM)
    again = http_json(url)
    assert again["value_bytes"] == good["value_bytes"]
    proof = again["proof"]
    assert verify_state_proof(
        bytes.fromhex(again["state_root"]), full_key, bytes.fromhex(again["value_bytes"]),
        StateProof(proof["bucket"],
                   tuple((bytes.fromhex(k), bytes.fromhex(v)) for k, v in proof["entries"]),
                   tuple(bytes.fromhex(p) for p in proof["path"])))
    more = {org: member_txs(net, org, 3, start=int(time.time() * 1000)) for org in OTHERS}
    asyncio.run(submit_all(net, more))
    wait_committed(net, VICTIM, [tx for txs in more.values() for tx in txs], timeout=60)
    net.assert_identical_chains()


def restart_and_rejoin(net):
    """Start the victim again; it must commit the others' new transactions and hold the
    same chain as they do."""
    net.start(VICTIM)
    net.wait_ready(VICTIM)
    more = {org: member_txs(net, org, 3, start=int(time.time() * 1000)) for org in OTHERS}
    asyncio.run(submit_all(net, more))
    wait_committed(net, VICTIM, [tx for txs in more.values() for tx in txs], timeout=60)
    net.assert_identical_chains()


def test_corrupted_wal_record_is_skipped_and_the_node_rejoins(net):
    # An older node's WAL in LevelDB (moved to the file at start) that does not decode.
    stop_victim(net)
    db = plyvel.DB(str(net.home(VICTIM) / "data"))
    db.put(b"w/" + (0).to_bytes(8, "big"), b"\xff\xfe not a record", sync=True)
    db.put(b"w/" + (1).to_bytes(8, "big"), b"\x93garbage", sync=True)
    db.close()
    restart_and_rejoin(net)
    assert "corrupt" in net.log_tail(VICTIM, 400).lower()


def test_damaged_wal_file_tail_is_cut_off_and_the_node_rejoins(net):
    stop_victim(net)
    with open(net.home(VICTIM) / "data" / "consensus.wal", "ab") as wal:
        wal.write(bytes(40) + b"\x00\x00\x01\x00 a record cut short by a crash")
    restart_and_rejoin(net)
    assert "torn or damaged record" in net.log_tail(VICTIM, 400)


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_disk_full_stops_the_node_with_a_clear_message(net):
    stop_victim(net)
    height_before = None
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "node", "start", "--home", str(net.home(VICTIM))],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_limit_file_size(64 * 1024))
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    net.procs[VICTIM] = proc
    try:
        net.wait_ready(VICTIM)
        height_before = net.status(VICTIM)["height"]
        deadline = time.time() + 60
        nonce = int(time.time() * 1000)
        while proc.poll() is None and time.time() < deadline:
            batch = {org: member_txs(net, org, 20, start=nonce) for org in OTHERS}
            nonce += 100
            asyncio.run(submit_all(net, batch))
            time.sleep(0.5)
        assert proc.poll() is not None, "the node kept running although it cannot write"
    finally:
        if proc.poll() is None:
            proc.kill()
        net.procs.pop(VICTIM, None)
        proc.wait()
    reader.join(5)
    text = "".join(output)
    assert proc.returncode != 0
    assert "cannot write" in text.lower() and "operations.md" in text, text[-3000:]
    # nothing half-written: the store opens at a committed height and the node catches up
    assert height_before is not None
    net.start(VICTIM)
    net.wait_ready(VICTIM)
    net.wait_height(net.status("customs")["height"], [VICTIM], timeout=60)
    net.assert_identical_chains()


def test_truncated_leveldb_log_loses_no_committed_block_silently(net):
    """A torn LevelDB log tail (the last writes of a crash) with paranoid checks: the node
    either refuses to start, or starts at a fully committed height and catches up."""
    net.kill(VICTIM, signal.SIGTERM) if VICTIM in net.procs else None
    net.start(VICTIM)
    net.wait_ready(VICTIM)
    more = {org: member_txs(net, org, 5, start=int(time.time() * 1000)) for org in net.orgs}
    asyncio.run(submit_all(net, more))
    wait_committed(net, VICTIM, [tx for txs in more.values() for tx in txs], timeout=60)
    net.kill(VICTIM)  # SIGKILL: the newest writes are only in the log
    logs = sorted((net.home(VICTIM) / "data").glob("*.log"), key=lambda p: p.stat().st_size)
    log = logs[-1]
    log.write_bytes(log.read_bytes()[: max(0, log.stat().st_size - 700)])
    net.start(VICTIM)
    proc = net.procs.pop(VICTIM)
    time.sleep(3)
    if proc.poll() is not None:
        out = net.log_tail(VICTIM, 30)
        assert proc.returncode != 0 and "Traceback" not in out and "operations.md" in out, out
        resync_victim(net)
        return
    net.procs[VICTIM] = proc
    net.wait_ready(VICTIM)
    net.wait_height(net.status("customs")["height"], [VICTIM], timeout=60)
    net.assert_identical_chains()
