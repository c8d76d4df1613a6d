"""The compiled loops over a preview's touched buckets (``merge_buckets``) and over the
committed-bucket cache (``cache_buckets``) do what the Python loops in node/state_tree.py
do, cache order included, or step aside.

Why the order matters: the cache evicts its least recently used buckets first, so two
nodes whose caches differ only in order would still agree on every root, but a node whose
compiled and Python paths kept different orders would read different buckets from LevelDB;
these tests hold the compiled path to the Python one exactly.
"""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import state_tree
from node.state import MemoryKV
from node.state_tree import EMPTY_AT_LEVEL, NUM_BUCKETS, StateTree

fast = state_tree._compiled
EMPTY = EMPTY_AT_LEVEL[0]
ROW = 16  # buckets in the tests' small bucket rows

needs_fast = pytest.mark.skipif(fast is None, reason="compiled tree loops not built here")

hashes = st.binary(min_size=32, max_size=32)
buckets = st.integers(min_value=0, max_value=ROW - 1)


def records_of(entries: dict[bytes, bytes]) -> bytes:
    return b"".join(sorted(k + v for k, v in entries.items()))


def python_merge_known(by_bucket, cache, level):
    """StateTree._merge_known, the Python loop, on a tree holding ``cache``."""
    state_tree.use_compiled_tree(False)
    try:
        tree = StateTree()
        tree._cache = cache
        return tree._merge_known(by_bucket, level)
    finally:
        state_tree.use_compiled_tree(True)


def full_row(first: list[bytes]) -> bytearray:
    """A tree's bucket row (a bytearray of NUM_BUCKETS hashes): ``first``, then empty."""
    return bytearray(b"".join(first) + EMPTY * (NUM_BUCKETS - len(first)))


@st.composite
def preview_inputs(draw):
    cached = draw(st.dictionaries(buckets, st.dictionaries(hashes, hashes, max_size=5),
                                  max_size=ROW))
    order = draw(st.permutations(sorted(cached)))
    cache = OrderedDict((bucket, records_of(cached[bucket])) for bucket in order)
    level = full_row([draw(st.sampled_from([EMPTY, b"\x07" * 32])) for _ in range(ROW)])
    by_bucket = {}
    for bucket in draw(st.lists(buckets, unique=True, max_size=ROW)):
        known = sorted(cached.get(bucket, {}))
        keys = st.sampled_from(known) | hashes if known else hashes
        by_bucket[bucket] = draw(st.dictionaries(keys, st.none() | hashes, min_size=1,
                                                 max_size=5))
    use_level = draw(st.booleans())
    return cache, level if use_level else None, by_bucket


@needs_fast
@settings(max_examples=300, deadline=None)
@given(inputs=preview_inputs())
def test_merge_buckets_matches_the_python_loop(inputs):
    cache, level, by_bucket = inputs
    compiled_cache, python_cache = OrderedDict(cache), OrderedDict(cache)
    got = fast.merge_buckets(by_bucket, compiled_cache, level, EMPTY)
    after, nodes, missing, held = python_merge_known(by_bucket, python_cache, level)
    assert got is not None
    assert got[0] == after and list(got[0]) == list(after)
    assert got[1] == nodes
    assert got[2] == missing  # in bucket order, as the caller reads them
    assert got[3] == held
    assert list(compiled_cache.items()) == list(python_cache.items())  # same recency order


@needs_fast
@pytest.mark.parametrize("by_bucket, cache, level, empty", [
    ({"1": {}}, OrderedDict(), None, EMPTY),                        # a str bucket
    ({1: [(b"k" * 32, b"v" * 32)]}, OrderedDict(), None, EMPTY),    # changes not a dict
    ([(1, {})], OrderedDict(), None, EMPTY),                        # not a dict
    ({-1: {}}, OrderedDict(), None, EMPTY),                         # no such bucket
    ({NUM_BUCKETS: {}}, OrderedDict(), full_row([]), EMPTY),        # past the row
    ({1: {}}, OrderedDict(), full_row([])[:-1], EMPTY),             # a row cut short
    ({1: {}}, OrderedDict(), [EMPTY] * NUM_BUCKETS, EMPTY),         # a row not a bytearray
    ({1: {}}, [], None, EMPTY),                                     # the cache not a dict
    ({1: {}}, OrderedDict(), bytes(full_row([])), EMPTY),           # the row not a bytearray
    ({1: {}}, OrderedDict(), None, EMPTY[:31]),                     # a short empty hash
    ({1: {b"k" * 32: b"v" * 31}}, OrderedDict({1: b""}), None, EMPTY),  # a short value hash
    ({1: {}}, OrderedDict({1: b"x" * 63}), None, EMPTY),            # cached records torn
])
def test_merge_buckets_steps_aside(by_bucket, cache, level, empty):
    assert fast.merge_buckets(by_bucket, cache, level, empty) is None


@st.composite
def cache_inputs(draw):
    sizes = st.integers(min_value=0, max_value=6)
    start = draw(st.dictionaries(buckets, sizes, max_size=ROW))
    order = draw(st.permutations(sorted(start)))
    cache = OrderedDict((bucket, b"r" * 64 * start[bucket]) for bucket in order)
    new = draw(st.dictionaries(buckets, sizes, max_size=ROW))
    limit = draw(st.integers(min_value=0, max_value=40))
    return cache, {bucket: b"n" * 64 * count for bucket, count in new.items()}, limit


def cached_after(cache, new, limit, compiled):
    """A tree's cache after ``_cache_buckets(new)``, its size accounted from scratch."""
    state_tree.use_compiled_tree(compiled)
    try:
        tree = StateTree(limit)
        tree._cache = OrderedDict(cache)
        tree._cache_size = sum(1 + len(records) // 64 for records in cache.values())
        tree._cache_buckets(new)
        return list(tree._cache.items()), tree._cache_size
    finally:
        state_tree.use_compiled_tree(True)


@needs_fast
@settings(max_examples=400, deadline=None)
@given(inputs=cache_inputs())
def test_cache_buckets_matches_the_python_loop(inputs):
    cache, new, limit = inputs
    assert cached_after(cache, new, limit, True) == cached_after(cache, new, limit, False)


@needs_fast
@pytest.mark.parametrize("cache, new, limit, size", [
    ({}, {1: b"r" * 64}, 10, 0),                            # a plain dict: no order to keep
    (OrderedDict(), {1: bytearray(64)}, 10, 0),             # records not bytes
    (OrderedDict(), {"1": b"r" * 64}, 10, 0),               # a str bucket
    (OrderedDict(), {1: b"r" * 64}, 10.0, 0),               # a float bound
    (OrderedDict(), {1: b"r" * 64}, 10, 2 ** 80),           # a size past Py_ssize_t
])
def test_cache_buckets_steps_aside_and_changes_nothing(cache, new, limit, size):
    before = list(cache.items())
    assert fast.cache_buckets(cache, new, limit, size) is None
    assert list(cache.items()) == before


@needs_fast
@pytest.mark.parametrize("cache_entries", [0, 40, 300, 5000])
def test_previews_read_evict_and_apply_alike_with_and_without_the_compiled_loops(
        cache_entries):
    """Whole blocks through trees whose cache bound forces reads and evictions: the same
    roots, node hashes and cached buckets (in the same order) either way."""
    rng = random.Random(cache_entries)
    keys = [rng.randbytes(6) for _ in range(600)]
    blocks = [{rng.choice(keys): None if rng.random() < 0.1 else rng.randbytes(20)
               for _ in range(rng.randrange(1, 200))} for _ in range(15)]
    seen = {}
    for compiled in (False, True):
        state_tree.use_compiled_tree(compiled)
        try:
            tree, reader = StateTree(cache_entries), MemoryKV()
            trail = []
            for writes in blocks:
                delta = tree.preview(writes, reader)
                reader.apply(dict(delta.leaf_writes))
                tree.apply(delta)
                trail.append((delta.root, delta.node_map(), list(tree._cache.items()),
                              tree._cache_size))
            seen[compiled] = trail
        finally:
            state_tree.use_compiled_tree(True)
    assert seen[True] == seen[False]


@needs_fast
def test_only_the_trees_own_ordered_dict_is_taken_as_a_cache():
    """A dict subclass could run Python code from move_to_end or popitem while the C loop
    holds borrowed pointers (review, eighteenth round): anything but an exact OrderedDict
    steps aside, as a plain dict does."""
    class Noisy(OrderedDict):
        def move_to_end(self, key, last=True):
            raise AssertionError("the C loop must not call a subclass")

        def popitem(self, last=True):
            raise AssertionError("the C loop must not call a subclass")

    for cache in (Noisy({1: b""}), {1: b""}):
        assert fast.merge_buckets({1: {b"k" * 32: b"v" * 32}}, cache, None, EMPTY) is None
        assert fast.cache_buckets(cache, {2: b"r" * 64}, 1, 1) is None


@needs_fast
def test_a_none_in_the_cache_is_not_cached_in_either_path():
    """``cache.get(bucket)`` reads a stored None as not cached: the C loop must neither move
    it nor count it (review: it moved it before stepping aside)."""
    changes = {1: {b"k" * 32: b"v" * 32}}
    compiled, python = OrderedDict([(1, None), (2, b"")]), OrderedDict([(1, None), (2, b"")])
    got = fast.merge_buckets(changes, compiled, None, EMPTY)
    expected = python_merge_known(changes, python, None)
    assert got is not None and tuple(got) == tuple(expected)
    assert list(compiled.items()) == list(python.items())


@needs_fast
def test_a_cached_value_that_is_not_bytes_steps_aside_before_any_change():
    """A value with a ``__len__`` (or a finaliser) could run code that empties the
    arguments the C loop reads (review: a crash): such a cache is not the tree's own."""
    class Sized:
        def __len__(self) -> int:
            new.clear()
            return 64

    new = {70000: bytes(64)}
    cache = OrderedDict([(70000, Sized())])
    before = list(cache.items())
    assert fast.cache_buckets(cache, new, 1000, 2) is None
    assert list(cache.items()) == before and new == {70000: bytes(64)}
