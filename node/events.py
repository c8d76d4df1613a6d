"""Committed events fan-out: the source of the HTTP event stream and regulator reports.

Every receipt's events are published here after their block is committed (never before:
a subscriber only ever sees what is final). Subscribers have bounded queues; one that falls
too far behind is dropped with a reason rather than slowing the commit path, and can resume
from the last height it saw (``/v1/events?from_height=``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EventFilter:
    contract: str | None = None
    type: str | None = None
    key: str | None = None

    def matches(self, record: Mapping[str, Any]) -> bool:
        if self.contract is not None and record["contract"] != self.contract:
            return False
        if self.type is not None and record["type"] != self.type:
            return False
        return self.key is None or self.key in record["keys"]


def event_records(height: int, time_ms: int, tx_hashes: list[bytes],
                  receipts: Iterable[Any]) -> list[dict[str, Any]]:
    """Flatten a block's receipts into stream records (one per event)."""
    out = []
    for index, (tx_hash, receipt) in enumerate(zip(tx_hashes, receipts, strict=True)):
        for seq, event in enumerate(receipt.events):
            out.append({
                "height": height, "time_ms": time_ms, "tx": tx_hash.hex(), "index": index,
                "seq": seq, "contract": event.contract, "type": event.type,
                "attrs": dict(event.attrs), "keys": list(event.keys),
            })
    return out


class Subscription:
    def __init__(self, bus: EventBus, flt: EventFilter, capacity: int) -> None:
        self.bus = bus
        self.filter = flt
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(capacity)
        self.overflowed = False

    def offer(self, record: dict[str, Any]) -> None:
        if self.overflowed or not self.filter.matches(record):
            return
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.overflowed = True
            self.bus.unsubscribe(self)

    def close(self) -> None:
        self.bus.unsubscribe(self)


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

    def publish(self, records: Iterable[dict[str, Any]]) -> None:
        subs = list(self._subs)  # offer() may unsubscribe an overflowing subscriber
        for record in records:
            self.published += 1
            for sub in subs:
                sub.offer(record)

    def publish_block(self, height: int, time_ms: int, tx_hashes: list[bytes],
                      receipts: Sequence[Any]) -> None:
        """Publish a committed block's events; with nobody listening, only count them
        (building the records costs a dict per event on the commit path)."""
        if not self._subs:
            self.published += sum(len(receipt.events) for receipt in receipts)
            return
        self.publish(event_records(height, time_ms, tx_hashes, receipts))
