"""Event records as the stream writes them (the ``default`` hook gives the same JSON as the
explicit ``to_json`` walk it replaced), and the event loop a node runs on."""

from __future__ import annotations

import json
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from node.api import _bytes_to_hex
from node.jsonform import to_json

leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                   st.text(max_size=8), st.binary(max_size=8))
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=5), inner, max_size=3),
        st.dictionaries(st.text(max_size=5), inner, max_size=3).map(MappingProxyType)),
    max_leaves=12)


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=6), values, max_size=5))
def test_stream_json_equals_the_explicit_conversion(record):
    fast = json.dumps(record, separators=(",", ":"), default=_bytes_to_hex)
    assert fast == json.dumps(to_json(record), separators=(",", ":"))


def test_event_loop_is_uvloop_when_installed_unless_asyncio_is_asked_for(monkeypatch):
    import uvloop

    from node.app import event_loop_factory

    monkeypatch.delenv("JANGBU_EVENT_LOOP", raising=False)
    assert event_loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv("JANGBU_EVENT_LOOP", "asyncio")
    assert event_loop_factory() is None


def test_publish_block_counts_events_and_builds_records_only_for_listeners():
    import asyncio

    from contracts.sdk import Event
    from node.events import EventBus, EventFilter
    from node.execution import Receipt

    receipts = [Receipt("OK", "", (Event("c", "a", {"x": b"\x01"}, ("k",)),
                                   Event("c", "b", {}, ()))), Receipt("E_ARGS", "no")]
    hashes = [b"\x01" * 32, b"\x02" * 32]

    async def go() -> None:
        bus = EventBus()
        bus.publish_block(1, 10, hashes, receipts)
        assert bus.published == 2
        sub = bus.subscribe(EventFilter(type="a"))
        bus.publish_block(2, 20, hashes, receipts)
        assert bus.published == 4
        record = sub.queue.get_nowait()
        assert (record["height"], record["tx"], record["type"], record["keys"]) == \
            (2, hashes[0].hex(), "a", ["k"])
        assert sub.queue.empty()

    asyncio.run(go())
