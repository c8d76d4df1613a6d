"""Event records as the stream writes them (the ``default`` hook gives the same JSON as the
explicit ``to_json`` walk it replaced; orjson and json the same values), each frame written
once for all streams, and the event loop a node runs on."""

from __future__ import annotations

import json
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from node import event_frames
from node.event_frames import FrameMemo, event_json, sse_frame
from node.event_frames import bytes_to_hex as _bytes_to_hex
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


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=6), values, max_size=5))
def test_orjson_and_json_write_records_that_parse_the_same(record):
    assert event_frames._orjson is not None  # jangbu[speedups] and the test extras have it
    assert json.loads(event_json(record)) == json.loads(json.dumps(to_json(record)))


def test_without_orjson_the_stream_is_written_by_json(monkeypatch):
    record = {"height": 3, "index": 0, "seq": 1, "type": "create_order",
              "attrs": {"note": "통관 보류", "raw": b"\x01\xff"}}
    fast = sse_frame(record)
    monkeypatch.setattr(event_frames, "_orjson", None)
    plain = sse_frame(record)
    assert plain.startswith(b"id: 3:0:1\nevent: create_order\ndata: {")
    assert plain.endswith(b"}\n\n")
    assert b"\\ud1b5" in plain and "통관".encode() in fast  # escaped vs UTF-8, same value
    for frame in (fast, plain):
        data = frame.split(b"data: ", 1)[1].rstrip(b"\n")
        assert json.loads(data)["attrs"] == {"note": "통관 보류", "raw": "01ff"}


def test_a_record_is_written_once_for_every_stream(monkeypatch):
    written = []

    def counting(record):
        written.append(record)
        return b"{}"

    monkeypatch.setattr(event_frames, "event_json", counting)
    memo = FrameMemo(capacity=2)
    a = {"height": 1, "index": 0, "seq": 0, "type": "x"}
    b = {"height": 1, "index": 0, "seq": 1, "type": "x"}
    equal_to_a = dict(a)  # the same content, another record object: written again
    for _ in range(3):  # three subscribers
        assert memo.frame(a) == b"id: 1:0:0\nevent: x\ndata: {}\n\n"
        memo.frame(b)
    assert written == [a, b]
    memo.frame(equal_to_a)
    assert len(written) == 3 and len(memo) == 2  # bounded: a went first
    memo.frame(a)
    assert len(written) == 4
    memo.clear()
    assert len(memo) == 0 and memo.size_bytes == 0


def test_the_frame_memo_is_bounded_by_bytes():
    memo = FrameMemo(capacity=1000, max_bytes=20_000)
    records = [{"height": 1, "index": i, "seq": 0, "type": "x", "attrs": {"a": "x" * 60}}
               for i in range(200)]
    for record in records:
        memo.frame(record)
    assert memo.size_bytes <= 20_000 and 0 < len(memo) < 200
    big = {"height": 1, "index": 0, "seq": 1, "type": "x", "attrs": {"a": "x" * 200}}
    memo.frame(big)  # over a hundredth of the bound: written, not kept
    assert all(held is not big for held, _ in memo._frames.values())


def test_event_loop_is_uvloop_when_installed_unless_asyncio_is_asked_for(monkeypatch):
    import uvloop

    from node.app import event_loop_factory

    monkeypatch.delenv("JANGBU_EVENT_LOOP", raising=False)
    assert event_loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv("JANGBU_EVENT_LOOP", "asyncio")
    assert event_loop_factory() is None


def test_publish_block_reads_receipts_and_builds_records_only_for_listeners():
    import asyncio

    from contracts.sdk import Event
    from node.events import EventBus, EventFilter
    from node.execution import Receipt

    class Unreadable:
        @property
        def events(self) -> None:
            raise AssertionError("a receipt was read with nobody listening")

    receipts = [Receipt("OK", "", (Event("c", "a", {"x": b"\x01"}, ("k",)),
                                   Event("c", "b", {}, ()))), Receipt("E_ARGS", "no")]
    hashes = [b"\x01" * 32, b"\x02" * 32]

    async def go() -> None:
        bus = EventBus()
        unread = [Unreadable(), Unreadable()]  # nobody listens: receipts are not read
        bus.publish_block(1, 10, hashes, unread)
        assert bus.published == 0
        sub = bus.subscribe(EventFilter(type="a"))
        bus.publish_block(2, 20, hashes, receipts)
        assert bus.published == 2
        record = sub.queue.get_nowait()
        assert (record["height"], record["tx"], record["type"], record["keys"]) == \
            (2, hashes[0].hex(), "a", ["k"])
        assert sub.queue.empty()

    asyncio.run(go())


def test_publish_block_builds_a_record_only_for_events_a_filter_takes(monkeypatch):
    import asyncio

    from contracts.sdk import Event
    from node import events
    from node.events import EventBus, EventFilter
    from node.execution import Receipt

    built: list[tuple[int, int]] = []
    real = events.event_record

    def counting(height: int, time_ms: int, tx_hash: bytes, index: int, seq: int,
                 event: Event) -> dict[str, object]:
        built.append((index, seq))
        return real(height, time_ms, tx_hash, index, seq, event)

    monkeypatch.setattr(events, "event_record", counting)
    receipts = [Receipt("OK", "", (Event("c", "a", {}, ("k1",)), Event("c", "b", {}, ("k2",)),
                                   Event("d", "a", {}, ("k1",)))),
                Receipt("OK", "", (Event("c", "a", {}, ("k2",)),))]
    hashes = [b"\x01" * 32, b"\x02" * 32]

    async def go() -> None:
        bus = EventBus()
        by_type = bus.subscribe(EventFilter(contract="c", type="a"))
        by_key = bus.subscribe(EventFilter(key="k1"))
        full = bus.subscribe(EventFilter(), capacity=1)  # overflows on the second event
        bus.publish_block(3, 30, hashes, receipts)
        assert bus.published == 4
        assert built == [(0, 0), (0, 1), (0, 2), (1, 0)]  # the full stream wanted each
        assert full.overflowed and bus.subscribers == 2
        built.clear()
        bus.publish_block(4, 40, hashes, receipts)
        assert built == [(0, 0), (0, 2), (1, 0)]  # (0, 1) is type b with key k2: nobody
        got_type = [by_type.queue.get_nowait() for _ in range(by_type.queue.qsize())]
        got_key = [by_key.queue.get_nowait() for _ in range(by_key.queue.qsize())]
        assert [(r["height"], r["index"], r["seq"]) for r in got_type] == \
            [(3, 0, 0), (3, 1, 0), (4, 0, 0), (4, 1, 0)]
        assert [(r["height"], r["index"], r["seq"], r["contract"]) for r in got_key] == \
            [(3, 0, 0, "c"), (3, 0, 2, "d"), (4, 0, 0, "c"), (4, 0, 2, "d")]
        # A record both streams take is one object (written once for both by the memo).
        assert got_type[2] is got_key[2]

    asyncio.run(go())
