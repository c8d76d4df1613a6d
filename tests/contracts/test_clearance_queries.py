"""clearance: queries, who may ask them, filterable events, and no personal data in the clear."""

from __future__ import annotations

import pytest
from test_clearance import (
    BUYER_1,
    BUYER_2,
    PCCC_1,
    PCCC_2,
    C,
    advance,
    create,
    setup_ledger,
    step_args,
    taxable_parcel,
    waybill_for,
)

from contracts.clearance.states import DECLARED, HELD, SHIPPED, UNDER_INSPECTION
from contracts.sdk import ContractError


def refused(ledger, name, args=None, caller=None):
    with pytest.raises(ContractError) as error:
        ledger.query(C, name, args or {}, caller=caller)
    return error.value.code


def test_parcel_by_order_id_or_waybill():
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", SHIPPED)
    by_id = ledger.query(C, "parcel", {"order_id": "O1"})
    by_waybill = ledger.query(C, "parcel", {"waybill": waybill_for("O1")})
    assert by_id == by_waybill
    assert by_id["shipment"]["waybill"] == waybill_for("O1")


def test_sealed_buyer_data_only_to_customs():
    ledger = setup_ledger()
    create(ledger)
    assert "buyer_sealed" not in ledger.query(C, "parcel", {"order_id": "O1"})
    for caller in ("seller", "courier", "buyer"):
        assert "buyer_sealed" not in ledger.query(C, "parcel", {"order_id": "O1"}, caller=caller)
    assert ledger.query(C, "parcel", {"order_id": "O1"}, caller="customs")["buyer_sealed"] == \
        BUYER_1[1]


def test_history_has_action_state_who_height_and_time():
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", DECLARED)
    history = ledger.query(C, "history", {"waybill": waybill_for("O1")})["history"]
    assert [(h["action"], h["state"], h["org"]) for h in history] == [
        ("create_order", "ORDERED", "seller"), ("screen", "SCREENED", "clearance"),
        ("ship", "SHIPPED", "courier"), ("declare", "DECLARED", "courier")]
    heights = [h["height"] for h in history]
    assert heights == sorted(heights) and all(h["time_ms"] > 0 for h in history)


@pytest.mark.parametrize(("name", "args", "code"), [
    ("parcel", {"order_id": "NOPE"}, "E_NOT_FOUND"),
    ("parcel", {"waybill": "HAWB999999"}, "E_NOT_FOUND"),
    ("parcel", {"waybill": "bad"}, "E_INVALID_WAYBILL"),
    ("parcel", {}, "E_ARGS"),
    ("history", {"order_id": "NOPE"}, "E_NOT_FOUND"),
    ("nonsense", {}, "E_UNKNOWN_QUERY"),
])
def test_invalid_query_arguments(name, args, code):
    assert refused(setup_ledger(), name, args) == code


def test_buyer_parcels_for_own_platform_and_customs_only():
    ledger = setup_ledger()
    create(ledger, "O1")
    create(ledger, "O2", buyer=BUYER_2)
    args = {"buyer_ref": BUYER_1[0]}
    mine = ledger.query(C, "buyer_parcels", args, caller="buyer")
    assert [p["order_id"] for p in mine] == ["O1"] and "buyer_sealed" not in mine[0]
    assert ledger.query(C, "buyer_parcels", args, caller="buyer2") == []
    assert [p["order_id"] for p in ledger.query(C, "buyer_parcels", args, caller="customs")] \
        == ["O1"]


@pytest.mark.parametrize("caller", [None, "seller", "courier"])
def test_invalid_buyer_parcels_caller_is_forbidden(caller):
    ledger = setup_ledger()
    create(ledger)
    assert refused(ledger, "buyer_parcels", {"buyer_ref": BUYER_1[0]}, caller) == "E_FORBIDDEN"


def test_invalid_buyer_parcels_by_clear_pccc():
    ledger = setup_ledger()
    assert refused(ledger, "buyer_parcels", {"buyer_ref": PCCC_1}, "customs") == \
        "E_INVALID_BUYER_REF"


def test_work_queue_lists_declared_arrived_inspected_and_held():
    ledger = setup_ledger()
    for order_id, state in (("A", SHIPPED), ("B", DECLARED), ("C", UNDER_INSPECTION),
                            ("D", HELD), ("E", "RELEASED")):
        create(ledger, order_id, buyer=BUYER_1 if order_id in "AC" else BUYER_2)
        advance(ledger, order_id, state)
    queue = ledger.query(C, "work_queue", caller="customs")
    assert [(p["order_id"], p["state"]) for p in queue] == [
        ("B", DECLARED), ("C", UNDER_INSPECTION), ("D", HELD)]
    held = ledger.query(C, "work_queue", {"state": HELD}, caller="customs")
    assert [p["order_id"] for p in held] == ["D"]


@pytest.mark.parametrize("caller", [None, "seller", "courier", "buyer"])
def test_invalid_customs_only_queries(caller):
    ledger = setup_ledger()
    assert refused(ledger, "work_queue", {}, caller) == "E_FORBIDDEN"
    assert refused(ledger, "combined_groups", {}, caller) == "E_FORBIDDEN"


def test_restricted_list_and_rates_are_public():
    ledger = setup_ledger()
    assert ledger.apply("customs", C, "set_restricted", {"op": "add", "hs": ["93"]}).ok
    assert ledger.query(C, "restricted_list")["hs"][0]["prefix"] == "93"
    assert set(ledger.query(C, "rates")) == {"USD", "KRW", "EUR"}


def test_every_event_carries_the_parcel_keys():
    ledger = setup_ledger()
    taxable_parcel(ledger, "T1", "RELEASED")
    events = [e for r in ledger.receipts for e in r.events if e.attrs.get("order_id") == "T1"]
    assert {e.type for e in events} >= {"create_order", "screen", "ship", "declare",
                                         "duty_assessed", "arrive", "release"}
    for event in events:
        assert event.keys[0] == "T1"
        assert {"seller", "courier", BUYER_1[0]} <= set(event.keys)
        if event.type not in ("create_order", "screen"):
            assert waybill_for("T1") in event.keys


def test_no_personal_data_in_the_clear_anywhere_in_state_or_events():
    ledger = setup_ledger()
    create(ledger, "O1")
    create(ledger, "O2", buyer=BUYER_2)
    advance(ledger, "O1", "RECEIVED")
    ledger.apply("seller", C, "cancel", step_args("cancel", "O2"))
    secrets = [PCCC_1, PCCC_2, "Hong Gildong", "Kim Cheolsu", "Jongno", "Haeundae"]
    for key, value in ledger.base.data.items():
        for secret in secrets:
            assert secret.encode() not in key and secret.encode() not in value, key
    for receipt in ledger.receipts:
        for secret in secrets:
            assert secret not in repr(receipt)


@pytest.mark.parametrize(("value", "single"), [
    (True, True), ("true", True), ("1", True), (False, False), ("false", False), ("0", False),
])
def test_include_single_reads_yes_and_no_as_a_query_string_sends_them(value, single):
    """Regression (black-box review): ``?include_single=false`` counted as true."""
    ledger = setup_ledger()
    create(ledger, "A")
    groups = ledger.query(C, "combined_groups", {"include_single": value}, caller="customs")
    assert [g["orders"] for g in groups] == ([["A"]] if single else [])


def test_invalid_include_single_is_refused():
    ledger = setup_ledger()
    assert refused(ledger, "combined_groups", {"include_single": "maybe"}, "customs") == "E_ARGS"


@pytest.mark.parametrize(("value", "single"), [(1, True), (0, False)])
def test_include_single_still_reads_json_one_and_zero(value, single):
    """``bool(1)`` was yes before the query-string fix; a JSON client sending 1 or 0 keeps
    working (review)."""
    ledger = setup_ledger()
    create(ledger, "A")
    groups = ledger.query(C, "combined_groups", {"include_single": value}, caller="customs")
    assert [g["orders"] for g in groups] == ([["A"]] if single else [])
