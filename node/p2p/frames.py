"""Length-prefixed, AEAD-sealed frames: the only bytes that cross a peer link after the hello.

Wire format of one frame (see ``docs/p2p.md``)::

    +----------------------+-----------------------------------------------+
    | length: u32 big-end. | ChaCha20-Poly1305-IETF(key, nonce, aad=length) |
    |  = len(ciphertext)   |   = encrypted plaintext || 16-byte tag         |
    +----------------------+-----------------------------------------------+

* one key per direction (derived by the handshake), never shared by both ends;
* the 12-byte nonce is ``0x00000000 || counter (u64 little-endian)``, where the counter
  starts at 0 and goes up by one per frame in that direction: it is never sent, so a frame
  that is dropped, replayed, reordered or moved to the other direction fails to open;
* the 4-byte length header is the associated data, so it is authenticated too;
* ``length`` is checked against the limit *before* a single byte of the body is read.

This module does no I/O: :class:`FrameSealer` turns plaintext into frame bytes,
:class:`FrameOpener` checks a header and opens a body, and :class:`FrameDecoder` does both
over an arbitrary byte stream (what the fuzz tests drive). Bad input from the peer raises
:class:`FrameError` and nothing else.
"""

from __future__ import annotations

import struct

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_ABYTES,
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
    crypto_aead_chacha20poly1305_ietf_KEYBYTES,
    crypto_aead_chacha20poly1305_ietf_NPUBBYTES,
)
from nacl.exceptions import CryptoError

HEADER_SIZE = 4
TAG_SIZE: int = crypto_aead_chacha20poly1305_ietf_ABYTES
KEY_SIZE: int = crypto_aead_chacha20poly1305_ietf_KEYBYTES
NONCE_SIZE: int = crypto_aead_chacha20poly1305_ietf_NPUBBYTES

DEFAULT_MAX_FRAME = 8 * 1024 * 1024
"""Default cap on the plaintext of one frame (8 MiB)."""

MAX_COUNTER = 2**64 - 1
"""The nonce counter must never wrap: a link that sent this many frames is closed."""

_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """A frame from the peer is unacceptable (too large, truncated, forged, out of order).

    Always the remote's fault: the connection is closed, the reason is counted and logged.
    ``reason`` is a short stable label used for metrics.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def compute_nonce(counter: int) -> bytes:
    """The 12-byte IETF nonce for frame number ``counter`` of one direction."""
    return b"\x00\x00\x00\x00" + counter.to_bytes(8, "little")


def _check_key(key: bytes) -> bytes:
    if len(key) != KEY_SIZE:
        raise ValueError(f"frame key must be {KEY_SIZE} bytes, got {len(key)}")
    return bytes(key)


class FrameSealer:
    """Seals outgoing plaintexts for one direction of one link (owns that nonce counter)."""

    def __init__(self, key: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._key = _check_key(key)
        self.max_frame = max_frame
        self.counter = 0

    def seal(self, plaintext: bytes) -> bytes:
        """Return ``header || ciphertext`` for ``plaintext``; raises ValueError if too large."""
        # Verify the plaintext fits: a too-large message is our caller's bug, not the peer's.
        if len(plaintext) > self.max_frame:
            raise ValueError(f"frame plaintext is {len(plaintext)} bytes, limit {self.max_frame}")
        # Verify the counter has not run out (it never repeats a nonce under one key).
        if self.counter >= MAX_COUNTER:
            raise ValueError("nonce counter exhausted; the link must be re-established")
        header = _HEADER.pack(len(plaintext) + TAG_SIZE)
        sealed = crypto_aead_chacha20poly1305_ietf_encrypt(
            plaintext, header, compute_nonce(self.counter), self._key
        )
        self.counter += 1
        return header + sealed


class FrameOpener:
    """Checks headers and opens bodies for the receiving direction of one link."""

    def __init__(self, key: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._key = _check_key(key)
        self.max_frame = max_frame
        self.counter = 0

    def body_length(self, header: bytes) -> int:
        """Length of the body announced by ``header``, checked before the body is read."""
        if len(header) != HEADER_SIZE:
            raise FrameError("bad_header", f"expected {HEADER_SIZE} bytes, got {len(header)}")
        length = int.from_bytes(header, "big")
        # Verify the body can hold at least the authentication tag.
        if length < TAG_SIZE:
            raise FrameError("bad_header", f"frame of {length} bytes is shorter than its tag")
        # Verify the announced size is within the limit (before reading it).
        if length - TAG_SIZE > self.max_frame:
            raise FrameError(
                "frame_too_large", f"{length - TAG_SIZE} bytes announced, limit {self.max_frame}"
            )
        return length

    def open(self, header: bytes, body: bytes) -> bytes:
        """Decrypt and authenticate one frame; the next frame must use the next counter."""
        length = self.body_length(header)
        if len(body) != length:
            raise FrameError("bad_header", f"body is {len(body)} bytes, header says {length}")
        if self.counter >= MAX_COUNTER:
            raise FrameError("counter_exhausted")
        try:
            plaintext: bytes = crypto_aead_chacha20poly1305_ietf_decrypt(
                bytes(body), bytes(header), compute_nonce(self.counter), self._key
            )
        except CryptoError:
            raise FrameError("bad_frame", "authentication failed") from None
        self.counter += 1
        return plaintext


class FrameDecoder:
    """Sans-I/O decoder: feed it any bytes, get back the plaintexts of complete frames.

    Memory is bounded: the buffer never holds more than one maximal frame, because every
    header is checked as soon as its 4 bytes are in. Once it has raised, it stays failed.
    """

    def __init__(self, opener: FrameOpener) -> None:
        self.opener = opener
        self._buffer = bytearray()
        self._failed: FrameError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return every frame it completes, in order."""
        if self._failed is not None:
            raise self._failed
        self._buffer += data
        frames: list[bytes] = []
        try:
            while len(self._buffer) >= HEADER_SIZE:
                header = bytes(self._buffer[:HEADER_SIZE])
                length = self.opener.body_length(header)
                if len(self._buffer) < HEADER_SIZE + length:
                    break
                body = bytes(self._buffer[HEADER_SIZE : HEADER_SIZE + length])
                del self._buffer[: HEADER_SIZE + length]
                frames.append(self.opener.open(header, body))
        except FrameError as exc:
            self._failed = exc
            self._buffer.clear()
            raise
        return frames

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)
