"""Canonical encoding: one byte form per value, and hostile bytes never crash the decoder."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import canonical

keys = st.text(max_size=8)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) \
    | st.binary(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=20)


@given(values)
def test_round_trip_is_identity_and_stable(value):
    data = canonical.encode(value)
    assert canonical.encode(canonical.decode(data)) == data


@given(st.dictionaries(keys, st.integers(0, 10), min_size=2, max_size=6))
def test_key_order_does_not_change_bytes(mapping):
    reordered = dict(reversed(list(mapping.items())))
    assert canonical.encode(mapping) == canonical.encode(reordered)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_canonical_error(data):
    with contextlib.suppress(canonical.CanonicalError):
        canonical.decode(data)


def test_invalid_float_is_refused():
    with pytest.raises(canonical.CanonicalError, match="floats"):
        canonical.encode({"amount": 1.5})


def test_invalid_unsorted_map_bytes_are_refused():
    raw = msgpack.packb({"b": 1, "a": 2})
    with pytest.raises(canonical.CanonicalError, match="canonical"):
        canonical.decode(raw)


def test_invalid_non_string_key_is_refused():
    with pytest.raises(canonical.CanonicalError):
        canonical.encode({1: "x"})
    with pytest.raises(canonical.CanonicalError):
        canonical.decode(msgpack.packb({1: "x"}))


def test_invalid_trailing_bytes_are_refused():
    with pytest.raises(canonical.CanonicalError):
        canonical.decode(canonical.encode(1) + b"\x00")


def test_invalid_oversized_message_is_refused():
    with pytest.raises(canonical.CanonicalError, match="limit"):
        canonical.decode(canonical.encode(b"x" * 1000), max_bytes=100)


def test_invalid_deep_nesting_is_refused():
    deep: list = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(canonical.CanonicalError, match="deep"):
        canonical.encode(deep)


def test_signature_is_bound_to_tag_and_chain():
    from nacl.signing import SigningKey
    key = SigningKey(b"\x01" * 32)
    pub = key.verify_key.encode()
    sig = canonical.sign(key, "jangbu/tx/v1", "chain-a", {"x": 1})
    assert canonical.verify(pub, "jangbu/tx/v1", "chain-a", {"x": 1}, sig)
    assert not canonical.verify(pub, "jangbu/vote/v1", "chain-a", {"x": 1}, sig)
    assert not canonical.verify(pub, "jangbu/tx/v1", "chain-b", {"x": 1}, sig)
    assert not canonical.verify(pub, "jangbu/tx/v1", "chain-a", {"x": 2}, sig)
