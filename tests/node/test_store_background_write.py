"""Block sync has a block's batch written on a second thread while it checks the next one.

Until that write is done, every use of the store must wait for it: a reader never sees the
store without a block it reports, a failed write stops every later use (the node reported a
height its disk does not hold), and the handle still closes. Real LevelDB throughout; the
one failing write is injected by replacing the built batch's ``write``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from node.engine import Engine
from node.store import LedgerStore, StoreError

from ledger_support import T0, add_member_tx, certify, make_genesis, open_engine, seed_key

VALIDATOR, ADMIN = seed_key("v0"), seed_key("admin")


def next_block(engine: Engine, height: int, last_commit: Any) -> tuple[Any, Any]:
    txs = [add_member_tx(ADMIN, f"bg{height}-{i}", height * 100 + i) for i in range(5)]
    block = engine.build_block(proposer=VALIDATOR.verify_key.encode(), time_ms=T0 + height,
                               txs=txs, last_commit=last_commit)
    return block, certify(height, block.hash, [VALIDATOR])


class SlowBatch:
    """A real batch whose write waits until the test lets it go (or fails then)."""

    def __init__(self, batch: Any, release: threading.Event,
                 fail: BaseException | None = None) -> None:
        self.batch, self.release, self.fail = batch, release, fail

    def write(self) -> None:
        assert self.release.wait(10)
        if self.fail is not None:
            raise self.fail
        self.batch.write()


def hold_writes(monkeypatch: pytest.MonkeyPatch, fail: bool | BaseException = False,
                ) -> threading.Event:
    release = threading.Event()
    real = LedgerStore._block_batch
    failure = (fail if isinstance(fail, BaseException)
               else OSError("No space left on device") if fail else None)

    def slow(*args: Any) -> SlowBatch:
        return SlowBatch(real(*args), release, failure)

    monkeypatch.setattr(LedgerStore, "_block_batch", staticmethod(slow))
    return release


def test_every_read_after_a_background_commit_sees_the_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, engine = open_engine(str(tmp_path / "data"), make_genesis())
    release = hold_writes(monkeypatch)

    def commit_held(height: int, last_commit: Any) -> tuple[Any, Any]:
        """Commit the next block in the background, its write held for 0.2 s."""
        block, cert = next_block(engine, height, last_commit)
        release.clear()
        engine.commit(block, cert, background=True)
        assert store.height == height and store.writing
        threading.Timer(0.2, release.set).start()
        return block, cert

    try:
        block, cert = commit_held(1, None)
        assert store.get_block_bytes(1) == block.encoded  # waited for the write
        assert not store.writing
        for tx in block.txs:
            assert store.has_tx(tx.hash)
        assert len(store.receipts_of(1)) == len(block.txs)
        # The readers the engine and the contracts hold wait the same way.
        state_before = sum(1 for _ in store.state.scan(b""))
        block, cert = commit_held(2, cert)
        assert sum(1 for _ in store.state.scan(b"")) > state_before
        assert not store.writing
        leaves_before = sum(1 for _ in store.leaves.scan(b"l/"))
        block, cert = commit_held(3, cert)
        assert sum(1 for _ in store.leaves.scan(b"l/")) > leaves_before
        # A block is built on the last one while its write is held: the build waits for
        # it, and its state root covers every write before it.
        block, cert = commit_held(4, cert)
        block, cert = commit_held(5, cert)
    finally:
        store.close()
    store, engine = open_engine(str(tmp_path / "data"), make_genesis())
    try:
        assert store.height == 5
        last = store.get_block(5)
        assert last is not None and engine.tree.root == last.header.state_root
    finally:
        store.close()


def test_a_failed_background_write_fails_every_later_use_of_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, engine = open_engine(str(tmp_path / "data"), make_genesis())
    block, cert = next_block(engine, 1, None)
    release = hold_writes(monkeypatch, fail=True)
    engine.commit(block, cert, background=True)
    release.set()
    for _ in range(2):
        with pytest.raises(StoreError, match=r"writing block 1 .* failed: OSError: No space"):
            store.has_tx(block.txs[0].hash)
        with pytest.raises(StoreError):
            store.state.get(b"anything")
        with pytest.raises(StoreError):
            store.put_record(b"w/x", b"y", sync=True)
    with pytest.raises(StoreError):
        next_block(engine, 2, cert)
    store.close()  # closes the handle all the same
    store, _ = open_engine(str(tmp_path / "data"), make_genesis())
    try:
        assert store.height == 0  # nothing of the failed block is on disk
    finally:
        store.close()


def test_closing_waits_for_the_write_under_way(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store, engine = open_engine(str(tmp_path / "data"), make_genesis())
    block, cert = next_block(engine, 1, None)
    release = hold_writes(monkeypatch)
    engine.commit(block, cert, background=True)
    threading.Timer(0.2, release.set).start()
    store.close()
    store, _ = open_engine(str(tmp_path / "data"), make_genesis())
    try:
        assert store.height == 1 and store.get_block_bytes(1) == block.encoded
    finally:
        store.close()


def test_a_failed_write_during_block_sync_stops_the_consensus_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver writes synced blocks in the background and waits for the last one when
    the sync ends: a write that failed raises there, in the consensus loop, which stops the
    node (ConsensusDriver._run) instead of letting it vote on a height it does not hold."""
    from test_sync_ahead import PEER, Syncing, build_source

    from node.driver import sync_batch

    source = build_source(str(tmp_path / "source"), 3)
    node = Syncing(tmp_path)
    try:
        release = hold_writes(monkeypatch, fail=True)
        release.set()
        node.driver.peer_heights[PEER] = 3
        node.driver._begin_sync(PEER)
        with pytest.raises(StoreError, match="failed: OSError"):
            node.receive(sync_batch(source, 1))
    finally:
        node.store.close()
        source.close()
    store, _ = open_engine(str(tmp_path / "target"), make_genesis())
    try:
        assert store.height == 0
    finally:
        store.close()


def test_a_failed_background_write_reads_to_the_operator_as_the_disk_fault_it_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding: the StoreError of a failed background write carried no cause, so
    the node's fatal message called LevelDB's IOError an internal bug to report."""
    import plyvel

    from node.app import fatal_message

    store, engine = open_engine(str(tmp_path / "data"), make_genesis())
    block, cert = next_block(engine, 1, None)
    hold_writes(monkeypatch, fail=plyvel.IOError(b"IO error: No space left on device")).set()
    engine.commit(block, cert, background=True)
    with pytest.raises(StoreError) as err:
        store.settle()
    message = fatal_message(err.value, tmp_path / "data")
    assert "cannot write to the data directory" in message and "No space left" in message
    store.close()  # reported already: closing does not raise it again


def test_a_write_failure_first_found_when_closing_is_raised_after_closing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding: a SIGTERM during block sync closed the store while the last block's
    write was failing, and the failure was swallowed (the node exited 0 one block short)."""
    store, engine = open_engine(str(tmp_path / "data"), make_genesis())
    block, cert = next_block(engine, 1, None)
    hold_writes(monkeypatch, fail=True).set()
    engine.commit(block, cert, background=True)
    with pytest.raises(StoreError, match="writing block 1"):
        store.close()
    store, _ = open_engine(str(tmp_path / "data"), make_genesis())  # it was closed
    try:
        assert store.height == 0
    finally:
        store.close()
