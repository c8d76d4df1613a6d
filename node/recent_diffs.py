"""What the last committed blocks did to state, kept in memory so that peers catch up fast.

A node that was down catches up by fetching certified blocks. Re-executing them is bounded
by execution (~5,000 tx/s on the development machine, docs/benchmarks.md §4), only ~2.7×
faster than a fully loaded chain grows. Each block's header commits to ``state_root`` (the
state after it) and ``results_root`` (its receipts), and its certificate proves a quorum
executed it; so a peer can send the block's state writes and receipts with it, and the
catching-up node applies them after checking they give exactly those roots
(:meth:`node.engine.Engine.apply_certified_diff`), at the cost of a state-tree update and a
LevelDB batch instead of an execution.

Nothing extra is computed or written on the commit path: the writes are the dict the
commit already holds and the receipts the bytes it already encoded (of blocks this node
executed itself, not of blocks it took from a diff), remembered here until ``max_bytes``
of newer blocks push them out (``[p2p] sync_diffs_bytes``). A node asked for an older
block (or just restarted) sends it without a diff, and the receiver executes it as
before, at ~2-3x the CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from node import state_tree
from node.defaults import SYNC_DIFFS_BYTES
from node.execution import Receipt, encoded_receipts

DEFAULT_MAX_BYTES = SYNC_DIFFS_BYTES  # what a node holds by default: node/defaults.py
_ENTRY_OVERHEAD = 16  # wire bytes per write or receipt beyond its own: msgpack headers
_HELD_OVERHEAD = 256
"""Memory counted per held block beyond its wire size, so that the empty blocks of an idle
chain count too (at wire size 0 they once piled up without bound, even with
``max_bytes`` 0)."""


class RecentDiffs:
    """Height -> (state writes, receipts) of recent blocks, bounded by their wire size."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._diffs: OrderedDict[int, tuple[Mapping[bytes, bytes | None],
                                            Sequence[bytes], int]] = OrderedDict()
        self._bytes = 0
        self._held = 0  # _bytes + _HELD_OVERHEAD per block: what max_bytes bounds

    def __len__(self) -> int:
        return len(self._diffs)

    @property
    def size(self) -> int:
        """Wire bytes of the diffs held (what :meth:`wire` of each would cost to send)."""
        return self._bytes

    def remember(self, height: int, writes: Mapping[bytes, bytes | None],
                 receipts: Sequence[Receipt]) -> None:
        """Keep a just-committed block's writes (the commit's own dict) and its receipts'
        bytes (the objects, with their events, took ~3.6x the memory)."""
        raws = tuple(encoded_receipts(receipts))
        size = diff_size(writes, raws)
        if size + _HELD_OVERHEAD > self.max_bytes:
            self.clear()  # too big to keep; older ones would be a gap before it anyway
            return
        if self._diffs and next(reversed(self._diffs)) >= height:
            self.clear()  # heights only grow; anything else means state was replaced
        self._diffs[height] = (writes, raws, size)
        self._bytes += size
        self._held += size + _HELD_OVERHEAD
        while self._held > self.max_bytes:
            _, (_, _, evicted) = self._diffs.popitem(last=False)
            self._bytes -= evicted
            self._held -= evicted + _HELD_OVERHEAD

    def size_of(self, height: int) -> int | None:
        """Wire bytes of the diff of ``height`` if still held, else None."""
        held = self._diffs.get(height)
        return None if held is None else held[2]

    def wire(self, height: int) -> dict[str, Any] | None:
        """The diff of ``height`` as sent in a ``blocks`` sync item, if still held."""
        held = self._diffs.get(height)
        if held is None:
            return None
        writes, receipts, _ = held
        return {"writes": [[key, value] for key, value in writes.items()],
                "receipts": list(receipts)}

    def clear(self) -> None:
        self._diffs.clear()
        self._bytes = 0
        self._held = 0


def diff_size(writes: Mapping[bytes, bytes | None],
              receipts: Sequence[Receipt] | Sequence[bytes]) -> int:
    """Wire bytes of a diff; ``receipts`` as objects or as their canonical bytes."""
    size = sum(len(key) + len(value or b"") + _ENTRY_OVERHEAD for key, value in writes.items())
    return size + sum(len(raw) + _ENTRY_OVERHEAD for raw in encoded_receipts(receipts))


def diff_from_wire(obj: Any) -> tuple[list[Any], dict[Any, Any]]:
    """``(receipts, writes)`` of a received diff, shape-checked (raises ValueError).

    Contents are checked by :meth:`node.engine.Engine.apply_certified_diff` against the
    certified roots; here only that it is a map of two lists and each write a pair. The
    compiled loop, where built, makes the dict of a well-formed list (~1 ms of a synced
    block's ~3,000 writes in Python); anything else takes the loop below, which names it.
    """
    if not isinstance(obj, dict):
        raise ValueError("diff must be a map")
    receipts, pairs = obj.get("receipts"), obj.get("writes")
    if not isinstance(receipts, list) or not isinstance(pairs, list):
        raise ValueError("diff needs the lists 'receipts' and 'writes'")
    compiled = state_tree.compiled_loops()
    fast = None if compiled is None else compiled.writes_from_pairs(pairs)
    if fast is not None:
        return receipts, fast
    writes: dict[Any, Any] = {}
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError("each write must be [key, value or nil]")
        key, value = pair
        if type(key) is not bytes or key in writes:
            raise ValueError("write keys must be distinct bytes")
        writes[key] = value
    return receipts, writes
