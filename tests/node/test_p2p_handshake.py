"""Sans-I/O tests of the p2p handshake and frame layer (no sockets, no event loop)."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from consensus import canonical
from node.p2p.frames import (
    HEADER_SIZE,
    TAG_SIZE,
    FrameDecoder,
    FrameError,
    FrameOpener,
    FrameSealer,
    compute_nonce,
)
from node.p2p.handshake import (
    AUTH_MAX_FRAME,
    HELLO_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    Handshake,
    HandshakeError,
    HandshakeResult,
    check_auth,
    compute_session_keys,
    local_runtime,
    make_auth,
    make_hello,
    parse_hello,
    parse_runtime,
    split_frame,
)
from node.p2p.peer_manager import P2PConfig, PeerManager, compute_backoff

CHAIN = "jangbu-test"


def make_key(seed: int) -> SigningKey:
    return SigningKey(bytes([seed]) * 32)


def pub(key: SigningKey) -> bytes:
    return bytes(key.verify_key)


A, B, C = make_key(1), make_key(2), make_key(3)
ALLOWED = frozenset({pub(A), pub(B)})


def run_handshake(left: Handshake, right: Handshake) -> tuple[HandshakeResult, HandshakeResult]:
    """Exchange hellos and auth frames in memory, like two sockets would."""
    auth_left = left.receive_hello(right.hello())
    auth_right = right.receive_hello(left.hello())
    return left.receive_auth(*split_frame(auth_right)), right.receive_auth(*split_frame(auth_left))


def new_handshake(
    key: SigningKey, chain_id: str = CHAIN, allowed: frozenset[bytes] = ALLOWED
) -> Handshake:
    return Handshake(chain_id=chain_id, node_key=key, allowed=allowed)


# --------------------------------------------------------------------------- handshake


def test_handshake_authenticates_both_static_keys() -> None:
    res_a, res_b = run_handshake(new_handshake(A), new_handshake(B))
    assert res_a.peer_pubkey == pub(B)
    assert res_b.peer_pubkey == pub(A)


def test_handshake_yields_matching_directional_channels() -> None:
    res_a, res_b = run_handshake(new_handshake(A), new_handshake(B))
    # Each direction opens what the other sealed, continuing after the auth frame.
    assert res_b.opener.open(*split_frame(res_a.sealer.seal(b"a->b"))) == b"a->b"
    assert res_a.opener.open(*split_frame(res_b.sealer.seal(b"b->a"))) == b"b->a"
    assert res_a.sealer.counter == 2 and res_b.opener.counter == 2


def test_session_keys_differ_per_direction_and_agree_across_ends() -> None:
    eph_a, eph_b = PrivateKey.generate(), PrivateKey.generate()
    keys_a = compute_session_keys(eph_a, bytes(eph_b.public_key))
    keys_b = compute_session_keys(eph_b, bytes(eph_a.public_key))
    assert keys_a.send_key == keys_b.recv_key
    assert keys_a.recv_key == keys_b.send_key
    assert keys_a.send_key != keys_a.recv_key
    assert (keys_a.eph_lo, keys_a.eph_hi) == (keys_b.eph_lo, keys_b.eph_hi)


def test_hello_is_magic_version_and_ephemeral_key() -> None:
    eph = PrivateKey.generate()
    hello = make_hello(bytes(eph.public_key))
    assert len(hello) == HELLO_SIZE == 38
    assert hello.startswith(MAGIC) and hello[5] == PROTOCOL_VERSION
    assert parse_hello(hello) == (PROTOCOL_VERSION, bytes(eph.public_key))


def test_invalid_hello_wrong_magic() -> None:
    with pytest.raises(HandshakeError) as err:
        parse_hello(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(11))
    assert err.value.reason == "bad_hello"


def test_invalid_hello_wrong_version() -> None:
    hello = MAGIC + bytes([PROTOCOL_VERSION + 1]) + bytes(range(32))
    with pytest.raises(HandshakeError) as err:
        parse_hello(hello)
    assert err.value.reason == "version"


def test_invalid_hello_low_order_ephemeral_key() -> None:
    hs = new_handshake(A)
    with pytest.raises(HandshakeError) as err:
        hs.receive_hello(make_hello(bytes(32)))
    assert err.value.reason == "bad_hello"


def test_invalid_hello_reflected_ephemeral_key() -> None:
    hs = new_handshake(A)
    with pytest.raises(HandshakeError) as err:
        hs.receive_hello(hs.hello())
    assert err.value.reason == "bad_hello"


def test_invalid_handshake_wrong_chain_id() -> None:
    with pytest.raises(HandshakeError) as err:
        run_handshake(new_handshake(A), new_handshake(B, chain_id="other-chain"))
    assert err.value.reason == "chain_id"


def test_invalid_handshake_unknown_key() -> None:
    left, right = new_handshake(A), new_handshake(C)
    auth_right = right.receive_hello(left.hello())
    left.receive_hello(right.hello())
    with pytest.raises(HandshakeError) as err:
        left.receive_auth(*split_frame(auth_right))
    assert err.value.reason == "unknown_key"


def test_invalid_handshake_with_ourselves() -> None:
    with pytest.raises(HandshakeError) as err:
        run_handshake(new_handshake(A), new_handshake(A))
    assert err.value.reason == "self"


def test_invalid_auth_signed_for_another_transcript() -> None:
    # A man in the middle replays B's auth from a different key exchange.
    left = new_handshake(A)
    eph_mitm = PrivateKey.generate()
    left_auth = left.receive_hello(make_hello(bytes(eph_mitm.public_key)))
    assert left_auth
    mitm_keys = compute_session_keys(eph_mitm, bytes(PrivateKey.generate().public_key))
    replayed = make_auth(B, CHAIN, mitm_keys)
    left_view = compute_session_keys(eph_mitm, parse_hello(left.hello())[1])
    frame = FrameSealer(left_view.send_key).seal(canonical.encode(replayed))
    with pytest.raises(HandshakeError) as err:
        left.receive_auth(*split_frame(frame))
    assert err.value.reason == "bad_signature"


def test_invalid_auth_frame_tampered() -> None:
    left, right = new_handshake(A), new_handshake(B)
    auth_right = bytearray(right.receive_hello(left.hello()))
    left.receive_hello(right.hello())
    auth_right[-1] ^= 1
    with pytest.raises(HandshakeError) as err:
        left.receive_auth(*split_frame(bytes(auth_right)))
    assert err.value.reason == "bad_auth"


def test_invalid_auth_frame_too_large_is_refused_from_header() -> None:
    hs = new_handshake(A)
    hs.receive_hello(new_handshake(B).hello())
    header = (AUTH_MAX_FRAME + TAG_SIZE + 1).to_bytes(4, "big")
    with pytest.raises(HandshakeError) as err:
        hs.auth_body_length(header)
    assert err.value.reason == "bad_auth"


def test_check_auth_rejects_wrong_shapes() -> None:
    keys = compute_session_keys(PrivateKey.generate(), bytes(PrivateKey.generate().public_key))
    good = make_auth(B, CHAIN, keys)

    def check(msg: object) -> bytes:
        return check_auth(msg, chain_id=CHAIN, keys=keys, own_pubkey=pub(A), allowed=ALLOWED)

    assert check(good) == pub(B)
    for bad, reason in [
        ([], "bad_auth"),
        ({**good, "t": "msg"}, "bad_auth"),
        ({**good, "pubkey": b"short"}, "bad_auth"),
        ({**good, "sig": bytes(10)}, "bad_auth"),
        ({**good, "version": 99}, "version"),
        ({**good, "chain_id": "x"}, "chain_id"),
        ({**good, "sig": bytes(64)}, "bad_signature"),
    ]:
        with pytest.raises(HandshakeError) as err:
            check(bad)
        assert err.value.reason == reason


def test_handshake_calls_out_of_order_are_our_bug() -> None:
    hs = new_handshake(A)
    with pytest.raises(RuntimeError):
        hs.receive_auth(b"\x00" * 4, b"")


# --------------------------------------------------------------------------- frames

KEY = bytes(range(32))


def test_frame_roundtrip_and_wire_layout() -> None:
    frame = FrameSealer(KEY).seal(b"hello")
    assert int.from_bytes(frame[:HEADER_SIZE], "big") == len(b"hello") + TAG_SIZE
    assert len(frame) == HEADER_SIZE + 5 + TAG_SIZE
    assert FrameOpener(KEY).open(*split_frame(frame)) == b"hello"


def test_nonce_is_counter_in_last_eight_bytes() -> None:
    assert compute_nonce(0) == bytes(12)
    assert compute_nonce(1) == bytes(4) + b"\x01" + bytes(7)


def test_invalid_frame_replayed_or_reordered() -> None:
    sealer, opener = FrameSealer(KEY), FrameOpener(KEY)
    first, second = sealer.seal(b"1"), sealer.seal(b"2")
    with pytest.raises(FrameError) as err:
        opener.open(*split_frame(second))
    assert err.value.reason == "bad_frame"
    opener = FrameOpener(KEY)
    opener.open(*split_frame(first))
    with pytest.raises(FrameError):
        opener.open(*split_frame(first))


def test_invalid_frame_from_other_direction_key() -> None:
    frame = FrameSealer(KEY).seal(b"x")
    with pytest.raises(FrameError):
        FrameOpener(bytes(32)).open(*split_frame(frame))


def test_invalid_frame_header_is_authenticated() -> None:
    frame = FrameSealer(KEY).seal(b"abcdef")
    header, body = split_frame(frame)
    with pytest.raises(FrameError):
        FrameOpener(KEY).open(header, body[:-1])


def test_invalid_frame_oversized_rejected_from_header_alone() -> None:
    decoder = FrameDecoder(FrameOpener(KEY, max_frame=1024))
    with pytest.raises(FrameError) as err:
        decoder.feed((1024 + TAG_SIZE + 1).to_bytes(4, "big"))
    assert err.value.reason == "frame_too_large"
    assert decoder.buffered == 0
    with pytest.raises(FrameError):
        decoder.feed(b"more")


def test_invalid_frame_shorter_than_tag() -> None:
    with pytest.raises(FrameError) as err:
        FrameDecoder(FrameOpener(KEY)).feed((TAG_SIZE - 1).to_bytes(4, "big"))
    assert err.value.reason == "bad_header"


def test_seal_refuses_oversized_plaintext_locally() -> None:
    with pytest.raises(ValueError):
        FrameSealer(KEY, max_frame=1024).seal(bytes(1025))


def test_decoder_reassembles_frames_split_at_any_byte() -> None:
    sealer = FrameSealer(KEY)
    stream = b"".join(sealer.seal(bytes([i]) * i) for i in range(20))
    decoder = FrameDecoder(FrameOpener(KEY))
    rng = random.Random(7)
    out: list[bytes] = []
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 9)
        out += decoder.feed(stream[pos : pos + step])
        pos += step
    assert out == [bytes([i]) * i for i in range(20)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_fuzz_frame_decoder_raises_only_frame_error(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(FrameOpener(KEY, max_frame=4096))
    with contextlib.suppress(FrameError):
        for chunk in chunks:
            assert decoder.feed(chunk) == []  # random bytes never authenticate


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255), st.integers(1, 50))
def test_fuzz_corrupted_stream_yields_a_prefix_then_frame_error(
    where: int, flip: int, chunk: int
) -> None:
    sealer = FrameSealer(KEY)
    payloads = [bytes([i]) * (i * 7) for i in range(6)]
    stream = bytearray(b"".join(sealer.seal(p) for p in payloads))
    stream[where % len(stream)] ^= flip
    decoder = FrameDecoder(FrameOpener(KEY, max_frame=4096))
    out: list[bytes] = []
    with pytest.raises(FrameError):
        for pos in range(0, len(stream), chunk):
            out += decoder.feed(bytes(stream[pos : pos + chunk]))
        raise FrameError("truncated")  # a length flipped upwards leaves a partial frame
    assert out == payloads[: len(out)]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2 * HELLO_SIZE))
def test_fuzz_hello_raises_only_handshake_error(data: bytes) -> None:
    hs = new_handshake(A)
    with contextlib.suppress(HandshakeError):
        hs.receive_hello(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=HEADER_SIZE, max_size=600))
def test_fuzz_auth_frame_raises_only_handshake_error(data: bytes) -> None:
    hs = new_handshake(A)
    hs.receive_hello(new_handshake(B).hello())
    with pytest.raises(HandshakeError):
        header, body = split_frame(data)
        hs.auth_body_length(header)
        hs.receive_auth(header, body)


canonical_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.binary(max_size=70)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["t", "pubkey", "sig", "chain_id", "version"]), canonical_values
    )
)
def test_fuzz_check_auth_raises_only_handshake_error(msg: dict[str, object]) -> None:
    keys = compute_session_keys(PrivateKey.generate(), bytes(PrivateKey.generate().public_key))
    with pytest.raises(HandshakeError):
        check_auth(msg, chain_id=CHAIN, keys=keys, own_pubkey=pub(A), allowed=ALLOWED)


# --------------------------------------------------------------------------- pure policy


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for failures in range(12):
        delay = compute_backoff(failures, 0.1, 3.0, rng)
        ceiling = min(3.0, 0.1 * 2**failures)
        assert ceiling / 2 <= delay <= ceiling


def test_send_queue_drops_oldest_when_full() -> None:
    mgr = PeerManager(
        CHAIN,
        A,
        {pub(A): ("a", "127.0.0.1", 0), pub(B): ("b", "127.0.0.1", 0)},
        config=P2PConfig(queue_max_messages=3),
    )
    for i in range(10):
        mgr.send(pub(B), {"n": i})
    peer_stats = mgr.stats()["peers"][pub(B).hex()]
    assert peer_stats["queued"] == 3 and peer_stats["messages_dropped"] == 7


def test_invalid_send_to_unknown_peer_or_oversized_message() -> None:
    mgr = PeerManager(CHAIN, A, {pub(B): ("b", "127.0.0.1", 0)}, config=P2PConfig(max_frame=1024))
    with pytest.raises(KeyError):
        mgr.send(pub(C), {"x": 1})
    with pytest.raises(ValueError):
        mgr.send(pub(B), {"x": bytes(2000)})
    with pytest.raises(canonical.CanonicalError):
        mgr.broadcast({"x": 1.5})


# --------------------------------------------------------------------------- genesis

GENESIS_1 = bytes(range(32))
GENESIS_2 = bytes(range(1, 33))


def refusals_on_both_ends(left: Handshake, right: Handshake) -> list[HandshakeError]:
    """Run both ends' steps; each end must refuse the other's auth: what each raised."""
    auth_left = left.receive_hello(right.hello())
    auth_right = right.receive_hello(left.hello())
    refused = []
    for side, frame in ((left, auth_right), (right, auth_left)):
        with pytest.raises(HandshakeError) as err:
            side.receive_auth(*split_frame(frame))
        refused.append(err.value)
    return refused


def test_invalid_handshake_other_genesis_is_refused_on_both_ends() -> None:
    """Two nodes of one chain id whose genesis files differ (a ``block_version``, a timeout)
    used to connect and then halt at the first block the difference decided."""
    for error in refusals_on_both_ends(
            Handshake(chain_id=CHAIN, node_key=A, allowed=ALLOWED, genesis=GENESIS_1),
            Handshake(chain_id=CHAIN, node_key=B, allowed=ALLOWED, genesis=GENESIS_2)):
        assert error.reason == "genesis"
        assert "genesis.json" in error.detail


def test_same_genesis_connects() -> None:
    res_a, res_b = run_handshake(
        Handshake(chain_id=CHAIN, node_key=A, allowed=ALLOWED, genesis=GENESIS_1),
        Handshake(chain_id=CHAIN, node_key=B, allowed=ALLOWED, genesis=GENESIS_1))
    assert res_a.peer_pubkey == pub(B) and res_b.peer_pubkey == pub(A)


def test_a_peer_that_names_no_genesis_still_connects() -> None:
    """Builds from before the genesis field send none: a rolling upgrade keeps working."""
    res_a, res_b = run_handshake(
        Handshake(chain_id=CHAIN, node_key=A, allowed=ALLOWED, genesis=GENESIS_1),
        new_handshake(B))
    assert res_a.peer_pubkey == pub(B) and res_b.peer_pubkey == pub(A)


def test_invalid_genesis_field_shape_is_refused() -> None:
    keys = compute_session_keys(PrivateKey.generate(), bytes(PrivateKey.generate().public_key))
    good = make_auth(B, CHAIN, keys, genesis=GENESIS_1)
    assert good["genesis"] == GENESIS_1

    def check(msg: object) -> bytes:
        return check_auth(msg, chain_id=CHAIN, keys=keys, own_pubkey=pub(A), allowed=ALLOWED,
                          genesis=GENESIS_1)

    assert check(good) == pub(B)
    stranger = make_auth(C, CHAIN, keys, genesis=GENESIS_2)  # a key not in the allowed set
    for bad, reason in [({**good, "genesis": b"short"}, "bad_auth"),
                        ({**good, "genesis": "00" * 32}, "bad_auth"),
                        ({**good, "genesis": GENESIS_2}, "genesis"),
                        # Only an authenticated, allowed peer may be blamed on the genesis
                        # files (review): a forger or a stranger is refused for what it is.
                        ({**good, "genesis": GENESIS_2, "sig": bytes(64)}, "bad_signature"),
                        (stranger, "unknown_key")]:
        with pytest.raises(HandshakeError) as err:
            check(bad)
        assert err.value.reason == reason


# --------------------------------------------------------------------------- runtime

RUNTIME_1 = {"python": "3.11", "unicode": "14.0.0"}
RUNTIME_2 = {"python": "3.12", "unicode": "15.0.0"}


def test_local_runtime_names_the_minor_version_and_unicode() -> None:
    import sys
    import unicodedata
    runtime = local_runtime()
    assert runtime == {"python": f"{sys.version_info.major}.{sys.version_info.minor}",
                       "unicode": unicodedata.unidata_version}


def test_invalid_handshake_other_runtime_is_refused_on_both_ends() -> None:
    """Another Python minor version can write other receipt bytes for one transaction
    (repr and case folding follow its Unicode tables): refused when linking, both ends."""
    for error in refusals_on_both_ends(
            Handshake(chain_id=CHAIN, node_key=A, allowed=ALLOWED, runtime=RUNTIME_1),
            Handshake(chain_id=CHAIN, node_key=B, allowed=ALLOWED, runtime=RUNTIME_2)):
        assert error.reason == "runtime"
        assert "python 3.11, unicode 14.0.0" in error.detail
        assert "python 3.12, unicode 15.0.0" in error.detail


def test_other_runtime_connects_when_not_refused_and_is_reported() -> None:
    res_a, res_b = run_handshake(
        Handshake(chain_id=CHAIN, node_key=A, allowed=ALLOWED, runtime=RUNTIME_1,
                  refuse_other_runtime=False),
        Handshake(chain_id=CHAIN, node_key=B, allowed=ALLOWED, runtime=RUNTIME_2,
                  refuse_other_runtime=False))
    assert res_a.peer_runtime == RUNTIME_2 and res_b.peer_runtime == RUNTIME_1


def test_same_runtime_connects_and_a_peer_naming_none_still_connects() -> None:
    res_a, res_b = run_handshake(
        Handshake(chain_id=CHAIN, node_key=A, allowed=ALLOWED, runtime=RUNTIME_1),
        Handshake(chain_id=CHAIN, node_key=B, allowed=ALLOWED, runtime=RUNTIME_1))
    assert res_a.peer_runtime == RUNTIME_1
    # Builds from before the field name none: linked, reported as unknown.
    res_a, res_b = run_handshake(
        Handshake(chain_id=CHAIN, node_key=A, allowed=ALLOWED, runtime=RUNTIME_1),
        new_handshake(B))
    assert res_a.peer_runtime is None and res_b.peer_runtime == RUNTIME_1


def test_a_runtime_field_this_build_cannot_read_counts_as_none() -> None:
    """Review: refusing a malformed or extended field (``bad_auth``) would have a later
    build that adds a key to it refused by this one in the middle of a rolling upgrade."""
    keys = compute_session_keys(PrivateKey.generate(), bytes(PrivateKey.generate().public_key))
    good = make_auth(B, CHAIN, keys, runtime=RUNTIME_1)
    assert good["runtime"] == RUNTIME_1
    assert len(canonical.encode(good)) + TAG_SIZE + HEADER_SIZE < AUTH_MAX_FRAME

    def check(msg: object) -> bytes:
        return check_auth(msg, chain_id=CHAIN, keys=keys, own_pubkey=pub(A), allowed=ALLOWED,
                          runtime=RUNTIME_1)

    assert check(good) == pub(B)
    assert parse_runtime(good["runtime"]) == RUNTIME_1
    # Extra keys: read, the rest ignored (and compared on what is read).
    extended = {**RUNTIME_1, "abi": "cp311"}
    assert parse_runtime(extended) == RUNTIME_1
    assert check({**good, "runtime": extended}) == pub(B)
    for unreadable in ("3.11", {"python": "3.11"}, {"python": 3, "unicode": "14.0.0"},
                       {"python": "", "unicode": "14.0.0"},
                       {"python": "3" * 17, "unicode": "14.0.0"},
                       {"python": "3.11\n", "unicode": "14.0.0"},
                       {"python": "３.11", "unicode": "14.0.0"}):
        assert parse_runtime(unreadable) is None, unreadable
        assert check({**good, "runtime": unreadable}) == pub(B)  # linked as an older build
    with pytest.raises(HandshakeError) as err:
        check({**good, "runtime": RUNTIME_2})
    assert err.value.reason == "runtime"
    # Only an authenticated, allowed peer is blamed on its runtime.
    with pytest.raises(HandshakeError) as err:
        check({**good, "runtime": RUNTIME_2, "sig": bytes(64)})
    assert err.value.reason == "bad_signature"
