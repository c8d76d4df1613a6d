"""Layered key/value state: committed store -> block overlay -> transaction overlay.

Why layers: a block is executed against a *copy* of state (the proposer to fill the roots,
every validator to check them) and only written to LevelDB when consensus decides it; a
contract call that fails must leave no trace. Instead of copying the store we stack cheap
dict overlays over a read-only base and merge them downwards on success.

Keys in this module are full state keys ``b"<contract>/<key>"``; values are canonical bytes.
:class:`ContractState` adapts one namespace to the object-level ``StateView`` contracts use.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any, Protocol

from consensus import canonical

_DELETED = None


class KVReader(Protocol):
    """Read-only bytes key/value source (a LevelDB snapshot, a dict, another overlay)."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


class MemoryKV:
    """A dict-backed KV: the base for tests and for a fresh chain before its first commit."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self.data: dict[bytes, bytes] = dict(data or {})

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self.data if k.startswith(prefix)):
            yield key, self.data[key]

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        """Merge a committed block's writes (None deletes)."""
        for key, value in writes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value


class Overlay:
    """Uncommitted writes over a reader; ``None`` marks a deletion."""

    def __init__(self, base: KVReader) -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}
        self._keys: list[bytes] = []  # sorted keys of ``writes``, for prefix scans

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self.writes:
            bisect.insort(self._keys, key)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        if key not in self.writes:
            bisect.insort(self._keys, key)
        self.writes[key] = _DELETED

    def wrote_under(self, prefix: bytes) -> bool:
        """True if this overlay holds a write (or deletion) of a key starting with ``prefix``."""
        keys = self._keys
        i = bisect.bisect_left(keys, prefix)
        return i < len(keys) and keys[i].startswith(prefix)

    def _pending(self, prefix: bytes) -> list[tuple[bytes, bytes | None]]:
        keys = self._keys
        out = []
        for i in range(bisect.bisect_left(keys, prefix), len(keys)):
            key = keys[i]
            if not key.startswith(prefix):
                break
            out.append((key, self.writes[key]))
        return out

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Merge the base's sorted scan with this overlay's writes, in key order.

        The common case, nothing written under ``prefix`` yet, hands back the base's own
        iterator rather than wrapping it in one more generator (one per overlay layer).
        """
        pending = self._pending(prefix)
        if not pending:
            return self.base.scan(prefix)
        return self._merged(self.base.scan(prefix), pending)

    @staticmethod
    def _merged(base_iter: Iterator[tuple[bytes, bytes]],
                pending: list[tuple[bytes, bytes | None]]) -> Iterator[tuple[bytes, bytes]]:
        base_item = next(base_iter, None)
        index = 0
        while base_item is not None or index < len(pending):
            if index < len(pending) and (base_item is None or pending[index][0] <= base_item[0]):
                key, value = pending[index]
                index += 1
                if base_item is not None and base_item[0] == key:
                    base_item = next(base_iter, None)
                if value is not None:
                    yield key, value
            else:
                assert base_item is not None
                yield base_item
                base_item = next(base_iter, None)

    def merge_into(self, parent: Overlay) -> None:
        """Fold these writes into ``parent`` (a successful call into its block)."""
        for key, value in self.writes.items():
            if value is None:
                parent.delete(key)
            else:
                parent.put(key, value)


def state_key(contract: str, key: str) -> bytes:
    """The full state key of ``key`` in ``contract``'s namespace."""
    return contract.encode("utf-8") + b"/" + key.encode("utf-8")


class ContractState:
    """The object-level ``StateView``/``StateReader`` of one contract over an overlay."""

    def __init__(self, source: KVReader, contract: str) -> None:
        self.source = source
        self.contract = contract
        self._prefix = contract.encode("utf-8") + b"/"

    def get(self, key: str) -> Any | None:
        raw = self.source.get(self._prefix + key.encode("utf-8"))
        # State bytes were written by this node's canonical encoder: no re-check needed.
        return None if raw is None else canonical.decode_trusted(raw)

    def put(self, key: str, value: Any) -> None:
        if not isinstance(self.source, Overlay):
            raise TypeError("this state view is read-only")
        self.source.put(self._prefix + key.encode("utf-8"), canonical.encode(value))

    def delete(self, key: str) -> None:
        if not isinstance(self.source, Overlay):
            raise TypeError("this state view is read-only")
        self.source.delete(self._prefix + key.encode("utf-8"))

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        cut = len(self._prefix)
        for raw_key, raw_value in self.source.scan(self._prefix + prefix.encode("utf-8")):
            yield raw_key[cut:].decode("utf-8"), canonical.decode_trusted(raw_value)
