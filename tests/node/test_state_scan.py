"""node._state_scan: the start-up's pass over the stored state through LevelDB's C API,
run by the store's opener before it opens the store (node/store_open.py scan_state).

What it gives must be exactly what the pass through plyvel gives (``state_buckets`` over
the store's state), after a clean stop and after a SIGKILL left a log to replay; any error
must leave the store to the ordinary open, which reports it as before.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import plyvel
import pytest

from node import store_open
from node.state_tree import StateTree, state_buckets
from node.store import LedgerStore, StoreError
from node.store_open import LEVELDB_OPTIONS, STATE_PREFIX, preopen, scan_state

GENESIS = b"\x00" * 32
WRITER = Path(__file__).with_name("crash_writer.py")

needs_scan = pytest.mark.skipif(
    store_open._scan is None and not os.environ.get("CI"),
    reason="node._state_scan not built here (no C compiler or OpenSSL headers); CI requires it",
)


def plyvel_buckets(path: Path) -> tuple[dict[int, bytes], dict[int, bytes]]:
    store = LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)
    try:
        return state_buckets(store.state)
    finally:
        store.close()


def a_store(path: Path, keys: int, seed: int = 7) -> None:
    """A store whose state has ``keys`` keys of varied sizes (empty values included), its
    last writes still in LevelDB's log (a close does not write them out)."""
    store = LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)
    store.initialise(chain_id="c", genesis_hash=GENESIS, state={b"k": b"v"})
    store.close()
    rng = random.Random(seed)
    db = plyvel.DB(str(path), **LEVELDB_OPTIONS)
    with db.write_batch() as batch:
        for _ in range(keys):
            batch.put(STATE_PREFIX + rng.randbytes(rng.randrange(0, 40)),
                      rng.randbytes(rng.randrange(0, 700)))
        batch.put(b"l/" + b"\x01" * 32, b"\x02" * 32)  # other prefixes are not the state's
        batch.put(b"t/" + b"\x03" * 32, b"x")
        batch.delete(STATE_PREFIX + b"k")
    db.close()


@needs_scan
def test_it_bound_to_the_leveldb_plyvel_loaded() -> None:
    assert store_open._scan is not None


@needs_scan
@pytest.mark.parametrize("keys", [0, 1, 3_000])
def test_the_scan_gives_what_the_pass_through_plyvel_gives(tmp_path: Path, keys: int) -> None:
    a_store(tmp_path / "a", keys)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    scanned = scan_state(str(tmp_path / "a"))
    assert scanned is not None
    assert scanned == plyvel_buckets(tmp_path / "b")
    assert list(scanned[0]) == sorted(scanned[0])  # bucket order as state_buckets gives it
    assert plyvel_buckets(tmp_path / "a") == scanned  # the scan changed nothing of the data
    assert store_open.log_bytes(str(tmp_path / "a")) == 0  # it replayed the log, as a first open


@needs_scan
def test_the_scan_after_a_sigkill_reads_what_the_store_then_holds(tmp_path: Path) -> None:
    path = tmp_path / "data"
    child = subprocess.Popen([sys.executable, str(WRITER), str(path)], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None
    assert child.stdout.readline().startswith("ready")
    time.sleep(0.4)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert store_open.log_bytes(str(path)) > 0
    shutil.copytree(path, tmp_path / "copy")
    scanned = scan_state(str(path))
    assert scanned is not None and scanned[0]
    from ledger_support import make_genesis, open_engine

    store, _engine = open_engine(str(tmp_path / "copy"), make_genesis())
    try:
        assert scanned == state_buckets(store.state)
    finally:
        store.close()


@needs_scan
def test_a_restart_takes_the_scanned_state_once_and_builds_the_same_tree(tmp_path: Path) -> None:
    path = tmp_path / "data"
    a_store(path, 2_000)
    preopen(str(path))
    store = LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)
    try:
        assert store._scanned_state is not None
        tree = store.load_state_tree(cache_entries=500)
        assert store._scanned_state is None  # taken once
        again = StateTree.from_state(store.state, store.leaves, 500)
        assert tree.root == again.root and tree.levels == again.levels
        assert list(tree._cache.items()) == list(again._cache.items())
    finally:
        store.close()


@needs_scan
def test_a_write_of_the_state_drops_the_scanned_state(tmp_path: Path) -> None:
    path = tmp_path / "data"
    plyvel.DB(str(path), create_if_missing=True).close()  # a database, not initialised yet
    preopen(str(path))
    store = LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)
    try:
        assert store._scanned_state == ({}, {})
        store.initialise(chain_id="c", genesis_hash=GENESIS, state={b"k": b"v"})
        assert store._scanned_state is None
        assert store.load_state_tree().root == StateTree.from_state(store.state,
                                                                    store.leaves).root
    finally:
        store.close()


@needs_scan
def test_an_error_of_the_database_leaves_it_to_the_ordinary_open(tmp_path: Path) -> None:
    path = tmp_path / "data"
    a_store(path, 50)
    holder = plyvel.DB(str(path))  # holds the lock: the scan cannot open it
    try:
        assert scan_state(str(path)) is None
        preopen(str(path))
        with pytest.raises(StoreError, match="in use by another process"):
            LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)
    finally:
        holder.close()
    (path / "CURRENT").write_text("MANIFEST-999999\n")  # points at no manifest
    assert scan_state(str(path)) is None
    with pytest.raises(StoreError):
        LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)


@pytest.mark.parametrize("how", ["not built", "JANGBU_PURE_TREE=1"])
def test_without_the_compiled_scan_the_store_reads_its_state_through_plyvel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "not built":
        monkeypatch.setattr(store_open, "_scan", None)
    else:
        monkeypatch.setenv("JANGBU_PURE_TREE", "1")
    path = tmp_path / "data"
    a_store(path, 100)
    assert scan_state(str(path)) is None
    preopen(str(path))
    store = LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)
    try:
        assert store._scanned_state is None
        assert store.load_state_tree().root == StateTree.from_state(store.state,
                                                                    store.leaves).root
    finally:
        store.close()


@needs_scan
def test_odd_arguments_are_refused() -> None:
    scan = store_open._scan
    with pytest.raises(TypeError):
        scan.state_buckets("x", "not bytes", 1, 1, 10, 1)
    with pytest.raises(ValueError):
        scan.state_buckets("x", b"s/", 0, 1, 10, 1)
    with pytest.raises(ValueError):
        scan.state_buckets("x", b"s/", 1, 1, -1, 1)
    assert scan.state_buckets("/nonexistent/jangbu", b"s/", 1 << 20, 1 << 20, 10, 1 << 20) is None
