"""Messages, quorum maths and commit certificates (consensus/types.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from consensus import canonical
from consensus.types import (
    VOTE_TAG,
    Commit,
    Height,
    InvalidMessage,
    Proposal,
    Round,
    ValidatorSet,
    Vote,
    VoteType,
    message_from_obj,
    message_to_obj,
    verify_commit,
)

CHAIN = "test-chain"
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
PUBS = [bytes(k.verify_key) for k in KEYS]
VALIDATORS = ValidatorSet(tuple(PUBS))
HASH = canonical.digest(b"block")


def precommit(who: int, block_hash: bytes = HASH, round_: int = 0) -> Vote:
    body = Vote(VoteType.PRECOMMIT, Height(1), Round(round_), block_hash, PUBS[who])
    return replace(body, signature=canonical.sign(KEYS[who], VOTE_TAG, CHAIN, body.sign_body()))


def commit_of(*who: int) -> Commit:
    return Commit(Height(1), Round(0), HASH, tuple((PUBS[w], precommit(w).signature) for w in who))


@given(n=st.integers(1, 200))
def test_quorum_is_smallest_q_with_2q_above_n_plus_f(n: int) -> None:
    keys = tuple(i.to_bytes(32, "big") for i in range(n))
    vs = ValidatorSet(keys)
    f, q = vs.f, vs.quorum
    assert 3 * f < n and 3 * (f + 1) >= n
    assert 2 * q > n + f and 2 * (q - 1) <= n + f
    assert q <= n - f  # f silent validators cannot block a quorum
    if n == 3 * f + 1:
        assert q == 2 * f + 1


def test_proposer_is_round_robin() -> None:
    assert [VALIDATORS.proposer(Height(1), Round(r)) for r in range(4)] == PUBS[1:] + PUBS[:1]
    assert VALIDATORS.proposer(Height(2), Round(3)) == PUBS[1]


def test_invalid_validator_set_is_rejected() -> None:
    with pytest.raises(ValueError):
        ValidatorSet(())
    with pytest.raises(ValueError):
        ValidatorSet((PUBS[0], PUBS[0]))
    with pytest.raises(ValueError):
        ValidatorSet((b"short",))


@given(
    kind=st.sampled_from(list(VoteType)),
    height=st.integers(1, 2**63 - 1),
    round_=st.integers(0, 2**31 - 1),
    block_hash=st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
    sig=st.binary(min_size=64, max_size=64),
)
def test_vote_roundtrips_through_canonical_bytes(
    kind: VoteType, height: int, round_: int, block_hash: bytes | None, sig: bytes
) -> None:
    vote = Vote(kind, Height(height), Round(round_), block_hash, PUBS[0], sig)
    wire = canonical.encode(message_to_obj(vote))
    assert message_from_obj(canonical.decode(wire)) == vote


@given(pol=st.integers(-1, 4), block=st.binary(max_size=100))
def test_proposal_roundtrips(pol: int, block: bytes) -> None:
    prop = Proposal(
        Height(3), Round(5), Round(pol), canonical.digest(block), block, PUBS[1], b"s" * 64
    )
    assert message_from_obj(canonical.decode(canonical.encode(message_to_obj(prop)))) == prop


def test_commit_roundtrips() -> None:
    commit = commit_of(0, 1, 2)
    assert Commit.from_obj(canonical.decode(canonical.encode(commit.to_obj()))) == commit


@given(obj=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.binary(max_size=40),
              st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=8)),
    max_leaves=20,
))
def test_invalid_from_obj_raises_only_invalid_message(obj: object) -> None:
    for parse in (message_from_obj, Vote.from_obj, Proposal.from_obj, Commit.from_obj):
        try:
            parse(obj)
        except InvalidMessage as exc:
            assert exc.code
        # anything else (TypeError, KeyError...) fails the test


def test_invalid_proposal_pol_round_not_below_round() -> None:
    bad = Proposal(Height(1), Round(2), Round(2), HASH, b"x", PUBS[0], b"s" * 64)
    with pytest.raises(InvalidMessage) as info:
        Proposal.from_obj(bad.to_obj())
    assert info.value.code == "E_FIELD"


def test_vote_verify_checks_signature() -> None:
    precommit(1).verify(CHAIN)
    with pytest.raises(InvalidMessage) as info:
        replace(precommit(1), round=Round(1)).verify(CHAIN)
    assert info.value.code == "E_SIGNATURE"


def test_verify_commit_accepts_quorum() -> None:
    verify_commit(CHAIN, VALIDATORS, commit_of(0, 1, 3))


@pytest.mark.parametrize(
    ("commit", "code"),
    [
        (commit_of(0, 1), "E_COMMIT_QUORUM"),
        (commit_of(0, 1, 1), "E_COMMIT_DUPLICATE"),
        (replace(commit_of(0, 1, 2), round=Round(1)), "E_SIGNATURE"),
        (
            Commit(
                Height(1),
                Round(0),
                HASH,
                (*commit_of(0, 1).signatures, (b"\x07" * 32, b"s" * 64)),
            ),
            "E_COMMIT_SIGNER",
        ),
    ],
)
def test_invalid_commit_is_rejected(commit: Commit, code: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        verify_commit(CHAIN, VALIDATORS, commit)
    assert info.value.code == code
