"""What a node's stored state must hash to, and the offline repair of its leaf index.

Why a module of its own: the start-up check (node.app) and ``jangbu node rebuild-index``
(cli/main.py) compare the same two things, the tree the stored values give and the root
the chain says they must have, and the command should not need the running node's
modules to do it.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.block import Block, BlockError, compute_txs_root
from node.genesis import Genesis
from node.state import MemoryKV
from node.state_tree import StateTree, state_buckets
from node.store import LedgerStore, StoreError


def expected_state_root(store: LedgerStore, genesis: Genesis) -> bytes:
    """The state root the stored state must have: the last block's ``state_root``, or
    before the first block the genesis state's. Raises StoreError if that block is gone or
    damaged.

    The last block is read as a synced block is (its transactions cut and hashed, not
    decoded: 3-5 ms for 1,000 of them, against 22-26 ms for a full decode) and its
    transactions are checked against its ``txs_root``: any damaged byte of them is found,
    which the full decode did not promise (it refused only bytes that did not decode).
    """
    if not store.height:
        return StateTree().preview(genesis.initial_state(), MemoryKV()).root
    height = store.height
    raw = store.get_block_bytes(height)
    if raw is None:
        raise StoreError(f"data directory {store.path} is corrupt (block {height} is "
                         "missing)")
    try:
        block = Block.decode(raw, synced=True)
        if compute_txs_root(block.txs, genesis.params.block_version) != block.header.txs_root:
            raise BlockError("its transactions do not give its txs_root")
    except BlockError as exc:
        raise StoreError(f"data directory {store.path} is damaged (block {height}: {exc}); "
                         "restore a backup or remove it and let the node resync from its "
                         "peers (docs/operations.md)") from None
    return block.header.state_root


class DamagedValuesError(Exception):
    """The stored values themselves do not give the chain's state root: the index cannot be
    rebuilt from them (restore a backup or resync)."""


@dataclass(frozen=True)
class RebuildReport:
    height: int
    entries: int  # leaf index entries written
    changed: int  # entries that were wrong, missing or extra (0: the index was intact)


def rebuild_leaf_index(store: LedgerStore, genesis: Genesis) -> RebuildReport:
    """Rewrite ``store``'s leaf index from its stored values, once they are shown to give
    the chain's state root (raises DamagedValuesError otherwise, writing nothing).

    Why this is a repair and not a guess: the values are the state, every block commits to
    their root, and the index is only each value's hash under its key's hash. A node that
    stopped on ``LeafIndexError`` (a damaged index entry, docs/operations.md §1) can so
    be repaired in one pass instead of a resync, as Fabric's ``peer node rebuild-dbs``
    rebuilds what is derived from the ledger.
    """
    records, hashes = state_buckets(store.state)
    tree = StateTree.from_buckets(store.leaves, {}, hashes, cache_entries=0)
    if tree.root != expected_state_root(store, genesis):
        raise DamagedValuesError(
            f"the stored values at height {store.height} do not give the last block's "
            "state_root (the genesis state's before the first block): the values themselves "
            "are damaged, so the index cannot be rebuilt from them; restore a backup or "
            "resync (docs/operations.md)")
    entries, changed = store.rewrite_leaf_index(records)
    return RebuildReport(store.height, entries, changed)
