"""Write-ahead log records for consensus inputs, and replay after a crash.

Contract with the node:

1. Before feeding an event to ``core.step``, append ``WalRecord(event).to_obj()`` (canonical
   msgpack) to the WAL, so that it outlives the process (the node's file append is not
   fsynced: a power cut may lose the tail, and the signer guard, which is synced before any
   signature leaves, is what prevents a double sign). Inputs only: outputs are re-derived.
2. When height ``h`` is committed (``Decide`` or block sync), replace the WAL by
   :func:`wal_after_commit` (the early messages the core buffered for later heights) once
   the block is on disk, so the WAL only ever holds the uncommitted height; a crash in
   between leaves records of a committed height, which a restart skips by their height.
   The ``Start(h + 1)`` that follows is appended like any event.
3. On restart, build a fresh core (``height`` = last committed + 1, ``last_commit`` = its
   stored certificate) with a signer whose guard state was loaded from disk, and call
   :func:`replay` with the decoded records; if no record is a ``Start`` (the crash came
   between a commit and the next ``Start``), feed ``Start(last committed + 1)`` after it,
   through the WAL as usual. The core ends in the same round with the same lock. Our own
   votes come out again with the same signatures (the guard allows re-signing the
   identical payload and refuses anything else, so replay can never produce a double
   sign).
4. Perform the replayed actions like live ones: re-broadcast (peers drop duplicates),
   re-schedule timeouts (stale ones are ignored by the core), re-run ``ValidateBlock`` and
   ``RequestProposalValue`` whose answers are not in the WAL (answers that are in the WAL
   were replayed; the core ignores a second answer), and honour ``Decide``/``RequestBlock``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consensus.actions import Action
from consensus.core import ConsensusCore
from consensus.events import (
    BlockValidated,
    Event,
    ProposalReceived,
    ProposalValueReady,
    Start,
    TimeoutFired,
    TimeoutStep,
    VoteReceived,
)
from consensus.types import (
    MAX_HEIGHT,
    MAX_ROUND,
    Height,
    InvalidMessage,
    Proposal,
    Round,
    Vote,
    need_bytes,
    need_int,
    need_map,
)


def _hash(value: Any) -> bytes:
    return need_bytes(value, "block_hash", 32)


def _height(m: Mapping[str, Any]) -> Height:
    return Height(need_int(m["height"], "height", 1, MAX_HEIGHT))


def _round(m: Mapping[str, Any]) -> Round:
    return Round(need_int(m["round"], "round", 0, MAX_ROUND))


class WalRecord:
    """One WAL entry: a consensus input event, as a canonical-encodable object."""

    __slots__ = ("event",)

    def __init__(self, event: Event) -> None:
        self.event = event

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WalRecord) and other.event == self.event

    def __hash__(self) -> int:
        return hash(self.event)

    def to_obj(self) -> dict[str, Any]:
        e = self.event
        if isinstance(e, Start):
            return {"kind": "start", "height": e.height}
        if isinstance(e, ProposalReceived):
            return {"kind": "proposal", "proposal": e.proposal.to_obj()}
        if isinstance(e, VoteReceived):
            return {"kind": "vote", "vote": e.vote.to_obj()}
        if isinstance(e, TimeoutFired):
            return {"kind": "timeout", "height": e.height, "round": e.round, "step": int(e.step)}
        if isinstance(e, BlockValidated):
            return {
                "kind": "validated",
                "height": e.height,
                "round": e.round,
                "block_hash": e.block_hash,
                "valid": e.valid,
            }
        return {
            "kind": "value",
            "height": e.height,
            "round": e.round,
            "block_hash": e.block_hash,
            "block": e.block,
        }

    @classmethod
    def from_obj(cls, obj: Any) -> WalRecord:
        """Decode a record; raises :class:`InvalidMessage` (``E_WAL``...) when corrupt."""
        if not isinstance(obj, dict) or "kind" not in obj:
            raise InvalidMessage("E_WAL", "WAL record must be a map with a kind")
        kind = obj["kind"]
        event: Event
        if kind == "start":
            m = need_map(obj, "start", frozenset({"kind", "height"}))
            event = Start(_height(m))
        elif kind == "proposal":
            m = need_map(obj, "proposal", frozenset({"kind", "proposal"}))
            event = ProposalReceived(Proposal.from_obj(m["proposal"]))
        elif kind == "vote":
            m = need_map(obj, "vote", frozenset({"kind", "vote"}))
            event = VoteReceived(Vote.from_obj(m["vote"]))
        elif kind == "timeout":
            m = need_map(obj, "timeout", frozenset({"kind", "height", "round", "step"}))
            event = TimeoutFired(
                _height(m), _round(m), TimeoutStep(need_int(m["step"], "step", 1, 3))
            )
        elif kind == "validated":
            m = need_map(
                obj, "validated", frozenset({"kind", "height", "round", "block_hash", "valid"})
            )
            if not isinstance(m["valid"], bool):
                raise InvalidMessage("E_FIELD", "valid must be a bool")
            event = BlockValidated(_height(m), _round(m), _hash(m["block_hash"]), m["valid"])
        elif kind == "value":
            m = need_map(
                obj, "value", frozenset({"kind", "height", "round", "block_hash", "block"})
            )
            event = ProposalValueReady(
                _height(m), _round(m), _hash(m["block_hash"]), need_bytes(m["block"], "block")
            )
        else:
            raise InvalidMessage("E_WAL", f"unknown WAL record kind {kind!r}")
        return cls(event)


def wal_after_commit(core: ConsensusCore) -> list[Event]:
    """The records a fresh WAL starts with after a commit: the core's buffered messages
    for later heights, which a replaying core must see before ``Start`` as this one did."""
    events: list[Event] = []
    for message in core.pending_messages():
        if isinstance(message, Vote):
            events.append(VoteReceived(message))
        else:
            events.append(ProposalReceived(message))
    return events


def replay(core: ConsensusCore, events: list[Event]) -> list[Action]:
    """Feed logged ``events`` to a fresh ``core``; return all actions, in order."""
    actions: list[Action] = []
    for event in events:
        actions.extend(core.step(event))
    return actions
