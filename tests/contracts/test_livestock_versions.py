"""livestock rules version 2 against version 1, and the trace fixes that need no version.

Version 2 (found by a review against the workflow): refusals for a withdrawal period or a
weight that does not add up carry a ``violation`` event for the regulator, and a recalled
live animal can no longer arrive at a slaughterhouse or be taken in by a farm. Version 1
chains keep version 1's receipts (same code, same message, no events) and moves.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_livestock import (
    COW,
    COW_2,
    PASSED,
    birth,
    carcass_with_lots,
    cut,
    day,
    lot_no,
    setup_ledger,
    slaughter,
    violations,
)

from contracts.livestock import LivestockContract
from contracts.sdk import Call, ContractError
from node.execution import refusal_receipt

from contract_harness import DAY_MS

L = "livestock"


def ledger_of(version: str) -> Any:
    return setup_ledger(LivestockContract(rules_version=version))


def pig_slaughter(ledger: Any, carcass: str = "P1", trace_no: str = "160012345678") -> Any:
    return ledger.apply("plant", L, "slaughter", {
        "species": "pig", "farm_no": "110001", "trace_no": trace_no, "head_count": 5,
        "carcass": carcass, "date": day(ledger), "weight_g": 400_000, "grade": "1",
        "inspection": PASSED})


def test_version_3_is_the_default_and_1_and_2_still_run() -> None:
    assert LivestockContract.version == "3"
    assert LivestockContract.for_version("1") is not None
    assert LivestockContract.for_version("2") is not None
    assert LivestockContract.for_version("4") is None
    with pytest.raises(ValueError, match="no rules version"):
        LivestockContract(rules_version="9")


# --- refusals that report ------------------------------------------------------------------


def test_slaughter_during_withdrawal_is_refused_and_reported_to_the_regulator() -> None:
    ledger = ledger_of("2")
    assert birth(ledger).ok
    assert ledger.apply("farm-a", L, "treat", {"animal": COW, "drug": "oxytetracycline",
                                              "withdrawal_days": 28}).ok
    receipt = slaughter(ledger)
    assert receipt.code == "E_WITHDRAWAL"
    assert violations(receipt) == ["SLAUGHTER_DURING_WITHDRAWAL"]
    event = receipt.events[0]
    assert event.contract == L and "regulator" in event.keys and COW in event.keys
    assert event.attrs["animal"] == COW and event.attrs["withdrawal_until_ms"] > ledger.time_ms
    # Refused: nothing was written.
    assert ledger.query(L, "animal", {"id": COW})["state"] == "alive"


def test_pig_batch_slaughter_during_herd_withdrawal_is_reported() -> None:
    ledger = ledger_of("2")
    assert ledger.apply("farm-a", L, "treat",
                        {"herd": "110001", "drug": "amoxicillin", "withdrawal_days": 2}).ok
    receipt = pig_slaughter(ledger)
    assert receipt.code == "E_WITHDRAWAL"
    assert violations(receipt) == ["SLAUGHTER_DURING_WITHDRAWAL"]
    assert {"110001", "160012345678", "farm-a", "regulator"} <= set(receipt.events[0].keys)


def test_weight_refusals_are_reported_as_weight_inconsistency() -> None:
    ledger = ledger_of("2")
    assert birth(ledger).ok and slaughter(ledger, weight_g=300_000).ok
    over = cut(ledger, "C1", [(lot_no(ledger, 1), 400_000)])
    assert over.code == "E_WEIGHT" and violations(over) == ["WEIGHT_INCONSISTENCY"]
    assert over.events[0].attrs["lots_weight_g"] == 400_000
    lots = [lot_no(ledger, 1), lot_no(ledger, 2)]
    assert cut(ledger, "C1", [(n, 100_000) for n in lots]).ok
    bundle = ledger.apply("packer", L, "bundle", {"inputs": lots, "lot": lot_no(ledger, 3),
                                                  "weight_g": 250_000})
    assert bundle.code == "E_WEIGHT" and violations(bundle) == ["WEIGHT_INCONSISTENCY"]
    assert ledger.apply("shop", L, "receive", {"lot": lots[0]}).ok
    sale = ledger.apply("shop", L, "sell", {"lot": lots[0], "weight_g": 100_001})
    assert sale.code == "E_WEIGHT" and violations(sale) == ["WEIGHT_INCONSISTENCY"]
    assert sale.events[0].attrs["left_g"] == 100_000


def test_version_1_refuses_the_same_way_without_events() -> None:
    old, new = ledger_of("1"), ledger_of("2")
    for ledger in (old, new):
        assert birth(ledger).ok
        assert ledger.apply("farm-a", L, "treat", {"animal": COW, "drug": "x",
                                                  "withdrawal_days": 28}).ok
    refused_old, refused_new = slaughter(old), slaughter(new)
    assert (refused_old.code, refused_old.message) == (refused_new.code, refused_new.message)
    assert refused_old.events == () and refused_new.events != ()


# --- recalled live animals stay put --------------------------------------------------------


def test_recalled_animal_cannot_arrive_at_a_slaughterhouse() -> None:
    ledger = ledger_of("2")
    assert birth(ledger).ok
    assert ledger.apply("mafra", L, "recall", {"number": COW, "reason": "residue"}).ok
    assert ledger.apply("plant", L, "arrival", {"animal": COW}).code == "E_RECALLED"
    assert ledger.query(L, "animal", {"id": COW})["state"] == "alive"


def test_recalled_animal_in_transit_cannot_be_taken_in_but_can_go_home() -> None:
    ledger = ledger_of("2")
    assert birth(ledger).ok
    assert ledger.apply("farm-a", L, "transfer_out", {"animal": COW, "to": "farm-b"}).ok
    assert ledger.apply("mafra", L, "recall", {"number": COW, "reason": "residue"}).ok
    assert ledger.apply("farm-b", L, "transfer_in", {"animal": COW}).code == "E_RECALLED"
    # Declining it sends it back to its owner, which a recall wants.
    assert ledger.apply("farm-b", L, "transfer_in", {"animal": COW, "accept": False}).ok
    animal = ledger.query(L, "animal", {"id": COW})
    assert (animal["state"], animal["owner"]) == ("alive", "farm-a")


def test_version_1_still_lets_a_recalled_animal_arrive() -> None:
    """Chains begun under 1 replay their history as it was decided."""
    ledger = ledger_of("1")
    assert birth(ledger).ok
    assert ledger.apply("mafra", L, "recall", {"number": COW, "reason": "residue"}).ok
    assert ledger.apply("plant", L, "arrival", {"animal": COW}).ok


# --- the engine's side of a reporting refusal ----------------------------------------------


def test_refusal_reports_are_named_for_the_refusing_contract() -> None:
    exc = ContractError("E_X", "no", reports=(("violation", {"code": "V"}, ("k",)),))
    receipt = refusal_receipt("livestock", exc)
    assert receipt.code == "E_X" and receipt.message == "no"
    assert [(e.contract, e.type, dict(e.attrs), e.keys) for e in receipt.events] == [
        ("livestock", "violation", {"code": "V"}, ("k",))]


@pytest.mark.parametrize("reports", [
    (("violation", {"value": 1.5}, ()),),  # floats have no canonical form
    (("violation", {"code": "V"}),),  # not (type, attrs, keys)
])
def test_a_refusal_whose_reports_cannot_be_recorded_still_refuses(reports: Any) -> None:
    receipt = refusal_receipt("livestock", ContractError("E_X", "no", reports=reports))
    assert (receipt.code, receipt.message, receipt.events) == ("E_X", "no", ())


def test_a_refusal_report_from_check_is_not_a_receipt() -> None:
    """Reports ride on apply's refusals only: check answers admission, which has no
    receipt, so the mempool's error keeps only code and message."""
    contract = LivestockContract()
    with pytest.raises(ContractError) as info:
        contract.check(Call(L, "slaughter", {}, b"\x00" * 32, 0, b""))
    assert info.value.reports == ()


# --- trace (queries: no version) -------------------------------------------------------------


def test_pig_trace_and_epcis_show_the_herd_treatments_before_slaughter() -> None:
    ledger = ledger_of("2")
    assert ledger.apply("farm-a", L, "treat", {"herd": "110001", "drug": "amoxicillin",
                                              "withdrawal_days": 0,
                                              "date": day(ledger, -10)}).ok
    assert pig_slaughter(ledger).ok
    ledger.time_ms += DAY_MS
    # Recorded after this batch's slaughter: not part of its history.
    assert ledger.apply("farm-a", L, "treat", {"herd": "110001", "drug": "later-drug",
                                              "withdrawal_days": 0}).ok
    lot = lot_no(ledger, 1, product="1")
    assert cut(ledger, "P1", [(lot, 100_000)]).ok
    found = ledger.query(L, "trace", {"number": lot})
    [carcass] = found["upstream"]["carcasses"]
    assert [t["drug"] for t in carcass["herd_treatments"]] == ["amoxicillin"]
    document = ledger.query(L, "epcis", {"number": lot})
    first = document["epcisBody"]["eventList"][0]
    assert first["bizStep"] == "urn:jangbu:bizstep:treating"
    assert first["quantityList"] == [{"epcClass": "urn:jangbu:herd:110001"}]
    assert first["eventID"] == "urn:jangbu:event:herd:110001:0"
    assert "later-drug" not in json.dumps(document)


def test_a_herd_treatment_reported_after_the_slaughter_but_given_before_is_in_its_trace(
) -> None:
    """Regression (livestock review): the trace kept herd treatments by when they were
    reported, so one reported late, after the batch's slaughter, was missing from the
    batch's trace although it was given before (the contract docs promise every batch
    slaughtered after it)."""
    ledger = ledger_of("2")
    assert pig_slaughter(ledger).ok
    ledger.time_ms += DAY_MS
    assert ledger.apply("farm-a", L, "treat", {"herd": "110001", "drug": "given-before",
                                              "withdrawal_days": 0,
                                              "date": day(ledger, -3)}).ok
    assert ledger.apply("farm-a", L, "treat", {"herd": "110001", "drug": "given-after",
                                              "withdrawal_days": 0}).ok
    lot = lot_no(ledger, 1, product="1")
    assert cut(ledger, "P1", [(lot, 100_000)]).ok
    [carcass] = ledger.query(L, "trace", {"number": lot})["upstream"]["carcasses"]
    assert [t["drug"] for t in carcass["herd_treatments"]] == ["given-before"]


def test_cattle_carcass_has_no_herd_treatments() -> None:
    ledger = ledger_of("2")
    lots = carcass_with_lots(ledger)
    [carcass] = ledger.query(L, "trace", {"number": lots[0]})["upstream"]["carcasses"]
    assert "herd_treatments" not in carcass


def test_trace_by_animal_number_names_the_packer_of_its_lots() -> None:
    ledger = ledger_of("2")
    lots = carcass_with_lots(ledger)
    assert ledger.apply("shop", L, "receive", {"lot": lots[0]}).ok
    found = ledger.query(L, "trace", {"number": COW})
    assert found["downstream"]["lots"] == sorted(lots)
    assert found["downstream"]["shops"] == ["shop"]
    assert found["consumer"]["packer"] == "packer"
    # An animal not yet slaughtered has no packer.
    assert birth(ledger, COW_2).ok
    assert ledger.query(L, "trace", {"number": COW_2})["consumer"]["packer"] is None


# --- a report is published only for a call refused for that reason alone (review) -----------


def test_a_cut_naming_another_packers_lots_is_refused_without_a_report() -> None:
    ledger = ledger_of("2")
    lots = carcass_with_lots(ledger)  # packer's lots, 2 x 100 kg of a 300 kg carcass
    over = cut(ledger, "C1", [(lots[0], 200_000)], packer="packer-2")
    assert over.code in ("E_EXISTS", "E_BUSINESS_ID") and over.events == ()


def test_a_bundle_into_an_existing_lot_is_refused_without_a_report() -> None:
    ledger = ledger_of("2")
    lots = carcass_with_lots(ledger, serials=(1, 2, 3))  # 3 x 100 kg
    over = ledger.apply("packer", L, "bundle", {"inputs": lots[:2], "lot": lots[2],
                                                "weight_g": 250_000})
    assert (over.code, over.events) == ("E_EXISTS", ())


def test_a_slaughter_dated_before_birth_is_refused_without_a_report() -> None:
    ledger = ledger_of("2")
    assert birth(ledger, days_ago=0).ok
    assert ledger.apply("farm-a", L, "treat", {"animal": COW, "drug": "x",
                                              "withdrawal_days": 28}).ok
    receipt = ledger.apply("plant", L, "slaughter", {
        "species": "cattle", "animal": COW, "carcass": "C1", "date": day(ledger, -3),
        "weight_g": 300_000, "grade": "1+", "inspection": PASSED})
    assert receipt.code == "E_INVALID_DATE" and receipt.events == ()
