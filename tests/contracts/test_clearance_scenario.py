"""clearance: the Definition-of-done script (scenario.demo_steps) runs end to end.

Three parcels: list clearance; warned and cancelled before shipping; inspected, held, then
released with duty paid. Two independent ledgers applying the same steps end with
byte-identical state (what every node of the demo network must answer).
"""

from __future__ import annotations

from test_clearance import BUYER_1, BUYER_2, C, seal_buyer, setup_ledger

from contracts.clearance.scenario import DemoBuyer, compute_demo_duty_krw, demo_steps

ROLE_ORG = {"seller": "seller", "courier": "courier", "customs": "customs", "buyer": "buyer"}
BUYERS = [DemoBuyer(*BUYER_1), DemoBuyer(*BUYER_2), DemoBuyer(*seal_buyer("P555555555555"))]


def run_demo():
    ledger = setup_ledger(rates=False)
    receipts = []
    for role, action, args in demo_steps(BUYERS):
        receipt = ledger.apply(ROLE_ORG[role], C, action, args)
        assert receipt.ok, (role, action, args, receipt)
        receipts.append(receipt)
    return ledger, receipts


def test_demo_walks_three_parcels_to_their_ends():
    ledger, _ = run_demo()
    states = {oid: ledger.query(C, "parcel", {"order_id": oid})["state"]
              for oid in ("DEMO-1", "DEMO-2", "DEMO-3")}
    assert states == {"DEMO-1": "RECEIVED", "DEMO-2": "CANCELLED", "DEMO-3": "RECEIVED"}


def test_demo_parcel_1_cleared_through_list_clearance():
    ledger, _ = run_demo()
    parcel = ledger.query(C, "parcel", {"order_id": "DEMO-1"})
    assert parcel["declaration"]["type"] == "list" and parcel["payment"] is None


def test_demo_parcel_2_pre_alert_reaches_seller_before_cancel():
    _, receipts = run_demo()
    events = [e for r in receipts for e in r.events if e.attrs.get("order_id") == "DEMO-2"]
    types = [e.type for e in events]
    assert types.index("pre_alert") < types.index("cancel") < types.index("buyer_notice")
    alert = events[types.index("pre_alert")]
    assert alert.attrs["reasons"][0]["code"] == "RESTRICTED_KEYWORD"
    assert "seller" in alert.keys and "ship" not in types


def test_demo_parcel_3_held_released_and_duty_paid():
    ledger, _ = run_demo()
    parcel = ledger.query(C, "parcel", {"order_id": "DEMO-3"})
    actions = [h["action"] for h in parcel["history"]]
    assert actions[actions.index("select_inspection"):actions.index("pay_duty") + 1] == [
        "select_inspection", "inspection_result", "resolve_hold", "pay_duty"]
    assert [h["state"] for h in parcel["history"]][actions.index("inspection_result")] == "HELD"
    assert parcel["payment"]["amount_krw"] == compute_demo_duty_krw() == 84_577


def test_demo_state_is_identical_on_two_ledgers():
    first, _ = run_demo()
    second, _ = run_demo()
    assert first.base.data == second.base.data
    for oid in ("DEMO-1", "DEMO-2", "DEMO-3"):
        assert first.query(C, "history", {"order_id": oid}) == \
            second.query(C, "history", {"order_id": oid})
