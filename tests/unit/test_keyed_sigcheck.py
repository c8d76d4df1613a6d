"""Checks from a key's table (node/_ed25519_keyed.c) give exactly libsodium's verdicts.

The tables compute libsodium's equation, R' = [h](-A) + [S]B compared with R's bytes, their
own way, after libsodium's refusals (S >= L, small-order R or A, non-canonical A). Here:
the point arithmetic against an independent pure-Python computation (integers, affine
formulas) on random and edge-case scalars and keys, torsion included; then every verdict
against libsodium's on valid, forged, malleated, small-order, mixed-order and
non-canonical input, with the key's table built first so the table path is the one taken.
"""

from __future__ import annotations

import hashlib
import os
import threading

import nacl.bindings
import nacl.exceptions
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import sigcheck

KEYED_TABLES = 64  # node/_ed25519_keyed.h

compiled = sigcheck._compiled
pytestmark = pytest.mark.skipif(
    (compiled is None or not sigcheck.keyed_checks()) and not os.environ.get("CI"),
    reason="compiled key tables not built here (no C compiler); CI requires them",
)

@pytest.fixture(autouse=True)
def fresh_tables():
    """Every test starts with no key tables but the self-test's (which keys hold the 64
    tables depends on every check before)."""
    assert sigcheck.use_keyed_checks(False) is False
    assert sigcheck.use_keyed_checks(True) is True
    yield


P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1)


def point_add(p: tuple[int, int], q: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = p, q
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P)


def point_mul(k: int, p: tuple[int, int]) -> tuple[int, int]:
    result = IDENTITY
    while k:
        if k & 1:
            result = point_add(result, p)
        p = point_add(p, p)
        k >>= 1
    return result


def recover_x(y: int, sign: int) -> int | None:
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x2 = u * pow(v, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if x * x % P != x2:
        x = x * SQRT_M1 % P
    if x * x % P != x2:
        return None
    if x & 1 != sign:
        x = (P - x) % P
    return x


def decode(s: bytes) -> tuple[int, int] | None:
    y = int.from_bytes(s, "little") & ((1 << 255) - 1)
    if y >= P:
        return None
    x = recover_x(y, s[31] >> 7)
    return None if x is None else (x, y)


def encode(p: tuple[int, int]) -> bytes:
    x, y = p
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


BASE = decode(bytes.fromhex("58" + "66" * 31))
assert BASE is not None


def torsion_points() -> list[tuple[int, int]]:
    """The 8 points of order dividing 8."""
    for y in range(2, 100):
        x = recover_x(y, 0)
        if x is None:
            continue
        t = point_mul(L, (x, y))
        orders = [point_mul(8 // 2**i, t) == IDENTITY for i in range(1, 4)]
        if not any(orders):  # t has order 8: its multiples are every torsion point
            return [point_mul(k, t) for k in range(8)]
    raise AssertionError("no point of order 8 found")


TORSION = torsion_points()
KEYS = [nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(4)]


def reference_combination(s: int, k: int, pk: bytes) -> bytes:
    a = decode(pk)
    assert a is not None
    minus_a = ((P - a[0]) % P, a[1])
    return encode(point_add(point_mul(s, BASE), point_mul(k, minus_a)))


def libsodium_accepts(pk: bytes, message: bytes, sig: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_open(sig + message, pk)
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


def warm(key: nacl.signing.SigningKey) -> None:
    """Give ``key`` its table: three signatures libsodium accepts build it."""
    pk = bytes(key.verify_key)
    for i in range(3):
        message = b"warm %d" % i
        assert compiled.verify_many([(pk, message, bytes(key.sign(message).signature))])


def table_verdicts(items: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """The verdicts of ``items`` once every key among them with a valid signature there
    has its table (three passes count those signatures)."""
    for _ in range(3):
        compiled.verify_many(items)
    return [bool(v) for v in compiled.verify_many(items)]


EDGE_SCALARS = [0, 1, 2, 7, 8, 9, 15, 16, 17, L - 1, L - 8, 2**252, 2**252 - 1,
                # every base-16 digit 8 (each carries into the next), or 7, or alternating
                *(int.from_bytes(bytes([low] * 31 + [top]), "little")
                  for low, top in ((0x88, 0x08), (0x77, 0x07), (0xf8, 0x0f), (0x8f, 0x0f)))]
assert all(0 <= s < L for s in EDGE_SCALARS)  # as every scalar the check sees


@settings(max_examples=60, deadline=None)
@given(s=st.one_of(st.sampled_from(EDGE_SCALARS), st.integers(0, L - 1)),
       k=st.one_of(st.sampled_from(EDGE_SCALARS), st.integers(0, L - 1)),
       key=st.integers(0, 3), torsion=st.integers(0, 7))
def test_the_tables_point_arithmetic_is_the_reference_computation(s, k, key, torsion) -> None:
    a = decode(bytes(KEYS[key].verify_key))
    assert a is not None
    pk = encode(point_add(a, TORSION[torsion]))  # mixed-order keys too
    assert compiled.keyed_combination(s.to_bytes(32, "little"), k.to_bytes(32, "little"),
                                      pk) == reference_combination(s, k, pk)


def test_keys_libsodium_refuses_get_no_table() -> None:
    small = [encode(t) for t in TORSION]
    non_canonical = [(P + i).to_bytes(32, "little") for i in range(19)]
    not_on_curve = []
    y = 2
    while len(not_on_curve) < 3:
        if recover_x(y, 0) is None:
            not_on_curve.append(y.to_bytes(32, "little"))
        y += 1
    for pk in small + non_canonical + not_on_curve:
        assert compiled.keyed_combination(bytes(32), bytes(32), pk) is None, pk.hex()
        assert compiled.keyed_combination(bytes(32), bytes(32),
                                          pk[:31] + bytes([pk[31] | 0x80])) is None


def mixed_order_signature(index: int) -> tuple[bytes, bytes, bytes, int]:
    """A signature under A + T (T of order 8) made with A's secret: libsodium's
    cofactorless equation holds iff h T = 0, i.e. for 1 in 8 of them (returned: h % 8)."""
    secret = int.from_bytes(hashlib.sha512(b"mixed").digest()[:32], "little") % L
    a = point_mul(secret, BASE)
    pk = encode(point_add(a, TORSION[1]))
    message = b"mixed-order %d" % index
    r = int.from_bytes(hashlib.sha512(b"nonce %d" % index).digest(), "little") % L
    big_r = encode(point_mul(r, BASE))
    h = int.from_bytes(hashlib.sha512(big_r + pk + message).digest(), "little") % L
    s = (r + h * secret) % L
    return pk, message, big_r + s.to_bytes(32, "little"), h % 8


def test_mixed_order_keys_are_accepted_exactly_when_libsodium_accepts() -> None:
    items, expected_by_h = [], []
    for i in range(64):
        pk, message, sig, h8 = mixed_order_signature(i)
        items.append((pk, message, sig))
        expected_by_h.append(h8 == 0)
    expected = [libsodium_accepts(*item) for item in items]
    assert expected == expected_by_h and any(expected) and not all(expected)
    before = compiled.keyed_stats()
    assert table_verdicts(items) == expected
    assert compiled.keyed_stats()["accepted"] - before["accepted"] >= sum(expected)


def forged_variants(key: int, message: bytes) -> list[tuple[bytes, bytes, bytes]]:
    signer = KEYS[key]
    pk = bytes(signer.verify_key)
    sig = bytes(signer.sign(message).signature)
    r, s = sig[:32], int.from_bytes(sig[32:], "little")
    r_point = decode(r)
    assert r_point is not None
    variants = [
        (pk, message, sig),
        (pk, message + b"x", sig),
        (pk, message, r + (s + L).to_bytes(32, "little")),  # malleated: S + L
        (pk, message, r + ((s + 8 * L) % 2**256).to_bytes(32, "little")),
        (pk, message, bytes([r[0] ^ 1]) + r[1:] + sig[32:]),
        (pk, message, r[:31] + bytes([r[31] ^ 0x80]) + sig[32:]),  # R's sign flipped
        (pk, message, encode(point_add(r_point, TORSION[4])) + sig[32:]),  # R + order 2
        (pk, message, encode(point_add(r_point, TORSION[1])) + sig[32:]),  # R + order 8
        (pk, message, sig[:32] + bytes(32)),
        (pk, message, bytes(64)),
    ]
    for t in TORSION:  # every small-order R, with and without its sign bit
        enc = encode(t)
        variants.append((pk, message, enc + sig[32:]))
        variants.append((pk, message, enc[:31] + bytes([enc[31] | 0x80]) + sig[32:]))
    for i in range(3):  # non-canonical R: y + p
        y_big = (P + i).to_bytes(32, "little")
        variants.append((pk, message, y_big + sig[32:]))
    return variants


@settings(max_examples=40, deadline=None)
@given(key=st.integers(0, 3),
       message=st.one_of(st.binary(max_size=2000),
                         st.sampled_from([b"", b"m" * 959, b"m" * 960, b"m" * 961])))
def test_every_verdict_is_libsodiums(key, message) -> None:
    items = forged_variants(key, message)
    assert table_verdicts(items) == [libsodium_accepts(*item) for item in items]


def test_valid_signatures_are_taken_from_the_table() -> None:
    key = KEYS[2]
    pk = bytes(key.verify_key)
    items = [(pk, b"order %d" % i, bytes(key.sign(b"order %d" % i).signature))
             for i in range(50)]
    warm(key)
    before = compiled.keyed_stats()["accepted"]
    assert compiled.verify_many(items) == b"\x01" * 50
    assert compiled.keyed_stats()["accepted"] - before == 50


def signed_in_turn(keys: list[nacl.signing.SigningKey], rounds: int, tag: bytes,
                   bad_every: int = 0) -> list[tuple[bytes, bytes, bytes]]:
    """Each key signs once a round, in turn; with ``bad_every``, some signatures broken."""
    items = []
    for round_ in range(rounds):
        for i, key in enumerate(keys):
            message = b"%s r%d k%d" % (tag, round_, i)
            sig = bytes(key.sign(message).signature)
            if bad_every and (round_ + i) % bad_every == 0:
                sig = sig[:40] + bytes([sig[40] ^ 4]) + sig[41:]
            items.append((bytes(key.verify_key), message, sig))
    return items


def device_keys(count: int, tag: bytes) -> list[nacl.signing.SigningKey]:
    return [nacl.signing.SigningKey(hashlib.sha256(b"%s %d" % (tag, i)).digest())
            for i in range(count)]


def test_more_keys_than_tables_in_turn_build_no_table_for_nothing() -> None:
    """200 devices signing in turn: with least-recently-used eviction each table was built
    and dropped before its next use, every check paying a third of a build (1.25-1.5x
    libsodium alone). The tables go to the first 64 and stay; the rest is libsodium's."""
    items = signed_in_turn(device_keys(200, b"device"), 8, b"reading")
    before = compiled.keyed_stats()
    assert compiled.verify_many(items) == b"\x01" * len(items)
    after = compiled.keyed_stats()
    assert after["built"] - before["built"] <= KEYED_TABLES
    assert after["evicted"] - before["evicted"] <= 1  # (the self-test's key, unused since)
    assert after["accepted"] > before["accepted"]


def test_a_key_that_signs_more_often_takes_the_least_used_table() -> None:
    devices = device_keys(100, b"quiet")
    compiled.verify_many(signed_in_turn(devices, 4, b"quiet"))  # 64 tables taken
    hot = nacl.signing.SigningKey(hashlib.sha256(b"hot").digest())
    before = compiled.keyed_stats()
    compiled.verify_many(signed_in_turn([hot], 12, b"hot"))
    after = compiled.keyed_stats()
    assert after["evicted"] - before["evicted"] == 1 and after["built"] - before["built"] == 1
    assert after["accepted"] > before["accepted"]


def test_many_keys_and_two_threads_share_the_tables_soundly() -> None:
    """More keys than tables, some signatures bad, hot keys arriving late, all checked by
    two threads at once (as the worker and the event loop share a batch): every verdict
    stays libsodium's."""
    items = signed_in_turn(device_keys(90, b"shared"), 6, b"shared", bad_every=5)
    items += signed_in_turn(device_keys(3, b"late"), 30, b"late", bad_every=7)
    expected = [libsodium_accepts(*item) for item in items]
    before = compiled.keyed_stats()
    batch = compiled.prepare(items)
    helper = threading.Thread(target=batch.run)
    helper.start()
    batch.run()
    helper.join()
    assert [bool(v) for v in batch.verdicts()] == expected
    after = compiled.keyed_stats()
    assert after["evicted"] > before["evicted"]
    assert after["accepted"] > before["accepted"]


def test_only_valid_signatures_earn_a_key_its_table() -> None:
    """Anyone can make keys and send signatures that pass the refusals (R = B, S = 1);
    counting those would let a flood of fresh keys make every check build a table
    (review: ~1.5x libsodium's cost). Only signatures libsodium accepted count."""
    key = nacl.signing.SigningKey(hashlib.sha256(b"earn").digest())
    pk = bytes(key.verify_key)
    junk = [(pk, b"junk %d" % i, encode(BASE) + (1).to_bytes(32, "little")) for i in range(20)]
    before = compiled.keyed_stats()
    assert compiled.verify_many(junk) == bytes(20)
    assert compiled.keyed_stats()["built"] == before["built"]
    for i in range(2):
        message = b"real %d" % i
        assert compiled.verify_many([(pk, message, bytes(key.sign(message).signature))])
    assert compiled.keyed_stats()["built"] == before["built"]  # two are not enough
    warm(key)
    assert compiled.keyed_stats()["built"] == before["built"] + 1


def test_the_test_hook_refuses_scalars_from_the_group_order_on() -> None:
    """Digits of a scalar from 2^255 on would index past the tables (review: a read past
    the base table from ``keyed_combination``); the check itself only sees S < L, h < L."""
    pk = bytes(KEYS[0].verify_key)
    for bad in (L, L + 1, 2**255 - 1, 2**256 - 1, int.from_bytes(bytes(31) + b"\x90", "little")):
        assert compiled.keyed_combination(bad.to_bytes(32, "little"), bytes(32), pk) is None
        assert compiled.keyed_combination(bytes(32), bad.to_bytes(32, "little"), pk) is None
    assert compiled.keyed_combination((L - 1).to_bytes(32, "little"), bytes(32), pk) is not None


def test_turning_the_tables_off_and_on() -> None:
    try:
        built = compiled.keyed_stats()["built"]
        assert sigcheck.use_keyed_checks(False) is False
        assert not sigcheck.keyed_checks()
        key = KEYS[0]
        items = [(bytes(key.verify_key), b"%d" % i, bytes(key.sign(b"%d" % i).signature))
                 for i in range(10)]
        accepted = compiled.keyed_stats()["accepted"]
        assert compiled.verify_many(items) == b"\x01" * 10
        stats = compiled.keyed_stats()
        # nothing from a table, none built; the counters carry on (Prometheus counters)
        assert stats["accepted"] == accepted and stats["built"] == built
    finally:
        assert sigcheck.use_keyed_checks(True) is True
    assert sigcheck.keyed_checks()
    sigcheck.use_background_checks(False)
    try:
        assert not sigcheck.keyed_checks()  # PyNaCl checks everything then
    finally:
        sigcheck.use_background_checks(True)
