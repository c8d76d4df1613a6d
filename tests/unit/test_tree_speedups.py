"""The compiled state-tree loops give exactly the Python loops' hashes, or step aside.

``node/_tree_speedups.c`` must never decide anything: for every input it either returns
what the Python code in node/state_tree.py computes or ``None`` (and the Python code then
runs, raising or handling the odd input as it always did). The whole-tree tests in
test_state_tree_speed.py and test_merkle_and_state_tree.py run on the compiled loops by
default and compare them with a tree rebuilt from ``node.merkle`` alone.
"""

from __future__ import annotations

import gc
import hashlib
import os
import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import state_tree
from node.state import MemoryKV
from node.state_tree import (
    DEPTH,
    LEAF_PREFIX,
    NUM_BUCKETS,
    StateTree,
    _hash_writes,
    _merge,
    unpacked_nodes,
)

fast = state_tree._compiled

needs_fast = pytest.mark.skipif(
    fast is None and not os.environ.get("CI"),
    reason="compiled tree loops not built here (no C compiler or OpenSSL headers); CI "
           "requires them",
)

hashes = st.binary(min_size=32, max_size=32)


@pytest.fixture
def pure_tree() -> Iterator[None]:
    """Run the Python loops only, whatever was built."""
    state_tree.use_compiled_tree(False)
    try:
        yield
    finally:
        state_tree.use_compiled_tree(True)


def pure_parents(tree: StateTree, bucket_nodes: dict[int, bytes]) -> list[bytes]:
    state_tree.use_compiled_tree(False)
    try:
        return tree._with_parents(bucket_nodes)
    finally:
        state_tree.use_compiled_tree(True)


def grown_tree(seed: int, keys: int) -> StateTree:
    rng = random.Random(seed)
    tree, reader = StateTree(), MemoryKV()
    writes = {rng.randbytes(8): rng.randbytes(20) for _ in range(keys)}
    delta = tree.preview(writes, reader)
    reader.apply(dict(delta.leaf_writes))
    tree.apply(delta)
    return tree


@needs_fast
def test_built_under_ci():
    assert fast is not None, "node/_tree_speedups.c did not build (C compiler, OpenSSL headers?)"


@needs_fast
@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), buckets=st.dictionaries(
    st.integers(0, NUM_BUCKETS - 1), hashes, min_size=1, max_size=300))
def test_with_parents_matches_python(seed, buckets):
    tree = grown_tree(seed, 200)
    # Sorted (as preview passes them) and in arbitrary order: the same maps either way.
    for order in (sorted(buckets.items()), list(buckets.items())):
        given_nodes = dict(order)
        got = fast.with_parents(tree.levels, given_nodes)
        assert got is not None
        assert unpacked_nodes(got[0]) == dict(sorted(given_nodes.items()))
        assert got == pure_parents(tree, given_nodes)
        assert len(got) == DEPTH + 1 and len(got[DEPTH]) == 4 + 32


@needs_fast
def test_with_parents_neighbours_and_edges():
    tree = grown_tree(7, 50)
    for buckets in ({0: b"\x01" * 32}, {NUM_BUCKETS - 1: b"\x02" * 32},
                    {4: b"a" * 32, 5: b"b" * 32, 7: b"c" * 32},
                    {i: bytes([i % 256]) * 32 for i in range(0, 2048, 3)}):
        assert fast.with_parents(tree.levels, buckets) == pure_parents(tree, buckets)


@needs_fast
@pytest.mark.parametrize("buckets", [
    {},                                  # nothing to do: Python's answer
    {-1: b"x" * 32},                     # Python would wrap a negative index
    {NUM_BUCKETS: b"x" * 32},            # out of range
    {True: b"x" * 32},                   # a bool is not the tree's own key type
    {3: b"x" * 31},                      # not a 32-byte hash
    {3: bytearray(32)},                  # not bytes
    {2**70: b"x" * 32},                  # does not fit a C index
])
def test_with_parents_steps_aside(buckets):
    tree = grown_tree(1, 10)
    assert fast.with_parents(tree.levels, buckets) is None


@needs_fast
def test_with_parents_steps_aside_on_rows_not_the_trees():
    tree = grown_tree(2, 10)
    assert fast.with_parents(tree.levels, {12: b"x" * 32}) is not None
    assert fast.with_parents(tuple(tree.levels), {12: b"x" * 32}) is None
    row = tree.levels[3]
    for spoiled in (row[:-1], row + b"x", bytes(row), list(row)):
        levels = list(tree.levels)
        levels[3] = spoiled
        assert fast.with_parents(levels, {12: b"x" * 32}) is None
        assert fast.set_nodes(levels, pure_parents(tree, {12: b"x" * 32})) is None


GOOD = b"\x00\x00\x00\x02" + b"y" * 32  # node 2 of its level: in range everywhere


@needs_fast
@pytest.mark.parametrize("nodes", [
    [b"\x00\x01\x00\x00" + b"x" * 32],            # bucket 65,536: out of range
    [GOOD, b"\x00\x00\x80\x00" + b"x" * 32],      # level 1 has 32,768 nodes
    [GOOD, b"\x00\x00\x00\x01" + b"x" * 31],      # not whole entries
    [GOOD, bytearray(GOOD)],                        # not bytes
    [GOOD] * (DEPTH + 2),                           # more levels than the tree
    (GOOD,),                                        # not a list
])
def test_set_nodes_steps_aside_and_writes_nothing(nodes):
    """Every level is checked before any is written: the good first level stays unwritten."""
    tree = grown_tree(5, 10)
    before = [bytes(row) for row in tree.levels]
    assert fast.set_nodes(tree.levels, nodes) is None
    assert [bytes(row) for row in tree.levels] == before


@needs_fast
def test_set_nodes_matches_python():
    tree = grown_tree(6, 300)
    nodes = pure_parents(tree, {i: bytes([i % 256]) * 32 for i in range(0, 9000, 7)})
    twin = StateTree()
    twin.levels = [bytearray(row) for row in tree.levels]
    assert fast.set_nodes(tree.levels, nodes) is True
    state_tree.use_compiled_tree(False)
    try:
        twin.apply(state_tree.StateDelta(nodes[DEPTH][4:], {}, nodes))
    finally:
        state_tree.use_compiled_tree(True)
    assert twin.levels == tree.levels and tree.root == nodes[DEPTH][4:]


def records_of(entries: dict[bytes, bytes]) -> bytes:
    return b"".join(sorted(k + v for k, v in entries.items()))


@needs_fast
@settings(max_examples=300, deadline=None)
@given(old=st.dictionaries(hashes, hashes, max_size=12), data=st.data())
def test_merge_bucket_matches_python(old, data):
    records = records_of(old)
    keys = st.sampled_from(sorted(old)) | hashes if old else hashes
    changes = data.draw(st.dictionaries(keys, st.none() | hashes, max_size=12))
    merged, digest = fast.merge_bucket(records, changes)
    assert merged == _merge(records, changes)
    assert digest == hashlib.sha256(b"\x00" + merged).digest()


@needs_fast
@pytest.mark.parametrize("records, changes", [
    (b"x" * 63, {}),                                     # not whole records
    (b"\x02" * 64 + b"\x01" * 64, {}),                   # not sorted
    (b"\x01" * 128, {}),                                 # a key twice
    (bytearray(64), {}),                                 # not bytes
    (b"", {b"k" * 31: b"v" * 32}),                       # short key hash
    (b"", {b"k" * 32: b"v" * 33}),                       # long value hash
    (b"", {b"k" * 32: 5}),                               # neither bytes nor None
    (b"", [(b"k" * 32, b"v" * 32)]),                     # not a dict
])
def test_merge_bucket_steps_aside(records, changes):
    assert fast.merge_bucket(records, changes) is None


@needs_fast
@settings(max_examples=200, deadline=None)
@given(writes=st.dictionaries(st.binary(max_size=40), st.none() | st.binary(max_size=300),
                              max_size=60))
def test_hash_writes_matches_python(writes):
    leaf_writes, by_bucket = fast.hash_writes(writes, LEAF_PREFIX)
    expected_leaves, expected_buckets = _hash_writes(writes)
    assert leaf_writes == expected_leaves
    assert list(leaf_writes) == list(expected_leaves)  # same order: the batch writes follow it
    assert by_bucket == expected_buckets


@needs_fast
@pytest.mark.parametrize("writes, prefix", [
    ({"k": b"v"}, LEAF_PREFIX),                    # a str key
    ({b"k": bytearray(b"v")}, LEAF_PREFIX),        # a value that is not bytes
    ({b"k": 1}, LEAF_PREFIX),
    ([(b"k", b"v")], LEAF_PREFIX),                 # not a dict
    ({b"k": b"v"}, "l/"),                          # a str prefix
    ({b"k": b"v"}, b"p" * 65),                     # a prefix longer than the C buffer
])
def test_hash_writes_steps_aside(writes, prefix):
    assert fast.hash_writes(writes, prefix) is None


@needs_fast
def test_whole_tree_same_with_and_without_compiled_loops(pure_tree):
    rng = random.Random(11)
    blocks = [{rng.randbytes(rng.choice([4, 40])): (None if rng.random() < 0.1 else
                                                    rng.randbytes(30))
               for _ in range(rng.randrange(1, 900))} for _ in range(12)]
    roots = {}
    for compiled in (False, True):
        state_tree.use_compiled_tree(compiled)
        tree, reader = StateTree(), MemoryKV()
        seen = []
        for writes in blocks:
            delta = tree.preview(writes, reader)
            reader.apply(dict(delta.leaf_writes))
            tree.apply(delta)
            seen.append((delta.root, delta.node_map()))
        roots[compiled] = seen
    assert roots[True] == roots[False]


@needs_fast
def test_compiled_depth_is_the_trees():
    assert fast.DEPTH == DEPTH
    tree = grown_tree(3, 10)
    assert fast.with_parents(tree.levels[:3], {1: b"x" * 32}) is None  # Python: IndexError
    assert fast.set_nodes(tree.levels[:3], []) is None


class Finaliser:
    """An object in a reference cycle whose finaliser runs ``action`` when the cyclic
    collector frees it: a collection started by an allocation inside the compiled code
    must not change its arguments under it (found by review: it read freed or re-typed
    objects as bytes)."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.cycle = self

    def __del__(self) -> None:
        self.action()


@needs_fast
def test_a_collection_during_the_call_cannot_change_its_arguments():
    writes = {bytes([i]) * 4: b"v" * 10 for i in range(200)}
    expected = _hash_writes(dict(writes))
    tree = grown_tree(4, 10)
    levels = [bytearray(row) for row in tree.levels]
    buckets = {0: b"a" * 32, 5: b"b" * 32}
    expected_parents = pure_parents(tree, buckets)

    def spoil() -> None:
        for key in list(writes):
            writes[key] = "not bytes"  # type: ignore[assignment]
        levels.clear()

    Finaliser(spoil)
    threshold = gc.get_threshold()
    gc.set_threshold(1)  # collect at every container allocation
    try:
        got = fast.hash_writes(writes, LEAF_PREFIX)
        got_parents = fast.with_parents(levels, buckets)
    finally:
        gc.set_threshold(*threshold)
    assert got == expected  # computed on the arguments as they were at the call
    assert got_parents is None or got_parents == expected_parents
    gc.collect()
    assert not levels and set(writes.values()) == {"not bytes"}  # it did run, afterwards


def test_pure_tree_switch_turns_the_compiled_loops_off(monkeypatch):
    from node.app import choose_tree_loops

    built = state_tree._compiled is not None
    try:
        monkeypatch.setenv("JANGBU_PURE_TREE", "1")
        assert choose_tree_loops() is False
        assert state_tree._fast is None
        monkeypatch.setenv("JANGBU_PURE_TREE", "0")
        assert choose_tree_loops() is built
        monkeypatch.delenv("JANGBU_PURE_TREE")
        assert choose_tree_loops() is built
    finally:
        state_tree.use_compiled_tree(True)


@needs_fast
@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.binary(max_size=80), max_size=70))
def test_compiled_merkle_root_is_rfc6962s(items) -> None:
    from node import merkle

    assert fast.merkle_root(items) == merkle.merkle_root_pure(items)


@needs_fast
def test_compiled_merkle_root_for_every_size_up_to_300() -> None:
    from node import merkle

    leaves = [hashlib.sha256(b"%d" % i).digest() for i in range(300)]
    for n in range(301):
        assert fast.merkle_root(leaves[:n]) == merkle.merkle_root_pure(leaves[:n]), n


@needs_fast
def test_compiled_merkle_root_steps_aside_for_odd_input() -> None:
    from node import merkle

    for odd in ((b"a", b"b"), [b"a", "b"], [b"a", bytearray(b"b")], [None], "ab", None):
        assert fast.merkle_root(odd) is None
    # The module-level function still answers (Python) for any sequence of bytes.
    assert merkle.merkle_root((b"a", b"b")) == merkle.merkle_root_pure([b"a", b"b"])


def test_the_tree_switch_also_switches_the_block_roots() -> None:
    from node import merkle

    try:
        state_tree.use_compiled_tree(False)
        assert merkle._fast_root is None
        assert state_tree.use_compiled_tree(True) == (merkle._fast_root is not None)
    finally:
        state_tree.use_compiled_tree(True)


# --- start-up: the leaf index and the state read whole ------------------------------------

def leaf_entries(records: list[tuple[bytes, bytes]], prefix: bytes = LEAF_PREFIX
                 ) -> list[tuple[bytes, bytes]]:
    return [(prefix + khash, vhash) for khash, vhash in sorted(records)]


def python_buckets(records: list[tuple[bytes, bytes]]) -> tuple[dict[int, bytes],
                                                                 dict[int, bytes]]:
    by_bucket: dict[int, list[bytes]] = {}
    for khash, vhash in sorted(records):
        by_bucket.setdefault(state_tree.bucket_of(khash), []).append(khash + vhash)
    joined = {bucket: b"".join(parts) for bucket, parts in by_bucket.items()}
    return joined, {bucket: hashlib.sha256(b"\x00" + data).digest()
                    for bucket, data in joined.items()}


# Few distinct leading bytes, so that buckets hold several records.
key_hashes = st.builds(lambda head, tail: head + tail, st.sampled_from([b"\x00\x01", b"\x00\x02",
                                                                         b"\xff\xff", b"\x12\x34"]),
                       st.binary(min_size=30, max_size=30))


@needs_fast
@settings(max_examples=200, deadline=None)
@given(records=st.dictionaries(key_hashes | hashes, hashes, max_size=80),
       prefix=st.sampled_from([b"", LEAF_PREFIX, b"xyz/l/"]))
def test_leaf_buckets_matches_python(records, prefix):
    items = list(records.items())
    found = fast.leaf_buckets(iter(leaf_entries(items, prefix)), len(prefix))
    assert found == python_buckets(items)


@needs_fast
@pytest.mark.parametrize("entries", [
    [(b"l/" + b"\x01" * 32, b"v" * 31)],                                 # short value hash
    [(b"l/" + b"\x01" * 31, b"v" * 32)],                                 # short key hash
    [(b"l/" + b"\x02" * 32, b"v" * 32), (b"l/" + b"\x01" * 32, b"v" * 32)],  # out of order
    [(b"l/" + b"\x01" * 32, b"v" * 32), (b"l/" + b"\x01" * 32, b"w" * 32)],  # a repeat
    [[b"l/" + b"\x01" * 32, b"v" * 32]],                                 # not a tuple
    [(b"l/" + b"\x01" * 32, bytearray(b"v" * 32))],                      # not bytes
    [(b"l/" + b"\x01" * 32,)],                                           # not a pair
])
def test_leaf_buckets_steps_aside(entries):
    assert fast.leaf_buckets(iter(entries), len(LEAF_PREFIX)) is None


@needs_fast
@pytest.mark.parametrize("function", ["leaf_buckets", "state_buckets"])
@pytest.mark.parametrize("skip, error", [("2", TypeError), (2.0, TypeError), (None, TypeError),
                                         (True, TypeError), (-1, ValueError),
                                         (1025, ValueError), (2**63, OverflowError)])
def test_a_skip_that_is_not_a_small_int_is_the_callers_bug(function, skip, error):
    with pytest.raises(error):
        getattr(fast, function)(iter([]), skip)


@needs_fast
def test_an_error_while_reading_is_raised_not_hidden():
    def failing() -> Iterator[tuple[bytes, bytes]]:
        yield (LEAF_PREFIX + b"\x01" * 32, b"v" * 32)
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        fast.leaf_buckets(failing(), len(LEAF_PREFIX))
    with pytest.raises(OSError, match="disk"):
        fast.state_buckets(failing(), 0)
    assert gc.isenabled()
    assert fast.leaf_buckets(iter([]), 2) == ({}, {})
    assert fast.state_buckets(iter([]), 2) == ({}, {})


def python_state_buckets(state: dict[bytes, bytes]) -> tuple[dict[int, bytes],
                                                             dict[int, bytes]]:
    records = sorted(state_tree.key_hash(key) + state_tree.value_hash(value)
                     for key, value in state.items())
    grouped: dict[int, list[bytes]] = {}
    for record in records:
        grouped.setdefault(state_tree.bucket_of(record), []).append(record)
    joined = {bucket: b"".join(parts) for bucket, parts in grouped.items()}
    return joined, {bucket: hashlib.sha256(b"\x00" + records).digest()
                    for bucket, records in joined.items()}


@needs_fast
@settings(max_examples=200, deadline=None)
@given(state=st.dictionaries(st.binary(max_size=40), st.binary(max_size=600), max_size=80),
       prefix=st.sampled_from([b"", b"s/"]))
def test_state_buckets_matches_python(state, prefix):
    entries = [(prefix + key, value) for key, value in sorted(state.items())]
    assert fast.state_buckets(iter(entries), len(prefix)) == python_state_buckets(state)
    state_tree.use_compiled_tree(False)
    try:
        assert state_tree.state_buckets(MemoryKV(state)) == python_state_buckets(state)
    finally:
        state_tree.use_compiled_tree(True)


@needs_fast
def test_state_buckets_of_one_bucket_and_of_many():
    # keys chosen so that several records share a bucket
    state = {str(i).encode(): b"v" * i for i in range(3000)}
    assert fast.state_buckets(iter(sorted(state.items())), 0) == python_state_buckets(state)


@needs_fast
@pytest.mark.parametrize("entries, skip", [
    ([(b"s", b"v")], 2),                   # a key shorter than its prefix
    ([(b"s/k", "v")], 2),                  # a str value
    ([(b"s/k", b"v", b"x")], 2),           # not a pair
])
def test_state_buckets_steps_aside(entries, skip):
    assert fast.state_buckets(iter(entries), skip) is None


class RawReader(MemoryKV):
    """A MemoryKV offering the store's ``raw_scan`` (keys keep a prefix of its own)."""

    def __init__(self, data: dict[bytes, bytes], own_prefix: bytes) -> None:
        super().__init__(data)
        self.own_prefix = own_prefix

    def raw_scan(self, prefix: bytes) -> tuple[Iterator[tuple[bytes, bytes]], int]:
        return ((self.own_prefix + k, v) for k, v in self.scan(prefix)), len(self.own_prefix)


@needs_fast
@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("cache_entries", [0, 1, 100, state_tree.DEFAULT_CACHE_ENTRIES])
def test_a_tree_loads_the_same_with_and_without_compiled_loops(raw, cache_entries):
    rng = random.Random(5)
    tree, reader = StateTree(), MemoryKV()
    for _ in range(4):
        writes = {rng.randbytes(rng.choice([4, 40])): rng.randbytes(30) for _ in range(700)}
        delta = tree.preview(writes, reader)
        reader.apply(dict(delta.leaf_writes))
        tree.apply(delta)
    source = RawReader(reader.data, b"x/") if raw else reader
    loaded = {}
    for compiled in (False, True):
        state_tree.use_compiled_tree(compiled)
        try:
            loaded[compiled] = StateTree.load(source, cache_entries)
        finally:
            state_tree.use_compiled_tree(True)
    assert loaded[True].levels == loaded[False].levels == tree.levels
    assert list(loaded[True]._cache.items()) == list(loaded[False]._cache.items())
    assert loaded[True]._cache_size == loaded[False]._cache_size


@needs_fast
def test_the_compiled_load_takes_the_c_path(monkeypatch):
    """Not the Python loop after the C code stepped aside: that would pass every test above."""
    tree, reader = StateTree(), MemoryKV()
    delta = tree.preview({b"a": b"1", b"b": b"2"}, reader)
    reader.apply(dict(delta.leaf_writes))
    tree.apply(delta)
    monkeypatch.setattr(state_tree, "bucket_of", None)  # the Python loop would call it
    assert StateTree.load(RawReader(reader.data, b"")).levels == tree.levels


# --- a synced block's transactions cut and hashed in one pass -----------------------------

def python_parts(raw: object, prefix: bytes) -> tuple[bytes, bytes, bytes, bytes] | None:
    """What node/tx.py computes for one transaction of a synced block (decode_certified)."""
    from node.tx import body_from_encoded

    if type(raw) is not bytes:
        return None
    body = body_from_encoded(raw)
    if body is None:
        return None
    signed = prefix + body
    return hashlib.sha256(signed).digest(), raw[-105:-41], raw[-32:], signed


def a_transaction(nonce: int, args: dict[str, object]) -> bytes:
    from nacl.signing import SigningKey

    from node.tx import Transaction

    key = SigningKey(bytes([nonce % 251 + 1]) * 32)
    return Transaction.create(key, "chain-x", "clearance", "create_order", args, nonce).encoded


json_args = st.dictionaries(st.text(max_size=8), st.integers(-2**63, 2**63 - 1)
                            | st.text(max_size=30) | st.binary(max_size=40), max_size=4)


@needs_fast
@settings(max_examples=150, deadline=None)
@given(txs=st.lists(st.tuples(st.integers(0, 2**40), json_args), max_size=8),
       noise=st.lists(st.binary(max_size=200), max_size=4), data=st.data())
def test_certified_tx_parts_match_python(txs, noise, data) -> None:
    from consensus import canonical
    from node.tx import TAG_TX

    raws: list[object] = [a_transaction(nonce, args) for nonce, args in txs]
    for raw in list(raws):  # a byte flipped anywhere, a cut, and other bytes altogether
        assert isinstance(raw, bytes)
        at = data.draw(st.integers(0, len(raw) - 1))
        raws.append(raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:])
        raws.append(raw[:at])
    raws += [*noise, "not bytes", None, bytearray(b"\x87")]
    prefix = canonical.sign_bytes_raw(TAG_TX, data.draw(st.text(max_size=12)), b"")
    assert fast.certified_tx_parts(raws, prefix) == [python_parts(raw, prefix) for raw in raws]


@needs_fast
def test_certified_tx_parts_step_aside_for_odd_arguments() -> None:
    raw = a_transaction(1, {"a": 1})
    for raws, prefix in (((raw,), b"p"), ([raw], "p"), ([raw], bytearray(b"p")),
                         ([raw], b"p" * 1025)):
        assert fast.certified_tx_parts(raws, prefix) is None
    with pytest.raises(TypeError):
        fast.certified_tx_parts([raw])


def test_a_synced_block_decodes_to_the_same_transactions_either_way() -> None:
    from consensus import canonical
    from node.block import Block
    from node.tx import CertifiedTransaction, Transaction

    raws = [a_transaction(i, {"order_id": f"O-{i}", "n": i}) for i in range(20)]
    raws.insert(5, canonical.encode({"not": "laid out as a transaction"}))  # decoded fully
    header = {"chain_id": "chain-x", "height": 3, "time_ms": 5, "prev_hash": b"\x01" * 32,
              "proposer": b"\x02" * 32, "txs_root": b"\x03" * 32, "state_root": b"\x04" * 32,
              "results_root": b"\x05" * 32, "last_commit_hash": b"\x06" * 32,
              "validators_hash": b"\x07" * 32}
    good = canonical.encode({"header": header, "txs": raws[:5] + raws[6:],
                             "last_commit": None})
    blocks = {}
    for compiled in (False, True):
        state_tree.use_compiled_tree(compiled)
        try:
            blocks[compiled] = Block.decode(good, synced=True)
            # The compiled pass sets each hash at once; the Python one on first read.
            assert all(("hash" in tx.__dict__) is (compiled and fast is not None)
                       for tx in blocks[compiled].txs if type(tx) is CertifiedTransaction)
            with pytest.raises(Exception, match="bad transaction"):
                Block.decode(canonical.encode({"header": header, "txs": raws,
                                               "last_commit": None}), synced=True)
        finally:
            state_tree.use_compiled_tree(True)
    pure, compiled_block = blocks[False], blocks[True]
    assert pure.txs == compiled_block.txs
    for a, b in zip(pure.txs, compiled_block.txs, strict=True):
        assert type(a) is type(b) is CertifiedTransaction
        assert a.hash == b.hash and a.sig == b.sig and a.signer == b.signer
        assert a.__dict__ == b.__dict__  # the pure path's hash is set once read above
        assert b == Transaction.decode(b.encoded) and b.hash == Transaction.decode(b.encoded).hash


def _python_writes(pairs: object) -> dict[object, object] | None:
    """What diff_from_wire's Python loop accepts, and what the compiled one must give."""
    if type(pairs) is not list:
        return None
    writes: dict[object, object] = {}
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2:
            return None
        key, value = pair
        if type(key) is not bytes or key in writes:
            return None
        if value is not None and type(value) is not bytes:
            return None
        writes[key] = value
    return writes


pair_items = st.one_of(
    st.lists(st.binary(max_size=3) | st.none() | st.integers(0, 3) | st.text(max_size=2),
             min_size=0, max_size=3),
    st.tuples(st.binary(max_size=3), st.binary(max_size=3)).map(tuple),
    st.binary(max_size=3),
)


@needs_fast
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=3), st.binary(max_size=5) | st.none())
                .map(list), max_size=12),
       st.lists(pair_items, max_size=2), st.data())
def test_writes_from_pairs_match_the_python_loop(pairs, odd, data) -> None:
    for item in odd:  # sometimes a malformed pair somewhere in the list
        pairs.insert(data.draw(st.integers(0, len(pairs))), item)
    got = fast.writes_from_pairs(pairs)
    expected = _python_writes(pairs)
    assert got == expected
    if got is not None:
        assert list(got) == list(expected)  # insertion order: the pairs' order


@needs_fast
def test_writes_from_pairs_step_aside_and_diff_from_wire_names_the_fault() -> None:
    from node.recent_diffs import diff_from_wire

    assert fast.writes_from_pairs((b"a", b"b")) is None
    assert fast.writes_from_pairs([[b"a", b"1"], [b"a", b"2"]]) is None
    with pytest.raises(TypeError):
        fast.writes_from_pairs()
    assert diff_from_wire({"receipts": [], "writes": [[b"k", b"v"], [b"x", None]]}) == \
        ([], {b"k": b"v", b"x": None})
    with pytest.raises(ValueError, match="distinct"):
        diff_from_wire({"receipts": [], "writes": [[b"k", b"v"], [b"k", None]]})
    with pytest.raises(ValueError, match="each write"):
        diff_from_wire({"receipts": [], "writes": [[b"k"]]})
    # A value of another type passes here, as before, and the engine refuses it.
    assert diff_from_wire({"receipts": [], "writes": [[b"k", 5]]}) == ([], {b"k": 5})
