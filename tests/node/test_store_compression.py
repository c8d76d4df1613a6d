"""LevelDB's tables are written without compression (node/store_open.py COMPRESSION), and a
store whose tables were written with snappy (by an earlier build) reads the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import plyvel
import pytest

from node import store_open
from node.store_open import LEVELDB_OPTIONS, STATE_PREFIX

VALUES = 3_000
VALUE = b"a compressible order record " * 36  # ~1 KB that snappy shrinks ~10x
RAW = VALUES * len(VALUE)


def tables(path: Path) -> dict[str, int]:
    return {entry.name: entry.stat().st_size for entry in path.iterdir()
            if entry.suffix == ".ldb"}


def compact_everything(db: plyvel.DB) -> None:
    """A full compaction. (plyvel's ``compact_range()`` without bounds hands LevelDB empty
    keys, and then only the memtable is flushed: nothing already in a table is merged.)"""
    db.compact_range(start=b"", stop=b"\xff" * 16)


def fill_and_compact(db: plyvel.DB) -> None:
    """Write VALUES values, then push them all into tables."""
    with db.write_batch() as batch:
        for i in range(VALUES):
            batch.put(STATE_PREFIX + f"order/{i:06d}".encode(), VALUE)
    compact_everything(db)


@pytest.mark.parametrize("compression", [None, "snappy"], ids=["default", "snappy"])
def test_tables_are_written_as_the_setting_says(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                compression: str | None) -> None:
    if compression is not None:
        monkeypatch.setattr(store_open, "COMPRESSION", compression)
    assert compression == store_open.COMPRESSION  # None is the default
    path = tmp_path / "data"
    db = store_open.open_db(str(path))
    try:
        fill_and_compact(db)
    finally:
        db.close()
    if compression is None:
        assert sum(tables(path).values()) >= RAW
    else:
        assert sum(tables(path).values()) < RAW / 4


def test_a_store_written_with_snappy_reads_the_same_and_is_rewritten_without(
        tmp_path: Path) -> None:
    old = tmp_path / "old"
    db = plyvel.DB(str(old), create_if_missing=True, compression="snappy", **LEVELDB_OPTIONS)
    fill_and_compact(db)
    with db.write_batch(sync=True) as batch:  # and some left in the log, as a kill leaves it
        batch.put(STATE_PREFIX + b"order/tail", b"the last write")
        batch.delete(STATE_PREFIX + b"order/000007")
    expected = list(db.iterator())
    db.close()
    written_with_snappy = tables(old)
    assert sum(written_with_snappy.values()) < RAW / 4
    copy = tmp_path / "copy"
    shutil.copytree(old, copy)
    db = store_open.open_db(str(copy))
    try:
        assert list(db.iterator()) == expected
        compact_everything(db)  # what LevelDB's compactions do to these tables over time
        assert list(db.iterator()) == expected
    finally:
        db.close()
    after = tables(copy)
    assert not set(after) & set(written_with_snappy)  # every old table was merged away
    assert sum(after.values()) >= RAW - len(VALUE)  # and rewritten uncompressed
    db = plyvel.DB(str(copy))
    try:
        assert list(db.iterator()) == expected
    finally:
        db.close()


@pytest.mark.parametrize("compression,opens", [(None, 1), ("snappy", 2)],
                         ids=["default", "snappy"])
def test_only_a_compressing_store_replays_a_large_log_in_an_extra_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str | None,
        opens: int) -> None:
    path = tmp_path / "data"
    db = plyvel.DB(str(path), create_if_missing=True, **LEVELDB_OPTIONS)
    with db.write_batch() as batch:
        for i in range(VALUES):
            batch.put(STATE_PREFIX + f"order/{i:06d}".encode(), VALUE)
    db.close()
    monkeypatch.setattr(store_open, "RECOVER_UNCOMPRESSED_LOG_BYTES", 1 << 20)
    monkeypatch.setattr(store_open, "COMPRESSION", compression)
    assert store_open.log_bytes(str(path)) >= 1 << 20
    calls: list[dict[str, object]] = []
    real = plyvel.DB

    def counted(*args: object, **kwargs: object) -> plyvel.DB:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(store_open.plyvel, "DB", counted)
    store_open.open_db(str(path)).close()
    assert len(calls) == opens
    assert calls[-1]["compression"] == compression
    assert all(call["compression"] is None for call in calls[:-1])
