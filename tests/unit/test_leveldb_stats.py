"""LevelDB's levels and compactions on /metrics (node/leveldb_stats.py).

The parser is tested on LevelDB's own text (a real store's, and rows printed with its
printf format by hypothesis), on junk (never an error: a scrape must not fail), and the
whole path on a real LevelDB that has flushed and compacted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import plyvel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.leveldb_stats import (
    LEVELS,
    MB,
    MEMORY_PROPERTY,
    STATS_PROPERTY,
    LevelDBStats,
    LevelRow,
    export,
    parse_stats,
)
from node.metrics import Metrics
from node.store import LedgerStore
from node.store_open import (
    DEFAULT_WRITE_BUFFER,
    LEVELDB_OPTIONS,
    WRITE_BUFFER_MIB,
    spread_write_buffer,
    use_node_write_buffer,
)

# What plyvel's LevelDB 1.22 printed for a store of 100,000 clearance orders.
REAL = ("                               Compactions\n"
        "Level  Files Size(MB) Time(sec) Read(MB) Write(MB)\n"
        "--------------------------------------------------\n"
        "  0        1       53         2        0        53\n"
        "  1        6       10         0        0         0\n"
        "  2       15       93         3       98        98\n")


def leveldb_row(row: LevelRow) -> str:
    """A row as LevelDB's DBImpl::GetProperty prints it (db_impl.cc)."""
    return (f"{row.level:3d} {row.files:8d} {row.size_mb:8.0f} {row.compaction_s:9.0f} "
            f"{row.read_mb:8.0f} {row.written_mb:9.0f}\n")  # "%3d %8d %8.0f %9.0f %8.0f %9.0f"


def test_a_real_stats_text_reads_as_its_levels():
    rows = parse_stats(REAL)
    assert sorted(rows) == [0, 1, 2]
    assert rows[0] == LevelRow(0, 1, 53, 2, 0, 53)
    assert rows[2] == LevelRow(2, 15, 93, 3, 98, 98)


rows_strategy = st.lists(
    st.builds(LevelRow, st.integers(0, LEVELS - 1), st.integers(0, 10**6),
              st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**8),
              st.integers(0, 10**8)),
    max_size=LEVELS, unique_by=lambda row: row.level)


@given(rows_strategy)
def test_rows_printed_by_leveldbs_format_read_back_the_same(rows):
    text = REAL.split("---\n")[0] + "---\n" + "".join(map(leveldb_row, rows))
    assert parse_stats(text) == {row.level: row for row in rows}


@given(st.text())
def test_any_text_reads_without_error_and_only_as_levels_leveldb_has(text):
    assert all(0 <= level < LEVELS for level in parse_stats(text))


def test_a_level_leveldb_does_not_have_and_torn_rows_are_skipped():
    text = "  7  1 1 1 1 1\n  1  2 3\n  3  1 2 3 4 5 6\n  4  1 2 x 4 5\n"
    assert parse_stats(text) == {}


class CountingReader:
    def __init__(self, answers: dict[bytes, bytes | None]):
        self.answers = answers
        self.calls = 0

    def __call__(self, name: bytes) -> bytes | None:
        self.calls += 1
        return self.answers.get(name)


def test_one_scrape_reads_leveldb_once_and_a_later_one_again():
    now = [100.0]
    reader = CountingReader({STATS_PROPERTY: REAL.encode(), MEMORY_PROPERTY: b"4104"})
    stats = LevelDBStats(reader, max_age_s=1.0, clock=lambda: now[0])
    metrics = Metrics()
    export(metrics, stats, 50 << 20)
    text = metrics.render()
    assert reader.calls == 2  # two properties, once for some twenty figures
    assert 'jangbu_leveldb_files{level="2"} 15' in text
    assert 'jangbu_leveldb_files{level="6"} 0' in text
    assert f'jangbu_leveldb_bytes{{level="0"}} {53 * MB}' in text
    assert "jangbu_leveldb_compaction_seconds_total 5.000000" in text
    assert f"jangbu_leveldb_compaction_written_bytes_total {151 * MB}.000000" in text
    assert "jangbu_leveldb_memory_bytes 4104" in text
    assert f"jangbu_leveldb_write_buffer_bytes {50 << 20}" in text
    assert text.count("# TYPE jangbu_leveldb_files gauge") == 1
    metrics.render()
    assert reader.calls == 2
    now[0] += 1.0
    metrics.render()
    assert reader.calls == 4


def test_a_store_without_the_properties_reports_zeros_not_errors():
    stats = LevelDBStats(CountingReader({MEMORY_PROPERTY: b"not a number"}))
    snapshot = stats.snapshot()
    assert snapshot.levels == {} and snapshot.memory_bytes == 0
    assert snapshot.compaction_seconds() == 0.0 and snapshot.files(0) == 0


def test_a_store_that_stops_answering_keeps_its_last_figures():
    """A counter that dropped to 0 at shutdown would read as a reset, then as a jump of
    the whole total (review)."""
    now = [0.0]
    reader = CountingReader({STATS_PROPERTY: REAL.encode(), MEMORY_PROPERTY: b"4104"})
    stats = LevelDBStats(reader, clock=lambda: now[0])
    assert stats.snapshot().compaction_seconds() == 5.0
    reader.answers = {}
    now[0] += 10.0
    assert stats.snapshot().compaction_seconds() == 5.0
    assert stats.snapshot().memory_bytes == 4104


def test_a_real_leveldb_that_flushed_and_compacted_shows_it(tmp_path):
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True, write_buffer_size=1 << 20,
                    compression=None)
    try:
        for batch_no in range(8):
            with db.write_batch() as batch:
                for _ in range(1000):
                    batch.put(os.urandom(16), bytes([batch_no]) * 1000)
        db.compact_range()
        snapshot = LevelDBStats(db.get_property).snapshot()
        assert sum(snapshot.files(level) for level in range(LEVELS)) > 0
        assert snapshot.written_bytes() >= 6 * MB  # ~8 MB written, in whole MB per level
        assert snapshot.memory_bytes > 0
    finally:
        db.close()


def test_the_store_reads_its_properties_and_none_once_closed(tmp_path):
    store = LedgerStore.open(str(tmp_path / "data"), chain_id="c", genesis_hash=b"\x00" * 32)
    assert b"Compactions" in (store.leveldb_property(STATS_PROPERTY) or b"")
    assert store.leveldb_property(b"leveldb.no-such-property") is None
    store.close()
    assert store.leveldb_property(STATS_PROPERTY) is None


def test_validators_spread_their_write_buffers_evenly_by_key_rank():
    keys = [f"{i:02x}" * 32 for i in (7, 3, 9, 1)]  # ranks 2, 1, 3, 0
    sizes = [spread_write_buffer(key, keys) for key in keys]
    assert sizes == [85 * MB, 75 * MB, 96 * MB, 64 * MB]
    low, high = WRITE_BUFFER_MIB
    seven = [f"{i:02x}" * 32 for i in range(7)]
    spread = sorted(spread_write_buffer(key, seven) for key in seven)
    assert spread[0] == low * MB and spread[-1] == high * MB and len(set(spread)) == 7


def test_a_node_outside_the_validators_or_alone_gets_the_default():
    assert spread_write_buffer("aa" * 32, ["bb" * 32, "cc" * 32]) == DEFAULT_WRITE_BUFFER
    assert spread_write_buffer("aa" * 32, ["aa" * 32]) == DEFAULT_WRITE_BUFFER


def write_node_files(tmp_path: Path, public: str, validators: list[str]) -> tuple[Path, Path]:
    key = tmp_path / "node.key"
    key.write_text(json.dumps({"type": "ed25519", "kind": "node", "seed": "00" * 32,
                               "public": public}))
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps({"chain_id": "c", "validators": [
        {"name": f"v{i}", "pubkey": pubkey} for i, pubkey in enumerate(validators)]}))
    return genesis, key


def test_a_node_sets_its_write_buffer_from_its_key_and_genesis_files(tmp_path, monkeypatch):
    monkeypatch.setitem(LEVELDB_OPTIONS, "write_buffer_size", DEFAULT_WRITE_BUFFER)
    keys = ["11" * 32, "22" * 32, "33" * 32, "44" * 32]
    genesis, key = write_node_files(tmp_path, keys[3].upper(), keys)
    assert use_node_write_buffer(genesis, key) == 96 * MB
    assert LEVELDB_OPTIONS["write_buffer_size"] == 96 * MB


@pytest.mark.parametrize("damage", ["no key file", "not json", "no validators", "not a str"])
def test_unreadable_node_files_leave_the_default_for_the_node_to_report(tmp_path, monkeypatch,
                                                                        damage):
    monkeypatch.setitem(LEVELDB_OPTIONS, "write_buffer_size", 77 * MB)
    genesis, key = write_node_files(tmp_path, "11" * 32, ["11" * 32, "22" * 32])
    if damage == "no key file":
        key.unlink()
    elif damage == "not json":
        genesis.write_text("{")
    elif damage == "no validators":
        genesis.write_text("{}")
    else:
        key.write_text(json.dumps({"public": 5}))
    assert use_node_write_buffer(genesis, key) == DEFAULT_WRITE_BUFFER
    assert LEVELDB_OPTIONS["write_buffer_size"] == DEFAULT_WRITE_BUFFER
