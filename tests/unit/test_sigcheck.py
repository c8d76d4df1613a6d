"""Signature checks in batches give exactly the verdicts of one-by-one checks.

``node/_sigcheck.c`` calls the libsodium PyNaCl loaded, many checks per call with the GIL
released; ``node/sigcheck.py`` runs large batches on a worker thread that the caller's
thread joins. Whatever the path (compiled or PyNaCl, worker or not), each item's verdict
must be ``consensus.canonical.verify_raw``'s.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import canonical
from node import sigcheck

compiled = sigcheck._compiled

needs_compiled = pytest.mark.skipif(
    compiled is None and not os.environ.get("CI"),
    reason="compiled signature checks not built here (no C compiler); CI requires them",
)

KEYS = [nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(3)]


def signed(key_index: int, message: bytes) -> tuple[bytes, bytes, bytes]:
    key = KEYS[key_index]
    return bytes(key.verify_key), message, bytes(key.sign(message).signature)


def tampered(key_index: int, message: bytes, how: int) -> tuple[bytes, bytes, bytes]:
    """A signed item made invalid one way or another."""
    pubkey, message, sig = signed(key_index, message)
    if how == 0:
        return pubkey, message + b"!", sig  # another message
    if how == 1:
        return pubkey, message, bytes([sig[0] ^ 0x40]) + sig[1:]  # R changed
    if how == 2:
        return bytes(KEYS[(key_index + 1) % len(KEYS)].verify_key), message, sig  # another key
    return pubkey, message, sig[:32] + bytes(32)  # S = 0


items_strategy = st.lists(
    st.tuples(st.integers(0, 2), st.binary(max_size=300), st.sampled_from([None, 0, 1, 2, 3])),
    max_size=40,
).map(lambda specs: [signed(k, m) if how is None else tampered(k, m, how)
                     for k, m, how in specs])


@pytest.fixture(params=["compiled", "pynacl"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "compiled" and compiled is None:
        if os.environ.get("CI"):
            pytest.fail("CI requires the compiled signature checks")
        pytest.skip("compiled signature checks not built here")
    was = sigcheck.background_checks()
    sigcheck.use_background_checks(request.param == "compiled")
    try:
        yield request.param
    finally:
        sigcheck.use_background_checks(was)


def reference(items: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    return [canonical.verify_raw(*item) for item in items]


@settings(max_examples=60, deadline=None)
@given(items=items_strategy)
def test_batched_and_single_verdicts_are_the_one_by_one_verdicts(items) -> None:
    was = sigcheck.background_checks()
    for enabled in (True, False):
        sigcheck.use_background_checks(enabled)
        try:
            assert sigcheck.verify_now(items) == reference(items)
            assert sigcheck.start(items).wait() == reference(items)
            # verify_one: admission's check, once per transaction.
            assert [sigcheck.verify_one(*item) for item in items] == reference(items)
        finally:
            sigcheck.use_background_checks(was)


def test_one_check_of_odd_parts_answers_as_verify_raw(mode) -> None:
    pubkey, message, sig = signed(0, b"m")
    odd = [
        (pubkey, message, sig),
        (pubkey, bytearray(message), sig),  # verify_raw takes any bytes-like message
        (pubkey, memoryview(message), sig),
        (pubkey[:31], message, sig),
        (pubkey, message, sig + b"x"),
        (pubkey.hex(), message, sig),
        (bytearray(pubkey), message, sig),
        (pubkey, message, bytearray(sig)),
        (pubkey, "m", sig),  # not bytes at all: refused, not raised, on both paths
        (pubkey, None, sig),
    ]
    assert [sigcheck.verify_one(*item) for item in odd] == reference(odd)
    assert reference(odd)[:3] == [True, True, True]


def test_admission_checks_signatures_through_verify_one(monkeypatch) -> None:
    """Transaction.check goes through verify_one (the cheaper call where it is built)."""
    from node.tx import E_BAD_SIGNATURE, Transaction, TxError
    tx = Transaction.create(KEYS[0], "chain", "clearance", "noop", {}, 1)
    seen = []
    real = sigcheck.verify_one
    monkeypatch.setattr(sigcheck, "verify_one", lambda *a: seen.append(a) or real(*a))
    tx.check("chain")
    assert seen == [(tx.signer, tx.signed_bytes, tx.sig)]
    forged = Transaction(tx.chain_id, tx.contract, tx.action, tx.args, tx.signer, tx.nonce,
                         bytes(64))
    with pytest.raises(TxError) as refused:
        forged.check("chain")
    assert refused.value.code == E_BAD_SIGNATURE


def test_a_large_batch_goes_to_the_worker_and_the_caller_shares_it(mode) -> None:
    items = [tampered(i % 3, b"order %d" % i, i % 4) if i % 37 == 5
             else signed(i % 3, b"order %d" % i) for i in range(300)]
    verdicts = sigcheck.start(items)
    # Compiled: handed to the worker (nothing known yet); else checked at once, here.
    assert verdicts.ready is (mode != "compiled")
    assert verdicts.wait() == reference(items)
    assert verdicts.ready and verdicts.wait() == reference(items)  # a second wait: the same
    small = sigcheck.start(items[:sigcheck.MIN_BACKGROUND - 1])
    assert small.ready  # too few to hand over


@needs_compiled
def test_odd_items_are_not_verified_and_do_not_crash() -> None:
    pubkey, message, sig = signed(0, b"m")
    odd = [
        (pubkey, message, sig),         # the one good item
        (pubkey[:31], message, sig),    # short key
        (pubkey, message, sig + b"x"),  # long signature
        (pubkey.hex(), message, sig),   # str, not bytes
        (pubkey, message),              # two parts
        [pubkey, message, sig],         # a list, not a tuple
        None,
        (bytearray(pubkey), message, sig),
    ]
    assert list(compiled.verify_many(odd)) == [1, 0, 0, 0, 0, 0, 0, 0]
    batch = compiled.prepare(odd)
    batch.run()
    assert list(batch.verdicts()) == [1, 0, 0, 0, 0, 0, 0, 0]
    assert compiled.verify_many([]) == b""
    with pytest.raises(TypeError):
        compiled.verify_many(tuple(odd))


@needs_compiled
def test_a_batch_holds_its_items_whatever_the_caller_does_with_its_list() -> None:
    items = [signed(1, b"x%d" % i) for i in range(50)]
    given_list = list(items)
    batch = compiled.prepare(given_list)
    given_list.clear()  # the caller's list changes; the batch keeps what it was given
    del items[:]
    threads = [threading.Thread(target=batch.run) for _ in range(3)]
    for thread in threads:
        thread.start()
    batch.run()
    for thread in threads:
        thread.join()
    assert list(batch.verdicts()) == [1] * 50


@needs_compiled
def test_a_cancelled_batch_leaves_what_was_unclaimed_unchecked() -> None:
    items = [signed(0, b"z%d" % i) for i in range(200)]
    batch = compiled.prepare(items)
    batch.cancel()
    batch.run()  # nothing left to claim
    assert batch.verdicts() == bytes(200)
    verdicts = sigcheck.start(items)
    verdicts.cancel()  # what the worker had claimed is checked, the rest is not
    assert all(isinstance(v, bool) for v in verdicts.wait())


def test_serial_mode_can_be_forced() -> None:
    was = sigcheck.background_checks()
    assert sigcheck.use_background_checks(False) is False
    try:
        assert not sigcheck.background_checks()
        items = [signed(2, b"y%d" % i) for i in range(40)]
        verdicts = sigcheck.start(items)
        assert verdicts.ready and verdicts.wait() == [True] * 40
    finally:
        sigcheck.use_background_checks(was)


def printed_at_start(code: str, **env: str) -> str:
    """What ``code`` prints in a new interpreter started with ``env`` added."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True, cwd=os.getcwd())
    return out.stdout.strip()


def test_the_switch_is_read_from_the_environment_at_start() -> None:
    code = "from node import sigcheck; print(sigcheck.background_checks())"
    assert printed_at_start(code, JANGBU_SERIAL_SIGCHECK="1") == "False"
    assert printed_at_start(code, JANGBU_SERIAL_SIGCHECK="0") == str(compiled is not None)


def test_the_key_tables_switch_is_read_from_the_environment_at_start() -> None:
    code = "from node import sigcheck; print(sigcheck.keyed_checks())"
    assert printed_at_start(code, JANGBU_KEYED_SIGCHECK="0") == "False"
    assert printed_at_start(code, JANGBU_KEYED_SIGCHECK="1") == str(compiled is not None)
    # PyNaCl alone: no compiled helper, so no tables
    assert printed_at_start(code, JANGBU_KEYED_SIGCHECK="1",
                            JANGBU_SERIAL_SIGCHECK="1") == "False"
