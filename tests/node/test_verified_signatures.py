"""Consensus signatures checked once (node/verified_signatures.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import canonical
from consensus.types import (
    Commit,
    Height,
    InvalidMessage,
    Round,
    ValidatorSet,
    Vote,
    VoteType,
    verify_commit,
)
from node.engine import certificate_verifier
from node.verified_signatures import VerifiedSignatures

from ledger_support import CHAIN_ID, certify, seed_key

KEYS = [seed_key(f"v{i}") for i in range(4)]
VSET = ValidatorSet(tuple(k.verify_key.encode() for k in KEYS))
BLOCK = b"\x11" * 32


class CountingCheck:
    """Ed25519 as the node checks it, counting the checks that reach libsodium."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, pubkey: bytes, message: bytes, signature: bytes) -> bool:
        self.calls += 1
        return canonical.verify_raw(pubkey, message, signature)


def precommit(key: Any, height: int = 5, block: bytes = BLOCK) -> tuple[bytes, bytes, bytes]:
    vote = Vote(VoteType.PRECOMMIT, Height(height), Round(0), block, key.verify_key.encode())
    message = vote.sign_bytes(CHAIN_ID)
    return vote.validator, message, bytes(key.sign(message).signature)


def test_a_precommit_checked_as_a_vote_is_not_checked_again_in_the_certificate():
    check = CountingCheck()
    known = VerifiedSignatures(verify=check)
    for key in KEYS[:3]:  # the votes the core checked during height 5
        assert known(*precommit(key))
    assert check.calls == 3
    verify = certificate_verifier(CHAIN_ID, VSET, known)
    verify(5, BLOCK, certify(5, BLOCK, KEYS))  # 4 signers: one never came as a vote here
    assert check.calls == 4 and known.hits == 3


def test_invalid_anything_that_differs_by_a_byte_is_checked_and_refused():
    known = VerifiedSignatures()
    pubkey, message, signature = precommit(KEYS[0])
    assert known(pubkey, message, signature)
    forged = bytes([signature[0] ^ 1]) + signature[1:]
    assert not known(pubkey, message, forged)
    assert not known.check(pubkey, message[:-1] + bytes([message[-1] ^ 1]), signature)
    assert not known.check(KEYS[1].verify_key.encode(), message, signature)
    assert len(known) == 1  # a failed check is never remembered


def test_invalid_certificate_with_a_bad_signature_is_refused_though_others_are_known():
    known = VerifiedSignatures()
    for key in KEYS[:3]:
        known(*precommit(key))
    cert = certify(5, BLOCK, KEYS[:3])
    cert["signatures"][0][1] = bytes(64)
    with pytest.raises(InvalidMessage, match="bad vote signature"):
        certificate_verifier(CHAIN_ID, VSET, known)(5, BLOCK, cert)


def test_check_consults_but_does_not_remember():
    # Synced blocks' certificates were never votes here: checking them must not push the
    # useful entries (the last height's votes) out.
    known = VerifiedSignatures(capacity=2)
    known(*precommit(KEYS[0]))
    for height in range(10, 20):
        assert known.check(*precommit(KEYS[1], height))
    assert len(known) == 1 and known.check(*precommit(KEYS[0]))


def test_the_oldest_entries_go_first_at_capacity():
    check = CountingCheck()
    known = VerifiedSignatures(capacity=2, verify=check)
    first, second, third = (precommit(KEYS[0], h) for h in (1, 2, 3))
    for entry in (first, second, third):
        known(*entry)
    assert len(known) == 2
    calls = check.calls
    assert known(*third) and known(*second) and check.calls == calls  # kept
    assert known(*first) and check.calls == calls + 1  # evicted: checked again


def test_invalid_capacity_is_refused():
    with pytest.raises(ValueError, match="capacity"):
        VerifiedSignatures(capacity=0)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=200),
       st.binary(min_size=64, max_size=64))
def test_property_a_remembered_entry_never_vouches_for_another(pubkey, message, signature):
    """Whatever is asked, the answer is Ed25519's own: a memory that answered True for
    something unchecked would be a forgery path into certificates."""
    known = VerifiedSignatures()
    for key in KEYS:
        known(*precommit(key))
    expected = canonical.verify_raw(pubkey, message, signature)
    assert known.check(pubkey, message, signature) is expected
    assert known(pubkey, message, signature) is expected


def test_commit_verification_without_a_memory_still_checks_every_signature():
    check = CountingCheck()
    commit = Commit.from_obj(certify(5, BLOCK, KEYS))
    verify_commit(CHAIN_ID, VSET, commit, check)
    assert check.calls == 4


def test_the_driver_checks_votes_through_the_memory_it_is_given(tmp_path):
    # Found while measuring: the driver took ``given or VerifiedSignatures()``, and a new,
    # empty memory is falsy (it has a length), so the core got one of its own and the
    # engine's certificate check never found the votes the core had checked.
    from driver_chain import Chain

    shared = VerifiedSignatures()
    chain = Chain(tmp_path, vote_signatures=shared)
    try:
        assert chain.driver.vote_signatures is shared
        assert chain.driver.core._verify is shared
    finally:
        chain.driver.wal.close()
        chain.store.close()
