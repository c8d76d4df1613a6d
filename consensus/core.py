"""The Tendermint consensus state machine, sans I/O.

Algorithm 1 of Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus" (2018,
arXiv:1807.04938). Line numbers in comments (``L22``...) refer to that algorithm.

``ConsensusCore.step(event) -> list[Action]`` is the only entry point. It never blocks,
never reads a clock and never touches a disk or socket; it signs only through the injected
:class:`~consensus.signer.Signer`. Bad input from peers is rejected and counted in
``core.rejected[reason]``; :class:`InvariantError` means a bug in this process.

Values are identified by block hash. A proposal's block bytes are only trusted once the
node said they are valid (``BlockValidated``) -- the node checks the bytes hash to the
proposal's ``block_hash`` -- so validity is tracked per ``(block_hash, digest(block))``
and a Byzantine proposer cannot poison an honest block by sending other bytes under its
hash first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

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
from consensus.signer import Signer
from consensus.types import (
    Commit,
    Height,
    InvalidMessage,
    Message,
    Proposal,
    Round,
    ValidatorSet,
    Vote,
    VoteType,
)
from consensus.vote_set import AddResult, HeightVoteSet

Verifier = Callable[[bytes, bytes, bytes], bool]
"""``verify(pubkey, message, signature) -> bool``; injectable so a simulation can share a
cache of checked signatures between many cores. Must be pure."""

BlockId = tuple[bytes, bytes]
"""``(block_hash, digest(block bytes))``: what validity is recorded against."""


class InvariantError(RuntimeError):
    """Our own state is inconsistent: a bug. The node must stop rather than sign on."""


class Step(Enum):
    """Every state of the core; transitions happen only in ``_set_step``."""

    NEW_HEIGHT = "new_height"  # waiting for Start(height); messages for it are buffered
    PROPOSE = "propose"  # waiting for the round's proposal (or our own value)
    PREVOTE = "prevote"  # prevoted; waiting for 2f+1 prevotes
    PRECOMMIT = "precommit"  # precommitted; waiting for 2f+1 precommits or the next round
    DECIDED = "decided"  # Decide emitted; waiting for Start(height + 1)


_ACTIVE = frozenset({Step.PROPOSE, Step.PREVOTE, Step.PRECOMMIT})


@dataclass(frozen=True)
class ConsensusParams:
    """Timeouts grow linearly with the round: ``base + round * delta`` (paper, section 4)."""

    timeout_propose_ms: int = 1000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 500
    timeout_prevote_delta_ms: int = 250
    timeout_precommit_ms: int = 500
    timeout_precommit_delta_ms: int = 250
    max_round_ahead: int = 64
    """Messages for rounds further ahead than this are dropped: honest validators cannot be
    that far apart (a round only advances with 2f+1 precommits or f+1 later messages), and
    it bounds the memory a Byzantine validator can make us spend."""
    max_proposals_per_round: int = 4
    max_buffered_per_validator: int = 64
    """Messages kept per validator for the next height, to replay after its Start."""
    max_buffered_block_bytes_per_validator: int = 8 * 1024 * 1024
    """The blocks of those messages (proposals), in bytes: two full blocks (3 MiB each at
    most), a round-0 proposal and one re-proposal. The count alone let one validator park
    64 signed 4 MB proposals, 256 MB, on every node (review). The same bound holds for the
    proposals of rounds of the current height that we have not reached yet, per proposer:
    ``max_round_ahead`` rounds of ``max_proposals_per_round`` each let one validator park
    68 signed 4 MB proposals, 272 MB on every node and in every WAL, and the gossip of
    them stalled the honest three (review)."""

    def timeout_ms(self, step: TimeoutStep, round_: Round) -> int:
        if step is TimeoutStep.PROPOSE:
            return self.timeout_propose_ms + round_ * self.timeout_propose_delta_ms
        if step is TimeoutStep.PREVOTE:
            return self.timeout_prevote_ms + round_ * self.timeout_prevote_delta_ms
        return self.timeout_precommit_ms + round_ * self.timeout_precommit_delta_ms


STEP_UNRECORDED = frozenset({"far_future", "buffer_full"})
"""What :meth:`ConsensusCore.precheck` answers for a message the step only notes (a peer is
ahead) and the node need not record: replaying it after a restart would change nothing."""


class ConsensusCore:
    """One validator's (or observer's) view of consensus, driven by :meth:`step`.

    ``height`` is the first height the node will ``Start`` (last committed + 1), and
    ``last_commit`` the stored certificate of ``height - 1`` (only used for gossip, so that
    peers still deciding it get its precommits). ``my_pubkey`` is ``None`` for an observer
    that follows decisions without voting.
    """

    def __init__(
        self,
        chain_id: str,
        validators: ValidatorSet,
        my_pubkey: bytes | None,
        signer: Signer | None,
        params: ConsensusParams | None = None,
        height: int = 1,
        verifier: Verifier = canonical.verify_raw,
        last_commit: Commit | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self.params = params or ConsensusParams()
        self._verify = verifier
        self._me = my_pubkey if (my_pubkey in validators and signer is not None) else None
        if self._me is not None and signer is not None and signer.pubkey != self._me:
            raise InvariantError("signer key differs from my_pubkey")
        self._signer = signer
        self.rejected: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.height = Height(height)
        self.round = Round(0)
        self.step_name = Step.NEW_HEIGHT
        self._buffer: list[Message] = []
        self._buffered: set[Message] = set()
        self._last_commit: list[Vote] = []
        self._last_commit_height = 0
        if last_commit is not None and last_commit.height + 1 == height:
            # After a restart: keep gossiping the certificate of the height before ours.
            self._last_commit = [last_commit.precommit(v, s) for v, s in last_commit.signatures]
            self._last_commit_height = last_commit.height
        self._ahead: dict[bytes, int] = {}
        self._reset_height()

    # --- public --------------------------------------------------------------------------

    def step(self, event: Event, *, prechecked: bool = False) -> list[Action]:
        """Apply one event; return the actions the node must perform, in order.

        ``prechecked``: a received message that :meth:`precheck` just passed, whose
        signature needs no second look.
        """
        out: list[Action] = []
        if isinstance(event, VoteReceived | ProposalReceived):
            message: Message = event.vote if isinstance(event, VoteReceived) else event.proposal
            try:
                self._on_message(message, out, verified=prechecked)
            except InvalidMessage as exc:
                self.rejected[exc.code] += 1
        elif isinstance(event, Start):
            self._on_start(event, out)
        elif isinstance(event, TimeoutFired):
            self._on_timeout(event, out)
        elif isinstance(event, BlockValidated):
            self._on_block_validated(event, out)
        elif isinstance(event, ProposalValueReady):
            self._on_value_ready(event, out)
        else:
            self.rejected["unknown_event"] += 1
        if self.step_name in _ACTIVE:
            self._evaluate(out)
        return out

    @property
    def work_height(self) -> Height:
        """The height we are deciding, or will decide next once started."""
        if self.step_name is Step.DECIDED:
            return Height(self.height + 1)
        return self.height

    def gossip_messages(self) -> list[Message]:
        """What the node should periodically re-send to peers, so that messages lost to
        drops, partitions or restarts are eventually seen by every honest validator (the
        paper's gossip assumption: what one correct process received, all receive):

        * the precommits of the height we just decided (peers still on it need them);
        * the proposals we hold for the previous and current round and for our lock and
          valid rounds (not those of rounds ahead, which their proposer sends, nor of
          rounds long past: re-sending every proposal of the height every half second let
          one validator's 68 proposals of rounds ahead fill the honest validators' send
          queues, dropping their votes, until the height stalled; review);
        * our own votes of every round of the height;
        * all votes we hold for the previous and current round and for our lock and valid
          rounds (the proof-of-lock others need to unlock).
        """
        messages: list[Message] = []
        if self._last_commit_height + 1 == self.work_height:
            messages.extend(self._last_commit)
        if self.step_name not in _ACTIVE:
            return messages
        relay_rounds = {self.round - 1, self.round, self.valid_round, self.locked_round}
        for round_ in sorted(self._proposals):
            if round_ in relay_rounds:
                messages.extend(self._proposals[round_].values())
        for round_ in self.votes.rounds():
            for vote_type in VoteType:
                vote_set = self.votes.get(round_, vote_type)
                if round_ in relay_rounds:
                    for voters in vote_set.by_block.values():
                        messages.extend(voters.values())
                elif self._me is not None and self._me in vote_set.votes:
                    messages.append(vote_set.votes[self._me])
        return messages

    def pending_messages(self) -> list[Message]:
        """Verified messages buffered for later heights, in arrival order. When the node
        truncates its WAL at a commit it must write these back first (see ``consensus.wal``)
        so a restarted core sees the same inputs as this one."""
        return list(self._buffer)

    # --- state ---------------------------------------------------------------------------

    def _reset_height(self) -> None:
        self.votes = HeightVoteSet(self.validators)
        self._proposals: dict[Round, dict[bytes, Proposal]] = {}
        self._validity: dict[BlockId, bool] = {}
        self._block_ids: dict[tuple[Round, bytes], BlockId] = {}
        self._validating: dict[bytes, BlockId] = {}
        self._validation_queue: list[tuple[Round, Proposal]] = []
        self.locked_value: bytes | None = None
        self.locked_round = Round(-1)
        self.valid_value: Proposal | None = None
        self.valid_round = Round(-1)
        self._once: set[tuple[Round, str]] = set()
        self._proposed_in: set[Round] = set()
        self._evidence_sent: set[tuple[bytes, Round, VoteType | None]] = set()
        self._requested_seen = 0
        self._asked_missing_block = False
        self._known_blocks: set[bytes] = set()
        self._unmatched: dict[bytes, list[Vote]] = {}

    def _set_step(self, step: Step) -> None:
        self.step_name = step

    # --- events --------------------------------------------------------------------------

    def _on_start(self, event: Start, out: list[Action]) -> None:
        # Verify the height moves forward (a repeated or old Start is the node's mistake,
        # but harmless to ignore).
        if not (
            event.height > self.height
            or (event.height == self.height and self.step_name is Step.NEW_HEIGHT)
        ):
            self.rejected["stale_start"] += 1
            return
        self.height = event.height
        self._reset_height()
        pending = [m for m in self._buffer if m.height == self.height]
        self._buffer = [m for m in self._buffer if m.height > self.height]
        self._buffered = set(self._buffer)
        self._start_round(Round(0), out)
        for message in pending:
            try:
                self._on_message(message, out, verified=True)
            except InvalidMessage as exc:  # pragma: no cover - verified before buffering
                self.rejected[exc.code] += 1
            if self.step_name in _ACTIVE:
                self._evaluate(out)

    def _on_timeout(self, event: TimeoutFired, out: list[Action]) -> None:
        if (
            self.step_name not in _ACTIVE
            or event.height != self.height
            or event.round != self.round
        ):
            self.stats["stale_timeout"] += 1
            return
        # L57 OnTimeoutPropose: still waiting for a proposal -> prevote nil.
        if event.step is TimeoutStep.PROPOSE and self.step_name is Step.PROPOSE:
            self._cast_vote(VoteType.PREVOTE, None, out)
            self._set_step(Step.PREVOTE)
        # L61 OnTimeoutPrevote: no polka for a block -> precommit nil.
        elif event.step is TimeoutStep.PREVOTE and self.step_name is Step.PREVOTE:
            self._cast_vote(VoteType.PRECOMMIT, None, out)
            self._set_step(Step.PRECOMMIT)
        # L65 OnTimeoutPrecommit: no decision in this round -> next round.
        elif event.step is TimeoutStep.PRECOMMIT:
            self._start_round(Round(self.round + 1), out)
        else:
            self.stats["stale_timeout"] += 1

    def _on_block_validated(self, event: BlockValidated, out: list[Action]) -> None:
        block_id = self._validating.get(event.block_hash)
        if event.height != self.height or self.step_name not in _ACTIVE or block_id is None:
            self.stats["stale_validation"] += 1
            return
        del self._validating[event.block_hash]
        self._validity[block_id] = event.valid
        self._request_next_validation(out)

    def _on_value_ready(self, event: ProposalValueReady, out: list[Action]) -> None:
        if (
            self.step_name is not Step.PROPOSE
            or event.height != self.height
            or event.round != self.round
            or self._me is None
            or self.validators.proposer(self.height, self.round) != self._me
            or self.round in self._proposed_in
        ):
            self.stats["stale_value"] += 1
            return
        proposal = Proposal(
            self.height, self.round, Round(-1), event.block_hash, event.block, self._me
        )
        self._propose(proposal, out)

    # --- messages ------------------------------------------------------------------------

    def precheck(self, event: VoteReceived | ProposalReceived) -> str | None:
        """What :meth:`step` would make of this received message, without changing
        anything: None if it may act on it (record it, then step it with
        ``prechecked=True``); one of :data:`STEP_UNRECORDED` if the step only notes it
        (a far-future message, or one beyond the buffer, which still tells us a peer is
        ahead); else the code of the step's refusal, which the caller counts with
        :meth:`refused` instead of stepping.

        Why: the node writes every input to its WAL before the step, and a peer's junk
        (proposals for a decided height with random signatures, signed proposals from
        the wrong proposer) once grew the WAL by 200 MB; the node records only what the
        core acts on. A signature checked here is remembered by the node's verifier.
        """
        message: Message = event.vote if isinstance(event, VoteReceived) else event.proposal
        try:
            sender, current = self._check_message(message, verified=False)
            if current:
                self._check_current(message)
            elif message.height > self.work_height + 1:
                return "far_future"
            else:
                self._check_buffer_room(sender, message)
        except InvalidMessage as exc:
            return exc.code
        return None

    def refused(self, code: str) -> None:
        """Count a refusal :meth:`precheck` found, for a message not stepped."""
        self.rejected[code] += 1

    def _check_message(self, message: Message, *, verified: bool) -> tuple[bytes, bool]:
        """The checks of a received message before it may change anything: its sender and
        whether it is for the height being decided, or InvalidMessage."""
        message.validate_basic()
        sender = message.validator if isinstance(message, Vote) else message.proposer
        # Verify the sender is a validator.
        if sender not in self.validators:
            raise InvalidMessage("non_validator", "message from a non-validator")
        active = self.step_name in _ACTIVE
        current = active and message.height == self.height
        if not current and (
            message.height < self.height
            or (message.height == self.height and self.step_name is Step.DECIDED)
        ):
            raise InvalidMessage("old_height", "message for a decided height")
        if (current and self._is_duplicate(message)) or message in self._buffered:
            raise InvalidMessage("duplicate", "already have this message")
        # Verify the signature (pure CPU; duplicates were dropped before paying for it).
        if not verified and not self._verify(
            sender, message.sign_bytes(self.chain_id), message.signature
        ):
            raise InvalidMessage("bad_signature", "bad signature")
        return sender, current

    def _check_current(self, message: Message) -> None:
        """The checks of a message for the height being decided, before it changes
        anything (:meth:`precheck` runs them too)."""
        # Verify the round is not absurdly far ahead (bounds memory).
        if message.round > self.round + self.params.max_round_ahead:
            raise InvalidMessage("round_too_far", "round too far ahead")
        if isinstance(message, Proposal):
            # Verify it comes from the round's proposer.
            if message.proposer != self.validators.proposer(message.height, message.round):
                raise InvalidMessage("wrong_proposer", "proposal from the wrong proposer")
            in_round = self._proposals.get(message.round, {})
            if message.block_hash in in_round:
                raise InvalidMessage("duplicate_proposal", "proposal for this block already held")
            if len(in_round) >= self.params.max_proposals_per_round:
                raise InvalidMessage("too_many_proposals", "too many proposals in round")
            if message.round > self.round and len(message.block) + sum(
                    len(held.block) for round_, by_hash in self._proposals.items()
                    if round_ > self.round for held in by_hash.values()
                    if held.proposer == message.proposer
            ) > self.params.max_buffered_block_bytes_per_validator:
                raise InvalidMessage("buffer_full", "too many block bytes for rounds ahead")

    def _on_message(self, message: Message, out: list[Action], *, verified: bool) -> None:
        sender, current = self._check_message(message, verified=verified)
        if not current:
            self._on_future_message(message, sender, out)
            return
        self._check_current(message)
        if isinstance(message, Proposal):
            self._on_proposal(message, out)
        else:
            self._on_vote(message, out)

    def _is_duplicate(self, message: Message) -> bool:
        if isinstance(message, Vote):
            return self.votes.contains(message)
        held = self._proposals.get(message.round, {}).get(message.block_hash)
        return held is not None and held == message

    def _on_future_message(self, message: Message, sender: bytes, out: list[Action]) -> None:
        """Buffer near-future messages; count far-future ones as evidence we are behind."""
        if message.height > self.work_height:
            self._ahead[sender] = max(self._ahead.get(sender, 0), message.height)
            self._maybe_request_block(out)
        if message.height <= self.work_height + 1:
            if message in self._buffered:
                raise InvalidMessage("duplicate", "already buffered")
            self._check_buffer_room(sender, message)
            self._buffer.append(message)
            self._buffered.add(message)
            self.stats["buffered"] += 1
        else:
            self.stats["far_future"] += 1

    def _check_buffer_room(self, sender: bytes, message: Message) -> None:
        held = [m for m in self._buffer
                if (m.validator if isinstance(m, Vote) else m.proposer) == sender]
        if len(held) >= self.params.max_buffered_per_validator:
            raise InvalidMessage("buffer_full", "too many early messages from validator")
        if isinstance(message, Proposal) and len(message.block) + sum(
                len(m.block) for m in held if isinstance(m, Proposal)
        ) > self.params.max_buffered_block_bytes_per_validator:
            raise InvalidMessage("buffer_full", "too many early block bytes from validator")

    def _maybe_request_block(self, out: list[Action]) -> None:
        ahead = sorted((h for h in self._ahead.values() if h > self.work_height), reverse=True)
        if len(ahead) < self.validators.skip_threshold:
            return
        seen = ahead[self.validators.skip_threshold - 1]
        if seen > self._requested_seen:
            self._requested_seen = seen
            out.append(RequestBlock(self.work_height, Height(seen)))

    def _on_proposal(self, proposal: Proposal, out: list[Action]) -> None:
        in_round = self._proposals.setdefault(proposal.round, {})  # (_check_current passed)
        if in_round:
            self.stats["equivocating_proposal"] += 1
            # Two blocks signed for one (height, round) by its proposer: evidence, once per
            # round, like conflicting votes (it was only counted, and never recorded).
            key = (proposal.proposer, proposal.round, None)
            if key not in self._evidence_sent:
                self._evidence_sent.add(key)
                out.append(ReportEvidence(next(iter(in_round.values())), proposal))
        in_round[proposal.block_hash] = proposal
        self._block_ids[(proposal.round, proposal.block_hash)] = (
            proposal.block_hash,
            proposal.block_digest,
        )
        self.votes.note_speaker(proposal.round, proposal.proposer)
        self._validation_queue.append((proposal.round, proposal))
        self._request_next_validation(out)
        if proposal.block_hash not in self._known_blocks:
            self._known_blocks.add(proposal.block_hash)
            for validator in list(self._unmatched):
                waiting = self._unmatched[validator]
                for vote in [v for v in waiting if v.block_hash == proposal.block_hash]:
                    waiting.remove(vote)
                    self.votes.add(vote)

    def _on_vote(self, vote: Vote, out: list[Action]) -> None:
        vote_set = self.votes.get(vote.round, vote.vote_type)
        first = vote_set.votes.get(vote.validator)
        if first is not None and first.block_hash != vote.block_hash:
            # Equivocation. Report it once, and still count the vote for its value (see
            # VoteSet) -- but only for nil or a block we hold a proposal for, so a Byzantine
            # validator cannot fill our memory with votes for made-up hashes. Votes for
            # unknown hashes wait (bounded) until such a proposal arrives.
            key = (vote.validator, vote.round, vote.vote_type)
            if key not in self._evidence_sent:
                self._evidence_sent.add(key)
                out.append(ReportEvidence(first, vote))
            self.rejected["conflicting_vote"] += 1
            if vote.block_hash is not None and vote.block_hash not in self._known_blocks:
                stash = self._unmatched.setdefault(vote.validator, [])
                if len(stash) >= self.params.max_proposals_per_round * 2:
                    raise InvalidMessage("conflict_stash_full", "too many conflicting votes")
                if vote not in stash:
                    stash.append(vote)
                return
        result, _ = self.votes.add(vote)
        if result is AddResult.DUPLICATE:
            raise InvalidMessage("duplicate", "validator already voted this")

    def _request_next_validation(self, out: list[Action]) -> None:
        """Ask the node to validate queued proposal blocks, one byte-string per hash at a
        time so each ``BlockValidated`` answer maps to exactly one block."""
        remaining: list[tuple[Round, Proposal]] = []
        for round_, proposal in self._validation_queue:
            block_id = self._block_ids[(round_, proposal.block_hash)]
            if block_id in self._validity or self._validating.get(proposal.block_hash) == block_id:
                continue
            if proposal.block_hash in self._validating:
                remaining.append((round_, proposal))
                continue
            self._validating[proposal.block_hash] = block_id
            out.append(ValidateBlock(self.height, round_, proposal.block_hash, proposal.block))
        self._validation_queue = remaining

    def _validity_of(self, proposal: Proposal) -> bool | None:
        return self._validity.get(self._block_ids[(proposal.round, proposal.block_hash)])

    # --- our own messages ----------------------------------------------------------------

    def _cast_vote(self, vote_type: VoteType, block_hash: bytes | None, out: list[Action]) -> None:
        if self._me is None or self._signer is None:
            return
        unsigned = Vote(vote_type, self.height, self.round, block_hash, self._me)
        signed = self._signer.sign_vote(unsigned)
        if signed is None:
            self.stats["signer_refused"] += 1
            return
        if signed.unsigned() != unsigned:
            raise InvariantError("signer changed the vote it signed")
        result, existing = self.votes.add(signed)
        if result is AddResult.CONFLICT and existing is not None:
            # Another process holds our key (misconfiguration, or a Twins test).
            out.append(ReportEvidence(existing, signed))
        out.append(Broadcast(signed))

    def _propose(self, unsigned: Proposal, out: list[Action]) -> None:
        if self._signer is None:
            return
        self._proposed_in.add(self.round)
        signed = self._signer.sign_proposal(unsigned)
        if signed is None:
            self.stats["signer_refused"] += 1
            return
        if replace(signed, signature=b"") != unsigned:
            raise InvariantError("signer changed the proposal it signed")
        in_round = self._proposals.setdefault(signed.round, {})
        if signed.block_hash not in in_round:
            in_round[signed.block_hash] = signed
            self._block_ids[(signed.round, signed.block_hash)] = (
                signed.block_hash,
                signed.block_digest,
            )
        self.votes.note_speaker(signed.round, signed.proposer)
        self._known_blocks.add(signed.block_hash)
        # Our own value was built and executed by our node: it is valid by construction.
        self._validity[self._block_ids[(signed.round, signed.block_hash)]] = True
        out.append(Broadcast(signed))

    # --- the rules -----------------------------------------------------------------------

    def _start_round(self, round_: Round, out: list[Action]) -> None:
        """L11 StartRound."""
        self.round = round_
        self._set_step(Step.PROPOSE)
        out.append(
            ScheduleTimeout(
                self.height,
                round_,
                TimeoutStep.PROPOSE,
                self.params.timeout_ms(TimeoutStep.PROPOSE, round_),
            )
        )
        if self._me is None or self.validators.proposer(self.height, round_) != self._me:
            return
        if round_ in self._proposed_in:
            return
        if self.valid_value is not None:
            # L15: re-propose the value we saw a polka for, with its proof-of-lock round.
            value = self.valid_value
            self._propose(
                Proposal(
                    self.height, round_, self.valid_round, value.block_hash, value.block, self._me
                ),
                out,
            )
        else:
            out.append(RequestProposalValue(self.height, round_))

    def _evaluate(self, out: list[Action]) -> None:
        """Apply the paper's upon-rules until none fires (each firing moves state forward)."""
        for _ in range(10_000):
            if self.step_name not in _ACTIVE:
                return
            if self._try_decide(out) or self._try_skip_round(out) or self._try_round_rules(out):
                continue
            return
        raise InvariantError("rules did not settle")

    def _try_decide(self, out: list[Action]) -> bool:
        """L49: a proposal for v and 2f+1 precommits for id(v) in some round -> decide v."""
        for round_ in self.votes.rounds():
            precommits = self.votes.get(round_, VoteType.PRECOMMIT)
            block_hash = precommits.quorum_block()
            if block_hash is None:
                continue
            candidates = [
                p for ps in self._proposals.values() for p in ps.values()
                if p.block_hash == block_hash
            ]
            for proposal in candidates:
                if self._validity_of(proposal) is True:
                    commit = Commit(
                        self.height, round_, block_hash, precommits.signatures_for(block_hash)
                    )
                    out.append(
                        Decide(self.height, round_, block_hash, proposal.block, commit)
                    )
                    self._last_commit = precommits.votes_for(block_hash)
                    self._last_commit_height = self.height
                    self._set_step(Step.DECIDED)
                    return True
            if not candidates and not self._asked_missing_block:
                # Decided by the network, but we never got the block: fetch it by sync.
                self._asked_missing_block = True
                out.append(RequestBlock(self.height, self.height))
        return False

    def _try_skip_round(self, out: list[Action]) -> bool:
        """L55: f+1 validators speak in a later round -> jump to it."""
        later = [
            r
            for r in self.votes.rounds()
            if r > self.round and self.votes.speakers(r) >= self.validators.skip_threshold
        ]
        if not later:
            return False
        self._start_round(max(later), out)
        return True

    def _try_round_rules(self, out: list[Action]) -> bool:
        r = self.round
        prevotes = self.votes.get(r, VoteType.PREVOTE)
        precommits = self.votes.get(r, VoteType.PRECOMMIT)
        proposals = list(self._proposals.get(r, {}).values())
        quorum = self.validators.quorum
        if self.step_name is Step.PROPOSE:
            for proposal in proposals:
                valid = self._validity_of(proposal)
                if valid is None:
                    continue
                vr = proposal.pol_round
                if vr == -1:
                    # L22: fresh proposal; prevote it unless locked on something else.
                    ok = valid and (
                        self.locked_round == -1 or self.locked_value == proposal.block_hash
                    )
                elif 0 <= vr < r and (
                    self.votes.get(vr, VoteType.PREVOTE).count(proposal.block_hash) >= quorum
                ):
                    # L28: re-proposal backed by a polka in vr; unlock if that is newer.
                    ok = valid and (
                        self.locked_round <= vr or self.locked_value == proposal.block_hash
                    )
                else:
                    continue
                self._cast_vote(VoteType.PREVOTE, proposal.block_hash if ok else None, out)
                self._set_step(Step.PREVOTE)
                return True
        if self.step_name is Step.PREVOTE and prevotes.has_quorum_any():
            # L34: 2f+1 prevotes for anything -> start the prevote timeout (once).
            self._once_schedule(r, TimeoutStep.PREVOTE, out)
        if self.step_name in (Step.PREVOTE, Step.PRECOMMIT) and (r, "polka") not in self._once:
            # L36: a valid proposal with a polka -> lock (if still prevoting) and remember it.
            for proposal in proposals:
                if prevotes.count(proposal.block_hash) < quorum:
                    continue
                if self._validity_of(proposal) is not True:
                    continue
                self._once.add((r, "polka"))
                if self.step_name is Step.PREVOTE:
                    self.locked_value = proposal.block_hash
                    self.locked_round = r
                    self._cast_vote(VoteType.PRECOMMIT, proposal.block_hash, out)
                    self._set_step(Step.PRECOMMIT)
                self.valid_value = proposal
                self.valid_round = r
                return True
        if self.step_name is Step.PREVOTE and prevotes.count(None) >= quorum:
            # L44: polka for nil -> precommit nil.
            self._cast_vote(VoteType.PRECOMMIT, None, out)
            self._set_step(Step.PRECOMMIT)
            return True
        if precommits.has_quorum_any():
            # L47: 2f+1 precommits for anything -> start the precommit timeout (once).
            self._once_schedule(r, TimeoutStep.PRECOMMIT, out)
        return False

    def _once_schedule(self, r: Round, step: TimeoutStep, out: list[Action]) -> None:
        key = (r, f"timeout_{step.name}")
        if key in self._once:
            return
        self._once.add(key)
        out.append(ScheduleTimeout(self.height, r, step, self.params.timeout_ms(step, r)))
