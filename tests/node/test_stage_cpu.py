"""node.stage_cpu: the opt-in per-stage CPU accounting wraps what it names, counts it, and
puts everything back.

The stage list names the node's functions by string; these tests fail when one of them is
renamed, rather than the accounting silently measuring nothing.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator

import pytest
from nacl.signing import SigningKey

from node import stage_cpu
from node.stage_cpu import STAGES, Stage
from node.tx import Transaction


@pytest.fixture
def accounting() -> Iterator[None]:
    stage_cpu.reset()
    stage_cpu.install()
    try:
        yield
    finally:
        stage_cpu.uninstall()
        stage_cpu.reset()


def raw_attribute(stage: Stage) -> object:
    cls = getattr(importlib.import_module(stage.module), stage.cls)
    return cls.__dict__[stage.attr]


def signed_tx() -> Transaction:
    return Transaction.create(SigningKey(b"\x05" * 32), "stage-chain", "clearance",
                              "cancel", {"order_id": "O-1"}, 1)


def test_every_stage_names_a_function_of_the_node_and_is_named_once() -> None:
    names = [stage.name for stage in STAGES]
    assert len(names) == len(set(names))
    for stage in STAGES:
        assert callable(getattr(raw_attribute(stage), "__func__", raw_attribute(stage)))
        for outer in filter(None, (part.strip() for part in stage.within.split(","))):
            assert outer in names, (stage.name, outer)


def test_install_wraps_every_stage_and_uninstall_puts_back_the_same_objects() -> None:
    before = {stage.name: raw_attribute(stage) for stage in STAGES}
    stage_cpu.install()
    try:
        assert stage_cpu.installed()
        for stage in STAGES:
            assert raw_attribute(stage) is not before[stage.name], stage.name
        wrapped = {stage.name: raw_attribute(stage) for stage in STAGES}
        stage_cpu.install()  # a second install wraps nothing twice
        assert {stage.name: raw_attribute(stage) for stage in STAGES} == wrapped
    finally:
        stage_cpu.uninstall()
    assert not stage_cpu.installed()
    for stage in STAGES:
        assert raw_attribute(stage) is before[stage.name], stage.name


def test_a_classmethod_stays_one_and_its_calls_and_cpu_are_counted(accounting: None) -> None:
    tx = signed_tx()
    assert isinstance(Transaction.__dict__["decode"], classmethod)
    for _ in range(3):
        decoded = Transaction.decode(tx.encoded)
        assert type(decoded) is Transaction and decoded == tx
    seconds, calls = stage_cpu.totals["tx_decode"]
    assert calls == 3 and seconds >= 0.0
    assert decoded.verify_signature()
    assert stage_cpu.totals["signature_check"][1] == 1


def test_an_exception_is_still_charged_and_raised_unchanged(accounting: None) -> None:
    from node.tx import TxError
    with pytest.raises(TxError) as raised:
        Transaction.decode(b"\xc1")
    assert raised.value.code == "E_MALFORMED_TX"
    assert stage_cpu.totals["tx_decode"][1] == 1


class Sample:
    """Stand-ins for what a stage must not be, and for a static method."""

    limit = 3

    async def coroutine(self) -> None:
        return None

    def generator(self) -> Iterator[int]:
        yield 1

    @property
    def value(self) -> int:
        return 1

    @staticmethod
    def double(x: int) -> int:
        return 2 * x


@pytest.mark.parametrize("attr", ["no_such_method", "coroutine", "generator", "value",
                                  "limit"])
def test_a_stage_that_cannot_be_timed_wraps_nothing(monkeypatch: pytest.MonkeyPatch,
                                                     attr: str) -> None:
    before = {stage.name: raw_attribute(stage) for stage in STAGES}
    bad = Stage("bad", __name__, "Sample", attr)
    monkeypatch.setattr(stage_cpu, "STAGES", (*STAGES, bad))
    monkeypatch.setitem(stage_cpu.totals, "bad", [0.0, 0])
    with pytest.raises(LookupError, match=attr):
        stage_cpu.install()
    assert not stage_cpu.installed()
    for stage in STAGES:
        assert raw_attribute(stage) is before[stage.name], stage.name


def test_a_static_method_stays_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage_cpu, "STAGES", (Stage("double", __name__, "Sample", "double"),))
    monkeypatch.setitem(stage_cpu.totals, "double", [0.0, 0])
    original = Sample.__dict__["double"]
    stage_cpu.install()
    try:
        assert isinstance(Sample.__dict__["double"], staticmethod)
        assert Sample.double(4) == 8 and Sample().double(5) == 10
        assert stage_cpu.totals["double"][1] == 2
    finally:
        stage_cpu.uninstall()
    assert Sample.__dict__["double"] is original


def test_every_stage_is_a_plain_function() -> None:
    """Not a coroutine or generator: a wrapper would time only the creation of its object."""
    for stage in STAGES:
        raw = raw_attribute(stage)
        function = getattr(raw, "__func__", raw)
        assert inspect.isfunction(function), stage.name
        assert not (inspect.iscoroutinefunction(function) or inspect.isgeneratorfunction(
            function) or inspect.isasyncgenfunction(function)), stage.name
