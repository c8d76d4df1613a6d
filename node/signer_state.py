"""The signer guard's state on disk, in the node home and outside the LevelDB data directory.

Why not in the ledger store: operators restore or wipe ``data/`` (a backup, a resync); if the
record of what this validator key last signed went with it, a restarted node could sign a
second, conflicting vote for a height it already voted on — the one fault BFT cannot absorb
from an honest node. Kept beside the keys, the guard survives any operation on ``data/``.

Writes are durable before the signature leaves the process. The file holds two slots of
one or more 4 KiB pages; each save writes the slot *not* holding the newest state
(sequence number, length, the state's canonical bytes, SHA-256 over all of it) and
``fdatasync``s it. A crash in the middle of a save can tear only the slot being written,
whose signature never left the process; the other slot still holds the state before it.
Loading takes the valid slot with the higher sequence number.

Why slots: the first format replaced the whole file each time (write a temporary file,
fsync, rename, fsync the directory): under load that took 2.0–2.4 ms per save on average
and up to 16 ms (docs/benchmarks.md, sixth round), paid before every vote and proposal,
on the consensus critical path. An in-place write of one slot is one data sync. A file in
the first format (one canonical value) is read as before and rewritten in slots by the
first save after an upgrade.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from pathlib import Path

from consensus import canonical
from consensus.signer import GuardState

FILE_NAME = "signer-state.bin"
PAGE = 4096
"""Slots are whole pages (one at first), so writing one never touches a page of the other."""
SLOT_MAGIC = b"jbsg"  # jangbu signer guard
_HEAD = struct.Struct(">4sQI")  # magic, sequence number, payload length
_DIGEST_SIZE = 32
_OVERHEAD = _HEAD.size + _DIGEST_SIZE


def slot_size_for(state_size: int) -> int:
    """The smallest whole number of pages a slot holding ``state_size`` bytes needs. A
    height's state grows with its rounds (~110 bytes per signature); a state that outgrows
    the slots makes the next save rewrite the file with larger ones."""
    return -(-(state_size + _OVERHEAD) // PAGE) * PAGE

log = logging.getLogger("jangbu.signer_state")


class SignerStateError(RuntimeError):
    """The guard file exists but cannot be read: refuse to sign rather than guess."""


def encode_slot(sequence: int, state: bytes, slot_size: int) -> bytes:
    if len(state) + _OVERHEAD > slot_size:
        raise ValueError(f"signer state of {len(state)} bytes does not fit a slot")
    body = _HEAD.pack(SLOT_MAGIC, sequence, len(state)) + state
    return (body + hashlib.sha256(body).digest()).ljust(slot_size, b"\x00")


def decode_slot(slot: bytes) -> tuple[int, bytes] | None:
    """``(sequence, state bytes)`` of a whole, checked slot; None for an empty or torn one."""
    if len(slot) < _HEAD.size + _DIGEST_SIZE:
        return None
    magic, sequence, length = _HEAD.unpack_from(slot)
    end = _HEAD.size + length
    if magic != SLOT_MAGIC or end + _DIGEST_SIZE > len(slot):
        return None
    if hashlib.sha256(slot[:end]).digest() != slot[end:end + _DIGEST_SIZE]:
        return None
    return sequence, slot[_HEAD.size:end]


class SignerStateFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Plain strings for the per-vote save: pathlib's conversions cost more Python than
        # the system calls themselves (a save happens before every vote and proposal).
        self._path = os.fspath(self.path)
        self._tmp = os.fspath(self.path.with_suffix(".tmp"))
        self._dir = os.fspath(self.path.parent)
        self._fd: int | None = None
        self._sequence: int | None = None  # of the newest slot; None: not in slots yet
        self._slot_size = PAGE

    def load(self) -> GuardState | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            if len(raw) and len(raw) % (2 * PAGE) == 0:
                state_bytes = self._newest_slot(raw)
            else:
                state_bytes = raw  # the first format: one canonical value
                self._sequence = None
            return GuardState.from_obj(canonical.decode(state_bytes))
        except (ValueError, TypeError, KeyError) as exc:
            raise SignerStateError(
                f"{self.path} is damaged ({exc}); it records what this validator key last "
                "signed. Do not delete it while other validators may still be at that "
                "height: see docs/operations.md"
            ) from None

    def _newest_slot(self, raw: bytes) -> bytes:
        size = len(raw) // 2
        parts = [raw[:size], raw[size:]]
        slots = [decode_slot(part) for part in parts]
        whole = [slot for slot in slots if slot is not None]
        if not whole:
            if raw[:len(SLOT_MAGIC)] != SLOT_MAGIC and raw[size:size + len(SLOT_MAGIC)] \
                    != SLOT_MAGIC:
                self._sequence = None
                return raw  # not slots at all: a first-format value of that very length
            raise ValueError("neither slot is whole")
        torn = [part for part, slot in zip(parts, slots, strict=True) if slot is None]
        if any(part.strip(b"\x00") for part in torn):
            # A save interrupted mid-write (its signature never left the process): the
            # other slot is the state before it. Logged, since disk damage looks the same.
            log.warning("%s: one slot is torn (an interrupted save); using the other", self.path)
        sequence, state_bytes = max(whole)
        self._sequence = sequence
        self._slot_size = size
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR)
        return state_bytes

    def save(self, state: GuardState) -> None:
        data = canonical.encode(state.to_obj())
        if (self._sequence is None or self._fd is None
                or len(data) + _OVERHEAD > self._slot_size
                or os.fstat(self._fd).st_nlink == 0):
            # (st_nlink 0: the file we hold was replaced or removed behind our back, say by
            # an operator restoring a backup; writing into the old inode would leave the
            # path with a stale record. Rewrite the path instead, as every save once did.)
            self._create(data)
            return
        sequence = self._sequence + 1
        os.pwrite(self._fd, encode_slot(sequence, data, self._slot_size),
                  (sequence % 2) * self._slot_size)
        os.fdatasync(self._fd)
        self._sequence = sequence

    def _create(self, data: bytes) -> None:
        """Write the whole two-slot file atomically (the first save, or the first after
        an upgrade from the one-value format): temporary file, fsync, rename, fsync the
        directory. Later saves write one slot in place."""
        sequence = 1 if self._sequence is None else self._sequence + 1
        size = max(self._slot_size, slot_size_for(len(data)))
        slots = [b"\x00" * size, b"\x00" * size]
        slots[sequence % 2] = encode_slot(sequence, data, size)
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(slots))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._tmp, self._path)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDWR)
        self._sequence = sequence
        self._slot_size = size

    def close(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            self._fd = None
            os.close(fd)

    def __del__(self) -> None:  # a test process opens many; a node closes it on stop
        self.close()
