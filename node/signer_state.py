"""The signer guard's state on disk, in the node home and outside the LevelDB data directory.

Why not in the ledger store: operators restore or wipe ``data/`` (a backup, a resync); if the
record of what this validator key last signed went with it, a restarted node could sign a
second, conflicting vote for a height it already voted on — the one fault BFT cannot absorb
from an honest node. Kept beside the keys, the guard survives any operation on ``data/``.

Writes are atomic and durable before the signature leaves the process: write a temporary
file, fsync it, rename it over the old one, fsync the directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from consensus import canonical
from consensus.signer import GuardState

FILE_NAME = "signer-state.bin"


class SignerStateError(RuntimeError):
    """The guard file exists but cannot be read: refuse to sign rather than guess."""


class SignerStateFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Plain strings for the per-vote save: pathlib's conversions cost more Python than
        # the system calls themselves (a save happens before every vote and proposal).
        self._path = os.fspath(self.path)
        self._tmp = os.fspath(self.path.with_suffix(".tmp"))
        self._dir = os.fspath(self.path.parent)

    def load(self) -> GuardState | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return GuardState.from_obj(canonical.decode(raw))
        except (ValueError, TypeError, KeyError) as exc:
            raise SignerStateError(
                f"{self.path} is damaged ({exc}); it records what this validator key last "
                "signed. Do not delete it while other validators may still be at that "
                "height: see docs/operations.md"
            ) from None

    def save(self, state: GuardState) -> None:
        data = canonical.encode(state.to_obj())
        tmp = self._tmp
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
