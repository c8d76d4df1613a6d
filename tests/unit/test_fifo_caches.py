"""Bounded caches evict their oldest entry without walking the cache.

Each of these caches sits on the per-transaction path and, in a long-running node, is full
all the time, so eviction runs once per transaction. Evicting by walking the container (a
list of all keys, or a plain dict's "first key", which steps over every slot emptied before
it) cost 1.5 ms per admission in SignatureCache once a node had seen 200,000 transactions,
and ~20 µs per eviction in the others. The tests count walks instead of timing them.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from typing import Any

import plyvel

from consensus import canonical
from contracts.clearance import ClearanceContract
from contracts.sdk import Call
from node.engine import SignatureCache
from node.store import STATE_PREFIX, _CachedStateReader


class WalkCounter(OrderedDict):  # type: ignore[type-arg]
    """An OrderedDict that counts how often something iterates over it or its views."""

    walks = 0

    def __iter__(self) -> Any:
        type(self).walks += 1
        return super().__iter__()

    def keys(self) -> Any:
        type(self).walks += 1
        return super().keys()

    def values(self) -> Any:
        type(self).walks += 1
        return super().values()

    def items(self) -> Any:
        type(self).walks += 1
        return super().items()


def counting(container: OrderedDict) -> WalkCounter:  # type: ignore[type-arg]
    WalkCounter.walks = 0
    return WalkCounter(container)


def test_signature_cache_keeps_the_newest_and_never_walks() -> None:
    cache = SignatureCache(capacity=3)
    cache._seen = counting(cache._seen)
    hashes = [canonical.digest(b"%d" % i) for i in range(10)]
    for tx_hash in hashes:
        cache.add(tx_hash)
    assert len(cache._seen) == 3
    assert [h in cache for h in hashes] == [False] * 7 + [True] * 3
    assert WalkCounter.walks == 0


def test_scan_cache_evicts_the_oldest_prefix_without_walking(tmp_path) -> None:
    db = plyvel.DB(str(tmp_path), create_if_missing=True)
    try:
        db.put(STATE_PREFIX + b"c/a/1", b"x")
        reader = _CachedStateReader(db, STATE_PREFIX, max_prefixes=2)
        reader._scans = counting(reader._scans)
        for prefix in (b"c/a/", b"c/b/", b"c/c/", b"c/d/"):
            assert list(reader.scan(prefix)) == ([(b"c/a/1", b"x")] if prefix == b"c/a/" else [])
        assert WalkCounter.walks == 0
        assert list(OrderedDict(reader._scans)) == [b"c/c/", b"c/d/"]
        assert reader._lengths == {4: 2}
    finally:
        db.close()


def test_parse_cache_evicts_the_oldest_order_without_walking() -> None:
    contract = ClearanceContract(parse_cache_size=4)  # one unit per order + one per item
    contract._parsed_orders = counting(contract._parsed_orders)
    sealed = base64.b64encode(b"s" * 120).decode()
    calls = [
        Call("clearance", "create_order", {
            "order_id": f"O-{i}", "courier": "courier", "buyer_platform": "buyer",
            "buyer_ref": "ab" * 32, "buyer_sealed": sealed, "currency": "USD",
            "ship_from": "US", "items": [{"hs": "6109.10", "description": "shirt",
                                          "kind": "general", "quantity": 1,
                                          "unit_price": 100}]},
             b"\x01" * 32, i, canonical.digest(b"%d" % i))
        for i in range(6)
    ]
    for call in calls:
        contract.check(call)
    assert WalkCounter.walks == 0
    assert list(OrderedDict(contract._parsed_orders)) == [c.tx_hash for c in calls[-2:]]
    assert contract._parsed_weight == 4
