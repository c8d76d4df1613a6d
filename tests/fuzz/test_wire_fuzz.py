"""Fuzzing the decoders a peer can reach: canonical msgpack, consensus messages, blocks,
transactions, AEAD frames and the handshake. Bad bytes raise the decoder's own error type
(the transport closes the link or the driver counts it), never anything else."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from consensus import canonical
from consensus.types import InvalidMessage, Vote, VoteType, message_from_obj, message_to_obj
from node.block import Block, BlockError, decode_header
from node.p2p.frames import FrameError
from node.p2p.handshake import HELLO_SIZE, Handshake, HandshakeError
from node.tx import Transaction, TxError

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

leaves = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                   st.binary(max_size=80), st.text(max_size=20), st.floats(allow_nan=True))
objects = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=12), inner, max_size=8)),
    max_leaves=30)


def _valid_vote_obj() -> dict:
    key = SigningKey(b"\x01" * 32)
    vote = Vote(VoteType.PREVOTE, 3, 0, b"\x02" * 32, key.verify_key.encode(), b"\x03" * 64)
    return message_to_obj(vote)


@FAST
@given(st.binary(max_size=2000))
def test_invalid_bytes_never_crash_the_canonical_decoder(data):
    with contextlib.suppress(canonical.CanonicalError):
        canonical.decode(data, max_bytes=4096)


@FAST
@given(objects)
def test_invalid_objects_are_refused_as_invalid_messages(obj):
    with contextlib.suppress(InvalidMessage):
        message_from_obj(obj)


@FAST
@given(st.sampled_from(sorted(_valid_vote_obj())), objects)
def test_invalid_vote_fields_are_refused_as_invalid_messages(field, value):
    obj = {"kind": "vote", **_valid_vote_obj()} if "kind" in _valid_vote_obj() else \
        dict(_valid_vote_obj())
    obj[field] = value
    with contextlib.suppress(InvalidMessage):
        message_from_obj(obj)


@FAST
@given(st.binary(max_size=3000))
def test_invalid_block_bytes_raise_block_error(data):
    with contextlib.suppress(BlockError):
        Block.decode(data)
    with contextlib.suppress(BlockError):
        decode_header(data)


@FAST
@given(objects)
def test_invalid_transaction_objects_raise_tx_error(obj):
    for attempt in (lambda: Transaction.from_obj(obj), lambda: Transaction.from_json(obj)):
        with contextlib.suppress(TxError):
            attempt()


@FAST
@given(st.binary(max_size=3000))
def test_invalid_transaction_bytes_raise_tx_error(data):
    with contextlib.suppress(TxError):
        Transaction.decode(data)


def _pair() -> tuple[Handshake, Handshake]:
    a_key, b_key = SigningKey.generate(), SigningKey.generate()
    allowed = frozenset({a_key.verify_key.encode(), b_key.verify_key.encode()})
    return (Handshake(chain_id="fuzz", node_key=a_key, allowed=allowed, max_frame=1 << 20),
            Handshake(chain_id="fuzz", node_key=b_key, allowed=allowed, max_frame=1 << 20))


@FAST
@given(st.binary(min_size=HELLO_SIZE, max_size=HELLO_SIZE))
def test_invalid_hello_raises_handshake_error(hello):
    a, _ = _pair()
    a.hello()
    with contextlib.suppress(HandshakeError):
        a.receive_hello(hello)


@FAST
@given(st.binary(max_size=64), st.binary(max_size=400))
def test_invalid_auth_frame_raises_handshake_error(header, body):
    a, b = _pair()
    a_hello, b_hello = a.hello(), b.hello()
    a.receive_hello(b_hello)
    b.receive_hello(a_hello)
    try:
        a.auth_body_length(header)
        a.receive_auth(header, body)
    except (HandshakeError, FrameError):
        pass


@FAST
@given(st.integers(min_value=0, max_value=200), st.binary(max_size=64))
def test_tampered_auth_frame_raises_handshake_error(position, garbage):
    a, b = _pair()
    a_hello, b_hello = a.hello(), b.hello()
    auth_from_b = b.receive_hello(a_hello)
    a.receive_hello(b_hello)
    tampered = bytearray(auth_from_b)
    if tampered:
        tampered[position % len(tampered)] ^= 0x5A
    data = bytes(tampered) + garbage
    from node.p2p.frames import HEADER_SIZE
    header, body = data[:HEADER_SIZE], data[HEADER_SIZE:]
    try:
        length = a.auth_body_length(header)
        a.receive_auth(header, body[:length])
    except (HandshakeError, FrameError):
        return
    raise AssertionError("a tampered auth frame was accepted")
