"""Blocks and their receipts in append-only segment files; LevelDB keeps only a pointer.

Why: a block and its receipts are written once and never change, yet in LevelDB they went
through the write-ahead log, the memtable's skip list, a flush with snappy and every later
compaction, beside the state and the indexes whose keys are hashes. Leaving the ~1.1 KB
per transaction of block and receipt bytes out of LevelDB (the block's copy ~600 B,
receipts ~500 B of the ~2.4 KB a clearance order adds) took 15-22 µs of CPU per node and
transaction off a 20,000-order run (docs/benchmarks.md, fifteenth round). Hyperledger
Fabric's block store is built the same way for the same reason.

One block's **entry**, at (segment, offset) in ``blocks/<segment:08d>.blk``::

    block bytes                          block_len bytes, CRC-32 in the pointer
    receipt table                        count x (end u32, crc32 u32), big-endian;
                                         ``end`` counts from the first receipt
    receipts, concatenated

The **pointer** (LevelDB ``b/<h>``, a fixed 29-byte record starting with a zero byte, which
a canonical block, a map, never does): tag, segment u32, offset u64, block_len u32,
block_crc u32, count u32, entry_len u32.

Crash safety: an entry is written and ``fdatasync``-ed **before** the LevelDB batch that
holds its pointer is written (synced). After a crash the files may hold bytes past the last
committed pointer; :meth:`BlockFiles.recover` cuts them off at start-up. A pointer whose
bytes are missing or fail their CRC is damage, reported as such (StoreError), never data.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack

POINTER_TAG = 0
_POINTER = struct.Struct(">BIQIIII")
_TABLE_ROW = struct.Struct(">II")
SEGMENT_BYTES = 128 << 20
"""A new segment file is started once an entry would take the current one past this."""
_SEGMENT_NAME = re.compile(r"^(\d{8})\.blk$")


class BlockFileError(RuntimeError):
    """The block files disagree with the committed index (damage, not a bug in the caller)."""


@dataclass(frozen=True, slots=True)
class Pointer:
    """Where one block's entry is (see the module docstring)."""

    segment: int
    offset: int
    block_len: int
    block_crc: int
    count: int
    entry_len: int

    def encode(self) -> bytes:
        return _POINTER.pack(POINTER_TAG, self.segment, self.offset, self.block_len,
                             self.block_crc, self.count, self.entry_len)

    @property
    def end(self) -> int:
        return self.offset + self.entry_len


def is_pointer(value: bytes) -> bool:
    """Is this ``b/<h>`` value a pointer (and not a block stored inline by format 1)?"""
    return len(value) == _POINTER.size and value[0] == POINTER_TAG


def decode_pointer(value: bytes) -> Pointer:
    _tag, segment, offset, block_len, block_crc, count, entry_len = _POINTER.unpack(value)
    return Pointer(segment, offset, block_len, block_crc, count, entry_len)


def encode_entry(block: bytes, receipts: Sequence[bytes]) -> bytes:
    """The bytes of one entry: the block, the receipt table, the receipts."""
    ends = itertools.accumulate(map(len, receipts))
    crcs = map(zlib.crc32, receipts)
    rows = itertools.chain.from_iterable(zip(ends, crcs, strict=True))
    table = struct.pack(f">{2 * len(receipts)}I", *rows)
    return b"".join((block, table, *receipts))


def is_entry_prefix(data: bytes) -> bool:
    """Whether ``data`` is one entry (:func:`encode_entry`), whole or cut short, and nothing
    more: what a crash can leave past the last committed pointer."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        block = unpacker.unpack()
    except msgpack.OutOfData:
        return True  # cut inside the block
    except Exception:  # not a block at all
        return False
    txs = block.get("txs") if isinstance(block, dict) else None
    if not isinstance(txs, list):
        return False
    table_end: int = unpacker.tell() + _TABLE_ROW.size * len(txs)
    if len(data) <= table_end or not txs:
        return len(data) <= table_end  # cut inside the table, or whole with no receipts
    receipts_len: int = _TABLE_ROW.unpack_from(data, table_end - _TABLE_ROW.size)[0]
    return len(data) <= table_end + receipts_len


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """An entry placed in the files but not written yet (:meth:`BlockFiles.write`)."""

    pointer: Pointer
    data: bytes


class BlockFiles:
    """The segment files under one directory. One writer (the store, one block at a time,
    in height order); readers on any thread."""

    def __init__(self, directory: str, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._tail_segment = 0
        self._tail_size = 0
        self._write_fd: int | None = None
        self._write_segment = -1
        self._read_fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def _path(self, segment: int) -> str:
        return os.path.join(self.directory, f"{segment:08d}.blk")

    def segments(self) -> list[int]:
        """The segment numbers present on disk, ascending."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_SEGMENT_NAME.match, names) if m)

    def holds_bytes(self) -> bool:
        """Whether any segment on disk holds a byte (what a lost store must not delete)."""
        return any(os.path.getsize(self._path(segment)) > 0 for segment in self.segments())

    # --- start-up ---------------------------------------------------------------------------

    def recover(self, last: Pointer | None) -> int:
        """Cut the files back to the entry of the last committed pointer ``last`` (None: no
        block is in the files yet) and return how many bytes were cut: what a crash left
        between an entry's write and its pointer's.

        Raises BlockFileError, cutting nothing, if the files hold less than ``last`` points
        to, or more past it than the one entry a crash can leave (entries are written one
        at a time, each whole in one segment, and the next is placed only once the
        previous one's pointer is committed): then the index is older than the files (a
        LevelDB store restored alone from an older backup), and cutting would delete
        committed blocks, perhaps their last copy (review). What lies past ``last`` is
        read as an entry: a block, its receipt table, its receipts, whole or cut short.
        """
        keep = -1 if last is None else last.segment
        end = 0 if last is None else last.end
        if last is not None:
            path = self._path(last.segment)
            size = os.path.getsize(path) if os.path.exists(path) else -1
            if size < last.end:
                raise BlockFileError(
                    f"block file {path} holds {max(size, 0)} bytes but the index points to "
                    f"{last.end}: the block files are damaged or incomplete")
        pieces = [(segment, end if segment == keep else 0) for segment in self.segments()
                  if segment >= keep]
        pieces = [(segment, offset) for segment, offset in pieces
                  if os.path.getsize(self._path(segment)) > offset]
        if len(pieces) > 1 or (pieces and not is_entry_prefix(self._read_from(*pieces[0]))):
            raise BlockFileError(
                "the block files hold more past the last block the store indexes than the "
                "one entry a crash leaves: the store is older than its block files (restored "
                "alone from a backup?); nothing was cut")
        cut = 0
        for segment in self.segments():
            if segment > keep:
                cut += os.path.getsize(self._path(segment))
                os.unlink(self._path(segment))
        if last is not None:
            path = self._path(last.segment)
            size = os.path.getsize(path)
            if size > last.end:
                cut += size - last.end
                with open(path, "r+b") as handle:
                    handle.truncate(last.end)
                    os.fsync(handle.fileno())
            self._tail_segment, self._tail_size = last.segment, last.end
        if cut and os.path.isdir(self.directory):
            _fsync_dir(self.directory)
        return cut

    def _read_from(self, segment: int, offset: int) -> bytes:
        with open(self._path(segment), "rb") as handle:
            handle.seek(offset)
            return handle.read()

    # --- writing ------------------------------------------------------------------------------

    def place(self, block: bytes, receipts: Sequence[bytes]) -> PendingEntry:
        """Give the next entry its place (and its pointer) without writing it, so the batch
        holding the pointer can be built first and both written later, file first."""
        data = encode_entry(block, receipts)
        if self._tail_size and self._tail_size + len(data) > self.segment_bytes:
            self._tail_segment += 1
            self._tail_size = 0
        pointer = Pointer(self._tail_segment, self._tail_size, len(block),
                          zlib.crc32(block), len(receipts), len(data))
        self._tail_size += len(data)
        return PendingEntry(pointer, data)

    def write(self, entry: PendingEntry) -> None:
        """Write the entry and make it durable (``fdatasync``; a new segment's directory entry
        is synced as well). Must return before the entry's pointer is committed."""
        segment = entry.pointer.segment
        if self._write_segment != segment:
            created = not os.path.exists(self._path(segment))
            if created:
                os.makedirs(self.directory, exist_ok=True)
            fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT, 0o640)
            if self._write_fd is not None:
                os.close(self._write_fd)
            self._write_fd, self._write_segment = fd, segment
            if created:  # the new file's name, and the directory's own, must survive a crash
                _fsync_dir(self.directory)
                _fsync_dir(os.path.dirname(os.path.abspath(self.directory)))
        assert self._write_fd is not None
        view = memoryview(entry.data)
        offset = entry.pointer.offset
        while view:
            written = os.pwrite(self._write_fd, view, offset)
            view, offset = view[written:], offset + written
        os.fdatasync(self._write_fd)

    # --- reading ------------------------------------------------------------------------------

    def _read(self, segment: int, length: int, offset: int) -> bytes:
        fd = self._read_fds.get(segment)
        if fd is None:
            with self._lock:
                fd = self._read_fds.get(segment)
                if fd is None:
                    try:
                        fd = os.open(self._path(segment), os.O_RDONLY)
                    except FileNotFoundError:
                        raise BlockFileError(
                            f"block file {self._path(segment)} is missing") from None
                    self._read_fds[segment] = fd
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise BlockFileError(f"block file {self._path(segment)} is shorter than the index "
                                 f"says ({offset + len(data)} < {offset + length} bytes)")
        return data

    def read_block(self, pointer: Pointer) -> bytes:
        data = self._read(pointer.segment, pointer.block_len, pointer.offset)
        if zlib.crc32(data) != pointer.block_crc:
            raise BlockFileError(f"block at {self._path(pointer.segment)}:{pointer.offset} "
                                 "fails its checksum")
        return data

    def read_receipts(self, pointer: Pointer) -> list[bytes]:
        start = pointer.offset + pointer.block_len
        data = self._read(pointer.segment, pointer.entry_len - pointer.block_len, start)
        table_len = _TABLE_ROW.size * pointer.count
        body = memoryview(data)[table_len:]
        receipts = []
        begin = 0
        for end, crc in _TABLE_ROW.iter_unpack(data[:table_len]):
            receipts.append(self._checked(bytes(body[begin:end]), crc, pointer, begin))
            begin = end
        return receipts

    def read_receipt(self, pointer: Pointer, index: int) -> bytes | None:
        if not 0 <= index < pointer.count:
            return None
        table = pointer.offset + pointer.block_len
        body = table + _TABLE_ROW.size * pointer.count
        if index == 0:
            begin = 0
            end, crc = _TABLE_ROW.unpack(self._read(pointer.segment, _TABLE_ROW.size, table))
        else:
            rows = self._read(pointer.segment, 2 * _TABLE_ROW.size,
                              table + _TABLE_ROW.size * (index - 1))
            (begin, _), (end, crc) = _TABLE_ROW.iter_unpack(rows)
        if not 0 <= begin <= end:
            raise BlockFileError(f"receipt table at {self._path(pointer.segment)}:{table} "
                                 "is damaged")
        return self._checked(self._read(pointer.segment, end - begin, body + begin),
                             crc, pointer, begin)

    def _checked(self, receipt: bytes, crc: int, pointer: Pointer, begin: int) -> bytes:
        if zlib.crc32(receipt) != crc:
            raise BlockFileError(f"receipt of the block at {self._path(pointer.segment)}:"
                                 f"{pointer.offset} (+{begin}) fails its checksum")
        return receipt

    def close(self) -> None:
        with self._lock:
            fds = list(self._read_fds.values())
            self._read_fds.clear()
        if self._write_fd is not None:
            fds.append(self._write_fd)
            self._write_fd, self._write_segment = None, -1
        for fd in fds:
            os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["BlockFileError", "BlockFiles", "PendingEntry", "Pointer", "decode_pointer",
           "encode_entry", "is_pointer"]
