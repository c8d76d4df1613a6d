"""Committed events as event-stream (SSE) frames: the JSON of a record, and each record's
frame written once for all subscribers.

Why a module of its own: this is the one JSON encoding on a node's per-transaction path.
Every committed event goes to every subscriber of ``/v1/events``; written per subscriber
with the standard ``json`` module, 8 unfiltered subscribers per node cost ~55 µs of CPU
per transaction and 20% of throughput (docs/benchmarks.md, fourth round).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

try:  # optional (jangbu[speedups]): writes an event record in 0.23 µs instead of 3.9 µs
    import orjson as _orjson
except ImportError:  # pragma: no cover - the plain json module writes the same JSON
    _orjson = None  # type: ignore[assignment]


def bytes_to_hex(value: Any) -> Any:
    """What JSON cannot write itself: bytes as hex; other mappings and sequences a
    contract may have put in an event's attributes as their plain forms."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def event_json(record: Mapping[str, Any]) -> bytes:
    """An event record as compact JSON, bytes as hex.

    orjson, when installed, writes UTF-8 where ``json`` escapes non-ASCII as ``\\uXXXX``;
    both parse to the same value (tested). Anything orjson refuses goes to ``json``, which
    then decides what an odd value becomes.
    """
    if _orjson is not None:
        try:
            return _orjson.dumps(record, default=bytes_to_hex)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            pass
    return json.dumps(record, separators=(",", ":"), default=bytes_to_hex).encode()


def sse_frame(record: Mapping[str, Any]) -> bytes:
    """One record as an event-stream frame: ``id``, ``event`` (its type) and ``data``."""
    event_id = f"{record['height']}:{record['index']}:{record['seq']}"
    head = f"id: {event_id}\nevent: {record['type']}\ndata: ".encode()
    return head + event_json(record) + b"\n\n"


class FrameMemo:
    """The frames of recent records, each written once however many streams send it.

    The event bus hands the same record object to every subscriber, so a frame is
    remembered by object: the memo holds the record itself, so its ``id`` cannot be
    reused while remembered. Records are never changed once published. Bounded by count
    and by bytes (oldest first out); a stream further behind than that writes its frames
    again, and a frame larger than a hundredth of the byte bound is not kept at all.
    """

    def __init__(self, capacity: int = 16_384, max_bytes: int = 32 << 20) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._frames: OrderedDict[int, tuple[Mapping[str, Any], bytes]] = OrderedDict()
        self._bytes = 0

    def frame(self, record: Mapping[str, Any]) -> bytes:
        key = id(record)
        held = self._frames.get(key)
        if held is not None and held[0] is record:
            return held[1]
        data = sse_frame(record)
        if len(data) <= self.max_bytes // 100:
            self._frames[key] = (record, data)
            self._bytes += len(data)
            while len(self._frames) > self.capacity or self._bytes > self.max_bytes:
                _, (_, old) = self._frames.popitem(last=False)
                self._bytes -= len(old)
        return data

    def clear(self) -> None:
        """Forget every frame (no stream is open: nothing would use them)."""
        self._frames.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def size_bytes(self) -> int:
        return self._bytes
