"""The Definition-of-done demo, end to end, on the real in-process ledger."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.livestock import LivestockContract
from contracts.livestock.scenario import (
    CALF_1,
    DEMO_DEVICES,
    DEMO_ORGS,
    STORY_DAYS,
    demo_numbers,
    demo_steps,
)

from contract_harness import DAY_MS, make_ledger


def new_demo_ledger() -> Any:
    ledger = make_ledger(LivestockContract())
    for org in DEMO_ORGS:
        ledger.add_org(org["id"], org["roles"], org["business_ids"])
    for device in DEMO_DEVICES:
        ledger.new_key(device)
    return ledger


def run_demo(ledger: Any = None, **options: Any) -> tuple[Any, list[Any], dict[str, Any]]:
    """Apply every step (``options`` go to demo_steps) and check each code and answer."""
    ledger = ledger or new_demo_ledger()
    registered = options.pop("devices_registered", False)
    dated = options.get("dated", False)
    t0 = ledger.time_ms - STORY_DAYS * DAY_MS if dated else ledger.time_ms
    steps = demo_steps(lambda name: ledger.pub(name).hex(), ledger.sign_device, t0, **options)
    receipts = []
    answers: dict[str, Any] = {}
    for step in steps:
        if step.kind == "apply":
            if registered and step.action == "add_member":
                continue  # a later run reuses the devices registered by the first
            receipt = ledger.apply(step.signer, step.contract, step.action, step.args,
                                   advance_ms=step.advance_ms)
            assert receipt.code == step.expect, (step, receipt)
            receipts.append(receipt)
        else:
            answers[step.action] = ledger.query(step.contract, step.action, step.args)
            for name, expected in step.checks.items():
                if name == "origins":
                    got = [o["animal"] for o in answers[step.action]["consumer"]["origins"]]
                else:
                    got = answers[step.action][name]
                assert got == expected, (step, name, got)
    return ledger, receipts, answers


def test_demo_runs_from_birth_to_recall():
    _, receipts, answers = run_demo()
    types = [event.type for receipt in receipts for event in receipt.events]
    assert "violation" in types and "alert" in types and "recall_notice" in types
    consumer = answers["trace"]["consumer"]
    assert consumer["packer"] == "meatco" and consumer["shop"] == "meatco"
    assert {o["breed"] for o in consumer["origins"]} == {"Hanwoo"}
    assert {o["grade"] for o in consumer["origins"]} == {"1+", "1++"}
    assert all(o["farm"] == "farm-a" and o["slaughterhouse"] == "plant"
               for o in consumer["origins"])
    assert consumer["recalled"] is False


def test_demo_recall_notifies_every_affected_party():
    ledger, receipts, answers = run_demo()
    recall = next(r for r in receipts if any(e.type == "recall" for e in r.events))
    notified = sorted(e.attrs["org"] for e in recall.events if e.type == "recall_notice")
    assert notified == answers["recall_scope"]["parties"] == ["farm-b", "meatco", "plant"]
    for notice in (e for e in recall.events if e.type == "recall_notice"):
        assert notice.attrs["org"] in notice.keys
    for lot in answers["recall_scope"]["lots"]:
        assert ledger.query("livestock", "lot", {"number": lot})["state"] == "recalled"


def test_demo_steps_are_deterministic():
    pub = lambda name: name.ljust(64, "0")[:64]  # noqa: E731
    sign = lambda device, body: "ab" * 64  # noqa: E731
    assert demo_steps(pub, sign, 0) == demo_steps(pub, sign, 0)


def test_demo_steps_depend_on_the_run():
    pub = lambda name: name.ljust(64, "0")[:64]  # noqa: E731
    sign = lambda device, body: "ab" * 64  # noqa: E731
    assert demo_steps(pub, sign, 0, run=7) == demo_steps(pub, sign, 0, run=7)
    assert demo_steps(pub, sign, 0, run=7) != demo_steps(pub, sign, 0, run=8)


def test_demo_numbers_of_different_runs_never_collide():
    runs = [demo_numbers(r) for r in (0, 1, 99, 12_345)]
    for field in ("calves", "carcasses", "lot_serials"):
        values = [v for n in runs for v in getattr(n, field)]
        assert len(values) == len(set(values)), field
    assert demo_numbers(0).calves[0] == CALF_1 == "002100000016"


def test_invalid_demo_run_is_refused():
    with pytest.raises(ValueError):
        demo_numbers(-1)
    with pytest.raises(ValueError):
        demo_numbers(100_000)


def test_dated_demo_gets_the_same_codes_with_block_time_at_wall_clock():
    _, base_receipts, _ = run_demo()
    ledger, receipts, answers = run_demo(dated=True)
    assert [r.code for r in receipts] == [r.code for r in base_receipts]
    # Block time moved one second per step: the days are all in the arguments.
    assert ledger.time_ms - new_demo_ledger().time_ms == 1000 * len(receipts)
    late = [e.attrs for r in receipts for e in r.events
            if e.type == "violation" and e.attrs["code"] == "LATE_REPORT"]
    assert [a["animal"] for a in late] == [demo_numbers(0).calves[2]]
    assert answers["recall_scope"]["parties"] == ["farm-b", "meatco", "plant"]


def test_demo_runs_again_on_the_same_ledger_with_another_run():
    ledger, _, _ = run_demo(dated=True)
    _, receipts, answers = run_demo(ledger, dated=True, run=1, seq_base=3,
                                    devices_registered=True)
    assert all(r.code in ("OK", "E_WITHDRAWAL", "E_WEIGHT", "E_RECALLED") for r in receipts)
    assert answers["trace"]["consumer"]["origins"][0]["animal"] in demo_numbers(1).calves
