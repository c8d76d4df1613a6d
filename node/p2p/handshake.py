"""The authenticated key exchange that opens every peer link (sans-I/O).

In the spirit of CometBFT's SecretConnection, both ends run the same steps, in parallel:

1. **Hello** (plaintext, fixed 38 bytes): ``b"JBP2P" || version (u8) || ephemeral X25519
   public key (32 bytes)``. A fresh ephemeral key pair is made for every connection.
2. **Key agreement**: ``shared = X25519(own ephemeral secret, peer ephemeral public)``;
   ``(lo, hi) = sorted(both ephemeral public keys)``; ``okm = BLAKE2b-512(shared || lo ||
   hi, person=b"jangbu/p2p/kdf1")``. ``okm[:32]`` seals frames sent by the ``lo`` side,
   ``okm[32:]`` those sent by the ``hi`` side. An all-zero ``shared`` (low-order point) or a
   peer that echoes our own ephemeral key is refused.
3. **Auth** (first sealed frame each way, counter 0): the canonical map
   ``{"t": "auth", "chain_id", "version", "pubkey": static Ed25519 key, "sig"
   [, "genesis": SHA-256 of the canonical genesis] [, "runtime": {"python": "3.11",
   "unicode": "14.0.0"}]}`` where
   ``sig = canonical.sign(node_key, "jangbu/p2p-handshake/v1", chain_id,
   {"eph_hi": hi, "eph_lo": lo, "version": version})``.
4. **Checks** on the peer's auth, in order: shape, version, chain id, signature, not our
   own key, key in the allowed set (the genesis validators), genesis (when both ends name
   one), runtime (when both ends name one and ours asks for the same). Any failure raises
   :class:`HandshakeError` with a stable ``reason``.

``genesis`` is outside the signature: the sealed channel already guarantees the frame's
integrity, and the field is optional so builds from before it (which ignore it and send
none) still connect. Why compare it at all: two nodes of one chain id whose genesis files
differ in any parameter used to connect and then halt at the first block the difference
decided; now the link is refused at once, naming the file.

``runtime`` is the interpreter's minor version and its Unicode tables, for the same reason:
older rules versions and messages that quote input (``repr`` of a string decides what is
printable from the interpreter's Unicode tables) put interpreter-dependent text into
receipts, which every validator must compute byte for byte. A validator on another Python
minor version can therefore compute another receipt for one crafted transaction and halt
or split the network at that height. Refusing the link at connect time turns that into an
operator's error message on the day of the upgrade (docs/operations.md, "One Python on
every validator"); ``runtime_check = "warn"`` only logs it. Like ``genesis`` it is outside
the signature and optional, so builds from before it still connect.

Signing both ephemeral keys binds the static identity to *this* key exchange: a
man-in-the-middle runs two exchanges with different ephemeral pairs, so neither end's
signature is valid on the other leg, and it cannot read or forge frames without the
ephemeral secrets. Timeouts are the driver's job (:mod:`node.p2p.peer_manager`).
"""

from __future__ import annotations

import hashlib
import sys
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from nacl.bindings import crypto_scalarmult
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from consensus import canonical
from node.p2p.frames import (
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    FrameError,
    FrameOpener,
    FrameSealer,
)

PROTOCOL_VERSION = 1
MAGIC = b"JBP2P"
EPHEMERAL_KEY_SIZE = 32
HELLO_SIZE = len(MAGIC) + 1 + EPHEMERAL_KEY_SIZE
HANDSHAKE_TAG = "jangbu/p2p-handshake/v1"
KDF_PERSON = b"jangbu/p2p/kdf1"
GENESIS_HASH_SIZE = 32
AUTH_MAX_FRAME = 1024
"""The auth frame is ~250 bytes; a peer announcing more during the handshake is refused."""
RUNTIME_FIELDS = ("python", "unicode")
RUNTIME_VALUE_MAX = 16


def local_runtime() -> dict[str, str]:
    """What of this interpreter decides receipt bytes: its minor version, its Unicode data."""
    return {"python": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "unicode": unicodedata.unidata_version}


def describe_runtime(runtime: Mapping[str, str]) -> str:
    """``python 3.11, unicode 14.0.0``: how logs and errors name a runtime."""
    return f"python {runtime['python']}, unicode {runtime['unicode']}"


class HandshakeError(Exception):
    """The peer failed the handshake. ``reason`` is a stable label for metrics and logs."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SessionKeys:
    """What the key agreement yields for one end of one link."""

    send_key: bytes
    recv_key: bytes
    eph_lo: bytes
    eph_hi: bytes


@dataclass(frozen=True)
class HandshakeResult:
    """An authenticated link: the peer's static key and the live frame sealer/opener."""

    peer_pubkey: bytes
    sealer: FrameSealer
    opener: FrameOpener
    peer_runtime: dict[str, str] | None = None
    """What the peer named in its auth (None: a build from before the field)."""


def make_hello(ephemeral_pubkey: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """The 38 plaintext bytes each end sends first."""
    if len(ephemeral_pubkey) != EPHEMERAL_KEY_SIZE or not 0 <= version <= 255:
        raise ValueError("bad hello fields")
    return MAGIC + bytes([version]) + ephemeral_pubkey


def parse_hello(data: bytes) -> tuple[int, bytes]:
    """Return ``(version, ephemeral_pubkey)`` from a peer's hello."""
    # Verify the size and the magic: anything else is not a jangbu peer.
    if len(data) != HELLO_SIZE:
        raise HandshakeError("bad_hello", f"expected {HELLO_SIZE} bytes, got {len(data)}")
    if data[: len(MAGIC)] != MAGIC:
        raise HandshakeError("bad_hello", "wrong magic")
    version = data[len(MAGIC)]
    # Verify the protocol version before doing any cryptography.
    if version != PROTOCOL_VERSION:
        raise HandshakeError("version", f"peer speaks v{version}, we speak v{PROTOCOL_VERSION}")
    return version, bytes(data[len(MAGIC) + 1 :])


def compute_session_keys(ephemeral: PrivateKey, peer_ephemeral_pubkey: bytes) -> SessionKeys:
    """X25519 + BLAKE2b into one key per direction (see the module docstring)."""
    own = bytes(ephemeral.public_key)
    # Verify the peer did not reflect our own ephemeral key back at us.
    if peer_ephemeral_pubkey == own:
        raise HandshakeError("bad_hello", "peer echoed our ephemeral key")
    try:
        shared = crypto_scalarmult(bytes(ephemeral), peer_ephemeral_pubkey)
    except Exception as exc:  # libsodium refuses low-order points with a RuntimeError
        raise HandshakeError("bad_hello", f"bad ephemeral key: {exc}") from None
    # Verify the shared secret is not degenerate (low-order point).
    if shared == bytes(len(shared)):
        raise HandshakeError("bad_hello", "degenerate shared secret")
    lo, hi = sorted((own, peer_ephemeral_pubkey))
    okm = hashlib.blake2b(shared + lo + hi, digest_size=64, person=KDF_PERSON).digest()
    lo_to_hi, hi_to_lo = okm[:32], okm[32:]
    if own == lo:
        return SessionKeys(send_key=lo_to_hi, recv_key=hi_to_lo, eph_lo=lo, eph_hi=hi)
    return SessionKeys(send_key=hi_to_lo, recv_key=lo_to_hi, eph_lo=lo, eph_hi=hi)


def get_transcript(keys: SessionKeys, version: int = PROTOCOL_VERSION) -> dict[str, Any]:
    """The body each end signs (the chain id enters through ``canonical.sign_bytes``)."""
    return {"eph_hi": keys.eph_hi, "eph_lo": keys.eph_lo, "version": version}


def make_auth(node_key: SigningKey, chain_id: str, keys: SessionKeys,
              genesis: bytes | None = None,
              runtime: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Our auth message: static key plus a signature over this link's transcript."""
    auth = {
        "t": "auth",
        "chain_id": chain_id,
        "version": PROTOCOL_VERSION,
        "pubkey": bytes(node_key.verify_key),
        "sig": canonical.sign(node_key, HANDSHAKE_TAG, chain_id, get_transcript(keys)),
    }
    if genesis is not None:
        auth["genesis"] = genesis
    if runtime is not None:
        auth["runtime"] = dict(runtime)
    return auth


def parse_runtime(value: Any) -> dict[str, str] | None:
    """A peer's ``runtime`` field: its ``python`` and ``unicode`` values, or None when it
    names none that this build can read.

    Lenient on purpose: other keys are ignored and an unreadable value counts as naming
    none (linked as a build from before the field is), so a later build may add to the
    field without being refused by this one in a rolling upgrade (review)."""
    if not isinstance(value, dict):
        return None
    runtime = {name: value.get(name) for name in RUNTIME_FIELDS}
    if not all(isinstance(v, str) and 0 < len(v) <= RUNTIME_VALUE_MAX and v.isascii()
               and v.isprintable() for v in runtime.values()):
        return None
    return runtime  # type: ignore[return-value]  # every value checked to be a str


def check_auth(
    msg: Any,
    *,
    chain_id: str,
    keys: SessionKeys,
    own_pubkey: bytes,
    allowed: Collection[bytes],
    genesis: bytes | None = None,
    runtime: Mapping[str, str] | None = None,
) -> bytes:
    """Check a peer's auth message and return its static public key.

    ``genesis``: our genesis hash; a peer naming another is refused (one naming none, an
    older build, is not). ``runtime``: ours, when a peer on another one is to be refused
    (None: only the field's shape is checked; the caller decides what a difference means)."""
    # Verify the shape.
    if not isinstance(msg, dict) or msg.get("t") != "auth":
        raise HandshakeError("bad_auth", "not an auth message")
    pubkey, sig = msg.get("pubkey"), msg.get("sig")
    if not isinstance(pubkey, bytes) or len(pubkey) != canonical.PUBKEY_SIZE:
        raise HandshakeError("bad_auth", "missing or malformed pubkey")
    if not isinstance(sig, bytes) or len(sig) != canonical.SIGNATURE_SIZE:
        raise HandshakeError("bad_auth", "missing or malformed signature")
    # Verify the protocol version and the chain.
    if msg.get("version") != PROTOCOL_VERSION:
        raise HandshakeError("version", f"peer auth says version {msg.get('version')!r}")
    if msg.get("chain_id") != chain_id:
        raise HandshakeError(
            "chain_id", f"peer is on chain {msg.get('chain_id')!r}, we are on {chain_id!r}"
        )
    peer_genesis = msg.get("genesis")
    if peer_genesis is not None and (not isinstance(peer_genesis, bytes)
                                     or len(peer_genesis) != GENESIS_HASH_SIZE):
        raise HandshakeError("bad_auth", "malformed genesis hash")
    peer_runtime = parse_runtime(msg.get("runtime"))  # (None: named none we can read)
    # Verify the peer holds the private key for this link's transcript.
    if not canonical.verify(pubkey, HANDSHAKE_TAG, chain_id, get_transcript(keys), sig):
        raise HandshakeError("bad_signature", f"bad transcript signature for {pubkey.hex()}")
    # Verify it is somebody else, and somebody we know.
    if pubkey == own_pubkey:
        raise HandshakeError("self", "connected to ourselves")
    if pubkey not in allowed:
        raise HandshakeError("unknown_key", f"{pubkey.hex()} is not in the allowed set")
    # Verify the genesis last: only an authenticated validator's differing file is reported
    # as the organisations' genesis files differing (a stranger could otherwise fake it).
    if genesis is not None and peer_genesis is not None and peer_genesis != genesis:
        raise HandshakeError(
            "genesis", f"peer's genesis is {peer_genesis.hex()[:16]}…, ours is "
            f"{genesis.hex()[:16]}…: the organisations' genesis.json files differ")
    if runtime is not None and peer_runtime is not None and peer_runtime != dict(runtime):
        raise HandshakeError(
            "runtime", f"peer runs {describe_runtime(peer_runtime)}, we run "
            f"{describe_runtime(runtime)}: receipts can differ between them, so every "
            "validator must run one Python minor version (docs/operations.md)")
    return pubkey


class Handshake:
    """One end of one handshake, as a three-call state machine with no I/O.

    ``hello()`` -> send; ``receive_hello(peer_hello)`` -> send the returned auth frame;
    ``receive_auth(header, body)`` -> :class:`HandshakeResult`. Each call may raise
    :class:`HandshakeError`; calls out of order raise ``RuntimeError`` (our bug).
    """

    def __init__(
        self,
        *,
        chain_id: str,
        node_key: SigningKey,
        allowed: Collection[bytes],
        max_frame: int = DEFAULT_MAX_FRAME,
        ephemeral: PrivateKey | None = None,
        genesis: bytes | None = None,
        runtime: Mapping[str, str] | None = None,
        refuse_other_runtime: bool = True,
    ) -> None:
        self.chain_id = chain_id
        self.genesis = genesis
        self.runtime = dict(runtime) if runtime is not None else None
        """Named in our auth (None: name none, as builds before the field did)."""
        self.refuse_other_runtime = refuse_other_runtime
        self.node_key = node_key
        self.own_pubkey = bytes(node_key.verify_key)
        self.allowed = allowed
        self.max_frame = max_frame
        self._ephemeral = ephemeral if ephemeral is not None else PrivateKey.generate()
        self._keys: SessionKeys | None = None
        self._sealer: FrameSealer | None = None
        self._opener: FrameOpener | None = None
        self._done = False

    def hello(self) -> bytes:
        """Step 1: our plaintext hello."""
        return make_hello(bytes(self._ephemeral.public_key))

    def receive_hello(self, data: bytes) -> bytes:
        """Step 2: take the peer's hello, derive keys, return our sealed auth frame."""
        if self._keys is not None:
            raise RuntimeError("receive_hello called twice")
        _, peer_ephemeral = parse_hello(data)
        keys = compute_session_keys(self._ephemeral, peer_ephemeral)
        self._keys = keys
        self._sealer = FrameSealer(keys.send_key, self.max_frame)
        self._opener = FrameOpener(keys.recv_key, AUTH_MAX_FRAME)
        auth = make_auth(self.node_key, self.chain_id, keys, self.genesis, self.runtime)
        return self._sealer.seal(canonical.encode(auth))

    def auth_body_length(self, header: bytes) -> int:
        """Size of the peer's auth frame body, checked against :data:`AUTH_MAX_FRAME`."""
        if self._opener is None:
            raise RuntimeError("auth_body_length before receive_hello")
        try:
            return self._opener.body_length(header)
        except FrameError as exc:
            raise HandshakeError("bad_auth", str(exc)) from None

    def receive_auth(self, header: bytes, body: bytes) -> HandshakeResult:
        """Step 3: open and check the peer's auth frame; the link is then ready."""
        if self._keys is None or self._opener is None or self._sealer is None:
            raise RuntimeError("receive_auth before receive_hello")
        if self._done:
            raise RuntimeError("handshake already finished")
        try:
            plaintext = self._opener.open(header, body)
            msg = canonical.decode(plaintext, max_bytes=AUTH_MAX_FRAME)
        except FrameError as exc:
            raise HandshakeError("bad_auth", str(exc)) from None
        except canonical.CanonicalError as exc:
            raise HandshakeError("bad_auth", f"auth is not canonical: {exc}") from None
        peer = check_auth(
            msg,
            chain_id=self.chain_id,
            keys=self._keys,
            own_pubkey=self.own_pubkey,
            allowed=self.allowed,
            genesis=self.genesis,
            runtime=self.runtime if self.refuse_other_runtime else None,
        )
        peer_runtime = parse_runtime(msg.get("runtime"))
        self._done = True
        # The auth frame used counter 0 each way; the link carries on from counter 1.
        opener = FrameOpener(self._keys.recv_key, self.max_frame)
        opener.counter = self._opener.counter
        return HandshakeResult(peer_pubkey=peer, sealer=self._sealer, opener=opener,
                               peer_runtime=peer_runtime)


def split_frame(frame: bytes) -> tuple[bytes, bytes]:
    """Split frame bytes into ``(header, body)`` (a helper for in-memory tests)."""
    return frame[:HEADER_SIZE], frame[HEADER_SIZE:]
