"""The consensus write-ahead log as an append-only file beside the store, not in LevelDB.

Why a file: a height's WAL holds the proposal it received (or built), the whole block of
~0.7 MB for 1,000 orders, and drops it at the next commit. In LevelDB each such record went
through the log, the memtable, a level-0 table and a compaction before it was gone: 41% of
every byte written to a loaded node's LevelDB (21.5 of 52.5 MB over 20,000 orders,
docs/benchmarks.md, twentieth round), and the same share of the log a killed node must
replay before it can start. Here a record is one ``write`` to a file that is cut back to
nothing at each commit; CometBFT keeps its consensus WAL in a file of its own too.

Durability is LevelDB's unsynced write's, as before: a record is in the kernel once
:meth:`WalFile.append` returns, so it survives the process being killed, not the machine
losing power. The signer guard (node/signer_state.py) is what is synced before a signature
leaves, so a lost WAL tail can cost a round, never a double sign.

Each record is ``length (4 bytes, big-endian) || CRC-32 (4) || payload``, the CRC over the
length and the payload. A record cut short, empty (no canonical encoding is) or failing its
CRC ends the log: what follows it is dropped when the file is opened (the tail a crash in
mid-write leaves), so the next append lands after the last good record. The length is under
the CRC so that zeros, what an unsynced file often shows after a power cut, never read as
records (a CRC-32 of nothing is 0).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable

FILE_NAME = "consensus.wal"
_HEAD = struct.Struct(">II")  # payload length, CRC-32 of the payload
MAX_RECORD_BYTES = 256 * 1024 * 1024
"""Far above any record (a block is at most the genesis ``max_block_bytes``); a length past
it is damage, not a reason to allocate."""


def _crc(length: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "big")))


def encode_record(payload: bytes) -> bytes:
    if not payload:
        raise ValueError("a WAL record is never empty")
    return _HEAD.pack(len(payload), _crc(len(payload), payload)) + payload


def decode_records(data: bytes) -> tuple[list[bytes], int]:
    """The payloads of the whole, checked records at the start of ``data``, and the length
    of that good prefix (where a torn or damaged record, if any, begins)."""
    payloads: list[bytes] = []
    offset = 0
    while offset + _HEAD.size <= len(data):
        length, crc = _HEAD.unpack_from(data, offset)
        end = offset + _HEAD.size + length
        if not 0 < length <= MAX_RECORD_BYTES or end > len(data):
            break
        payload = data[offset + _HEAD.size:end]
        if _crc(length, payload) != crc:
            break
        payloads.append(payload)
        offset = end
    return payloads, offset


class WalFile:
    """One node's consensus WAL file: read once at start, then appended and reset."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self.dropped_bytes = 0  # a torn or damaged tail cut off when the file was opened
        self._size = 0

    def open(self) -> list[bytes]:
        """Open (creating) the file and return its records' payloads, oldest first; a
        damaged tail is cut off, its size kept in :attr:`dropped_bytes`."""
        if self._fd >= 0:
            raise ValueError(f"the WAL file {self.path} is open already")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            with open(self.path, "rb") as file:
                data = file.read()
            payloads, good = decode_records(data)
            if good < len(data):
                os.ftruncate(fd, good)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.dropped_bytes = len(data) - good
        self._size = good
        return payloads

    def append(self, payload: bytes) -> None:
        """Hand one record to the kernel (no fsync: see the module docstring)."""
        self._write(encode_record(payload))

    def reset(self, payloads: Iterable[bytes] = ()) -> None:
        """Replace the whole log by ``payloads`` (at a commit: the records the next height
        starts with). Cut to nothing first, so a crash in between leaves an empty or a
        shorter log, never the old height's records after the new ones."""
        if self._size:
            os.ftruncate(self._fd, 0)
            self._size = 0
        data = b"".join(encode_record(payload) for payload in payloads)
        if data:
            self._write(data)

    def sync(self) -> None:
        """Make what was written durable (only where a record must outlive a power cut:
        the one-time move of an older store's WAL out of LevelDB)."""
        if self._fd >= 0:
            os.fsync(self._fd)

    @property
    def size(self) -> int:
        """Bytes in the log now."""
        return self._size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            raise ValueError(f"the WAL file {self.path} is not open")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)
