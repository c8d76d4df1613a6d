"""The signed transaction envelope: canonical form, JSON form, hash and signature.

``{chain_id, contract, action, args, signer, nonce, sig}``. The signature covers
``sign_bytes("jangbu/tx/v1", chain_id, body)`` where ``body`` is the envelope without
``sig``; the transaction hash is SHA-256 of those same signed bytes. Hashing what is signed
(not the signature) means a second signature over the same body is the same transaction,
so replay protection cannot be dodged by re-signing. ``docs/protocol.md`` has vectors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nacl.signing import SigningKey

from consensus import canonical
from consensus.cached import cached_property
from node import jsonform, sigcheck

TAG_TX = "jangbu/tx/v1"
MAX_TX_BYTES = 64 * 1024
MAX_NONCE = 2**64 - 1
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
CHAIN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
HEX_RE = re.compile(r"[0-9a-f]*")
_FIELDS = frozenset({"chain_id", "contract", "action", "args", "signer", "nonce", "sig"})
DECIMAL_RE = re.compile(r"[0-9]{1,20}")

E_MALFORMED = "E_MALFORMED_TX"
E_TOO_LARGE = "E_TX_TOO_LARGE"
E_BAD_SIGNATURE = "E_BAD_SIGNATURE"
E_WRONG_CHAIN = "E_WRONG_CHAIN"


class TxError(ValueError):
    """A transaction that can never be valid (malformed, too large, badly signed)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TxBytesError(TxError):
    """The bytes are not canonical msgpack at all (as opposed to a canonical value that is
    not a transaction): the API answers a body like this as ``E_MALFORMED``, as it does a
    batch or a JSON body that does not parse."""


@dataclass(frozen=True, init=False)
class Transaction:
    chain_id: str
    contract: str
    action: str
    args: Mapping[str, Any]
    signer: bytes
    nonce: int
    sig: bytes

    def __init__(self, chain_id: str, contract: str, action: str, args: Mapping[str, Any],
                 signer: bytes, nonce: int, sig: bytes) -> None:
        # Frozen all the same: the fields are set through __dict__, as contracts.sdk.Call
        # explains (half the cost of the generated init, once per transaction a node sees).
        self.__dict__.update(chain_id=chain_id, contract=contract, action=action, args=args,
                             signer=signer, nonce=nonce, sig=sig)

    # --- canonical forms ------------------------------------------------------------------

    def body(self) -> dict[str, Any]:
        """The signed part: everything but ``sig``."""
        return {
            "chain_id": self.chain_id,
            "contract": self.contract,
            "action": self.action,
            "args": dict(self.args),
            "signer": self.signer,
            "nonce": self.nonce,
        }

    def to_obj(self) -> dict[str, Any]:
        return {**self.body(), "sig": self.sig}

    @cached_property
    def signed_bytes(self) -> bytes:
        return canonical.sign_bytes(TAG_TX, self.chain_id, self.body())

    @cached_property
    def encoded(self) -> bytes:
        return canonical.encode(self.to_obj())

    @cached_property
    def hash(self) -> bytes:
        return canonical.digest(self.signed_bytes)

    # --- checks -----------------------------------------------------------------------------

    def validate_basic(self, chain_id: str | None = None) -> None:
        """Every check that needs no state and no signature verification.

        The shape checks run once per object (the fields are frozen and ``encoded`` is
        cached): decoding validates, and the mempool's ``check`` then only compares the
        chain. Running them twice was ~5 µs of every transaction's admission.
        """
        if _UNDECODED in self.__dict__:
            # From decode_certified: what is known without decoding the fields (the chain
            # its hash was computed for, the size); the rest when they are read.
            if chain_id is not None and self.__dict__[_UNDECODED] != chain_id:
                raise TxError(E_WRONG_CHAIN, "transaction is for another chain")
            if len(self.encoded) > MAX_TX_BYTES:
                raise TxError(E_TOO_LARGE,
                              f"transaction is {len(self.encoded)} bytes, limit {MAX_TX_BYTES}")
            return
        if "_shape_checked" in self.__dict__:
            if chain_id is not None and self.chain_id != chain_id:
                raise TxError(E_WRONG_CHAIN, f"transaction is for chain {self.chain_id!r}")
            return
        if not _matches(CHAIN_ID_RE, self.chain_id):
            raise TxError(E_MALFORMED, "chain_id must be a short identifier string")
        if chain_id is not None and self.chain_id != chain_id:
            raise TxError(E_WRONG_CHAIN, f"transaction is for chain {self.chain_id!r}")
        for field_name in ("contract", "action"):
            if not _matches(NAME_RE, getattr(self, field_name)):
                raise TxError(E_MALFORMED, f"{field_name} must match {NAME_RE.pattern}")
        if type(self.args) is not dict and not isinstance(self.args, Mapping):
            raise TxError(E_MALFORMED, "args must be a map")
        if not isinstance(self.signer, bytes) or len(self.signer) != canonical.PUBKEY_SIZE:
            raise TxError(E_MALFORMED, "signer must be a 32-byte Ed25519 public key")
        if not isinstance(self.sig, bytes) or len(self.sig) != canonical.SIGNATURE_SIZE:
            raise TxError(E_MALFORMED, "sig must be a 64-byte Ed25519 signature")
        if isinstance(self.nonce, bool) or not isinstance(self.nonce, int):
            raise TxError(E_MALFORMED, "nonce must be an integer")
        if not 0 <= self.nonce <= MAX_NONCE:
            raise TxError(E_MALFORMED, "nonce must be an unsigned 64-bit integer")
        try:
            size = len(self.encoded)
        except canonical.CanonicalError as exc:
            raise TxError(E_MALFORMED, str(exc)) from None
        if size > MAX_TX_BYTES:
            raise TxError(E_TOO_LARGE, f"transaction is {size} bytes, limit {MAX_TX_BYTES}")
        self.__dict__["_shape_checked"] = True

    def verify_signature(self) -> bool:
        return sigcheck.verify_one(self.signer, self.signed_bytes, self.sig)

    def check(self, chain_id: str) -> None:
        """validate_basic plus the signature: what the mempool runs once per transaction."""
        self.validate_basic(chain_id)
        if not self.verify_signature():
            raise TxError(E_BAD_SIGNATURE, "signature does not verify for this signer and body")

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        key: SigningKey,
        chain_id: str,
        contract: str,
        action: str,
        args: Mapping[str, Any],
        nonce: int,
    ) -> Transaction:
        """Build and sign a transaction (what a client SDK does)."""
        unsigned = cls(chain_id, contract, action, dict(args), key.verify_key.encode(), nonce,
                       b"\x00" * 64)
        sig = bytes(key.sign(unsigned.signed_bytes).signature)
        return cls(chain_id, contract, action, dict(args), unsigned.signer, nonce, sig)

    @classmethod
    def from_obj(cls, obj: Any, raw: bytes | None = None) -> Transaction:
        """From the canonical map (wire/disk form); raises TxError on a wrong shape.

        ``raw``, when given, is the canonical encoding ``obj`` was decoded from: it is kept
        as ``encoded`` and the signed body is cut out of it instead of being re-encoded.
        """
        # type() first: a decoded map is a dict, and the ABC check costs ~0.3 µs (profiled).
        if type(obj) is not dict and not isinstance(obj, Mapping):
            raise TxError(E_MALFORMED, "transaction must be a map")
        if obj.keys() != _FIELDS:
            keys = set(obj)
            missing = sorted(_FIELDS - keys)
            extra = sorted(keys - _FIELDS)
            raise TxError(E_MALFORMED, f"transaction fields wrong: missing {missing}, "
                                       f"unexpected {extra}")
        tx = cls(obj["chain_id"], obj["contract"], obj["action"], obj["args"], obj["signer"],
                 obj["nonce"], obj["sig"])
        if raw is not None:
            fields = tx.__dict__
            fields["encoded"] = raw
            chain_id = tx.chain_id
            # One C pass cuts the body, builds the signed bytes and hashes them (the hash
            # is read at once by admission), where built; the same values as below.
            found = (None if _compiled_parts is None or type(chain_id) is not str
                     or type(raw) is not bytes
                     else _compiled_parts([raw], _signing_prefix(chain_id)))
            parts = None if found is None else found[0]
            if parts is not None:
                fields["hash"], fields["signed_bytes"] = parts[0], parts[3]
            else:
                body = body_from_encoded(raw)
                if body is not None and isinstance(chain_id, str):
                    fields["signed_bytes"] = canonical.sign_bytes_raw(TAG_TX, chain_id, body)
        tx.validate_basic()
        return tx

    @classmethod
    def decode(cls, data: bytes) -> Transaction:
        if len(data) > MAX_TX_BYTES:
            raise TxError(E_TOO_LARGE, f"transaction is {len(data)} bytes, limit {MAX_TX_BYTES}")
        try:
            obj = canonical.decode(data, MAX_TX_BYTES)
        except canonical.CanonicalError as exc:
            raise TxBytesError(E_MALFORMED, str(exc)) from None
        return cls.from_obj(obj, bytes(data))

    @classmethod
    def decode_certified(cls, data: bytes, chain_id: str) -> Transaction | None:
        """A transaction of a block taken with its certificate (block sync,
        :meth:`node.block.Block.decode` with ``synced``), decoded only as far as the
        certificate and ``txs_root`` need: its hash, signer and signature are cut out of
        ``data``; its other fields are decoded on first use. None if ``data`` is not laid
        out as a canonical transaction: decode it fully then.

        Why: a catch-up that applies a peer's diff never reads a transaction's fields, and
        decoding 1,000 of them (then checking their shape) was ~20% of applying a block.

        Sound because nothing of the transaction is trusted before the block is: the hash
        is SHA-256 of the signed bytes, built from ``chain_id`` (the block header's) and the
        body cut from ``data``; ``txs_root`` over ``hash ‖ sig`` under a verified
        certificate pins every byte of ``data`` to the bytes the quorum's honest members
        decoded with every check (a transaction of another chain, or any other byte,
        gives another hash). The fields, when read, are decoded without the canonical
        check and their shape is checked then (:meth:`_decode_fields`).
        """
        body = body_from_encoded(data)
        if body is None:
            return None
        tx = CertifiedTransaction.__new__(CertifiedTransaction)
        fields = tx.__dict__
        fields["encoded"] = data
        fields["signed_bytes"] = canonical.sign_bytes_raw(TAG_TX, chain_id, body)
        fields["sig"] = data[_SIG_AT:_SIG_AT + canonical.SIGNATURE_SIZE]
        fields["signer"] = data[-canonical.PUBKEY_SIZE:]
        fields[_UNDECODED] = chain_id
        return tx

    @classmethod
    def decode_certified_many(cls, raws: list[Any], chain_id: str) -> list[Transaction | None]:
        """:meth:`decode_certified` for each of a synced block's transactions, None where it
        gives None (or an item is not bytes): decode those fully then.

        Where the compiled state-tree module is in use (:func:`use_compiled_parts`), one C
        pass cuts and hashes them all and each transaction only gets its fields set: cutting
        ``signed_bytes`` out of each in Python, then hashing it on first read, was ~4 µs a
        transaction, a sixth of a catch-up's CPU per block (docs/benchmarks.md,
        twenty-first round). The same objects either way (tests/unit/test_tree_speedups.py);
        the hash is set now instead of on first read.
        """
        found = None if _compiled_parts is None else _compiled_parts(
            raws, _signing_prefix(chain_id))
        if found is None:
            return [cls.decode_certified(raw, chain_id) if type(raw) is bytes else None
                    for raw in raws]
        out: list[Transaction | None] = []
        new = CertifiedTransaction.__new__
        for raw, parts in zip(raws, found, strict=True):
            if parts is None:
                out.append(None)
                continue
            tx = new(CertifiedTransaction)
            fields = tx.__dict__
            fields["encoded"] = raw
            fields["hash"], fields["sig"], fields["signer"], fields["signed_bytes"] = parts
            fields[_UNDECODED] = chain_id
            out.append(tx)
        return out

    def decode_fields(self) -> None:
        """Decode the fields :meth:`decode_certified` left in ``encoded``, if it did, and
        check their shape; raises TxError if they are not those of a transaction of its
        chain (never for bytes a quorum certified, short of a Byzantine quorum). Admission
        calls it so that no path admits a transaction without its shape checked."""
        if _UNDECODED in self.__dict__:
            self._decode_fields()

    def _decode_fields(self) -> None:
        fields = self.__dict__
        chain_id = fields[_UNDECODED]
        try:
            obj = canonical.decode_trusted(fields["encoded"])
        except Exception as exc:  # any malformed msgpack
            raise TxError(E_MALFORMED, f"certified transaction does not decode: {exc}") from None
        if (type(obj) is not dict or obj.keys() != _FIELDS or obj["chain_id"] != chain_id
                or obj["sig"] != fields["sig"] or obj["signer"] != fields["signer"]):
            raise TxError(E_MALFORMED, "certified transaction is not laid out as one")
        decoded = Transaction(**obj)
        decoded.__dict__["encoded"] = fields["encoded"]
        decoded.validate_basic(chain_id)  # on a copy: a refused shape leaves self undecoded
        fields.update(obj)
        fields["_shape_checked"] = True
        del fields[_UNDECODED]

    # --- JSON (HTTP) form -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "contract": self.contract,
            "action": self.action,
            # Bytes in args (msgpack submissions may carry them) become hex: JSON has no
            # bytes (regression: such a committed transaction made its block a 500).
            "args": jsonform.to_json(dict(self.args)),
            "signer": self.signer.hex(),
            "nonce": self.nonce,
            "sig": self.sig.hex(),
        }

    @classmethod
    def from_json(cls, obj: Any) -> Transaction:
        """From the JSON form: ``signer``/``sig`` as lowercase hex; args JSON (no floats)."""
        if not isinstance(obj, Mapping):
            raise TxError(E_MALFORMED, "transaction must be a JSON object")
        fields = dict(obj)
        for name in ("signer", "sig"):
            value = fields.get(name)
            if not isinstance(value, str) or not HEX_RE.fullmatch(value) or len(value) % 2:
                raise TxError(E_MALFORMED, f"{name} must be a lowercase hex string")
            fields[name] = bytes.fromhex(value)
        nonce = fields.get("nonce")
        if isinstance(nonce, str):
            # Large nonces survive JavaScript clients as decimal strings (ASCII digits only).
            if not DECIMAL_RE.fullmatch(nonce):
                raise TxError(E_MALFORMED, "nonce must be an integer or a decimal string")
            fields["nonce"] = int(nonce)
        return cls.from_obj(fields)


class CertifiedTransaction(Transaction):
    """A transaction from :meth:`Transaction.decode_certified`: its fields may still be in
    its bytes, decoded on first read.

    A subclass, not a ``__getattr__`` on Transaction itself: there it made every attribute
    read of every transaction ~2.5× slower (CPython does not specialise attribute reads on
    a class whose instances have a ``__getattr__``), ~5% of a node's CPU under load,
    measured. Equal to the Transaction with the same fields.
    """

    if not TYPE_CHECKING:  # to type checkers it has its fields and no others

        def __getattr__(self, name: str) -> Any:
            """Only reached for an attribute not set: a field not read yet."""
            if name in _FIELDS and _UNDECODED in self.__dict__:
                self._decode_fields()
                return self.__dict__[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Transaction):
            return NotImplemented
        return _field_values(self) == _field_values(other)

    __hash__ = Transaction.__hash__


_compiled_parts: Callable[[list[Any], bytes], list[Any] | None] | None = None


_MATCHED: dict[re.Pattern[str], set[str]] = {CHAIN_ID_RE: set(), NAME_RE: set()}
_MAX_MATCHED = 1024


def _matches(pattern: re.Pattern[str], value: Any) -> bool:
    """``pattern.fullmatch(value)`` for a str, remembering up to ``_MAX_MATCHED`` plain
    strings that matched: every transaction repeats its chain, contract and action, and
    three pattern matches were a quarter of its shape check."""
    seen = _MATCHED.get(pattern)
    if seen is not None and type(value) is str:
        if value in seen:
            return True
        if pattern.fullmatch(value) is None:
            return False
        if len(seen) < _MAX_MATCHED:
            seen.add(value)
        return True
    return isinstance(value, str) and pattern.fullmatch(value) is not None


_SIGNING_PREFIXES: dict[str, bytes] = {}


def _signing_prefix(chain_id: str) -> bytes:
    """``sign_bytes_raw(TAG_TX, chain_id, b"")``, remembered for a few valid chain ids (a
    node sees its own; others, and ids the shape check refuses, are computed each time,
    so junk arriving first cannot take the places)."""
    prefix = _SIGNING_PREFIXES.get(chain_id)
    if prefix is None:
        prefix = canonical.sign_bytes_raw(TAG_TX, chain_id, b"")
        if len(_SIGNING_PREFIXES) < 8 and CHAIN_ID_RE.fullmatch(chain_id):
            _SIGNING_PREFIXES[chain_id] = prefix
    return prefix


def use_compiled_parts(parts: Callable[[list[Any], bytes], list[Any] | None] | None) -> None:
    """Set (or clear) the compiled ``certified_tx_parts`` that
    :meth:`Transaction.decode_certified_many` uses: node/state_tree.py switches it with the
    tree's other compiled loops (``JANGBU_PURE_TREE=1`` rules them all out)."""
    global _compiled_parts
    _compiled_parts = parts


def _field_values(tx: Transaction) -> tuple[Any, ...]:
    return (tx.chain_id, tx.contract, tx.action, tx.args, tx.signer, tx.nonce, tx.sig)


_SIG_ENTRY = b"\xa3sig\xc4\x40"
_SIGNER_ENTRY = b"\xa6signer\xc4\x20"
_SIG_ENTRY_SIZE = len(_SIG_ENTRY) + canonical.SIGNATURE_SIZE  # 70
_SIGNER_ENTRY_SIZE = len(_SIGNER_ENTRY) + canonical.PUBKEY_SIZE  # 41
# Where the 64 signature bytes start in a canonical transaction (from its end).
_SIG_AT = -(_SIGNER_ENTRY_SIZE + canonical.SIGNATURE_SIZE)
# Set on a transaction whose fields are still in its bytes (decode_certified): the chain
# its hash was computed for.
_UNDECODED = "_undecoded_for_chain"


def body_from_encoded(raw: bytes) -> bytes | None:
    """The canonical body (the map without ``sig``) cut out of a canonical transaction.

    Keys are sorted, so the last two entries are always ``sig`` (64-byte bin) and
    ``signer`` (32-byte bin): dropping the ``sig`` entry and turning the 7-entry map header
    into a 6-entry one gives exactly ``encode(body)``. This spares a re-encoding of every
    received transaction; anything unexpected falls back to it.
    """
    if len(raw) < 1 + _SIG_ENTRY_SIZE + _SIGNER_ENTRY_SIZE or raw[0] != 0x87:
        return None
    sig_at = -(_SIG_ENTRY_SIZE + _SIGNER_ENTRY_SIZE)
    if (raw[sig_at:sig_at + len(_SIG_ENTRY)] != _SIG_ENTRY
            or raw[-_SIGNER_ENTRY_SIZE:-_SIGNER_ENTRY_SIZE + len(_SIGNER_ENTRY)]
            != _SIGNER_ENTRY):
        return None
    return b"\x86" + raw[1:sig_at] + raw[-_SIGNER_ENTRY_SIZE:]
