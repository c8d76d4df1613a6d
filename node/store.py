"""The ledger store on LevelDB (plyvel): blocks, certificates, receipts, tx index, state.

Every block is committed in **one** ``WriteBatch(sync=True)`` holding the pointer to the
block and its receipts, its certificate, the transaction index, the state changes, the
state-tree leaf index and the new height. LevelDB applies a batch atomically and its log is
replayed on open, so after a crash the store is at the old height or the new one, never
between. The block's and the receipts' bytes go to append-only files under ``blocks/``
(node/block_files.py), written and synced before that batch; bytes a crash left past the
last committed pointer are cut off when the store is opened.

Block sync may have that batch written on a second thread while it decodes and checks the
next block (``commit_block(..., background=True)``): the write releases the GIL and was a
fifth of a catch-up. Until it is done, every use of the database waits for it first
(:class:`_AfterWrite`), so no reader ever sees the store without a block it reports.

Key layout (all heights are 8-byte big-endian so they sort numerically):

==================  ===============================================================
``m/chain_id``      chain id (utf-8)            ``m/genesis_hash``  SHA-256 of genesis
``m/height``        last committed height        ``m/format``        store format version
``m/files_from``    first height in ``blocks/``   ``s/<contract>/<key>`` state value
``b/<h>``           pointer into ``blocks/``      ``h/<block hash>``  height
``c/<h>``           certificate of block h        ``t/<tx hash>``     canonical [h, index]
``l/<key hash>``    state-tree leaf (value hash)  ``w/...``, ``v/...``  old WAL, signer guard
==================  ===============================================================

The consensus WAL is the file ``consensus.wal`` beside these (node/wal_file.py); a store
written before it keeps its records under ``w/``, and the driver moves them to the file.

Format 1 (before the block files) kept the canonical block itself under ``b/<h>`` and each
receipt under ``r/<h><i:4>``. Such a store is still read as it is; blocks committed after
it is opened by this version go to the files, and ``m/format`` becomes 2 (which an older
version refuses to open rather than misread pointers as blocks).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import plyvel

from consensus import canonical
from node.block import Block, Header, decode_header
from node.block_files import (
    BlockFileError,
    BlockFiles,
    PendingEntry,
    Pointer,
    decode_pointer,
    is_pointer,
)
from node.execution import Receipt
from node.state_tree import DEFAULT_CACHE_ENTRIES, LEAF_PREFIX, StateDelta, StateTree
from node.store_open import (
    STATE_PREFIX,
    OrphanedStoreError,
    ScannedState,
    open_db,
    take_preopened,
)

_T = TypeVar("_T")

FORMAT = b"2"
FORMATS_READ = frozenset({b"1", FORMAT})
BLOCK_FILES_DIR = "blocks"
META_CHAIN = b"m/chain_id"
META_GENESIS = b"m/genesis_hash"
META_HEIGHT = b"m/height"
META_FORMAT = b"m/format"
META_FILES_FROM = b"m/files_from"
"""The first height whose block is in the block files: every ``b/<h>`` from it on must be a
pointer, so a damaged one reads as damage and not as a format-1 block."""


class StoreError(RuntimeError):
    """The data directory cannot be used as it is (locked, corrupt, another chain...).

    The message says what is wrong and what an operator can do; it is shown without a
    traceback by the CLI.
    """




def height_key(prefix: bytes, height: int) -> bytes:
    return prefix + height.to_bytes(8, "big")


class _PrefixReader:
    """A KVReader over one key prefix of the live database (prefix stripped)."""

    def __init__(self, db: Any, prefix: bytes) -> None:
        self._db = db
        self._prefix = prefix

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(self._prefix + key)
        return value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        cut = len(self._prefix)
        for key, value in self._db.iterator(prefix=self._prefix + prefix):
            yield key[cut:], value

    def raw_scan(self, prefix: bytes) -> tuple[Iterator[tuple[bytes, bytes]], int]:
        """LevelDB's own iterator over ``prefix`` (keys with this reader's prefix still on)
        and that prefix's length: for loops in C that read a whole prefix at start-up
        (node/state_tree.py), where a Python generator per entry was most of the cost.
        Never remembered, unlike a state scan (no cache to fill with the whole state), and
        kept out of LevelDB's block cache too (``fill_cache=False``, as LevelDB advises for
        bulk scans): a pass over the whole state only evicts what the cache held, and
        filling it was ~0.03 s of a 0.15-0.18 s cold pass over 130,000 keys
        (docs/benchmarks.md, nineteenth round)."""
        return (self._db.iterator(prefix=self._prefix + prefix, fill_cache=False),
                len(self._prefix))


class _CachedStateReader(_PrefixReader):
    """The committed-state reader, remembering the results of small prefix scans.

    Contracts scan short prefixes on every call (the clearance contract reads the group of
    the buyer's orders of the day and the restricted lists for each new order); each scan
    opens a LevelDB iterator and seeks every level, which profiles showed as the largest
    store cost. State changes only through :meth:`LedgerStore.commit_block`, which calls
    :meth:`invalidate` with every written key, so a remembered scan is always the committed
    truth. Bounded: scans of at most ``max_items`` results, at most ``max_prefixes`` of them.
    """

    def __init__(self, db: Any, prefix: bytes, *, max_prefixes: int = 50_000,
                 max_items: int = 64) -> None:
        super().__init__(db, prefix)
        self.max_prefixes = max_prefixes
        self.max_items = max_items
        # Oldest first. An OrderedDict: a plain dict's "first key" walks over the slots of
        # every key deleted before it, ~20 µs per eviction at 50,000 prefixes.
        self._scans: OrderedDict[bytes, list[tuple[bytes, bytes]]] = OrderedDict()
        self._lengths: dict[int, int] = {}  # prefix length -> how many remembered
        self._generation = 0  # bumped by every invalidation

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        # A plain function, not a generator: a remembered scan is the list's own iterator
        # (each generator layer between a contract and its scan is one more frame per scan,
        # and the clearance contract scans on every order). Remembered lists are replaced,
        # never changed in place, so an iterator handed out stays what it was.
        cached = self._scans.get(prefix)
        if cached is not None:
            return iter(cached)
        return self._scan_and_remember(prefix)

    def _scan_and_remember(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        generation = self._generation
        items: list[tuple[bytes, bytes]] | None = []
        for item in super().scan(prefix):
            if items is not None:
                items.append(item)
                if len(items) > self.max_items:
                    items = None  # too large to remember; keep streaming
            yield item
        # Only a scan run to its end, with no commit in between, is remembered.
        if items is not None and generation == self._generation:
            self._remember(prefix, items)

    def _remember(self, prefix: bytes, items: list[tuple[bytes, bytes]]) -> None:
        if prefix in self._scans:  # two scans of one prefix ran to their ends together
            self._scans[prefix] = items
            return
        while self._scans and len(self._scans) >= self.max_prefixes:
            oldest, _ = self._scans.popitem(last=False)
            self._count_forgotten(oldest)
        self._scans[prefix] = items
        self._lengths[len(prefix)] = self._lengths.get(len(prefix), 0) + 1

    def _forget(self, prefix: bytes) -> None:
        if self._scans.pop(prefix, None) is not None:
            self._count_forgotten(prefix)

    def _count_forgotten(self, prefix: bytes) -> None:
        left = self._lengths[len(prefix)] - 1
        if left:
            self._lengths[len(prefix)] = left
        else:
            del self._lengths[len(prefix)]

    def invalidate(self, keys: Iterable[bytes]) -> None:
        """Forget every remembered scan whose prefix one of ``keys`` starts with."""
        self._generation += 1
        if not self._scans:
            return
        lengths = list(self._lengths)
        scans = self._scans
        for key in keys:
            for length in lengths:
                if length <= len(key) and key[:length] in scans:
                    self._forget(key[:length])

    def clear(self) -> None:
        self._generation += 1
        self._scans.clear()
        self._lengths.clear()


_INDEXES: list[bytes] = []


def _encoded_indexes(count: int) -> list[bytes]:
    """``canonical.encode(i)`` for ``i`` below ``count`` at least (grown once, then kept)."""
    while len(_INDEXES) < count:
        _INDEXES.append(canonical.encode(len(_INDEXES)))
    return _INDEXES


class _AfterWrite:
    """Stands in for the LevelDB handle while a block's batch is written in the background.

    Any use of it (a read, a write, ``closed``) first waits for that write to finish
    (:meth:`LedgerStore.settle`), which puts the real handle back. Why a stand-in rather
    than a check in every read: the readers are on every transaction's path, and a write in
    the background happens only during block sync.
    """

    __slots__ = ("_store",)

    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store.settle(), name)


_RECOVER = ("restore it from a backup or remove it and let the node catch up from its peers "
            "(docs/operations.md)")


def open_error_message(path: str, exc: Exception) -> str:
    """The operator's line for LevelDB's refusal to open ``path``.

    Only a failed lock *call* (LevelDB's ``lock <file>: ...``) means another process holds
    the store; the lock file failing to open (``<dir>/LOCK: Permission denied``, ``Read-only
    file system``) is the directory's permissions or mount, and used to be reported as
    "in use by another process" too, sending the operator after a process that did not exist.
    """
    reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(
        exc.args[0], bytes) else str(exc)
    if "IO error: lock " in reason:
        return (f"data directory {path} is in use by another process (LevelDB lock held); "
                "is this node already running?")
    if "Permission denied" in reason or "Read-only file system" in reason:
        return (f"cannot open data directory {path}: {reason}; the node needs to write to "
                "it (check its owner, mode and mount)")
    return f"cannot open data directory {path}: {reason}"


class LedgerStore:
    """One node's copy of the ledger."""

    def __init__(self, db: Any, path: str) -> None:
        self.db = db
        self._db = db  # the real handle, whatever ``self.db`` stands for meanwhile
        self.path = path
        self.state = _CachedStateReader(db, STATE_PREFIX)
        self.leaves = _PrefixReader(db, b"")  # StateTree scans b"l/..." itself
        self._height = self._read_height()
        self._writing: Future[None] | None = None
        self._write_failed: BaseException | None = None
        self._writer: ThreadPoolExecutor | None = None
        # The state as the store's opener read it before opening (node/store_open.py
        # scan_state), for load_state_tree; dropped at the first write of the state.
        self._scanned_state: ScannedState | None = None
        self.files = BlockFiles(os.path.join(path, BLOCK_FILES_DIR))
        raw_from = self.db.get(META_FILES_FROM, verify_checksums=True)
        self._files_from = None if raw_from is None else int.from_bytes(raw_from, "big")
        self._recover_block_files()

    def _in_files(self, height: int) -> bool:
        return self._files_from is not None and height >= self._files_from

    def _recover_block_files(self) -> None:
        """Cut what a crash left in the block files past the last committed block.

        Only after the last committed entry has been read back whole (its block's CRC): a
        damaged pointer must stop the node, never have committed bytes cut or deleted.

        Block files beside a store with no chain in it are refused, not emptied: genesis is
        written before any block, so they can only be the files of a store that was lost or
        removed, and they may be the last copy of its blocks."""
        if not self.initialised and self.files.holds_bytes():
            raise StoreError(f"data directory {self.path} holds block files but no ledger "
                             f"(its LevelDB store is empty or was removed); nothing was "
                             f"deleted; " + _RECOVER)
        last = None
        if (self._files_from is None and self._height > 0
                and self.db.get(META_FORMAT, verify_checksums=True) != b"1"):
            raise StoreError(f"data directory {self.path} is corrupt (format 2 at height "
                             f"{self._height} without {META_FILES_FROM.decode()}); " + _RECOVER)
        if self._in_files(self._height):
            value = self.db.get(height_key(b"b/", self._height), verify_checksums=True)
            if value is None or not is_pointer(value):
                raise StoreError(f"data directory {self.path} is corrupt (the pointer to block "
                                 f"{self._height} is missing or damaged); " + _RECOVER)
            last = decode_pointer(value)
        try:
            if last is not None:
                self.files.read_block(last)
            self.files.recover(last)
        except (BlockFileError, OSError) as exc:
            raise StoreError(f"data directory {self.path} is corrupt ({exc}); " + _RECOVER
                             ) from None

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, *, chain_id: str, genesis_hash: bytes) -> LedgerStore:
        """Open (or create) the store at ``path`` for this chain; raises StoreError.

        Takes the database :func:`node.store_open.preopen` began opening for ``path``, if
        it did (its errors are raised here, as if it had been opened here)."""
        if os.path.exists(path) and not os.path.isdir(path):  # (review: "[Errno 17] File
            # exists" was all an operator got for a data_dir naming a file)
            raise StoreError(f"data directory {path} is a file, not a directory; point "
                             "[node] data_dir at a directory (it is created if missing)")
        os.makedirs(path, exist_ok=True)
        scanned: ScannedState | None = None
        try:
            pending = take_preopened(path)
            db = open_db(path) if pending is None else pending.result()
            scanned = None if pending is None else pending.state
        except plyvel.IOError as exc:
            raise StoreError(open_error_message(path, exc)) from None
        except plyvel.CorruptionError as exc:
            raise StoreError(f"data directory {path} is corrupt ({exc}); " + _RECOVER) from None
        except OrphanedStoreError as exc:
            raise StoreError(f"data directory {path} is damaged ({exc}); nothing was changed "
                             "in it; " + _RECOVER) from None
        try:
            # Checksums verified: a flipped byte in a table must read as corruption, not as
            # "another chain" or "another genesis".
            store_chain = db.get(META_CHAIN, verify_checksums=True)
            if store_chain is None:
                if any(True for _ in db.iterator(include_value=False)):
                    raise StoreError(f"data directory {path} holds data but no chain id; "
                                     "it is not a jangbu ledger")
            else:
                if store_chain != chain_id.encode():
                    raise StoreError(
                        f"data directory {path} belongs to chain {store_chain.decode()!r}, "
                        f"not {chain_id!r}"
                    )
                if db.get(META_GENESIS, verify_checksums=True) != genesis_hash:
                    raise StoreError(
                        f"data directory {path} was created from a different genesis file "
                        f"for chain {chain_id!r}"
                    )
                if db.get(META_FORMAT, verify_checksums=True) not in FORMATS_READ:
                    raise StoreError(f"data directory {path} has an unknown store format")
            store = cls(db, path)  # reads the block files' meta and recovers them
            store._scanned_state = scanned
            return store
        except plyvel.Error as exc:  # a damaged table file shows up on the first read
            db.close()
            reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(
                exc.args[0], bytes) else str(exc)
            raise StoreError(
                f"data directory {path} is corrupt or unreadable ({reason}); " + _RECOVER
            ) from None
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        """Wait for a block write under way, then close the database.

        Raises StoreError, after closing, if that write failed and nothing had reported it
        yet (a SIGTERM during block sync): the disk then lacks the last block the node
        reported, and the operator must hear of it. A failure reported before is not raised
        again.
        """
        unreported = self._writing is not None and self._write_failed is None
        failure: StoreError | None = None
        try:
            self.settle()
        except StoreError as exc:
            failure = exc if unreported else None
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
            self.files.close()
            if not self._db.closed:
                self._db.close()
        if failure is not None:
            raise failure

    # --- the block write in the background (block sync) ---------------------------------

    @property
    def writing(self) -> bool:
        """True while a block's batch is being written in the background."""
        return self._writing is not None

    def leveldb_property(self, name: bytes) -> bytes | None:
        """LevelDB's property ``name`` (``leveldb.stats``, ...), or None if it has none or
        the store is closed. Read from the real handle: LevelDB answers under its own
        lock, so a scrape of /metrics never waits for a block write under way."""
        try:
            value: bytes | None = self._db.get_property(name)
        except RuntimeError:  # plyvel: the database is closed
            return None
        return value

    def settle(self) -> Any:
        """Wait for the block write under way in the background, if any, and return the
        real database handle. Raises StoreError, now and at every later use of the
        database, if that write failed: the node reported a height its disk does not hold
        and must stop."""
        future = self._writing
        if future is not None:
            failure = future.exception()  # waits; an interrupt meanwhile leaves it pending
            self._writing = None
            if failure is None:
                self._use(self._db)
            else:
                self._write_failed = failure
        if self._write_failed is not None:
            raise StoreError(
                f"writing block {self._height} to {self.path} failed: "
                f"{type(self._write_failed).__name__}: {self._write_failed}"
            ) from self._write_failed
        return self._db

    def _use(self, db: Any) -> None:
        self.db = db
        self.state._db = db
        self.leaves._db = db

    def _write_in_background(self, batch: Any) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1,
                                              thread_name_prefix="jangbu-block-write")
        self._writing = self._writer.submit(batch.write)
        self._use(_AfterWrite(self))

    @property
    def initialised(self) -> bool:
        return self.db.get(META_CHAIN) is not None

    def initialise(
        self, *, chain_id: str, genesis_hash: bytes, state: Mapping[bytes, bytes],
        tree_cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> StateTree:
        """Write genesis state and meta at height 0 (one synced batch)."""
        if self.initialised:
            raise StoreError("store is already initialised")
        tree = StateTree(tree_cache_entries)
        delta = tree.preview(dict(state), self.leaves)
        self.state.clear()
        self._scanned_state = None
        with self.db.write_batch(sync=True, transaction=True) as batch:
            for key, value in state.items():
                batch.put(STATE_PREFIX + key, value)
            for key, vhash in delta.leaf_writes.items():
                if vhash is not None:
                    batch.put(key, vhash)
            batch.put(META_FORMAT, FORMAT)
            batch.put(META_GENESIS, genesis_hash)
            batch.put(META_HEIGHT, (0).to_bytes(8, "big"))
            batch.put(META_CHAIN, chain_id.encode())
        tree.apply(delta)
        self._height = 0
        return tree

    def load_state_tree(self, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> StateTree:
        """The state tree rebuilt from the stored values (``StateTree.from_state``: its root
        is theirs, for the caller to compare with the last block's); ``cache_entries``
        bounds its bucket cache (node/state_tree.py, config ``[state] tree_cache_entries``).

        From the buckets the store's opener read before the open, if it did and nothing
        has written the state since (node/store_open.py scan_state): the same values,
        hashed on that thread while the node's modules were imported."""
        scanned, self._scanned_state = self._scanned_state, None
        if scanned is not None:
            return StateTree.from_buckets(self.leaves, *scanned, cache_entries=cache_entries)
        return StateTree.from_state(self.state, self.leaves, cache_entries)

    def rewrite_leaf_index(self, records_by_bucket: Mapping[int, bytes]) -> tuple[int, int]:
        """Make the leaf index (``l/``) exactly ``records_by_bucket`` (each bucket's sorted
        ``key hash || value hash`` records, as ``state_tree.state_buckets`` gives them from
        the stored values), in one synced batch: after a crash the index is the old one or
        the new one. Returns (entries the index holds now, entries that were wrong, missing
        or extra). ``jangbu node rebuild-index``: the values are the state and the index
        only a derived copy, so a damaged index is rebuilt from them, after the caller has
        checked them against the last block's ``state_root``.

        One merge of two streams in key-hash order (the index as stored, the records by
        bucket then within it): only what differs is written, so an intact index is left
        untouched and the batch holds only the repairs (found by review: putting every
        entry again held the whole index in memory twice over).
        """
        def wanted() -> Iterator[tuple[bytes, bytes]]:
            for bucket in sorted(records_by_bucket):
                records = records_by_bucket[bucket]
                for at in range(0, len(records), 64):
                    yield LEAF_PREFIX + records[at:at + 32], records[at + 32:at + 64]

        db = self.settle()
        entries = repaired = 0
        want = wanted()
        next_want = next(want, None)
        with db.write_batch(sync=True, transaction=True) as batch:
            for key, vhash in db.iterator(prefix=LEAF_PREFIX, fill_cache=False):
                while next_want is not None and next_want[0] < key:  # missing
                    batch.put(*next_want)
                    entries, repaired = entries + 1, repaired + 1
                    next_want = next(want, None)
                if next_want is not None and next_want[0] == key:
                    entries += 1
                    if next_want[1] != vhash:  # wrong
                        batch.put(key, next_want[1])
                        repaired += 1
                    next_want = next(want, None)
                else:  # extra, or not a key this index holds
                    batch.delete(key)
                    repaired += 1
            while next_want is not None:  # missing, past the last stored entry
                batch.put(*next_want)
                entries, repaired = entries + 1, repaired + 1
                next_want = next(want, None)
        return entries, repaired

    # --- reads ------------------------------------------------------------------------------

    def _read_height(self) -> int:
        raw = self.db.get(META_HEIGHT, verify_checksums=True)
        return 0 if raw is None else int.from_bytes(raw, "big")

    @property
    def height(self) -> int:
        return self._height

    def get_block_bytes(self, height: int) -> bytes | None:
        value: bytes | None = self.db.get(height_key(b"b/", height))
        if value is None or not self._in_files(height):
            return value  # format 1 kept the block itself
        return self._from_files(self.files.read_block, self._pointer(height, value))

    def _pointer(self, height: int, value: bytes) -> Pointer:
        if not is_pointer(value):
            raise StoreError(f"data directory {self.path} is damaged (the pointer to block "
                             f"{height} is not one); " + _RECOVER)
        return decode_pointer(value)

    def _from_files(self, read: Callable[..., _T], *args: Any) -> _T:
        try:
            return read(*args)
        except (BlockFileError, OSError) as exc:
            raise StoreError(f"data directory {self.path} is damaged ({exc}); " + _RECOVER
                             ) from exc

    def get_block(self, height: int) -> Block | None:
        raw = self.get_block_bytes(height)
        return None if raw is None else Block.decode(raw)

    def get_header(self, height: int) -> Header | None:
        """The header of the block at ``height`` without decoding its transactions
        (:func:`node.block.decode_header`); None if there is none. Raises BlockError if the
        stored bytes are not shaped as a block (its transactions are not checked)."""
        raw = self.get_block_bytes(height)
        return None if raw is None else decode_header(raw)

    def get_commit_bytes(self, height: int) -> bytes | None:
        value: bytes | None = self.db.get(height_key(b"c/", height))
        return value

    def get_commit(self, height: int) -> Any | None:
        raw = self.get_commit_bytes(height)
        return None if raw is None else canonical.decode(raw)

    def height_of_block(self, block_hash: bytes) -> int | None:
        raw = self.db.get(b"h/" + block_hash)
        return None if raw is None else int.from_bytes(raw, "big")

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        raw = self.db.get(b"t/" + tx_hash)
        if raw is None:
            return None
        height, index = canonical.decode(raw)
        return int(height), int(index)

    def has_tx(self, tx_hash: bytes) -> bool:
        return self.db.get(b"t/" + tx_hash) is not None

    def get_receipt(self, height: int, index: int) -> Receipt | None:
        pointer = self.db.get(height_key(b"b/", height))
        if pointer is None:
            return None
        if self._in_files(height):
            raw = self._from_files(self.files.read_receipt, self._pointer(height, pointer), index)
        else:  # format 1
            raw = self.db.get(height_key(b"r/", height) + index.to_bytes(4, "big"))
        return None if raw is None else Receipt.from_obj(canonical.decode(raw))

    def receipts_of(self, height: int) -> list[Receipt]:
        pointer = self.db.get(height_key(b"b/", height))
        if pointer is None:
            return []
        if self._in_files(height):
            raws = self._from_files(self.files.read_receipts, self._pointer(height, pointer))
        else:  # format 1
            raws = [value for _, value in self.db.iterator(prefix=height_key(b"r/", height))]
        return [Receipt.from_obj(canonical.decode(raw)) for raw in raws]

    def get_state(self, key: bytes) -> bytes | None:
        return self.state.get(key)

    # --- small synced records for consensus (WAL, signer guard) ---------------------------

    def put_record(self, key: bytes, value: bytes, *, sync: bool) -> None:
        self._scanned_state = None  # any write: the start's scan may describe it no more
        self.db.put(key, value, sync=sync)

    def get_record(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def delete_prefix(self, prefix: bytes) -> None:
        self._scanned_state = None
        with self.db.write_batch(transaction=True) as batch:
            for key in self.db.iterator(prefix=prefix, include_value=False):
                batch.delete(key)

    def delete_records(self, keys: Iterable[bytes]) -> None:
        """Delete these keys in one (unsynced) batch. Cheaper than :meth:`delete_prefix`
        for keys that are rewritten often: no iterator steps over their deleted versions."""
        self._scanned_state = None
        with self.db.write_batch(transaction=True) as batch:
            for key in keys:
                batch.delete(key)

    def scan_records(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        yield from self.db.iterator(prefix=prefix)

    def scan_records_from(self, prefix: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The records under ``prefix`` from key ``start`` on, in key order."""
        end = prefix[:-1] + bytes([prefix[-1] + 1])  # the first key past the prefix
        yield from self.db.iterator(start=start, stop=end)

    # --- commit -----------------------------------------------------------------------------

    def commit_block(
        self,
        block: Block,
        commit: Any,
        receipts: Sequence[bytes],
        state_writes: Mapping[bytes, bytes | None],
        delta: StateDelta,
        *,
        background: bool = False,
    ) -> None:
        """Write everything block ``block.height`` changes in one synced batch.

        ``receipts`` are the receipts' canonical bytes, in block order. ``background``:
        return once the batch is built and let a second thread write it; every later use of
        the database waits for it (:meth:`settle`). Only for blocks that are final already
        (block sync): a crash before the write is done leaves the store at the previous
        height, and the block is fetched again.

        Raises StoreError if the height is not the next one (a bug in the caller: committing
        on top of the wrong state is never allowed).
        """
        height = block.height
        if height != self._height + 1:
            raise StoreError(f"refusing to commit height {height} on top of {self._height}")
        if len(receipts) != len(block.txs):
            raise StoreError("receipt count does not match transaction count")
        db = self.settle()  # one block write at a time, in height order
        self._scanned_state = None
        try:
            batch = self._block_batch(db, self.files, block, commit, receipts, state_writes,
                                      delta, self._files_from is None)
            if background:
                self._write_in_background(batch)
            else:
                batch.write()
        finally:  # also when the write failed: the cache must never outlive what it saw
            self.state.invalidate(state_writes)
        self._height = height
        if self._files_from is None:
            self._files_from = height

    @staticmethod
    def _block_batch(db: Any, files: BlockFiles, block: Block, commit: Any,
                     receipts: Sequence[bytes], state_writes: Mapping[bytes, bytes | None],
                     delta: StateDelta, first_in_files: bool) -> _BlockWrite:
        """The block's entry in the files and its synced batch, built but not written (a
        batch never written leaves nothing behind; an entry without one is cut off when
        the store is next opened)."""
        height = block.height
        entry = files.place(block.encoded, receipts)
        batch = db.write_batch(sync=True)
        batch.put(height_key(b"b/", height), entry.pointer.encode())
        if first_in_files:  # a new store's first block, or a format-1 store's first after it
            batch.put(META_FORMAT, FORMAT)
            batch.put(META_FILES_FROM, height.to_bytes(8, "big"))
        batch.put(b"h/" + block.hash, height.to_bytes(8, "big"))
        batch.put(height_key(b"c/", height), canonical.encode(commit))
        # Each ``t/`` value is canonical [height, index]: the array header and the height
        # once, each index's own bytes from a table (an encode per transaction was ~4% of
        # applying a synced block).
        location = b"\x92" + canonical.encode(height)
        indexes = _encoded_indexes(len(block.txs))
        for index, tx in enumerate(block.txs):
            batch.put(b"t/" + tx.hash, location + indexes[index])
        put_state_writes(batch, state_writes, delta.leaf_writes)
        batch.put(META_HEIGHT, height.to_bytes(8, "big"))
        return _BlockWrite(files, entry, batch)


def put_state_writes(batch: Any, state_writes: Mapping[bytes, bytes | None],
                     leaf_writes: Mapping[bytes, bytes | None]) -> None:
    """The state part of a block's batch: each value under ``s/`` and its leaf index entry
    (a value hash under ``l/``, from the tree's delta), written or deleted together, so the
    index always describes the values it was computed from."""
    for key, value in state_writes.items():
        if value is None:
            batch.delete(STATE_PREFIX + key)
        else:
            batch.put(STATE_PREFIX + key, value)
    for key, vhash in leaf_writes.items():
        if vhash is None:
            batch.delete(key)
        else:
            batch.put(key, vhash)


class _BlockWrite:
    """One block's write: its entry in the block files, synced, then its LevelDB batch."""

    __slots__ = ("_batch", "_entry", "_files")

    def __init__(self, files: BlockFiles, entry: PendingEntry, batch: Any) -> None:
        self._files, self._entry, self._batch = files, entry, batch

    def write(self) -> None:
        self._files.write(self._entry)
        self._batch.write()


__all__ = ["LEAF_PREFIX", "LedgerStore", "StoreError"]
