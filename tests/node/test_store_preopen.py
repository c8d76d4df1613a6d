"""node.store_open.preopen: a restart's LevelDB open begun early, taken by LedgerStore.open.

The result must be the store LedgerStore.open would have opened itself, and any error the
one it would have raised; a directory without a database is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import plyvel
import pytest

from node import store_open
from node.store import LedgerStore, StoreError
from node.store_open import preopen

GENESIS = b"\x00" * 32


def make_store(path: Path) -> None:
    opened = LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)
    opened.initialise(chain_id="c", genesis_hash=GENESIS, state={b"k": b"v"})
    opened.close()


def test_nothing_happens_for_a_directory_without_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "data"
    preopen(str(missing))
    assert not missing.exists()
    assert str(missing) not in store_open._PREOPENED
    missing.mkdir()
    preopen(str(missing))  # a directory, but no LevelDB in it yet (first start)
    assert os.listdir(missing) == []
    assert str(missing) not in store_open._PREOPENED


def test_open_takes_the_preopened_database(tmp_path: Path) -> None:
    path = tmp_path / "data"
    make_store(path)
    preopen(str(path))
    pending = store_open._PREOPENED[str(path)]
    preopen(str(path))  # once per path
    assert store_open._PREOPENED[str(path)] is pending
    reopened = LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)
    try:
        assert str(path) not in store_open._PREOPENED
        assert reopened.db is pending.result() or reopened._db is pending.result()
        assert reopened.state.get(b"k") == b"v" and reopened.initialised
    finally:
        reopened.close()


def test_an_error_of_the_early_open_is_raised_by_open_as_its_own(tmp_path: Path) -> None:
    path = tmp_path / "data"
    make_store(path)
    holder = LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)  # holds the lock
    try:
        preopen(str(path))
        with pytest.raises(StoreError, match="in use by another process"):
            LedgerStore.open(str(path), chain_id="c", genesis_hash=GENESIS)
        assert str(path) not in store_open._PREOPENED
    finally:
        holder.close()


def test_a_large_log_is_replayed_uncompressed_first_and_reads_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With compression on, the double open of a store with a large log
    (store_open.open_db) gives exactly the data a plain open gives, and leaves LevelDB's log
    empty behind it."""
    import random
    import shutil

    import plyvel

    path = tmp_path / "data"
    make_store(path)
    db = plyvel.DB(str(path), **store_open.LEVELDB_OPTIONS)
    rng = random.Random(7)
    for batch_number in range(40):
        with db.write_batch(sync=True) as batch:
            for _ in range(200):
                batch.put(b"s/" + rng.randbytes(12), rng.randbytes(rng.randrange(1, 900)))
            if batch_number == 20:
                batch.delete(b"s/k")
    db.close()  # LevelDB keeps these writes in its log until the next open
    assert store_open.log_bytes(str(path)) > 1 << 20
    plain, double = tmp_path / "plain", tmp_path / "double"
    shutil.copytree(path, plain)
    shutil.copytree(path, double)
    monkeypatch.setattr(store_open, "RECOVER_UNCOMPRESSED_LOG_BYTES", 1 << 20)
    monkeypatch.setattr(store_open, "COMPRESSION", "snappy")
    expected = plyvel.DB(str(plain), **store_open.LEVELDB_OPTIONS)
    opened = store_open.open_db(str(double))
    try:
        assert list(opened.iterator()) == list(expected.iterator())
        assert store_open.log_bytes(str(double)) < 1 << 20
    finally:
        opened.close()
        expected.close()
    reopened = LedgerStore.open(str(double), chain_id="c", genesis_hash=GENESIS)
    try:
        assert reopened.initialised and reopened.state.get(b"k") is None
    finally:
        reopened.close()


def test_only_a_held_lock_reads_as_another_process() -> None:
    """LevelDB's own messages: a lock file that cannot be opened (permissions, a read-only
    mount) was reported as "in use by another process" too."""
    from node.store import open_error_message

    def message(reason: bytes) -> str:
        return open_error_message("/d", plyvel.IOError(reason))

    assert "in use by another process" in message(
        b"IO error: lock /d/LOCK: Resource temporarily unavailable")
    assert "in use by another process" in message(b"IO error: lock /d/LOCK: already held by "
                                                  b"process")
    for reason in (b"IO error: /d/LOCK: Permission denied",
                   b"IO error: /d/LOCK: Read-only file system"):
        text = message(reason)
        assert "another process" not in text
        assert text.startswith(f"cannot open data directory /d: {reason.decode()}; the node "
                               "needs to write to it")
    assert message(b"IO error: /d/000005.ldb: No space left") == (
        "cannot open data directory /d: IO error: /d/000005.ldb: No space left")
