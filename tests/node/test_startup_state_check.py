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

import plyvel
import pytest

from node import state_tree
from node.state_tree import LEAF_PREFIX, LeafIndexError, StateTree, bucket_of, key_hash, value_hash
from node.store import STATE_PREFIX, LedgerStore
from tests.ledger_support import write_state_and_leaves

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
        write_state_and_leaves(store, writes, delta)
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


def two_keys_in_one_bucket() -> tuple[bytes, bytes]:
    """Two state keys whose hashes share a bucket, in key-hash order."""
    seen: dict[int, bytes] = {}
    for i in range(100_000):
        key = f"clearance/order/B-{i}".encode()
        bucket = bucket_of(key_hash(key))
        if bucket in seen:
            first, second = sorted([seen[bucket], key], key=key_hash)
            return first, second
        seen[bucket] = key
    raise AssertionError("no two keys share a bucket")


def fold_second_leaf_into_first(store: LedgerStore, first: bytes, second: bytes) -> None:
    """Damage whose entries join to the committed bucket's bytes: the second key's leaf
    folded into the first's value (review finding: it passed the bucket hash check)."""
    store.db.delete(LEAF_PREFIX + key_hash(second))
    store.db.put(LEAF_PREFIX + key_hash(first),
                 value_hash(b"one") + key_hash(second) + value_hash(b"two"))


@pytest.mark.parametrize("compiled", [True, False])
def test_a_leaf_folded_into_another_is_damage_not_an_absent_key(tmp_path: Path,
                                                               compiled: bool) -> None:
    first, second = two_keys_in_one_bucket()
    state_tree.use_compiled_tree(compiled)
    opened = LedgerStore.open(str(tmp_path / "d"), chain_id="c", genesis_hash=b"\x00" * 32)
    try:
        opened.initialise(chain_id="c", genesis_hash=b"\x00" * 32,
                          state={first: b"one", second: b"two", b"other": b"x"})
        fold_second_leaf_into_first(opened, first, second)
        tree = opened.load_state_tree(0)  # cache off: every bucket read from the index
        with pytest.raises(LeafIndexError, match="malformed"):
            tree.prove(second, opened.leaves)
        with pytest.raises(LeafIndexError, match="malformed"):
            tree.preview({second: b"three"}, opened.leaves)
    finally:
        state_tree.use_compiled_tree(True)
        opened.close()


def test_a_folded_proof_does_not_verify() -> None:
    """The verifier's side of the same fold: a server's forged absence proof."""
    first, second = two_keys_in_one_bucket()
    tree, leaves = StateTree(), _Leaves()
    delta = tree.preview({first: b"one", second: b"two"}, leaves)
    leaves.data.update({k: v for k, v in delta.leaf_writes.items() if v is not None})
    tree.apply(delta)
    real = tree.prove(second, leaves)
    assert state_tree.verify_state_proof(tree.root, second, b"two", real)
    folded = state_tree.StateProof(
        real.bucket, ((key_hash(first), value_hash(b"one") + key_hash(second)
                       + value_hash(b"two")),), real.path)
    assert not state_tree.verify_state_proof(tree.root, second, None, folded)
    short_path = state_tree.StateProof(real.bucket, real.entries,
                                       (real.path[0][:31], *real.path[1:]))
    assert not state_tree.verify_state_proof(tree.root, second, b"two", short_path)


class _Leaves:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted((k, v) for k, v in self.data.items() if k.startswith(prefix)))


@pytest.mark.parametrize("compiled", [True, False])
def test_a_torn_delta_writes_nothing(compiled: bool) -> None:
    """apply checks every level before it writes any, in C and in Python (review
    finding: the Python loop wrote level 0, then raised on level 1)."""
    state_tree.use_compiled_tree(compiled)
    try:
        tree = StateTree(0)
        before = [bytes(row) for row in tree.levels]
        torn = state_tree.StateDelta(b"", {}, [state_tree.packed_nodes({5: b"\x42" * 32}),
                                               b"\x00" * 5])
        with pytest.raises(ValueError):
            tree.apply(torn)
        assert [bytes(row) for row in tree.levels] == before
    finally:
        state_tree.use_compiled_tree(True)


def test_a_node_before_its_first_block_checks_the_genesis_state(tmp_path: Path) -> None:
    """Height 0 has no block to compare with: the genesis state's root stands in (review
    finding: a value damaged before the first block went unnoticed at start)."""
    from cli.network import init_network
    from cli.presets import CONTRACTS, PRESETS
    from node.app import Node, NodeStartError
    from node.config import load_config

    init_network(tmp_path / "net", PRESETS["customs"], CONTRACTS["customs"],
                 chain_id="genesis-check", base_port=40320)
    config = load_config(tmp_path / "net" / "customs")
    Node(config).store.close()  # first start: the genesis state written
    Node(config).store.close()  # an intact store starts again
    db = plyvel.DB(str(config.data_dir))
    key = next(k for k, _ in db.iterator(prefix=STATE_PREFIX))
    db.put(key, b"\xc0damaged", sync=True)
    db.close()
    with pytest.raises(NodeStartError, match="state_root"):
        Node(config)
