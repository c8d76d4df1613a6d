"""Committed events fan-out: the source of the HTTP event stream and regulator reports.

Every receipt's events are published here after their block is committed (never before:
a subscriber only ever sees what is final). Subscribers have bounded queues; one that falls
too far behind is dropped with a reason rather than slowing the commit path, and can resume
from the last height it saw (``/v1/events?from_height=``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EventFilter:
    contract: str | None = None
    type: str | None = None
    key: str | None = None

    def matches(self, record: Mapping[str, Any]) -> bool:
        return self.matches_event(record["contract"], record["type"], record["keys"])

    def matches_event(self, contract: str, type_: str, keys: Sequence[str]) -> bool:
        if self.contract is not None and contract != self.contract:
            return False
        if self.type is not None and type_ != self.type:
            return False
        return self.key is None or self.key in keys


def event_record(height: int, time_ms: int, tx_hash: bytes, index: int, seq: int,
                 event: Any) -> dict[str, Any]:
    """One stream record: event ``seq`` of transaction ``index`` in block ``height``."""
    return {
        "height": height, "time_ms": time_ms, "tx": tx_hash.hex(), "index": index,
        "seq": seq, "contract": event.contract, "type": event.type,
        "attrs": dict(event.attrs), "keys": list(event.keys),
    }


def event_records(height: int, time_ms: int, tx_hashes: list[bytes],
                  receipts: Iterable[Any]) -> list[dict[str, Any]]:
    """Flatten a block's receipts into stream records (one per event)."""
    return [event_record(height, time_ms, tx_hash, index, seq, event)
            for index, (tx_hash, receipt) in enumerate(zip(tx_hashes, receipts, strict=True))
            for seq, event in enumerate(receipt.events)]


class Subscription:
    def __init__(self, bus: EventBus, flt: EventFilter, capacity: int) -> None:
        self.bus = bus
        self.filter = flt
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(capacity)
        self.overflowed = False

    def deliver(self, record: dict[str, Any]) -> None:
        """Queue ``record``, already known to match; a full queue ends the subscription."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.overflowed = True
            self.bus.unsubscribe(self)

    def close(self) -> None:
        self.bus.unsubscribe(self)

    def end(self) -> None:
        """Unsubscribe and wake the reader with the end marker (its client has gone)."""
        self.bus.unsubscribe(self)
        # A full queue: the reader has records to drain first, and its next write fails.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.published = 0

    def subscribe(self, flt: EventFilter, capacity: int = 10_000) -> Subscription:
        sub = Subscription(self, flt, capacity)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def close(self) -> None:
        """End every stream (shutdown): each subscriber receives None and returns."""
        for sub in list(self._subs):
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                sub.overflowed = True
        self._subs.clear()

    def publish_block(self, height: int, time_ms: int, tx_hashes: list[bytes],
                      receipts: Sequence[Any]) -> None:
        """Publish a committed block's events.

        A record is built only for an event some subscriber's filter takes: building one
        is a dict and a hex string per event on the commit path, and a typical stream
        follows one event type of one contract. With nobody listening the receipts are not
        even read: a block synced from a diff holds them as bytes, and decoding them only
        to count events was ~16% of a catch-up's CPU (``published`` counts the events of
        blocks published while someone listened).
        """
        subs = list(self._subs)  # deliver() may unsubscribe an overflowing subscriber
        if not subs:
            return
        for index, (tx_hash, receipt) in enumerate(zip(tx_hashes, receipts, strict=True)):
            events = receipt.events
            self.published += len(events)
            for seq, event in enumerate(events):
                wanting = [sub for sub in subs
                           if sub.filter.matches_event(event.contract, event.type, event.keys)]
                if wanting:
                    record = event_record(height, time_ms, tx_hash, index, seq, event)
                    for sub in wanting:
                        sub.deliver(record)
