"""The state tree's fast path (bucket cache, inlined hashing) changes no byte of its output.

Every delta of a cached tree is compared with an uncached tree's (``cache_entries=0``), with
a tree rebuilt from the store, and (for fixed seeds) with an oracle that rebuilds the whole
tree from the full state using only ``node.merkle``. The cache must only ever hold committed
bucket contents: previews of blocks that are never applied, deltas applied that this tree
did not preview, reader switches and a tight bound must not change that.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.merkle import leaf_hash, node_hash
from node.state import MemoryKV
from node.state_tree import (
    DEPTH,
    LEAF_PREFIX,
    MAX_PENDING_PREVIEWS,
    NUM_BUCKETS,
    LeafIndexError,
    StateDelta,
    StateTree,
    bucket_of,
    key_hash,
    packed_nodes,
    verify_state_proof,
)
from node.store import LedgerStore
from tests.ledger_support import write_state_and_leaves


def _crowded_keys() -> list[bytes]:
    """Keys that share buckets (three or more to a bucket), so buckets hold several entries."""
    by_bucket: dict[int, list[bytes]] = {}
    for i in range(20_000):
        key = f"k{i}".encode()
        by_bucket.setdefault(bucket_of(key_hash(key)), []).append(key)
    crowded = [keys for keys in by_bucket.values() if len(keys) >= 3][:12]
    return [key for keys in crowded for key in keys] + [f"lone{i}".encode() for i in range(12)]


KEYS = _crowded_keys()


def committed_records(reader: MemoryKV, bucket: int) -> bytes:
    """A bucket as the store holds it, in the cache's form: sorted key hash || value hash."""
    prefix = LEAF_PREFIX + bucket.to_bytes(2, "big")
    return b"".join(sorted(key[len(LEAF_PREFIX):] + vhash for key, vhash in reader.scan(prefix)))


def assert_cache_is_committed(tree: StateTree, reader: MemoryKV) -> None:
    """White box: every cached bucket equals the store's, and the bound and count hold."""
    cache = tree._cache
    assert tree._cache_size == sum(1 + len(records) // 64 for records in cache.values())
    assert tree._cache_size <= tree._cache_limit
    for bucket, records in cache.items():
        assert records, "empty buckets are known by their hash, not cached"
        assert records == committed_records(reader, bucket), f"bucket {bucket} is stale"


def assert_same_delta(got: StateDelta, want: StateDelta) -> None:
    assert got.root == want.root
    assert dict(got.leaf_writes) == dict(want.leaf_writes)
    assert list(got.leaf_writes) == list(want.leaf_writes)  # same order as the writes
    assert got.node_map() == want.node_map()


def oracle_delta(state: Mapping[bytes, bytes], writes: Mapping[bytes, bytes | None]) -> StateDelta:
    """The delta ``writes`` make to ``state``, from a full rebuild (no StateTree code)."""
    after = dict(state)
    for key, value in writes.items():
        if value is None:
            after.pop(key, None)
        else:
            after[key] = value
    buckets: dict[int, list[bytes]] = {}
    for key, value in after.items():
        khash = hashlib.sha256(key).digest()
        buckets.setdefault(khash[0] * 256 + khash[1], []).append(
            khash + hashlib.sha256(value).digest())
    empty = leaf_hash(b"")
    level = [leaf_hash(b"".join(sorted(buckets[b]))) if b in buckets else empty
             for b in range(NUM_BUCKETS)]
    levels = [level]
    for _ in range(DEPTH):
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        levels.append(level)
    leaf_writes: dict[bytes, bytes | None] = {}
    nodes: dict[tuple[int, int], bytes] = {}
    for key, value in writes.items():
        khash = hashlib.sha256(key).digest()
        leaf_writes[b"l/" + khash] = None if value is None else hashlib.sha256(value).digest()
        bucket = khash[0] * 256 + khash[1]
        for height in range(DEPTH + 1):
            nodes[(height, bucket >> height)] = levels[height][bucket >> height]
    per_level: list[dict[int, bytes]] = [{} for _ in range(DEPTH + 1)]
    for (height, index), value in nodes.items():
        per_level[height][index] = value
    packed = [packed_nodes(changed) for changed in per_level]
    return StateDelta(levels[DEPTH][0], leaf_writes, packed if nodes else [])


def commit(reader: MemoryKV, state: dict[bytes, bytes], writes: Mapping[bytes, bytes | None],
           delta: StateDelta) -> None:
    """What LedgerStore.commit_block does to the ``l/`` index (and the state it stands for)."""
    reader.apply(dict(delta.leaf_writes))
    for key, value in writes.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value


block_writes = st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(max_size=4)),
                               max_size=25)
# One height: the candidate blocks previewed, and which of them is committed (None: none is).
height = st.tuples(st.lists(block_writes, min_size=1, max_size=3), st.integers(0, 3),
                   st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(height, min_size=1, max_size=8), st.sampled_from([0, 3, 12, 40, 1 << 18]))
def test_cached_tree_matches_uncached_over_random_blocks(heights, limit):
    reader = MemoryKV()
    state: dict[bytes, bytes] = {}
    cached = StateTree(limit)
    plain = StateTree(0)
    for candidates, chosen, reload in heights:
        deltas = [cached.preview(writes, reader) for writes in candidates]
        for writes, delta in zip(candidates, deltas, strict=True):
            assert_same_delta(delta, plain.preview(writes, reader))
        assert_cache_is_committed(cached, reader)  # previews left the committed view alone
        if chosen < len(candidates):
            writes, delta = candidates[chosen], deltas[chosen]
            commit(reader, state, writes, delta)
            cached.apply(delta)
            plain.apply(delta)
            assert_cache_is_committed(cached, reader)
        if reload:
            cached = StateTree.load(reader, limit)
            assert_cache_is_committed(cached, reader)
        assert cached.root == plain.root == StateTree.load(reader, 0).root
    for key, value in state.items():
        assert verify_state_proof(cached.root, key, value, cached.prove(key, reader))
    assert verify_state_proof(cached.root, b"absent", None, cached.prove(b"absent", reader))


def test_deltas_match_a_full_rebuild_byte_for_byte():
    rng = random.Random(7)
    reader = MemoryKV()
    state: dict[bytes, bytes] = {}
    tree = StateTree(64)  # small: eviction and re-reads happen all the time
    universe = KEYS + [f"x{i}".encode() for i in range(300)]
    for _ in range(6):
        writes: dict[bytes, bytes | None] = {}
        for key in rng.sample(universe, 120):
            writes[key] = None if rng.random() < 0.25 else rng.randbytes(rng.randrange(0, 9))
        tree.preview({k: b"never" for k in rng.sample(universe, 30)}, reader)  # a losing block
        delta = tree.preview(writes, reader)
        assert_same_delta(delta, oracle_delta(state, writes))
        commit(reader, state, writes, delta)
        tree.apply(delta)
        assert_cache_is_committed(tree, reader)
    for key in rng.sample(universe, 40):
        proof = tree.prove(key, reader)
        assert verify_state_proof(tree.root, key, state.get(key), proof)


def test_empty_writes_and_bucket_emptied():
    reader = MemoryKV()
    tree = StateTree()
    empty = tree.preview({}, reader)
    assert empty.root == tree.root and not empty.leaf_writes and not empty.nodes
    delta = tree.preview({b"a": b"1"}, reader)
    reader.apply(dict(delta.leaf_writes))
    tree.apply(delta)
    delta = tree.preview({b"a": None}, reader)
    assert_same_delta(delta, oracle_delta({b"a": b"1"}, {b"a": None}))
    reader.apply(dict(delta.leaf_writes))
    tree.apply(delta)
    assert tree.root == StateTree().root
    assert_cache_is_committed(tree, reader)


def test_delta_this_tree_did_not_preview_keeps_the_cache_right():
    """E.g. a delta previewed before an earlier apply, or by another tree: applied by writes."""
    reader = MemoryKV()
    state: dict[bytes, bytes] = {}
    mine, other = StateTree(), StateTree()
    first = {key: b"1" for key in KEYS[:20]}
    delta = mine.preview(first, reader)
    assert_same_delta(other.preview(first, reader), delta)
    commit(reader, state, first, delta)
    mine.apply(delta)
    other.apply(delta)
    second = {key: None if i % 3 == 0 else b"2" for i, key in enumerate(KEYS[:36])}
    mine.preview(second, reader)  # previewed, but the other tree's delta is the one applied
    delta = other.preview(second, reader)
    commit(reader, state, second, delta)
    mine.apply(delta)
    other.apply(delta)
    assert_cache_is_committed(mine, reader)
    third = {key: b"3" for key in KEYS[10:40]}
    assert_same_delta(mine.preview(third, reader), oracle_delta(state, third))


def test_another_reader_drops_the_cache():
    one = MemoryKV()
    tree = StateTree()
    writes = {key: b"v" for key in KEYS[:15]}
    delta = tree.preview(writes, one)
    one.apply(dict(delta.leaf_writes))
    tree.apply(delta)
    assert tree._cache and tree._cache_reader is one
    two = MemoryKV(one.data)  # the same committed state, in another object
    more = {key: b"w" for key in KEYS[5:25]}
    assert_same_delta(tree.preview(more, two), StateTree.load(one, 0).preview(more, one))
    assert tree._cache_reader is two
    assert_cache_is_committed(tree, two)


def test_cache_bound_holds_and_evicts_whole_buckets():
    reader = MemoryKV()
    state: dict[bytes, bytes] = {}
    tree = StateTree(50)
    rng = random.Random(3)
    for block in range(10):
        writes = {f"b{block}-{i}".encode(): b"v" for i in range(40)}
        writes.update({key: rng.randbytes(3) for key in rng.sample(KEYS, 10)})
        delta = tree.preview(writes, reader)
        commit(reader, state, writes, delta)
        tree.apply(delta)
        assert tree._cache_size <= 50
        assert_cache_is_committed(tree, reader)
    warm = StateTree.load(reader, 50)
    assert warm.root == tree.root
    assert 0 < warm._cache_size <= 50
    assert_cache_is_committed(warm, reader)
    off = StateTree.load(reader, 0)
    assert off.root == tree.root and not off._cache


def test_load_warms_the_cache_and_empty_buckets_need_no_read():
    reader = MemoryKV()
    tree = StateTree()
    writes = {key: b"v" for key in KEYS}
    delta = tree.preview(writes, reader)
    reader.apply(dict(delta.leaf_writes))
    tree.apply(delta)
    loaded = StateTree.load(reader)
    assert len(loaded._cache) == len({bucket_of(key_hash(key)) for key in KEYS})
    assert loaded.root == tree.root

    # Non-empty buckets are cached and empty ones known by their hash: no reads at all.
    loaded._cache_reader = no_scans = NoScans()
    more = {key: b"w" for key in KEYS[:30]} | {b"new": b"1"}
    uncached = StateTree.load(reader, 0)
    assert_same_delta(loaded.preview(more, no_scans), uncached.preview(more, reader))


class NoScans:
    """A reader that must not be read."""

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        raise AssertionError(f"scanned {prefix!r}")


def test_fresh_tree_reads_no_empty_bucket():
    """A new chain's tree (as ``LedgerStore.initialise`` makes it) knows all buckets empty."""
    writes = {key: b"v" for key in KEYS} | {b"gone": None}
    expected = StateTree(0).preview(writes, MemoryKV())
    assert_same_delta(StateTree().preview(writes, NoScans()), expected)


def test_damaged_bucket_is_never_cached_and_refused_where_read():
    """Entries that are not 32-byte hashes (only a damaged store has them): a tree loaded
    from such an index hashes them as stored and never caches them; a preview that must
    read that bucket raises LeafIndexError (they were once merged "the plain way": a
    malformed entry can join to the committed bytes and hide a key), and one that does
    not gives the same delta as an uncached tree."""
    reader = MemoryKV()
    delta = StateTree().preview({key: b"v" for key in KEYS[:9]}, reader)
    reader.apply(dict(delta.leaf_writes))
    odd = LEAF_PREFIX + key_hash(KEYS[0])
    reader.data[odd] = b"short"
    reader.data[odd[:-1]] = b"x" * 32
    damaged = bucket_of(key_hash(KEYS[0]))
    elsewhere = {key: b"w" for key in KEYS[1:6] if bucket_of(key_hash(key)) != damaged}
    for limit in (1 << 18, 10):
        tree = StateTree.load(reader, limit)
        assert tree.root == StateTree.load(reader, 0).root
        assert damaged not in tree._cache
        with pytest.raises(LeafIndexError, match=f"bucket {damaged} holds a malformed"):
            tree.preview({KEYS[0]: b"w"}, reader)
        expected = StateTree.load(reader, 0).preview(elsewhere, reader)
        assert_same_delta(tree.preview(elsewhere, reader), expected)
        assert damaged not in tree._cache


def test_over_a_leveldb_store(tmp_path: Path):
    """As the engine runs it: previews over ``store.leaves``, the batch, then ``apply``."""
    store = LedgerStore.open(str(tmp_path / "db"), chain_id="t", genesis_hash=b"g" * 32)
    try:
        rng = random.Random(11)
        genesis = {f"s/{i}".encode(): rng.randbytes(8) for i in range(3000)}
        tree = store.initialise(chain_id="t", genesis_hash=b"g" * 32, state=genesis)
        state = dict(genesis)
        keys = list(genesis)
        assert tree.root == StateTree.load(store.leaves, 0).root
        for block in range(8):
            writes: dict[bytes, bytes | None] = {}
            for _ in range(400):
                roll = rng.random()
                if roll < 0.5:
                    writes[rng.choice(keys)] = rng.randbytes(8)
                elif roll < 0.8:
                    key = f"n/{block}/{rng.random()}".encode()
                    keys.append(key)
                    writes[key] = rng.randbytes(8)
                else:
                    writes[rng.choice(keys)] = None
            tree.preview({rng.choice(keys): b"lost" for _ in range(50)}, store.leaves)
            delta = tree.preview(writes, store.leaves)
            assert_same_delta(delta, StateTree.load(store.leaves, 0).preview(writes, store.leaves))
            write_state_and_leaves(store, writes, delta)  # as a commit writes them
            tree.apply(delta)
            for key, value in writes.items():
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
            if block == 4:
                tree = store.load_state_tree()  # a restart
            assert tree.root == StateTree.load(store.leaves, 0).root
        for key in rng.sample(keys, 50):
            assert verify_state_proof(tree.root, key, state.get(key),
                                      tree.prove(key, store.leaves))
    finally:
        store.close()


def test_bucket_outgrowing_the_bound_leaves_the_cache():
    reader = MemoryKV()
    same_bucket = [k for k in KEYS if bucket_of(key_hash(k)) == bucket_of(key_hash(KEYS[0]))]
    tree = StateTree(3)  # room for one bucket of two entries
    for count in (2, 3):
        writes = {key: b"v" for key in same_bucket[:count]}
        delta = tree.preview(writes, reader)
        reader.apply(dict(delta.leaf_writes))
        tree.apply(delta)
        assert_cache_is_committed(tree, reader)
    assert not tree._cache


def test_unapplied_previews_are_bounded_and_dropped_on_apply():
    reader = MemoryKV()
    tree = StateTree()
    deltas = [tree.preview({key: bytes([i])}, reader) for i, key in enumerate(KEYS[:10])]
    assert len(tree._previews) <= MAX_PENDING_PREVIEWS
    reader.apply(dict(deltas[-1].leaf_writes))
    tree.apply(deltas[-1])
    assert not tree._previews
    assert_cache_is_committed(tree, reader)
