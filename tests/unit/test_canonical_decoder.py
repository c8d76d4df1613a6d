"""The compiled canonical decoder accepts exactly what the reference accepts, with an equal
value, or steps aside.

``consensus/_speedups.c``'s ``decode`` must never decide what is canonical on its own: when
it returns a value, :func:`canonical.decode_reference` (unpack, re-encode, compare) must
accept the same bytes and give the same value, types included (``True`` is not ``1``).
It is also expected to accept everything canonical, or it would save nothing; both
directions are checked here on values, on their byte-level mutations and on every
non-minimal form of every boundary.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import canonical

fast = canonical._compiled_decode
NOT_HANDLED = object()

pytestmark = pytest.mark.skipif(
    fast is None and not os.environ.get("CI"),
    reason="compiled decoder not built here (no C compiler); CI requires it",
)


def same(a: Any, b: Any, ordered: bool = True) -> bool:
    """Equal and of the same types all the way down (``==`` says ``True == 1``); with
    ``ordered``, maps also list their keys in the same order (the wire's)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        if (list(a) if ordered else set(a)) != (list(b) if ordered else set(b)):
            return False
        return all(same(a[k], b[k], ordered) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y, ordered) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def reference(data: bytes) -> tuple[bool, Any]:
    try:
        return True, canonical.decode_reference(data)
    except canonical.CanonicalError:
        return False, None


def check(data: bytes) -> None:
    """The property: the compiled answer agrees with the reference, both ways."""
    assert fast is not None
    got = fast(data, NOT_HANDLED)
    accepted, value = reference(data)
    if got is NOT_HANDLED:
        assert not accepted, f"canonical bytes refused by the compiled decoder: {data!r}"
    else:
        assert accepted, f"non-canonical bytes accepted by the compiled decoder: {data!r}"
        assert same(got, value)


INTS = [
    0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
    2**64 - 1, -1, -31, -32, -33, -127, -128, -129, -32767, -32768, -32769,
    -(2**31) + 1, -(2**31), -(2**31) - 1, -(2**63) + 1, -(2**63),
]
LENGTHS = [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536]

keys = st.text(max_size=6) | st.sampled_from(["", "a", "é", "한", "\U0001f600"])
scalars = (
    st.none() | st.booleans() | st.sampled_from(INTS)
    | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=40) | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_every_canonical_value_decodes_to_itself(value: Any) -> None:
    data = canonical.encode(value)
    got = fast(data, NOT_HANDLED)  # type: ignore[misc]
    assert got is not NOT_HANDLED
    assert same(got, value, ordered=False)
    check(data)


@settings(max_examples=600, deadline=None)
@given(values, st.data())
def test_mutated_bytes_agree_with_the_reference(value: Any, data: st.DataObject) -> None:
    raw = bytearray(canonical.encode(value))
    how = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "drop", "append"]))
    at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
    byte = data.draw(st.integers(0, 255))
    if how == "flip" and raw:
        raw[at] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "set" and raw:
        raw[at] = byte
    elif how == "cut":
        del raw[at:]
    elif how == "insert":
        raw.insert(at, byte)
    elif how == "drop" and raw:
        del raw[at]
    else:
        raw.append(byte)
    check(bytes(raw))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_agree_with_the_reference(data: bytes) -> None:
    check(data)


# --- every form of every boundary: exactly the minimal one is accepted ---------------------

def int_forms(value: int) -> list[bytes]:
    """Every msgpack encoding of ``value`` (minimal or not)."""
    forms = []
    if 0 <= value <= 0x7F:
        forms.append(bytes([value]))
    if -32 <= value < 0:
        forms.append(struct.pack("b", value))
    for marker, fmt, lo, hi in [(0xCC, ">B", 0, 2**8 - 1), (0xCD, ">H", 0, 2**16 - 1),
                                (0xCE, ">I", 0, 2**32 - 1), (0xCF, ">Q", 0, 2**64 - 1),
                                (0xD0, ">b", -(2**7), 2**7 - 1), (0xD1, ">h", -(2**15), 2**15 - 1),
                                (0xD2, ">i", -(2**31), 2**31 - 1),
                                (0xD3, ">q", -(2**63), 2**63 - 1)]:
        if lo <= value <= hi:
            forms.append(bytes([marker]) + struct.pack(fmt, value))
    return forms


@pytest.mark.parametrize("value", INTS)
def test_each_integer_only_in_its_smallest_form(value: int) -> None:
    forms = int_forms(value)
    assert canonical.encode(value) in forms
    for form in forms:
        check(form)
        got = fast(form, NOT_HANDLED)  # type: ignore[misc]
        assert (got is not NOT_HANDLED) == (form == canonical.encode(value))


def length_forms(kind: str, n: int) -> list[bytes]:
    """Every header of a ``kind`` (str, bin, array, map) of ``n`` items or bytes."""
    fix = {"str": (0xA0, 32), "array": (0x90, 16), "map": (0x80, 16)}
    sized = {"str": [(0xD9, ">B"), (0xDA, ">H"), (0xDB, ">I")],
             "bin": [(0xC4, ">B"), (0xC5, ">H"), (0xC6, ">I")],
             "array": [(0xDC, ">H"), (0xDD, ">I")],
             "map": [(0xDE, ">H"), (0xDF, ">I")]}
    forms = []
    if kind in fix and n < fix[kind][1]:
        forms.append(bytes([fix[kind][0] | n]))
    for marker, fmt in sized[kind]:
        if n < 1 << (8 * struct.calcsize(fmt)):
            forms.append(bytes([marker]) + struct.pack(fmt, n))
    return forms


def body(kind: str, n: int) -> bytes:
    if kind in ("str", "bin"):
        return b"a" * n
    if kind == "array":
        return b"\xc0" * n
    # distinct, sorted keys of equal length, each with a nil value
    return b"".join(b"\xa5" + f"{i:05d}".encode() + b"\xc0" for i in range(n))


@pytest.mark.parametrize("kind", ["str", "bin", "array", "map"])
@pytest.mark.parametrize("n", LENGTHS)
def test_each_length_only_in_its_smallest_header(kind: str, n: int) -> None:
    minimal = None
    for header in length_forms(kind, n):
        data = header + body(kind, n)
        check(data)
        if fast(data, NOT_HANDLED) is not NOT_HANDLED:  # type: ignore[misc]
            assert minimal is None, "two headers accepted for one length"
            minimal = header
    assert minimal is not None
    assert canonical.encode_pure(canonical.decode_reference(minimal + body(kind, n))) \
        .startswith(minimal)


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"\xca\x00\x00\x00\x00", b"\xcb" + bytes(8),  # unused marker, floats
    b"\xd4\x01\x00", b"\xc7\x01\x01\x00",  # ext types
    b"\x82\xa1b\x01\xa1a\x02",  # keys out of order
    b"\x82\xa1a\x01\xa1a\x02",  # a repeated key
    b"\x82\xa1a\x01\xa2a\x00\x02",  # "a" < "a\\0": in order
    b"\x81\xc4\x01a\x01", b"\x81\x01\x01", b"\x81\xc0\x01",  # keys that are not str
    b"\xa2\xed\xa0", b"\xa3\xed\xa0\x80", b"\xa2\xc0\x80", b"\xa1\xff",  # bad UTF-8
    b"\x01\x00", b"\x90\x90",  # trailing bytes
    b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff\xa0",  # counts beyond the data
    b"\xc6\xff\xff\xff\xff", b"\xdb\x00\x01\x00\x00abc",  # lengths beyond the data
    b"\x92\x01", b"\x81\xa1a",  # cut short
])
def test_odd_inputs_agree_with_the_reference(data: bytes) -> None:
    check(data)


@pytest.mark.parametrize("depth", [30, 31, 32, 33, 34, 40])
@pytest.mark.parametrize("kind", ["list", "map"])
def test_the_nesting_limit_is_the_reference_limit(depth: int, kind: str) -> None:
    nested = b""
    for _ in range(depth):
        nested += b"\x91" if kind == "list" else b"\x81\xa1k"
    check(nested + b"\x01")


def test_decode_takes_the_compiled_pass_and_keeps_the_reference_errors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"a": [1, b"x", None, True], "b": "é"}
    data = canonical.encode(value)

    def no_reference(_: bytes) -> Any:
        raise AssertionError("the compiled pass should have answered")

    monkeypatch.setattr(canonical, "decode_reference", no_reference)
    assert same(canonical.decode(data), value)
    monkeypatch.undo()
    for bad in [b"\xcc\x05", b"\x82\xa1b\x01\xa1a\x02", b"\x01\x02", b"\xca\x00\x00\x00\x00"]:
        with pytest.raises(canonical.CanonicalError) as fast_error:
            canonical.decode(bad)
        canonical.use_compiled_encoder(False)
        try:
            with pytest.raises(canonical.CanonicalError) as pure_error:
                canonical.decode(bad)
        finally:
            canonical.use_compiled_encoder(True)
        assert str(fast_error.value) == str(pure_error.value)


def test_inputs_other_than_bytes_go_the_reference_way() -> None:
    data = canonical.encode({"a": 1})
    assert fast(bytearray(data), NOT_HANDLED) is NOT_HANDLED  # type: ignore[misc]
    assert fast(memoryview(data), NOT_HANDLED) is NOT_HANDLED  # type: ignore[misc]
    assert canonical.decode(bytearray(data)) == {"a": 1}
    assert canonical.decode(memoryview(data)) == {"a": 1}


def test_a_huge_declared_map_allocates_nothing_for_it() -> None:
    # 2**32 - 1 entries declared, two bytes given: refused before any allocation.
    assert fast(b"\xdf\xff\xff\xff\xff\xa0\xc0", NOT_HANDLED) is NOT_HANDLED  # type: ignore[misc]
    assert fast(b"\xdd\xff\xff\xff\xff" + b"\xc0" * 10, NOT_HANDLED) is NOT_HANDLED  # type: ignore[misc]


@settings(max_examples=300, deadline=None)
@given(values)
def test_trusted_decoding_gives_what_msgpack_gives(value: Any) -> None:
    """``decode_trusted`` (the node's own state and records) takes the compiled pass for
    canonical bytes: the same value msgpack's unpacker gives, key order included."""
    import msgpack

    data = canonical.encode(value)
    assert same(canonical.decode_trusted(data),
                msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True))


def test_trusted_decoding_of_other_bytes_is_msgpack_s() -> None:
    import msgpack

    for data in [b"\x82\xa1b\x01\xa1a\x02", b"\xcc\x05", b"\xcb" + bytes(8)]:  # not canonical
        assert same(canonical.decode_trusted(data), msgpack.unpackb(data, raw=False))
    assert canonical.decode_trusted(bytearray(b"\x91\x01")) == [1]


def test_nested_counts_cannot_each_claim_the_whole_input() -> None:
    """Review finding: each of 33 nested array headers declared almost the whole input, and
    each level allocated a list for that many items before the input ran out (~1 GB of
    address space for 4 MB, 5x the reference's time, MemoryError under a memory limit).
    A count is now believed only if the bytes left cover it and what the enclosing
    containers still need."""
    import tracemalloc

    size = 1 << 20
    levels = 33
    data = b"".join(b"\xdd" + struct.pack(">I", size - 5 * levels - 10) for _ in range(levels))
    data += b"\x01" * (size - len(data))
    tracemalloc.start()
    try:
        assert fast(data, NOT_HANDLED) is NOT_HANDLED  # type: ignore[misc]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * size  # one level's list (8 bytes an item) at most, not 33 of them
    check(data)
    # Maps as well, and a legitimate nesting that uses every byte still decodes.
    nested_maps = b"".join(b"\xdf" + struct.pack(">I", 1 << 18) + b"\xa1k" for _ in range(8))
    check(nested_maps + b"\x01" * (1 << 20))
    exact = b"\x92" + b"\x92" * 20 + b"\x01" * 21 + b"\x01"
    assert same(fast(exact, NOT_HANDLED), canonical.decode_reference(exact))  # type: ignore[misc]


def test_the_collector_is_off_while_lists_fill_and_back_after() -> None:
    import gc

    data = canonical.encode([[i, [b"x"] * 5] for i in range(200)])
    seen: list[bool] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        seen.append(True)

    gc.callbacks.append(callback)
    try:
        assert gc.isenabled()
        threshold = gc.get_threshold()
        gc.set_threshold(1)  # a collection at every allocation, were the collector on
        try:
            assert fast(data, NOT_HANDLED) is not NOT_HANDLED  # type: ignore[misc]
        finally:
            gc.set_threshold(*threshold)
        assert seen == []
        assert gc.isenabled()
        gc.disable()
        try:
            fast(data, NOT_HANDLED)  # type: ignore[misc]
            assert not gc.isenabled()  # left as the caller had it
        finally:
            gc.enable()
    finally:
        gc.callbacks.remove(callback)
