"""The signer guard's state on disk, in the node home and outside the LevelDB data directory.

Why not in the ledger store: operators restore or wipe ``data/`` (a backup, a resync); if the
record of what this validator key last signed went with it, a restarted node could sign a
second, conflicting vote for a height it already voted on — the one fault BFT cannot absorb
from an honest node. Kept beside the keys, the guard survives any operation on ``data/``.

Writes are durable before the signature leaves the process. The file holds two slots of
one or more 4 KiB pages; each save writes the slot *not* holding the newest state
(sequence number, length, the state's canonical bytes, SHA-256 over all of it) and
``fdatasync``s it. A crash between saves leaves both slots whole, and loading takes the one
with the higher sequence number. A slot torn by a crash *during* a save cannot be told
apart from one damaged after its save (whose signature did leave), so, like any damage, it
stops the node at start-up with a message instead of guessing (docs/operations.md).

Why slots: the first format replaced the whole file each time (write a temporary file,
fsync, rename, fsync the directory): under load that took 2.0–2.4 ms per save on average
and up to 16 ms (docs/benchmarks.md, sixth round), paid before every vote and proposal,
on the consensus critical path. An in-place write of one slot is one data sync. A file in
the first format (one canonical value) is read as before and rewritten in slots by the
first save after an upgrade.
"""

from __future__ import annotations

import hashlib
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
        self._loaded = False

    def load(self) -> GuardState | None:
        self._loaded = True
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
        whole = [(slot, index) for index, slot in enumerate(slots) if slot is not None]
        if not whole:
            if raw[:len(SLOT_MAGIC)] != SLOT_MAGIC and raw[size:size + len(SLOT_MAGIC)] \
                    != SLOT_MAGIC:
                self._sequence = None
                return raw  # not slots at all: a first-format value of that very length
            raise ValueError("neither slot is whole")
        if any(slot is None and part.strip(b"\x00") for part, slot in zip(parts, slots,
                                                                           strict=True)):
            # A save interrupted mid-write looks exactly like a slot damaged after its save
            # was synced and its signature sent; only the first is safe to roll back from.
            # So, as with any damage: refuse, and let the operator decide (operations.md).
            raise ValueError("one slot is torn (an interrupted save, or disk damage)")
        (sequence, state_bytes), index = max(whole)
        if index != sequence % 2:
            raise ValueError("the newest slot is not where its sequence number puts it")
        self._sequence = sequence
        self._slot_size = size
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR)
        return state_bytes

    def save(self, state: GuardState) -> None:
        if not self._loaded and os.path.exists(self._path):
            # Saving over a record never read would forget what it says was signed.
            raise SignerStateError(f"{self.path}: load() it before saving over it")
        data = canonical.encode(state.to_obj())
        if (self._sequence is None or self._fd is None
                or len(data) + _OVERHEAD > self._slot_size or self._replaced()):
            self._create(data)
            return
        sequence = self._sequence + 1
        slot = encode_slot(sequence, data, self._slot_size)
        if os.pwrite(self._fd, slot, (sequence % 2) * self._slot_size) != len(slot):
            raise OSError(f"{self.path}: short write")  # nothing released; next save rewrites
        os.fdatasync(self._fd)
        self._sequence = sequence

    def _replaced(self) -> bool:
        """True if the path no longer names the file we hold open (an operator moved it
        aside, restored a copy, removed it): saves must then go to the path, not into a
        file nobody will read again."""
        assert self._fd is not None
        held = os.fstat(self._fd)
        try:
            current = os.stat(self._path)
        except FileNotFoundError:
            return True
        return (held.st_dev, held.st_ino) != (current.st_dev, current.st_ino)

    def _create(self, data: bytes) -> None:
        """Write the whole two-slot file atomically (the first save, the first after an
        upgrade from the one-value format, slots outgrown, the file replaced): temporary
        file, fsync, rename, fsync the directory. Later saves write one slot in place."""
        self.close()  # from here until the end, a failure leaves no stale descriptor
        sequence = 1 if self._sequence is None else self._sequence + 1
        size = max(self._slot_size, slot_size_for(len(data)))
        slots = [b"\x00" * size, b"\x00" * size]
        slots[sequence % 2] = encode_slot(sequence, data, size)
        content = b"".join(slots)
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if os.write(fd, content) != len(content):
                raise OSError(f"{self._tmp}: short write")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._tmp, self._path)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._fd = os.open(self._path, os.O_RDWR)
        self._sequence = sequence
        self._slot_size = size
        self._loaded = True

    def close(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            self._fd = None
            os.close(fd)

    def __del__(self) -> None:  # a test process opens many; a node closes it on stop
        self.close()
