"""The Definition-of-done demo, end to end, on the real in-process ledger."""

from __future__ import annotations

from typing import Any

from conftest import make_ledger

from contracts.livestock import LivestockContract
from contracts.livestock.scenario import DEMO_DEVICES, DEMO_ORGS, demo_steps


def run_demo() -> tuple[Any, list[Any], dict[str, Any]]:
    ledger = make_ledger(LivestockContract())
    for org in DEMO_ORGS:
        ledger.add_org(org["id"], org["roles"], org["business_ids"])
    for device in DEMO_DEVICES:
        ledger.new_key(device)
    steps = demo_steps(lambda name: ledger.pub(name).hex(), ledger.sign_device, ledger.time_ms)
    receipts = []
    answers: dict[str, Any] = {}
    for step in steps:
        if step.kind == "apply":
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
