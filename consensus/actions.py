"""Outputs of the consensus core: what the node must do, in the order returned.

Persisting comes before sending: signatures are already persisted by the signer guard
before the core sees them, and the WAL entry for the event was written before ``step()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.events import TimeoutStep
from consensus.types import Commit, Height, Message, Proposal, Round, Vote


@dataclass(frozen=True)
class Broadcast:
    """Send ``message`` (our own signed vote or proposal) to every peer."""

    message: Message


@dataclass(frozen=True)
class ScheduleTimeout:
    """After ``duration_ms`` feed ``TimeoutFired(height, round, step)``. Stale timeouts are
    harmless (the core ignores them), so the node never needs to cancel one."""

    height: Height
    round: Round
    step: TimeoutStep
    duration_ms: int


@dataclass(frozen=True)
class RequestProposalValue:
    """We propose in ``height``/``round``: build and execute a block, then feed
    ``ProposalValueReady``."""

    height: Height
    round: Round


@dataclass(frozen=True)
class ValidateBlock:
    """Decode and re-execute ``block``, check it hashes to ``block_hash``; answer with
    ``BlockValidated``. Results may be cached by hash: validity is per height, not round."""

    height: Height
    round: Round
    block_hash: bytes
    block: bytes


@dataclass(frozen=True)
class Decide:
    """``block`` is decided at ``height``; ``commit`` is its certificate. Commit it
    atomically (block + certificate + state + WAL truncation), then feed ``Start(height+1)``."""

    height: Height
    round: Round
    block_hash: bytes
    block: bytes
    commit: Commit


@dataclass(frozen=True)
class RequestBlock:
    """The network is ahead of us: fetch decided blocks with their certificates from
    ``height`` on (f+1 validators were seen at ``seen_height``), verify each with
    ``verify_commit``, commit them, then feed ``Start(last + 1)``."""

    height: Height
    seen_height: Height


@dataclass(frozen=True)
class ReportEvidence:
    """``vote_a`` and ``vote_b`` are both validly signed by one validator for the same
    height/round/type and different blocks: proof of equivocation. Two proposals are the
    same for a proposer: one (height, round), two blocks."""

    vote_a: Vote | Proposal
    vote_b: Vote | Proposal


Action = (
    Broadcast
    | ScheduleTimeout
    | RequestProposalValue
    | ValidateBlock
    | Decide
    | RequestBlock
    | ReportEvidence
)
