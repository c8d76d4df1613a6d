"""Merkle inclusion proofs and the bucketed state tree (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node import merkle
from node.state import MemoryKV
from node.state_tree import StateTree, verify_state_proof


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_every_leaf_proves_inclusion(items, data):
    root = merkle.merkle_root(items)
    index = data.draw(st.integers(0, len(items) - 1))
    proof = merkle.inclusion_proof(items, index)
    assert merkle.verify_inclusion(items[index], index, len(items), proof, root)
    assert not merkle.verify_inclusion(items[index] + b"!", index, len(items), proof, root)
    if len(items) > 1:
        other = (index + 1) % len(items)
        assert not merkle.verify_inclusion(items[index], other, len(items), proof, root) \
            or items[other] == items[index]


def test_empty_tree_root_is_hash_of_nothing():
    assert merkle.merkle_root([]) == merkle.EMPTY_ROOT


class LeafStore:
    """The ``l/`` index as the LedgerStore keeps it, in memory."""

    def __init__(self) -> None:
        self.kv = MemoryKV()

    def scan(self, prefix):
        return self.kv.scan(prefix)


state_writes = st.dictionaries(st.binary(min_size=1, max_size=6),
                               st.one_of(st.none(), st.binary(max_size=6)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(st.lists(state_writes, min_size=1, max_size=4))
def test_incremental_root_equals_rebuilt_root_and_proofs_verify(batches):
    leaves = LeafStore()
    tree = StateTree()
    state: dict[bytes, bytes] = {}
    for writes in batches:
        delta = tree.preview(writes, leaves)
        tree.apply(delta)
        leaves.kv.apply(dict(delta.leaf_writes))
        for key, value in writes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    rebuilt = StateTree.load(leaves)
    assert rebuilt.root == tree.root
    for key, value in state.items():
        assert verify_state_proof(tree.root, key, value, tree.prove(key, leaves))
        assert not verify_state_proof(tree.root, key, value + b"x", tree.prove(key, leaves))
    assert verify_state_proof(tree.root, b"\xff" * 9, None, tree.prove(b"\xff" * 9, leaves))


def test_root_depends_on_content_not_write_order():
    a, b = StateTree(), StateTree()
    leaves_a, leaves_b = LeafStore(), LeafStore()
    first = {b"k1": b"v1", b"k2": b"v2"}
    second = {b"k2": b"v2", b"k1": b"v1"}
    da, db = a.preview(first, leaves_a), b.preview(second, leaves_b)
    assert da.root == db.root


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70))
def test_built_tree_matches_recursive_proofs(items):
    tree = merkle.MerkleTree(items)
    assert tree.root == merkle.merkle_root(items)
    for index in range(len(items)):
        assert tree.proof(index) == merkle.inclusion_proof(items, index)
