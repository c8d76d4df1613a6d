"""The consensus core against the rules of Buchman, Kwon, Milosevic 2018 (Algorithm 1).

Each test: set up a core for validator 0 of four (f = 1, quorum = 3), feed events, check the
actions. Rejections are ``test_invalid_*``.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from consensus import canonical
from consensus.actions import (
    Action,
    Broadcast,
    Decide,
    ReportEvidence,
    RequestBlock,
    RequestProposalValue,
    ScheduleTimeout,
    ValidateBlock,
)
from consensus.core import ConsensusCore, ConsensusParams, Step
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
from consensus.signer import GuardedSigner, GuardState, SignGuard
from consensus.types import (
    PROPOSAL_TAG,
    VOTE_TAG,
    Height,
    Proposal,
    Round,
    ValidatorSet,
    Vote,
    VoteType,
    verify_commit,
)
from consensus.wal import WalRecord, replay

CHAIN = "test-chain"
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
PUBS = [bytes(k.verify_key) for k in KEYS]
VALIDATORS = ValidatorSet(tuple(PUBS))
PARAMS = ConsensusParams()
BLOCK_A = b"block-a"
BLOCK_B = b"block-b"
HASH_A = canonical.digest(BLOCK_A)
HASH_B = canonical.digest(BLOCK_B)


def index_of_proposer(height: int, round_: int) -> int:
    return (height + round_) % 4


def make_core(me: int = 0, guard: GuardState | None = None) -> ConsensusCore:
    signer = GuardedSigner(KEYS[me], CHAIN, SignGuard(guard))
    return ConsensusCore(CHAIN, VALIDATORS, PUBS[me], signer, PARAMS)


def vote(who: int, kind: VoteType, round_: int, block_hash: bytes | None, height: int = 1) -> Vote:
    body = Vote(kind, Height(height), Round(round_), block_hash, PUBS[who])
    return replace(body, signature=canonical.sign(KEYS[who], VOTE_TAG, CHAIN, body.sign_body()))


def proposal(
    round_: int, block: bytes, pol_round: int = -1, height: int = 1, who: int | None = None
) -> Proposal:
    who = index_of_proposer(height, round_) if who is None else who
    body = Proposal(
        Height(height), Round(round_), Round(pol_round), canonical.digest(block), block, PUBS[who]
    )
    sig = canonical.sign(KEYS[who], PROPOSAL_TAG, CHAIN, body.sign_body())
    return replace(body, signature=sig)


def my_votes(actions: list[Action]) -> list[Vote]:
    return [a.message for a in actions if isinstance(a, Broadcast) and isinstance(a.message, Vote)]


def feed(core: ConsensusCore, *events: Event) -> list[Action]:
    out: list[Action] = []
    for event in events:
        out.extend(core.step(event))
    return out


def receive_valid_proposal(core: ConsensusCore, prop: Proposal) -> list[Action]:
    """Deliver a proposal and answer its ValidateBlock with 'valid'."""
    actions = feed(core, ProposalReceived(prop))
    for action in list(actions):
        if isinstance(action, ValidateBlock):
            actions += feed(
                core, BlockValidated(action.height, action.round, action.block_hash, True)
            )
    return actions


def started(me: int = 0) -> ConsensusCore:
    core = make_core(me)
    feed(core, Start(Height(1)))
    return core


# --- StartRound and proposing -------------------------------------------------------------


def test_proposer_requests_value_at_round_start() -> None:
    core = make_core(me=1)  # proposer of height 1, round 0
    actions = feed(core, Start(Height(1)))
    assert RequestProposalValue(Height(1), Round(0)) in actions
    assert any(isinstance(a, ScheduleTimeout) and a.step is TimeoutStep.PROPOSE for a in actions)


def test_proposer_broadcasts_signed_proposal_when_value_ready() -> None:
    core = make_core(me=1)
    feed(core, Start(Height(1)))
    actions = feed(core, ProposalValueReady(Height(1), Round(0), HASH_A, BLOCK_A))
    props = [a.message for a in actions if isinstance(a, Broadcast)]
    assert isinstance(props[0], Proposal) and props[0].block_hash == HASH_A
    props[0].verify(CHAIN)
    # ...and prevotes its own proposal (L22).
    assert [v.block_hash for v in my_votes(actions)] == [HASH_A]


def test_timeouts_grow_linearly_with_round() -> None:
    assert PARAMS.timeout_ms(TimeoutStep.PROPOSE, Round(3)) == 1000 + 3 * 500
    assert PARAMS.timeout_ms(TimeoutStep.PREVOTE, Round(2)) == 500 + 2 * 250
    assert PARAMS.timeout_ms(TimeoutStep.PRECOMMIT, Round(1)) == 500 + 250


# --- prevote rules ------------------------------------------------------------------------


def test_prevotes_valid_proposal() -> None:
    core = started()
    actions = receive_valid_proposal(core, proposal(0, BLOCK_A))
    assert [v.block_hash for v in my_votes(actions)] == [HASH_A]
    assert core.step_name is Step.PREVOTE


def test_waits_for_validation_before_prevoting() -> None:
    core = started()
    actions = feed(core, ProposalReceived(proposal(0, BLOCK_A)))
    assert ValidateBlock(Height(1), Round(0), HASH_A, BLOCK_A) in actions
    assert my_votes(actions) == []


def test_prevotes_nil_for_invalid_proposal() -> None:
    core = started()
    feed(core, ProposalReceived(proposal(0, BLOCK_A)))
    actions = feed(core, BlockValidated(Height(1), Round(0), HASH_A, False))
    assert [v.block_hash for v in my_votes(actions)] == [None]


def test_a_relayed_copy_with_other_block_bytes_is_refused_and_the_genuine_one_counts() -> None:
    """Regression: the proposal's signature covered the block hash, not the bytes, and the
    core judged the first copy it got: one Byzantine validator relaying a spoiled copy of
    each honest proposal to one honest validator, ahead of the genuine one, made it prevote
    nil and refuse the real block as a duplicate, round after round. Now the signature
    covers the bytes' digest, so such a copy fails its signature check."""
    core = started()
    genuine = proposal(0, BLOCK_A)
    spoiled = replace(genuine, block=BLOCK_A + b" with a swapped signature")
    actions = feed(core, ProposalReceived(spoiled))
    assert core.rejected["bad_signature"] == 1 and my_votes(actions) == []
    assert not any(isinstance(a, ValidateBlock) for a in actions)
    actions = receive_valid_proposal(core, genuine)
    assert [v.block_hash for v in my_votes(actions)] == [HASH_A]


def test_prevotes_nil_on_propose_timeout() -> None:
    core = started()
    actions = feed(core, TimeoutFired(Height(1), Round(0), TimeoutStep.PROPOSE))
    assert [(v.vote_type, v.block_hash) for v in my_votes(actions)] == [(VoteType.PREVOTE, None)]


def test_stale_timeout_is_ignored() -> None:
    core = started()
    assert feed(core, TimeoutFired(Height(1), Round(5), TimeoutStep.PROPOSE)) == []
    assert core.step_name is Step.PROPOSE


# --- locking ------------------------------------------------------------------------------


def lock_on_a_in_round_0(core: ConsensusCore) -> list[Action]:
    actions = receive_valid_proposal(core, proposal(0, BLOCK_A))
    for who in (1, 2):
        actions += feed(core, VoteReceived(vote(who, VoteType.PREVOTE, 0, HASH_A)))
    return actions


def test_locks_on_polka() -> None:
    core = started()
    actions = lock_on_a_in_round_0(core)
    assert (VoteType.PRECOMMIT, HASH_A) in [(v.vote_type, v.block_hash) for v in my_votes(actions)]
    assert core.locked_value == HASH_A and core.locked_round == 0
    assert core.valid_value is not None and core.valid_round == 0


def test_precommits_nil_on_nil_polka() -> None:
    core = started()
    feed(core, TimeoutFired(Height(1), Round(0), TimeoutStep.PROPOSE))
    actions: list[Action] = []
    for who in (1, 2):
        actions += feed(core, VoteReceived(vote(who, VoteType.PREVOTE, 0, None)))
    assert [(v.vote_type, v.block_hash) for v in my_votes(actions)] == [
        (VoteType.PRECOMMIT, None)
    ]
    assert core.locked_round == -1


def test_prevote_timeout_scheduled_on_two_thirds_any() -> None:
    core = started()
    feed(core, TimeoutFired(Height(1), Round(0), TimeoutStep.PROPOSE))
    feed(core, VoteReceived(vote(1, VoteType.PREVOTE, 0, HASH_A)))
    actions = feed(core, VoteReceived(vote(2, VoteType.PREVOTE, 0, HASH_B)))
    assert any(isinstance(a, ScheduleTimeout) and a.step is TimeoutStep.PREVOTE for a in actions)
    actions = feed(core, TimeoutFired(Height(1), Round(0), TimeoutStep.PREVOTE))
    assert [(v.vote_type, v.block_hash) for v in my_votes(actions)] == [
        (VoteType.PRECOMMIT, None)
    ]


def move_to_round(
    core: ConsensusCore, round_: int, voters: tuple[int, ...] = (1, 2, 3)
) -> list[Action]:
    """2f+1 nil precommits in the previous round, then its precommit timeout."""
    actions: list[Action] = []
    for who in voters:
        actions += feed(core, VoteReceived(vote(who, VoteType.PRECOMMIT, round_ - 1, None)))
    actions += feed(core, TimeoutFired(Height(1), Round(round_ - 1), TimeoutStep.PRECOMMIT))
    assert core.round == round_
    return actions


def test_locked_validator_prevotes_nil_for_other_value() -> None:
    core = started()
    lock_on_a_in_round_0(core)
    move_to_round(core, 1)
    actions = receive_valid_proposal(core, proposal(1, BLOCK_B))
    assert [v.block_hash for v in my_votes(actions)] == [None]


def test_locked_validator_prevotes_its_locked_value() -> None:
    core = started()
    lock_on_a_in_round_0(core)
    move_to_round(core, 1)
    actions = receive_valid_proposal(core, proposal(1, BLOCK_A, pol_round=0))
    assert [v.block_hash for v in my_votes(actions)] == [HASH_A]


def test_unlocks_on_newer_polka() -> None:
    core = started()
    lock_on_a_in_round_0(core)
    move_to_round(core, 1)
    # Round 1: B gets a polka we did not take part in (we timed out to nil).
    feed(core, TimeoutFired(Height(1), Round(1), TimeoutStep.PROPOSE))
    for who in (1, 2, 3):
        feed(core, VoteReceived(vote(who, VoteType.PREVOTE, 1, HASH_B)))
    move_to_round(core, 2)
    # Round 2: B is re-proposed with pol_round 1 > our locked round 0 -> prevote B (L28).
    actions = receive_valid_proposal(core, proposal(2, BLOCK_B, pol_round=1))
    assert [v.block_hash for v in my_votes(actions)] == [HASH_B]


def test_proposer_reproposes_valid_value() -> None:
    core = make_core(me=3)  # proposer of height 1 round 2
    feed(core, Start(Height(1)))
    lock_on_a_in_round_0(core)
    move_to_round(core, 1, voters=(0, 1, 2))
    actions = move_to_round(core, 2, voters=(0, 1, 2))
    proposals = [
        a.message
        for a in actions
        if isinstance(a, Broadcast) and isinstance(a.message, Proposal)
    ]
    # L15: validValue is re-proposed with its polka round, no new value is requested.
    assert [(p.round, p.block_hash, p.pol_round) for p in proposals] == [(2, HASH_A, 0)]
    assert not any(isinstance(a, RequestProposalValue) for a in actions)


# --- deciding -----------------------------------------------------------------------------


def test_decides_on_two_thirds_precommits() -> None:
    core = started()
    lock_on_a_in_round_0(core)
    feed(core, VoteReceived(vote(1, VoteType.PRECOMMIT, 0, HASH_A)))
    actions = feed(core, VoteReceived(vote(2, VoteType.PRECOMMIT, 0, HASH_A)))
    decides = [a for a in actions if isinstance(a, Decide)]
    assert len(decides) == 1 and decides[0].block == BLOCK_A
    verify_commit(CHAIN, VALIDATORS, decides[0].commit)
    assert core.step_name is Step.DECIDED


def test_no_decision_on_f_plus_one_precommits() -> None:
    core = started()
    receive_valid_proposal(core, proposal(0, BLOCK_A))
    feed(core, VoteReceived(vote(1, VoteType.PRECOMMIT, 0, HASH_A)))
    actions = feed(core, VoteReceived(vote(2, VoteType.PRECOMMIT, 0, HASH_A)))
    assert not any(isinstance(a, Decide) for a in actions)


def test_decides_in_earlier_round() -> None:
    core = started()
    receive_valid_proposal(core, proposal(0, BLOCK_A))
    for who in (1, 2):  # f+1 validators are in round 2: skip there (L55)
        feed(core, VoteReceived(vote(who, VoteType.PREVOTE, 2, None)))
    assert core.round == 2
    actions: list[Action] = []
    for who in (1, 2, 3):  # ...but round 0 gathered 2f+1 precommits for A (L49)
        actions += feed(core, VoteReceived(vote(who, VoteType.PRECOMMIT, 0, HASH_A)))
    assert [(a.round, a.block_hash) for a in actions if isinstance(a, Decide)] == [(0, HASH_A)]


def test_decision_without_block_requests_it() -> None:
    core = started()
    actions: list[Action] = []
    for who in (1, 2, 3):
        actions += feed(core, VoteReceived(vote(who, VoteType.PRECOMMIT, 0, HASH_A)))
    assert RequestBlock(Height(1), Height(1)) in actions


def test_start_next_height_after_decision() -> None:
    core = started()
    lock_on_a_in_round_0(core)
    for who in (1, 2):
        feed(core, VoteReceived(vote(who, VoteType.PRECOMMIT, 0, HASH_A)))
    actions = feed(core, Start(Height(2)))
    assert core.height == 2 and core.round == 0 and core.locked_round == -1
    assert any(isinstance(a, ScheduleTimeout) for a in actions)


# --- round skipping -----------------------------------------------------------------------


def test_skip_round_on_f_plus_one() -> None:
    core = started()
    feed(core, VoteReceived(vote(1, VoteType.PREVOTE, 5, None)))
    assert core.round == 0
    feed(core, VoteReceived(vote(2, VoteType.PRECOMMIT, 5, None)))
    assert core.round == 5 and core.step_name is Step.PROPOSE


def test_no_skip_round_on_f_messages() -> None:
    core = started()
    feed(core, VoteReceived(vote(1, VoteType.PREVOTE, 5, None)))
    feed(core, VoteReceived(vote(1, VoteType.PRECOMMIT, 5, None)))
    assert core.round == 0


# --- rejections ---------------------------------------------------------------------------


def test_invalid_vote_from_non_validator_is_rejected() -> None:
    core = started()
    outsider = SigningKey(b"\x99" * 32)
    body = Vote(VoteType.PREVOTE, Height(1), Round(0), HASH_A, bytes(outsider.verify_key))
    bad = replace(body, signature=canonical.sign(outsider, VOTE_TAG, CHAIN, body.sign_body()))
    assert feed(core, VoteReceived(bad)) == []
    assert core.rejected["non_validator"] == 1


def test_invalid_vote_signature_is_rejected() -> None:
    core = started()
    forged = replace(vote(1, VoteType.PREVOTE, 0, HASH_A), block_hash=HASH_B)
    assert feed(core, VoteReceived(forged)) == []
    assert core.rejected["bad_signature"] == 1


def test_invalid_vote_for_other_chain_is_rejected() -> None:
    core = started()
    body = Vote(VoteType.PREVOTE, Height(1), Round(0), HASH_A, PUBS[1])
    other = replace(body, signature=canonical.sign(KEYS[1], VOTE_TAG, "other", body.sign_body()))
    feed(core, VoteReceived(other))
    assert core.rejected["bad_signature"] == 1


def test_invalid_proposal_from_wrong_proposer_is_rejected() -> None:
    core = started()
    actions = feed(core, ProposalReceived(proposal(0, BLOCK_A, who=2)))
    assert actions == [] and core.rejected["wrong_proposer"] == 1


def test_invalid_malformed_vote_is_rejected() -> None:
    core = started()
    bad = replace(vote(1, VoteType.PREVOTE, 0, HASH_A), block_hash=b"short")
    assert feed(core, VoteReceived(bad)) == []
    assert core.rejected["E_FIELD"] == 1


def test_invalid_duplicate_vote_is_counted_once() -> None:
    core = started()
    v = vote(1, VoteType.PREVOTE, 0, HASH_A)
    feed(core, VoteReceived(v), VoteReceived(v))
    assert core.votes.get(Round(0), VoteType.PREVOTE).count(HASH_A) == 1
    assert core.rejected["duplicate"] == 1


def test_conflicting_votes_are_reported_as_evidence() -> None:
    core = started()
    receive_valid_proposal(core, proposal(0, BLOCK_A))
    first = vote(1, VoteType.PREVOTE, 0, HASH_A)
    second = vote(1, VoteType.PREVOTE, 0, None)
    actions = feed(core, VoteReceived(first), VoteReceived(second))
    assert ReportEvidence(first, second) in actions


def test_invalid_old_height_is_rejected() -> None:
    core = make_core()
    feed(core, Start(Height(3)))
    feed(core, VoteReceived(vote(1, VoteType.PREVOTE, 0, None, height=2)))
    assert core.rejected["old_height"] == 1


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(list(VoteType)),
    height=st.integers(-5, 2**64),
    round_=st.integers(-5, 2**40),
    block_hash=st.one_of(st.none(), st.binary(max_size=40)),
    who=st.binary(min_size=0, max_size=40),
    sig=st.binary(max_size=70),
)
def test_invalid_random_vote_never_raises(
    kind: VoteType, height: int, round_: int, block_hash: bytes | None, who: bytes, sig: bytes
) -> None:
    core = started()
    bogus = Vote(kind, Height(height), Round(round_), block_hash, who, sig)
    core.step(VoteReceived(bogus))
    assert sum(core.rejected.values()) + core.stats["buffered"] + core.stats["far_future"] >= 1


# --- heights, buffering and block sync ----------------------------------------------------


def test_next_height_messages_are_buffered_until_start() -> None:
    core = started()
    lock_on_a_in_round_0(core)
    for who in (1, 2):
        feed(core, VoteReceived(vote(who, VoteType.PRECOMMIT, 0, HASH_A)))
    early = proposal(0, BLOCK_B, height=2)
    assert feed(core, ProposalReceived(early)) == []
    actions = feed(core, Start(Height(2)))
    assert ValidateBlock(Height(2), Round(0), HASH_B, BLOCK_B) in actions


def test_far_future_messages_request_block_only_with_f_plus_one() -> None:
    core = started()
    assert not any(
        isinstance(a, RequestBlock)
        for a in feed(core, VoteReceived(vote(1, VoteType.PREVOTE, 0, None, height=9)))
    )
    actions = feed(core, VoteReceived(vote(2, VoteType.PREVOTE, 0, None, height=7)))
    assert RequestBlock(Height(1), Height(7)) in actions


def test_observer_never_signs() -> None:
    core = ConsensusCore(CHAIN, VALIDATORS, None, None, PARAMS)
    actions = feed(core, Start(Height(1)))
    actions += receive_valid_proposal(core, proposal(0, BLOCK_A))
    for who in (1, 2, 3):
        actions += feed(core, VoteReceived(vote(who, VoteType.PREVOTE, 0, HASH_A)))
        actions += feed(core, VoteReceived(vote(who, VoteType.PRECOMMIT, 0, HASH_A)))
    assert my_votes(actions) == []
    assert [a.block_hash for a in actions if isinstance(a, Decide)] == [HASH_A]


def test_same_events_give_same_actions() -> None:
    events: list[Event] = [
        Start(Height(1)),
        ProposalReceived(proposal(0, BLOCK_A)),
        BlockValidated(Height(1), Round(0), HASH_A, True),
        VoteReceived(vote(1, VoteType.PREVOTE, 0, HASH_A)),
        VoteReceived(vote(2, VoteType.PREVOTE, 0, HASH_A)),
        VoteReceived(vote(3, VoteType.PRECOMMIT, 0, HASH_A)),
        VoteReceived(vote(1, VoteType.PRECOMMIT, 0, HASH_A)),
    ]
    assert feed(make_core(), *events) == feed(make_core(), *events)


# --- WAL replay ---------------------------------------------------------------------------


def run_with_wal(core: ConsensusCore, wal: list[bytes], *events: Event) -> list[Action]:
    out: list[Action] = []
    for event in events:
        wal.append(canonical.encode(WalRecord(event).to_obj()))  # persist first
        out.extend(core.step(event))
    return out


def test_wal_replay_restores_lock() -> None:
    saved: list[GuardState] = []
    signer = GuardedSigner(KEYS[0], CHAIN, SignGuard(), saved.append)
    core = ConsensusCore(CHAIN, VALIDATORS, PUBS[0], signer, PARAMS)
    wal: list[bytes] = []
    live = run_with_wal(
        core,
        wal,
        Start(Height(1)),
        ProposalReceived(proposal(0, BLOCK_A)),
        BlockValidated(Height(1), Round(0), HASH_A, True),
        VoteReceived(vote(1, VoteType.PREVOTE, 0, HASH_A)),
        VoteReceived(vote(2, VoteType.PREVOTE, 0, HASH_A)),
        VoteReceived(vote(1, VoteType.PRECOMMIT, 0, None)),
        VoteReceived(vote(2, VoteType.PRECOMMIT, 0, None)),
        TimeoutFired(Height(1), Round(0), TimeoutStep.PRECOMMIT),
    )
    assert core.locked_value == HASH_A and core.round == 1
    # Crash. Restart with the persisted guard state and the WAL.
    restarted_signer = GuardedSigner(KEYS[0], CHAIN, SignGuard(saved[-1]))
    fresh = ConsensusCore(CHAIN, VALIDATORS, PUBS[0], restarted_signer, PARAMS)
    events = [WalRecord.from_obj(canonical.decode(rec)).event for rec in wal]
    replayed = replay(fresh, events)
    assert (fresh.height, fresh.round, fresh.step_name) == (core.height, core.round, core.step_name)
    assert (fresh.locked_value, fresh.locked_round) == (HASH_A, 0)
    # Same own votes, same signatures: nothing conflicting left the process.
    assert my_votes(replayed) == my_votes(live)
    assert fresh.stats["signer_refused"] == 0


def test_replay_with_conflicting_input_cannot_double_sign() -> None:
    saved: list[GuardState] = []
    signer = GuardedSigner(KEYS[0], CHAIN, SignGuard(), saved.append)
    core = ConsensusCore(CHAIN, VALIDATORS, PUBS[0], signer, PARAMS)
    feed(core, Start(Height(1)))
    receive_valid_proposal(core, proposal(0, BLOCK_A))  # prevoted A
    # A restart that lost the WAL sees only a timeout: it must not prevote nil.
    fresh = ConsensusCore(
        CHAIN, VALIDATORS, PUBS[0], GuardedSigner(KEYS[0], CHAIN, SignGuard(saved[-1])), PARAMS
    )
    actions = feed(fresh, Start(Height(1)), TimeoutFired(Height(1), Round(0), TimeoutStep.PROPOSE))
    assert my_votes(actions) == []
    assert fresh.stats["signer_refused"] == 1


def test_gossip_includes_last_commit_after_restart() -> None:
    core = started()
    lock_on_a_in_round_0(core)
    actions = feed(
        core, *(VoteReceived(vote(who, VoteType.PRECOMMIT, 0, HASH_A)) for who in (1, 2))
    )
    decide = next(a for a in actions if isinstance(a, Decide))
    fresh = ConsensusCore(
        CHAIN, VALIDATORS, PUBS[0], None, PARAMS, height=2, last_commit=decide.commit
    )
    feed(fresh, Start(Height(2)))
    gossiped = {m for m in fresh.gossip_messages() if isinstance(m, Vote) and m.height == 1}
    assert len(gossiped) == 3 and all(v.block_hash == HASH_A for v in gossiped)


# --- precheck: what the node records in its WAL ------------------------------------------


def test_precheck_answers_as_the_step_would_refuse() -> None:
    """The node writes only prechecked messages to its WAL (review: 200 junk proposals for
    a decided height grew it by 200 MB): precheck must refuse what step refuses and pass
    what step takes, and change nothing itself (counting is the caller's, ``refused``)."""
    core = make_core()
    feed(core, Start(Height(2)))
    good = VoteReceived(vote(1, VoteType.PREVOTE, 0, HASH_A, height=2))
    forged = VoteReceived(replace(vote(2, VoteType.PREVOTE, 0, HASH_A, height=2),
                                  signature=b"\0" * 64))
    old = VoteReceived(vote(1, VoteType.PREVOTE, 0, HASH_A, height=1))
    assert core.precheck(good) is None
    assert core.precheck(forged) == "bad_signature"
    assert core.precheck(old) == "old_height"
    assert sum(core.rejected.values()) == 0  # precheck counts nothing
    assert core.votes.contains(good.vote) is False  # and takes nothing
    feed(core, good)
    assert core.votes.contains(good.vote)
    assert core.precheck(good) == "duplicate"
    core.refused("duplicate")
    assert core.rejected["duplicate"] == 1


def test_precheck_refuses_signed_junk_for_the_current_height() -> None:
    """Review: signed messages the step refuses after the first checks (a proposal from the
    wrong proposer, a round far ahead, a round's fifth proposal) passed the first version
    of precheck, so a Byzantine validator could still fill the WAL with them."""
    core = started()  # height 1; the proposer of round 0 is validator 1
    wrong = ProposalReceived(proposal(0, b"x" * 100, who=2))
    far = VoteReceived(vote(1, VoteType.PREVOTE, PARAMS.max_round_ahead + 1, HASH_A))
    assert core.precheck(wrong) == "wrong_proposer"
    assert core.precheck(far) == "round_too_far"
    for event, code in ((wrong, "wrong_proposer"), (far, "round_too_far")):
        feed(core, event)
        assert core.rejected[code] == 1  # the step refuses them too
    first = ProposalReceived(proposal(0, BLOCK_A))
    assert core.precheck(first) is None
    feed(core, first)
    assert core.precheck(first) == "duplicate"
    for n in range(PARAMS.max_proposals_per_round - 1):  # equivocation up to the bound
        extra = ProposalReceived(proposal(0, f"block-{n}".encode()))
        assert core.precheck(extra) is None
        feed(core, extra)
    one_more = ProposalReceived(proposal(0, b"one-more"))
    assert core.precheck(one_more) == "too_many_proposals"


def test_precheck_marks_what_the_step_only_notes() -> None:
    """A far-future message, or one beyond the next height's buffer, is not recorded but
    still stepped: it tells the core a peer is ahead (review: refusing it lost that)."""
    core = started()
    far = VoteReceived(vote(1, VoteType.PREVOTE, 0, HASH_A, height=5))
    assert core.precheck(far) == "far_future"
    from consensus.core import STEP_UNRECORDED

    assert "far_future" in STEP_UNRECORDED and "buffer_full" in STEP_UNRECORDED


def test_precheck_refuses_early_messages_beyond_the_buffer() -> None:
    core = started()
    room = PARAMS.max_buffered_per_validator
    for round_ in range(room):
        early = VoteReceived(vote(1, VoteType.PREVOTE, round_, HASH_A, height=2))
        assert core.precheck(early) is None
        feed(core, early)
    one_more = VoteReceived(vote(1, VoteType.PREVOTE, room, HASH_A, height=2))
    assert core.precheck(one_more) == "buffer_full"


def test_early_proposals_are_buffered_up_to_a_byte_budget_per_validator() -> None:
    """Review: the buffer for the next height was bounded by count only, so one validator
    could park 64 signed 4 MB proposals (256 MB) on every node."""
    core = started()
    who = index_of_proposer(2, 0)
    assert_two_halves_then_full(core, [(0, 2, who), (1, 2, who), (2, 2, who)])


def assert_two_halves_then_full(core: ConsensusCore,
                                where: list[tuple[int, int, int | None]]) -> None:
    """Two proposals of half the byte budget each are held, a third is ``buffer_full``:
    ``where`` gives each one's (round, height, proposer or None for the round's own)."""
    big = PARAMS.max_buffered_block_bytes_per_validator // 2 - 1
    first, second, third = (
        ProposalReceived(proposal(round_, fill * size, height=height, who=who))
        for (round_, height, who), fill, size in zip(where, (b"a", b"b", b"c"),
                                                     (big, big, 1024), strict=True))
    for event in (first, second):
        assert core.precheck(event) is None
        feed(core, event)
    assert core.precheck(third) == "buffer_full"
    feed(core, third)
    assert core.rejected["buffer_full"] == 1


def test_a_prechecked_message_is_not_verified_again() -> None:
    """Review: after precheck the step verified the signature again (a memory hit, but
    counted as a saved check, so ``jangbu_signature_checks_saved_total`` counted every
    message); ``step(prechecked=True)`` takes precheck's word for it."""
    calls: list[bytes] = []

    def verify(pubkey: bytes, message: bytes, signature: bytes) -> bool:
        calls.append(signature)
        return canonical.verify_raw(pubkey, message, signature)

    core = ConsensusCore(CHAIN, VALIDATORS, PUBS[0],
                         GuardedSigner(KEYS[0], CHAIN, SignGuard(None)), PARAMS, verifier=verify)
    feed(core, Start(Height(1)))
    event = VoteReceived(vote(1, VoteType.PREVOTE, 0, HASH_A))
    assert core.precheck(event) is None
    core.step(event, prechecked=True)
    assert core.votes.contains(event.vote) and len(calls) == 1


# --- a Byzantine proposer's rounds ahead (review) ---------------------------------------


def test_proposals_of_rounds_ahead_are_held_up_to_a_byte_budget_per_proposer() -> None:
    """Review: ``max_round_ahead`` rounds of ``max_proposals_per_round`` 4 MB proposals each
    (68 from one validator) were all held and written to every WAL: ~270 MB per node."""
    core = started()  # height 1, round 0
    who = index_of_proposer(1, 1)  # proposes rounds 1, 5, 9, ...
    assert_two_halves_then_full(core, [(1, 1, None), (5, 1, None), (9, 1, None)])
    big = PARAMS.max_buffered_block_bytes_per_validator // 2 - 1
    # The current round's proposal is not held back by a proposer's rounds ahead.
    assert index_of_proposer(1, 0) != who
    current = ProposalReceived(proposal(0, b"d" * big))
    assert core.precheck(current) is None


def test_gossip_resends_only_the_proposals_peers_can_use() -> None:
    """Review: every proposal of the height was re-sent to every peer every gossip tick,
    those of 64 rounds ahead included, and one validator's proposals filled the honest
    validators' send queues until their votes were dropped."""
    core = started()  # round 0
    now = proposal(0, BLOCK_A)
    ahead = [proposal(r, f"ahead-{r}".encode()) for r in (1, 2, 7, 30)]
    receive_valid_proposal(core, now)
    for prop in ahead:
        feed(core, ProposalReceived(prop))
    gossiped = [m for m in core.gossip_messages() if isinstance(m, Proposal)]
    assert gossiped == [now]


def test_conflicting_proposals_are_reported_as_evidence_once_per_round() -> None:
    """Review: two blocks signed by a round's proposer were counted and never recorded."""
    core = started()
    first, second, third = (proposal(0, block) for block in (BLOCK_A, BLOCK_B, b"block-c"))
    feed(core, ProposalReceived(first))
    actions = feed(core, ProposalReceived(second))
    evidence = [a for a in actions if isinstance(a, ReportEvidence)]
    assert evidence == [ReportEvidence(first, second)]
    assert not [a for a in feed(core, ProposalReceived(third)) if isinstance(a, ReportEvidence)]
