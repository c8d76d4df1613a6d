"""Block header and block: what consensus orders and the store keeps.

The block hash is SHA-256 of the canonical header. The header commits to everything else:
``txs_root`` (Merkle over the transactions, :func:`compute_txs_root`), ``results_root``
(Merkle over receipts), ``state_root`` (the authenticated state *after* this block),
``last_commit_hash`` (the certificate of the previous block carried in this one, like
CometBFT's LastCommit) and ``validators_hash``. A block's own certificate is stored beside
it by the node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consensus import canonical
from consensus.cached import cached_property
from node import merkle
from node.tx import E_MALFORMED, TAG_TX, Transaction, TxError, body_from_encoded

MAX_BLOCK_BYTES = canonical.MAX_MESSAGE_BYTES - 512 * 1024
"""The largest ``max_block_bytes`` a genesis may set: a block's transactions plus its
header and previous certificate (up to 1,024 validators) must fit one canonical message,
as a proposal and as a block-sync answer."""
ZERO_HASH = b"\x00" * 32

E_BAD_BLOCK = "E_BAD_BLOCK"

BLOCK_VERSION_HASHES = 1
"""``txs_root`` over the transaction hashes alone: the certificate vouches for each body but
not for its signature bytes, so every node checks every signature it is sent, synced blocks
included. What a genesis without ``consensus.block_version`` means (chains made before
version 2 keep the rule their blocks were certified under)."""
BLOCK_VERSION_SIGNED = 2
"""``txs_root`` over hash ‖ signature: a block's hash fixes its every byte, and a node
syncing certified blocks need not check their signatures again (a quorum did)."""
BLOCK_VERSIONS = (BLOCK_VERSION_HASHES, BLOCK_VERSION_SIGNED)


class BlockError(ValueError):
    """A block that is malformed or does not fit the chain."""

    code = E_BAD_BLOCK


@dataclass(frozen=True)
class Header:
    chain_id: str
    height: int
    time_ms: int
    prev_hash: bytes
    proposer: bytes
    txs_root: bytes
    state_root: bytes
    results_root: bytes
    last_commit_hash: bytes
    validators_hash: bytes

    def to_obj(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "height": self.height,
            "time_ms": self.time_ms,
            "prev_hash": self.prev_hash,
            "proposer": self.proposer,
            "txs_root": self.txs_root,
            "state_root": self.state_root,
            "results_root": self.results_root,
            "last_commit_hash": self.last_commit_hash,
            "validators_hash": self.validators_hash,
        }

    @cached_property
    def hash(self) -> bytes:
        return canonical.hash_obj(self.to_obj())

    @classmethod
    def from_obj(cls, obj: Any) -> Header:
        if not isinstance(obj, Mapping):
            raise BlockError("header must be a map")
        try:
            header = cls(**{name: obj[name] for name in _HEADER_FIELDS})
        except KeyError as exc:
            raise BlockError(f"header field missing: {exc.args[0]}") from None
        if len(obj) != len(_HEADER_FIELDS):
            # Exactly these fields: the hash covers only them, so any other field would be
            # bytes that travel (and were stored) under a hash that does not vouch for them.
            extra = sorted(str(k) for k in obj if k not in _HEADER_FIELDS)
            raise BlockError(f"header has unknown fields: {extra}")
        header.validate_basic()
        return header

    def validate_basic(self) -> None:
        if not isinstance(self.chain_id, str):
            raise BlockError("header.chain_id must be a string")
        for name in ("height", "time_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BlockError(f"header.{name} must be a non-negative integer")
        for name in _HASH_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise BlockError(f"header.{name} must be 32 bytes")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.to_obj().items():
            out[name] = value.hex() if isinstance(value, bytes) else value
        out["hash"] = self.hash.hex()
        return out


_HEADER_FIELDS = (
    "chain_id", "height", "time_ms", "prev_hash", "proposer", "txs_root", "state_root",
    "results_root", "last_commit_hash", "validators_hash",
)
_HASH_FIELDS = (
    "prev_hash", "proposer", "txs_root", "state_root", "results_root", "last_commit_hash",
    "validators_hash",
)


@dataclass(frozen=True)
class Block:
    header: Header
    txs: tuple[Transaction, ...]
    last_commit: Any  # the previous block's certificate as a canonical object, or None

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def hash(self) -> bytes:
        return self.header.hash

    def to_obj(self) -> dict[str, Any]:
        """Transactions travel as their canonical bytes (``bin``), so a receiver that already
        holds a transaction (its mempool) recognises it without decoding it again."""
        return {
            "header": self.header.to_obj(),
            "txs": [tx.encoded for tx in self.txs],
            "last_commit": self.last_commit,
        }

    @cached_property
    def encoded(self) -> bytes:
        return canonical.encode(self.to_obj())

    @classmethod
    def from_obj(cls, obj: Any, known: KnownTx | None = None, *,
                 synced: bool = False) -> Block:
        """``known(tx_hash)`` may return an already checked transaction (the mempool's);
        ``synced``: see :meth:`decode`."""
        if not isinstance(obj, Mapping) or set(obj) != {"header", "txs", "last_commit"}:
            raise BlockError("block must be a map of header, txs, last_commit")
        if not isinstance(obj["txs"], list):
            raise BlockError("block.txs must be a list")
        header = Header.from_obj(obj["header"])
        raws = obj["txs"]
        try:
            if synced:
                certified = Transaction.decode_certified_many(raws, header.chain_id)
                txs = tuple(tx if tx is not None else _decode_tx(raw, header.chain_id, known)
                            for raw, tx in zip(raws, certified, strict=True))
            else:
                txs = tuple(_decode_tx(raw, header.chain_id, known) for raw in raws)
        except TxError as exc:
            raise BlockError(f"bad transaction in block: {exc}") from None
        block = cls(header, txs, obj["last_commit"])
        if synced:
            block.__dict__["needs_certificate"] = True
        return block

    @classmethod
    def decode(cls, data: bytes, known: KnownTx | None = None, *,
               synced: bool = False) -> Block:
        """The block of canonical ``data``; raises BlockError.

        ``synced``: a block from block sync, used only once its certificate verifies
        (the engine refuses it otherwise: ``needs_certificate``). Its transactions are
        only cut into hash, signer and signature where their layout allows, their fields
        decoded when first read (:meth:`Transaction.decode_certified`): the certificate and
        ``txs_root`` pin their bytes to those honest validators checked.
        """
        try:
            obj = canonical.decode(data)
        except canonical.CanonicalError as exc:
            raise BlockError(str(exc)) from None
        block = cls.from_obj(obj, known, synced=synced)
        # ``data`` is canonical and from_obj keeps every part as it came (the header has
        # exactly its fields, each transaction its own bytes), so re-encoding would give
        # ``data`` back: keep it instead (~1 ms per full block on every validator).
        block.__dict__["encoded"] = bytes(data)
        return block


KnownTx = Callable[[bytes], "Transaction | None"]


def decode_header(data: bytes) -> Header:
    """The header of the canonical block ``data``, its transactions left undecoded; raises
    BlockError.

    Why: a node reads its last block's header after every start, for the tip's hash and
    time (:meth:`node.engine.Engine.tip`). Decoding its up to thousands of transactions
    for that was ~20 ms of a restart's catch-up (docs/benchmarks.md, twenty-first round);
    the header alone, whose hash is the block's, is ~0.6 ms. The start's own check of the
    last block reads it whole (node/state_check.py).
    """
    try:
        obj = canonical.decode(data)
    except canonical.CanonicalError as exc:
        raise BlockError(str(exc)) from None
    if not isinstance(obj, Mapping) or set(obj) != {"header", "txs", "last_commit"}:
        raise BlockError("block must be a map of header, txs, last_commit")
    txs = obj["txs"]
    if not isinstance(txs, list) or not all(type(raw) is bytes for raw in txs):
        raise BlockError("block.txs must be a list of transactions' bytes")
    return Header.from_obj(obj["header"])


def _decode_tx(raw: Any, chain_id: str, known: KnownTx | None) -> Transaction:
    """One transaction of a block: reuse the known object when the bytes match exactly."""
    if not isinstance(raw, bytes):
        raise TxError(E_MALFORMED, "a block's transactions are canonical bytes")
    if known is not None:
        body = body_from_encoded(raw)
        if body is not None:
            tx_hash = canonical.digest(canonical.sign_bytes_raw(TAG_TX, chain_id, body))
            held = known(tx_hash)
            if held is not None and held.encoded == raw:
                return held
    return Transaction.decode(raw)


def compute_txs_root(txs: Sequence[Transaction], version: int) -> bytes:
    """The Merkle root over the block's transactions under the chain's block version.

    Version 2 leaves are ``hash ‖ sig`` (96 bytes): the hash covers the signed body, and the
    signature is appended so that a certified header pins the signature bytes too. Without
    it a sync peer could hand over another signature (garbage, or the signer's second valid
    one) under the same block hash.
    """
    if version == BLOCK_VERSION_SIGNED:
        return merkle.merkle_root([tx.hash + tx.sig for tx in txs])
    if version == BLOCK_VERSION_HASHES:
        return merkle.merkle_root([tx.hash for tx in txs])
    raise ValueError(f"unknown block version {version!r}")


def result_leaf(tx_hash: bytes, receipt_obj: Mapping[str, Any]) -> bytes:
    """The leaf of ``results_root`` for one transaction: canonical {tx, receipt}."""
    return canonical.encode({"tx": tx_hash, "receipt": dict(receipt_obj)})


_LEAF_HEAD = b"\x82\xa7receipt"  # a 2-entry map; "receipt" sorts before "tx"
_LEAF_TX = b"\xa2tx\xc4\x20"  # "tx": a 32-byte bin


def result_leaf_from_encoded(tx_hash: bytes, receipt_encoded: bytes) -> bytes:
    """:func:`result_leaf` assembled from the receipt's canonical bytes.

    Every node encodes each receipt once (it stores those bytes too); splicing them into
    the two-entry leaf map spares a second normalisation of the receipt's events.
    """
    if len(tx_hash) != canonical.HASH_SIZE:
        return result_leaf(tx_hash, canonical.decode_trusted(receipt_encoded))
    return _LEAF_HEAD + receipt_encoded + _LEAF_TX + tx_hash


def compute_last_commit_hash(last_commit: Any) -> bytes:
    return ZERO_HASH if last_commit is None else canonical.hash_obj(last_commit)
