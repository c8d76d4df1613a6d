"""clearance: every transition of a parcel, allowed and refused, on a real in-process ledger.

The helpers at the top (organisations, sealed buyers, orders, ``advance``) are shared by the
other ``test_clearance_*`` modules.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from nacl.public import PrivateKey, SealedBox

from contracts.clearance import ClearanceContract, buyer_payload, buyer_ref
from contracts.clearance.scenario import DEMO_RATES
from contracts.clearance.states import (
    ARRIVED,
    CANCELLED,
    DECLARED,
    DELIVERED,
    DUTY_PAID,
    HELD,
    OUT_FOR_DELIVERY,
    RECEIVED,
    RELEASED,
    RETURNED,
    SCREENED,
    SEIZED,
    SHIPPED,
    UNDER_INSPECTION,
)
from contracts.sdk import Call, ContractError

from contract_harness import DAY_MS, Ledger, make_ledger

C = "clearance"
SALT = b"buyer-platform-salt-0001"
CUSTOMS_KEY = PrivateKey(bytes(range(32)))
PCCC_1 = "P123456789012"
PCCC_2 = "P987654321098"


def seal_buyer(pccc: str, name: str = "Hong Gildong",
               address: str = "Seoul Jongno-gu 1") -> tuple[str, str]:
    """What a buyer platform computes: (buyer_ref, base64 sealed blob to customs)."""
    sealed = SealedBox(CUSTOMS_KEY.public_key).encrypt(buyer_payload(pccc, name, address))
    return buyer_ref(SALT, pccc), base64.b64encode(sealed).decode()


BUYER_1 = seal_buyer(PCCC_1)
BUYER_2 = seal_buyer(PCCC_2, "Kim Cheolsu", "Busan Haeundae-gu 2")


def setup_ledger(*, rates: bool = True) -> Ledger:
    ledger = make_ledger(ClearanceContract())
    ledger.add_org("customs", ["customs"])
    ledger.add_org("seller", ["seller"])
    ledger.add_org("seller2", ["seller"])
    ledger.add_org("courier", ["courier"])
    ledger.add_org("courier2", ["courier"])
    ledger.add_org("buyer", ["buyer"])
    ledger.add_org("buyer2", ["buyer"])
    if rates:
        assert ledger.apply("customs", C, "set_rates", {"rates": DEMO_RATES}).ok
    return ledger


def item(hs: str = "6109.10-0000", *, price: int = 3_000, quantity: int = 1,
         kind: str = "general", description: str = "cotton T-shirt") -> dict[str, Any]:
    return {"hs": hs, "description": description, "kind": kind, "quantity": quantity,
            "unit_price": price}


def order_args(order_id: str = "O1", *, items: list[dict[str, Any]] | None = None,
               buyer: tuple[str, str] = BUYER_1, currency: str = "USD",
               ship_from: str = "US", **extra: Any) -> dict[str, Any]:
    return {
        "order_id": order_id, "courier": "courier", "buyer_platform": "buyer",
        "buyer_ref": buyer[0], "buyer_sealed": buyer[1], "currency": currency,
        "ship_from": ship_from, "items": items if items is not None else [item()], **extra,
    }


def create(ledger: Ledger, order_id: str = "O1", *, seller: str = "seller",
           **kwargs: Any) -> Any:
    receipt = ledger.apply(seller, C, "create_order", order_args(order_id, **kwargs))
    assert receipt.ok, receipt
    return receipt


def state_of(ledger: Ledger, order_id: str = "O1") -> str:
    return str(ledger.query(C, "parcel", {"order_id": order_id})["state"])


def waybill_for(order_id: str) -> str:
    return ("HAWB" + "".join(ch for ch in order_id.upper() if ch.isalnum())).ljust(10, "0")


def find_parcel(ledger: Ledger, order_id: str) -> dict[str, Any] | None:
    try:
        return dict(ledger.query(C, "parcel", {"order_id": order_id}))
    except ContractError as error:
        assert error.code == "E_NOT_FOUND"
        return None


def step_args(action: str, order_id: str, ledger: Ledger | None = None) -> dict[str, Any]:
    """Valid arguments for ``action`` on ``order_id`` (pay_duty reads the amount due)."""
    args: dict[str, Any] = {"order_id": order_id}
    if action == "ship":
        args |= {"waybill": waybill_for(order_id), "weight_g": 500, "origin": "US",
                 "carrier": "KE0086"}
    elif action == "warn":
        args |= {"reason": "intelligence report"}
    elif action == "inspection_result":
        args |= {"result": "HELD", "reason": "invoice check", "documents": ["invoice"]}
    elif action == "resolve_hold":
        args |= {"to": "RELEASED"}
    elif action == "pay_duty":
        amount = 1
        parcel = find_parcel(ledger, order_id) if ledger is not None else None
        if parcel is not None and parcel["declaration"]:
            amount = parcel["declaration"]["assessment"]["total_krw"] or 1
        args |= {"amount_krw": amount, "payment_ref": "PAY-1"}
    return args


SIGNER = {
    "ship": "courier", "declare": "courier", "arrive": "courier", "out_for_delivery": "courier",
    "deliver": "courier", "select_inspection": "customs", "release": "customs",
    "inspection_result": "customs", "resolve_hold": "customs", "warn": "customs",
    "pay_duty": "buyer", "confirm_receipt": "buyer", "cancel": "seller",
}
# The actions that lead a freshly screened parcel to each state.
PATHS: dict[str, list[str]] = {
    SCREENED: [],
    SHIPPED: ["ship"],
    DECLARED: ["ship", "declare"],
    ARRIVED: ["ship", "declare", "arrive"],
    UNDER_INSPECTION: ["ship", "declare", "arrive", "select_inspection"],
    HELD: ["ship", "declare", "arrive", "select_inspection", "inspection_result"],
    RELEASED: ["ship", "declare", "arrive", "release"],
    OUT_FOR_DELIVERY: ["ship", "declare", "arrive", "release", "out_for_delivery"],
    DELIVERED: ["ship", "declare", "arrive", "release", "out_for_delivery", "deliver"],
    RECEIVED: ["ship", "declare", "arrive", "release", "out_for_delivery", "deliver",
               "confirm_receipt"],
    CANCELLED: ["cancel"],
}


def advance(ledger: Ledger, order_id: str, target: str) -> None:
    for action in PATHS[target]:
        receipt = ledger.apply(SIGNER[action], C, action, step_args(action, order_id, ledger))
        assert receipt.ok, (action, receipt)
    assert state_of(ledger, order_id) == target


def taxable_parcel(ledger: Ledger, order_id: str = "T1", state: str = RELEASED) -> None:
    """A USD 240 pair of shoes from the US (over USD 200: general, duty due)."""
    create(ledger, order_id, items=[item("6404.11-9000", price=24_000,
                                         description="running shoes")])
    advance(ledger, order_id, state)


def parcel_in_state(ledger: Ledger, order_id: str, state: str, *, taxable: bool) -> None:
    if taxable:
        taxable_parcel(ledger, order_id, state)
    else:
        create(ledger, order_id)
        advance(ledger, order_id, state)


# --- the happy paths -------------------------------------------------------------------------


def test_create_order_is_screened_at_once_and_recorded():
    ledger = setup_ledger()
    receipt = create(ledger)
    parcel = ledger.query(C, "parcel", {"order_id": "O1"})
    assert parcel["state"] == SCREENED
    assert parcel["screening"]["result"] == "clear"
    assert parcel["screening"]["route"] == "list"
    assert [h["state"] for h in parcel["history"]] == ["ORDERED", SCREENED]
    assert parcel["history"][0]["org"] == "seller"
    assert [e.type for e in receipt.events] == ["create_order", "screen"]
    assert parcel["date"] == "2026-01-01"  # KST date of the block


def test_list_clearance_parcel_goes_all_the_way_to_received():
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", RECEIVED)
    parcel = ledger.query(C, "parcel", {"order_id": "O1"})
    assert parcel["declaration"]["type"] == "list"
    assert parcel["declaration"]["assessment"]["total_krw"] == 0
    assert [h["action"] for h in parcel["history"]] == [
        "create_order", "screen", *PATHS[RECEIVED]]


def test_declaration_is_assembled_from_ledger_data():
    ledger = setup_ledger()
    create(ledger, items=[item(price=1_950, quantity=2)])
    advance(ledger, "O1", DECLARED)
    declaration = ledger.query(C, "parcel", {"order_id": "O1"})["declaration"]
    assert declaration["waybill"] == waybill_for("O1")
    assert declaration["declarant"] == "courier"
    assert declaration["origin"] == "US" and declaration["weight_g"] == 500
    assert declaration["items"] == [{"hs": "6109100000", "description": "cotton T-shirt",
                                     "kind": "general", "quantity": 2, "amount": 3_900}]
    assert declaration["value_usd_cents"] == 3_900


def test_general_declaration_inspected_held_released_and_duty_paid():
    ledger = setup_ledger()
    taxable_parcel(ledger, "T1", HELD)
    assert ledger.apply("customs", C, "resolve_hold", {"order_id": "T1", "to": "RELEASED"}).ok
    parcel = ledger.query(C, "parcel", {"order_id": "T1"})
    assert parcel["declaration"]["type"] == "general"
    due = parcel["declaration"]["assessment"]["total_krw"]
    assert due == 45_247 + 39_330
    receipt = ledger.apply("buyer", C, "pay_duty",
                           {"order_id": "T1", "amount_krw": due, "payment_ref": "PAY-T1"})
    assert receipt.ok, receipt
    assert state_of(ledger, "T1") == DUTY_PAID
    for signer, action in (("courier", "out_for_delivery"), ("courier", "deliver"),
                           ("buyer", "confirm_receipt")):
        assert ledger.apply(signer, C, action, {"order_id": "T1"}).ok
    assert state_of(ledger, "T1") == RECEIVED


def test_customs_may_also_record_arrival():
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", DECLARED)
    assert ledger.apply("customs", C, "arrive", {"order_id": "O1", "port": "KRICN"}).ok
    assert state_of(ledger) == ARRIVED


@pytest.mark.parametrize("result", [RELEASED, SEIZED])
def test_inspection_result_release_or_seize(result):
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", UNDER_INSPECTION)
    args = {"order_id": "O1", "result": result, "reason": "counterfeit"}
    assert ledger.apply("customs", C, "inspection_result", args).ok
    assert state_of(ledger) == result


@pytest.mark.parametrize("to", [UNDER_INSPECTION, RELEASED, SEIZED, RETURNED])
def test_resolve_hold_to_each_allowed_state(to):
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", HELD)
    assert ledger.apply("customs", C, "resolve_hold", {"order_id": "O1", "to": to}).ok
    assert state_of(ledger) == to


def test_held_parcel_records_reason_and_documents():
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", HELD)
    inspection = ledger.query(C, "parcel", {"order_id": "O1"})["inspection"]
    assert inspection["result"] == HELD
    assert inspection["reason"] == "invoice check" and inspection["documents"] == ["invoice"]


def test_seller_cancels_before_shipping_and_buyer_is_notified():
    ledger = setup_ledger()
    create(ledger)
    receipt = ledger.apply("seller", C, "cancel", {"order_id": "O1", "reason": "out of stock"})
    assert receipt.ok
    assert state_of(ledger) == CANCELLED
    notice = [e for e in receipt.events if e.type == "buyer_notice"]
    assert notice and notice[0].attrs["buyer_platform"] == "buyer"
    assert BUYER_1[0] in notice[0].keys


def test_customs_manual_warning_before_release_alerts_seller():
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", SHIPPED)
    receipt = ledger.apply("customs", C, "warn", {"order_id": "O1", "reason": "tip-off"})
    assert receipt.ok
    alert = next(e for e in receipt.events if e.type == "pre_alert")
    assert alert.attrs["seller"] == "seller" and "O1" in alert.keys and "seller" in alert.keys
    parcel = ledger.query(C, "parcel", {"order_id": "O1"})
    assert parcel["state"] == SHIPPED and parcel["warnings"][0]["detail"] == "tip-off"


def test_manual_warning_while_screened_turns_result_to_warn():
    ledger = setup_ledger()
    create(ledger)
    assert ledger.apply("customs", C, "warn", {"order_id": "O1", "reason": "tip-off"}).ok
    screening = ledger.query(C, "parcel", {"order_id": "O1"})["screening"]
    assert screening["result"] == "warn"
    assert screening["reasons"][-1]["code"] == "MANUAL"


# --- refusals: role ----------------------------------------------------------------------------

ROLE_CASES = [
    # (state the parcel is in, action, a signer whose organisation lacks the role)
    (SCREENED, "cancel", "courier"),
    (SCREENED, "cancel", "customs"),
    (SCREENED, "ship", "seller"),
    (SCREENED, "ship", "customs"),
    (SHIPPED, "declare", "customs"),
    (SHIPPED, "declare", "seller"),
    (DECLARED, "arrive", "buyer"),
    (ARRIVED, "select_inspection", "courier"),
    (ARRIVED, "release", "courier"),
    (ARRIVED, "release", "seller"),
    (UNDER_INSPECTION, "inspection_result", "courier"),
    (HELD, "resolve_hold", "seller"),
    (RELEASED, "pay_duty", "courier"),
    (RELEASED, "out_for_delivery", "customs"),
    (OUT_FOR_DELIVERY, "deliver", "buyer"),
    (DELIVERED, "confirm_receipt", "courier"),
    (SCREENED, "warn", "seller"),
]


@pytest.mark.parametrize(("state", "action", "signer"), ROLE_CASES)
def test_invalid_role_is_refused(state, action, signer):
    ledger = setup_ledger()
    parcel_in_state(ledger, "T1", state, taxable=action == "pay_duty")
    before = dict(ledger.base.data)
    receipt = ledger.apply(signer, C, action, step_args(action, "T1", ledger))
    assert receipt.code == "E_ROLE"
    assert ledger.base.data == before


@pytest.mark.parametrize(("signer", "action", "args"), [
    ("seller", "set_rates", {"rates": DEMO_RATES}),
    ("courier", "set_restricted", {"op": "add", "keywords": ["ephedra"]}),
    ("customs", "create_order", order_args("X1")),
    ("buyer", "create_order", order_args("X1")),
])
def test_invalid_role_for_reference_data_and_orders(signer, action, args):
    ledger = setup_ledger()
    assert ledger.apply(signer, C, action, args).code == "E_ROLE"


# --- refusals: state ---------------------------------------------------------------------------

STATE_CASES = [
    (SHIPPED, "cancel"),
    (RECEIVED, "cancel"),
    (SHIPPED, "ship"),
    (SCREENED, "declare"),
    (ARRIVED, "declare"),
    (SHIPPED, "arrive"),
    (DECLARED, "select_inspection"),
    (DECLARED, "release"),
    (UNDER_INSPECTION, "release"),
    (ARRIVED, "inspection_result"),
    (UNDER_INSPECTION, "resolve_hold"),
    (ARRIVED, "pay_duty"),
    (ARRIVED, "out_for_delivery"),
    (RELEASED, "deliver"),
    (OUT_FOR_DELIVERY, "confirm_receipt"),
    (RELEASED, "warn"),
    (DELIVERED, "warn"),
    (CANCELLED, "ship"),
    (CANCELLED, "warn"),
]


@pytest.mark.parametrize(("state", "action"), STATE_CASES)
def test_invalid_state_is_refused(state, action):
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", state)
    before = dict(ledger.base.data)
    receipt = ledger.apply(SIGNER[action], C, action, step_args(action, "O1", ledger))
    assert receipt.code == "E_STATE", receipt
    assert ledger.base.data == before


def test_invalid_pay_duty_when_no_duty_is_due():
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", RELEASED)
    receipt = ledger.apply("buyer", C, "pay_duty",
                           {"order_id": "O1", "amount_krw": 1, "payment_ref": "P1"})
    assert receipt.code == "E_NO_DUTY"


def test_invalid_delivery_while_duty_unpaid():
    ledger = setup_ledger()
    taxable_parcel(ledger)
    receipt = ledger.apply("courier", C, "out_for_delivery", {"order_id": "T1"})
    assert receipt.code == "E_DUTY_UNPAID"


def test_invalid_duty_payment_of_wrong_amount():
    ledger = setup_ledger()
    taxable_parcel(ledger)
    receipt = ledger.apply("buyer", C, "pay_duty",
                           {"order_id": "T1", "amount_krw": 84_576, "payment_ref": "P1"})
    assert receipt.code == "E_AMOUNT"
    assert state_of(ledger, "T1") == RELEASED


def test_invalid_inspection_result_not_in_table():
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", UNDER_INSPECTION)
    receipt = ledger.apply("customs", C, "inspection_result",
                           {"order_id": "O1", "result": "RETURNED", "reason": "x"})
    assert receipt.code == "E_ARGS"


def test_invalid_hold_without_documents():
    ledger = setup_ledger()
    create(ledger)
    advance(ledger, "O1", UNDER_INSPECTION)
    receipt = ledger.apply("customs", C, "inspection_result",
                           {"order_id": "O1", "result": "HELD", "reason": "x"})
    assert receipt.code == "E_ARGS"


# --- refusals: ownership -------------------------------------------------------------------


@pytest.mark.parametrize(("state", "action", "signer"), [
    (SCREENED, "cancel", "seller2"),
    (SCREENED, "ship", "courier2"),
    (SHIPPED, "declare", "courier2"),
    (DECLARED, "arrive", "courier2"),
    (RELEASED, "out_for_delivery", "courier2"),
    (OUT_FOR_DELIVERY, "deliver", "courier2"),
    (DELIVERED, "confirm_receipt", "buyer2"),
    (RELEASED, "pay_duty", "buyer2"),
])
def test_invalid_not_owner_is_refused(state, action, signer):
    ledger = setup_ledger()
    parcel_in_state(ledger, "T1", state, taxable=action == "pay_duty")
    receipt = ledger.apply(signer, C, action, step_args(action, "T1", ledger))
    assert receipt.code == "E_NOT_OWNER"


# --- refusals: formats and existence -----------------------------------------------------------


@pytest.mark.parametrize(("change", "code"), [
    ({"items": [item("61091")]}, "E_INVALID_HS"),
    ({"items": [item("6109.10-00001")]}, "E_INVALID_HS"),
    ({"items": [item("61A9100000")]}, "E_INVALID_HS"),
    ({"currency": "usd"}, "E_INVALID_CURRENCY"),
    ({"currency": "XYZ"}, "E_INVALID_CURRENCY"),
    ({"buyer": ("P123456789012", BUYER_1[1])}, "E_INVALID_BUYER_REF"),
    ({"buyer": (BUYER_1[0].upper(), BUYER_1[1])}, "E_INVALID_BUYER_REF"),
    ({"buyer": (BUYER_1[0], "not base64!")}, "E_INVALID_SEALED"),
    ({"buyer": (BUYER_1[0], base64.b64encode(b"short").decode())}, "E_INVALID_SEALED"),
    ({"items": [item(kind="weapon")]}, "E_INVALID_KIND"),
    ({"ship_from": "USA"}, "E_INVALID_COUNTRY"),
    ({"items": []}, "E_ARGS"),
    ({"items": [item(quantity=0)]}, "E_ARGS"),
    ({"items": [{**item(), "unit_price": "12"}]}, "E_ARGS"),
    ({"items": [item(description="")]}, "E_ARGS"),
    ({"order_id": "bad/id"}, "E_ARGS"),
])
def test_invalid_order_format_is_refused(change, code):
    ledger = setup_ledger()
    args = order_args(**{k: v for k, v in change.items() if k != "order_id"})
    if "order_id" in change:
        args["order_id"] = change["order_id"]
    before = dict(ledger.base.data)
    assert ledger.apply("seller", C, "create_order", args).code == code
    assert ledger.base.data == before


def test_invalid_float_amount_is_refused_by_check():
    # The wire refuses floats before any contract runs; check() refuses them too.
    args = order_args(items=[{**item(), "unit_price": 12.5}])
    call = Call(contract=C, action="create_order", args=args, signer=b"", nonce=1,
                tx_hash=b"")
    with pytest.raises(ContractError) as refused:
        ClearanceContract().check(call)
    assert refused.value.code == "E_ARGS"


def test_invalid_pccc_in_the_clear_cannot_pass_as_sealed_data():
    ledger = setup_ledger()
    args = order_args(buyer=(BUYER_1[0], base64.b64encode(PCCC_1.encode()).decode()))
    assert ledger.apply("seller", C, "create_order", args).code == "E_INVALID_SEALED"


@pytest.mark.parametrize(("field", "value", "code"), [
    ("waybill", "hawb-1", "E_INVALID_WAYBILL"),
    ("origin", "us", "E_INVALID_COUNTRY"),
    ("weight_g", 0, "E_ARGS"),
    ("weight_g", "500", "E_ARGS"),
    ("carrier", "", "E_ARGS"),
])
def test_invalid_shipment_format_is_refused(field, value, code):
    ledger = setup_ledger()
    create(ledger)
    args = step_args("ship", "O1") | {field: value}
    assert ledger.apply("courier", C, "ship", args).code == code


def test_invalid_duplicate_order_id():
    ledger = setup_ledger()
    create(ledger)
    assert ledger.apply("seller2", C, "create_order", order_args()).code == "E_EXISTS"


def test_invalid_duplicate_waybill():
    ledger = setup_ledger()
    create(ledger, "O1")
    create(ledger, "O2", buyer=BUYER_2)
    assert ledger.apply("courier", C, "ship", step_args("ship", "O1")).ok
    args = step_args("ship", "O2") | {"waybill": waybill_for("O1")}
    assert ledger.apply("courier", C, "ship", args).code == "E_EXISTS"


def test_invalid_unknown_order():
    ledger = setup_ledger()
    assert ledger.apply("courier", C, "ship", step_args("ship", "NOPE")).code == "E_NOT_FOUND"


def test_invalid_unknown_action():
    ledger = setup_ledger()
    assert ledger.apply("customs", C, "teleport", {"order_id": "O1"}).code == "E_UNKNOWN_ACTION"


def test_invalid_parties_must_hold_their_roles():
    ledger = setup_ledger()
    args = order_args() | {"courier": "buyer"}
    assert ledger.apply("seller", C, "create_order", args).code == "E_ARGS"
    args = order_args() | {"buyer_platform": "nobody"}
    assert ledger.apply("seller", C, "create_order", args).code == "E_NOT_FOUND"


def test_invalid_order_without_exchange_rate():
    ledger = setup_ledger(rates=False)
    assert ledger.apply("seller", C, "create_order", order_args()).code == "E_NO_RATE"


# --- reference data: rates and the restricted list -----------------------------------------


def test_rates_are_set_by_customs_and_queried():
    ledger = setup_ledger()
    assert ledger.apply("customs", C, "set_rates",
                        {"rates": {"JPY": {"usd_micro": 6_700, "krw_centi": 925}}}).ok
    rates = ledger.query(C, "rates")
    assert rates["JPY"]["krw_centi"] == 925 and rates["USD"]["usd_micro"] == 1_000_000


@pytest.mark.parametrize("rates", [
    {"USD": {"usd_micro": 999_999, "krw_centi": 145_025}},
    {"KRW": {"usd_micro": 690, "krw_centi": 101}},
    {"EUR": {"usd_micro": 0, "krw_centi": 1}},
    {"EUR": {"usd_micro": True, "krw_centi": 1}},
    {},
])
def test_invalid_rates_are_refused(rates):
    ledger = setup_ledger()
    assert ledger.apply("customs", C, "set_rates", {"rates": rates}).code == "E_ARGS"


def test_invalid_rate_currency():
    ledger = setup_ledger()
    rates = {"XAU": {"usd_micro": 1, "krw_centi": 1}}
    assert ledger.apply("customs", C, "set_rates", {"rates": rates}).code == "E_INVALID_CURRENCY"


def test_restricted_list_add_screen_and_remove():
    ledger = setup_ledger()
    add = {"op": "add", "hs": ["2106.90"], "keywords": ["Ephedra"], "note": "MFDS list"}
    assert ledger.apply("customs", C, "set_restricted", add).ok
    listed = ledger.query(C, "restricted_list")
    assert [e["prefix"] for e in listed["hs"]] == ["210690"]
    assert [e["keyword"] for e in listed["keywords"]] == ["ephedra"]
    receipt = create(ledger, items=[item("2106.90-9099", description="EPHEDRA herbal tea",
                                         kind="food")])
    screening = ledger.query(C, "parcel", {"order_id": "O1"})["screening"]
    assert screening["result"] == "warn"
    assert sorted(r["code"] for r in screening["reasons"]) == [
        "RESTRICTED_HS", "RESTRICTED_KEYWORD"]
    alert = next(e for e in receipt.events if e.type == "pre_alert")
    assert "O1" in alert.keys and alert.attrs["seller"] == "seller"
    remove = {"op": "remove", "hs": ["210690"], "keywords": ["ephedra"]}
    assert ledger.apply("customs", C, "set_restricted", remove).ok
    assert ledger.query(C, "restricted_list") == {"hs": [], "keywords": []}
    create(ledger, "O2", items=[item("2106.90-9099", description="ephedra tea", kind="food")])
    assert ledger.query(C, "parcel", {"order_id": "O2"})["screening"]["result"] == "clear"


@pytest.mark.parametrize(("args", "code"), [
    ({"op": "remove", "keywords": ["never-added"]}, "E_NOT_FOUND"),
    ({"op": "add"}, "E_ARGS"),
    ({"op": "replace", "keywords": ["x1"]}, "E_ARGS"),
    ({"op": "add", "hs": ["1"]}, "E_INVALID_HS"),
    ({"op": "add", "keywords": ["a/b"]}, "E_ARGS"),
])
def test_invalid_restricted_list_update(args, code):
    ledger = setup_ledger()
    assert ledger.apply("customs", C, "set_restricted", args).code == code


def test_next_kst_day_starts_at_15h_utc():
    ledger = setup_ledger()
    ledger.time_ms += DAY_MS // 2 + 3 * 3_600_000  # 2026-01-01 15:00 UTC = 01-02 00:00 KST
    create(ledger)
    assert ledger.query(C, "parcel", {"order_id": "O1"})["date"] == "2026-01-02"
