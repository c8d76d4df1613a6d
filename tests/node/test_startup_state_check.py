"""The start-up check of stored state values against the leaf index (node.app), on a real
LevelDB store, with the compiled loops and without.

The check compares the whole state, hashed, with the whole leaf index: any value changed,
any state key without its leaf and any leaf without its state key must read as damage.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node import state_tree
from node.app import state_values_damaged
from node.state_tree import LEAF_PREFIX, key_hash, value_hash
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


def damaged(store: LedgerStore) -> bool:
    """The start-up check as the node runs it: on the tree loaded from the leaf index."""
    node = types.SimpleNamespace(store=store,
                                 engine=types.SimpleNamespace(tree=store.load_state_tree()))
    return state_values_damaged(node)  # type: ignore[arg-type]


def change_a_value(store: LedgerStore) -> None:
    store.db.put(STATE_PREFIX + b"clearance/order/O-7", b"tampered")


def drop_a_value(store: LedgerStore) -> None:
    store.db.delete(STATE_PREFIX + b"clearance/order/O-8")


def add_a_value(store: LedgerStore) -> None:
    store.db.put(STATE_PREFIX + b"clearance/order/extra", b"no leaf for me")


def drop_a_leaf(store: LedgerStore) -> None:
    store.db.delete(LEAF_PREFIX + key_hash(b"clearance/order/O-9"))


def add_a_leaf(store: LedgerStore) -> None:
    store.db.put(LEAF_PREFIX + key_hash(b"clearance/order/ghost"), value_hash(b"x"))


def malformed_leaf(store: LedgerStore) -> None:
    store.db.put(LEAF_PREFIX + key_hash(b"clearance/order/O-10"), b"short")


def test_an_intact_store_is_not_damaged(store: LedgerStore) -> None:
    assert not damaged(store)
    # and the tree loaded from it is the one the state gives
    assert store.load_state_tree().root == state_tree.StateTree.load(store.leaves).root


@pytest.mark.parametrize("harm", [change_a_value, drop_a_value, add_a_value, drop_a_leaf,
                                  add_a_leaf, malformed_leaf])
def test_every_kind_of_mismatch_is_damage(store: LedgerStore,
                                          harm: Callable[[LedgerStore], None]) -> None:
    harm(store)
    assert damaged(store)


def malformed_leaf_key(store: LedgerStore) -> None:
    """A leaf whose key is not a key hash, the count of leaves kept (one dropped)."""
    store.db.delete(LEAF_PREFIX + key_hash(b"clearance/order/O-11"))
    store.db.put(LEAF_PREFIX + b"\x00" * 31, value_hash(b"x"))


def test_a_leaf_swapped_for_a_malformed_one_is_damage(store: LedgerStore) -> None:
    malformed_leaf_key(store)
    assert damaged(store)


@pytest.mark.skipif(state_tree._compiled is None, reason="compiled tree loops not built")
@pytest.mark.parametrize("harm", [None, change_a_value, drop_a_leaf])
def test_the_compiled_check_reads_in_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
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
        assert damaged(opened) == (harm is not None)
    finally:
        opened.close()


@pytest.mark.parametrize("compiled", [True, False])
def test_the_check_leaves_the_state_readers_cache_alone(tmp_path: Path,
                                                        compiled: bool) -> None:
    """It reads the whole state through LevelDB's iterator, not the reader that remembers
    small scans for contracts (a state of 64 keys or fewer would be remembered whole)."""
    opened = LedgerStore.open(str(tmp_path / "data"), chain_id="c", genesis_hash=b"\x00" * 32)
    small = dict(list(STATE.items())[:10])
    opened.initialise(chain_id="c", genesis_hash=b"\x00" * 32, state=small)
    state_tree.use_compiled_tree(compiled)
    try:
        assert not damaged(opened)
        assert not opened.state._scans
    finally:
        state_tree.use_compiled_tree(True)
        opened.close()
