"""Inputs of the consensus core: everything that can happen to it, as frozen dataclasses.

Time arrives only as :class:`TimeoutFired`; the node's answers to the core's requests
arrive as :class:`ProposalValueReady` and :class:`BlockValidated`. The node appends every
event to its WAL *before* feeding it to :meth:`ConsensusCore.step` (see ``consensus.wal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from consensus.types import Height, Proposal, Round, Vote


class TimeoutStep(IntEnum):
    """Which of the three per-round timeouts fired (values are stored in the WAL)."""

    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3


@dataclass(frozen=True)
class Start:
    """Begin ``height`` at round 0. Sent once the previous height is committed (possibly
    delayed by the node to avoid empty blocks), or after block sync jumped ahead."""

    height: Height


@dataclass(frozen=True)
class ProposalReceived:
    """A proposal arrived from the network (the core verifies it)."""

    proposal: Proposal


@dataclass(frozen=True)
class VoteReceived:
    """A vote arrived from the network (the core verifies it)."""

    vote: Vote


@dataclass(frozen=True)
class TimeoutFired:
    """A timeout scheduled by :class:`~consensus.actions.ScheduleTimeout` expired."""

    height: Height
    round: Round
    step: TimeoutStep


@dataclass(frozen=True)
class BlockValidated:
    """Answer to :class:`~consensus.actions.ValidateBlock`: ``valid`` is the node's verdict
    (the block decodes, hashes to ``block_hash``, and re-executes to the same roots)."""

    height: Height
    round: Round
    block_hash: bytes
    valid: bool


@dataclass(frozen=True)
class ProposalValueReady:
    """Answer to :class:`~consensus.actions.RequestProposalValue`: the block to propose."""

    height: Height
    round: Round
    block_hash: bytes
    block: bytes


Event = Start | ProposalReceived | VoteReceived | TimeoutFired | BlockValidated | ProposalValueReady
