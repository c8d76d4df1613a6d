"""Consensus messages, the validator set and commit certificates.

Every message is a small frozen dataclass with:

* ``validate_basic()`` -- checks that need no state (types, sizes, ranges), raising
  :class:`InvalidMessage`;
* ``sign_body()`` -- the exact canonical object that is signed (separate from the wire form);
* ``to_obj()`` / ``from_obj()`` -- conversion to and from plain canonical-encodable objects,
  which the node packs with :func:`consensus.canonical.encode` on the wire and on disk.

A proposal's signature covers ``height, round, pol_round, block_hash, block_digest,
proposer``: the block bytes through their SHA-256, the block hash because votes name it
(the node checks the bytes hash to it when it answers
:class:`~consensus.actions.ValidateBlock`). See :class:`Proposal` for why the bytes too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, NewType

from consensus import canonical
from consensus.cached import cached_property

Height = NewType("Height", int)
Round = NewType("Round", int)

VOTE_TAG = "jangbu/vote/v1"
PROPOSAL_TAG = "jangbu/proposal/v1"

MAX_HEIGHT = 2**63 - 1
MAX_ROUND = 2**31 - 1
MAX_VALIDATORS = 1024


class InvalidMessage(ValueError):  # noqa: N818 - name fixed by the node's interface
    """A message from a peer that is malformed or wrongly signed: their fault, never ours.

    ``code`` is a stable machine-readable reason (``E_FIELD``, ``E_SIGNATURE``...).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class VoteType(IntEnum):
    """The two voting steps of a round (the numbers are part of the signed bytes)."""

    PREVOTE = 1
    PRECOMMIT = 2


# --- field checks shared by from_obj / validate_basic ------------------------------------


def need_int(value: Any, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidMessage("E_FIELD", f"{name} must be an integer in [{low}, {high}]")
    return value


def need_bytes(value: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidMessage("E_FIELD", f"{name} must be bytes")
    if size is not None and len(value) != size:
        raise InvalidMessage("E_FIELD", f"{name} must be {size} bytes")
    return value


def need_hash_or_nil(value: Any, name: str) -> bytes | None:
    if value is None:
        return None
    return need_bytes(value, name, canonical.HASH_SIZE)


def need_map(obj: Any, kind: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise InvalidMessage("E_FIELD", f"{kind} must be a map")
    if set(obj.keys()) != keys:
        raise InvalidMessage("E_FIELD", f"{kind} must have exactly the keys {sorted(keys)}")
    return obj


# --- validator set ------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidatorSet:
    """The ordered validators of a network, equal voting power.

    Fault tolerance: ``f = (n - 1) // 3`` faulty validators. The quorum is the smallest
    ``q`` with ``2q > n + f``: two quorums then overlap in more than ``f`` validators, so in
    at least one honest one. For ``n = 3f + 1`` this is the familiar ``2f + 1``.
    """

    validators: tuple[bytes, ...]
    _index: Mapping[bytes, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.validators) <= MAX_VALIDATORS:
            raise ValueError(f"a validator set needs 1..{MAX_VALIDATORS} validators")
        for key in self.validators:
            if not isinstance(key, bytes) or len(key) != canonical.PUBKEY_SIZE:
                raise ValueError("validators must be 32-byte Ed25519 public keys")
        if len(set(self.validators)) != len(self.validators):
            raise ValueError("duplicate validator key")
        object.__setattr__(self, "_index", {key: i for i, key in enumerate(self.validators)})

    @property
    def n(self) -> int:
        return len(self.validators)

    @property
    def f(self) -> int:
        """How many faulty validators the set tolerates."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """Smallest q with 2q > n + f (2f+1 when n = 3f+1)."""
        return (self.n + self.f) // 2 + 1

    @property
    def skip_threshold(self) -> int:
        """f+1: at least one honest validator is among this many."""
        return self.f + 1

    def proposer(self, height: Height, round_: Round) -> bytes:
        """Round-robin proposer: ``validators[(height + round) % n]``."""
        return self.validators[(height + round_) % self.n]

    def index_of(self, pubkey: bytes) -> int | None:
        return self._index.get(pubkey)

    def __contains__(self, pubkey: object) -> bool:
        return pubkey in self._index

    def hash(self) -> bytes:
        return canonical.hash_obj({"validators": list(self.validators)})


# --- votes --------------------------------------------------------------------------------

_VOTE_KEYS = frozenset({"type", "height", "round", "block_hash", "validator", "signature"})


@dataclass(frozen=True)
class Vote:
    """A prevote or precommit for ``block_hash`` (``None`` = nil) at ``height``/``round``."""

    vote_type: VoteType
    height: Height
    round: Round
    block_hash: bytes | None
    validator: bytes
    signature: bytes = b""

    def sign_body(self) -> dict[str, Any]:
        return {
            "type": int(self.vote_type),
            "height": self.height,
            "round": self.round,
            "block_hash": self.block_hash,
            "validator": self.validator,
        }

    def sign_bytes(self, chain_id: str) -> bytes:
        return canonical.sign_bytes(VOTE_TAG, chain_id, self.sign_body())

    def unsigned(self) -> Vote:
        return replace(self, signature=b"")

    def validate_basic(self) -> None:
        if not isinstance(self.vote_type, VoteType):
            raise InvalidMessage("E_FIELD", "unknown vote type")
        need_int(self.height, "height", 1, MAX_HEIGHT)
        need_int(self.round, "round", 0, MAX_ROUND)
        need_hash_or_nil(self.block_hash, "block_hash")
        need_bytes(self.validator, "validator", canonical.PUBKEY_SIZE)
        need_bytes(self.signature, "signature", canonical.SIGNATURE_SIZE)

    def verify(self, chain_id: str,
               verifier: Callable[[bytes, bytes, bytes], bool] = canonical.verify_raw) -> None:
        """Raise :class:`InvalidMessage` unless well formed and signed by ``validator``
        (``verifier(pubkey, message, signature)`` checks the signature)."""
        self.validate_basic()
        if not verifier(self.validator, self.sign_bytes(chain_id), self.signature):
            raise InvalidMessage("E_SIGNATURE", "bad vote signature")

    def to_obj(self) -> dict[str, Any]:
        return {**self.sign_body(), "signature": self.signature}

    @classmethod
    def from_obj(cls, obj: Any) -> Vote:
        m = need_map(obj, "vote", _VOTE_KEYS)
        type_value = need_int(m["type"], "type", 1, 2)
        vote = cls(
            vote_type=VoteType(type_value),
            height=Height(need_int(m["height"], "height", 1, MAX_HEIGHT)),
            round=Round(need_int(m["round"], "round", 0, MAX_ROUND)),
            block_hash=need_hash_or_nil(m["block_hash"], "block_hash"),
            validator=need_bytes(m["validator"], "validator", canonical.PUBKEY_SIZE),
            signature=need_bytes(m["signature"], "signature", canonical.SIGNATURE_SIZE),
        )
        return vote


# --- proposals ----------------------------------------------------------------------------

_PROPOSAL_KEYS = frozenset(
    {"height", "round", "pol_round", "block_hash", "block", "proposer", "signature"}
)


@dataclass(frozen=True)
class Proposal:
    """A proposer's value for ``height``/``round``.

    ``pol_round`` is the paper's ``validRound``: -1, or the earlier round in which the
    proposer saw 2f+1 prevotes for this block (a proof-of-lock that lets locked validators
    unlock). ``block`` is the opaque encoded block; its hash is the node's business.

    The signature covers ``block_digest``, the SHA-256 of ``block`` itself, besides
    ``block_hash``. Regression: it covered the hash alone, and the node's block hash does
    not cover every byte of a block (transaction signatures, for one), so anyone relaying
    a proposal could attach other bytes under the proposer's signature. The first copy a
    validator got was the one it judged: one Byzantine validator relaying a spoiled copy of
    each honest proposal to one honest validator ahead of the genuine one could stall
    every round. (The wire form does not carry the digest: it is the block's.)
    """

    height: Height
    round: Round
    pol_round: Round
    block_hash: bytes
    block: bytes
    proposer: bytes
    signature: bytes = b""

    @cached_property
    def block_digest(self) -> bytes:
        """SHA-256 of the block bytes (computed once per object: blocks are ~1 MB)."""
        return canonical.digest(self.block)

    def sign_body(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "pol_round": self.pol_round,
            "block_hash": self.block_hash,
            "block_digest": self.block_digest,
            "proposer": self.proposer,
        }

    def sign_bytes(self, chain_id: str) -> bytes:
        return canonical.sign_bytes(PROPOSAL_TAG, chain_id, self.sign_body())

    def validate_basic(self) -> None:
        need_int(self.height, "height", 1, MAX_HEIGHT)
        need_int(self.round, "round", 0, MAX_ROUND)
        need_int(self.pol_round, "pol_round", -1, MAX_ROUND)
        if self.pol_round >= self.round:
            raise InvalidMessage("E_FIELD", "pol_round must be -1 or below round")
        need_bytes(self.block_hash, "block_hash", canonical.HASH_SIZE)
        need_bytes(self.block, "block")
        need_bytes(self.proposer, "proposer", canonical.PUBKEY_SIZE)
        need_bytes(self.signature, "signature", canonical.SIGNATURE_SIZE)

    def verify(self, chain_id: str) -> None:
        """Raise :class:`InvalidMessage` unless well formed and signed by ``proposer``."""
        self.validate_basic()
        if not canonical.verify_raw(self.proposer, self.sign_bytes(chain_id), self.signature):
            raise InvalidMessage("E_SIGNATURE", "bad proposal signature")

    def to_obj(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "pol_round": self.pol_round,
            "block_hash": self.block_hash,
            "proposer": self.proposer,
            "block": self.block,
            "signature": self.signature,
        }

    @classmethod
    def from_obj(cls, obj: Any) -> Proposal:
        m = need_map(obj, "proposal", _PROPOSAL_KEYS)
        proposal = cls(
            height=Height(need_int(m["height"], "height", 1, MAX_HEIGHT)),
            round=Round(need_int(m["round"], "round", 0, MAX_ROUND)),
            pol_round=Round(need_int(m["pol_round"], "pol_round", -1, MAX_ROUND)),
            block_hash=need_bytes(m["block_hash"], "block_hash", canonical.HASH_SIZE),
            block=need_bytes(m["block"], "block"),
            proposer=need_bytes(m["proposer"], "proposer", canonical.PUBKEY_SIZE),
            signature=need_bytes(m["signature"], "signature", canonical.SIGNATURE_SIZE),
        )
        proposal.validate_basic()
        return proposal


# --- commit certificates ------------------------------------------------------------------

_COMMIT_KEYS = frozenset({"height", "round", "block_hash", "signatures"})


@dataclass(frozen=True)
class Commit:
    """Quorum precommits for ``block_hash`` in ``round``: proof that ``height`` is decided.

    ``signatures`` holds ``(validator, signature)`` pairs ordered by validator index; each
    signs ``Vote(PRECOMMIT, height, round, block_hash, validator)``.
    """

    height: Height
    round: Round
    block_hash: bytes
    signatures: tuple[tuple[bytes, bytes], ...]

    def precommit(self, validator: bytes, signature: bytes) -> Vote:
        return Vote(
            VoteType.PRECOMMIT, self.height, self.round, self.block_hash, validator, signature
        )

    def to_obj(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "block_hash": self.block_hash,
            "signatures": [[v, s] for v, s in self.signatures],
        }

    @classmethod
    def from_obj(cls, obj: Any) -> Commit:
        m = need_map(obj, "commit", _COMMIT_KEYS)
        raw = m["signatures"]
        if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
            raise InvalidMessage("E_FIELD", "signatures must be a list")
        if len(raw) > MAX_VALIDATORS:
            raise InvalidMessage("E_FIELD", "too many signatures")
        pairs: list[tuple[bytes, bytes]] = []
        for item in raw:
            if not isinstance(item, Sequence) or isinstance(item, str | bytes) or len(item) != 2:
                raise InvalidMessage("E_FIELD", "each signature must be [validator, signature]")
            pairs.append(
                (
                    need_bytes(item[0], "validator", canonical.PUBKEY_SIZE),
                    need_bytes(item[1], "signature", canonical.SIGNATURE_SIZE),
                )
            )
        return cls(
            height=Height(need_int(m["height"], "height", 1, MAX_HEIGHT)),
            round=Round(need_int(m["round"], "round", 0, MAX_ROUND)),
            block_hash=need_bytes(m["block_hash"], "block_hash", canonical.HASH_SIZE),
            signatures=tuple(pairs),
        )


def verify_commit(chain_id: str, validators: ValidatorSet, commit: Commit,
                  verifier: Callable[[bytes, bytes, bytes], bool] = canonical.verify_raw
                  ) -> None:
    """Raise :class:`InvalidMessage` unless ``commit`` proves its block is decided.

    Checks: every signer is a validator, no signer twice, every signature is a valid
    precommit for the commit's height/round/block (by ``verifier``, Ed25519 by default),
    and at least a quorum signed. The caller still checks that ``commit.height`` and
    ``commit.block_hash`` are the ones it expects.
    """
    seen: set[bytes] = set()
    for validator, signature in commit.signatures:
        if validator not in validators:
            raise InvalidMessage("E_COMMIT_SIGNER", "commit signed by a non-validator")
        if validator in seen:
            raise InvalidMessage("E_COMMIT_DUPLICATE", "validator signed the commit twice")
        seen.add(validator)
        commit.precommit(validator, signature).verify(chain_id, verifier)
    if len(seen) < validators.quorum:
        raise InvalidMessage(
            "E_COMMIT_QUORUM", f"{len(seen)} signatures, quorum is {validators.quorum}"
        )


# --- wire envelope ------------------------------------------------------------------------

Message = Vote | Proposal


def message_to_obj(message: Message) -> dict[str, Any]:
    """Wrap a consensus message for the wire: ``{"kind": "vote"|"proposal", "body": ...}``."""
    kind = "vote" if isinstance(message, Vote) else "proposal"
    return {"kind": kind, "body": message.to_obj()}


def message_from_obj(obj: Any) -> Message:
    """Inverse of :func:`message_to_obj`; raises :class:`InvalidMessage` on anything else."""
    m = need_map(obj, "message", frozenset({"kind", "body"}))
    if m["kind"] == "vote":
        return Vote.from_obj(m["body"])
    if m["kind"] == "proposal":
        return Proposal.from_obj(m["body"])
    raise InvalidMessage("E_KIND", "unknown message kind")
