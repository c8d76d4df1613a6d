"""Opening a node's LevelDB store, and beginning that open before the node is imported.

Why a module of its own, importing nothing of the node: ``jangbu node start`` reads its
configuration and calls :func:`preopen` first, so a restarting node replays LevelDB's log
(~0.3-0.6 s after a run under load, with the GIL released) while it imports the node's
modules (~0.25 s). Imported from node.store, the open began only after ~0.1 s of imports
(docs/benchmarks.md, eighteenth round).

Where the compiled ``node._state_scan`` is built, the same thread first reads the whole
state through LevelDB's C API without the GIL (:func:`scan_state`): the start-up's pass
over every stored value, ~0.3 s for 130,000 keys, then runs beside the imports too instead
of after them (twenty-first round; reverted, and back in the twenty-second, where a shorter
log showed the imports, not the replay, holding the pass back).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import plyvel
import plyvel._plyvel

STATE_PREFIX = b"s/"
"""Where the state's values live in LevelDB (node/store.py's key layout)."""


def _bind_state_scan() -> Any:
    """``node._state_scan`` bound to the LevelDB plyvel loaded, or None (not built, or that
    library lacks LevelDB's C API): the node then reads its state through plyvel."""
    try:
        from node import _state_scan  # type: ignore[attr-defined]

        return _state_scan if _state_scan.bind(plyvel._plyvel.__file__) else None
    except Exception:  # not built, or a plyvel without a file to bind to: no scan, no error
        return None


_scan = _bind_state_scan()

WRITE_BUFFER_MIB = (64, 96)
"""The range, in MiB, over which the validators of a network spread their LevelDB write
buffers (the memtable, filled until LevelDB writes it out as a level-0 table).

Why not one size for every node: validators write the same bytes in the same order, so
with one size every node's memtable filled at the same block, and all of them wrote it
out and compacted at once. On the machine the benchmarks share, that took a 10 s window
to half its throughput (2,012 -> 1,056 tx/s, with 1.3 s of CPU per node off the event
loops, LevelDB's compaction thread: ``jangbu bench --window``, thirtieth round); on
machines of their own it slows every node at once, and a BFT network runs at the pace of
its third-fastest node out of four. Sizes spread apart put the nodes' first flushes, and
the compactions after them, at different heights (later ones drift, and may meet again).
Measured at 800 tx/s offered over 100,000 orders (9 alternated pairs): p99 1.7-6x lower in
9 of 9, for ~2% more CPU per transaction at the medians and, in some runs, a higher p50
(a compacting node now slows some heights instead of all four slowing a few). From 64
MiB, the one size before, up: a spread over 48-80 MiB flushed its smaller buffers more
often, for no better tail. Never part of consensus: it only decides how one node lays
out its own files. ``/metrics`` reports each node's size (``jangbu_leveldb_write_buffer_bytes``)."""

DEFAULT_WRITE_BUFFER = 64 << 20
"""The write buffer of a store opened without a node's identity (tools, benchmarks that
open a store themselves, a node that is not a validator of its genesis: see
:func:`spread_write_buffer`)."""


def spread_write_buffer(node_public: str, validators: Sequence[str]) -> int:
    """The write buffer size, in bytes (whole MiB), for the node whose public key (hex) is
    ``node_public`` among ``validators`` (their public keys, hex): evenly spread over
    :data:`WRITE_BUFFER_MIB` by the key's rank, so no two validators of a network share a
    size (4 validators: 64, 75, 85 and 96 MiB). A node that is not among them gets
    :data:`DEFAULT_WRITE_BUFFER`."""
    keys = sorted(set(validators))
    if node_public not in keys or len(keys) == 1:
        return DEFAULT_WRITE_BUFFER
    low, high = WRITE_BUFFER_MIB
    return (low + round((high - low) * keys.index(node_public) / (len(keys) - 1))) << 20


def use_node_write_buffer(genesis_file: str | os.PathLike[str],
                          node_key_file: str | os.PathLike[str]) -> int:
    """Set :data:`LEVELDB_OPTIONS`' write buffer for the node with these genesis and node
    key files (:func:`spread_write_buffer`), before its store is opened; returns it.

    Read here, before anything of the node is imported (the public key is in the key
    file beside its seed; genesis lists the validators' keys). Best effort: a file that
    cannot be read or parsed leaves :data:`DEFAULT_WRITE_BUFFER`, and the node's own
    checks of those files then report what is wrong with them.
    """
    size = DEFAULT_WRITE_BUFFER
    try:
        with open(node_key_file, encoding="utf-8") as key_file:
            public = json.load(key_file)["public"]
        with open(genesis_file, encoding="utf-8") as genesis:
            validators = [entry["pubkey"] for entry in json.load(genesis)["validators"]]
        if isinstance(public, str) and all(isinstance(key, str) for key in validators):
            size = spread_write_buffer(public.lower(), [key.lower() for key in validators])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    LEVELDB_OPTIONS["write_buffer_size"] = size
    return size


LEVELDB_OPTIONS: dict[str, int] = {
    "bloom_filter_bits": 10,
    "write_buffer_size": DEFAULT_WRITE_BUFFER,
    "lru_cache_size": 64 << 20,
    "max_file_size": 8 << 20,
}
"""LevelDB tuning for a ledger's write pattern (one large synced batch per block).

Why: with LevelDB's defaults (4 MB memtable, 2 MB tables, no filters) background
compaction cost more CPU than execution itself. Committing 100 blocks of 1,000 clearance
orders through the engine (proposer path, one process) measured 508 µs of CPU per
transaction with the defaults and 334 µs with these settings (a 64 MiB write buffer; a
node's own is spread around it, :func:`use_node_write_buffer`); the bloom filters also make the "is
this transaction already committed?" miss on every admission a filter probe. Memory: at
most ~2 memtables (160 MB with the largest draw) plus the 64 MB block cache per node,
allocated as used.
"""

COMPRESSION: str | None = None
"""How LevelDB compresses the tables it writes: None (the default) or ``"snappy"``.

Why none: a node's CPU, not its disk, bounds what a network commits. Once a store is past
its first memtable flush, compactions run all the time, and snappy compressing and
decompressing every table they rewrite was 5.2% of a loaded node's CPU (perf, a devnet's
second 20,000 orders). Without it, in that regime: 3.8% less CPU per transaction and node
(4 of 4 alternated pairs, 194.9 against 202.5 µs at the medians; a first version with the
compression switched off by hand, 3 of 3, 208.2 against 222.7), and 158.5-169.6 against
173.2-180.5 µs through 100,000 orders in one engine (``bench_chain.py --blocks 100``),
for ~2.2x LevelDB's size on disk (128 MiB against 59 MiB at 100,000 orders; the block
files beside it, 110 MiB, are not compressed either way): docs/benchmarks.md,
twenty-third round. Tables a store wrote with snappy (before, or with this set) stay
readable: LevelDB marks each block with its compression, and a compaction that merges
them writes its output without it (tables no compaction picks stay as they are, so an old
store grows gradually). ``"snappy"`` trades the CPU back for the disk."""

RECOVER_UNCOMPRESSED_LOG_BYTES = 4 << 20
"""With :data:`COMPRESSION` on: from this much log on, :func:`open_db` replays it without
compression first."""


def log_bytes(path: str) -> int:
    """The size of LevelDB's write-ahead log(s) in ``path``: what opening it replays."""
    try:
        with os.scandir(path) as entries:
            return sum(entry.stat().st_size for entry in entries
                       if entry.name.endswith(".log") and entry.is_file())
    except OSError:
        return 0


class OrphanedStoreError(Exception):
    """The directory holds a LevelDB database's files but not its ``CURRENT`` pointer."""


_TABLE_OR_LOG = re.compile(r"^\d+\.(ldb|sst|log)$")


def check_not_orphaned(path: str) -> None:
    """Refuse to create a database over the files of one whose ``CURRENT`` is gone.

    Why: ``create_if_missing`` would take such a directory for an empty one, make a new
    database in it and delete the old tables as unused: a node whose ``CURRENT`` was lost
    (a bad restore, a stray ``rm``) used to start at height 0 having deleted its ledger,
    block files included (docs/operations.md §1: a damaged store stops the node). A
    directory with only a ``MANIFEST`` (a first creation cut short) holds nothing committed
    and is opened as new; so is one with empty logs.
    """
    if os.path.isfile(os.path.join(path, "CURRENT")):
        return
    try:
        with os.scandir(path) as entries:
            found = sorted(entry.name for entry in entries
                           if _TABLE_OR_LOG.match(entry.name) and entry.is_file()
                           and (not entry.name.endswith(".log") or entry.stat().st_size > 0))
    except OSError:  # missing, or unreadable: LevelDB's open reports it in its own words
        return
    if found:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise OrphanedStoreError(f"it holds LevelDB files ({shown}) but no CURRENT file")


def open_db(path: str) -> Any:
    """LevelDB at ``path`` with :data:`LEVELDB_OPTIONS` and :data:`COMPRESSION`.

    Opening replays the log of writes since the last open into a level-0 table. With
    compression on, LevelDB compresses that table as it writes it: with a full 64 MiB write
    buffer, 0.2 s of the 0.55 s a restarting node waits (docs/benchmarks.md, seventeenth
    round). A large log is then replayed by a first open without compression, closed at
    once; the open that follows finds an empty log, and the table is compressed later by
    LevelDB's background compaction, off a restart's critical path.
    """
    check_not_orphaned(path)
    if COMPRESSION is not None and replays_uncompressed(path):
        options = {**LEVELDB_OPTIONS, "lru_cache_size": 8 << 20}
        with kept_info_log(path):
            plyvel.DB(path, paranoid_checks=True, compression=None, **options).close()
    return plyvel.DB(path, create_if_missing=True, paranoid_checks=True,
                     compression=COMPRESSION, **LEVELDB_OPTIONS)


def replays_uncompressed(path: str) -> bool:
    """Whether opening the store at ``path`` replays its log into a table written without
    compression: always with :data:`COMPRESSION` off, else from
    :data:`RECOVER_UNCOMPRESSED_LOG_BYTES` of log on (:func:`open_db`; the state scan
    follows the same rule)."""
    return COMPRESSION is None or log_bytes(path) >= RECOVER_UNCOMPRESSED_LOG_BYTES


@contextlib.contextmanager
def kept_info_log(path: str) -> Iterator[None]:
    """Around an extra open and close of the database at ``path``: put the previous run's
    info log (``LOG``) back afterwards.

    Why: every open renames ``LOG`` to ``LOG.old`` and starts a new one, so an extra open
    before the node's own left ``LOG.old`` holding the extra open's few lines, and the
    previous run's log, the first thing to read after a crash, was gone. Best effort: it is
    diagnostics, never a reason to fail an open.
    """
    log, previous = os.path.join(path, "LOG"), os.path.join(path, "LOG.old")
    had_log = os.path.isfile(log)
    try:
        yield
    finally:
        if had_log:
            with contextlib.suppress(OSError):
                os.replace(previous, log)


ScannedState = tuple[dict[int, bytes], dict[int, bytes]]
"""Each non-empty bucket's records and its hash, as ``state_tree.state_buckets`` gives."""


def scan_state(path: str) -> ScannedState | None:
    """The state's buckets read straight from the closed database at ``path``
    (``node._state_scan``): its log replayed into the table :func:`open_db` would write,
    every value hashed, the GIL released throughout. None where that module is not in use
    (not built, or ``JANGBU_PURE_TREE=1``, which rules out every compiled tree loop: the
    node then hashes its state in node/state_tree.py) or on any error of the database,
    which the ordinary open then meets and reports."""
    if _scan is None or os.environ.get("JANGBU_PURE_TREE", "") not in ("", "0"):
        return None
    # The table the log is replayed into is written as open_db writes it.
    compress = not replays_uncompressed(path)
    with kept_info_log(path):
        found: ScannedState | None = _scan.state_buckets(
            path, STATE_PREFIX, LEVELDB_OPTIONS["write_buffer_size"],
            LEVELDB_OPTIONS["max_file_size"], LEVELDB_OPTIONS["bloom_filter_bits"], 8 << 20,
            compress)
    return found


class PendingOpen:
    """An open running on a thread: :meth:`result` waits for the database or raises what
    the open raised; :attr:`state` is then the state :func:`scan_state` read before the
    open, or None. (concurrent.futures would do, at ~8 ms more of imports first.)"""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._db: Any = None
        self._error: BaseException | None = None
        self.state: ScannedState | None = None

    def run(self, path: str) -> None:
        # Before the open, on the same thread: the scan holds the database alone and closes
        # it; the open then finds its log replayed. A scan that raises (no memory, say) is
        # a scan not made: the node then reads its state through plyvel, as without one.
        try:
            self.state = scan_state(path)
        except Exception:  # any failure of the scan only costs its gain
            self.state = None
        try:
            self._db = open_db(path)
        except BaseException as exc:  # raised again by result(), in the store's opener
            self._error = exc
            self.state = None
        finally:
            self._done.set()

    def result(self) -> Any:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._db


_PREOPENED: dict[str, PendingOpen] = {}


def preopen(path: str) -> None:
    """Begin opening the existing store at ``path`` on a thread; :func:`take_preopened`
    (called by ``LedgerStore.open``) hands the result over.

    Nothing is done for a directory without a LevelDB database yet: a first start has
    nothing to replay, and a node that then fails on its genesis or keys must not leave a
    database behind. Once per path: a second call while one is pending does nothing.
    """
    if path in _PREOPENED or not os.path.isfile(os.path.join(path, "CURRENT")):
        return
    pending = PendingOpen()
    _PREOPENED[path] = pending
    threading.Thread(target=pending.run, args=(path,), name="jangbu-store-open",
                     daemon=True).start()


def take_preopened(path: str) -> PendingOpen | None:
    """The open :func:`preopen` began for ``path``, if any; it is taken only once."""
    return _PREOPENED.pop(path, None)


def close_untaken(keep: str | None = None) -> None:
    """Close every open :func:`preopen` began that nobody took, except ``keep``'s.

    ``jangbu node start`` begins its open from the ``--home`` it finds in the command line
    before argparse has read it; argparse may then pick another home (an abbreviated
    ``--hom``) or stop at a bad flag, and an open left pending would hold that directory's
    LevelDB lock for the life of the process. An open that failed has nothing to close.
    """
    for path in [path for path in _PREOPENED if path != keep]:
        pending = _PREOPENED.pop(path)
        try:
            db = pending.result()
        except BaseException:  # its error is nobody's to report now
            continue
        db.close()
