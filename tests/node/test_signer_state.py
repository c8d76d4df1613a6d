"""The signer guard lives beside the keys, so wiping or restoring data/ cannot erase it."""

from __future__ import annotations

import pytest

from consensus.signer import GuardedSigner, SignGuard
from consensus.types import Height, Round, Vote, VoteType
from node.signer_state import SignerStateError, SignerStateFile

from ledger_support import CHAIN_ID, seed_key


def vote(block: bytes) -> Vote:
    return Vote(VoteType.PREVOTE, Height(5), Round(0), block, seed_key("v0").verify_key.encode())


def test_guard_survives_a_restart_from_its_file_and_refuses_a_conflicting_vote(tmp_path):
    guard_file = SignerStateFile(tmp_path / "signer-state.bin")
    signer = GuardedSigner(seed_key("v0"), CHAIN_ID, SignGuard(guard_file.load()),
                           guard_file.save)
    assert signer.sign_vote(vote(b"\x01" * 32)) is not None
    # the process restarts (its data directory may have been wiped: the file is elsewhere)
    reloaded = GuardedSigner(seed_key("v0"), CHAIN_ID, SignGuard(guard_file.load()),
                             guard_file.save)
    assert reloaded.sign_vote(vote(b"\x02" * 32)) is None
    assert reloaded.sign_vote(vote(b"\x01" * 32)) is not None  # identical re-sign is fine
    assert not (tmp_path / "signer-state.tmp").exists()
    assert (guard_file.path.stat().st_mode & 0o777) == 0o600


def test_invalid_damaged_guard_file_refuses_to_load(tmp_path):
    path = tmp_path / "signer-state.bin"
    path.write_bytes(b"\xc1not msgpack")
    with pytest.raises(SignerStateError, match="damaged"):
        SignerStateFile(path).load()


def test_missing_guard_file_means_nothing_signed_yet(tmp_path):
    assert SignerStateFile(tmp_path / "none.bin").load() is None
