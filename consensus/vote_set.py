"""Vote bookkeeping for one height: who voted what, per round and type.

A validator's first vote for a (round, type) counts; a second identical one is a
duplicate; a second *different* one is equivocation, returned as evidence and not counted.
Votes must be verified before they get here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from consensus.types import Round, ValidatorSet, Vote, VoteType


class AddResult(Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass
class VoteSet:
    """Votes of one (height, round, type), counted per block hash (``None`` = nil).

    As in the paper, "2f+1 prevotes for v" counts distinct senders *of votes for v*: an
    equivocating validator counts towards each value it voted for (safe, since the quorum
    maths allows f such validators), while "2f+1 prevotes for anything" counts distinct
    senders. Counting only first votes would let a Byzantine validator hide a polka from
    some honest validators forever, which breaks liveness.
    """

    validators: ValidatorSet
    votes: dict[bytes, Vote]  # each validator's first vote
    by_block: dict[bytes | None, dict[bytes, Vote]]

    @classmethod
    def empty(cls, validators: ValidatorSet) -> VoteSet:
        return cls(validators, {}, {})

    def add(self, vote: Vote) -> tuple[AddResult, Vote | None]:
        """Add ``vote``; on conflict it is counted too, and the first vote is returned."""
        voters = self.by_block.setdefault(vote.block_hash, {})
        if vote.validator in voters:
            return AddResult.DUPLICATE, None
        voters[vote.validator] = vote
        first = self.votes.get(vote.validator)
        if first is None:
            self.votes[vote.validator] = vote
            return AddResult.ADDED, None
        return AddResult.CONFLICT, first

    def has_voted(self, validator: bytes) -> bool:
        return validator in self.votes

    def holds(self, vote: Vote) -> bool:
        """True when exactly this vote (same signature) is already held."""
        return self.by_block.get(vote.block_hash, {}).get(vote.validator) == vote

    def count(self, block_hash: bytes | None) -> int:
        return len(self.by_block.get(block_hash, ()))

    def total(self) -> int:
        return len(self.votes)

    def has_quorum_any(self) -> bool:
        """2f+1 senders, for anything (the paper's ``2f+1 <PREVOTE, h, r, *>``)."""
        return self.total() >= self.validators.quorum

    def quorum_block(self) -> bytes | None:
        """A non-nil block with a quorum, if any (two only with more than f faulty)."""
        for block_hash, voters in self.by_block.items():
            if block_hash is not None and len(voters) >= self.validators.quorum:
                return block_hash
        return None

    def votes_for(self, block_hash: bytes | None) -> list[Vote]:
        """Votes for ``block_hash``, in validator order."""
        votes = list(self.by_block.get(block_hash, {}).values())
        votes.sort(key=lambda v: self.validators.index_of(v.validator) or 0)
        return votes

    def signatures_for(self, block_hash: bytes) -> tuple[tuple[bytes, bytes], ...]:
        """``(validator, signature)`` of votes for ``block_hash``, in validator order."""
        return tuple((v.validator, v.signature) for v in self.votes_for(block_hash))


class HeightVoteSet:
    """All votes of one height, by round and type, plus who spoke in each round."""

    def __init__(self, validators: ValidatorSet) -> None:
        self.validators = validators
        self._sets: dict[tuple[Round, VoteType], VoteSet] = {}
        self._speakers: dict[Round, set[bytes]] = {}

    def get(self, round_: Round, vote_type: VoteType) -> VoteSet:
        key = (round_, vote_type)
        vote_set = self._sets.get(key)
        if vote_set is None:
            vote_set = VoteSet.empty(self.validators)
            self._sets[key] = vote_set
        return vote_set

    def add(self, vote: Vote) -> tuple[AddResult, Vote | None]:
        result = self.get(vote.round, vote.vote_type).add(vote)
        self.note_speaker(vote.round, vote.validator)
        return result

    def note_speaker(self, round_: Round, validator: bytes) -> None:
        """Record that ``validator`` sent some message (vote or proposal) in ``round_``."""
        self._speakers.setdefault(round_, set()).add(validator)

    def speakers(self, round_: Round) -> int:
        return len(self._speakers.get(round_, ()))

    def rounds(self) -> list[Round]:
        return sorted(self._speakers)

    def contains(self, vote: Vote) -> bool:
        """True when exactly this vote (same signature) is already held."""
        held = self._sets.get((vote.round, vote.vote_type))
        return held is not None and held.holds(vote)
