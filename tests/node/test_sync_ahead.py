"""Block sync asks for the next batch before applying the current one, and a node tells a
newly linked peer its height at once.

With one request in flight, the serving peer and the syncing node took turns: the peer
read, encoded and sent a batch while the syncing node waited, then the other way round.
Now the syncing node asks for the batch after the one it received, when the peer's status
claims more blocks, and only then applies. Real store, engine and driver (not started: the
sync answers are handed to it as the transport would), real certificates.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

import node.driver as driver_module
from node.driver import ConsensusDriver, _SyncBlocks, sync_batch
from node.engine import SignatureCache
from node.events import EventBus
from node.execution import committed_member_lookup
from node.mempool import Mempool
from node.metrics import Metrics
from node.signer_state import SignerStateFile

from ledger_support import T0, add_member_tx, certify, make_genesis, open_engine, seed_key

PEER = seed_key("v0").verify_key.encode()


def build_source(path: str, blocks: int):
    genesis = make_genesis()
    store, engine = open_engine(path, genesis)
    validator, admin = seed_key("v0"), seed_key("admin")
    last_commit = None
    for h in range(1, blocks + 1):
        block = engine.build_block(proposer=PEER, time_ms=T0 + h * 1000,
                                   txs=[add_member_tx(admin, f"m{h}", h)],
                                   last_commit=last_commit)
        cert = certify(h, block.hash, [validator])
        engine.commit(block, cert)
        last_commit = cert
    return store


class Syncing:
    """A fresh node whose driver records what it sends, and the store height at the time."""

    def __init__(self, tmp_path: Any) -> None:
        genesis = make_genesis()
        self.store, engine = open_engine(str(tmp_path / "target"), genesis)
        mempool = Mempool(chain_id=genesis.chain_id, contracts=engine.contracts,
                          is_committed=self.store.has_tx,
                          lookup_member=committed_member_lookup(self.store.state,
                                                                lambda: self.store.height),
                          sig_cache=SignatureCache())
        self.metrics = Metrics()
        self.driver = ConsensusDriver(
            genesis=genesis, node_key=seed_key("observer"), store=self.store, engine=engine,
            mempool=mempool, bus=EventBus(), metrics=self.metrics,
            guard_file=SignerStateFile(tmp_path / "signer-state.bin"))
        self.sent: list[tuple[int, Any]] = []  # (our height when sent, message)
        self.driver.send = lambda peer, msg: self.sent.append((self.store.height, msg))
        self.driver.broadcast = lambda msg: None

    def receive(self, items: list[Any]) -> None:
        self.driver._handle(_SyncBlocks(PEER, items))

    def requests(self) -> list[tuple[int, int]]:
        return [(height, msg["from"]) for height, msg in self.sent if msg["t"] == "get_blocks"]


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(driver_module, "SYNC_BATCH_BLOCKS", 2)


def test_the_next_batch_is_asked_for_before_this_one_is_applied(tmp_path, small_batches):
    source = build_source(str(tmp_path / "source"), 6)
    node = Syncing(tmp_path)
    try:
        node.driver.peer_heights[PEER] = 6
        node.driver._begin_sync(PEER)
        assert node.requests() == [(0, 1)]
        node.receive(sync_batch(source, 1))
        # Asked for 3.. while still at height 0, and not asked again after applying 1-2.
        assert node.requests() == [(0, 1), (0, 3)]
        assert node.store.height == 2 and node.driver.syncing
        node.receive(sync_batch(source, 3))
        assert node.requests() == [(0, 1), (0, 3), (2, 5)]
        node.receive(sync_batch(source, 5))  # the peer claims nothing past 6: no request
        assert node.requests() == [(0, 1), (0, 3), (2, 5)]
        assert node.store.height == 6 and not node.driver.syncing
        assert node.metrics.counters["jangbu_sync_requests_ahead_total"] == 2
        assert node.store.get_block_bytes(6) == source.get_block_bytes(6)
    finally:
        node.store.close()
        source.close()


@pytest.mark.asyncio
async def test_the_request_ahead_gets_an_event_loop_turn_before_the_batch_is_applied(
        tmp_path, small_batches):
    """send() only queues a message for the link's writer task, which needs the event
    loop; applying a batch holds the loop for tens of ms. The driver's loop therefore turns
    the event loop once between asking ahead and applying: before, the request went out
    after the apply and the next batch came a round trip late (measured: ~13 ms of every
    ~40 ms full block of a catch-up)."""
    source = build_source(str(tmp_path / "source"), 4)
    node = Syncing(tmp_path)
    loop = asyncio.get_running_loop()
    order: list[str] = []

    def send(peer: bytes, msg: Any) -> None:
        node.sent.append((node.store.height, msg))
        order.append(f"asked {msg['from']}")
        # What a link's writer task gets when send() wakes it: a turn of the event loop.
        loop.call_soon(order.append, f"writer ran for {msg['from']}")

    node.driver.send = send
    committing = node.driver._commit

    def commit(block: Any, certificate: Any, **kwargs: Any) -> None:
        order.append(f"applying {block.height}")
        committing(block, certificate, **kwargs)

    node.driver._commit = commit
    runner = asyncio.create_task(node.driver._run())
    try:
        node.driver.peer_heights[PEER] = 4
        node.driver._begin_sync(PEER)
        node.driver.queue.put_nowait(_SyncBlocks(PEER, sync_batch(source, 1)))
        for _ in range(200):
            await asyncio.sleep(0.005)
            if node.store.height == 2:
                break
        assert order.index("asked 3") < order.index("writer ran for 3") < order.index(
            "applying 1")
        assert node.store.height == 2 and node.requests() == [(0, 1), (0, 3)]
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        node.store.close()
        source.close()


@pytest.mark.asyncio
async def test_a_sync_answer_cancelled_at_that_turn_leaves_the_store_as_it_was(
        tmp_path, small_batches):
    """Shutdown cancels the driver's loop; cancelled at the turn between asking ahead and
    applying, the answer is dropped whole (the request out is harmless: its answer is
    never applied) and nothing of it is committed."""
    source = build_source(str(tmp_path / "source"), 4)
    node = Syncing(tmp_path)
    loop = asyncio.get_running_loop()
    runner: asyncio.Task[None] | None = None

    def send(peer: bytes, msg: Any) -> None:
        node.sent.append((node.store.height, msg))
        if msg["from"] == 3 and runner is not None:
            loop.call_soon(runner.cancel)  # lands while the loop awaits its turn

    node.driver.send = send
    node.driver.peer_heights[PEER] = 4
    node.driver._begin_sync(PEER)
    runner = asyncio.create_task(node.driver._run())
    try:
        node.driver.queue.put_nowait(_SyncBlocks(PEER, sync_batch(source, 1)))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(runner, 5)
        assert node.requests() == [(0, 1), (0, 3)]
        assert node.store.height == 0 and node.driver.fatal is None
    finally:
        node.store.close()
        source.close()


def test_a_batch_that_falls_short_is_asked_again_and_the_early_answer_ignored(
        tmp_path, small_batches):
    source = build_source(str(tmp_path / "source"), 6)
    node = Syncing(tmp_path)
    try:
        node.driver.peer_heights[PEER] = 6
        node.driver._begin_sync(PEER)
        items = sync_batch(source, 1)
        items[1][1] = items[0][1]  # block 2 with block 1's certificate: refused
        node.receive(items)
        assert node.store.height == 1
        assert node.metrics.counters["jangbu_sync_rejected_total"] == 1
        # The request made ahead (3..) is followed by one for the block that failed, and
        # the peer goes last when a sync next picks a peer.
        assert node.requests() == [(0, 1), (0, 3), (1, 2)]
        assert PEER in node.driver._sync_unanswered
        node.receive(sync_batch(source, 3))  # the answer asked ahead: nothing fits yet
        assert node.store.height == 1 and node.driver.syncing
        assert node.metrics.counters["jangbu_sync_ignored_total"] == 1
        assert node.requests() == [(0, 1), (0, 3), (1, 2)]
        node.receive(sync_batch(source, 2))
        assert node.store.height == 3
        assert node.requests()[-1] == (1, 4)
        assert PEER not in node.driver._sync_unanswered  # it answered well since
    finally:
        node.store.close()
        source.close()


def test_answers_the_sync_is_not_waiting_on_neither_end_it_nor_ask_for_more(
        tmp_path, small_batches):
    """Review finding: a late duplicate (or any unasked answer) once ended the sync while
    the request made ahead was still out, and every status message then started a second
    chain of requests next to it."""
    source = build_source(str(tmp_path / "source"), 6)
    node = Syncing(tmp_path)
    other = seed_key("v9").verify_key.encode()
    try:
        node.driver.peer_heights[PEER] = 6
        node.driver._begin_sync(PEER)
        node.receive(sync_batch(source, 1))
        assert node.requests() == [(0, 1), (0, 3)]
        node.receive(sync_batch(source, 1))  # a late duplicate: nothing new in it
        node.driver._handle(_SyncBlocks(other, []))  # an empty answer nobody asked for
        assert node.driver.syncing and node.driver._sync_expect == (PEER, 3)
        # Certified blocks from an unasked answer are kept, and ask for nothing.
        node.driver._handle(_SyncBlocks(other, sync_batch(source, 3)))
        assert node.store.height == 4 and node.driver.syncing
        assert node.requests() == [(0, 1), (0, 3)]
        node.driver._on_status(PEER, 6)  # a status while syncing starts no second request
        assert node.requests() == [(0, 1), (0, 3)]
        node.receive(sync_batch(source, 3))  # the awaited answer: 3-4 known, nothing to ask
        assert node.requests() == [(0, 1), (0, 3), (4, 5)]
        node.receive(sync_batch(source, 5))
        assert node.store.height == 6 and not node.driver.syncing
    finally:
        node.store.close()
        source.close()


def test_requests_are_paced_to_the_peers_serving_budget(tmp_path):
    """Review finding: a catch-up of small blocks asked faster than a peer serves (10
    answers/s, burst 10); the peer dropped the excess and the sync stalled for the 5 s
    retry. Requests past the budget now wait for it."""
    node = Syncing(tmp_path)
    try:
        waits = [node.driver._take_ask_token(PEER) for _ in range(10)]
        assert waits[:8] == [0.0] * 8  # the burst, less a margin
        assert 0 < waits[8] < waits[9] <= 0.3
        assert max(node.driver._take_ask_token(PEER) for _ in range(50)) <= 0.3  # bounded
    finally:
        node.store.close()


async def test_a_paced_request_is_sent_when_its_turn_comes(tmp_path):
    node = Syncing(tmp_path)
    try:
        for _ in range(8):
            node.driver._take_ask_token(PEER)
        node.driver._ask_blocks(PEER, 7)
        assert node.requests() == [] and node.driver.syncing
        for _ in range(100):
            if node.requests():
                break
            await asyncio.sleep(0.01)
        assert node.requests() == [(0, 7)]
        node.driver._ask_blocks(PEER, 8)  # superseded before its turn: never sent
        node.driver._ask_blocks(PEER, 9)
        for _ in range(100):
            if len(node.requests()) > 1:
                break
            await asyncio.sleep(0.01)
        assert node.requests() == [(0, 7), (0, 9)]
    finally:
        await node.driver.stop()
        node.store.close()


def test_a_sync_peer_that_answers_nothing_while_claiming_blocks_is_asked_last(tmp_path):
    node = Syncing(tmp_path)
    other = seed_key("v9").verify_key.encode()
    try:
        node.driver.peer_heights.update({PEER: 6, other: 5})
        node.driver._begin_sync(PEER)
        node.receive([])
        assert not node.driver.syncing and PEER in node.driver._sync_unanswered
        assert node.driver._sync_target() == other
    finally:
        node.store.close()


def test_a_sync_peer_that_let_a_request_time_out_is_asked_last(tmp_path):
    """Not new, found in review: the same peer was chosen on every retry, so one claiming
    the right height and never answering held the node in sync mode."""
    node = Syncing(tmp_path)
    other = seed_key("v9").verify_key.encode()
    try:
        node.driver.peer_heights.update({PEER: 5, other: 6})
        assert node.driver._sync_target() == other
        node.driver._sync_unanswered.add(other)
        assert node.driver._sync_target() == PEER
        node.driver._sync_unanswered.add(PEER)  # every candidate failed: the usual order
        assert node.driver._sync_target() == other
    finally:
        node.store.close()


def test_a_newly_linked_peer_is_told_our_height_at_once(tmp_path):
    source = build_source(str(tmp_path / "source"), 2)
    node = Syncing(tmp_path)
    try:
        serve = [driver_module.SERVE_BLOCKS_RATE, driver_module.SERVE_BLOCKS_BURST]
        node.driver.on_peer_connected(PEER)
        assert node.sent == [(0, {"t": "status", "height": 0, "serve": serve})]
        node.driver.peer_heights[PEER] = 2
        node.receive(sync_batch(source, 1))
        node.driver.on_peer_connected(PEER)
        assert node.sent[-1] == (2, {"t": "status", "height": 2, "serve": serve})
    finally:
        node.store.close()
        source.close()


def test_a_new_link_to_the_peer_the_sync_waits_on_carries_the_request_again(tmp_path):
    """When a node restarts, it and a peer may dial each other at once and one link
    replaces the other; a sync request sent down the replaced link was lost and the
    catch-up waited for the 5 s retry. A new link to that peer now re-sends it."""
    source = build_source(str(tmp_path / "source"), 4)
    node = Syncing(tmp_path)
    other = seed_key("v1").verify_key.encode()
    try:
        node.driver.peer_heights[PEER] = 4
        node.driver._begin_sync(PEER)
        assert node.requests() == [(0, 1)]
        node.driver.on_peer_connected(other)  # another peer's link: nothing asked of it
        assert node.requests() == [(0, 1)]
        node.driver.on_peer_connected(PEER)  # the link replaced: asked again on the new one
        assert node.requests() == [(0, 1), (0, 1)]
        node.receive(sync_batch(source, 1))
        node.receive(sync_batch(source, 1))  # the first link's answer arrives after all
        assert node.store.height == 4 and not node.driver.syncing
        node.driver.on_peer_connected(PEER)  # not syncing: only our status
        assert node.requests() == [(0, 1), (0, 1)]
    finally:
        node.store.close()
        source.close()


def test_a_sync_peer_that_relinks_but_never_answers_cannot_hold_the_sync(
        tmp_path, monkeypatch):
    """Found in review: the re-send on a new link restarted the 5 s deadline, so a peer
    that never answered but relinked every few seconds kept the node syncing with it
    forever. The re-send now leaves the deadline where the request set it."""
    node = Syncing(tmp_path)
    clock = [1000.0]
    monkeypatch.setattr(driver_module.time, "monotonic", lambda: clock[0])
    other = seed_key("v9").verify_key.encode()
    try:
        node.driver.peer_heights.update({PEER: 6, other: 5})
        node.driver._begin_sync(PEER)
        for _ in range(3):  # relinks at 2, 4 and 6 s: each carries the request again
            clock[0] += 2
            node.driver.on_peer_connected(PEER)
            node.driver._retry_unanswered_sync(clock[0])
        assert PEER in node.driver._sync_unanswered
        assert node.driver._sync_expect == (other, 1)  # the sync moved on to the other
    finally:
        node.store.close()


def test_a_committed_hash_leaves_the_mempool_before_anything_else_runs(tmp_path):
    """The engine reads "the mempool holds it" as "not committed" and skips the replay
    lookup for it, so the mempool must drop a block's hashes first thing after the block
    commits, before the diff window, the WAL or any listener sees the new height."""
    source = build_source(str(tmp_path / "source"), 1)
    node = Syncing(tmp_path)
    pending = add_member_tx(seed_key("admin"), "m1", 1)  # the very transaction of block 1
    node.driver.engine.is_prechecked = node.driver.mempool.__contains__  # as node/app.py
    node.driver.mempool.add(pending)
    seen: list[bool] = []
    remember = node.driver.diffs.remember

    def remember_and_look(height: int, *args: Any) -> None:
        seen.append(node.driver.engine._is_committed(pending.hash))
        remember(height, *args)

    node.driver.diffs.remember = remember_and_look  # type: ignore[method-assign]
    try:
        node.driver.peer_heights[PEER] = 1
        node.driver._begin_sync(PEER)
        node.receive(sync_batch(source, 1))
        assert node.store.height == 1
        assert seen == [True] and pending.hash not in node.driver.mempool
    finally:
        node.store.close()
        source.close()


def with_block_1s_certificate(items: list[Any]) -> None:
    items[1][1] = items[0][1]


def with_a_swapped_signature(items: list[Any]) -> None:
    """Regression: the certificate and roots cover transaction bodies, not signatures, and
    a synced block whose signature a peer had swapped for garbage was stored."""
    from dataclasses import replace

    from node.block import Block

    genuine = Block.decode(items[1][0])
    forged = replace(genuine.txs[0], sig=bytes(64))
    items[1][0] = Block(genuine.header, (forged,), genuine.last_commit).encoded


@pytest.mark.parametrize("spoil", [with_block_1s_certificate, with_a_swapped_signature])
def test_after_a_bad_block_the_sync_goes_on_with_another_peer(tmp_path, small_batches, spoil):
    source = build_source(str(tmp_path / "source"), 6)
    node = Syncing(tmp_path)
    other = seed_key("v9").verify_key.encode()
    try:
        node.driver.peer_heights.update({PEER: 6, other: 6})
        node.driver._ask_blocks(PEER, 1)
        items = sync_batch(source, 1)
        spoil(items)  # block 2 spoiled: refused, counted
        node.receive(items)
        assert node.store.height == 1
        assert node.metrics.counters["jangbu_sync_rejected_total"] == 1
        assert node.driver._sync_expect == (other, 2)
        node.driver._handle(_SyncBlocks(other, sync_batch(source, 2)))
        assert node.store.height == 3 and node.driver._sync_expect == (other, 4)
        assert node.store.get_block_bytes(2) == source.get_block_bytes(2)
    finally:
        node.store.close()
        source.close()


def test_the_serving_budget_and_the_pacing_follow_one_rule(tmp_path, monkeypatch):
    """A serving node answers a peer SERVE_BLOCKS_BURST times at once, then
    SERVE_BLOCKS_RATE a second; a syncing node paces itself by the peer's bucket (the one
    its status advertises, else the one older nodes serve), with a margin, so it is never
    refused, whichever version the peer runs."""
    node = Syncing(tmp_path)
    clock = [1000.0]
    monkeypatch.setattr(driver_module.time, "monotonic", lambda: clock[0])
    rate, burst = driver_module.SERVE_BLOCKS_RATE, driver_module.SERVE_BLOCKS_BURST
    try:
        waits = [node.driver._take_serve_token(PEER) for _ in range(burst + 2)]
        assert waits[:burst] == [0.0] * burst
        assert all(0 < w <= 1.0 / rate for w in waits[burst:])  # a refusal spends nothing
        clock[0] += 1.01 / rate  # one token back (and a hair: float time)
        assert node.driver._take_serve_token(PEER) == 0.0
        assert node.driver._take_serve_token(PEER) > 0

        def paced(peer: bytes, server_budget: tuple[int, int], asks: int) -> float:
            """Seconds the syncing side takes for ``asks`` requests; a server keeping
            ``server_budget`` must have a token for each when it arrives."""
            server: dict[bytes, tuple[float, float]] = {}
            started = clock[0]
            for _ in range(asks):
                clock[0] += node.driver._take_ask_token(peer)
                tokens = driver_module.refilled(server, peer, clock[0], *server_budget)
                assert tokens >= 1
                server[peer] = (tokens - 1, clock[0])
            return clock[0] - started

        # A peer that advertises nothing (an older node) is paced to the old budget.
        legacy = paced(PEER, driver_module.LEGACY_SERVE_BUDGET, 80)
        # One that advertises ours is asked about twice as fast, and never refuses.
        other = b"\x09" * 32
        node.driver._on_status(other, 0, [rate, burst])  # height 0: starts no sync of its own
        current = paced(other, (rate, burst), 80)
        assert current < 0.6 * legacy
        # Small advertised bursts (1 and 2 once left the margin at zero or below): still
        # never refused, and still about the advertised rate.
        for n, budget in enumerate(((1, 1), (5, 1), (5, 2), (3, 3), (1000, 1000))):
            peer = bytes([0x10 + n]) * 32
            node.driver._on_status(peer, 0, list(budget))
            took = paced(peer, budget, 40)
            assert took <= 40 / (0.8 * budget[0]) + 0.01
    finally:
        node.store.close()


def test_a_status_with_an_unknown_serve_budget_still_counts_its_height(tmp_path):
    """A budget we cannot read (a later version's shape, or a bad one) is paced like an
    older node's; the height in the same status must still count, or a newer peer could
    never be synced from."""
    node = Syncing(tmp_path)
    try:
        node.driver._on_status(PEER, 4, [20, 20])
        assert node.driver._peer_serve[PEER] == (20, 20)
        for n, bad in enumerate(([0, 5], [5], [5, 5, 5], [5.0, 5], [True, 5], "5,5",
                                 [5, 10**6], {"rate": 5})):
            node.driver._on_status(PEER, 5 + n, bad)
            assert node.driver.peer_heights[PEER] == 5 + n
            assert PEER not in node.driver._peer_serve
        assert node.driver.metrics.counters["jangbu_p2p_unknown_serve_budget_total"] == 8
        node.driver._on_status(PEER, 20)  # an older node's status: no budget, still fine
        assert node.driver.peer_heights[PEER] == 20 and PEER not in node.driver._peer_serve
        node.driver._on_status(PEER, 21, [20, 20])
        assert node.driver._peer_serve[PEER] == (20, 20)
        node.driver._on_status(PEER, 22)  # the same peer, downgraded: paced as an old node again
        assert PEER not in node.driver._peer_serve
        with pytest.raises(ValueError):
            node.driver._on_status(PEER, -1, [20, 20])  # the height itself must be sound
    finally:
        node.store.close()


async def test_a_request_beyond_the_budget_waits_for_a_token_instead_of_being_dropped(
        tmp_path, monkeypatch):
    """Regression: a request beyond the serving budget was dropped, and the asking node
    waited out its 5 s retry. A syncing node paces itself to the budget, but a restarted
    one starts with a full bucket while the server's may still be drained. Now it waits
    for the next token; only a peer's newest waiting request is kept."""
    source = build_source(str(tmp_path / "source"), 4)
    server = Syncing(tmp_path)  # used as the serving side: its store gets the source's blocks
    monkeypatch.setattr(driver_module, "SERVE_BLOCKS_RATE", 50)
    # The bucket's clock moves only when the test moves it: on a loaded machine (CI, once)
    # real time refilled two tokens between the burst and the requests beyond it.
    clock = [1000.0]
    real_time = driver_module.time  # the event loop keeps the real clock
    monkeypatch.setattr(driver_module, "time", SimpleNamespace(
        monotonic=lambda: clock[0], perf_counter=real_time.perf_counter, time=real_time.time))
    try:
        server.driver._handle(_SyncBlocks(PEER, sync_batch(source, 1)))
        assert server.store.height == 4
        server.sent.clear()
        asker = b"\x07" * 32
        for _ in range(driver_module.SERVE_BLOCKS_BURST):
            server.driver._serve_blocks(asker, 1, True)
        assert len(server.sent) == driver_module.SERVE_BLOCKS_BURST
        server.driver._serve_blocks(asker, 2, True)  # over budget: waits...
        server.driver._serve_blocks(asker, 3, True)  # ...and is superseded by this one
        assert len(server.sent) == driver_module.SERVE_BLOCKS_BURST
        clock[0] += 2.5 / 50  # the bucket's time passes as the loop's does below
        await asyncio.sleep(2.5 / 50)
        late = server.sent[driver_module.SERVE_BLOCKS_BURST:]
        assert len(late) == 1 and late[0][1]["t"] == "blocks"
        assert late[0][1]["items"][0][0] == source.get_block_bytes(3)
        assert server.metrics.counters["jangbu_p2p_throttled_total"] == 2
        while server.driver._take_serve_token(asker) == 0.0:
            pass  # drained again
        server.driver._serve_blocks(asker, 1, True)  # one more waiting request...
        await server.driver.stop()  # ...is dropped with the node
        await asyncio.sleep(2.5 / 50)
        assert len(server.sent) == driver_module.SERVE_BLOCKS_BURST + 1
    finally:
        server.store.close()
        source.close()



@pytest.mark.asyncio
async def test_a_block_request_without_status_claims_skips_a_peer_that_failed(
        tmp_path: Any) -> None:
    """Review: with no f+1 status claims yet, a block request went to the first linked
    peer every time, so a Byzantine validator that hid its proposal from one node and never
    answered was asked again and again (5 s each); a peer that failed goes last."""
    from driver_chain import Chain

    chain = Chain(tmp_path)
    first, second = b"\x01" * 32, b"\x02" * 32
    chain.driver.connected_peers = lambda: [first, second]
    asked: list[bytes] = []
    chain.driver._begin_sync = asked.append  # type: ignore[method-assign]
    chain.driver._request_blocks()
    chain.driver._sync_unanswered.add(first)
    chain.driver._request_blocks()
    chain.driver._sync_unanswered.add(second)  # every linked peer failed once (a hiccup)
    chain.driver._request_blocks()
    assert asked == [first, second, first]
    assert not chain.driver._sync_unanswered  # the rotation starts again
    await chain.driver.stop()


@pytest.mark.asyncio
async def test_junk_sync_answers_are_counted_each_and_logged_once_per_interval(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Review: each junk ``blocks`` message from a peer was one warning line (20,000 junk
    messages, 20,000 lines); the metric still counts every one."""
    from driver_chain import Chain

    chain = Chain(tmp_path)
    peer = b"\x07" * 32
    caplog.set_level("WARNING", logger="jangbu.consensus")
    for _ in range(50):
        chain.driver._count_rejected_sync(peer, ValueError("malformed sync item"))
    lines = [r for r in caplog.records if "rejected synced block" in r.getMessage()]
    assert len(lines) == 1
    assert chain.driver.metrics.counters["jangbu_sync_rejected_total"] == 50
    await chain.driver.stop()
