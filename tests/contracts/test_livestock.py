"""livestock: each action, by the rule it enforces (set-up / act / check).

Helpers here are shared by the other ``test_livestock_*`` files.
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts.livestock import LivestockContract
from contracts.livestock.identifiers import compute_kst_day, format_day, format_yymmdd
from contracts.livestock.scenario import with_check_digit

from contract_harness import DAY_MS, make_ledger

COW = with_check_digit("20000001")
COW_2 = with_check_digit("20000002")
STRANGER = with_check_digit("20000099")
PASSED = {"passed": True, "residue": "negative", "bse": "negative"}


def setup_ledger(contract: LivestockContract | None = None) -> Any:
    ledger = make_ledger(contract or LivestockContract())
    ledger.add_org("farm-a", ["farm"], ["110001"])
    ledger.add_org("farm-b", ["farm"], ["220002"])
    ledger.add_org("plant", ["slaughterhouse"], ["0301"])
    ledger.add_org("packer", ["packer"], ["4521"])
    ledger.add_org("packer-2", ["packer"], ["4600"])
    ledger.add_org("shop", ["shop"], ["7001"])
    ledger.add_org("shop-2", ["shop"], ["7002"])
    ledger.add_org("mafra", ["regulator"])
    return ledger


def day(ledger: Any, offset: int = 0) -> str:
    """The KST date of the next block (default advance 1 s), shifted by ``offset`` days."""
    return format_day(compute_kst_day(ledger.time_ms + 1000) + offset)


def lot_no(ledger: Any, serial: int, product: str = "0", business: str = "4521") -> str:
    yymmdd = format_yymmdd(compute_kst_day(ledger.time_ms + 1000))
    return f"L{product}{yymmdd}{business}{serial:03d}"


def birth(ledger: Any, number: str = COW, *, days_ago: int = 1, farm: str = "farm-a",
          **extra: Any) -> Any:
    args = {"id": number, "species": "cattle", "breed": "Hanwoo", "sex": "female",
            "birth_date": day(ledger, -days_ago), **extra}
    return ledger.apply(farm, "livestock", "register_birth", args)


def slaughter(ledger: Any, number: str = COW, carcass: str = "C1", *, weight_g: int = 300_000,
              inspection: dict[str, Any] | None = None, **extra: Any) -> Any:
    args = {"species": "cattle", "animal": number, "carcass": carcass, "date": day(ledger),
            "weight_g": weight_g, "grade": "1+", "inspection": inspection or PASSED, **extra}
    return ledger.apply("plant", "livestock", "slaughter", args)


def cut(ledger: Any, carcass: str, lots: list[tuple[str, int]], packer: str = "packer") -> Any:
    return ledger.apply(packer, "livestock", "cut", {
        "carcass": carcass, "lots": [{"lot": n, "weight_g": w} for n, w in lots]})


def carcass_with_lots(ledger: Any, number: str = COW, carcass: str = "C1",
                      serials: tuple[int, ...] = (1, 2)) -> list[str]:
    """Birth -> slaughter -> cut into 100 kg lots; returns the lot numbers."""
    assert birth(ledger, number).ok
    assert slaughter(ledger, number, carcass).ok
    lots = [lot_no(ledger, s) for s in serials]
    assert cut(ledger, carcass, [(n, 100_000) for n in lots]).ok
    return lots


def events(receipt: Any, type_: str) -> list[Any]:
    return [e for e in receipt.events if e.type == type_]


def violations(receipt: Any) -> list[str]:
    return [e.attrs["code"] for e in events(receipt, "violation")]


# --- register_birth ------------------------------------------------------------------------


def test_birth_registers_alive_animal_and_reports_it():
    ledger = setup_ledger()
    receipt = birth(ledger, farm_no="110001")
    assert receipt.ok, receipt
    animal = ledger.query("livestock", "animal", {"id": COW})
    assert animal["state"] == "alive" and animal["owner"] == "farm-a"
    assert animal["farm_no"] == "110001" and animal["late_report"] is False
    report = events(receipt, "register_birth")[0]
    assert report.attrs["report"] is True and COW in report.keys and "farm-a" in report.keys
    assert violations(receipt) == []


def test_birth_reported_more_than_five_days_late_is_accepted_but_flagged():
    ledger = setup_ledger()
    receipt = birth(ledger, days_ago=6)
    assert receipt.ok
    assert violations(receipt) == ["LATE_REPORT"]
    animal = ledger.query("livestock", "animal", {"id": COW})
    assert animal["late_report"] is True and animal["flags"] == ["LATE_REPORT"]


def test_birth_reported_exactly_five_days_after_is_on_time():
    ledger = setup_ledger()
    receipt = birth(ledger, days_ago=5)
    assert receipt.ok and violations(receipt) == []


def test_late_report_uses_korean_calendar_day():
    ledger = setup_ledger()
    # 2026-01-06T15:30Z is already 2026-01-07 00:30 in Korea: a birth on 01-01 is 6 days old.
    ledger.time_ms = 1_767_225_600_000 + 5 * DAY_MS + 15 * 3_600_000 + 30 * 60_000 - 1000
    receipt = birth(ledger, birth_date="2026-01-01")
    assert receipt.ok and violations(receipt) == ["LATE_REPORT"]


@pytest.mark.parametrize("number", ["001000000011", "00200000001", "0020000000111", "00200000001x"])
def test_invalid_cattle_number_format_is_refused(number):
    ledger = setup_ledger()
    assert birth(ledger, number).code == "E_INVALID_ANIMAL_ID"


def test_invalid_check_digit_under_configured_rule_is_refused():
    ledger = setup_ledger()
    assert ledger.apply("mafra", "livestock", "update_rules", {"check_digit_rule": "mod10"}).ok
    bad = COW[:-1] + str((int(COW[-1]) + 1) % 10)
    assert birth(ledger, bad).code == "E_INVALID_ANIMAL_ID"
    assert birth(ledger, COW).ok
    assert ledger.query("livestock", "rules")["check_digit_rule"] == "mod10"


def test_default_check_digit_rule_accepts_any_digit():
    ledger = setup_ledger()
    assert birth(ledger, COW[:-1] + str((int(COW[-1]) + 1) % 10)).ok


def test_invalid_update_rules_by_non_regulator_or_unknown_rule():
    ledger = setup_ledger()
    assert ledger.apply("farm-a", "livestock", "update_rules",
                        {"check_digit_rule": "mod10"}).code == "E_ROLE"
    assert ledger.apply("mafra", "livestock", "update_rules",
                        {"check_digit_rule": "secret"}).code == "E_ARGS"


def test_invalid_birth_by_non_farm_is_refused():
    ledger = setup_ledger()
    assert birth(ledger, farm="plant").code == "E_ROLE"


@pytest.mark.parametrize("date", ["2026-02-30", "2026-13-01", "26-01-01", "2026/01/01"])
def test_invalid_birth_date_is_refused(date):
    ledger = setup_ledger()
    assert birth(ledger, birth_date=date).code == "E_INVALID_DATE"


def test_invalid_birth_in_the_future_is_refused():
    ledger = setup_ledger()
    assert birth(ledger, days_ago=-1).code == "E_INVALID_DATE"


def test_invalid_duplicate_birth_is_refused():
    ledger = setup_ledger()
    assert birth(ledger).ok
    assert birth(ledger, farm="farm-b").code == "E_EXISTS"


def test_invalid_birth_args():
    ledger = setup_ledger()
    assert birth(ledger, species="pig").code == "E_INVALID_SPECIES"
    assert birth(ledger, sex="unknown").code == "E_ARGS"
    assert birth(ledger, breed="").code == "E_ARGS"
    assert birth(ledger, dam="12345").code == "E_INVALID_ANIMAL_ID"
    assert birth(ledger, farm_no="220002").code == "E_BUSINESS_ID"
    assert birth(ledger, color="brown").code == "OK"  # unknown args are ignored, not stored
    assert "color" not in ledger.query("livestock", "animal", {"id": COW})


def test_invalid_non_integer_argument_never_reaches_state():
    ledger = setup_ledger()
    assert birth(ledger).ok
    before = dict(ledger.base.data)
    receipt = ledger.apply("farm-a", "livestock", "treat",
                           {"animal": COW, "drug": "x", "withdrawal_days": True})
    assert receipt.code == "E_ARGS" and ledger.base.data == before


# --- transfers, arrival, death -------------------------------------------------------------


def test_transfer_moves_animal_after_receiver_confirms():
    ledger = setup_ledger()
    assert birth(ledger).ok
    out = ledger.apply("farm-a", "livestock", "transfer_out", {"animal": COW, "to": "farm-b"})
    assert out.ok and "farm-b" in events(out, "transfer_out")[0].keys
    assert ledger.query("livestock", "animal", {"id": COW})["state"] == "in_transit"
    assert ledger.apply("farm-b", "livestock", "transfer_in", {"animal": COW}).ok
    animal = ledger.query("livestock", "animal", {"id": COW})
    assert animal["state"] == "alive" and animal["owner"] == "farm-b"
    assert animal["farm_no"] == "220002" and animal["birth_farm"] == "farm-a"
    assert [h["action"] for h in animal["history"]] == ["birth", "transfer_out", "transfer_in"]


def test_receiver_may_refuse_a_transfer():
    ledger = setup_ledger()
    assert birth(ledger).ok
    assert ledger.apply("farm-a", "livestock", "transfer_out", {"animal": COW, "to": "farm-b"}).ok
    assert ledger.apply("farm-b", "livestock", "transfer_in", {"animal": COW, "accept": False}).ok
    animal = ledger.query("livestock", "animal", {"id": COW})
    assert animal["state"] == "alive" and animal["owner"] == "farm-a"


def test_invalid_transfers_are_refused():
    ledger = setup_ledger()
    assert ledger.apply("farm-a", "livestock", "transfer_out",
                        {"animal": COW, "to": "farm-b"}).code == "E_NOT_FOUND"
    assert birth(ledger).ok
    assert ledger.apply("farm-b", "livestock", "transfer_out",
                        {"animal": COW, "to": "farm-a"}).code == "E_FORBIDDEN"
    assert ledger.apply("farm-a", "livestock", "transfer_out",
                        {"animal": COW, "to": "plant"}).code == "E_ARGS"
    assert ledger.apply("farm-a", "livestock", "transfer_out",
                        {"animal": COW, "to": "farm-a"}).code == "E_ARGS"
    assert ledger.apply("farm-a", "livestock", "transfer_out",
                        {"animal": COW, "to": "nobody"}).code == "E_NOT_FOUND"
    assert ledger.apply("farm-b", "livestock", "transfer_in", {"animal": COW}).code == "E_STATE"
    assert ledger.apply("plant", "livestock", "transfer_out",
                        {"animal": COW, "to": "farm-b"}).code == "E_ROLE"
    assert ledger.apply("farm-a", "livestock", "transfer_out",
                        {"animal": "bad", "to": "farm-b"}).code == "E_INVALID_ANIMAL_ID"
    ledger.add_org("farm-c", ["farm"], ["330003"])
    assert ledger.apply("farm-a", "livestock", "transfer_out", {"animal": COW, "to": "farm-b"}).ok
    assert ledger.apply("farm-a", "livestock", "transfer_out",
                        {"animal": COW, "to": "farm-b"}).code == "E_STATE"
    assert ledger.apply("farm-c", "livestock", "transfer_in",
                        {"animal": COW}).code == "E_FORBIDDEN"


def test_movement_of_unregistered_animal_is_accepted_as_a_violation_report():
    ledger = setup_ledger()
    receipt = ledger.apply("farm-b", "livestock", "transfer_in",
                           {"animal": STRANGER, "from": "farm-a"})
    assert receipt.ok and violations(receipt) == ["UNREGISTERED_ANIMAL"]
    assert ledger.query("livestock", "unregistered", {"number": STRANGER})[0]["org"] == "farm-b"
    arrival = ledger.apply("plant", "livestock", "arrival", {"animal": STRANGER})
    assert arrival.ok and violations(arrival) == ["UNREGISTERED_ANIMAL"]
    # ...but the animal still does not exist: it can be neither moved nor slaughtered.
    assert slaughter(ledger, STRANGER).code == "E_NOT_FOUND"
    assert ledger.apply("farm-b", "livestock", "transfer_out",
                        {"animal": STRANGER, "to": "farm-a"}).code == "E_NOT_FOUND"


def test_arrival_at_slaughterhouse():
    ledger = setup_ledger()
    assert birth(ledger).ok
    assert ledger.apply("plant", "livestock", "arrival", {"animal": COW}).ok
    assert ledger.query("livestock", "animal", {"id": COW})["state"] == "arrived"
    assert ledger.apply("plant", "livestock", "arrival", {"animal": COW}).code == "E_STATE"
    assert ledger.apply("farm-a", "livestock", "arrival", {"animal": COW}).code == "E_ROLE"
    assert slaughter(ledger).ok


def test_death_is_final():
    ledger = setup_ledger()
    assert birth(ledger).ok
    assert ledger.apply("farm-b", "livestock", "death", {"animal": COW}).code == "E_FORBIDDEN"
    assert ledger.apply("farm-a", "livestock", "death", {"animal": COW, "cause": "bloat"}).ok
    assert ledger.query("livestock", "animal", {"id": COW})["state"] == "dead"
    assert ledger.apply("farm-a", "livestock", "death", {"animal": COW}).code == "E_STATE"
    assert ledger.apply("farm-a", "livestock", "treat", {
        "animal": COW, "drug": "x", "withdrawal_days": 0}).code == "E_STATE"
    assert slaughter(ledger).code == "E_STATE"


# --- treatment and withdrawal --------------------------------------------------------------


def test_slaughter_during_withdrawal_is_refused_and_allowed_after():
    ledger = setup_ledger()
    assert birth(ledger).ok
    treat = ledger.apply("farm-a", "livestock", "treat",
                         {"animal": COW, "drug": "penicillin", "withdrawal_days": 3})
    assert treat.ok and events(treat, "treat")[0].attrs["withdrawal_days"] == 3
    assert slaughter(ledger).code == "E_WITHDRAWAL"
    ledger.time_ms += 3 * DAY_MS - 5000
    assert slaughter(ledger).code == "E_WITHDRAWAL"
    ledger.time_ms += 5000
    assert slaughter(ledger).ok


def test_vaccination_without_withdrawal_does_not_block_slaughter():
    ledger = setup_ledger()
    assert birth(ledger).ok
    assert ledger.apply("farm-a", "livestock", "treat", {
        "animal": COW, "drug": "FMD vaccine", "kind": "vaccination", "withdrawal_days": 0}).ok
    assert slaughter(ledger).ok


def test_invalid_treatments_are_refused():
    ledger = setup_ledger()
    assert birth(ledger).ok
    base = {"animal": COW, "drug": "x", "withdrawal_days": 1}
    assert ledger.apply("plant", "livestock", "treat", base).code == "E_ROLE"
    assert ledger.apply("farm-b", "livestock", "treat", base).code == "E_FORBIDDEN"
    assert ledger.apply("farm-a", "livestock", "treat",
                        {**base, "withdrawal_days": -1}).code == "E_ARGS"
    assert ledger.apply("farm-a", "livestock", "treat", {**base, "drug": " "}).code == "E_ARGS"
    assert ledger.apply("farm-a", "livestock", "treat",
                        {**base, "herd": "110001"}).code == "E_ARGS"
    assert ledger.apply("farm-a", "livestock", "treat",
                        {**base, "kind": "surgery"}).code == "E_ARGS"
    assert ledger.apply("farm-a", "livestock", "treat", {
        "herd": "220002", "drug": "x", "withdrawal_days": 1}).code == "E_BUSINESS_ID"


# --- slaughter -------------------------------------------------------------------------------


def test_slaughter_records_carcass_grade_and_inspection():
    ledger = setup_ledger()
    assert birth(ledger).ok
    receipt = slaughter(ledger)
    assert receipt.ok, receipt
    carcass = ledger.query("livestock", "carcass", {"number": "C1"})
    assert carcass["state"] == "passed" and carcass["grade"] == "1+"
    assert carcass["animals"] == [COW] and carcass["farm"] == "farm-a"
    assert ledger.query("livestock", "animal", {"id": COW})["state"] == "slaughtered"
    assert {"C1", COW, "farm-a", "plant"} <= set(events(receipt, "slaughter")[0].keys)


def test_invalid_slaughters_are_refused():
    ledger = setup_ledger()
    assert slaughter(ledger).code == "E_NOT_FOUND"
    assert birth(ledger).ok
    assert birth(ledger, COW_2).ok
    assert ledger.apply("farm-a", "livestock", "slaughter", {
        "species": "cattle", "animal": COW, "carcass": "C1", "date": day(ledger),
        "weight_g": 1, "grade": "1", "inspection": PASSED}).code == "E_ROLE"
    assert slaughter(ledger, grade="A").code == "E_INVALID_GRADE"
    assert slaughter(ledger, date=day(ledger, 1)).code == "E_INVALID_DATE"
    assert slaughter(ledger, date=day(ledger, -3)).code == "E_INVALID_DATE"  # before birth
    assert slaughter(ledger, carcass="bad/no").code == "E_INVALID_CARCASS"
    assert slaughter(ledger, carcass="123456789012").code == "E_INVALID_CARCASS"
    assert slaughter(ledger, weight_g=0).code == "E_ARGS"
    assert slaughter(ledger, inspection={"residue": "negative"}).code == "E_ARGS"
    assert slaughter(ledger, species="goat").code == "E_INVALID_SPECIES"
    assert slaughter(ledger, trace_no="123456789012").code == "E_ARGS"
    assert slaughter(ledger).ok
    assert slaughter(ledger).code == "E_EXISTS"
    assert slaughter(ledger, carcass="C2").code == "E_STATE"
    assert slaughter(ledger, COW_2, carcass="C1").code == "E_EXISTS"


def test_carcass_heavier_than_live_weight_is_flagged():
    ledger = setup_ledger()
    assert birth(ledger).ok
    ledger.new_key("scale")
    scale = ledger.pub("scale").hex()
    assert ledger.apply("farm-a", "membership", "add_member",
                        {"pubkey": scale, "kind": "device"}).ok
    body = {"device": scale, "animal": COW, "kind": "weight", "value": 250_000, "seq": 1}
    assert ledger.apply("scale", "livestock", "record_readings",
                        {"readings": [{**body, "sig": ledger.sign_device("scale", body)}]}).ok
    receipt = slaughter(ledger, weight_g=260_000)
    assert receipt.ok and violations(receipt) == ["WEIGHT_INCONSISTENCY"]


def test_late_slaughter_report_is_flagged():
    ledger = setup_ledger()
    assert birth(ledger, days_ago=30).ok
    receipt = slaughter(ledger, date=day(ledger, -6))
    assert receipt.ok and violations(receipt) == ["LATE_REPORT"]


def test_pig_batch_slaughter_issues_trace_number_per_farm_shipment():
    ledger = setup_ledger()
    args = {"species": "pig", "farm_no": "110001", "trace_no": "160012345678",
            "head_count": 20, "carcass": "P1", "date": day(ledger), "weight_g": 1_800_000,
            "grade": "1+", "inspection": {"passed": True, "residue": "negative"}}
    receipt = ledger.apply("plant", "livestock", "slaughter", args)
    assert receipt.ok, receipt
    carcass = ledger.query("livestock", "carcass", {"number": "P1"})
    assert carcass["farm"] == "farm-a" and carcass["head_count"] == 20
    assert ledger.query("livestock", "trace", {"number": "160012345678"})["root"] == "carcass:P1"
    lot = lot_no(ledger, 1, product="1")
    assert cut(ledger, "P1", [(lot, 500_000)]).ok
    assert cut(ledger, "P1", [(lot_no(ledger, 2), 1)]).code == "E_INVALID_LOT"  # beef code
    again = {**args, "carcass": "P2"}
    assert ledger.apply("plant", "livestock", "slaughter", again).code == "E_EXISTS"
    unknown = {**args, "carcass": "P3", "trace_no": "160012345679", "farm_no": "999999"}
    assert ledger.apply("plant", "livestock", "slaughter", unknown).code == "E_NOT_FOUND"
    bad = {**args, "carcass": "P4", "trace_no": "16001234567"}
    assert ledger.apply("plant", "livestock", "slaughter", bad).code == "E_INVALID_TRACE_NO"
    bad = {**args, "carcass": "P4", "farm_no": "11000"}
    assert ledger.apply("plant", "livestock", "slaughter", bad).code == "E_INVALID_FARM_NO"
    assert ledger.apply("plant", "livestock", "slaughter",
                        {**args, "carcass": "P4", "animal": COW}).code == "E_ARGS"


def test_pig_herd_withdrawal_blocks_batch_slaughter():
    ledger = setup_ledger()
    assert ledger.apply("farm-a", "livestock", "treat",
                        {"herd": "110001", "drug": "amoxicillin", "withdrawal_days": 2}).ok
    args = {"species": "pig", "farm_no": "110001", "trace_no": "160012345678",
            "head_count": 5, "carcass": "P1", "date": day(ledger), "weight_g": 400_000,
            "grade": "1", "inspection": PASSED}
    assert ledger.apply("plant", "livestock", "slaughter", args).code == "E_WITHDRAWAL"
    ledger.time_ms += 2 * DAY_MS
    assert ledger.apply("plant", "livestock", "slaughter", {**args, "date": day(ledger)}).ok


# --- failed inspection -----------------------------------------------------------------------


@pytest.mark.parametrize("inspection", [
    {"passed": False, "residue": "negative", "bse": "negative"},
    {"passed": True, "residue": "positive", "bse": "negative"},
    {"passed": True, "residue": "negative", "bse": "positive"},
])
def test_failed_inspection_is_recorded_flagged_and_blocks_every_lot(inspection):
    ledger = setup_ledger()
    assert birth(ledger).ok
    receipt = slaughter(ledger, inspection=inspection)
    assert receipt.ok and violations(receipt) == ["INSPECTION_FAILED"]
    assert ledger.query("livestock", "carcass", {"number": "C1"})["state"] == "failed"
    assert cut(ledger, "C1", [(lot_no(ledger, 1), 1000)]).code == "E_INSPECTION_FAILED"
    assert ledger.query("livestock", "trace", {"number": COW})["consumer"]["origins"][0][
        "inspection"] == "fail"


# --- cut and bundle ------------------------------------------------------------------------


def test_cut_creates_lots_linked_to_the_carcass():
    ledger = setup_ledger()
    lots = carcass_with_lots(ledger)
    lot = ledger.query("livestock", "lot", {"number": lots[0]})
    assert lot["state"] == "packed" and lot["inputs"] == ["carcass:C1"]
    assert lot["packer"] == "packer" and lot["weight_g"] == 100_000
    assert ledger.query("livestock", "carcass", {"number": "C1"})["cut_g"] == 200_000


def test_invalid_cut_heavier_than_carcass_is_refused():
    ledger = setup_ledger()
    assert birth(ledger).ok and slaughter(ledger, weight_g=300_000).ok
    assert cut(ledger, "C1", [(lot_no(ledger, 1), 200_000),
                              (lot_no(ledger, 2), 100_001)]).code == "E_WEIGHT"
    assert cut(ledger, "C1", [(lot_no(ledger, 1), 200_000)]).ok
    # Cuts add up: a second cut may only use what is left.
    assert cut(ledger, "C1", [(lot_no(ledger, 2), 100_001)]).code == "E_WEIGHT"
    assert cut(ledger, "C1", [(lot_no(ledger, 2), 100_000)]).ok


def test_invalid_cuts_are_refused():
    ledger = setup_ledger()
    assert birth(ledger).ok and slaughter(ledger).ok
    good = lot_no(ledger, 1)
    assert cut(ledger, "C9", [(good, 1)]).code == "E_NOT_FOUND"
    assert cut(ledger, "C1", [(good, 1)], packer="shop").code == "E_ROLE"
    assert cut(ledger, "C1", [("L01234", 1)]).code == "E_INVALID_LOT"
    assert cut(ledger, "C1", [("L3" + good[2:], 1)]).code == "E_INVALID_LOT"  # product code
    assert cut(ledger, "C1", [("L1" + good[2:], 1)]).code == "E_INVALID_LOT"  # pork from beef
    assert cut(ledger, "C1", [("L0261340" + good[8:], 1)]).code == "E_INVALID_LOT"  # 13th month
    assert cut(ledger, "C1", [("L0991231" + good[8:], 1)]).code == "E_INVALID_LOT"  # future
    assert cut(ledger, "C1", [(lot_no(ledger, 1, business="4600"), 1)]).code == "E_BUSINESS_ID"
    assert cut(ledger, "C1", [(good, 1), (good, 2)]).code == "E_ARGS"
    assert cut(ledger, "C1", [(good, 0)]).code == "E_ARGS"
    assert cut(ledger, "C1", [(good, 1)]).ok
    assert cut(ledger, "C1", [(good, 1)]).code == "E_EXISTS"


def test_bundle_joins_lots_of_several_animals():
    ledger = setup_ledger()
    a = carcass_with_lots(ledger, COW, "C1", (1,))
    b = carcass_with_lots(ledger, COW_2, "C2", (2,))
    bundle = lot_no(ledger, 3)
    receipt = ledger.apply("packer", "livestock", "bundle",
                           {"inputs": [a[0], b[0]], "lot": bundle, "weight_g": 200_000})
    assert receipt.ok, receipt
    assert ledger.query("livestock", "lot", {"number": a[0]})["state"] == "bundled"
    trace = ledger.query("livestock", "trace", {"number": bundle})
    assert sorted(o["animal"] for o in trace["consumer"]["origins"]) == sorted([COW, COW_2])


def test_invalid_bundles_are_refused():
    ledger = setup_ledger()
    lots = carcass_with_lots(ledger, serials=(1, 2, 3))
    target = lot_no(ledger, 9)
    def bundle(inputs, weight_g=100_000, signer="packer", lot=target):
        return ledger.apply(signer, "livestock", "bundle",
                            {"inputs": inputs, "lot": lot, "weight_g": weight_g})
    assert bundle(lots[:2], 200_001).code == "E_WEIGHT"
    assert bundle(lots[:1]).code == "E_ARGS"
    assert bundle([lots[0], lots[0]]).code == "E_ARGS"
    assert bundle([lots[0], "nope"]).code == "E_INVALID_LOT"
    assert bundle([lots[0], lot_no(ledger, 8)]).code == "E_NOT_FOUND"
    assert bundle(lots[:2], signer="shop").code == "E_ROLE"
    assert bundle(lots[:2], signer="packer-2",
                  lot=lot_no(ledger, 9, business="4600")).code == "E_FORBIDDEN"
    assert bundle(lots[:2], lot=lots[0]).code == "E_ARGS"
    assert bundle(lots[:2], lot=lots[2]).code == "E_EXISTS"
    assert bundle(lots[:2]).ok
    assert bundle(lots[1:], lot=lot_no(ledger, 10)).code == "E_STATE"  # lots[1] is bundled


def test_invalid_bundle_of_mixed_products_is_refused():
    ledger = setup_ledger()
    beef = carcass_with_lots(ledger, serials=(1,))
    pig = {"species": "pig", "farm_no": "110001", "trace_no": "160012345678", "head_count": 1,
           "carcass": "P1", "date": day(ledger), "weight_g": 100_000, "grade": "1",
           "inspection": PASSED}
    assert ledger.apply("plant", "livestock", "slaughter", pig).ok
    pork = lot_no(ledger, 2, product="1")
    assert cut(ledger, "P1", [(pork, 50_000)]).ok
    assert ledger.apply("packer", "livestock", "bundle", {
        "inputs": [beef[0], pork], "lot": lot_no(ledger, 3),
        "weight_g": 1}).code == "E_INVALID_LOT"


# --- receive and sell ------------------------------------------------------------------------


def test_shop_receives_and_sells_until_sold_out():
    ledger = setup_ledger()
    lots = carcass_with_lots(ledger, serials=(1,))
    assert ledger.apply("shop", "livestock", "receive", {"lot": lots[0]}).ok
    sale = ledger.apply("shop", "livestock", "sell",
                        {"lot": lots[0], "weight_g": 60_000, "package": "PKG-1"})
    assert sale.ok and events(sale, "sell")[0].attrs["remaining_g"] == 40_000
    assert ledger.apply("shop", "livestock", "sell",
                        {"lot": lots[0], "weight_g": 40_001}).code == "E_WEIGHT"
    assert ledger.apply("shop", "livestock", "sell", {"lot": lots[0], "weight_g": 40_000}).ok
    assert ledger.query("livestock", "lot", {"number": lots[0]})["state"] == "sold_out"
    assert ledger.apply("shop", "livestock", "sell",
                        {"lot": lots[0], "weight_g": 1}).code == "E_STATE"


def test_invalid_receive_and_sell_are_refused():
    ledger = setup_ledger()
    lots = carcass_with_lots(ledger)
    assert ledger.apply("shop", "livestock", "sell",
                        {"lot": lots[0], "weight_g": 1}).code == "E_STATE"
    assert ledger.apply("packer", "livestock", "receive", {"lot": lots[0]}).code == "E_ROLE"
    assert ledger.apply("shop", "livestock", "receive", {"lot": "L0"}).code == "E_INVALID_LOT"
    assert ledger.apply("shop", "livestock", "receive", {"lot": lots[0]}).ok
    assert ledger.apply("shop-2", "livestock", "receive", {"lot": lots[0]}).code == "E_STATE"
    assert ledger.apply("shop-2", "livestock", "sell",
                        {"lot": lots[0], "weight_g": 1}).code == "E_FORBIDDEN"
    assert ledger.apply("shop", "livestock", "sell",
                        {"lot": lots[1], "weight_g": 1}).code == "E_STATE"
    assert ledger.apply("shop", "livestock", "sell",
                        {"lot": lots[0], "weight_g": 1, "package": "bad/pkg"}).code == "E_ARGS"


def test_receipt_of_unregistered_lot_is_accepted_as_a_violation_report():
    ledger = setup_ledger()
    ghost = lot_no(ledger, 77)
    receipt = ledger.apply("shop", "livestock", "receive", {"lot": ghost})
    assert receipt.ok and violations(receipt) == ["UNREGISTERED_LOT"]
    assert ledger.apply("shop", "livestock", "sell",
                        {"lot": ghost, "weight_g": 1}).code == "E_NOT_FOUND"


# --- recall ----------------------------------------------------------------------------------


def test_recall_of_a_lot_reaches_bundles_and_shops_downstream():
    ledger = setup_ledger()
    a = carcass_with_lots(ledger, COW, "C1", (1, 2))
    b = carcass_with_lots(ledger, COW_2, "C2", (3,))
    bundle = lot_no(ledger, 4)
    assert ledger.apply("packer", "livestock", "bundle",
                        {"inputs": [a[1], b[0]], "lot": bundle, "weight_g": 150_000}).ok
    assert ledger.apply("shop", "livestock", "receive", {"lot": bundle}).ok
    assert ledger.apply("shop-2", "livestock", "receive", {"lot": a[0]}).ok
    receipt = ledger.apply("mafra", "livestock", "recall",
                           {"number": b[0], "reason": "E. coli"})
    assert receipt.ok, receipt
    assert ledger.query("livestock", "lot", {"number": bundle})["state"] == "recalled"
    assert ledger.query("livestock", "lot", {"number": a[1]})["state"] == "bundled"  # upstream
    assert ledger.query("livestock", "lot", {"number": a[0]})["state"] == "at_shop"
    notices = {e.attrs["org"]: e for e in events(receipt, "recall_notice")}
    assert sorted(notices) == ["packer", "shop"]
    assert notices["shop"].attrs["lots"] == [bundle] and "shop" in notices["shop"].keys
    assert ledger.query("livestock", "trace", {"number": bundle})["consumer"]["recalled"]


def test_recall_of_an_animal_reaches_every_lot_and_shop():
    ledger = setup_ledger()
    lots = carcass_with_lots(ledger, serials=(1, 2))
    assert ledger.apply("shop", "livestock", "receive", {"lot": lots[0]}).ok
    assert ledger.apply("shop-2", "livestock", "receive", {"lot": lots[1]}).ok
    receipt = ledger.apply("mafra", "livestock", "recall", {"number": COW, "reason": "BSE"})
    assert receipt.ok
    notified = sorted(e.attrs["org"] for e in events(receipt, "recall_notice"))
    assert notified == ["farm-a", "packer", "plant", "shop", "shop-2"]
    assert ledger.query("livestock", "carcass", {"number": "C1"})["state"] == "recalled"
    for lot in lots:
        assert ledger.query("livestock", "lot", {"number": lot})["state"] == "recalled"
        assert ledger.apply("shop", "livestock", "sell",
                            {"lot": lot, "weight_g": 1}).code == "E_RECALLED"
    assert ledger.query("livestock", "animal", {"id": COW})["recalled"] is True


def test_recalled_live_animal_cannot_be_slaughtered_or_moved():
    ledger = setup_ledger()
    assert birth(ledger).ok
    assert ledger.apply("mafra", "livestock", "recall", {"number": COW, "reason": "FMD"}).ok
    assert slaughter(ledger).code == "E_RECALLED"
    assert ledger.apply("farm-a", "livestock", "transfer_out",
                        {"animal": COW, "to": "farm-b"}).code == "E_RECALLED"


def test_invalid_recalls_are_refused():
    ledger = setup_ledger()
    lots = carcass_with_lots(ledger, serials=(1,))
    assert ledger.apply("farm-a", "livestock", "recall",
                        {"number": COW, "reason": "x"}).code == "E_ROLE"
    assert ledger.apply("mafra", "livestock", "recall",
                        {"number": STRANGER, "reason": "x"}).code == "E_NOT_FOUND"
    assert ledger.apply("mafra", "livestock", "recall",
                        {"number": lots[0], "reason": " "}).code == "E_ARGS"
    assert ledger.apply("mafra", "livestock", "recall", {"number": lots[0], "reason": "x"}).ok
    assert ledger.apply("mafra", "livestock", "recall",
                        {"number": lots[0], "reason": "x"}).code == "E_RECALLED"
    # Recalling the animal later still works and leaves the recalled lot as it was.
    assert ledger.apply("mafra", "livestock", "recall", {"number": COW, "reason": "y"}).ok
    assert ledger.apply("packer", "livestock", "cut", {
        "carcass": "C1", "lots": [{"lot": lot_no(ledger, 5), "weight_g": 1}]}).code == "E_RECALLED"


# --- queries and the rest --------------------------------------------------------------------


def test_trace_of_a_lot_shows_upstream_and_consumer_view():
    ledger = setup_ledger()
    assert birth(ledger).ok
    assert ledger.apply("farm-a", "livestock", "transfer_out", {"animal": COW, "to": "farm-b"}).ok
    assert ledger.apply("farm-b", "livestock", "transfer_in", {"animal": COW}).ok
    assert ledger.apply("farm-b", "livestock", "treat",
                        {"animal": COW, "drug": "ivermectin", "withdrawal_days": 0}).ok
    assert slaughter(ledger).ok
    lot = lot_no(ledger, 1)
    assert cut(ledger, "C1", [(lot, 50_000)]).ok
    assert ledger.apply("shop", "livestock", "receive", {"lot": lot}).ok
    trace = ledger.query("livestock", "trace", {"number": lot})
    animal = trace["upstream"]["animals"][0]
    assert [h["action"] for h in animal["history"]] == [
        "birth", "transfer_out", "transfer_in", "treat"]
    assert trace["upstream"]["carcasses"][0]["grade"] == "1+"
    consumer = trace["consumer"]
    assert consumer["product"] == "beef" and consumer["packer"] == "packer"
    assert consumer["shop"] == "shop" and consumer["recalled"] is False
    origin = consumer["origins"][0]
    assert origin["breed"] == "Hanwoo" and origin["sex"] == "female"
    assert origin["farm"] == "farm-a" and origin["current_farm"] == "farm-b"
    assert origin["slaughterhouse"] == "plant" and origin["inspection"] == "pass"
    assert origin["slaughter_date"] == day(ledger, 0)
    down = ledger.query("livestock", "trace", {"number": COW})["downstream"]
    assert down == {"animals": [], "carcasses": ["C1"], "lots": [lot], "shops": ["shop"]}


def test_unknown_number_action_and_query():
    ledger = setup_ledger()
    assert ledger.apply("farm-a", "livestock", "teleport", {}).code == "E_UNKNOWN_ACTION"
    from contracts.sdk import ContractError
    with pytest.raises(ContractError) as err:
        ledger.query("livestock", "trace", {"number": COW})
    assert err.value.code == "E_NOT_FOUND"
    with pytest.raises(ContractError) as err:
        ledger.query("livestock", "nothing", {})
    assert err.value.code == "E_UNKNOWN_QUERY"
    with pytest.raises(ContractError) as err:
        ledger.query("livestock", "lot", {"number": "L9"})
    assert err.value.code == "E_INVALID_LOT"


def test_every_successful_action_emits_a_report_event():
    ledger = setup_ledger()
    carcass_with_lots(ledger)
    for receipt in ledger.receipts:
        assert receipt.ok
        assert any(e.attrs.get("report") is True and e.type != "violation"
                   for e in receipt.events), receipt
