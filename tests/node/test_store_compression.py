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


def table_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.iterdir() if entry.suffix == ".ldb")


def fill_and_compact(db: plyvel.DB) -> None:
    """Write VALUES values, then push them all into tables (compaction writes them)."""
    with db.write_batch() as batch:
        for i in range(VALUES):
            batch.put(STATE_PREFIX + f"order/{i:06d}".encode(), VALUE)
    db.compact_range()


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
    raw = VALUES * len(VALUE)
    if compression is None:
        assert table_bytes(path) >= raw
    else:
        assert table_bytes(path) < raw / 4


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
    compressed = table_bytes(old)
    assert compressed < VALUES * len(VALUE) / 4
    copy = tmp_path / "copy"
    shutil.copytree(old, copy)
    db = store_open.open_db(str(copy))
    try:
        assert list(db.iterator()) == expected
        db.compact_range()  # old tables may only move between levels: still readable
        assert list(db.iterator()) == expected
        fill_and_compact(db)  # a compaction that merges them writes them uncompressed
        assert db.get(STATE_PREFIX + b"order/000007") == VALUE
        assert db.get(STATE_PREFIX + b"order/tail") == b"the last write"
    finally:
        db.close()
    assert table_bytes(copy) > VALUES * len(VALUE)
