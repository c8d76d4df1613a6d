"""The consensus driver: the one ordered input loop around the sans-I/O core.

Every input (peer message, timer, answer to a request) becomes an event on one asyncio
queue. The loop takes them one at a time: append the event to the WAL, ``core.step(event)``,
then perform the returned actions in order (raft's Ready rule: persist, then send). Our own
signatures are persisted by the signer guard before the core ever sees them.

Besides the core's actions the driver owns three chores:

* **empty-block policy**: after a commit, the next height starts only when there is work
  (a pending transaction, or a peer already working on it), or after
  ``empty_block_interval_ms`` when that is set, so an idle network makes no blocks;
* **block pacing**: with ``min_block_interval_ms`` set, a height with work but less than a
  full block waiting starts no sooner than that after the previous height started, so a
  steady load is cut into fewer, larger blocks (each height costs a fixed 2.3-3.6 ms of CPU
  per node besides its transactions, docs/benchmarks.md);
* **block sync**: peers exchange their committed height; a node that is behind fetches
  decided blocks with certificates, verifies and commits them, then joins the live height;
* **re-gossip**: our own votes and the proposals we hold are re-sent while a height makes
  no progress, so dropped messages and reconnecting peers cannot stall consensus.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from itertools import takewhile
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
from consensus.core import STEP_UNRECORDED, ConsensusCore, Step
from consensus.core import ConsensusParams as CoreParams
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
    Commit,
    Height,
    InvalidMessage,
    Proposal,
    Round,
    ValidatorSet,
    Vote,
    message_from_obj,
    message_to_obj,
)
from consensus.wal import WalRecord, replay, wal_after_commit
from node.block import Block, BlockError
from node.engine import Engine, ExecutionResult
from node.events import EventBus
from node.genesis import Genesis
from node.log_throttle import LogThrottle
from node.mempool import AdmissionError, Mempool
from node.metrics import Metrics
from node.recent_diffs import DEFAULT_MAX_BYTES as DEFAULT_SYNC_DIFFS_BYTES
from node.recent_diffs import RecentDiffs, diff_from_wire
from node.signer_state import SignerStateFile
from node.store import LedgerStore
from node.tx import MAX_TX_BYTES, Transaction, TxError
from node.verified_signatures import VerifiedSignatures
from node.wal_file import FILE_NAME as WAL_FILE_NAME
from node.wal_file import WalFile

log = logging.getLogger("jangbu.consensus")

GUARD_KEY = b"v/guard"
WAL_PREFIX = b"w/"  # where stores written before node/wal_file.py kept the WAL
EVIDENCE_PREFIX = b"e/"
EVIDENCE_PER_VALIDATOR_HEIGHT = 8

SYNC_BATCH_BLOCKS = 64
SYNC_BATCH_BYTES = canonical.MAX_MESSAGE_BYTES - 64 * 1024
"""Block and certificate bytes per sync response: the whole response is one canonical
message, so it must stay under the message limit (a block alone always fits: blocks are
capped below it by ``max_block_bytes``)."""
STATUS_INTERVAL_S = 1.0
REGOSSIP_AFTER_S = 0.5
TX_REGOSSIP_AFTER_S = 2.0
TX_REGOSSIP_COUNT = 200
TX_REGOSSIP_BYTES = 1024 * 1024
"""While a height this node started makes no progress for ``TX_REGOSSIP_AFTER_S``, it sends
its oldest pending transactions again (at most this many, and bytes), that often. Why: a
transaction's gossip goes out once, to the peers linked then, and is not relayed; a
validator whose gossip was lost (a restart, a partition, a full send queue) started the
height alone while its peers, with no work, waited for a proposal or for f+1 peers'
messages, and the height stalled until some other transaction came (review)."""
HOUSEKEEPING_TICK_S = 0.1
"""How often the housekeeping task looks at status, sync and re-gossip (all on 0.5-5 s
scales). It once woke every 10 ms to flush transaction gossip too; a flush is now armed
by the first transaction that needs one, so an idle or lightly loaded node sleeps."""
TX_GOSSIP_INTERVAL_S = 0.01
"""Transaction gossip goes out at most this often: what is admitted in between waits for
the next flush and travels in one message."""
TX_GOSSIP_BATCH = 2000
TX_GOSSIP_MAX_BYTES = 3 * 1024 * 1024
"""The transactions' bytes one gossip message carries at most, so that it stays under the
4 MiB canonical message limit (``canonical.MAX_MESSAGE_BYTES``) with room for its framing:
2,000 transactions of up to 64 KiB each would not (a review's 70 padded transactions,
4.2 MB, made the broadcast raise and the whole batch was never gossiped)."""
TX_GOSSIP_ITEM_OVERHEAD = 5  # a bin32 header per transaction in the message
assert MAX_TX_BYTES + TX_GOSSIP_ITEM_OVERHEAD <= TX_GOSSIP_MAX_BYTES < canonical.MAX_MESSAGE_BYTES
PEER_TX_MUTE_S = 30.0
PEER_CONSENSUS_MUTE_S = 30.0
"""How long a peer's consensus messages are ignored once it sent one with a bad signature
over its authenticated link. Honest validators send only messages they signed or checked,
so such a message proves the peer faulty; each cost a decode and a signature check, and a
flood of them was ~12% of every honest node's CPU at one script's sending rate, without
end (review). Its valid messages are ignored too meanwhile: one faulty validator less is
within f."""
SERVE_BLOCKS_RATE = 20  # get_blocks answers per second per peer (token bucket)
SERVE_BLOCKS_BURST = 20
"""Advertised in every status message, so that a syncing peer paces itself to it. An
answer holds one full block with its diff (~2.2 MB), and a syncing node applies ~12 such
blocks a second: at the former 10 answers a second (paced at 8) a long catch-up ran below
what the apply sustains. An answer costs the serving node ~5 ms of CPU."""
LEGACY_SERVE_BUDGET = (10, 10)
"""The budget of a peer that advertises none (a node from before the advertisement): the
rate and burst all nodes used then, so that a new node never overruns an old one."""
MAX_ADVERTISED_SERVE = 1000
MIN_ANNOUNCED_TXS = 32
"""Smaller blocks are built without an announcement: executing them takes less than a
message's round trip through the loops."""
SYNC_REJECT_LOG_S = 10.0  # refused sync items: one log line per peer this often
UNASKED_BLOCKS_INTERVAL_S = 1.0
"""At most one ``blocks`` answer a second from a peer that the sync is not waiting on. Such
answers (a late one to an earlier request) may still add certified blocks, but each is
decoded whole before its heights are known, and a review's peer sent 3.6 MB of old fake
blocks twenty times a second, ~34% of every honest node's CPU."""
# Honest peers gossip only transactions they admitted, so these prove a Byzantine sender.
PROVABLY_BAD_TX = frozenset({"E_MALFORMED_TX", "E_TX_TOO_LARGE", "E_BAD_SIGNATURE",
                             "E_WRONG_CHAIN"})


def evidence_obj(message: Vote | Proposal) -> dict[str, Any]:
    """What evidence keeps of a conflicting message: a vote whole, a proposal as its signed
    body and signature (its block is not needed to check the signature)."""
    if isinstance(message, Proposal):
        return {**message.sign_body(), "signature": message.signature}
    return message.to_obj()


COUNTERS: dict[str, str] = {
    "jangbu_blocks_committed_total": "blocks this node committed (by consensus or sync)",
    "jangbu_txs_committed_total": "transactions in the blocks this node committed",
    "jangbu_blocks_announced_total": "block announcements this node sent as proposer",
    "jangbu_speculations_total": "announced blocks executed ahead of their proposal",
    "jangbu_speculations_skipped_total": "announced blocks not executed ahead of their "
                                         "proposal",
    "jangbu_speculations_failed_total": "speculative executions that raised (dropped)",
    "jangbu_invalid_proposals_total": "proposals whose block did not validate",
    "jangbu_evidence_total": "conflicting votes or proposals (double signs) seen; against "
                             "this node's own key: a second copy of it is running",
    "jangbu_p2p_bad_messages_total": "peer messages that did not decode, of an unknown kind, "
                                     "or with a transaction no honest node would send",
    "jangbu_p2p_muted_consensus_total": "consensus messages dropped from peers muted after "
                                        "a bad signature",
    "jangbu_p2p_muted_txs_total": "transaction gossip dropped from peers muted after a bad "
                                  "transaction",
    "jangbu_p2p_throttled_total": "block requests from peers served late, beyond their budget",
    "jangbu_p2p_unknown_serve_budget_total": "peers advertising no readable sync budget",
    "jangbu_sync_blocks_total": "blocks taken by block sync",
    "jangbu_sync_diffs_applied_total": "synced blocks applied from their certified diff",
    "jangbu_sync_diffs_rejected_total": "synced diffs that did not check out",
    "jangbu_sync_ignored_total": "sync answers that could add nothing (starting past this "
                                 "node's next height, or unasked with nothing new) or came "
                                 "unasked more than once a second from a peer",
    "jangbu_sync_rejected_total": "synced items refused (they did not check out)",
    "jangbu_sync_requests_ahead_total": "block batches asked for while one was being applied",
}
"""Every counter the driver increments, exported at 0 from the start (Metrics.declare);
tests/node/test_metrics_declared.py checks that none is left out."""


@dataclass(frozen=True)
class _SyncBlocks:
    """Blocks with certificates received from a peer (handled by the driver, not the core)."""

    sender: bytes
    items: list[Any]


@dataclass(frozen=True)
class _SyncAnswer:
    """A sync answer decoded, with whether it is the awaited one and the height the
    next request asked from (None: none asked)."""

    event: _SyncBlocks
    blocks: list[tuple[Block, Any, list[Any]]]
    answers: bool
    ahead: int | None


@dataclass(frozen=True)
class _StartIfIdle:
    height: int


@dataclass(frozen=True)
class _FromPeer:
    """A peer's consensus message with the link it came over: a bad signature mutes the
    link (``PEER_CONSENSUS_MUTE_S``). Replayed and buffered messages have no link."""

    sender: bytes
    event: VoteReceived | ProposalReceived


@dataclass(frozen=True)
class _BuildProposal:
    """Build the block announced for ``action`` (queued once the announcement is out)."""

    action: RequestProposalValue
    txs: list[Transaction]
    time_ms: int


@dataclass(frozen=True)
class _Speculate:
    """A proposer's announcement of its next block: execute it ahead of the proposal."""

    height: int
    round: int
    time_ms: int
    tx_hashes: list[bytes]


@dataclass(frozen=True)
class Committed:
    height: int
    index: int
    receipt: Any
    block_hash: bytes


def refilled(budget: dict[bytes, tuple[float, float]], peer: bytes, now: float,
             rate: float, burst: float) -> float:
    """``peer``'s tokens in a token bucket (``budget``: peer -> (tokens, when)) at ``now``.

    The one rule for both sides of block sync: a serving node's limit on a peer's
    requests, and the syncing node's copy of it that paces its own.
    """
    tokens, last = budget.get(peer, (burst, now))
    return min(burst, tokens + (now - last) * rate)


def sync_batch(store: LedgerStore, start: int,
               diffs: RecentDiffs | None = None) -> list[list[Any]]:
    """``[block bytes, certificate]`` from ``start`` on, as many as fit one sync response,
    each with its diff (``[block, certificate, diff]``) when ``diffs`` still holds it and
    it fits.

    A held diff that does not fit beside the blocks already in the response ends it: the
    next response starts with that block and its diff. Sending the block alone instead
    made the receiver execute it, ~3× the CPU of applying its diff; with full blocks
    (~0.6 MB, diff ~1.6 MB) that was two blocks of every three. A block whose diff cannot
    fit even alone goes without it, where it stands (ending the response there would only
    send the next one without it too).

    Regression: the budget was once larger than the message limit, so with full blocks the
    response could not be encoded, the serving node dropped the request, and a wiped node
    never caught up.
    """
    items: list[list[Any]] = []
    size = 0
    for height in range(start, min(store.height, start + SYNC_BATCH_BLOCKS - 1) + 1):
        raw = store.get_block_bytes(height)
        commit_raw = store.get_commit_bytes(height)
        if raw is None or commit_raw is None:
            break
        cost = len(raw) + len(commit_raw)  # stored canonically: the size it travels at
        if items and size + cost > SYNC_BATCH_BYTES:
            break
        item = [raw, canonical.decode(commit_raw)]
        diff_cost = diffs.size_of(height) if diffs is not None else None
        if diff_cost is not None:
            if size + cost + diff_cost <= SYNC_BATCH_BYTES:
                item.append(diffs.wire(height))  # type: ignore[union-attr]
                cost += diff_cost
            elif items and cost + diff_cost <= SYNC_BATCH_BYTES:
                break  # the next response carries this block with its diff
            # else: its diff cannot fit even alone, so no later response would carry it
        size += cost
        items.append(item)
    return items


class ConsensusDriver:
    def __init__(
        self,
        *,
        genesis: Genesis,
        node_key: SigningKey,
        store: LedgerStore,
        engine: Engine,
        mempool: Mempool,
        bus: EventBus,
        metrics: Metrics,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        guard_file: SignerStateFile | None = None,
        sync_diffs_bytes: int = DEFAULT_SYNC_DIFFS_BYTES,
        speculate: bool = True,
        vote_signatures: VerifiedSignatures | None = None,
    ) -> None:
        self.genesis = genesis
        # The core's signature checks, remembered: the engine's certificate check of the
        # next block consults the same object (node/verified_signatures.py).
        self.vote_signatures = (vote_signatures if vote_signatures is not None
                                else VerifiedSignatures())  # (an empty one is falsy)
        self.chain_id = genesis.chain_id
        self.store = store
        self.engine = engine
        self.mempool = mempool
        self.bus = bus
        self.metrics = metrics
        # The last blocks' state writes and receipts, sent with them to catching-up peers.
        self.diffs = RecentDiffs(sync_diffs_bytes)
        self.clock_ms = clock_ms
        self.vset = ValidatorSet(tuple(genesis.validator_pubkeys()))
        self.pubkey = node_key.verify_key.encode()
        self.is_validator = self.pubkey in self.vset
        self.guard_file = guard_file
        if guard_file is not None:
            guard_state = guard_file.load()
            if guard_state is None:  # first start, or a store from before the guard file
                raw_guard = store.get_record(GUARD_KEY)
                guard_state = GuardState.from_obj(canonical.decode(raw_guard)) \
                    if raw_guard else None
        else:
            raw_guard = store.get_record(GUARD_KEY)
            guard_state = GuardState.from_obj(canonical.decode(raw_guard)) if raw_guard else None
        self.signer = GuardedSigner(node_key, self.chain_id, SignGuard(guard_state),
                                    self._persist_guard)
        p = genesis.params
        # Genesis carries the core's timeouts under the same names (and block limits besides).
        self.core_params = CoreParams(**{
            f.name: getattr(p, f.name) for f in fields(CoreParams) if hasattr(p, f.name)})
        self.core = self._new_core()
        self._rejected_before: Counter[str] = Counter()  # refusals of replaced cores
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.send: Callable[[bytes, Any], None] = lambda peer, msg: None
        self.broadcast: Callable[[Any], object] = lambda msg: None
        self.connected_peers: Callable[[], list[bytes]] = list
        self.started_height = 0  # the last height we fed Start for
        self.peer_heights: dict[bytes, int] = {}
        self.syncing = False
        self._sync_peer: bytes | None = None
        self._sync_requested_at = 0.0
        # The one block request whose answer continues the sync: (peer, first height).
        # Other answers (late duplicates, unasked ones) may still add certified blocks, but
        # never ask for more nor end the sync: one chain of requests at a time.
        self._sync_expect: tuple[bytes, int] | None = None
        self._sync_unanswered: set[bytes] = set()  # sync peers that failed a request
        self._unasked_blocks_at: dict[bytes, float] = {}  # ``_take_blocks_answer``
        self._sync_reject_lines = LogThrottle(SYNC_REJECT_LOG_S)  # one line per peer
        self._ask_budget: dict[bytes, tuple[float, float]] = {}  # peer -> (tokens, at)
        self._peer_serve: dict[bytes, tuple[int, int]] = {}  # advertised (rate, burst)
        self._ask_timer: asyncio.TimerHandle | None = None
        self.wal = WalFile(os.path.join(store.path, WAL_FILE_NAME))
        self._wal_found = self._open_wal()  # the records a previous run left
        self._timers: list[tuple[int, asyncio.TimerHandle]] = []  # (height, pending timeout)
        self._gossip_flush: asyncio.TimerHandle | None = None
        self._last_gossip_flush = float("-inf")  # loop time of the last gossip flush
        self._waiters: dict[bytes, list[asyncio.Future[Committed]]] = {}
        self._gossip_txs: list[bytes] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._last_progress = time.monotonic()
        self._last_commit_at = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_deadline = 0.0  # time.monotonic() the idle timer fires at
        self._idle_height = 0  # the height it starts
        self._last_start_at = float("-inf")  # time.monotonic() the last height started here
        self._stopping = False
        self.fatal: BaseException | None = None
        self.on_fatal: Callable[[BaseException], None] = lambda exc: None
        self._tx_muted_until: dict[bytes, float] = {}
        self._consensus_muted_until: dict[bytes, float] = {}
        self._serve_budget: dict[bytes, tuple[float, float]] = {}
        # At most one request per peer waits for a serving token (see _serve_blocks).
        self._serve_deferred: dict[bytes, asyncio.TimerHandle] = {}
        self.commit_listeners: list[Callable[[Block, ExecutionResult], None]] = []
        self._submitted_at: dict[bytes, float] = {}
        self._blocks: dict[bytes, Block] = {}
        # Execute announced blocks ahead of their proposals (Engine.speculate).
        self.speculate = speculate
        self._announcers: tuple[int, set[bytes]] = (0, set())  # who announced at a height
        self._evidence_recorded: tuple[int, Counter[bytes]] = (0, Counter())
        # Who sent messages of a height we have not started (``_peers_work_on``).
        self._next_height_senders: tuple[int, set[bytes]] = (0, set())

    def _replace_core(self) -> None:
        """A fresh core for the live height; the old one's refusal counts carry over, so
        ``jangbu_consensus_rejected_total`` only ever grows."""
        self._rejected_before.update(self.core.rejected)
        self.core = self._new_core()

    def consensus_rejected(self, code: str) -> int:
        """Consensus messages refused for ``code`` since this node started."""
        return self._rejected_before[code] + self.core.rejected[code]

    def _new_core(self) -> ConsensusCore:
        last = self.store.get_commit(self.store.height) if self.store.height else None
        return ConsensusCore(
            self.chain_id, self.vset, self.pubkey if self.is_validator else None,
            self.signer if self.is_validator else None, self.core_params,
            height=self.store.height + 1,
            verifier=self.vote_signatures,
            last_commit=Commit.from_obj(last) if last is not None else None,
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Replay the WAL of the uncommitted height, then run the input loop."""
        events = self._load_wal()
        if events:
            log.info("replaying %d WAL records for height %d", len(events),
                     self.store.height + 1)
            self.started_height = self.store.height + 1
            for action in replay(self.core, events):
                self._perform(action)
        self._tasks = [
            asyncio.create_task(self._run(), name="consensus-loop"),
            asyncio.create_task(self._housekeeping(), name="consensus-housekeeping"),
        ]
        if not events:
            self._consider_start()

    async def stop(self) -> None:
        """Stop after the event in flight (a commit in progress completes first; a sync
        answer stopped between its request ahead and its apply is dropped whole, leaving
        the store as it was)."""
        self._stopping = True
        if self._gossip_flush is not None:
            self._gossip_flush.cancel()
            self._gossip_flush = None
        if self._ask_timer is not None:
            self._ask_timer.cancel()
            self._ask_timer = None
        for handle in self._serve_deferred.values():
            handle.cancel()
        self._serve_deferred.clear()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._cancel_timers(self.core.height)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.cancel()
        if self.guard_file is not None:
            self.guard_file.close()  # a later save (none is expected) reopens it safely
        self.wal.close()

    def _open_wal(self) -> list[bytes]:
        """Open the WAL file and return what a previous run left in it.

        A store written before the WAL moved to its own file keeps its records under
        ``w/`` in LevelDB: they are copied to the file, synced, then deleted (a crash in
        between copies them again at the next start, replacing the first copy). The file
        is closed again if any of this fails.
        """
        try:
            found = self.wal.open()
            if self.wal.dropped_bytes:
                log.error("the WAL file %s ended in a torn or damaged record; %d bytes "
                          "dropped", self.wal.path, self.wal.dropped_bytes)
            legacy = list(self.store.scan_records(WAL_PREFIX))
            if legacy:
                # An empty value is damage (no record encodes to nothing): the rest after
                # it is ignored, as a record that does not decode (_load_wal).
                found = list(takewhile(bool, (value for _, value in legacy)))
                self.wal.reset(found)
                self.wal.sync()  # once per store: the records must outlive their old copy
                self.store.delete_records([key for key, _ in legacy])
        except BaseException:
            self.wal.close()
            raise
        return found

    def _load_wal(self) -> list[Event]:
        """The events to replay: the records left for the uncommitted height.

        A record that does not decode ends the log: the file is cut back to the records
        before it, so that what this run appends is read after them at the next start.
        A ``Start`` added here (none was logged) is logged too, in its place.
        """
        events: list[Event] = []
        height = self.store.height
        found, self._wal_found = self._wal_found, []
        for index, raw in enumerate(found):
            try:
                event = WalRecord.from_obj(canonical.decode(raw)).event
            except (InvalidMessage, canonical.CanonicalError, ValueError) as exc:
                log.error("WAL record %d is corrupt (%s); ignoring the rest", index, exc)
                self.wal.reset(found[:index])
                break
            event_height = getattr(event, "height", None)
            if event_height is None:
                inner = getattr(event, "vote", None) or getattr(event, "proposal", None)
                event_height = getattr(inner, "height", None)
            if event_height is not None and event_height <= height:
                continue  # belongs to a height that is already committed
            events.append(event)
        if events and not any(isinstance(event, Start) for event in events):
            # Crashed after a commit, before the next Start: the records are the messages
            # for the next height the core had buffered; it must see them before Start.
            start = Start(height + 1)  # type: ignore[arg-type]
            self._wal_append(start)
            events.append(start)
        return events

    # --- inputs -----------------------------------------------------------------------------

    def submit_local(self, tx: Transaction) -> None:
        """Admit a client's transaction and gossip it (raises AdmissionError)."""
        self.mempool.add(tx)
        self._gossip_txs.append(tx.encoded)
        if self._gossip_flush is None:
            self._arm_gossip_flush()
        if len(self._submitted_at) < 200_000:  # for the submit-to-commit latency histogram
            self._submitted_at[tx.hash] = time.monotonic()
        self._consider_start()

    def on_peer_connected(self, peer: bytes) -> None:
        """Tell a newly linked peer our height at once.

        Why: heights otherwise travel only in the status broadcast every
        ``STATUS_INTERVAL_S``, so a node that restarted behind waited up to a second before
        it knew to sync (measured: ~0.3 s of a 20,000-order catch-up of ~3 s), and a node
        rejoining after a partition as long before the others knew where it stood.

        A new link to the peer the sync is waiting on also carries the request again: when
        a node restarts, it and its peers dial each other at once and one link replaces the
        other, and a request sent down the replaced link could be lost, leaving the sync to
        the 5 s retry (seen once as a 5.3 s pause before a catch-up's first block). A
        request that did arrive is answered twice; the second answer is ignored. The re-send
        leaves the request's 5 s deadline alone: a peer that never answers must not hold
        the sync by relinking.
        """
        self.send(peer, self._status())
        expect = self._sync_expect
        if (expect is not None and expect[0] == peer and self._ask_timer is None
                and not self._stopping):
            self.send(peer, self._ask_message(expect[1]))

    def _status(self) -> dict[str, Any]:
        """Our height, and the sync budget we serve each peer (``[rate, burst]``)."""
        return {"t": "status", "height": self.store.height,
                "serve": [SERVE_BLOCKS_RATE, SERVE_BLOCKS_BURST]}

    def on_peer_message(self, sender: bytes, msg: Any) -> None:
        """Everything peers send arrives here (called by the transport)."""
        if not isinstance(msg, dict):
            self.metrics.inc("jangbu_p2p_bad_messages_total")
            return
        kind = msg.get("t")
        try:
            if kind == "c":
                self._on_consensus_message(sender, msg.get("m"))
            elif kind == "txs":
                self._on_gossiped_txs(sender, msg.get("txs"))
            elif kind == "status":
                self._on_status(sender, msg.get("height"), msg.get("serve"))
            elif kind == "get_blocks":
                self._serve_blocks(sender, msg.get("from"), msg.get("diffs", False))
            elif kind == "blocks":
                items = msg.get("items")
                if isinstance(items, list) and self._take_blocks_answer(sender):
                    self.queue.put_nowait(_SyncBlocks(sender, items))
            elif kind == "next":
                self._on_announcement(sender, msg)
            else:
                self.metrics.inc("jangbu_p2p_bad_messages_total")
        except (InvalidMessage, TypeError, ValueError, KeyError) as exc:
            self.metrics.inc("jangbu_p2p_bad_messages_total")
            log.debug("bad message from %s: %s", sender.hex()[:12], exc)

    def _take_blocks_answer(self, sender: bytes) -> bool:
        """Whether to take a ``blocks`` message from ``sender``: always the one the sync
        waits on, others at most once per ``UNASKED_BLOCKS_INTERVAL_S`` per peer."""
        expect = self._sync_expect
        if expect is not None and expect[0] == sender:
            return True
        now = time.monotonic()
        if now - self._unasked_blocks_at.get(sender, -math.inf) < UNASKED_BLOCKS_INTERVAL_S:
            self.metrics.inc("jangbu_sync_ignored_total")
            return False
        self._unasked_blocks_at[sender] = now
        return True

    def _on_consensus_message(self, sender: bytes, obj: Any) -> None:
        if self._consensus_muted_until.get(sender, 0.0) > time.monotonic():
            self.metrics.inc("jangbu_p2p_muted_consensus_total")
            return
        message = message_from_obj(obj)
        if (message.height == self.store.height + 1 and self.started_height <= self.store.height
                and self._peers_work_on(sender, message)):
            self._start_height(message.height)  # peers are already working on it
        if isinstance(message, Vote):
            self.queue.put_nowait(_FromPeer(sender, VoteReceived(message)))
        else:
            self.queue.put_nowait(_FromPeer(sender, ProposalReceived(message)))

    def _peers_work_on(self, sender: bytes, message: Proposal | Vote) -> bool:
        """Whether a peer's message of the next height, which we have not started, shows
        that the network works on it: the round-0 proposal, sent by its proposer itself,
        or messages over f+1 distinct links (so from at least one honest validator).

        Why not any message: one Byzantine validator sending a nil prevote for the next
        height made an idle network start it and commit an empty block, again and again
        (review: 13 empty blocks in 10 s). Now it can do so only as the next height's
        round-0 proposer, one block, after which an honest validator proposes first. An
        honest validator with work starts the height itself, and its transactions reach
        the others by gossip, which starts it for them too.
        """
        if (isinstance(message, Proposal) and message.round == 0
                and sender == message.proposer == self.vset.proposer(message.height, Round(0))):
            return True
        height, senders = self._next_height_senders
        if height != message.height:
            senders = set()
            self._next_height_senders = (message.height, senders)
        senders.add(sender)
        return len(senders) >= self.vset.skip_threshold

    def _on_gossiped_txs(self, sender: bytes, items: Any) -> None:
        if not isinstance(items, list):
            raise ValueError("txs must be a list")
        if self._tx_muted_until.get(sender, 0.0) > time.monotonic():
            self.metrics.inc("jangbu_p2p_muted_txs_total")
            return
        for raw in items[:TX_GOSSIP_BATCH]:
            try:
                self.mempool.add(Transaction.decode(raw))
            except AdmissionError as exc:
                if exc.code in PROVABLY_BAD_TX:
                    self._mute_tx_gossip(sender, exc.code)
                    break
            except (TxError, TypeError) as exc:
                self._mute_tx_gossip(sender, getattr(exc, "code", "E_MALFORMED_TX"))
                break
        self._consider_start()

    def _on_announcement(self, sender: bytes, msg: dict[str, Any]) -> None:
        """A proposer's ``next`` message (:meth:`_request_proposal`): queue a speculative
        execution if it comes from the proposer of that height and round, over its own
        authenticated link, for the height we are deciding and its current or next round,
        and is the first from that peer at this height. The bounds matter: every validator
        proposes in some round of every height, so without them one Byzantine validator
        could have us execute a full block per message it sends."""
        height, round_, time_ms, hashes = (msg.get("h"), msg.get("r"), msg.get("time"),
                                           msg.get("txs"))
        if (type(height) is not int or type(round_) is not int or type(time_ms) is not int
                or not isinstance(hashes, list) or height < 1 or round_ < 0
                or len(hashes) > self.genesis.params.max_block_txs
                or not all(type(h) is bytes and len(h) == 32 for h in hashes)):
            raise ValueError("malformed block announcement")
        if sender != self.vset.proposer(Height(height), Round(round_)):
            raise ValueError("block announcement from a peer that is not its proposer")
        if not self.speculate or not self._announcement_in_window(height, round_):
            return
        if self._announcers[0] != height:
            self._announcers = (height, set())
        if sender in self._announcers[1]:
            return  # one per peer and height
        self._announcers[1].add(sender)
        self.queue.put_nowait(_Speculate(height, round_, time_ms, hashes))

    def _announcement_in_window(self, height: int, round_: int) -> bool:
        """Is (height, round) the height we decide, in its current round or the next?"""
        if height != self.store.height + 1:
            return False
        current = self.core.round if self.core.height == height else 0
        return current <= round_ <= current + 1

    def _mute_consensus(self, sender: bytes) -> None:
        self._consensus_muted_until[sender] = time.monotonic() + PEER_CONSENSUS_MUTE_S
        log.warning("peer %s sent a consensus message with a bad signature: ignoring its "
                    "consensus messages for %.0fs", sender.hex()[:12], PEER_CONSENSUS_MUTE_S)

    def _mute_tx_gossip(self, sender: bytes, code: str) -> None:
        """Ignore a peer's transaction gossip for a while: it sent one no honest node would
        (each costs us a signature check, so a flood of them is a CPU attack)."""
        self._tx_muted_until[sender] = time.monotonic() + PEER_TX_MUTE_S
        self.metrics.inc("jangbu_p2p_bad_messages_total")
        log.warning("peer %s gossiped an invalid transaction (%s): ignoring its transactions "
                    "for %.0fs", sender.hex()[:12], code, PEER_TX_MUTE_S)

    def _take_serve_token(self, sender: bytes) -> float:
        """Spend one of ``sender``'s serving tokens: 0.0 if there was one, else the seconds
        until there will be (nothing spent)."""
        now = time.monotonic()
        tokens = refilled(self._serve_budget, sender, now, SERVE_BLOCKS_RATE,
                          SERVE_BLOCKS_BURST)
        if tokens < 1:
            self._serve_budget[sender] = (tokens, now)
            return (1 - tokens) / SERVE_BLOCKS_RATE
        self._serve_budget[sender] = (tokens - 1, now)
        return 0.0

    def _on_status(self, sender: bytes, height: Any, serve: Any = None) -> None:
        if not isinstance(height, int) or isinstance(height, bool) or height < 0:
            raise ValueError("bad status height")
        if (isinstance(serve, list) and len(serve) == 2
                and all(type(v) is int and 1 <= v <= MAX_ADVERTISED_SERVE for v in serve)):
            self._peer_serve[sender] = (serve[0], serve[1])
        else:
            # None: an older node (perhaps this peer, downgraded). Anything else: a shape a
            # later version may send. Either way its height still counts, paced to the
            # old budget, so that a newer peer never stalls our sync.
            if serve is not None:
                self.metrics.inc("jangbu_p2p_unknown_serve_budget_total")
            self._peer_serve.pop(sender, None)
        self.peer_heights[sender] = height
        if not self.syncing:
            target = self._sync_target()
            if target is not None:
                self._begin_sync(target)

    def _serve_blocks(self, sender: bytes, start: Any, want_diffs: Any = False) -> None:
        """Answer a peer's ``get_blocks`` within its serving budget.

        A request beyond the budget waits for the next token rather than being dropped:
        a syncing peer paces itself to our advertised budget, but its bucket and ours
        start at different moments (it restarted with a full one while ours is drained,
        say), and a dropped request costs it the 5 s retry. Only the newest waiting
        request of a peer is kept, so a flood still costs us one answer per token and
        one timer per peer.
        """
        if not isinstance(start, int) or isinstance(start, bool) or start < 1:
            raise ValueError("bad get_blocks start")
        pending = self._serve_deferred.pop(sender, None)
        if pending is not None:
            pending.cancel()  # superseded: requests are one at a time
        wait = self._take_serve_token(sender)
        if wait > 0:
            self.metrics.inc("jangbu_p2p_throttled_total")
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): dropped
                return
            self._serve_deferred[sender] = loop.call_later(
                wait + 0.001, self._serve_later, sender, start, want_diffs)
            return
        # Diffs only to a peer that asked: an older node would refuse a three-part item.
        diffs = self.diffs if want_diffs is True else None
        self.send(sender, {"t": "blocks", "items": sync_batch(self.store, start, diffs)})

    def _serve_later(self, sender: bytes, start: int, want_diffs: Any) -> None:
        self._serve_deferred.pop(sender, None)
        if not self._stopping:
            self._serve_blocks(sender, start, want_diffs)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                if isinstance(event, _SyncBlocks):
                    answer = self._receive_sync_blocks(event)
                    if answer is not None:
                        if answer.ahead is not None:
                            # send() only queues the request for the link's writer task,
                            # and applying this batch then holds the event loop for tens
                            # of ms: without this turn the request left after the apply,
                            # and the next batch came a round trip late (~13 ms of every
                            # ~40 ms full block of a catch-up; docs/benchmarks.md).
                            await asyncio.sleep(0)
                        self._apply_sync_answer(answer)
                else:
                    self._handle(event)
            except (BlockError, InvalidMessage) as exc:
                log.warning("dropped input %s: %s", type(event).__name__, exc)
            except Exception as exc:  # the disk or our own bug: stop loudly, never limp on
                self.fatal = exc
                self._stopping = True
                log.critical("consensus stopped at height %d: %s: %s", self.store.height,
                             type(exc).__name__, exc, exc_info=True)
                self.on_fatal(exc)
                return

    def _handle(self, event: Any) -> None:
        sender = None
        if isinstance(event, _FromPeer):
            sender, event = event.sender, event.event
        if isinstance(event, _SyncBlocks):
            self._apply_sync_blocks(event)
            return
        if isinstance(event, _Speculate):
            self._speculate(event)
            return
        if isinstance(event, _BuildProposal):
            asked = event.action
            if (asked.height == self.core.height == self.store.height + 1
                    and asked.round == self.core.round and self.core.step_name is Step.PROPOSE):
                self.queue.put_nowait(self._build_proposal(asked, event.txs, event.time_ms))
            return
        if isinstance(event, _StartIfIdle):
            if self.syncing:
                return  # the end of the sync considers the next height again
            if event.height == self.store.height + 1:
                self._start_height(event.height)
            else:
                self._consider_start()  # armed for a height sync has since decided
            return
        if isinstance(event, Start) and event.height != self.store.height + 1:
            return
        if isinstance(event, TimeoutFired) and event.height <= self.store.height:
            # The core ignores a timeout of a committed height; it needs no WAL record.
            return
        prechecked = False
        if isinstance(event, VoteReceived | ProposalReceived):
            # Only what the core acts on is recorded: a peer's junk costs no disk (review).
            verdict = self.core.precheck(event)
            if verdict in STEP_UNRECORDED:
                for action in self.core.step(event):  # a peer is ahead: noted, not kept
                    self._perform(action)
                return
            if verdict is not None:
                self.core.refused(verdict)
                if verdict == "bad_signature" and sender is not None:
                    self._mute_consensus(sender)
                return
            prechecked = True
        self._wal_append(event)
        for action in self.core.step(event, prechecked=prechecked):
            self._perform(action)

    def _wal_append(self, event: Event) -> None:
        self.wal.append(canonical.encode(WalRecord(event).to_obj()))

    def _reset_wal(self, events: list[Event]) -> None:
        """After a commit the WAL holds only ``events``: what the core buffered for the next
        height (consensus.wal.wal_after_commit)."""
        self.wal.reset([canonical.encode(WalRecord(event).to_obj()) for event in events])

    def _persist_guard(self, state: GuardState) -> None:
        """Durably record what we are about to sign, before the signature exists."""
        if self.guard_file is not None:
            self.guard_file.save(state)
        else:
            self.store.put_record(GUARD_KEY, canonical.encode(state.to_obj()), sync=True)

    def _perform(self, action: Action) -> None:
        if isinstance(action, Broadcast):
            self.broadcast({"t": "c", "m": message_to_obj(action.message)})
        elif isinstance(action, ScheduleTimeout):
            event = TimeoutFired(action.height, action.round, action.step)
            handle = asyncio.get_running_loop().call_later(
                action.duration_ms / 1000, self.queue.put_nowait, event)
            self._timers.append((action.height, handle))
        elif isinstance(action, RequestProposalValue):
            self._request_proposal(action)
        elif isinstance(action, ValidateBlock):
            self.queue.put_nowait(self._validate(action))
        elif isinstance(action, Decide):
            self._decide(action)
        elif isinstance(action, RequestBlock):
            self._request_blocks()
        elif isinstance(action, ReportEvidence):
            self._record_evidence(action.vote_a, action.vote_b)

    # --- proposals and validation -----------------------------------------------------------

    def _request_proposal(self, action: RequestProposalValue) -> None:
        """Choose the next block's transactions and time, announce them, then build it.

        The announcement (``next``: height, round, time, transaction hashes) lets the
        validators execute the block while we do (:meth:`Engine.speculate`), instead of
        idling through our execution and then executing one after the other: the header
        cannot be sent before its roots are known. Our pending transaction gossip goes out
        first, on the same ordered links, so that the validators hold every announced
        transaction. The build itself waits for the next turn of the loop, once the
        announcement has been written to the sockets.
        """
        p = self.genesis.params
        self._flush_gossip_now()
        txs = self.engine.admissible(self.mempool.reap(p.max_block_txs, p.max_block_bytes))
        time_ms = max(self.clock_ms(), self.engine.tip()[2] + 1)
        if not self.speculate or len(txs) < MIN_ANNOUNCED_TXS:
            self.queue.put_nowait(self._build_proposal(action, txs, time_ms))
            return
        self.broadcast({"t": "next", "h": action.height, "r": action.round, "time": time_ms,
                        "txs": [tx.hash for tx in txs]})
        self.metrics.inc("jangbu_blocks_announced_total")
        build = _BuildProposal(action, txs, time_ms)
        try:
            asyncio.get_running_loop().call_soon(self.queue.put_nowait, build)
        except RuntimeError:  # no loop: a synchronous caller (tests)
            self.queue.put_nowait(build)

    def _speculate(self, event: _Speculate) -> None:
        """Execute an announced block now if every transaction of it is in our mempool and
        the list is one a proposer could propose (no repeats, nothing committed, within the
        block limits)."""
        if self.syncing or not self._announcement_in_window(event.height, event.round):
            return
        txs = []
        for tx_hash in event.tx_hashes:
            tx = self.mempool.get(tx_hash)
            if tx is None:
                self.metrics.inc("jangbu_speculations_skipped_total")
                return
            txs.append(tx)
        if len(self.engine.admissible(txs)) != len(txs):
            self.metrics.inc("jangbu_speculations_skipped_total")
            return
        started = time.perf_counter()
        try:
            ran = self.engine.speculate(event.height, event.time_ms, txs,
                                        now_ms=self.clock_ms())
        except Exception as exc:  # an unsigned peer input: never fatal
            # Speculation is an optimisation on an unverified announcement: whatever it
            # raises, the proposal is executed (or refused) by the usual path. Regression
            # (review): an OverflowError from an absurd announced time stopped consensus.
            self.metrics.inc("jangbu_speculations_failed_total")
            log.warning("speculative execution of height %d failed, ignored: %s: %s",
                        event.height, type(exc).__name__, exc)
            return
        if ran:
            self.metrics.inc("jangbu_speculations_total")
            self.metrics.histogram("jangbu_speculation_seconds").observe(
                time.perf_counter() - started)

    def _build_proposal(self, action: RequestProposalValue, txs: list[Transaction],
                        time_ms: int) -> ProposalValueReady:
        started = time.perf_counter()
        last_commit = self.store.get_commit(self.store.height) if self.store.height else None
        block = self.engine.build_block(proposer=self.pubkey, time_ms=time_ms, txs=txs,
                                        last_commit=last_commit)
        self._remember(block)
        self.metrics.histogram("jangbu_block_build_seconds").observe(
            time.perf_counter() - started)
        return ProposalValueReady(action.height, action.round, block.hash, block.encoded)

    def _validate(self, action: ValidateBlock) -> BlockValidated:
        started = time.perf_counter()
        valid = False
        try:
            block = self._decoded(action.block_hash, action.block)
            if block.hash != action.block_hash:
                raise BlockError("block does not hash to the proposed hash")
            self.engine.validate_block(block, now_ms=self.clock_ms())
            self._remember(block)
            valid = True
        except BlockError as exc:
            self.metrics.inc("jangbu_invalid_proposals_total")
            log.warning("invalid proposal at height %d round %d: %s", action.height,
                        action.round, exc)
        self.metrics.histogram("jangbu_block_validate_seconds").observe(
            time.perf_counter() - started)
        return BlockValidated(action.height, action.round, action.block_hash, valid)

    # --- commit -----------------------------------------------------------------------------

    def _decide(self, action: Decide) -> None:
        if action.height != self.store.height + 1:
            return  # already committed through block sync
        block = self._decoded(action.block_hash, action.block)
        self._commit(block, action.commit.to_obj())

    def _remember(self, block: Block) -> None:
        """Keep the blocks of the current height decoded: Decide carries the same bytes."""
        if self._blocks and next(iter(self._blocks.values())).height != block.height:
            self._blocks.clear()
        self._blocks[block.hash] = block

    def _decoded(self, block_hash: bytes, raw: bytes) -> Block:
        """The block for these bytes: the one already decoded, else decode it, reusing
        the mempool's already checked transactions."""
        block = self._blocks.get(block_hash)
        if block is not None and block.encoded == raw:
            return block
        return Block.decode(raw, known=self.mempool.get)

    def _commit(self, block: Block, certificate: Any, *, background: bool = False) -> None:
        started = time.perf_counter()
        result = self.engine.commit(block, certificate, background=background)
        hashes = [tx.hash for tx in block.txs]
        # At once, before anything else runs: the engine reads "the mempool holds it" as
        # "not committed" (Engine.is_prechecked), so the mempool must never hold a
        # committed hash, even for a step.
        self.mempool.remove(hashes)
        if result.executed:
            self.diffs.remember(block.height, result.state_writes, result.receipts)
        if not background:
            # The block is on disk: the WAL now holds only what the core buffered for the
            # next height (consensus.wal.wal_after_commit). A crash between the commit and
            # this reset leaves the committed height's records, which the next start skips
            # (_load_wal); one during it loses only peers' messages, which they re-gossip.
            self._reset_wal(wal_after_commit(self.core) if self.core.height == block.height
                            else [])
        elif self.core.height < block.height:
            # A synced block's batch is still being written (store thread). The core's
            # height is below it, so its block is on disk already (commit_block waited for
            # the write before this one): its records can go. The core's own height keeps
            # its records, its lock among them, until that block is written; the sync's
            # end resets the WAL for the fresh core (_apply_sync_answer).
            self._reset_wal([])
        self._cancel_timers(block.height)
        now = time.monotonic()
        self.metrics.inc("jangbu_blocks_committed_total")
        self.metrics.inc("jangbu_txs_committed_total", len(block.txs))
        self.metrics.histogram("jangbu_commit_seconds").observe(time.perf_counter() - started)
        self.metrics.histogram("jangbu_block_interval_seconds").observe(
            now - self._last_commit_at)
        self._last_commit_at = now
        self._last_progress = now
        latency = self.metrics.histogram(
            "jangbu_tx_commit_latency_seconds",
            "from admission through this node's API to commit")
        # A receipt is read only for a client waiting on it: a synced block's receipts stay
        # bytes otherwise (node.execution.EncodedReceipts).
        for index, tx_hash in enumerate(hashes):
            submitted = self._submitted_at.pop(tx_hash, None)
            if submitted is not None:
                latency.observe(now - submitted)
            for fut in self._waiters.pop(tx_hash, []):
                if not fut.done():
                    fut.set_result(Committed(block.height, index, result.receipts[index],
                                             block.hash))
        self.bus.publish_block(block.height, block.header.time_ms, hashes, result.receipts)
        for listener in self.commit_listeners:
            listener(block, result)
        log.info("committed height %d (%d txs) %s", block.height, len(block.txs),
                 block.hash.hex()[:16])
        self._consider_start()

    def _cancel_timers(self, committed: int) -> None:
        """Cancel the timeouts of committed heights: each would otherwise wake the loop
        later only to be dropped (up to three per height on the normal path)."""
        live = []
        for height, handle in self._timers:
            if height <= committed:
                handle.cancel()
            else:
                live.append((height, handle))
        self._timers = live

    def _consider_start(self) -> None:
        """Start the next height now if there is work, else arm the empty-block timer.

        With work waiting, block pacing (``min_block_interval_ms``) may hold the start back
        until that long after the previous height started here: the timer is armed (or
        brought forward from a later empty-block deadline) and the height starts when it
        fires. A full block waiting (``max_block_txs`` or ``max_block_bytes``) starts at
        once: waiting longer could not make the block any larger. A consensus message of
        the next height starts it at once too (:meth:`_on_consensus_message`, or buffered
        by the core while we were committing), so a validator that paces later than the
        proposer still joins its proposal as soon as it arrives.
        """
        next_height = self.store.height + 1
        if self.started_height >= next_height or self.syncing or self._stopping:
            return
        params = self.genesis.params
        pending = len(self.mempool)
        if pending > 0:
            pace = params.min_block_interval_ms
            if (pace <= 0 or pending >= params.max_block_txs
                    or self.mempool.size_bytes >= params.max_block_bytes):
                self._start_height(next_height)
                return
            deadline = self._last_start_at + pace / 1000
            if deadline <= time.monotonic() or any(
                    message.height == next_height for message in self.core.pending_messages()):
                # Also at once when a peer's message of that height arrived while we were
                # still committing the last one: the height is already under way.
                self._start_height(next_height)
            else:
                self._arm_idle_timer(deadline, next_height)
        elif params.empty_block_interval_ms > 0:  # an earlier deadline armed stays
            self._arm_idle_timer(time.monotonic() + params.empty_block_interval_ms / 1000,
                                 next_height)

    def _arm_idle_timer(self, deadline: float, height: int) -> None:
        """Arm the one start timer for ``deadline``, unless it already fires by then."""
        if self._idle_timer is not None:
            if self._idle_deadline <= deadline and self._idle_height == height:
                return
            self._idle_timer.cancel()  # later, or armed for a height since decided by sync
        self._idle_deadline = deadline
        self._idle_height = height
        self._idle_timer = asyncio.get_running_loop().call_later(
            max(0.0, deadline - time.monotonic()), self._fire_idle, height)

    def _fire_idle(self, height: int) -> None:
        self._idle_timer = None
        self.queue.put_nowait(_StartIfIdle(height))

    def _start_height(self, height: int) -> None:
        if self.started_height >= height or height != self.store.height + 1:
            return
        self.started_height = height
        self._last_start_at = time.monotonic()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self.queue.put_nowait(Start(height))  # type: ignore[arg-type]

    # --- block sync -------------------------------------------------------------------------

    def _sync_target(self) -> bytes | None:
        """A peer to fetch blocks from, if f+1 peers claim a height above ours.

        A status is an unverifiable claim: one Byzantine peer announcing a huge height must
        not keep us "syncing" (and so not starting heights) while it never answers. f+1
        claims include an honest one; of the peers claiming at least that height we ask the
        one with the lowest claim, so an exaggerating peer is never preferred.
        """
        claims = sorted(self.peer_heights.items(), key=lambda item: (-item[1], item[0]))
        needed = self.vset.skip_threshold
        if len(claims) < needed or claims[needed - 1][1] <= self.store.height:
            return None
        # Peers that failed a request (no answer in time, a bad block, nothing while
        # claiming blocks) go last, so one that claims the right height but never serves
        # it is not asked again and again.
        candidates = [peer for peer, _ in reversed(claims[:needed])]
        candidates += [peer for peer, claim in claims[needed:] if claim > self.store.height]
        fresh = [peer for peer in candidates if peer not in self._sync_unanswered]
        return (fresh or candidates)[0]

    def _request_blocks(self) -> None:
        target = self._sync_target()
        if target is None:
            # No f+1 status claims yet (the core saw a quorum commit a block it lacks):
            # any linked peer, one that failed a request last. Regression (review): this
            # always took the first, so a Byzantine validator that hid its proposals from
            # one node and never answered its requests was asked every time, 5 s each.
            connected = self.connected_peers()
            fresh = [peer for peer in connected if peer not in self._sync_unanswered]
            if not fresh:  # every one failed once (a hiccup): start the rotation again
                self._sync_unanswered.difference_update(connected)
                fresh = connected
            ordered = fresh
            target = ordered[0] if ordered else None
        if target is not None:
            self._begin_sync(target)

    def _begin_sync(self, peer: bytes) -> None:
        if self.syncing and time.monotonic() - self._sync_requested_at < 5:
            return
        self._ask_blocks(peer, self.store.height + 1)

    def _ask_blocks(self, peer: bytes, start: int) -> None:
        """Ask ``peer`` for blocks from ``start``: the request the sync now waits on.

        Paced to the peer's serving budget (the one its status advertises, else
        ``LEGACY_SERVE_BUDGET``) kept here as the peer keeps it, with a margin: a peer drops
        requests beyond it without an answer, and a catch-up of small blocks asks faster
        than that.
        """
        self.syncing = True
        self._sync_peer = peer
        self._sync_expect = (peer, start)
        self._sync_requested_at = time.monotonic()
        if self._ask_timer is not None:
            self._ask_timer.cancel()
            self._ask_timer = None
        wait = self._take_ask_token(peer)
        if wait <= 0:
            self._send_ask(peer, start)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): send now
            self._send_ask(peer, start)
            return
        self._ask_timer = loop.call_later(wait, self._send_ask, peer, start)

    def _send_ask(self, peer: bytes, start: int) -> None:
        self._ask_timer = None
        if self._sync_expect == (peer, start) and not self._stopping:
            self._sync_requested_at = time.monotonic()
            self.send(peer, self._ask_message(start))

    @staticmethod
    def _ask_message(start: int) -> dict[str, Any]:
        return {"t": "get_blocks", "from": start, "diffs": True}

    def _retry_unanswered_sync(self, now: float) -> None:
        """Give up on a sync request unanswered for 5 s and ask another peer.

        Why a fixed deadline from the request: a peer that claims blocks and never serves
        them must not hold the node in sync mode, whatever else it does (relinking
        included, see ``on_peer_connected``).
        """
        if not self.syncing or now - self._sync_requested_at <= 5:
            return
        self.syncing = False  # the peer did not answer; try again, elsewhere
        self._sync_expect = None
        if self._sync_peer is not None:
            self._sync_unanswered.add(self._sync_peer)
        target = self._sync_target()
        if target is not None:
            self._begin_sync(target)
        else:
            self._consider_start()

    def _take_ask_token(self, peer: bytes) -> float:
        """Spend one of ``peer``'s serving tokens; the seconds to wait first (0: none)."""
        served_rate, served_burst = self._peer_serve.get(peer, LEGACY_SERVE_BUDGET)
        # Two tokens short of the peer's burst (our clock and its clock start the bucket
        # at different moments), but never below one: with a burst of one or two, asking
        # only at the paced rate is the safe pace.
        rate, burst = 0.8 * served_rate, max(1, served_burst - 2)
        now = time.monotonic()
        # Owing at most two tokens: requests are one at a time, and a run of superseded
        # ones must not push the next past the 5 s retry.
        tokens = max(-2.0, refilled(self._ask_budget, peer, now, rate, burst) - 1)
        self._ask_budget[peer] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / rate

    def _apply_sync_blocks(self, event: _SyncBlocks) -> None:
        answer = self._receive_sync_blocks(event)
        if answer is not None:
            self._apply_sync_answer(answer)

    def _receive_sync_blocks(self, event: _SyncBlocks) -> _SyncAnswer | None:
        """The first half of taking a sync answer: decode it and, if it is the awaited
        one, ask for the next batch (:meth:`_request_ahead`). None if nothing in it can
        be applied. The driver's loop lets the event loop turn once before the second
        half (:meth:`_apply_sync_answer`), so that the request is on the wire while this
        batch is applied."""
        blocks = self._decode_sync_items(event)
        if blocks is None:
            # It starts past our next height (asked ahead of a batch that then failed a
            # check, or never asked): nothing in it can be applied.
            self.metrics.inc("jangbu_sync_ignored_total")
            return None
        expect = self._sync_expect
        answers = (expect is not None and expect[0] == event.sender
                   and (not blocks or blocks[0][0].height == expect[1]))
        ahead = self._request_ahead(blocks, event.sender) if answers else None
        return _SyncAnswer(event, blocks, answers, ahead)

    def _apply_sync_answer(self, answer: _SyncAnswer) -> None:
        event, blocks, answers, ahead = answer.event, answer.blocks, answer.answers, answer.ahead
        applied = 0
        refused = len(blocks) < len(event.items)  # a malformed item
        for block, cert, diff in blocks:
            if block.height <= self.store.height:
                continue
            if block.height != self.store.height + 1:
                break
            try:
                # Either way the engine verifies the certificate itself.
                if not (diff and self._apply_diff(block, cert, diff[0], event.sender)):
                    self.engine.validate_block(block, certificate=cert)
            except (BlockError, InvalidMessage, ValueError, TypeError) as exc:
                self._count_rejected_sync(event.sender, exc)
                refused = True
                break
            # Its batch is written while the next block is decoded and checked: a synced
            # block is final already, and every use of the store waits for the write.
            self._commit(block, cert, background=True)
            applied += 1
        self.metrics.inc("jangbu_sync_blocks_total", applied)
        claims_more = self.peer_heights.get(event.sender, 0) > self.store.height
        if answers and (refused or (not blocks and claims_more)):
            # It sent what no honest peer sends, or nothing while claiming blocks: the next
            # sync asks another peer first (_sync_target).
            self._sync_unanswered.add(event.sender)
        elif answers and applied:
            self._sync_unanswered.discard(event.sender)
        if not answers and not applied:
            # Nothing asked for and nothing new (a late duplicate, or junk): no state to
            # change. It used to fall through to the end of a sync and, between a commit
            # and the next start, replace the core: one empty unasked ``blocks`` message
            # zeroed the consensus refusal counters and dropped the buffered next-height
            # messages (review).
            self.metrics.inc("jangbu_sync_ignored_total")
            return
        if not answers and self.syncing:
            return  # the request that is out (or the retry after 5 s) carries the sync on
        behind = self._sync_target() is not None
        # The awaited answer may hold only blocks that arrived meanwhile another way (an
        # unasked answer): still progress, so the sync goes on from our new height.
        known = answers and bool(blocks) and blocks[-1][0].height <= self.store.height
        if behind and (applied or known):
            if ahead != self.store.height + 1:  # none asked ahead, or this batch fell short
                peer = (self._sync_target() or event.sender) if refused else event.sender
                self._ask_blocks(peer, self.store.height + 1)
            return
        self.syncing = False
        self._sync_expect = None
        # Caught up: the last block is on disk before this node votes again (and a write
        # that failed stops the node here, in the consensus loop).
        self.store.settle()
        if applied or self.core.height <= self.store.height:
            # Join the live height with a fresh core: the old one was for a past height.
            # Every synced block is on disk now (settled above), the old core's height
            # among them: its records go with it.
            self._reset_wal([])
            self._replace_core()
            self.started_height = self.store.height
        self._consider_start()  # heights held back while we were syncing may start now

    def _count_rejected_sync(self, sender: bytes, exc: Exception) -> None:
        """Count a refused sync item; log one line per peer per ``SYNC_REJECT_LOG_S``
        (review: 20,000 junk ``blocks`` messages from one peer wrote 20,000 lines)."""
        self.metrics.inc("jangbu_sync_rejected_total")
        muted = self._sync_reject_lines.allow(sender)
        if muted is None:
            return
        more = f" ({muted} more since the last line)" if muted else ""
        log.warning("rejected synced block from %s: %s%s", sender.hex()[:12], exc, more)

    def _decode_sync_items(self, event: _SyncBlocks) -> list[tuple[Block, Any, list[Any]]] | None:
        """The blocks of a sync answer, up to the first malformed item (counted, logged);
        None, with only the first block decoded, if it starts past our next height."""
        blocks: list[tuple[Block, Any, list[Any]]] = []
        for item in event.items:
            try:
                raw, cert, *diff = item
                if len(diff) > 1:
                    raise ValueError("a sync item has two or three parts")
                block = Block.decode(raw, synced=True)
            except (BlockError, InvalidMessage, ValueError, TypeError) as exc:
                self._count_rejected_sync(event.sender, exc)
                break
            if not blocks and block.height > self.store.height + 1:
                return None
            blocks.append((block, cert, diff))
        return blocks

    def _request_ahead(self, blocks: list[tuple[Block, Any, list[Any]]],
                       sender: bytes) -> int | None:
        """Ask ``sender`` for the batch after this one before applying this one.

        Why: the peer then reads, encodes and sends the next batch while this node
        applies the current one, instead of both taking turns (one request in flight was
        the catch-up's pace). Only for the answer the sync waits on, and only when the
        peer's last status claims more blocks; returns the height asked from (None: none).
        """
        if not blocks:
            return None
        last = blocks[-1][0].height
        if last <= self.store.height or self.peer_heights.get(sender, 0) <= last:
            return None
        self._ask_blocks(sender, last + 1)
        self.metrics.inc("jangbu_sync_requests_ahead_total")
        return last + 1

    def _apply_diff(self, block: Block, cert: Any, diff: Any, sender: bytes) -> bool:
        """Take a certified block's result from the diff a peer sent with it (no
        execution); False, counted and logged, if the diff does not check out, and the
        block is then executed as usual: the block itself is certified, only the diff is
        the peer's word, and it must give the header's roots (node/recent_diffs.py)."""
        try:
            receipts, writes = diff_from_wire(diff)
            self.engine.apply_certified_diff(block, cert, receipts, writes)
        except (BlockError, ValueError, TypeError) as exc:
            self.metrics.inc("jangbu_sync_diffs_rejected_total")
            log.warning("ignored the diff of block %d from %s: %s", block.height,
                        sender.hex()[:12], exc)
            return False
        self.metrics.inc("jangbu_sync_diffs_applied_total")
        return True

    # --- evidence ---------------------------------------------------------------------------

    def _record_evidence(self, a: Vote | Proposal, b: Vote | Proposal) -> None:
        """Keep two conflicting signed messages of one validator: ``e/`` + height (8 bytes)
        + validator key + kind (0 proposal, 1 prevote, 2 precommit) + round (4 bytes).

        Keyed by kind and round since a validator can equivocate in several rounds and
        steps of one height: the key was height + validator, so a conflicting precommit
        replaced the record of the prevotes before it (review). A proposal is kept as what
        its proposer signed (``sign_body`` and signature), without its block: that is what
        proves the conflict, and two blocks per round would be megabytes of a Byzantine
        validator's choosing.

        At most ``EVIDENCE_PER_VALIDATOR_HEIGHT`` records per validator and height: one
        validator can sign conflicting pairs for every round up to ``max_round_ahead`` ahead,
        in both steps (130 a height, kept for good; review), and a few pairs prove as much
        as all of them. Every conflict is still counted."""
        self.metrics.inc("jangbu_evidence_total")
        signer = a.proposer if isinstance(a, Proposal) else a.validator
        height, recorded = self._evidence_recorded
        if height != a.height:
            recorded = Counter()
            self._evidence_recorded = (a.height, recorded)
        recorded[signer] += 1
        if recorded[signer] > EVIDENCE_PER_VALIDATOR_HEIGHT:
            return
        kind = 0 if isinstance(a, Proposal) else int(a.vote_type)
        key = (EVIDENCE_PREFIX + a.height.to_bytes(8, "big") + signer + bytes([kind])
               + a.round.to_bytes(4, "big"))
        self.store.put_record(key, canonical.encode([evidence_obj(a), evidence_obj(b)]),
                              sync=False)
        what = "proposals" if kind == 0 else "votes"
        log.warning("evidence: validator %s signed conflicting %s at height %d round %d",
                    signer.hex()[:16], what, a.height, a.round)

    # --- housekeeping -----------------------------------------------------------------------

    def _arm_gossip_flush(self) -> None:
        """Flush the transaction gossip once the current input is handled (a whole HTTP
        batch goes in one message), but no sooner than ``TX_GOSSIP_INTERVAL_S`` after the
        last flush, so a busy node still sends a few large messages, not many small ones.
        Without a running loop (a synchronous caller) the housekeeping task flushes."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._gossip_flush = loop.call_at(
            max(loop.time(), self._last_gossip_flush + TX_GOSSIP_INTERVAL_S),
            self._flush_gossip)

    def _flush_gossip_now(self) -> None:
        """Send the pending transaction gossip at once, whatever the flush interval."""
        if self._gossip_flush is not None:
            self._gossip_flush.cancel()
        self._gossip_flush = None
        while self._gossip_txs:
            self._send_gossip_batch()

    def _send_gossip_batch(self) -> None:
        """Broadcast the oldest pending transactions in one message: up to
        ``TX_GOSSIP_BATCH`` of them and ``TX_GOSSIP_MAX_BYTES``, at least one."""
        pending = self._gossip_txs
        if not pending:
            return
        count, size = 0, 0
        for raw in pending[:TX_GOSSIP_BATCH]:
            size += len(raw) + TX_GOSSIP_ITEM_OVERHEAD
            if size > TX_GOSSIP_MAX_BYTES and count:
                break
            count += 1
        batch, self._gossip_txs = pending[:count], pending[count:]
        self.broadcast({"t": "txs", "txs": batch})

    def _flush_gossip(self) -> None:
        self._gossip_flush = None
        if self._gossip_txs:
            self._last_gossip_flush = asyncio.get_running_loop().time()
            self._send_gossip_batch()
        if self._gossip_txs:
            self._arm_gossip_flush()

    async def _housekeeping(self) -> None:
        last_status = 0.0
        last_regossip = last_tx_regossip = 0.0
        while True:
            await asyncio.sleep(HOUSEKEEPING_TICK_S)
            if self._gossip_txs and self._gossip_flush is None:
                self._flush_gossip()
            now = time.monotonic()
            if now - last_status >= STATUS_INTERVAL_S:
                last_status = now
                self.broadcast(self._status())
                self._retry_unanswered_sync(now)
            # Re-send our votes and the proposals we hold while a height makes no progress:
            # liveness depends on it when messages were dropped or a peer reconnected.
            stalled = now - self._last_progress > REGOSSIP_AFTER_S
            if (stalled and now - last_regossip >= REGOSSIP_AFTER_S
                    and self.started_height > self.store.height):
                last_regossip = now
                for message in self.core.gossip_messages():
                    self.broadcast({"t": "c", "m": message_to_obj(message)})
            if (now - self._last_progress > TX_REGOSSIP_AFTER_S
                    and now - last_tx_regossip >= TX_REGOSSIP_AFTER_S
                    and self.started_height > self.store.height and len(self.mempool)):
                last_tx_regossip = now
                pending = self.mempool.reap(TX_REGOSSIP_COUNT, TX_REGOSSIP_BYTES)
                self.broadcast({"t": "txs", "txs": [tx.encoded for tx in pending]})

    # --- waiting for commits ----------------------------------------------------------------

    def wait_for(self, tx_hash: bytes) -> asyncio.Future[Committed]:
        fut: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_hash, []).append(fut)
        return fut

    def forget_waiter(self, tx_hash: bytes, fut: asyncio.Future[Committed]) -> None:
        waiters = self._waiters.get(tx_hash)
        if waiters and fut in waiters:
            waiters.remove(fut)
            if not waiters:
                del self._waiters[tx_hash]

    @property
    def round(self) -> int:
        return int(self.core.round)


__all__ = ["Committed", "ConsensusDriver", "Proposal"]
