"""Binary Merkle trees with inclusion proofs, as in RFC 6962 (Certificate Transparency).

Used for ``txs_root`` and ``results_root`` of a block and for the top of the state tree.
RFC 6962's rules are chosen because they are well specified for any leaf count and
leaf/node hashes are domain-separated (0x00 / 0x01 prefixes), which rules out the classic
"an inner node posing as a leaf" second-preimage attack:

* empty tree: ``SHA-256("")``;
* leaf: ``SHA-256(0x00 || data)``;
* node: ``SHA-256(0x01 || left || right)``, splitting ``n`` leaves at the largest power of
  two smaller than ``n``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n >= 2)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_of_hashes(leaves: Sequence[bytes]) -> bytes:
    """Root over already-hashed leaves."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root_of_hashes(leaves[:k]), root_of_hashes(leaves[k:]))


def merkle_root(items: Sequence[bytes]) -> bytes:
    """Root over raw leaf data (computed by the compiled state-tree module when in use:
    two roots per block per node, ~2% of a node's CPU in Python)."""
    if _fast_root is not None:
        root = _fast_root(items if type(items) is list else list(items))
        if root is not None:
            return root
    return merkle_root_pure(items)


def merkle_root_pure(items: Sequence[bytes]) -> bytes:
    """:func:`merkle_root` in Python only: the reference the compiled one is tested against."""
    return root_of_hashes([leaf_hash(item) for item in items])


def use_compiled_root(root: Callable[[list[bytes]], bytes | None] | None) -> None:
    """Compute roots with ``root`` (``node/_tree_speedups.c``'s ``merkle_root``: None when it
    steps aside) or, given None, in Python. Set by node/state_tree.py, which loads the
    compiled module and switches it with the tree's loops (``JANGBU_PURE_TREE``)."""
    global _fast_root
    _fast_root = root


_fast_root: Callable[[list[bytes]], bytes | None] | None = None


def inclusion_proof(items: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for leaf ``index`` (sibling hashes, bottom-up)."""
    if not 0 <= index < len(items):
        raise IndexError("leaf index out of range")
    return _path([leaf_hash(item) for item in items], index)


def _path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if index < k:
        return [*_path(leaves[:k], index), root_of_hashes(leaves[k:])]
    return [*_path(leaves[k:], index - k), root_of_hashes(leaves[:k])]


def root_from_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """Recompute the root from a leaf's hash and its audit path; None if the shape is wrong."""
    if not 0 <= index < size:
        return None
    return _fold(leaf, index, size, list(proof))


def _fold(node: bytes, index: int, size: int, proof: list[bytes]) -> bytes | None:
    if size == 1:
        return node if not proof else None
    if not proof:
        return None
    k = _split(size)
    sibling = proof[-1]
    rest = proof[:-1]
    if index < k:
        inner = _fold(node, index, k, rest)
        return None if inner is None else node_hash(inner, sibling)
    inner = _fold(node, index - k, size - k, rest)
    return None if inner is None else node_hash(sibling, inner)


def verify_inclusion(
    data: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when ``data`` is leaf ``index`` of a ``size``-leaf tree with ``root``."""
    return root_from_proof(leaf_hash(data), index, size, proof) == root


class MerkleTree:
    """A tree built once over many leaves, answering each proof in O(log n).

    Subtree roots are memoised by leaf range, so building costs one hash per inner node and
    a proof costs only dictionary look-ups: what the API needs when many clients ask for
    receipts of the same large block.
    """

    def __init__(self, items: Sequence[bytes]) -> None:
        self.size = len(items)
        self._leaves = [leaf_hash(item) for item in items]
        self._memo: dict[tuple[int, int], bytes] = {}
        self.root = self._root(0, self.size)

    def _root(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return self._leaves[lo]
        cached = self._memo.get((lo, hi))
        if cached is None:
            k = _split(n)
            cached = node_hash(self._root(lo, lo + k), self._root(lo + k, hi))
            self._memo[(lo, hi)] = cached
        return cached

    def proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise IndexError("leaf index out of range")
        path: list[bytes] = []
        lo, hi = 0, self.size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._root(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._root(lo, lo + k))
                lo = lo + k
        path.reverse()
        return path
