"""Double-sign protection (consensus/signer.py)."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from consensus import canonical
from consensus.signer import GuardedSigner, GuardState, SignGuard
from consensus.types import Height, Proposal, Round, Vote, VoteType

CHAIN = "test-chain"
KEY = SigningKey(b"\x05" * 32)
ME = bytes(KEY.verify_key)
A = canonical.digest(b"a")
B = canonical.digest(b"b")


def unsigned(kind: VoteType, round_: int, block_hash: bytes | None, height: int = 1) -> Vote:
    return Vote(kind, Height(height), Round(round_), block_hash, ME)


def test_signer_signs_and_persists_before_returning() -> None:
    saved: list[GuardState] = []
    signer = GuardedSigner(KEY, CHAIN, SignGuard(), saved.append)
    vote = signer.sign_vote(unsigned(VoteType.PREVOTE, 0, A))
    assert vote is not None
    vote.verify(CHAIN)
    assert saved and saved[-1].signed[-1][3] == vote.signature


def test_signer_refuses_conflicting_vote() -> None:
    signer = GuardedSigner(KEY, CHAIN)
    assert signer.sign_vote(unsigned(VoteType.PREVOTE, 0, A)) is not None
    assert signer.sign_vote(unsigned(VoteType.PREVOTE, 0, B)) is None
    assert signer.sign_vote(unsigned(VoteType.PREVOTE, 0, None)) is None


def test_signer_resigns_identical_payload_with_same_signature() -> None:
    signer = GuardedSigner(KEY, CHAIN)
    first = signer.sign_vote(unsigned(VoteType.PREVOTE, 0, A))
    signer.sign_vote(unsigned(VoteType.PRECOMMIT, 0, A))
    again = signer.sign_vote(unsigned(VoteType.PREVOTE, 0, A))
    assert first is not None and again == first


def test_signer_refuses_going_back() -> None:
    signer = GuardedSigner(KEY, CHAIN)
    signer.sign_vote(unsigned(VoteType.PREVOTE, 3, A))
    assert signer.sign_vote(unsigned(VoteType.PRECOMMIT, 2, A)) is None
    assert signer.sign_vote(unsigned(VoteType.PREVOTE, 0, A, height=1)) is None
    assert signer.sign_vote(unsigned(VoteType.PREVOTE, 0, B, height=2)) is not None


def test_signer_refuses_conflicting_proposal() -> None:
    signer = GuardedSigner(KEY, CHAIN)
    a = Proposal(Height(1), Round(0), Round(-1), A, b"a", ME)
    b = Proposal(Height(1), Round(0), Round(-1), B, b"b", ME)
    assert signer.sign_proposal(a) is not None
    assert signer.sign_proposal(b) is None


def test_signer_refuses_other_keys_messages() -> None:
    other = bytes(SigningKey(b"\x06" * 32).verify_key)
    signer = GuardedSigner(KEY, CHAIN)
    assert signer.sign_vote(Vote(VoteType.PREVOTE, Height(1), Round(0), A, other)) is None


def test_signer_releases_nothing_when_persist_fails() -> None:
    def broken(state: GuardState) -> None:
        raise OSError("disk full")

    signer = GuardedSigner(KEY, CHAIN, SignGuard(), broken)
    with pytest.raises(OSError):
        signer.sign_vote(unsigned(VoteType.PREVOTE, 0, A))
    assert signer.guard.state == GuardState()


def test_guard_state_survives_restart() -> None:
    saved: list[GuardState] = []
    GuardedSigner(KEY, CHAIN, SignGuard(), saved.append).sign_vote(
        unsigned(VoteType.PREVOTE, 0, A)
    )
    stored = canonical.encode(saved[-1].to_obj())
    restored = GuardState.from_obj(canonical.decode(stored))
    assert restored == saved[-1]
    signer = GuardedSigner(KEY, CHAIN, SignGuard(restored))
    assert signer.sign_vote(unsigned(VoteType.PREVOTE, 0, B)) is None
    assert signer.sign_vote(unsigned(VoteType.PREVOTE, 0, A)) is not None
