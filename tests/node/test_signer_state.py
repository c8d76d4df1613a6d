"""The signer guard lives beside the keys, so wiping or restoring data/ cannot erase it."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import canonical
from consensus.signer import GuardedSigner, GuardState, SignGuard
from consensus.types import Height, Round, Vote, VoteType
from node.signer_state import (
    PAGE,
    SignerStateError,
    SignerStateFile,
    decode_slot,
    encode_slot,
    slot_size_for,
)

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


def state(height: int, entries: int = 1) -> GuardState:
    return GuardState(height=height, round=0, step=2,
                      signed=tuple((r, 2, bytes([r % 256]) * 32, bytes([height % 256]) * 64)
                                   for r in range(entries)))


def test_saves_alternate_between_two_slots_and_the_newest_is_loaded(tmp_path):
    path = tmp_path / "signer-state.bin"
    guard = SignerStateFile(path)
    for height in range(1, 8):
        guard.save(state(height))
        assert path.stat().st_size == 2 * PAGE
        assert SignerStateFile(path).load() == state(height)
    raw = path.read_bytes()
    sequences = sorted(decode_slot(raw[i * PAGE:(i + 1) * PAGE])[0] for i in range(2))
    assert sequences == [6, 7]  # both slots in use, the two newest saves
    assert (path.stat().st_mode & 0o777) == 0o600


def test_a_file_of_the_first_format_is_read_and_rewritten_in_slots(tmp_path):
    path = tmp_path / "signer-state.bin"
    path.write_bytes(canonical.encode(state(41).to_obj()))  # as the first format wrote it
    guard = SignerStateFile(path)
    assert guard.load() == state(41)
    guard.save(state(42))
    assert path.stat().st_size == 2 * PAGE
    assert SignerStateFile(path).load() == state(42)


@settings(max_examples=100, deadline=None)
@given(saves=st.integers(1, 6), cut=st.integers(0, PAGE), garbage=st.booleans())
def test_a_torn_slot_stops_the_node_and_never_loads_a_state_not_fully_written(
        tmp_path_factory, saves, cut, garbage):
    """A crash in the middle of a save writes part of one slot. That cannot be told apart
    from a slot damaged after its save was synced (its signature sent), so loading refuses
    it, as it refuses any damage; a slot written whole, or not at all, loads."""
    path = tmp_path_factory.mktemp("torn") / "signer-state.bin"
    guard = SignerStateFile(path)
    for height in range(1, saves + 1):
        guard.save(state(height))
    guard.close()
    sequence = saves + 1  # what the interrupted save was writing, and where
    data = canonical.encode(state(saves + 1).to_obj())
    slot = encode_slot(sequence, data, PAGE)
    written = bytes(b ^ 0x5A for b in slot[:cut]) if garbage else slot[:cut]
    offset = (sequence % 2) * PAGE
    before = path.read_bytes()[offset:offset + PAGE]
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(written)
    unchanged = path.read_bytes()[offset:offset + PAGE] == before
    # Whole once head, state and digest are all written (the rest is padding).
    whole = not garbage and cut >= 16 + len(data) + 32
    if whole:
        assert SignerStateFile(path).load() == state(saves + 1)
    elif unchanged:  # nothing written, or only bytes equal to those already there
        assert SignerStateFile(path).load() == state(saves)
    else:
        with pytest.raises(SignerStateError, match="torn"):
            SignerStateFile(path).load()


def test_both_slots_damaged_refuses_to_load(tmp_path):
    path = tmp_path / "signer-state.bin"
    guard = SignerStateFile(path)
    guard.save(state(1))
    guard.save(state(2))
    raw = bytearray(path.read_bytes())
    raw[40] ^= 1
    raw[PAGE + 40] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(SignerStateError, match="damaged"):
        SignerStateFile(path).load()


def test_a_state_that_outgrows_its_slots_moves_to_larger_ones(tmp_path):
    """A height with many rounds signs ~110 bytes per vote: after ~35 signatures the state
    no longer fits a page. The next save rewrites the file with larger slots."""
    path = tmp_path / "signer-state.bin"
    guard = SignerStateFile(path)
    guard.save(state(1))
    big = state(2, entries=200)  # ~22 KB
    guard.save(big)
    assert path.stat().st_size == 2 * slot_size_for(len(canonical.encode(big.to_obj())))
    reloaded = SignerStateFile(path)
    assert reloaded.load() == big
    reloaded.save(state(3, entries=200))
    reloaded.save(state(4))
    assert SignerStateFile(path).load() == state(4)


def test_a_file_replaced_behind_the_nodes_back_is_rewritten_at_the_next_save(tmp_path):
    """The node holds the file open and writes slots in place; if the path is replaced
    meanwhile (an operator restoring an old copy, against the advice of operations.md), the
    next save must land on the path, not in the replaced file nobody will read again."""
    path = tmp_path / "signer-state.bin"
    guard = SignerStateFile(path)
    guard.save(state(1))
    old_copy = path.read_bytes()
    guard.save(state(2))
    restored = tmp_path / "restored.bin"
    restored.write_bytes(old_copy)
    restored.replace(path)  # the path now holds height 1's record, in another file
    guard.save(state(3))
    assert SignerStateFile(path).load() == state(3)


def test_a_file_moved_aside_and_replaced_by_a_copy_gets_the_next_save(tmp_path):
    path = tmp_path / "signer-state.bin"
    guard = SignerStateFile(path)
    guard.save(state(1))
    old_copy = path.read_bytes()
    guard.save(state(2))
    path.rename(tmp_path / "signer-state.bin.bak")  # moved aside: the node's file lives on
    path.write_bytes(old_copy)  # and an old copy put in its place
    guard.save(state(3))
    assert SignerStateFile(path).load() == state(3)


def test_a_failed_rewrite_leaves_no_stale_descriptor_behind(tmp_path, monkeypatch):
    """From a review: the rewrite closed the old descriptor, then failed to open the new
    file (too many open files, say), and kept the closed number; once another file reused
    it, the next save wrote the guard's state into that file and reported success."""
    import node.signer_state as module

    path = tmp_path / "signer-state.bin"
    guard = SignerStateFile(path)
    guard.save(state(1))
    real_open = os.open

    def failing_open(name, flags, *args):
        if os.fspath(name) == os.fspath(path) and flags & os.O_RDWR:
            raise OSError(24, "Too many open files")
        return real_open(name, flags, *args)

    monkeypatch.setattr(module.os, "open", failing_open)
    with pytest.raises(OSError):
        guard.save(state(2, entries=200))  # outgrows the slots: a rewrite
    monkeypatch.undo()
    victim = tmp_path / "victim.bin"
    fd = os.open(victim, os.O_RDWR | os.O_CREAT)  # may reuse any closed number
    try:
        guard.save(state(3))
        assert victim.read_bytes() == b""
        assert SignerStateFile(path).load() == state(3)
    finally:
        os.close(fd)


def test_a_newest_slot_out_of_its_place_is_refused(tmp_path):
    path = tmp_path / "signer-state.bin"
    guard = SignerStateFile(path)
    guard.save(state(1))
    guard.save(state(2))
    raw = path.read_bytes()
    path.write_bytes(raw[PAGE:] + raw[:PAGE])  # slots swapped by hand
    with pytest.raises(SignerStateError, match="where its sequence"):
        SignerStateFile(path).load()


def test_saving_over_a_record_never_loaded_is_refused(tmp_path):
    path = tmp_path / "signer-state.bin"
    SignerStateFile(path).save(state(7))
    with pytest.raises(SignerStateError, match="load"):
        SignerStateFile(path).save(state(1))
    assert SignerStateFile(path).load() == state(7)
