"""livestock rules version 3 against version 2 (a review of the livestock workflow).

Each test runs the same history under both versions: version 3 behaves as the workflow
needs, version 2 keeps its receipts (what a chain begun under it replays), which is also
what the code did before version 3 existed.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_livestock import COW, PASSED, birth, cut, day, events, setup_ledger, slaughter, violations
from test_livestock_readings import add_device, reading, submit

from contracts.livestock import LivestockContract
from contracts.livestock.identifiers import CHECK_DIGIT_RULES, compute_kst_day, format_yymmdd

from contract_harness import DAY_MS

L = "livestock"
V3 = pytest.mark.parametrize("version", ["2", "3"])


def ledger_of(version: str) -> Any:
    ledger = setup_ledger(LivestockContract(rules_version=version))
    ledger.add_org("plant-2", ["slaughterhouse"], ["0302"])
    return ledger


def arrive(ledger: Any, number: str = COW, plant: str = "plant") -> Any:
    return ledger.apply(plant, L, "arrival", {"animal": number})


def lot_dated(ledger: Any, serial: int, days_ago: int, business: str = "4521") -> str:
    yymmdd = format_yymmdd(compute_kst_day(ledger.time_ms + 1000) - days_ago)
    return f"L0{yymmdd}{business}{serial:03d}"


@V3
def test_a_check_digit_rule_change_does_not_strand_registered_animals(version: str) -> None:
    """Version 2: once the regulator switched to ``luhn``, an animal registered before it
    with a number failing ``luhn`` could not be taken in, arrive or be slaughtered; one
    shipped stayed in transit for good."""
    ledger = ledger_of(version)
    number = next(COW[:-1] + d for d in "0123456789" if not CHECK_DIGIT_RULES["luhn"](COW[:-1] + d))
    other = next(COW[:-2] + "7" + d for d in "0123456789"
                 if not CHECK_DIGIT_RULES["luhn"](COW[:-2] + "7" + d))
    assert birth(ledger, number).ok and birth(ledger, other).ok
    assert ledger.apply("farm-a", L, "transfer_out", {"animal": number, "to": "farm-b"}).ok
    assert ledger.apply("mafra", L, "update_rules", {"check_digit_rule": "luhn"}).ok
    taken_in = ledger.apply("farm-b", L, "transfer_in", {"animal": number})
    arrived = arrive(ledger, other)
    if version == "2":
        assert taken_in.code == arrived.code == "E_INVALID_ANIMAL_ID"
        return
    assert taken_in.ok and arrived.ok, (taken_in, arrived)
    assert slaughter(ledger, other).ok
    # A number not yet on the ledger meets the rule in force.
    fresh = next(COW[:-2] + "8" + d for d in "0123456789"
                 if not CHECK_DIGIT_RULES["luhn"](COW[:-2] + "8" + d))
    assert birth(ledger, fresh).code == "E_INVALID_ANIMAL_ID"


@V3
def test_an_animal_that_arrived_at_one_slaughterhouse_is_slaughtered_only_there(
        version: str) -> None:
    ledger = ledger_of(version)
    assert birth(ledger).ok and arrive(ledger).ok
    receipt = ledger.apply("plant-2", L, "slaughter", {
        "species": "cattle", "animal": COW, "carcass": "C9", "date": day(ledger),
        "weight_g": 300_000, "grade": "1+", "inspection": PASSED})
    if version == "2":
        assert receipt.ok
        return
    assert receipt.code == "E_FORBIDDEN" and not receipt.events
    assert ledger.query(L, "animal", {"id": COW})["state"] == "arrived"
    assert slaughter(ledger).ok  # where it arrived


@V3
def test_a_device_writes_readings_only_on_animals_with_its_organisation(version: str) -> None:
    """Version 2: a packer's device raised a fever alert on, and set the live weight of,
    a farm's animal (and so turned the carcass weight check off or on)."""
    ledger = ledger_of(version)
    assert birth(ledger).ok
    add_device(ledger, "pk-dev", org="packer")
    fever = submit(ledger, "pk-dev", reading(ledger, "pk-dev", 1, 415),
                   reading(ledger, "pk-dev", 2, 1_500_000, kind="weight"))
    if version == "2":
        assert fever.ok and events(fever, "alert")
        return
    assert fever.code == "E_FORBIDDEN" and not fever.events
    assert ledger.query(L, "animal", {"id": COW})["last_weight_g"] is None
    # The owner's device may; so may the receiving farm's while the animal travels to it,
    # and the slaughterhouse's once it arrived there.
    add_device(ledger, "collar")
    add_device(ledger, "b-scale", org="farm-b")
    add_device(ledger, "p-scale", org="plant")
    assert submit(ledger, "collar", reading(ledger, "collar", 1)).ok
    assert ledger.apply("farm-a", L, "transfer_out", {"animal": COW, "to": "farm-b"}).ok
    assert submit(ledger, "b-scale", reading(ledger, "b-scale", 1, 400_000, kind="weight")).ok
    assert ledger.apply("farm-b", L, "transfer_in", {"animal": COW}).ok
    assert arrive(ledger).ok
    assert submit(ledger, "p-scale", reading(ledger, "p-scale", 1, 390_000, kind="weight")).ok
    assert submit(ledger, "collar", reading(ledger, "collar", 2)).code == "E_FORBIDDEN"


@V3
def test_a_readings_event_names_its_animals_sites_and_devices(version: str) -> None:
    ledger = ledger_of(version)
    assert birth(ledger).ok
    collar = add_device(ledger, "collar")
    receipt = submit(ledger, "collar", reading(ledger, "collar", 1),
                     reading(ledger, "collar", 2, 30, site="barn-1"))
    assert receipt.ok
    keys = events(receipt, "record_readings")[0].keys
    expected = {COW, "barn-1", collar}
    assert expected <= set(keys) if version == "3" else not expected & set(keys)


@V3
def test_a_lot_is_not_dated_before_its_sources(version: str) -> None:
    ledger = ledger_of(version)
    assert birth(ledger, days_ago=30).ok and slaughter(ledger).ok
    early = cut(ledger, "C1", [(lot_dated(ledger, 1, days_ago=3), 50_000)])
    today_lots = [(lot_dated(ledger, 2, 0), 40_000), (lot_dated(ledger, 3, 0), 40_000)]
    if version == "2":
        assert early.ok
        return
    assert early.code == "E_INVALID_LOT" and "before its sources" in early.message
    assert cut(ledger, "C1", today_lots).ok
    bundle = ledger.apply("packer", L, "bundle", {
        "lot": lot_dated(ledger, 4, days_ago=1), "inputs": [n for n, _ in today_lots],
        "weight_g": 70_000})
    assert bundle.code == "E_INVALID_LOT"


def treated_two_days_ago(ledger: Any) -> Any:
    """The farm reports a 28-day treatment given two days ago, once the animal has left
    it; None under version 2, which refuses it (E_STATE, checked here)."""
    treat = ledger.apply("farm-a", L, "treat", {"animal": COW, "drug": "oxytetracycline",
                                               "withdrawal_days": 28, "date": day(ledger, -2)})
    if ledger.contracts[L].custody_checks:
        return treat
    assert treat.code == "E_STATE"
    return None


@V3
def test_a_treatment_reported_after_arrival_blocks_the_slaughter(version: str) -> None:
    ledger = ledger_of(version)
    assert birth(ledger, days_ago=30).ok and arrive(ledger).ok
    treat = treated_two_days_ago(ledger)
    if treat is None:
        return
    assert treat.ok and events(treat, "treat")[0].attrs["after_leaving"] == "arrived"
    assert slaughter(ledger).code == "E_WITHDRAWAL"


@V3
def test_a_treatment_reported_after_the_slaughter_is_recorded_and_flagged(
        version: str) -> None:
    """Version 2 refused it (E_STATE): the slaughter during the withdrawal period it
    reveals reached nobody."""
    ledger = ledger_of(version)
    assert birth(ledger, days_ago=30).ok and slaughter(ledger).ok
    treat = treated_two_days_ago(ledger)
    if treat is None:
        return
    assert treat.ok
    assert violations(treat) == ["SLAUGHTER_DURING_WITHDRAWAL"]
    flagged = events(treat, "violation")[0]
    assert {"C1", COW, "plant", "regulator"} <= set(flagged.keys)
    history = ledger.query(L, "trace", {"number": COW})
    assert "treat" in str(history)
    # A vaccination (no withdrawal) long before: recorded, flagged only as a late report.
    ok = ledger.apply("farm-a", L, "treat", {"animal": COW, "drug": "FMD vaccine",
                                            "kind": "vaccination", "withdrawal_days": 0,
                                            "date": day(ledger, -20)})
    assert ok.ok and violations(ok) == ["LATE_REPORT"]
    # Not dated after the slaughter.
    ledger.time_ms += DAY_MS
    later = ledger.apply("farm-a", L, "treat", {"animal": COW, "drug": "x",
                                               "withdrawal_days": 1, "date": day(ledger)})
    assert later.code == "E_INVALID_DATE"


def test_a_stray_arrival_does_not_strand_the_animal_and_is_flagged() -> None:
    """Review of version 3: any slaughterhouse may record an arrival, and slaughter is bound
    to the last one, so a stray arrival left the real slaughterhouse unable to arrive or
    slaughter. Its own arrival now supersedes the stray one, and the regulator is told."""
    ledger = ledger_of("3")
    assert birth(ledger).ok and arrive(ledger, plant="plant-2").ok
    real = arrive(ledger)
    assert real.ok and violations(real) == ["ARRIVAL_CONFLICT"]
    conflict = events(real, "violation")[0]
    assert conflict.attrs["previous"] == "plant-2"
    assert {COW, "plant-2", "farm-a", "regulator"} <= set(conflict.keys)
    assert ledger.query(L, "animal", {"id": COW})["location"] == "plant"
    assert slaughter(ledger).ok
    # Under version 2 the second arrival is a state error (and slaughter is not bound).
    old = ledger_of("2")
    assert birth(old).ok and arrive(old, plant="plant-2").ok
    assert arrive(old).code == "E_STATE"


def test_a_late_treatment_is_not_dated_after_the_arrival() -> None:
    ledger = ledger_of("3")
    assert birth(ledger, days_ago=30).ok and arrive(ledger).ok
    ledger.time_ms += 3 * DAY_MS
    after = ledger.apply("farm-a", L, "treat", {"animal": COW, "drug": "x",
                                               "withdrawal_days": 28, "date": day(ledger, -1)})
    assert after.code == "E_INVALID_DATE" and "arrived" in after.message
    before = ledger.apply("farm-a", L, "treat", {"animal": COW, "drug": "x",
                                                "withdrawal_days": 28, "date": day(ledger, -5)})
    assert before.ok


@V3
def test_a_herd_treatment_reported_after_a_batch_slaughter_flags_that_batch(
        version: str) -> None:
    """A pig herd treated before its batch was slaughtered, the treatment reported after:
    version 2 recorded it and told nobody of the slaughter during its withdrawal period."""
    ledger = ledger_of(version)
    assert ledger.apply("plant", L, "slaughter", {
        "species": "pig", "farm_no": "110001", "trace_no": "160012345678", "head_count": 5,
        "carcass": "P1", "date": day(ledger), "weight_g": 400_000, "grade": "1",
        "inspection": PASSED}).ok
    ledger.time_ms += DAY_MS
    treat = ledger.apply("farm-a", L, "treat", {"herd": "110001", "drug": "amoxicillin",
                                               "withdrawal_days": 14, "date": day(ledger, -3)})
    assert treat.ok
    if version == "2":
        assert violations(treat) == []
        return
    assert violations(treat) == ["SLAUGHTER_DURING_WITHDRAWAL"]
    flagged = events(treat, "violation")[0]
    assert flagged.attrs["trace_no"] == "160012345678" and flagged.attrs["carcass"] == "P1"
    assert {"P1", "160012345678", "110001", "plant", "regulator"} <= set(flagged.keys)
    # A vaccination (no withdrawal), or a treatment whose period ended before: no flag.
    for days_before, withdrawal in ((3, 0), (20, 2)):
        quiet = ledger.apply("farm-a", L, "treat", {
            "herd": "110001", "drug": "x", "withdrawal_days": withdrawal,
            "date": day(ledger, -days_before)})
        assert quiet.ok and "SLAUGHTER_DURING_WITHDRAWAL" not in violations(quiet)


def test_a_late_herd_treatment_flags_at_most_64_batches_and_is_always_recorded() -> None:
    """Review: one violation per batch had no bound; ~15,000 batches of one farm number
    (any slaughterhouse may record them) made the receipt too large to record, so the
    treatment, and with it the herd's withdrawal period, was lost."""
    ledger = ledger_of("3")
    for i in range(70):
        assert ledger.apply("plant", L, "slaughter", {
            "species": "pig", "farm_no": "110001", "trace_no": f"1600123{i:05d}",
            "head_count": 1, "carcass": f"P{i}", "date": day(ledger), "weight_g": 90_000,
            "grade": "1", "inspection": PASSED}).ok
    ledger.time_ms += DAY_MS
    treat = ledger.apply("farm-a", L, "treat", {"herd": "110001", "drug": "amoxicillin",
                                               "withdrawal_days": 14, "date": day(ledger, -3)})
    assert treat.ok
    flagged = events(treat, "violation")
    assert len(flagged) == 65 and flagged[-1].attrs["more_batches"] is True
    assert all("carcass" in f.attrs for f in flagged[:64])
    # The withdrawal period was recorded: the next batch is refused.
    assert ledger.apply("plant", L, "slaughter", {
        "species": "pig", "farm_no": "110001", "trace_no": "170012345678", "head_count": 1,
        "carcass": "PX", "date": day(ledger), "weight_g": 90_000, "grade": "1",
        "inspection": PASSED}).code == "E_WITHDRAWAL"


def test_a_batch_slaughtered_before_the_treatment_day_is_not_flagged() -> None:
    ledger = ledger_of("3")
    assert ledger.apply("plant", L, "slaughter", {
        "species": "pig", "farm_no": "110001", "trace_no": "160012345678", "head_count": 5,
        "carcass": "P1", "date": day(ledger), "weight_g": 400_000, "grade": "1",
        "inspection": PASSED}).ok
    ledger.time_ms += 3 * DAY_MS
    treat = ledger.apply("farm-a", L, "treat", {"herd": "110001", "drug": "amoxicillin",
                                               "withdrawal_days": 14, "date": day(ledger, -2)})
    assert treat.ok and "SLAUGHTER_DURING_WITHDRAWAL" not in violations(treat)
