"""Canonical encoding, hashing and domain-separated Ed25519 signatures.

Everything jangbu hashes or signs goes through this module, so that two honest nodes (or an
integrator in another language, see ``docs/protocol.md``) always produce the same bytes.

Why it lives in ``consensus/``: it is the lowest layer that both the consensus core (votes,
proposals, certificates) and the node (transactions, blocks, receipts) need, and it does no
I/O. Contracts never see bytes: their context hashes and verifies for them.

The canonical form is msgpack with these rules:

* maps have ``str`` keys only, and are written with keys sorted by their UTF-8 bytes;
* no floats (amounts are integer minor units; decimals travel as strings);
* integers fit in a signed or unsigned 64-bit range;
* ``bytes`` are msgpack ``bin``, ``str`` is msgpack ``str`` (UTF-8), lists are arrays;
* ``True``/``False``/``None`` are themselves.

Hash: SHA-256. Signed bytes: ``tag || 0x00 || chain_id || 0x00 || canonical(body)``, where
the tag names what is signed (``jangbu/tx/v1``, ``jangbu/vote/v1``...), so a signature made
for one purpose or one network can never be replayed as another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack
import nacl.bindings
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Upper bound of any single canonical object we agree to decode (a whole block fits)."""

MAX_DEPTH = 32
"""Nesting deeper than this is refused: nothing legitimate needs it, and it bounds recursion."""

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

HASH_SIZE = 32
PUBKEY_SIZE = 32
SIGNATURE_SIZE = 64


def _load_compiled_encoder() -> Callable[[Any, int], bytes | None] | None:
    """The compiled encoder (``consensus/_speedups.c``) if it was built.

    It is optional: ``pip install`` builds it where a C compiler is present and quietly
    skips it elsewhere; both encoders give the same bytes (property-tested).
    """
    try:
        from consensus import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _speedups.encode  # type: ignore[no-any-return]


def _load_compiled_decoder() -> Callable[[bytes, object], Any] | None:
    """The compiled decoder (``consensus/_speedups.c``), if it was built: one pass that
    builds the value and checks its form, where the reference unpacks and then re-encodes.
    It steps aside (answers its second argument) for whatever it does not accept as
    canonical, and :func:`decode` then decides the reference way (property-tested)."""
    try:
        from consensus import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return None
    return getattr(_speedups, "decode", None)


class CanonicalError(ValueError):
    """Input that is not in canonical form (wrong type, float, bad key, too big or too deep).

    Always the fault of whoever sent the bytes; callers turn it into a stable error code.
    """

    code = "E_ENCODING"


_compiled_encode = _load_compiled_encoder()
_fast_encode = _compiled_encode
_compiled_decode = _load_compiled_decoder()
_fast_decode = _compiled_decode
_NOT_HANDLED = object()  # what the compiled decoder answers when it steps aside


def use_compiled_encoder(enabled: bool) -> bool:
    """Use the compiled codec (the default when built) or the pure one; True if in use.

    Both directions switch together: the encoder, and the decoder's one-pass check. The
    switch exists to measure one against the other and to rule the C code out when
    diagnosing; the node reads it from ``JANGBU_PURE_CODEC=1`` (node/app.py), since this
    package reads no environment.
    """
    global _fast_encode, _fast_decode
    _fast_encode = _compiled_encode if enabled else None
    _fast_decode = _compiled_decode if enabled else None
    return _fast_encode is not None


def _normalise(obj: Any, depth: int) -> Any:
    """Return ``obj`` with every map's keys sorted, checking each value is allowed.

    Keys are sorted as Python strings: code-point order equals UTF-8 byte order for every
    encodable string, so this is the byte order the protocol specifies. Exact built-in
    types take a fast path (this runs for every hash and state write).
    """
    kind = type(obj)
    if kind is str or kind is bytes or obj is None or kind is bool:
        return obj
    if kind is int:
        if obj < _INT_MIN or obj > _INT_MAX:
            raise CanonicalError(f"integer out of 64-bit range: {obj}")
        return obj
    if depth > MAX_DEPTH:
        raise CanonicalError("nesting too deep")
    if kind is dict:
        try:
            keys = sorted(obj)
        except TypeError:
            raise CanonicalError("map keys must be strings") from None
        if keys and type(keys[0]) is not str:
            raise CanonicalError(f"map keys must be strings, got {type(keys[0]).__name__}")
        depth += 1
        out = {}
        for key in keys:
            value = obj[key]
            vkind = type(value)
            # Leaves inline: most values are strings and small ints, and a call per leaf
            # would dominate the cost of hashing and storing state.
            if (vkind is str or vkind is bytes or vkind is bool or value is None
                    or (vkind is int and _INT_MIN <= value <= _INT_MAX)):
                out[key] = value
            else:
                out[key] = _normalise(value, depth)
        return out
    if kind is list or kind is tuple:
        depth += 1
        items = []
        for item in obj:
            ikind = type(item)
            if (ikind is str or ikind is bytes or ikind is bool or item is None
                    or (ikind is int and _INT_MIN <= item <= _INT_MAX)):
                items.append(item)
            else:
                items.append(_normalise(item, depth))
        return items
    return _normalise_slow(obj, depth)


def _normalise_slow(obj: Any, depth: int) -> Any:
    """Subclasses and other containers: same rules, checked one by one."""
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return _normalise(int(obj), depth)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, float):
        raise CanonicalError("floats are not allowed in canonical data; use integers or strings")
    if isinstance(obj, bytearray | memoryview):
        return bytes(obj)
    if isinstance(obj, Mapping):
        for key in obj:
            if not isinstance(key, str):
                raise CanonicalError(f"map keys must be strings, got {type(key).__name__}")
        return _normalise({str(k): v for k, v in obj.items()}, depth)
    if isinstance(obj, bytes):
        return bytes(obj)
    if isinstance(obj, Sequence):
        return _normalise(list(obj), depth)
    raise CanonicalError(f"type {type(obj).__name__} cannot be encoded canonically")


def encode(obj: Any, *, depth: int = 0, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """Encode ``obj`` in canonical msgpack form (raises :class:`CanonicalError`).

    ``depth``: how deep ``obj`` will sit inside a larger canonical value, so that the
    nesting limit is checked for the whole (the bytes are the same either way).
    ``max_bytes``: the size limit, the p2p message limit unless the caller has its own
    (:func:`decode` of an HTTP body re-encodes up to the request limit).

    The compiled encoder (``consensus/_speedups.c``), when built, writes the common plain
    shapes directly; it answers ``None`` for anything else, which then takes the pure path
    below, the one that decides what is canonical and names what is not.
    """
    if _fast_encode is not None:
        fast = _fast_encode(obj, depth)
        if fast is not None:
            if len(fast) > max_bytes:
                raise CanonicalError(
                    f"encoded object is {len(fast)} bytes, limit {max_bytes}")
            return fast
    return encode_pure(obj, depth=depth, max_bytes=max_bytes)


def encode_pure(obj: Any, *, depth: int = 0, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """:func:`encode` in Python only: the reference the compiled encoder is tested against."""
    try:
        data: bytes = msgpack.packb(_normalise(obj, depth), use_bin_type=True)
    except UnicodeEncodeError:
        raise CanonicalError("strings must be valid Unicode (no lone surrogates)") from None
    if len(data) > max_bytes:
        raise CanonicalError(f"encoded object is {len(data)} bytes, limit {max_bytes}")
    return data


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode bytes that must be canonical msgpack; anything else raises CanonicalError.

    Re-encoding the result must give back the same bytes: this refuses unsorted maps,
    floats, non-string keys, trailing bytes and non-minimal integer forms, so a value has
    exactly one byte representation and one hash. The compiled decoder checks that in the
    same pass that builds the value; whatever it does not accept goes the reference way
    (:func:`decode_reference`), which decides and names the error.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CanonicalError("expected bytes")
    if len(data) > max_bytes:
        raise CanonicalError(f"message is {len(data)} bytes, limit {max_bytes}")
    if _fast_decode is not None:
        fast = _fast_decode(data, _NOT_HANDLED)
        if fast is not _NOT_HANDLED:
            return fast
    return decode_reference(data)


def decode_reference(data: bytes | bytearray | memoryview) -> Any:
    """:func:`decode` without the compiled pass (and without the size limit, which
    :func:`decode` checks first): unpack, then re-encode and compare. It decides what is
    canonical and names what is not; the compiled decoder is tested against it.

    The re-encoding may be as large as ``data`` (an HTTP body is allowed more than a p2p
    message): a larger one differs from ``data`` anyway."""
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
        )
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise CanonicalError(f"malformed msgpack: {exc}") from None
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CanonicalError(f"malformed msgpack: {exc}") from None
    if encode(obj, max_bytes=max(len(data), MAX_MESSAGE_BYTES)) != bytes(data):
        raise CanonicalError("bytes are not in canonical form")
    return obj


def decode_trusted(data: bytes) -> Any:
    """Decode bytes this node itself encoded canonically (its own state and records).

    Skips the canonical-form check of :func:`decode` (a full re-encode), which matters on
    the execution path where every state read would otherwise pay it. Never use it on
    bytes that came from a peer or a client. The compiled decoder, where built, reads
    canonical bytes faster than msgpack's unpacker (its check costs less than the
    callbacks it spares); anything else is unpacked as before.
    """
    if _fast_decode is not None and type(data) is bytes:
        fast = _fast_decode(data, _NOT_HANDLED)
        if fast is not _NOT_HANDLED:
            return fast
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)


def digest(data: bytes) -> bytes:
    """SHA-256 of ``data``: the one hash function of the protocol."""
    return hashlib.sha256(data).digest()


def hash_obj(obj: Any) -> bytes:
    """SHA-256 of the canonical encoding of ``obj``."""
    return digest(encode(obj))


def sign_bytes(tag: str, chain_id: str, body: Any) -> bytes:
    """The exact bytes an Ed25519 key signs for ``body`` under purpose ``tag`` on ``chain_id``."""
    return sign_bytes_raw(tag, chain_id, encode(body))


def sign_bytes_raw(tag: str, chain_id: str, encoded_body: bytes) -> bytes:
    """:func:`sign_bytes` for a body already in canonical bytes."""
    return tag.encode("ascii") + b"\x00" + chain_id.encode("utf-8") + b"\x00" + encoded_body


def sign(key: SigningKey, tag: str, chain_id: str, body: Any) -> bytes:
    """Sign ``body`` for purpose ``tag`` on ``chain_id``; returns the 64-byte signature."""
    return bytes(key.sign(sign_bytes(tag, chain_id, body)).signature)


def verify_raw(pubkey: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``pubkey``."""
    if (type(pubkey) is not bytes or type(signature) is not bytes
            or len(pubkey) != PUBKEY_SIZE or len(signature) != SIGNATURE_SIZE):
        return False
    try:
        # libsodium's check itself; VerifyKey().verify() wraps the same call in two object
        # constructions, ~2 µs of a ~45 µs check that every node pays per transaction.
        nacl.bindings.crypto_sign_open(signature + bytes(message), pubkey)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def verify(pubkey: bytes, tag: str, chain_id: str, body: Any, signature: bytes) -> bool:
    """True when ``signature`` signs ``body`` under ``tag`` on ``chain_id`` with ``pubkey``."""
    try:
        message = sign_bytes(tag, chain_id, body)
    except CanonicalError:
        return False
    return verify_raw(pubkey, message, signature)
