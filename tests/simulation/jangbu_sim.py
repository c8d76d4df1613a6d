"""Seeded, deterministic simulation of n consensus cores in one process.

Everything random comes from ``random.Random(seed)`` instances; time is a simulated
millisecond clock driven by an event heap, so a seed always replays the same run.

The network delays, drops, duplicates and reorders messages and partitions processes until
GST (global stabilisation time); after GST it only delays (and sometimes duplicates).
Honest processes crash and restart from their in-memory WAL and signer-guard state before
GST. Byzantine validators (at most ``k``):

* ``equivocator``: sends two different proposals (one often invalid) and conflicting votes;
* ``double_voter``: sends conflicting votes to different halves of the network;
* ``twins``: two honest cores share one key, each with its own guard (one faulty validator);
* ``garbage``: sends junk bytes, malformed and badly signed messages, votes from a
  non-validator key, proposals from the wrong proposer, far-future votes; never votes
  properly (so it is also a silent validator);
* ``silent``: never sends anything.
* ``spoiler``: never votes or proposes; relays every proposal at once, ahead of the genuine
  copy (it sees proposals first), with other block bytes under the proposer's signature.
  Before proposals signed their bytes' digest, the first copy a validator got was the one
  it judged: this alone stalled every round (10 of 10 seeds failed liveness).

Invariants checked after each run: agreement, validity, no conflicting honest votes,
liveness (every honest process commits ``heights`` heights before the deadline).
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

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
from consensus.core import ConsensusCore, ConsensusParams
from consensus.events import (
    BlockValidated,
    Event,
    ProposalReceived,
    ProposalValueReady,
    Start,
    TimeoutFired,
    VoteReceived,
)
from consensus.signer import GuardedSigner, GuardState, SignGuard
from consensus.types import (
    PROPOSAL_TAG,
    VOTE_TAG,
    Commit,
    Height,
    InvalidMessage,
    Message,
    Proposal,
    Round,
    ValidatorSet,
    Vote,
    VoteType,
    message_from_obj,
    message_to_obj,
    verify_commit,
)
from consensus.wal import WalRecord, replay, wal_after_commit

CHAIN_ID = "jangbu-sim"
BEHAVIOURS = ("equivocator", "double_voter", "twins", "garbage", "silent", "spoiler")
CORE_KINDS = frozenset({"honest", "twin", "equivocator", "double_voter"})

SIM_PARAMS = ConsensusParams(
    timeout_propose_ms=300,
    timeout_propose_delta_ms=150,
    timeout_prevote_ms=200,
    timeout_prevote_delta_ms=100,
    timeout_precommit_ms=200,
    timeout_precommit_delta_ms=100,
)


@dataclass(frozen=True)
class SimConfig:
    n: int = 4
    byzantine: int | None = None  # default: f
    behaviours: tuple[str, ...] = BEHAVIOURS  # drawn from for each byzantine validator
    heights: int = 5
    gst_ms: int = 3000
    liveness_ms: int = 60_000  # after GST, every honest process must reach `heights`
    drop: float = 0.1
    duplicate: float = 0.05
    max_delay_ms: int = 200  # before GST
    max_delay_after_gst_ms: int = 40
    partitions: bool = True
    crashes: bool = True
    gossip_ms: int = 500
    check_liveness: bool = True


@dataclass
class SimResult:
    seed: int
    violations: list[str]
    liveness_failure: str | None
    sim_time_ms: int
    decided: dict[int, int]  # pid -> committed height
    behaviours: list[str]
    stats: Counter[str]

    @property
    def ok(self) -> bool:
        return not self.violations and self.liveness_failure is None


@dataclass
class Process:
    """One simulated node: a core plus what a real node keeps on disk."""

    pid: int
    kind: str
    key: SigningKey
    rng: random.Random
    wal: list[Event] = field(default_factory=list)  # this height's inputs (codec on restart)
    guard_state: GuardState = field(default_factory=GuardState)
    committed: dict[int, tuple[bytes, Commit]] = field(default_factory=dict)
    core: ConsensusCore | None = None
    alive: bool = True
    incarnation: int = 0
    sync_pending: bool = False

    @property
    def height(self) -> int:
        """Last committed height."""
        return max(self.committed, default=0)


def make_block(rng: random.Random, height: int, round_: int, pid: int, valid: bool) -> bytes:
    prefix = b"V" if valid else b"X"
    return prefix + canonical.encode({"h": height, "r": round_, "p": pid, "n": rng.randbytes(8)})


def is_valid_block(block: bytes, block_hash: bytes) -> bool:
    """The simulated application: valid blocks start with V and hash to their id."""
    return block[:1] == b"V" and canonical.digest(block) == block_hash


class Simulation:
    def __init__(self, seed: int, config: SimConfig) -> None:
        self.seed = seed
        self.cfg = config
        self.rng = random.Random(seed)
        self.now = 0
        self._heap: list[tuple[int, int, str, int, int, Any]] = []
        self._seq = 0
        self.stats: Counter[str] = Counter()
        self.violations: list[str] = []
        self._verified: dict[tuple[bytes, bytes, bytes], bool] = {}
        self._decoded: dict[bytes, Message] = {}

        keys = [SigningKey(self.rng.randbytes(32)) for _ in range(config.n)]
        self.validators = ValidatorSet(tuple(bytes(k.verify_key) for k in keys))
        self.outsider = SigningKey(self.rng.randbytes(32))
        f = self.validators.f
        k = f if config.byzantine is None else config.byzantine
        byz = sorted(self.rng.sample(range(config.n), k))
        self.behaviours = [self.rng.choice(config.behaviours) for _ in byz]
        self.procs: list[Process] = []
        for i, key in enumerate(keys):
            kind = "honest"
            if i in byz:
                kind = self.behaviours[byz.index(i)]
            copies = 2 if kind == "twins" else 1
            for _ in range(copies):
                pid = len(self.procs)
                proc_kind = "twin" if kind == "twins" else kind
                self.procs.append(
                    Process(pid, proc_kind, key, random.Random(self.rng.randbytes(16)))
                )
        self.partition: dict[int, int] | None = None
        # Ground truth for the invariants.
        self.proposed: set[bytes] = set()
        self.proposed_at: dict[int, list[bytes]] = {}  # height -> hashes, in order
        self.decisions: dict[int, dict[int, bytes]] = {}  # height -> pid -> hash
        self.honest_votes: dict[tuple[bytes, int, int, int], bytes | None] = {}

    # --- plumbing ------------------------------------------------------------------------

    def _push(self, delay: int, kind: str, pid: int, inc: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, kind, pid, inc, payload))

    def _verifier(self, pubkey: bytes, message: bytes, signature: bytes) -> bool:
        """Signature checks are pure, so all cores share one cache (speed only)."""
        key = (pubkey, message, signature)
        result = self._verified.get(key)
        if result is None:
            result = canonical.verify_raw(pubkey, message, signature)
            self._verified[key] = result
        return result

    def _new_core(self, proc: Process) -> ConsensusCore:
        def persist(state: GuardState, proc: Process = proc) -> None:
            proc.guard_state = state

        signer = GuardedSigner(proc.key, CHAIN_ID, SignGuard(proc.guard_state), persist)
        return ConsensusCore(
            CHAIN_ID,
            self.validators,
            signer.pubkey,
            signer,
            SIM_PARAMS,
            height=proc.height + 1,
            verifier=self._verifier,
            last_commit=proc.committed[proc.height][1] if proc.committed else None,
        )

    def _feed(self, proc: Process, event: Event) -> None:
        """The node's rule: WAL first, then step, then perform the actions in order."""
        assert proc.core is not None
        proc.wal.append(event)
        self._execute(proc, proc.core.step(event))

    # --- network -------------------------------------------------------------------------

    def _send(self, src: int, dst: int, data: bytes) -> None:
        before_gst = self.now < self.cfg.gst_ms
        if before_gst:
            if self.partition is not None and self.partition[src] != self.partition[dst]:
                self.stats["partitioned"] += 1
                return
            if self.rng.random() < self.cfg.drop:
                self.stats["dropped"] += 1
                return
        max_delay = self.cfg.max_delay_ms if before_gst else self.cfg.max_delay_after_gst_ms
        copies = 2 if self.rng.random() < self.cfg.duplicate else 1
        for _ in range(copies):
            self._push(self.rng.randint(1, max_delay), "deliver", dst, 0, data)

    def _peers(self, pid: int) -> list[int]:
        return [p.pid for p in self.procs
                if p.pid != pid and (p.kind in CORE_KINDS or p.kind == "spoiler")]

    def _send_all(self, pid: int, message: Message) -> None:
        data = canonical.encode(message_to_obj(message))
        for dst in self._peers(pid):
            if self.procs[dst].kind == "spoiler" and isinstance(message, Proposal):
                # The worst case: the spoiler is closer to everyone than the proposer
                # is, so its copies arrive first.
                self._spoil(self.procs[dst], data)
            else:
                self._send(pid, dst, data)

    def _deliver(self, proc: Process, data: bytes) -> None:
        if proc.kind == "spoiler":
            self._spoil(proc, data)
            return
        if not proc.alive or proc.core is None:
            return
        message = self._decoded.get(data)
        if message is None:
            try:
                message = message_from_obj(canonical.decode(data))
            except (InvalidMessage, canonical.CanonicalError):
                self.stats["undecodable"] += 1
                return
            self._decoded[data] = message  # decoding is pure: decode each frame once
        event = (
            VoteReceived(message) if isinstance(message, Vote) else ProposalReceived(message)
        )
        self._feed(proc, event)

    def _spoil(self, proc: Process, data: bytes) -> None:
        """Byzantine relay: a proposal goes on at once, with other bytes, same signature."""
        try:
            message = message_from_obj(canonical.decode(data))
        except (InvalidMessage, canonical.CanonicalError):
            return
        if not isinstance(message, Proposal):
            return
        spoiled = canonical.encode(message_to_obj(replace(message, block=message.block + b"!")))
        self.stats["spoiled_relays"] += 1
        for dst in self._peers(proc.pid):
            if self.procs[dst].kind != "spoiler":
                self._push(0, "deliver", dst, 0, spoiled)

    # --- actions -------------------------------------------------------------------------

    def _execute(self, proc: Process, actions: list[Action]) -> None:
        inc = proc.incarnation
        for action in actions:
            if isinstance(action, Broadcast):
                self._broadcast(proc, action.message)
            elif isinstance(action, ScheduleTimeout):
                event = (action.height, action.round, action.step)
                self._push(action.duration_ms, "timeout", proc.pid, inc, event)
            elif isinstance(action, RequestProposalValue):
                block = make_block(proc.rng, action.height, action.round, proc.pid, True)
                ready = ProposalValueReady(
                    action.height, action.round, canonical.digest(block), block
                )
                self._push(proc.rng.randint(1, 30), "app", proc.pid, inc, ready)
            elif isinstance(action, ValidateBlock):
                verdict = BlockValidated(
                    action.height,
                    action.round,
                    action.block_hash,
                    is_valid_block(action.block, action.block_hash),
                )
                self._push(proc.rng.randint(1, 30), "app", proc.pid, inc, verdict)
            elif isinstance(action, Decide):
                self._commit(proc, action.height, action.block, action.commit, "decide")
            elif isinstance(action, RequestBlock):
                self.stats["request_block"] += 1
                if not proc.sync_pending:
                    proc.sync_pending = True
                    self._push(proc.rng.randint(5, 50), "sync", proc.pid, inc, action.height)
            elif isinstance(action, ReportEvidence):
                self.stats["evidence"] += 1
                self._check_evidence(proc, action)

    def _broadcast(self, proc: Process, message: Message) -> None:
        if isinstance(message, Proposal):
            self._note_proposed(message)
        if proc.kind == "honest" and isinstance(message, Vote):
            key = (message.validator, message.height, message.round, int(message.vote_type))
            if key in self.honest_votes and self.honest_votes[key] != message.block_hash:
                self.violations.append(f"honest process {proc.pid} signed conflicting {key[1:]}")
            self.honest_votes[key] = message.block_hash
        if proc.kind in ("equivocator", "double_voter"):
            self._send_split(proc, message)
        else:
            self._send_all(proc.pid, message)

    def _note_proposed(self, proposal: Proposal) -> None:
        if proposal.block_hash not in self.proposed:
            self.proposed.add(proposal.block_hash)
            self.proposed_at.setdefault(proposal.height, []).append(proposal.block_hash)

    def _send_split(self, proc: Process, message: Message) -> None:
        """Byzantine: send ``message`` to half the peers and a conflicting one to the rest."""
        other: Message | None = None
        if isinstance(message, Proposal) and proc.kind == "equivocator":
            valid = proc.rng.random() < 0.5
            block = make_block(proc.rng, message.height, message.round, proc.pid, valid)
            body = Proposal(
                message.height,
                message.round,
                message.pol_round,
                canonical.digest(block),
                block,
                message.proposer,
            )
            sig = canonical.sign(proc.key, PROPOSAL_TAG, CHAIN_ID, body.sign_body())
            other = replace(body, signature=sig)
            self._note_proposed(other)
        elif isinstance(message, Vote):
            choices: list[bytes | None] = [None, proc.rng.randbytes(32)]
            choices.extend(self.proposed_at.get(message.height, [])[-4:])  # real rivals
            alt = proc.rng.choice([c for c in choices if c != message.block_hash])
            body_vote = Vote(
                message.vote_type, message.height, message.round, alt, message.validator
            )
            sig = canonical.sign(proc.key, VOTE_TAG, CHAIN_ID, body_vote.sign_body())
            other = Vote(
                message.vote_type, message.height, message.round, alt, message.validator, sig
            )
        if other is None:
            self._send_all(proc.pid, message)
            return
        first = canonical.encode(message_to_obj(message))
        second = canonical.encode(message_to_obj(other))
        for dst in self._peers(proc.pid):
            self._send(proc.pid, dst, first if proc.rng.random() < 0.5 else second)

    def _check_evidence(self, proc: Process, action: ReportEvidence) -> None:
        a, b = action.vote_a, action.vote_b

        def slot(m: Vote | Proposal) -> tuple[object, ...]:
            if isinstance(m, Proposal):
                return ("proposal", m.proposer, m.height, m.round)
            return ("vote", m.validator, m.height, m.round, m.vote_type)

        if slot(a) != slot(b) or a.block_hash == b.block_hash:
            self.violations.append(f"process {proc.pid} reported bogus evidence")
            return
        signer = a.proposer if isinstance(a, Proposal) else a.validator
        for message in (a, b):
            if not canonical.verify_raw(signer, message.sign_bytes(CHAIN_ID), message.signature):
                self.violations.append(f"process {proc.pid} reported unsigned evidence")
        culprit = self.validators.index_of(signer)
        culprit_kinds = {p.kind for p in self.procs if p.key.verify_key.encode() == signer}
        if culprit_kinds == {"honest"}:
            self.violations.append(f"evidence against honest validator {culprit}")

    # --- commit and block sync -----------------------------------------------------------

    def _commit(self, proc: Process, height: int, block: bytes, commit: Commit, how: str) -> None:
        if height in proc.committed:
            return
        if height != proc.height + 1:
            self.violations.append(f"process {proc.pid} committed {height} after {proc.height}")
            return
        try:
            verify_commit(CHAIN_ID, self.validators, commit)
        except InvalidMessage as exc:
            self.violations.append(f"process {proc.pid} produced a bad commit: {exc}")
        block_hash = commit.block_hash
        if canonical.digest(block) != block_hash or commit.height != height:
            self.violations.append(f"process {proc.pid} committed a block not matching commit")
        # Validity: decided values were proposed and are valid.
        if proc.kind == "honest":
            if block_hash not in self.proposed:
                self.violations.append(f"height {height}: decided value was never proposed")
            if not is_valid_block(block, block_hash):
                self.violations.append(f"height {height}: process {proc.pid} decided invalid")
            # Agreement among honest processes.
            by_pid = self.decisions.setdefault(height, {})
            for other_pid, other_hash in by_pid.items():
                if other_hash != block_hash:
                    self.violations.append(
                        f"height {height}: processes {other_pid} and {proc.pid} disagree"
                    )
                    break
            by_pid[proc.pid] = block_hash
        proc.committed[height] = (block, commit)
        # Truncated in the same atomic write as the block, keeping the early messages.
        assert proc.core is not None
        proc.wal = wal_after_commit(proc.core)
        self.stats[f"commit_{how}"] += 1
        if how == "decide":
            self._push(proc.rng.randint(1, 20), "start", proc.pid, proc.incarnation, height + 1)

    def _sync(self, proc: Process, height: int) -> None:
        """Answer RequestBlock: fetch consecutive decided blocks from one peer, verify each
        certificate, commit, then Start the next height."""
        proc.sync_pending = False
        if height <= proc.height:
            return
        sources = [
            p for p in self.procs if p.pid != proc.pid and (proc.height + 1) in p.committed
        ]
        if not sources:
            proc.sync_pending = True
            self._push(300, "sync", proc.pid, proc.incarnation, height)
            return
        source = proc.rng.choice(sources)
        fetched = 0
        while (proc.height + 1) in source.committed:
            h = proc.height + 1
            block, commit = source.committed[h]
            try:
                verify_commit(CHAIN_ID, self.validators, commit)
            except InvalidMessage:
                self.stats["sync_rejected"] += 1
                break
            if commit.height != h or canonical.digest(block) != commit.block_hash:
                self.stats["sync_rejected"] += 1
                break
            self._commit(proc, h, block, commit, "sync")
            fetched += 1
        if fetched:
            self._feed(proc, Start(Height(proc.height + 1)))

    # --- faults --------------------------------------------------------------------------

    def _crash(self, proc: Process) -> None:
        proc.alive = False
        proc.core = None
        proc.sync_pending = False
        proc.incarnation += 1
        self.stats["crashes"] += 1

    def _restart(self, proc: Process) -> None:
        proc.alive = True
        proc.core = self._new_core(proc)
        # What the disk would give back: every record through the canonical codec.
        records = [canonical.encode(WalRecord(event).to_obj()) for event in proc.wal]
        events = [WalRecord.from_obj(canonical.decode(rec)).event for rec in records]
        assert events == proc.wal
        if events:
            self._execute(proc, replay(proc.core, events))
            self.stats["replays"] += 1
        if not any(isinstance(event, Start) for event in events):
            # Crashed between a commit and the next Start: start it now.
            self._feed(proc, Start(Height(proc.height + 1)))

    def _garbage(self, proc: Process) -> None:
        """One burst of hostile input from a garbage validator."""
        rng = proc.rng
        height = max(p.height for p in self.procs) + 1
        round_ = Round(rng.randint(0, 3))
        me = bytes(proc.key.verify_key)
        outsider = bytes(self.outsider.verify_key)
        choice = rng.randint(0, 6)
        data: bytes
        if choice == 0:
            data = rng.randbytes(rng.randint(0, 64))
        elif choice == 1:
            data = canonical.encode({"kind": "vote", "body": {"height": "x"}})
        elif choice == 2:  # badly signed vote
            vote = Vote(VoteType.PREVOTE, Height(height), round_, rng.randbytes(32), me, b"\1" * 64)
            data = canonical.encode(message_to_obj(vote))
        elif choice == 3:  # vote from a non-validator
            body = Vote(VoteType.PRECOMMIT, Height(height), round_, rng.randbytes(32), outsider)
            sig = canonical.sign(self.outsider, VOTE_TAG, CHAIN_ID, body.sign_body())
            data = canonical.encode(message_to_obj(Vote(**{**body.__dict__, "signature": sig})))
        elif choice == 4:  # proposal from the wrong proposer (or the right one, rarely)
            block = make_block(rng, height, round_, proc.pid, True)
            prop = Proposal(Height(height), round_, Round(-1), canonical.digest(block), block, me)
            self._note_proposed(prop)  # a real proposal when we are the proposer
            sig = canonical.sign(proc.key, PROPOSAL_TAG, CHAIN_ID, prop.sign_body())
            data = canonical.encode(message_to_obj(replace(prop, signature=sig)))
        elif choice == 5:  # far-future vote, validly signed (one validator cannot make us sync)
            body = Vote(VoteType.PREVOTE, Height(height + 50), round_, None, me)
            sig = canonical.sign(proc.key, VOTE_TAG, CHAIN_ID, body.sign_body())
            data = canonical.encode(message_to_obj(Vote(**{**body.__dict__, "signature": sig})))
        else:  # validly signed random precommit at the current height
            body = Vote(VoteType.PRECOMMIT, Height(height), round_, rng.randbytes(32), me)
            sig = canonical.sign(proc.key, VOTE_TAG, CHAIN_ID, body.sign_body())
            data = canonical.encode(message_to_obj(Vote(**{**body.__dict__, "signature": sig})))
        for dst in self._peers(proc.pid):
            if rng.random() < 0.5:
                self._send(proc.pid, dst, data)
        self.stats["garbage_sent"] += 1

    def _schedule_faults(self) -> None:
        gst = self.cfg.gst_ms
        if self.cfg.partitions:
            t = self.rng.randint(0, gst // 3)
            while t < gst:
                self._push(t, "partition", -1, 0, self.rng.randbytes(8))
                t += self.rng.randint(200, 1200)
                self._push(t, "heal", -1, 0, None)
                t += self.rng.randint(100, 800)
            self._push(gst, "heal", -1, 0, None)
        if self.cfg.crashes:
            honest = [p.pid for p in self.procs if p.kind == "honest"]
            for _ in range(self.rng.randint(0, 2)):
                pid = self.rng.choice(honest)
                t = self.rng.randint(0, gst - 500)
                self._push(t, "crash", pid, 0, None)
                self._push(self.rng.randint(t + 1, gst - 1), "restart", pid, 0, None)
        for proc in self.procs:
            if proc.kind == "garbage":
                for t in range(0, gst + 5000, 150):
                    self._push(t, "garbage", proc.pid, 0, None)

    # --- main loop -----------------------------------------------------------------------

    def run(self) -> SimResult:
        for proc in self.procs:
            if proc.kind in CORE_KINDS:
                proc.core = self._new_core(proc)
                self._push(proc.rng.randint(0, 50), "start", proc.pid, 0, 1)
        self._schedule_faults()
        self._push(self.cfg.gossip_ms, "gossip", -1, 0, None)
        honest = [p for p in self.procs if p.kind == "honest"]
        deadline = self.cfg.gst_ms + self.cfg.liveness_ms
        target = self.cfg.heights
        while self._heap:
            t, _, kind, pid, inc, payload = heapq.heappop(self._heap)
            if t > deadline:
                break
            self.now = t
            self._dispatch(kind, pid, inc, payload)
            if kind in ("start", "deliver", "sync") and all(p.height >= target for p in honest):
                break
        liveness = None
        if self.cfg.check_liveness:
            behind = [p.pid for p in honest if p.height < target]
            if behind:
                liveness = f"processes {behind} below height {target} at {self.now} ms"
        return SimResult(
            self.seed,
            self.violations,
            liveness,
            self.now,
            {p.pid: p.height for p in self.procs},
            self.behaviours,
            self.stats,
        )

    def _dispatch(self, kind: str, pid: int, inc: int, payload: Any) -> None:
        if kind == "deliver":
            self._deliver(self.procs[pid], payload)
            return
        if kind == "gossip":
            for proc in self.procs:
                if proc.alive and proc.core is not None:
                    for message in proc.core.gossip_messages():
                        self._send_all(proc.pid, message)
            self._push(self.cfg.gossip_ms, "gossip", -1, 0, None)
            return
        if kind == "partition":
            rng = random.Random(payload)
            self.partition = {p.pid: rng.randint(0, 1) for p in self.procs}
            return
        if kind == "heal":
            self.partition = None
            return
        proc = self.procs[pid]
        if kind == "crash":
            if proc.alive:
                self._crash(proc)
            return
        if kind == "restart":
            if not proc.alive:
                self._restart(proc)
            return
        if kind == "garbage":
            self._garbage(proc)
            return
        if not proc.alive or proc.core is None or inc != proc.incarnation:
            return
        if kind == "timeout":
            height, round_, step = payload
            self._feed(proc, TimeoutFired(height, round_, step))
        elif kind == "app":
            self._feed(proc, payload)
        elif kind == "start":
            if payload == proc.height + 1:
                self._feed(proc, Start(Height(payload)))
        elif kind == "sync":
            self._sync(proc, payload)


def run_seed(seed: int, config: SimConfig | None = None) -> SimResult:
    return Simulation(seed, config or SimConfig()).run()
