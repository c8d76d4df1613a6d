"""LevelDB's own account of its levels and compactions, exported on ``/metrics``.

Why: under a sustained load a node's CPU per transaction rises in windows of several
seconds in which LevelDB writes a full memtable (its write buffer, 64-96 MiB) out as a
table and then merges tables into the next level; with one buffer size for all, the
validators did it at once, since they write the same bytes (node/store_open.py
``WRITE_BUFFER_MIB``). Those windows were found from the
timestamps in each store's ``LOG`` file (docs/benchmarks.md, twenty-fourth to twenty-ninth
rounds). An operator of a production ledger watches the same thing on a dashboard: how
many files level 0 holds (LevelDB slows every write down from 8 and stops them at 12), how
large each level is, and how much time compactions take, so a slow node can be told apart
from a slow disk or a slow network.

The source is LevelDB's ``leveldb.stats`` property: one row per level with its files, its
size and its compaction totals (wall-clock seconds, megabytes read and written), each
printed rounded to a whole number, and ``leveldb.approximate-memory-usage``. Parsing is
kept apart from reading so it can be tested on any text; a text it does not recognise
reads as no levels, never as an error: metrics must not fail a scrape. A store that
stops answering (closed) keeps reporting its last figures, so the counters never appear
to reset.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from node.metrics import Metrics

LEVELS = 7
"""LevelDB's number of levels (``config::kNumLevels``)."""

MB = 1 << 20

STATS_PROPERTY = b"leveldb.stats"
MEMORY_PROPERTY = b"leveldb.approximate-memory-usage"

_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


@dataclass(frozen=True)
class LevelRow:
    """One level as ``leveldb.stats`` prints it: the sizes in whole MiB, the time
    in whole seconds (LevelDB's own rounding), totals since the database was opened."""

    level: int
    files: int
    size_mb: int
    compaction_s: int
    read_mb: int
    written_mb: int


def parse_stats(text: str) -> dict[int, LevelRow]:
    """The level rows of a ``leveldb.stats`` text, by level (sizes in MiB: LevelDB
    divides by 1,048,576 and calls it MB).

    LevelDB prints a level only when it holds files or has had a compaction, so a missing
    level is an empty one. Lines that are not a row (the title, the column names, the
    rule) and rows naming a level LevelDB does not have are skipped.
    """
    rows: dict[int, LevelRow] = {}
    for line in text.splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        level, files, size, seconds, read, written = (int(group) for group in match.groups())
        if level < LEVELS:
            rows[level] = LevelRow(level, files, size, seconds, read, written)
    return rows


@dataclass(frozen=True)
class Snapshot:
    """What one scrape reports: the levels and LevelDB's estimate of its memory."""

    levels: dict[int, LevelRow]
    memory_bytes: int

    def files(self, level: int) -> int:
        row = self.levels.get(level)
        return 0 if row is None else row.files

    def size_bytes(self, level: int) -> int:
        row = self.levels.get(level)
        return 0 if row is None else row.size_mb * MB

    def compaction_seconds(self) -> float:
        return float(sum(row.compaction_s for row in self.levels.values()))

    def read_bytes(self) -> int:
        return sum(row.read_mb for row in self.levels.values()) * MB

    def written_bytes(self) -> int:
        return sum(row.written_mb for row in self.levels.values()) * MB


EMPTY = Snapshot({}, 0)

PropertyReader = Callable[[bytes], "bytes | None"]
"""Reads one LevelDB property by name; None if the database has no such property or is
closed (node/store.py ``LedgerStore.leveldb_property``)."""


class LevelDBStats:
    """A store's LevelDB figures, read at most once per ``max_age_s``.

    Why a cache: one scrape renders some twenty figures from these two properties, each
    through its own reader; reading them once per scrape rather than once per figure keeps
    a scrape at two calls into LevelDB (each takes LevelDB's lock and formats the table).
    Short, so that scrapes a fraction of a second apart (``jangbu bench --window 0.3``)
    still see fresh figures.
    """

    def __init__(self, read_property: PropertyReader, max_age_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read_property
        self._max_age_s = max_age_s
        self._clock = clock
        self._snapshot = EMPTY
        self._read_at: float | None = None

    def snapshot(self) -> Snapshot:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._max_age_s:
            self._snapshot = self._take()
            self._read_at = now
        return self._snapshot

    def _take(self) -> Snapshot:
        stats = self._read(STATS_PROPERTY)
        if stats is None:  # closed: the last figures stand (a counter must not drop to 0)
            return self._snapshot
        memory = self._read(MEMORY_PROPERTY)
        levels = parse_stats(stats.decode("ascii", "replace"))
        try:
            memory_bytes = int(memory) if memory is not None else 0
        except ValueError:
            memory_bytes = 0
        return Snapshot(levels, memory_bytes)


def export(metrics: Metrics, stats: LevelDBStats, write_buffer_bytes: int) -> None:
    """Put the store's LevelDB figures on ``metrics`` (read when scraped), with the write
    buffer size the node opened it with (node/store_open.py ``use_node_write_buffer``)."""
    metrics.gauge("jangbu_leveldb_write_buffer_bytes", lambda: write_buffer_bytes,
                  "this node's LevelDB write buffer (memtable) size: the validators spread "
                  "theirs apart so that they do not all flush and compact at the same height")
    for level in range(LEVELS):
        label = f'{{level="{level}"}}'
        metrics.gauge(f"jangbu_leveldb_files{label}",
                      lambda n=level: stats.snapshot().files(n),  # type: ignore[misc]
                      "LevelDB table files in each level (level 0: writes slow down from 8 "
                      "files and stop at 12 until a compaction catches up)")
        metrics.gauge(f"jangbu_leveldb_bytes{label}",
                      lambda n=level: stats.snapshot().size_bytes(n),  # type: ignore[misc]
                      "size of each LevelDB level, bytes (LevelDB reports whole MiB)")
    metrics.counter_from("jangbu_leveldb_compaction_seconds_total",
                         lambda: stats.snapshot().compaction_seconds(),
                         "wall-clock time LevelDB spent writing memtables out as tables and "
                         "compacting them since the store was opened at start (whole "
                         "seconds per level, LevelDB's own count)")
    metrics.counter_from("jangbu_leveldb_compaction_read_bytes_total",
                         lambda: stats.snapshot().read_bytes(),
                         "bytes LevelDB's compactions read since the store was opened "
                         "(whole MiB per level)")
    metrics.counter_from("jangbu_leveldb_compaction_written_bytes_total",
                         lambda: stats.snapshot().written_bytes(),
                         "bytes LevelDB's memtable flushes and compactions wrote since the "
                         "store was opened (whole MiB per level)")
    metrics.gauge("jangbu_leveldb_memory_bytes", lambda: stats.snapshot().memory_bytes,
                  "LevelDB's estimate of the memory it uses (memtables and block cache)")
