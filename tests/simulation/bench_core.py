"""Micro-benchmark of one ConsensusCore: votes processed/s and decisions/s.

    python tests/simulation/bench_core.py [--heights 300]

For n validators, one core (validator 0) decides ``heights`` heights in round 0: per height
it gets Start, the proposal, the validation answer, n-1 prevotes and n-1 precommits. All
remote messages are signed before the clock starts. "crypto excluded" injects a verifier
that accepts everything and a signer that returns a fixed signature; "crypto included"
verifies every signature with Ed25519 and signs our own votes through the guarded signer.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nacl.signing import SigningKey

from consensus import canonical
from consensus.actions import Decide
from consensus.core import ConsensusCore
from consensus.events import (
    BlockValidated,
    Event,
    ProposalReceived,
    ProposalValueReady,
    Start,
    VoteReceived,
)
from consensus.signer import GuardedSigner
from consensus.types import (
    PROPOSAL_TAG,
    VOTE_TAG,
    Height,
    Proposal,
    Round,
    ValidatorSet,
    Vote,
    VoteType,
)

CHAIN = "bench"


class FakeSigner:
    """Signs nothing: isolates the state machine's own cost."""

    def __init__(self, pubkey: bytes) -> None:
        self.pubkey = pubkey

    def sign_vote(self, vote: Vote) -> Vote:
        return replace(vote, signature=b"\0" * 64)

    def sign_proposal(self, proposal: Proposal) -> Proposal:
        return replace(proposal, signature=b"\0" * 64)


def build_events(keys: list[SigningKey], vs: ValidatorSet, heights: int) -> list[Event]:
    """Everything validator 0 receives while deciding ``heights`` heights in round 0."""
    events: list[Event] = []
    for h in range(1, heights + 1):
        height = Height(h)
        block = f"block {h}".encode()
        block_hash = canonical.digest(block)
        proposer = vs.index_of(vs.proposer(height, Round(0))) or 0
        events.append(Start(height))
        if proposer == 0:
            events.append(ProposalValueReady(height, Round(0), block_hash, block))
        else:
            body = Proposal(height, Round(0), Round(-1), block_hash, block, vs.validators[proposer])
            sig = canonical.sign(keys[proposer], PROPOSAL_TAG, CHAIN, body.sign_body())
            events.append(ProposalReceived(replace(body, signature=sig)))
            events.append(BlockValidated(height, Round(0), block_hash, True))
        for kind in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            for i in range(1, len(keys)):
                vote = Vote(kind, height, Round(0), block_hash, vs.validators[i])
                sig = canonical.sign(keys[i], VOTE_TAG, CHAIN, vote.sign_body())
                events.append(VoteReceived(replace(vote, signature=sig)))
    return events


def bench(n: int, heights: int, crypto: bool) -> tuple[float, float]:
    keys = [SigningKey(bytes([i + 1]) * 32) for i in range(n)]
    vs = ValidatorSet(tuple(bytes(k.verify_key) for k in keys))
    events = build_events(keys, vs, heights)
    me = vs.validators[0]
    if crypto:
        core = ConsensusCore(CHAIN, vs, me, GuardedSigner(keys[0], CHAIN))
    else:
        core = ConsensusCore(CHAIN, vs, me, FakeSigner(me), verifier=lambda *_: True)
    votes = sum(1 for e in events if isinstance(e, VoteReceived))
    decided = 0
    started = time.perf_counter()
    for event in events:
        for action in core.step(event):
            if isinstance(action, Decide):
                decided += 1
    elapsed = time.perf_counter() - started
    assert decided == heights, decided
    return votes / elapsed, decided / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heights", type=int, default=300)
    args = parser.parse_args()
    for n in (4, 16):
        for crypto in (False, True):
            votes_s, decisions_s = bench(n, args.heights, crypto)
            label = "crypto included" if crypto else "crypto excluded"
            print(f"n={n:<3} {label}: {votes_s:>9,.0f} votes/s  {decisions_s:>8,.1f} decisions/s")


if __name__ == "__main__":
    main()
