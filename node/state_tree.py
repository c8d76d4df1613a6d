"""The authenticated state root: a bucketed Merkle tree with one-key proofs.

Why buckets: a sparse Merkle tree over 256-bit keys costs 256 hashes per write in pure
Python; here every key falls into one of ``2**16`` buckets by the first two bytes of
``SHA-256(key)``, a bucket hashes its sorted ``(key hash, value hash)`` entries, and a
fixed-depth binary Merkle tree (RFC 6962 node hashing) sits over the buckets. A write costs
one bucket re-hash plus 16 node hashes, shared between writes to the same bucket; the
measured numbers are in ``docs/benchmarks.md``.

A proof for one key is the bucket's entries plus 16 sibling hashes; it proves presence
(with the value) or absence. The leaf index lives in LevelDB under ``l/<key hash>`` ->
``value hash``, written in the same batch as the state itself.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import add
from typing import Any, Protocol

from node import merkle, tx
from node.defaults import TREE_CACHE_ENTRIES
from node.merkle import leaf_hash, node_hash


def _load_compiled() -> Any:
    """``node/_tree_speedups.c`` if it was built (it needs OpenSSL's headers), else None.

    Optional like the compiled canonical encoder: both paths give the same hashes
    (tests/unit/test_tree_speedups.py), the compiled one with a fraction of the CPU.
    """
    try:
        from node import _tree_speedups  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _tree_speedups


_compiled = _load_compiled()
_fast = _compiled
merkle.use_compiled_root(getattr(_fast, "merkle_root", None))  # block roots: same switch
tx.use_compiled_parts(getattr(_fast, "certified_tx_parts", None))  # synced blocks' too


def compiled_loops() -> Any | None:
    """The compiled module while it is in use (:func:`use_compiled_tree`), else None: for
    the other modules whose loops it holds (a synced diff's writes, node/recent_diffs.py)."""
    return _fast


def use_compiled_tree(enabled: bool) -> bool:
    """Use the compiled tree loops (the default when built) or Python's; True if in use.

    For measuring one against the other and for ruling the C code out when diagnosing; the
    node reads it from ``JANGBU_PURE_TREE=1`` (node/app.py).
    """
    global _fast
    _fast = _compiled if enabled else None
    merkle.use_compiled_root(getattr(_fast, "merkle_root", None))
    tx.use_compiled_parts(getattr(_fast, "certified_tx_parts", None))
    return _fast is not None

DEPTH = 16
NUM_BUCKETS = 1 << DEPTH
LEAF_PREFIX = b"l/"


def _empty_levels() -> list[bytes]:
    level_hashes = [leaf_hash(b"")]
    for _ in range(DEPTH):
        level_hashes.append(node_hash(level_hashes[-1], level_hashes[-1]))
    return level_hashes


EMPTY_AT_LEVEL = _empty_levels()
EMPTY_ROOT = EMPTY_AT_LEVEL[DEPTH]
_DIGEST = type(hashlib.sha256()).digest  # unbound, for map()

DEFAULT_CACHE_ENTRIES = TREE_CACHE_ENTRIES  # the bucket cache's bound: node/defaults.py
# Previews whose touched buckets are kept for a fast apply (a few candidate blocks a height).
MAX_PENDING_PREVIEWS = 2
_HASH_SIZE = 32
_EMPTY_BUCKET = EMPTY_AT_LEVEL[0]
_RECORD_SIZE = 2 * _HASH_SIZE  # one bucket entry as cached: key hash || value hash


class LeafReader(Protocol):
    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def _raw_entries(reader: LeafReader, prefix: bytes) -> tuple[Iterator[tuple[bytes, bytes]], int]:
    """``reader.scan(prefix)``'s entries, through the store's own iterator where the reader
    offers one (``raw_scan``: its keys keep the reader's prefix, whose length comes with
    it), and how many bytes to cut off a key to get what ``scan`` would have yielded."""
    raw = getattr(reader, "raw_scan", None)
    if raw is None:
        return reader.scan(prefix), 0
    found: tuple[Iterator[tuple[bytes, bytes]], int] = raw(prefix)
    return found


def state_buckets(state: LeafReader) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """The tree's buckets as the values ``state`` reads give them (keys without the store's
    prefix): every ``key_hash(key) || value_hash(value)``, sorted and grouped by bucket.
    Returns each non-empty bucket's records and its hash (as :func:`bucket_hash` hashes):
    the state's records, 64 bytes a key, which the caller's tree keeps in its bucket cache
    as far as its bound allows."""
    entries, cut = _raw_entries(state, b"")
    if _fast is not None:
        found: tuple[dict[int, bytes], dict[int, bytes]] | None = _fast.state_buckets(entries,
                                                                                      cut)
        if found is not None:
            return found
        entries, cut = _raw_entries(state, b"")  # stepped aside: read again
    records = sorted([key_hash(key[cut:]) + value_hash(value) for key, value in entries])
    grouped: dict[int, list[bytes]] = {}
    for record in records:
        grouped.setdefault(bucket_of(record), []).append(record)
    by_bucket = {bucket: b"".join(parts) for bucket, parts in grouped.items()}
    return by_bucket, {bucket: leaf_hash(joined) for bucket, joined in by_bucket.items()}


class LeafIndexError(Exception):
    """The leaf index disagrees with the tree built from the stored values: the data
    directory is damaged. Raised where a bucket is read from the index (a preview's cache
    miss, a proof), so that a damaged entry never reaches a root, a proof or a vote; the
    node stops on it as on any damage it finds (node.app ``fatal_message``)."""


def key_hash(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def value_hash(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def bucket_of(khash: bytes) -> int:
    return int.from_bytes(khash[:2], "big")


def bucket_hash(entries: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Hash of a bucket: leaf hash over its (key hash || value hash) entries in order."""
    return leaf_hash(b"".join(k + v for k, v in sorted(entries)))


_PACKED_SIZE = 4 + 32  # one changed node in StateDelta.nodes: index (big-endian), hash


def packed_nodes(changed: Mapping[int, bytes]) -> bytes:
    """One level's changed nodes (index -> hash) as :class:`StateDelta` holds them."""
    return b"".join([index.to_bytes(4, "big") + changed[index] for index in sorted(changed)])


def unpacked_nodes(packed: bytes) -> dict[int, bytes]:
    """The inverse of :func:`packed_nodes`: index -> hash, in index order."""
    return {int.from_bytes(packed[at:at + 4], "big"): packed[at + 4:at + _PACKED_SIZE]
            for at in range(0, len(packed), _PACKED_SIZE)}


@dataclass(frozen=True)
class StateDelta:
    """What committing one block's state writes does to the tree (not yet applied)."""

    root: bytes
    leaf_writes: Mapping[bytes, bytes | None]  # LevelDB ``l/`` keys -> value hash or delete
    # New node hashes, one bytes per level (0: buckets .. DEPTH: the root), each changed
    # node packed as its 4-byte big-endian index then its hash, in index order. Packed
    # rather than a dict per level: a block of 1,000 orders changes 11,000-17,000 nodes,
    # and an int and a bytes object for each, then their dict, were ~40% of the upper
    # tree's cost (docs/benchmarks.md, nineteenth round).
    nodes: Sequence[bytes]

    def node_map(self) -> dict[tuple[int, int], bytes]:
        """The changed nodes keyed by ``(level, index)`` (for tests and tools)."""
        return {(level, index): value for level, packed in enumerate(self.nodes)
                for index, value in unpacked_nodes(packed).items()}


@dataclass(frozen=True)
class StateProof:
    """Inclusion (or exclusion) proof for one key against a state root."""

    bucket: int
    entries: tuple[tuple[bytes, bytes], ...]
    path: tuple[bytes, ...]  # sibling hashes, bucket level upwards

    def to_obj(self) -> dict[str, object]:
        return {
            "bucket": self.bucket,
            "entries": [[k, v] for k, v in self.entries],
            "path": list(self.path),
        }

    def to_json(self) -> dict[str, object]:
        return {
            "bucket": self.bucket,
            "entries": [[k.hex(), v.hex()] for k, v in self.entries],
            "path": [p.hex() for p in self.path],
        }


def _hash_writes(writes: Mapping[bytes, bytes | None]
                 ) -> tuple[dict[bytes, bytes | None], dict[int, dict[bytes, bytes | None]]]:
    """Leaf writes (``l/<key hash>`` -> value hash or None) and the same changes by bucket.

    The compiled ``hash_writes`` does the same for writes of exact bytes.
    """
    sha256 = hashlib.sha256
    # key_hash / value_hash of every write, looped in C where the shape allows.
    khashes = list(map(_DIGEST, map(sha256, writes)))
    vhashes = [None if value is None else sha256(value).digest() for value in writes.values()]
    leaf_writes: dict[bytes, bytes | None] = dict(
        zip(map(add, repeat(LEAF_PREFIX), khashes), vhashes, strict=True)
    )
    by_bucket: dict[int, dict[bytes, bytes | None]] = {}
    for khash, vhash in zip(khashes, vhashes, strict=True):
        bucket = khash[0] << 8 | khash[1]  # bucket_of(khash): 32-byte hash, DEPTH 16
        changes = by_bucket.get(bucket)
        if changes is None:
            by_bucket[bucket] = {khash: vhash}
        else:
            changes[khash] = vhash
    return leaf_writes, by_bucket


def _merge_and_hash(records: bytes, changes: Mapping[bytes, bytes | None]) -> tuple[bytes, bytes]:
    """``_merge(records, changes)`` and the bucket hash over the result (compiled if built)."""
    if _fast is not None:
        done: tuple[bytes, bytes] | None = _fast.merge_bucket(records, changes)
        if done is not None:
            return done
    merged = _merge(records, changes)
    return merged, hashlib.sha256(b"\x00" + merged).digest()  # bucket_hash()


def _merge(records: bytes, changes: Mapping[bytes, bytes | None]) -> bytes:
    """A bucket's records (sorted ``key hash || value hash``, 64 bytes each) after ``changes``.

    The result is what the bucket hash covers. Records are fixed-size with unique keys first,
    so sorting records sorts by key hash, as ``bucket_hash`` does.
    """
    if not records:
        return b"".join(sorted([k + v for k, v in changes.items() if v is not None]))
    size = _RECORD_SIZE
    by_key = {
        records[i : i + _HASH_SIZE]: records[i : i + size] for i in range(0, len(records), size)
    }
    for khash, vhash in changes.items():
        if vhash is None:
            by_key.pop(khash, None)
        else:
            by_key[khash] = khash + vhash
    return b"".join(sorted(by_key.values()))


class StateTree:
    """The in-memory upper tree over bucket hashes (``2 * 2**16`` node hashes, ~8 MB).

    It also keeps a bounded cache of *committed* bucket contents: a LevelDB prefix scan per
    touched bucket was the largest part of :meth:`preview`. A cached bucket is one ``bytes``
    of its sorted ``key hash || value hash`` records, exactly what its hash covers: compact,
    hashed without re-joining, and no work for the garbage collector (a dict per bucket
    measurably was). The cache relies on the rule the node hashes already rely on: the tree
    describes the committed state of the one ``l/`` index it is used with, and :meth:`apply`
    is called with each delta once its ``leaf_writes`` are committed there
    (``LedgerStore.commit_block`` then ``apply``, as the engine does). :meth:`preview` only
    reads the cache and fills it from ``reader`` (committed data), so previews of blocks
    that are never applied leave no trace in it. Given another reader object than the one
    the cache was filled from, the tree drops the cache and starts over.
    """

    def __init__(self, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        """``cache_entries`` bounds the bucket cache (one unit per bucket plus one per entry;
        0 turns it off: every preview reads its buckets from the reader)."""
        # levels[0] are bucket hashes; levels[DEPTH] is the root. Each level is one
        # bytearray of its 32-byte node hashes side by side (node ``i`` at ``32 * i``): 4 MB
        # in all, where a list of bytes objects per level was twice that and its 17,000
        # scattered objects a block were most of the cost of reading and updating them.
        self.levels: list[bytearray] = [
            bytearray(EMPTY_AT_LEVEL[level] * (NUM_BUCKETS >> level))
            for level in range(DEPTH + 1)
        ]
        self._cache_limit = max(0, cache_entries)
        # bucket -> its records; least recently used first, evicted whole from the front.
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_size = 0  # sum of 1 + entries over the cached buckets
        self._cache_reader: LeafReader | None = None
        # The touched buckets' records after each recent preview's writes, by id of its
        # delta (kept alongside, so an id cannot be mistaken for a later object's): applying
        # that delta swaps them into the cache instead of redoing every write. Only valid on
        # top of the committed state they were previewed on, so emptied by every apply.
        self._previews: OrderedDict[int, tuple[StateDelta, dict[int, bytes]]] = OrderedDict()

    @property
    def root(self) -> bytes:
        return bytes(self.levels[DEPTH])

    def node(self, level: int, index: int) -> bytes:
        """The committed hash of node ``index`` of ``level`` (0: the buckets)."""
        at = index * _HASH_SIZE
        return bytes(self.levels[level][at:at + _HASH_SIZE])

    @classmethod
    def load(cls, reader: LeafReader, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> StateTree:
        """Rebuild from the ``l/`` index in the store (done once at start-up).

        The full scan reads every bucket anyway, so it also warms the bucket cache (as far
        as the bound allows): the first blocks after a restart need no scans either.
        """
        tree = cls(cache_entries)
        cut = len(LEAF_PREFIX)
        if _fast is not None:
            # In C over the store's iterator: ~4x faster, and start-up reads it all. Entries
            # of another shape (damage): the general way below, which reads again.
            raw, skip = _raw_entries(reader, LEAF_PREFIX)
            found = _fast.leaf_buckets(raw, skip + cut)
            del raw  # a partly read store iterator, if it stepped aside
            if found is not None:
                tree._set_buckets(reader, *found)
                return tree
        buckets: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, vhash in reader.scan(LEAF_PREFIX):
            khash = key[cut:]
            buckets.setdefault(bucket_of(khash), []).append((khash, vhash))
        bucket_nodes: dict[int, bytes] = {}
        records: dict[int, bytes | None] = {}
        for bucket, entries in buckets.items():
            entries.sort()
            joined = b"".join([k + v for k, v in entries])
            bucket_nodes[bucket] = leaf_hash(joined)  # == bucket_hash(entries)
            well_formed = all(len(k) == len(v) == _HASH_SIZE for k, v in entries)
            records[bucket] = joined if well_formed else None
        tree._set_buckets(reader, records, bucket_nodes)
        return tree

    @classmethod
    def from_state(cls, state: LeafReader, leaves: LeafReader,
                   cache_entries: int = DEFAULT_CACHE_ENTRIES) -> StateTree:
        """Rebuild from the stored values themselves (a node's start-up), for use with the
        leaf index ``leaves`` of the same store.

        Why not from the leaf index (:meth:`load`): the start must hash every value anyway,
        or a damaged one would go unnoticed until a block touched it, and those hashes are
        the tree. Built from them, the root is the values' own, and the node compares it with
        its last block's ``state_root``: one pass instead of two (the index's scan was 0.14 s
        of a restart at 175,000 keys; docs/benchmarks.md, nineteenth round). The index is
        then checked where it is read instead: every bucket read from it must hash to the
        bucket's node here, or :class:`LeafIndexError` is raised (:meth:`_read_bucket`,
        :meth:`prove`). The buckets warm the cache as :meth:`load`'s do.
        """
        return cls.from_buckets(leaves, *state_buckets(state), cache_entries=cache_entries)

    @classmethod
    def from_buckets(cls, leaves: LeafReader, records: Mapping[int, bytes | None],
                     hashes: Mapping[int, bytes],
                     cache_entries: int = DEFAULT_CACHE_ENTRIES) -> StateTree:
        """The tree whose buckets hash to ``hashes`` (every non-empty bucket), for use with
        the leaf index ``leaves``, its cache warmed with ``records`` (None: not cacheable)
        as far as ``cache_entries`` allows: what :func:`state_buckets` gives."""
        tree = cls(cache_entries)
        tree._set_buckets(leaves, records, hashes)
        return tree

    def _set_buckets(self, reader: LeafReader, records: Mapping[int, bytes | None],
                     hashes: Mapping[int, bytes]) -> None:
        """Take ``hashes`` (bucket -> hash, every non-empty bucket) as the committed buckets
        of ``reader``'s state, and warm the cache with their ``records`` (None: not
        cacheable)."""
        nodes = self._with_parents(hashes) if hashes else []
        self.apply(StateDelta(nodes[DEPTH][4:] if nodes else self.root, {}, nodes))
        self._warm(reader, records)

    def _with_parents(self, bucket_nodes: Mapping[int, bytes]) -> list[bytes]:
        """New bucket hashes (bucket -> hash) and every node above them, one packed level
        each (:class:`StateDelta` ``nodes``).

        Written for speed (~16,000 node hashes per block of a few thousand writes): each
        parent hashed once from whichever child comes first, no sorting until a level is
        packed. The compiled loop, when built, does the same in a fraction of the time and
        steps aside (None) on any input not of this tree's own shape.
        """
        if _fast is not None:
            done: list[bytes] | None = _fast.with_parents(self.levels, bucket_nodes)
            if done is not None:
                return done
        if any(not 0 <= bucket < NUM_BUCKETS for bucket in bucket_nodes):
            raise ValueError("a bucket out of the tree's range")
        sha256 = hashlib.sha256
        size = _HASH_SIZE
        levels = self.levels
        nodes = [packed_nodes(bucket_nodes)]
        current: Mapping[int, bytes] = bucket_nodes
        for level in range(1, DEPTH + 1):
            below = levels[level - 1]
            parents: dict[int, bytes] = {}
            for index, digest in current.items():
                # node_hash(left, right), inlined.
                if index & 1:
                    if index - 1 in current:
                        continue  # hashed (or to be hashed) from the left sibling
                    left = bytes(below[(index - 1) * size:index * size])
                    parents[index >> 1] = sha256(b"\x01" + left + digest).digest()
                else:
                    right = current.get(index + 1)
                    if right is None:
                        right = bytes(below[(index + 1) * size:(index + 2) * size])
                    parents[index >> 1] = sha256(b"\x01" + digest + right).digest()
            nodes.append(packed_nodes(parents))
            current = parents
        return nodes

    def preview(
        self, writes: Mapping[bytes, bytes | None], reader: LeafReader
    ) -> StateDelta:
        """The tree after ``writes`` (full state key -> value or None), without applying.

        ``reader`` gives the committed ``l/`` entries of each touched bucket (read through
        the cache). The tree does not change; its cache only gains committed buckets it had
        to read, so a preview of a block that is never applied changes nothing it answers.
        """
        hashed = None if _fast is None else _fast.hash_writes(writes, LEAF_PREFIX)
        leaf_writes: dict[bytes, bytes | None]
        by_bucket: dict[int, dict[bytes, bytes | None]]
        leaf_writes, by_bucket = hashed if hashed is not None else _hash_writes(writes)
        if not by_bucket:
            return StateDelta(self.root, leaf_writes, [])
        if reader is not self._cache_reader:
            self._bind(reader)
        # With the cache on, a bucket whose committed hash is the empty bucket's is known to
        # be empty without a read: the tree describes the reader's committed state (its
        # hashes are computed on that), and no records hash like none (SHA-256).
        bucket_level = self.levels[0] if self._cache_limit else None
        # First every bucket known without a read (cached or empty), each cached one marked
        # recently used, then the reads: so a read's eviction never takes a bucket this
        # preview uses. In C when built: the loop was ~15% of a block's tree CPU.
        known = None if _fast is None else _fast.merge_buckets(by_bucket, self._cache,
                                                               bucket_level, _EMPTY_BUCKET)
        if known is None:
            known = self._merge_known(by_bucket, bucket_level)
        after: dict[int, bytes] = known[0]
        bucket_nodes: dict[int, bytes] = known[1]
        held_bytes: int = known[3]
        for bucket in known[2]:  # neither cached nor known to be empty, in bucket order
            records = self._read_bucket(reader, bucket)
            after[bucket], bucket_nodes[bucket] = _merge_and_hash(records, by_bucket[bucket])
            held_bytes += len(after[bucket])
        nodes = self._with_parents(bucket_nodes)
        delta = StateDelta(nodes[DEPTH][4:], leaf_writes, nodes)
        # Held for apply() only while small against the cache bound (each record is a
        # 64-byte key hash + value hash); otherwise apply() updates from leaf_writes.
        held = held_bytes // _RECORD_SIZE + len(after)
        if self._cache_limit and held <= self._cache_limit // 4:
            previews = self._previews
            previews[id(delta)] = (delta, after)
            while len(previews) > MAX_PENDING_PREVIEWS:
                previews.popitem(last=False)
        return delta

    def _merge_known(
        self, by_bucket: Mapping[int, Mapping[bytes, bytes | None]],
        bucket_level: bytearray | None,
    ) -> tuple[dict[int, bytes], dict[int, bytes], list[int], int]:
        """The buckets of ``by_bucket`` known without a read, after their changes: each
        one cached (moved to the cache's end) or, with ``bucket_level``, empty by its hash.

        Returns their records and hashes by bucket, the buckets left to read (in bucket
        order) and the records' total size. In bucket order: tables indexed by bucket (the
        cache, the tree levels) are then walked in memory order, which measured faster
        than write order. The compiled ``merge_buckets`` does the same.
        """
        cached = self._cache.get
        touch = self._cache.move_to_end
        after: dict[int, bytes] = {}
        bucket_nodes: dict[int, bytes] = {}
        to_read: list[int] = []
        held_bytes = 0
        for bucket in sorted(by_bucket):
            records = cached(bucket)
            if records is not None:
                touch(bucket)  # least recently used goes first
            elif (bucket_level is not None and bucket_level[bucket * _HASH_SIZE:
                                                             (bucket + 1) * _HASH_SIZE]
                  == _EMPTY_BUCKET):
                records = b""
            else:
                to_read.append(bucket)
                continue
            after[bucket], bucket_nodes[bucket] = _merge_and_hash(records, by_bucket[bucket])
            held_bytes += len(after[bucket])
        return after, bucket_nodes, to_read, held_bytes

    def apply(self, delta: StateDelta) -> None:
        """Make ``delta`` (previewed on this tree) the committed state.

        Call it once ``delta.leaf_writes`` are committed to the reader's store: the cached
        buckets take the same writes, so the cache keeps matching the store unread.
        """
        if _fast is None or _fast.set_nodes(self.levels, delta.nodes) is None:
            size = _HASH_SIZE
            if len(delta.nodes) > len(self.levels):
                raise ValueError("a delta with more levels than the tree")
            writes = []  # every node checked before any is written, as set_nodes does
            for row, packed in zip(self.levels, delta.nodes, strict=False):  # [] when empty
                for index, value in unpacked_nodes(packed).items():
                    if len(value) != size or (index + 1) * size > len(row):
                        raise ValueError("a changed node out of the tree's shape")
                    writes.append((row, index * size, value))
            for row, at, value in writes:
                row[at:at + size] = value
        previewed = self._previews.pop(id(delta), None)
        self._previews.clear()  # previewed on the state before this one: stale now
        if previewed is not None and previewed[0] is delta:
            self._cache_buckets(previewed[1])
        elif self._cache and delta.leaf_writes:
            self._cache_writes(delta.leaf_writes)

    # --- the committed-bucket cache ---------------------------------------------------------

    def _bind(self, reader: LeafReader) -> None:
        """Start over if ``reader`` is not the one the cached buckets came from."""
        if reader is not self._cache_reader:
            self._cache.clear()
            self._cache_size = 0
            self._previews.clear()
            self._cache_reader = reader

    def _warm(self, reader: LeafReader, found: Mapping[int, bytes | None]) -> None:
        """Cache what a full scan of ``reader`` found (None: not cacheable), within bounds.

        Empty buckets need no entry: their committed hash already says they are empty.
        """
        if not self._cache_limit:
            return
        self._bind(reader)
        budget = self._cache_limit - self._cache_size
        fill: dict[int, bytes] = {}
        for bucket, records in found.items():
            if records is None:
                continue
            budget -= 1 + len(records) // _RECORD_SIZE
            if budget < 0:
                break
            fill[bucket] = records
        self._cache_buckets(fill)

    def _read_bucket(self, reader: LeafReader, bucket: int) -> bytes:
        """The committed records of an uncached ``bucket``, from ``reader``, now cached;
        raises :class:`LeafIndexError` unless they are the bucket this tree commits to."""
        records = self._checked_bucket(reader, bucket)[1]
        self._cache_buckets({bucket: records})
        return records

    def _checked_bucket(self, reader: LeafReader,
                        bucket: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """``bucket``'s entries in ``reader``, sorted, and its records (the entries joined),
        checked against this tree's bucket node (raises :class:`LeafIndexError`).

        Why every entry's size is checked too, not only the bucket's hash: the hash covers
        the entries joined, so entries of other sizes could join to the committed bytes (a
        key hash and value hash folded into the previous entry's value), pass the hash and
        hide a key from a proof or a preview (found by review). The tree only ever holds
        32-byte key and value hashes, so any other size is damage. The hash is checked at
        every read because a tree built from the stored values (:meth:`from_state`) has not
        read the index: this is where a damaged entry is found, before it can give a root
        or a proof. Reads are cache misses only: one bucket hash each, on a state larger
        than the cache or with the cache off."""
        entries = sorted(self._bucket_entries(reader, bucket).items())
        if any(len(k) != _HASH_SIZE or len(v) != _HASH_SIZE for k, v in entries):
            raise LeafIndexError(f"the leaf index's bucket {bucket} holds a malformed entry")
        records = b"".join([k + v for k, v in entries])
        if self.node(0, bucket) != leaf_hash(records):  # bucket_hash(entries)
            raise LeafIndexError(f"the leaf index's bucket {bucket} does not match the stored "
                                 "values")
        return entries, records

    def _cache_buckets(self, buckets: Mapping[int, bytes]) -> None:
        """Cache (or replace) whole committed buckets, then evict down to the bound.

        New buckets go in as most recently used; a replaced one keeps its place (it was
        moved to the end when the preview that replaces it read it). Empty buckets are not
        kept: a preview knows them by their hash. The compiled loop, when built, does the
        same through the OrderedDict's own methods.
        """
        if _fast is not None:
            done: int | None = _fast.cache_buckets(self._cache, buckets, self._cache_limit,
                                                   self._cache_size)
            if done is not None:
                self._cache_size = done
                return
        cache = self._cache
        limit = self._cache_limit
        size = self._cache_size
        per_entry = _RECORD_SIZE
        for bucket, records in buckets.items():
            cost = 1 + len(records) // per_entry
            old = cache.get(bucket)
            if old is not None:
                size -= 1 + len(old) // per_entry
                if cost > limit or not records:
                    del cache[bucket]
                    continue
            elif cost > limit or not records:
                continue  # too big, or empty (known from its hash)
            cache[bucket] = records  # a replaced bucket keeps its place: it was just read
            size += cost
        while size > limit:
            _, evicted = cache.popitem(last=False)
            size -= 1 + len(evicted) // per_entry
        self._cache_size = size

    def _cache_writes(self, leaf_writes: Mapping[bytes, bytes | None]) -> None:
        """Apply committed ``l/`` writes to the buckets that are cached.

        For deltas this tree did not preview (or not last): slower than swapping in the
        previewed buckets, but right whatever the delta was previewed on.
        """
        cache = self._cache
        cut = len(LEAF_PREFIX)
        by_bucket: dict[int, dict[bytes, bytes | None]] = {}
        for key, vhash in leaf_writes.items():
            if (not key.startswith(LEAF_PREFIX) or len(key) != cut + _HASH_SIZE
                    or (vhash is not None and len(vhash) != _HASH_SIZE)):
                # Not a leaf write as this tree makes them: do not guess, forget everything.
                cache.clear()
                self._cache_size = 0
                return
            khash = key[cut:]
            bucket = khash[0] << 8 | khash[1]
            if bucket in cache:  # else the next read scans the store, which has the write
                by_bucket.setdefault(bucket, {})[khash] = vhash
        self._cache_buckets(
            {bucket: _merge(cache[bucket], changes) for bucket, changes in by_bucket.items()}
        )

    @staticmethod
    def _bucket_entries(reader: LeafReader, bucket: int) -> dict[bytes, bytes]:
        prefix = LEAF_PREFIX + bucket.to_bytes(2, "big")
        cut = len(LEAF_PREFIX)
        return {key[cut:]: vhash for key, vhash in reader.scan(prefix)}

    def prove(self, key: bytes, reader: LeafReader) -> StateProof:
        """Proof for ``key`` against the current root (committed state only).

        Reads ``reader`` directly, not the cache: proofs are rare and served from what the
        store holds.
        """
        bucket = bucket_of(key_hash(key))
        entries = tuple(self._checked_bucket(reader, bucket)[0])
        path = []
        index = bucket
        for level in range(DEPTH):
            path.append(self.node(level, index ^ 1))
            index >>= 1
        return StateProof(bucket, entries, tuple(path))


def verify_state_proof(
    root: bytes, key: bytes, value: bytes | None, proof: StateProof
) -> bool:
    """True when ``key`` has ``value`` (None: is absent) under ``root``."""
    khash = key_hash(key)
    if bucket_of(khash) != proof.bucket or not 0 <= proof.bucket < NUM_BUCKETS:
        return False
    if len(proof.path) != DEPTH:
        return False
    if any(bucket_of(k) != proof.bucket for k, _ in proof.entries):
        return False
    # Every entry exactly a 32-byte key hash and value hash, and every path hash 32 bytes:
    # the bucket hash covers the entries joined, so a forger could fold a key's entry into
    # the previous entry's value and "prove" a present key absent (found by review).
    if any(len(k) != _HASH_SIZE or len(v) != _HASH_SIZE for k, v in proof.entries):
        return False
    if any(len(sibling) != _HASH_SIZE for sibling in proof.path):
        return False
    entries = dict(proof.entries)
    if len(entries) != len(proof.entries):
        return False
    found = entries.get(khash)
    if value is None:
        if found is not None:
            return False
    elif found != value_hash(value):
        return False
    node = bucket_hash(list(entries.items()))
    index = proof.bucket
    for sibling in proof.path:
        node = node_hash(sibling, node) if index & 1 else node_hash(node, sibling)
        index >>= 1
    return node == root
