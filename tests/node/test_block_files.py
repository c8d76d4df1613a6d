"""Blocks and receipts in append-only files (node/block_files.py) behind the ledger store.

Real files and real LevelDB throughout. What must hold: every committed block and receipt
reads back exactly; bytes a crash left past the last committed pointer are cut off when the
store opens; damage reads as damage (StoreError), never as data; a format-1 store (blocks and
receipts inside LevelDB) still reads, and grows in the files from then on.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import msgpack
import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.block_files import BlockFileError, BlockFiles, decode_pointer, is_pointer
from node.store import (
    BLOCK_FILES_DIR,
    META_FILES_FROM,
    META_FORMAT,
    LedgerStore,
    StoreError,
    height_key,
)

from ledger_support import T0, add_member_tx, certify, make_genesis, open_engine, seed_key

VALIDATOR, ADMIN = seed_key("v0"), seed_key("admin")


def commit_blocks(path: str, count: int, txs_per_block: int = 3) -> list[Any]:
    """Commit ``count`` more blocks of membership transactions; return them."""
    store, engine = open_engine(path, make_genesis())
    last_commit = store.get_commit(store.height) if store.height else None
    blocks = []
    try:
        for _ in range(count):
            h = store.height + 1
            txs = [add_member_tx(ADMIN, f"bf{h}-{i}", h * 100 + i) for i in range(txs_per_block)]
            block = engine.build_block(proposer=VALIDATOR.verify_key.encode(), time_ms=T0 + h,
                                       txs=txs, last_commit=last_commit)
            last_commit = certify(h, block.hash, [VALIDATOR])
            engine.commit(block, last_commit)
            blocks.append(block)
    finally:
        store.close()
    return blocks


def open_store(path: str) -> LedgerStore:
    genesis = make_genesis()
    return LedgerStore.open(path, chain_id=genesis.chain_id, genesis_hash=genesis.hash)


def segment_path(path: str, segment: int = 0) -> Path:
    return Path(path) / BLOCK_FILES_DIR / f"{segment:08d}.blk"


def open_with_block_damaged(path: str, height: int) -> LedgerStore:
    """Open the store, then overwrite three bytes inside block ``height``'s entry."""
    store = open_store(path)
    pointer = decode_pointer(store.db.get(height_key(b"b/", height)))
    with open(segment_path(path, pointer.segment), "r+b") as handle:
        handle.seek(pointer.offset + 1)
        handle.write(b"\x00\x00\x00")
    return store


# --- the files alone ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(blocks=st.lists(st.tuples(st.binary(min_size=1, max_size=300),
                                 st.lists(st.binary(max_size=80), max_size=12)),
                       min_size=1, max_size=8),
       segment_bytes=st.integers(min_value=1, max_value=2_000))
def test_every_entry_reads_back_whole_across_segments(
        tmp_path_factory: pytest.TempPathFactory, blocks: list[tuple[bytes, list[bytes]]],
        segment_bytes: int) -> None:
    files = BlockFiles(str(tmp_path_factory.mktemp("bf")), segment_bytes=segment_bytes)
    pointers = []
    for block, receipts in blocks:
        entry = files.place(block, receipts)
        assert is_pointer(entry.pointer.encode())
        assert decode_pointer(entry.pointer.encode()) == entry.pointer
        files.write(entry)
        pointers.append(entry.pointer)
    try:
        for pointer, (block, receipts) in zip(pointers, blocks, strict=True):
            assert files.read_block(pointer) == block
            assert files.read_receipts(pointer) == receipts
            for index, receipt in enumerate(receipts):
                assert files.read_receipt(pointer, index) == receipt
            assert files.read_receipt(pointer, len(receipts)) is None
            assert files.read_receipt(pointer, -1) is None
        # An entry larger than a segment still goes whole into one (a new one if needed).
        assert all(p.offset == 0 or p.end <= segment_bytes for p in pointers)
    finally:
        files.close()


def test_a_new_segment_starts_when_the_current_one_would_overflow(tmp_path: Path) -> None:
    files = BlockFiles(str(tmp_path / "blocks"), segment_bytes=100)
    first = files.place(b"a" * 60, [b"r"])
    files.write(first)
    second = files.place(b"b" * 60, [])
    files.write(second)
    files.close()
    assert (first.pointer.segment, first.pointer.offset) == (0, 0)
    assert (second.pointer.segment, second.pointer.offset) == (1, 0)
    assert files.segments() == [0, 1]


def entry_block(tag: bytes, txs: int = 2) -> bytes:
    """The bytes of a block as an entry holds them (a msgpack map with its ``txs``)."""
    return msgpack.packb({"header": {"tag": tag}, "txs": [tag * 3] * txs, "last_commit": None})


def test_recover_cuts_what_no_pointer_covers_and_refuses_missing_bytes(tmp_path: Path) -> None:
    directory = str(tmp_path / "blocks")
    files = BlockFiles(directory, segment_bytes=200)
    kept = files.place(entry_block(b"k"), [b"r1", b"r2"])
    files.write(kept)
    orphan = files.place(entry_block(b"o"), [b"x" * 10, b"y" * 5])
    files.write(orphan)  # written, its pointer never committed (the crash)
    files.close()
    assert files.segments() == [0]

    again = BlockFiles(directory, segment_bytes=200)
    assert again.recover(kept.pointer) == orphan.pointer.entry_len
    assert os.path.getsize(segment_path(str(tmp_path))) == kept.pointer.end
    assert again.read_receipts(kept.pointer) == [b"r1", b"r2"]
    # The next entry goes where the orphan was; one that opens a new segment is cut too.
    assert again.place(b"x", []).pointer.offset == kept.pointer.end
    again.close()
    files = BlockFiles(directory, segment_bytes=kept.pointer.end + 10)
    files.recover(kept.pointer)
    next_segment = files.place(entry_block(b"n", txs=1), [b"z" * 30])
    assert next_segment.pointer.segment == 1
    files.write(next_segment)
    files.close()
    assert BlockFiles(directory).recover(kept.pointer) == next_segment.pointer.entry_len
    assert BlockFiles(directory).segments() == [0]

    with open(segment_path(str(tmp_path)), "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(BlockFileError, match="damaged or incomplete"):
        BlockFiles(directory).recover(kept.pointer)
    # No pointer yet: a first entry cut short is all orphan.
    assert BlockFiles(directory).recover(None) == 10
    assert BlockFiles(directory).segments() == []


def test_recover_refuses_to_cut_more_than_the_one_entry_a_crash_leaves(
        tmp_path: Path) -> None:
    """Regression (review): a LevelDB store restored from an older backup beside newer
    block files pointed before most of them, and the start cut every block past it. A
    size bound was not enough (one block's receipts may be large), so what lies past the
    pointer is read as entries: one, whole or cut short, is a crash's; more is refused."""
    directory = str(tmp_path / "blocks")
    files = BlockFiles(directory, segment_bytes=1 << 30)
    kept = files.place(entry_block(b"k"), [b"r"] * 2)
    files.write(kept)
    for tag in (b"a", b"b"):
        files.write(files.place(entry_block(tag), [b"r"] * 2))
    files.close()
    size = os.path.getsize(segment_path(str(tmp_path)))
    for last in (kept.pointer, None):
        with pytest.raises(BlockFileError, match=r"more past the last block .*nothing was cut"):
            BlockFiles(directory).recover(last)
        assert os.path.getsize(segment_path(str(tmp_path))) == size
    # Bytes that are no entry at all are not a crash's either.
    with open(segment_path(str(tmp_path)), "r+b") as handle:
        handle.truncate(kept.pointer.end)
        handle.seek(kept.pointer.end)
        handle.write(b"\xc1 not msgpack")
    with pytest.raises(BlockFileError, match="nothing was cut"):
        BlockFiles(directory).recover(kept.pointer)


def test_one_large_entry_past_the_pointer_is_a_crash_and_is_cut(tmp_path: Path) -> None:
    """A block with large receipts (each may be up to 4 MiB) is still one entry: no size
    bound refuses the restart after a crash during its commit (second review)."""
    directory = str(tmp_path / "blocks")
    files = BlockFiles(directory, segment_bytes=1 << 30)
    kept = files.place(entry_block(b"k"), [b"r"] * 2)
    files.write(kept)
    big = files.place(entry_block(b"g", txs=8), [b"R" * (4 << 20)] * 8)
    files.write(big)
    files.close()
    assert big.pointer.entry_len > 32 << 20
    assert BlockFiles(directory).recover(kept.pointer) == big.pointer.entry_len
    with open(segment_path(str(tmp_path)), "ab") as handle:  # and cut short, mid-receipts
        handle.write(big.data[: big.pointer.entry_len // 2])
    assert BlockFiles(directory).recover(kept.pointer) == big.pointer.entry_len // 2


def test_a_leveldb_store_restored_alone_from_an_older_backup_is_refused(
        tmp_path: Path) -> None:
    path = tmp_path / "data"
    commit_blocks(str(path), 1)
    backup = tmp_path / "backup"
    backup.mkdir()
    for name in os.listdir(path):
        if name not in (BLOCK_FILES_DIR, "consensus.wal", "LOCK"):
            shutil.copy2(path / name, backup / name)
    commit_blocks(str(path), 3)
    size = os.path.getsize(segment_path(str(path)))
    for name in os.listdir(path):
        if name not in (BLOCK_FILES_DIR, "consensus.wal"):
            os.unlink(path / name)
    for name in os.listdir(backup):
        shutil.copy2(backup / name, path / name)
    with pytest.raises(StoreError, match="more past the last block"):
        open_store(str(path))
    assert os.path.getsize(segment_path(str(path))) == size


# --- behind the store ----------------------------------------------------------------------


def test_blocks_and_receipts_live_in_the_files_and_read_back(tmp_path: Path) -> None:
    path = str(tmp_path / "data")
    blocks = commit_blocks(path, 4)
    store = open_store(path)
    try:
        for block in blocks:
            raw = store.db.get(height_key(b"b/", block.height))
            assert is_pointer(raw)  # LevelDB holds 29 bytes, not the block
            assert store.get_block_bytes(block.height) == block.encoded
            receipts = store.receipts_of(block.height)
            assert len(receipts) == len(block.txs) and all(r.code == "OK" for r in receipts)
            assert store.get_receipt(block.height, 1) == receipts[1]
            assert store.get_receipt(block.height, len(block.txs)) is None
        assert not any(True for _ in store.db.iterator(prefix=b"r/"))
        assert store.db.get(META_FORMAT) == b"2"
        assert store.get_block_bytes(99) is None and store.receipts_of(99) == []
        assert store.get_receipt(99, 0) is None
    finally:
        store.close()


def test_a_crash_between_the_file_write_and_the_batch_is_cut_off_on_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry is synced, then the process dies before LevelDB has the pointer."""
    path = str(tmp_path / "data")
    commit_blocks(path, 2)
    committed_size = os.path.getsize(segment_path(path))

    class DiedError(Exception):
        pass

    class DyingBatch:
        def write(self) -> None:
            raise DiedError

    real = LedgerStore._block_batch

    def dies_after_the_file(*args: Any) -> Any:
        write = real(*args)
        write._batch = DyingBatch()
        return write

    monkeypatch.setattr(LedgerStore, "_block_batch", staticmethod(dies_after_the_file))
    with pytest.raises(DiedError):
        commit_blocks(path, 1)
    monkeypatch.undo()
    assert os.path.getsize(segment_path(path)) > committed_size  # the orphan is on disk

    store = open_store(path)
    try:
        assert store.height == 2
        assert os.path.getsize(segment_path(path)) == committed_size
    finally:
        store.close()
    third = commit_blocks(path, 1)[0]
    store = open_store(path)
    try:
        assert store.height == 3 and store.get_block_bytes(3) == third.encoded
        assert len(store.receipts_of(3)) == len(third.txs)
    finally:
        store.close()


def test_damaged_block_files_read_as_damage_never_as_data(tmp_path: Path) -> None:
    path = str(tmp_path / "data")
    commit_blocks(path, 2, txs_per_block=2)
    store = open_store(path)
    first = decode_pointer(store.db.get(height_key(b"b/", 1)))
    last = decode_pointer(store.db.get(height_key(b"b/", 2)))
    store.close()
    size = os.path.getsize(segment_path(path))

    def flip(offset: int) -> None:
        with open(segment_path(path), "r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)
            handle.seek(offset)
            handle.write(bytes([byte[0] ^ 0xFF]))

    flip(first.offset + 5)  # inside block 1
    flip(first.end - 3)  # inside block 1's last receipt
    store = open_store(path)
    try:
        with pytest.raises(StoreError, match=r"damaged .*checksum"):
            store.get_block_bytes(1)
        with pytest.raises(StoreError, match="checksum"):
            store.get_receipt(1, 1)
        with pytest.raises(StoreError, match="checksum"):
            store.receipts_of(1)
        assert store.get_receipt(1, 0) is not None  # the undamaged receipt still reads
    finally:
        store.close()

    # The last block is read back whole before anything is cut: damaged, the store refuses
    # to open and the files keep every byte.
    flip(last.offset + 5)
    with pytest.raises(StoreError, match=r"corrupt .*checksum"):
        open_store(path)
    assert os.path.getsize(segment_path(path)) == size
    flip(last.offset + 5)

    # A damaged pointer (here: no longer one) is damage too, not a format-1 block.
    db = plyvel.DB(path)
    db.put(height_key(b"b/", 2), b"\x83" + bytes(28), sync=True)
    db.close()
    with pytest.raises(StoreError, match=r"pointer to block 2 is missing or damaged"):
        open_store(path)
    db = plyvel.DB(path)
    db.put(height_key(b"b/", 2), last.encode(), sync=True)
    db.put(height_key(b"b/", 1), b"\x83" + bytes(28), sync=True)
    db.close()
    store = open_store(path)
    try:
        with pytest.raises(StoreError, match="pointer to block 1 is not one"):
            store.get_block_bytes(1)
        with pytest.raises(StoreError, match="pointer to block 1 is not one"):
            store.receipts_of(1)
    finally:
        store.close()
    assert os.path.getsize(segment_path(path)) == size

    os.truncate(segment_path(path), last.end - 1)  # the last bytes lost
    with pytest.raises(StoreError, match=r"corrupt .*incomplete"):
        open_store(path)
    os.unlink(segment_path(path))
    with pytest.raises(StoreError, match="corrupt"):
        open_store(path)


def test_a_format_1_store_still_reads_and_grows_in_the_files(tmp_path: Path) -> None:
    """Turn a store back into format 1 (block and receipts inside LevelDB), then open it."""
    path = str(tmp_path / "data")
    old = commit_blocks(path, 2)
    store = open_store(path)
    receipts = {b.height: [r.to_obj() for r in store.receipts_of(b.height)] for b in old}
    store.close()
    from consensus import canonical
    db = plyvel.DB(path)
    with db.write_batch(sync=True) as batch:
        for block in old:
            batch.put(height_key(b"b/", block.height), block.encoded)
            for index, receipt in enumerate(receipts[block.height]):
                batch.put(height_key(b"r/", block.height) + index.to_bytes(4, "big"),
                          canonical.encode(receipt))
        batch.put(META_FORMAT, b"1")
        batch.delete(META_FILES_FROM)  # format 1 had no such key
    db.close()
    for segment in (Path(path) / BLOCK_FILES_DIR).iterdir():
        segment.unlink()

    store = open_store(path)  # no pointer yet: nothing in the files to keep
    try:
        for block in old:
            assert store.get_block_bytes(block.height) == block.encoded
            assert [r.to_obj() for r in store.receipts_of(block.height)] == receipts[block.height]
            third = store.get_receipt(block.height, 2)
            assert third is not None and third.to_obj() == receipts[block.height][2]
    finally:
        store.close()
    new = commit_blocks(path, 1)[0]
    store = open_store(path)
    try:
        assert store.db.get(META_FORMAT) == b"2"
        assert is_pointer(store.db.get(height_key(b"b/", new.height)))
        assert store.get_block_bytes(new.height) == new.encoded
        assert store.get_block_bytes(1) == old[0].encoded
        assert len(store.receipts_of(new.height)) == len(new.txs)
    finally:
        store.close()


def test_an_unknown_store_format_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "data")
    commit_blocks(path, 1)
    db = plyvel.DB(path)
    db.put(META_FORMAT, b"3", sync=True)
    db.close()
    with pytest.raises(StoreError, match="unknown store format"):
        open_store(path)


async def test_the_api_answers_damage_with_a_machine_readable_500(tmp_path: Path) -> None:
    """What an integrator sees when a block fails its checksum: E_STORE, not a bare 500."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from node.api import errors_middleware

    path = str(tmp_path / "data")
    commit_blocks(path, 1)
    store = open_with_block_damaged(path, 1)

    async def block(request: web.Request) -> web.Response:
        raw = store.get_block_bytes(int(request.match_info["height"]))
        return web.Response(body=raw)

    app = web.Application(middlewares=[errors_middleware])
    app.router.add_get("/v1/blocks/{height}", block)
    try:
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/v1/blocks/1")
            assert resp.status == 500
            body = await resp.json()
            assert body["code"] == "E_STORE" and "checksum" in body["message"]
    finally:
        store.close()


def test_a_damaged_block_read_on_the_consensus_loop_stops_it_with_the_damage_message(
        tmp_path: Path) -> None:
    """The operator reads "damaged: restore or resync", not "internal error" or "disk full"."""
    from node.app import fatal_message

    path = str(tmp_path / "data")
    commit_blocks(path, 2)
    store = open_with_block_damaged(path, 1)
    try:
        with pytest.raises(StoreError) as err:
            store.get_block(1)
    finally:
        store.close()
    message = fatal_message(err.value, path)
    assert message.startswith(f"the data directory {path} is damaged (block at ")
    assert "checksum" in message and "restore a backup" in message


def test_format_2_without_its_first_file_height_is_refused_and_nothing_deleted(
        tmp_path: Path) -> None:
    path = str(tmp_path / "data")
    commit_blocks(path, 2)
    size = os.path.getsize(segment_path(path))
    db = plyvel.DB(path)
    db.delete(META_FILES_FROM, sync=True)
    db.close()
    with pytest.raises(StoreError, match=r"corrupt .*without m/files_from"):
        open_store(path)
    assert os.path.getsize(segment_path(path)) == size


async def test_an_event_replay_over_damaged_history_ends_with_an_error_event(
        tmp_path: Path) -> None:
    """The stream has started when the damage is met: it says so in the stream and ends."""
    from types import SimpleNamespace

    from aiohttp.test_utils import TestClient, TestServer

    from node.api import Api
    from node.events import EventBus

    path = str(tmp_path / "data")
    commit_blocks(path, 2)
    store = open_with_block_damaged(path, 2)
    # The node's parts the event stream uses: its real store and a real event bus.
    node = SimpleNamespace(store=store, bus=EventBus(),
                           config=SimpleNamespace(max_request_bytes=1 << 20))
    try:
        async with TestClient(TestServer(Api(node).app())) as client:  # type: ignore[arg-type]
            resp = await client.get("/v1/events?from_height=1")
            assert resp.status == 200
            body = (await resp.read()).decode()
    finally:
        store.close()
    assert body.count("event: member_added") == 3  # block 1's events went out first
    error = body.split("event: error\ndata: ", 1)[1].split("\n", 1)[0]
    assert '"code": "E_STORE"' in error and "checksum" in error


def test_a_store_without_its_current_file_is_refused_and_nothing_deleted(
        tmp_path: Path) -> None:
    """Losing LevelDB's CURRENT made the open create a new, empty database over the old
    tables (deleting them) and the block files' recovery delete every segment: the node
    started at height 0 with its ledger gone."""
    path = str(tmp_path / "data")
    commit_blocks(path, 3)
    before = sorted(os.listdir(path)), os.path.getsize(segment_path(path))
    os.unlink(os.path.join(path, "CURRENT"))
    with pytest.raises(StoreError, match=r"damaged \(it holds LevelDB files .*but no CURRENT "
                                         r"file\); nothing was changed"):
        open_store(path)
    assert (sorted(os.listdir(path)), os.path.getsize(segment_path(path))) == (
        sorted(n for n in before[0] if n != "CURRENT"), before[1])


def test_block_files_beside_an_empty_store_are_refused_not_deleted(tmp_path: Path) -> None:
    """The LevelDB files removed and the block files left: a new store must not take the
    blocks for a crash's leftovers and cut them all."""
    path = str(tmp_path / "data")
    commit_blocks(path, 3)
    size = os.path.getsize(segment_path(path))
    for name in os.listdir(path):
        if name != BLOCK_FILES_DIR and name != "consensus.wal":
            os.unlink(os.path.join(path, name))
    with pytest.raises(StoreError, match="holds block files but no ledger"):
        open_store(path)
    assert os.path.getsize(segment_path(path)) == size


def test_a_directory_with_only_a_manifest_or_empty_logs_opens_as_new(tmp_path: Path) -> None:
    """What a first creation cut short leaves holds nothing committed: no refusal."""
    path = tmp_path / "data"
    path.mkdir()
    (path / "MANIFEST-000001").write_bytes(b"x" * 10)
    (path / "000003.log").write_bytes(b"")
    store = open_store(str(path))
    try:
        assert not store.initialised
    finally:
        store.close()
