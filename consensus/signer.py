"""Double-sign protection: never sign two different things for one height/round/step.

This is CometBFT's ``priv_validator_state``. :class:`SignGuard` is the pure rule over a
small :class:`GuardState` the node persists; :class:`GuardedSigner` signs with an Ed25519
key and calls ``persist(state)`` *before* a new signature is returned, so a crash can never
let a signature out that the guard does not remember. Re-signing the identical payload is
allowed (Ed25519 is deterministic, the same signature comes back): that is what WAL replay
after a crash does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum, IntEnum
from typing import Any, Protocol

from nacl.signing import SigningKey

from consensus import canonical
from consensus.types import (
    PROPOSAL_TAG,
    VOTE_TAG,
    InvalidMessage,
    Proposal,
    Vote,
    VoteType,
)


class SignStep(IntEnum):
    """Order of signatures within one round."""

    PROPOSAL = 1
    PREVOTE = 2
    PRECOMMIT = 3


@dataclass(frozen=True)
class GuardState:
    """What was signed at the latest height: ``(height, round, step)`` of the last
    signature, and every ``(round, step, payload_digest, signature)`` signed at ``height``.

    Keeping the whole height (not only the last signature, as CometBFT does) lets a
    restarted core replay its WAL and get back *all* its own votes of the height with the
    same signatures. ``height == 0`` means nothing was ever signed.
    """

    height: int = 0
    round: int = -1
    step: int = 0
    signed: tuple[tuple[int, int, bytes, bytes], ...] = ()

    def to_obj(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "step": self.step,
            "signed": [list(entry) for entry in self.signed],
        }

    @classmethod
    def from_obj(cls, obj: Any) -> GuardState:
        try:
            state = cls(
                height=int(obj["height"]),
                round=int(obj["round"]),
                step=int(obj["step"]),
                signed=tuple(
                    (int(r), int(s), bytes(d), bytes(sig)) for r, s, d, sig in obj["signed"]
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidMessage("E_GUARD_STATE", f"bad guard state: {exc}") from None
        return state


class Verdict(Enum):
    SIGN = "sign"  # strictly after the last signature: sign, persist, return
    REUSE = "reuse"  # this exact payload was signed before: return that signature
    REFUSE = "refuse"  # conflicts with, or goes back before, what was signed


class SignGuard:
    """Pure rule deciding whether a signature at ``(height, round, step)`` is safe.

    Allowed: anything strictly after the last signature, and the identical payload of an
    earlier signature at the same height. Refused: a different payload for an already
    signed ``(height, round, step)``, and anything before the last signature that was
    never signed.
    """

    def __init__(self, state: GuardState | None = None) -> None:
        self.state = state or GuardState()

    def check(
        self, height: int, round_: int, step: SignStep, payload_digest: bytes
    ) -> tuple[Verdict, bytes]:
        """Return the verdict and, for ``REUSE``, the signature to return again."""
        if height == self.state.height:
            for r, s, digest, signature in self.state.signed:
                if (r, s) == (round_, int(step)):
                    if digest == payload_digest:
                        return Verdict.REUSE, signature
                    return Verdict.REFUSE, b""
        last = (self.state.height, self.state.round, self.state.step)
        if (height, round_, int(step)) > last:
            return Verdict.SIGN, b""
        return Verdict.REFUSE, b""

    def advanced(
        self, height: int, round_: int, step: SignStep, payload_digest: bytes, signature: bytes
    ) -> GuardState:
        """The state to persist after signing (not yet applied to ``self``)."""
        earlier = self.state.signed if height == self.state.height else ()
        return GuardState(
            height=height,
            round=round_,
            step=int(step),
            signed=(*earlier, (round_, int(step), payload_digest, signature)),
        )


class Signer(Protocol):
    """What the core needs to sign; ``None`` means "refused" (the core then stays silent)."""

    @property
    def pubkey(self) -> bytes: ...

    def sign_vote(self, vote: Vote) -> Vote | None: ...

    def sign_proposal(self, proposal: Proposal) -> Proposal | None: ...


class GuardedSigner:
    """An in-memory Ed25519 signer behind a :class:`SignGuard`.

    ``persist`` must durably store the state (fsync) before returning; an exception from
    it propagates and no signature is released.
    """

    def __init__(
        self,
        key: SigningKey,
        chain_id: str,
        guard: SignGuard | None = None,
        persist: Callable[[GuardState], None] | None = None,
    ) -> None:
        self._key = key
        self._chain_id = chain_id
        self.guard = guard or SignGuard()
        self._persist = persist
        self._pubkey = bytes(key.verify_key)

    @property
    def pubkey(self) -> bytes:
        return self._pubkey

    def _sign(self, height: int, round_: int, step: SignStep, tag: str, body: Any) -> bytes | None:
        message = canonical.sign_bytes(tag, self._chain_id, body)
        payload_digest = canonical.digest(message)
        verdict, previous = self.guard.check(height, round_, step, payload_digest)
        if verdict is Verdict.REFUSE:
            return None
        if verdict is Verdict.REUSE:
            return previous
        signature = bytes(self._key.sign(message).signature)
        new_state = self.guard.advanced(height, round_, step, payload_digest, signature)
        if self._persist is not None:
            self._persist(new_state)
        self.guard.state = new_state
        return signature

    def sign_vote(self, vote: Vote) -> Vote | None:
        if vote.validator != self._pubkey:
            return None
        step = SignStep.PREVOTE if vote.vote_type is VoteType.PREVOTE else SignStep.PRECOMMIT
        signature = self._sign(vote.height, vote.round, step, VOTE_TAG, vote.sign_body())
        return None if signature is None else replace(vote, signature=signature)

    def sign_proposal(self, proposal: Proposal) -> Proposal | None:
        if proposal.proposer != self._pubkey:
            return None
        signature = self._sign(
            proposal.height, proposal.round, SignStep.PROPOSAL, PROPOSAL_TAG, proposal.sign_body()
        )
        return None if signature is None else replace(proposal, signature=signature)
