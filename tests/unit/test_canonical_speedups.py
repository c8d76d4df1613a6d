"""The compiled canonical encoder gives exactly the pure encoder's bytes, or steps aside.

``consensus/_speedups.c`` must never decide what is canonical: for every value it either
writes the same bytes as :func:`canonical.encode_pure` or answers ``None`` (and
:func:`canonical.encode` then raises exactly what the pure path raises).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import canonical

fast = canonical._fast_encode

needs_fast = pytest.mark.skipif(
    fast is None and not os.environ.get("CI"),
    reason="compiled encoder not built here (no C compiler); CI requires it",
)


class Text(str):
    """A str subclass: not the plain shape, so the compiled encoder must step aside."""


class Number(int):
    pass


BOUNDARY_INTS = [
    0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
    2**64 - 1, 2**64, -1, -31, -32, -33, -127, -128, -129, -32767, -32768, -32769,
    -(2**31) + 1, -(2**31), -(2**31) - 1, -(2**63), -(2**63) - 1, 10**30, -(10**30),
]
LENGTHS = [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536]

keys = st.text(max_size=6) | st.sampled_from(["", "a", "é", "한", "\U0001f600", "\ud800"])
scalars = (
    st.none() | st.booleans() | st.sampled_from(BOUNDARY_INTS)
    | st.integers(-(2**70), 2**70) | st.text(max_size=12) | st.binary(max_size=12)
    | st.floats(allow_nan=False).map(lambda f: f) | st.just("\udcff")
    | st.text(max_size=4).map(Text) | st.integers(0, 9).map(Number)
    | st.binary(max_size=4).map(bytearray)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(keys, inner, max_size=4)
    | st.dictionaries(st.integers(0, 3), inner, min_size=1, max_size=2),
    max_leaves=24,
)


def outcome(encoder: Any, value: Any, depth: int = 0) -> tuple[str, Any]:
    try:
        return "bytes", encoder(value, depth=depth)
    except canonical.CanonicalError as exc:
        return "error", str(exc)


@needs_fast
@settings(max_examples=600)
@given(values, st.integers(0, 34))
def test_same_bytes_or_none_for_any_value(value: Any, depth: int) -> None:
    answer = fast(value, depth)
    expected = outcome(canonical.encode_pure, value, depth)
    if answer is not None:
        assert expected == ("bytes", answer)
    assert outcome(canonical.encode, value, depth) == expected


@needs_fast
@pytest.mark.parametrize("number", BOUNDARY_INTS)
def test_integer_boundaries(number: int) -> None:
    assert outcome(canonical.encode, number) == outcome(canonical.encode_pure, number)
    assert outcome(canonical.encode, [number, {"n": number}]) == \
        outcome(canonical.encode_pure, [number, {"n": number}])


@needs_fast
@pytest.mark.parametrize("length", LENGTHS)
def test_length_headers(length: int) -> None:
    for value in ("x" * length, b"x" * length, [0] * length,
                  {f"k{i:06d}": i for i in range(length)}):
        answer = fast(value, 0)
        assert answer is not None
        assert answer == canonical.encode_pure(value)


@needs_fast
def test_plain_values_take_the_compiled_path() -> None:
    value = {"b": [1, -2, "three", b"four", None, True, False], "a": {"nested": (1, 2)},
             "한글": 2**64 - 1}
    assert fast(value, 0) == canonical.encode_pure(value)


@needs_fast
def test_nesting_limit_is_the_pure_encoders() -> None:
    deepest_allowed: Any = 1
    for _ in range(canonical.MAX_DEPTH + 1):
        deepest_allowed = [deepest_allowed]
    assert fast(deepest_allowed, 0) == canonical.encode_pure(deepest_allowed)
    too_deep = [deepest_allowed]
    assert fast(too_deep, 0) is None
    with pytest.raises(canonical.CanonicalError, match="too deep"):
        canonical.encode(too_deep)
    with pytest.raises(canonical.CanonicalError, match="too deep"):
        canonical.encode(deepest_allowed, depth=1)


@needs_fast
def test_a_value_that_contains_itself_is_refused_not_crashed() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert fast(loop, 0) is None
    with pytest.raises(canonical.CanonicalError, match="too deep"):
        canonical.encode(loop)


@needs_fast
def test_size_limit_applies_to_the_compiled_path() -> None:
    with pytest.raises(canonical.CanonicalError, match="limit"):
        canonical.encode(b"x" * (canonical.MAX_MESSAGE_BYTES + 1))


# A finalizer that empties the container being encoded, primed to run at the next
# allocation of a garbage-collected object. Regression (found in review): the encoder
# listed a map's keys into a new list, that allocation ran the collection, and the walk
# then read freed memory (a segfault). It now allocates no such object while walking.
FINALIZER_BOMB = textwrap.dedent("""
    import gc
    from consensus import canonical
    target = %s
    original = canonical.encode_pure(target)
    class Bomb:
        def __del__(self):
            target.clear()
    gc.disable()
    hold = [[] for _ in range(200)]  # empty the list free list: the next list is new
    bomb = Bomb(); bomb.cycle = bomb; del bomb
    gc.set_threshold(1)
    gc.enable()
    out = canonical._compiled_encode(target, 0)
    gc.disable()
    assert out is None or out == original, (out, original)
    print("ok")
""")


@needs_fast
@pytest.mark.parametrize("target", ['{"k%d" % i: i for i in range(20)}',
                                    '[{"k%d" % i: i} for i in range(50)]'])
def test_a_finalizer_emptying_the_value_cannot_crash_the_encoder(target: str) -> None:
    out = subprocess.run([sys.executable, "-c", FINALIZER_BOMB % target],
                         env={**os.environ, "PYTHONMALLOC": "debug"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_pure_codec_switch_turns_the_compiled_encoder_off(monkeypatch) -> None:
    from node.app import choose_codec

    built = canonical._compiled_encode is not None
    try:
        monkeypatch.setenv("JANGBU_PURE_CODEC", "1")
        assert choose_codec() is False
        assert canonical._fast_encode is None
        assert canonical.encode({"b": 1, "a": [2]}) == canonical.encode_pure({"a": [2], "b": 1})
        monkeypatch.delenv("JANGBU_PURE_CODEC")
        assert choose_codec() is built
    finally:
        canonical.use_compiled_encoder(True)
