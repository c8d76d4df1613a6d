"""The start-up tree, built from the stored values (``StateTree.from_state``), on a real
LevelDB store, with the compiled loops and without.

Every value is hashed into that tree's root, which the node compares with its last block's
``state_root`` (node.app ``engine_root_mismatch``): a value changed, dropped or added must
give another root. The leaf index is not read at start; a damaged entry in it must be
found where the index is read (a preview's cache miss, a proof) and raise ``LeafIndexError``,
never give a root or a proof.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node import state_tree
from node.state_tree import LEAF_PREFIX, LeafIndexError, StateTree, bucket_of, key_hash, value_hash
from node.store import STATE_PREFIX, LedgerStore

STATE = {f"clearance/order/O-{i}".encode(): f"value {i}".encode() * (i % 7 + 1)
         for i in range(400)}


@pytest.fixture(params=[True, False], ids=["compiled", "python"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    state_tree.use_compiled_tree(request.param)
    opened = LedgerStore.open(str(tmp_path / "data"), chain_id="c", genesis_hash=b"\x00" * 32)
    opened.initialise(chain_id="c", genesis_hash=b"\x00" * 32, state=STATE)
    try:
        yield opened
    finally:
        opened.close()
        state_tree.use_compiled_tree(True)


def intact_root() -> bytes:
    return StateTree().preview(dict(STATE), _Empty()).root


class _Empty:
    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(())


def change_a_value(store: LedgerStore) -> None:
    store.db.put(STATE_PREFIX + b"clearance/order/O-7", b"tampered")


def drop_a_value(store: LedgerStore) -> None:
    store.db.delete(STATE_PREFIX + b"clearance/order/O-8")


def add_a_value(store: LedgerStore) -> None:
    store.db.put(STATE_PREFIX + b"clearance/order/extra", b"no leaf for me")


def test_an_intact_store_gives_the_committed_tree(store: LedgerStore) -> None:
    tree = store.load_state_tree()
    from_index = StateTree.load(store.leaves)
    assert tree.root == from_index.root == intact_root()
    assert tree.levels == from_index.levels
    # the cache is warmed as loading from the index warms it, order included
    assert list(tree._cache.items()) == list(from_index._cache.items())
    assert tree._cache_size == from_index._cache_size


@pytest.mark.parametrize("harm", [change_a_value, drop_a_value, add_a_value])
def test_every_damaged_value_changes_the_root(store: LedgerStore,
                                              harm: Callable[[LedgerStore], None]) -> None:
    harm(store)
    assert store.load_state_tree().root != intact_root()


# Damage to the leaf index: (harm, a state key whose bucket it damages).
def drop_a_leaf(store: LedgerStore) -> bytes:
    store.db.delete(LEAF_PREFIX + key_hash(b"clearance/order/O-9"))
    return b"clearance/order/O-9"


def add_a_leaf(store: LedgerStore) -> bytes:
    store.db.put(LEAF_PREFIX + key_hash(b"clearance/order/ghost"), value_hash(b"x"))
    return b"clearance/order/ghost"


def change_a_leaf(store: LedgerStore) -> bytes:
    store.db.put(LEAF_PREFIX + key_hash(b"clearance/order/O-12"), value_hash(b"other"))
    return b"clearance/order/O-12"


def malformed_leaf(store: LedgerStore) -> bytes:
    store.db.put(LEAF_PREFIX + key_hash(b"clearance/order/O-10"), b"short")
    return b"clearance/order/O-10"


def malformed_leaf_key(store: LedgerStore) -> bytes:
    """A leaf whose key is not a key hash, in the bucket of a state key."""
    khash = key_hash(b"clearance/order/O-11")
    store.db.put(LEAF_PREFIX + khash[:31], value_hash(b"x"))
    return b"clearance/order/O-11"


LEAF_HARMS = [drop_a_leaf, add_a_leaf, change_a_leaf, malformed_leaf, malformed_leaf_key]


@pytest.mark.parametrize("harm", LEAF_HARMS)
def test_a_damaged_leaf_is_found_where_the_index_is_read(
        store: LedgerStore, harm: Callable[[LedgerStore], bytes]) -> None:
    key = harm(store)
    # the values are intact: the start-up tree is the committed one
    assert store.load_state_tree().root == intact_root()
    # a preview that must read the damaged bucket (cache off) refuses it
    with pytest.raises(LeafIndexError, match=f"bucket {bucket_of(key_hash(key))}"):
        store.load_state_tree(0).preview({key: b"new value"}, store.leaves)
    # so does a proof of any key in it
    with pytest.raises(LeafIndexError):
        store.load_state_tree().prove(key, store.leaves)


@pytest.mark.parametrize("harm", LEAF_HARMS)
def test_a_cached_bucket_still_gives_the_committed_root(
        store: LedgerStore, harm: Callable[[LedgerStore], bytes]) -> None:
    """With the bucket cached from the values, a block that touches it does not read the
    index, and its root is the one the values give."""
    key = harm(store)
    writes = {key: b"new value", b"clearance/order/O-3": None}
    state = dict(STATE)
    state.pop(b"clearance/order/O-3")
    state[key] = b"new value"
    expected = StateTree().preview(state, _Empty())
    assert store.load_state_tree().preview(writes, store.leaves).root == expected.root


def test_an_intact_index_is_read_without_complaint(store: LedgerStore) -> None:
    """No false alarm: blocks committed over a tree whose every bucket is read from the
    index (cache off), as the engine commits them, then a restart's tree, then proofs."""
    tree = store.load_state_tree(0)
    for height in range(1, 6):
        writes: dict[bytes, bytes | None] = {
            f"clearance/order/O-{i}".encode(): b"h%d" % height for i in range(height, 400, 7)}
        writes[f"clearance/order/O-{height * 3}".encode()] = None
        writes[b"clearance/order/new-%d" % height] = b"n"
        delta = tree.preview(writes, store.leaves)
        with store.db.write_batch() as batch:
            for key, value in writes.items():
                if value is None:
                    batch.delete(STATE_PREFIX + key)
                else:
                    batch.put(STATE_PREFIX + key, value)
            for key, vhash in delta.leaf_writes.items():
                if vhash is None:
                    batch.delete(key)
                else:
                    batch.put(key, vhash)
        tree.apply(delta)
    restarted = store.load_state_tree(0)
    assert restarted.root == tree.root == StateTree.load(store.leaves, 0).root
    for key in [*list(STATE)[:50], b"clearance/order/new-3", b"absent"]:
        value = store.db.get(STATE_PREFIX + key)
        assert state_tree.verify_state_proof(restarted.root, key, value,
                                             restarted.prove(key, store.leaves))


@pytest.mark.skipif(state_tree._compiled is None, reason="compiled tree loops not built")
@pytest.mark.parametrize("harm", [None, change_a_value, drop_a_value])
def test_the_compiled_start_reads_in_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       harm: Callable[[LedgerStore], None] | None) -> None:
    """Not the Python loops after the C code stepped aside, which every test above would
    also pass: with them made to fail, the compiled build still answers."""
    opened = LedgerStore.open(str(tmp_path / "data"), chain_id="c", genesis_hash=b"\x00" * 32)
    opened.initialise(chain_id="c", genesis_hash=b"\x00" * 32, state=STATE)
    try:
        if harm is not None:
            harm(opened)
        monkeypatch.setattr(state_tree, "value_hash", None)
        monkeypatch.setattr(state_tree, "bucket_of", None)
        assert (opened.load_state_tree().root == intact_root()) == (harm is None)
    finally:
        opened.close()


@pytest.mark.parametrize("compiled", [True, False])
def test_the_start_leaves_the_state_readers_cache_alone(tmp_path: Path,
                                                        compiled: bool) -> None:
    """It reads the whole state through LevelDB's iterator, not the reader that remembers
    small scans for contracts (a state of 64 keys or fewer would be remembered whole)."""
    opened = LedgerStore.open(str(tmp_path / "data"), chain_id="c", genesis_hash=b"\x00" * 32)
    small = dict(list(STATE.items())[:10])
    opened.initialise(chain_id="c", genesis_hash=b"\x00" * 32, state=small)
    state_tree.use_compiled_tree(compiled)
    try:
        assert opened.load_state_tree().root == StateTree.load(opened.leaves).root
        assert not opened.state._scans
    finally:
        state_tree.use_compiled_tree(True)
        opened.close()
