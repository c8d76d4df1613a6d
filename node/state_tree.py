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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from node.merkle import leaf_hash, node_hash

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


class LeafReader(Protocol):
    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def key_hash(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def value_hash(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def bucket_of(khash: bytes) -> int:
    return int.from_bytes(khash[:2], "big")


def bucket_hash(entries: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Hash of a bucket: leaf hash over its (key hash || value hash) entries in order."""
    return leaf_hash(b"".join(k + v for k, v in sorted(entries)))


@dataclass(frozen=True)
class StateDelta:
    """What committing one block's state writes does to the tree (not yet applied)."""

    root: bytes
    leaf_writes: Mapping[bytes, bytes | None]  # LevelDB ``l/`` keys -> value hash or delete
    nodes: Mapping[tuple[int, int], bytes]  # (level, index) -> new node hash


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


class StateTree:
    """The in-memory upper tree over bucket hashes (``2 * 2**16`` node hashes, ~8 MB)."""

    def __init__(self) -> None:
        # levels[0] are bucket hashes; levels[DEPTH] is [root].
        self.levels: list[list[bytes]] = [
            [EMPTY_AT_LEVEL[level]] * (NUM_BUCKETS >> level) for level in range(DEPTH + 1)
        ]

    @property
    def root(self) -> bytes:
        return self.levels[DEPTH][0]

    @classmethod
    def load(cls, reader: LeafReader) -> StateTree:
        """Rebuild from the ``l/`` index in the store (done once at start-up)."""
        tree = cls()
        buckets: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, vhash in reader.scan(LEAF_PREFIX):
            khash = key[len(LEAF_PREFIX) :]
            buckets.setdefault(bucket_of(khash), []).append((khash, vhash))
        bucket_nodes = {(0, b): bucket_hash(entries) for b, entries in buckets.items()}
        nodes = tree._with_parents(bucket_nodes) if bucket_nodes else {}
        tree.apply(StateDelta(nodes.get((DEPTH, 0), tree.root), {}, nodes))
        return tree

    def _with_parents(self, bucket_nodes: Mapping[tuple[int, int], bytes]) -> dict[
        tuple[int, int], bytes
    ]:
        changed = dict(bucket_nodes)
        dirty = sorted({index for _, index in bucket_nodes})
        for level in range(1, DEPTH + 1):
            parents = sorted({index >> 1 for index in dirty})
            for parent in parents:
                left = changed.get((level - 1, 2 * parent), self.levels[level - 1][2 * parent])
                right = changed.get(
                    (level - 1, 2 * parent + 1), self.levels[level - 1][2 * parent + 1]
                )
                changed[(level, parent)] = node_hash(left, right)
            dirty = parents
        return changed

    def preview(
        self, writes: Mapping[bytes, bytes | None], reader: LeafReader
    ) -> StateDelta:
        """The tree after ``writes`` (full state key -> value or None), without applying.

        ``reader`` gives the committed ``l/`` entries of each touched bucket.
        """
        by_bucket: dict[int, dict[bytes, bytes | None]] = {}
        leaf_writes: dict[bytes, bytes | None] = {}
        for key, value in writes.items():
            khash = key_hash(key)
            vhash = None if value is None else value_hash(value)
            by_bucket.setdefault(bucket_of(khash), {})[khash] = vhash
            leaf_writes[LEAF_PREFIX + khash] = vhash
        bucket_nodes: dict[tuple[int, int], bytes] = {}
        for bucket, changes in by_bucket.items():
            entries = self._bucket_entries(reader, bucket)
            for khash, vhash in changes.items():
                if vhash is None:
                    entries.pop(khash, None)
                else:
                    entries[khash] = vhash
            bucket_nodes[(0, bucket)] = bucket_hash(list(entries.items()))
        nodes = self._with_parents(bucket_nodes) if bucket_nodes else {}
        root = nodes.get((DEPTH, 0), self.root)
        return StateDelta(root, leaf_writes, nodes)

    def apply(self, delta: StateDelta) -> None:
        for (level, index), value in delta.nodes.items():
            self.levels[level][index] = value

    @staticmethod
    def _bucket_entries(reader: LeafReader, bucket: int) -> dict[bytes, bytes]:
        prefix = LEAF_PREFIX + bucket.to_bytes(2, "big")
        return {key[len(LEAF_PREFIX) :]: vhash for key, vhash in reader.scan(prefix)}

    def prove(self, key: bytes, reader: LeafReader) -> StateProof:
        """Proof for ``key`` against the current root (committed state only)."""
        bucket = bucket_of(key_hash(key))
        entries = tuple(sorted(self._bucket_entries(reader, bucket).items()))
        path = []
        index = bucket
        for level in range(DEPTH):
            path.append(self.levels[level][index ^ 1])
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
