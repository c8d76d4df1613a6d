"""LevelDB's levels and compactions on /metrics (node/leveldb_stats.py).

The parser is tested on LevelDB's own text (a real store's, and rows printed with its
printf format by hypothesis), on junk (never an error: a scrape must not fail), and the
whole path on a real LevelDB that has flushed and compacted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import plyvel
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
from node.store_open import LEVELDB_OPTIONS, WRITE_BUFFER_MIB, draw_write_buffer_size

ROOT = Path(__file__).resolve().parents[2]

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


def test_each_process_draws_a_write_buffer_size_in_the_range_in_whole_mib():
    low, high = WRITE_BUFFER_MIB
    assert draw_write_buffer_size(b"\x00\x00") == low * MB
    assert draw_write_buffer_size((high - low).to_bytes(2, "big")) == high * MB
    assert draw_write_buffer_size((high - low + 1).to_bytes(2, "big")) == low * MB
    sizes = {draw_write_buffer_size() for _ in range(200)}
    assert len(sizes) > 10 and all(low * MB <= size <= high * MB for size in sizes)
    assert all(size % MB == 0 for size in sizes)
    assert low * MB <= LEVELDB_OPTIONS["write_buffer_size"] <= high * MB


def test_two_node_processes_draw_their_sizes_apart():
    """Regression for the cause: every node used 64 MiB, so all of them flushed and
    compacted at the same block. (Two draws agree 1 time in 33; five processes all
    agreeing, 1 in 33**4.)"""
    drawn = {subprocess.run([sys.executable, "-c", "from node.store_open import "
                             "LEVELDB_OPTIONS as o; print(o['write_buffer_size'])"],
                            capture_output=True, text=True, check=True, cwd=ROOT).stdout
             for _ in range(5)}
    assert len(drawn) > 1
