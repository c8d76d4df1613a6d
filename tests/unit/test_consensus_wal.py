"""WAL records (consensus/wal.py); replay itself is tested in test_consensus_core.py."""

from __future__ import annotations

import pytest

from consensus import canonical
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
from consensus.types import Height, InvalidMessage, Proposal, Round, Vote, VoteType
from consensus.wal import WalRecord

H = canonical.digest(b"x")
EVENTS: list[Event] = [
    Start(Height(7)),
    ProposalReceived(Proposal(Height(7), Round(1), Round(0), H, b"x", b"p" * 32, b"s" * 64)),
    VoteReceived(Vote(VoteType.PRECOMMIT, Height(7), Round(1), None, b"v" * 32, b"s" * 64)),
    TimeoutFired(Height(7), Round(2), TimeoutStep.PREVOTE),
    BlockValidated(Height(7), Round(1), H, False),
    ProposalValueReady(Height(7), Round(3), H, b"x"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_wal_record_roundtrips(event: Event) -> None:
    data = canonical.encode(WalRecord(event).to_obj())
    assert WalRecord.from_obj(canonical.decode(data)).event == event


@pytest.mark.parametrize(
    "obj",
    [
        None,
        {"kind": "nope"},
        {"kind": "start"},
        {"kind": "start", "height": 0},
        {"kind": "timeout", "height": 1, "round": 0, "step": 9},
        {"kind": "validated", "height": 1, "round": 0, "block_hash": H, "valid": 1},
        {"kind": "vote", "vote": {}},
    ],
)
def test_invalid_wal_record_is_rejected(obj: object) -> None:
    with pytest.raises(InvalidMessage):
        WalRecord.from_obj(obj)
