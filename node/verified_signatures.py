"""Consensus signatures this node has already checked, so that none is checked twice.

Why: a block carries the certificate of the height before it (``last_commit``), and a
validator checks that certificate when it validates the proposal. Some of its precommits
arrived here as votes a moment earlier and were checked then (those that came after the
validator decided were dropped unchecked): measured ~1.4 of the ~10 Ed25519 checks a
validator makes per height on a 4-node devnet, ~75 µs of a height's ~3 ms of CPU
(docs/benchmarks.md, twenty-fifth round; ``jangbu_signature_checks_saved_total``).

Sound because a check is a pure function of its three inputs: the exact (public key,
message, signature) that verified once verifies again, and anything that differs in one
byte is a different entry and is checked. Only signatures that verified are remembered,
and only as many as ``capacity`` (the oldest go first), so a peer cannot grow it: each
entry is a valid signature of a validator.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus import canonical

DEFAULT_CAPACITY = 4096
"""~7 votes a height are remembered, so this covers the last several hundred heights;
only the last one's precommits are asked for again."""


class VerifiedSignatures:
    """``(pubkey, message, signature) -> bool`` like :func:`canonical.verify_raw`, which
    remembers what verified.

    Call it (the consensus core's verifier) to check and remember; :meth:`check` consults
    without remembering, for certificates of blocks synced from peers, whose precommits were
    never votes here and would only push the useful entries out.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY,
                 verify: Callable[[bytes, bytes, bytes], bool] = canonical.verify_raw) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._verify = verify
        self._seen: dict[tuple[bytes, bytes, bytes], None] = {}  # insertion order: oldest first
        self.hits = 0

    def __len__(self) -> int:
        return len(self._seen)

    def __call__(self, pubkey: bytes, message: bytes, signature: bytes) -> bool:
        entry = (pubkey, message, signature)
        if entry in self._seen:
            self.hits += 1
            return True
        if not self._verify(pubkey, message, signature):
            return False
        if len(self._seen) >= self.capacity:
            del self._seen[next(iter(self._seen))]
        self._seen[entry] = None
        return True

    def check(self, pubkey: bytes, message: bytes, signature: bytes) -> bool:
        """Verified before, or verifies now (not remembered)."""
        if (pubkey, message, signature) in self._seen:
            self.hits += 1
            return True
        return self._verify(pubkey, message, signature)
