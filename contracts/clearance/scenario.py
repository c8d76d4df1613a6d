"""The Definition-of-done script: three parcels, as an ordered list of signed steps.

Used by the contract tests and by ``jangbu demo clearance`` alike, so both walk exactly the
same story:

1. ``<prefix>-1``: a T-shirt under USD 200 from the US, cleared through list clearance;
2. ``<prefix>-2``: slimming capsules with an ingredient customs has just restricted, warned
   at screening (pre-alert to the seller) and cancelled before shipping;
3. ``<prefix>-3``: running shoes over USD 200, declared as a general import, inspected,
   held for documents, released, duty and VAT paid by the buyer platform, delivered.

Each step is ``(signer_role, action, args)``; the caller signs with the key of the
organisation holding that role. Buyer data is sealed by the caller (pynacl) and passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from contracts.clearance import duty
from contracts.clearance.rules import BUYER, COURIER, CUSTOMS, SELLER

DEMO_RATES: dict[str, dict[str, int]] = {
    "USD": {"usd_micro": 1_000_000, "krw_centi": 145_025},  # 1 USD = 1,450.25 KRW
    "KRW": {"usd_micro": 690, "krw_centi": 100},
    "EUR": {"usd_micro": 1_085_000, "krw_centi": 157_350},
}
RESTRICTED_KEYWORD = "sibutramine"


class Step(NamedTuple):
    role: str
    action: str
    args: dict[str, Any]


class DemoBuyer(NamedTuple):
    buyer_ref: str  # hex SHA-256(salt || PCCC), see privacy.buyer_ref
    buyer_sealed: str  # base64 SealedBox to customs of privacy.buyer_payload(...)


SHOES_PRICE_CENTS = 24_000
SHOES: dict[str, Any] = {"hs": "6404.11-9000", "description": "running shoes",
                         "kind": "general", "quantity": 1, "unit_price": SHOES_PRICE_CENTS}


def compute_demo_duty_krw() -> int:
    """Duty + VAT the buyer pays on parcel 3 at the demo rates (see duty.py rounding)."""
    line = duty.Line("6404119000", SHOES_PRICE_CENTS)
    assessment = duty.compute_assessment([line], "USD", DEMO_RATES["USD"]["krw_centi"],
                                         taxable=True)
    return int(assessment["total_krw"])


def demo_steps(
    buyers: Sequence[DemoBuyer],
    *,
    courier_org: str = "courier",
    buyer_org: str = "buyer",
    prefix: str = "DEMO",
) -> list[Step]:
    """The ordered steps of the three demo parcels (three distinct buyers).

    Distinct buyers keep parcels 1 and 3, both from the one demo seller on one day, out of
    each other's combined-taxation group.
    """
    if len(buyers) < 3:
        raise ValueError("the demo needs three buyers (buyer_ref, buyer_sealed)")

    def order(n: int, ship_from: str, items: list[dict[str, Any]]) -> Step:
        return Step(SELLER, "create_order", {
            "order_id": f"{prefix}-{n}", "courier": courier_org, "buyer_platform": buyer_org,
            "buyer_ref": buyers[n - 1].buyer_ref, "buyer_sealed": buyers[n - 1].buyer_sealed,
            "currency": "USD", "ship_from": ship_from, "items": items,
        })

    def on(n: int, role: str, action: str, **extra: Any) -> Step:
        return Step(role, action, {"order_id": f"{prefix}-{n}", **extra})

    return [
        Step(CUSTOMS, "set_rates", {"rates": DEMO_RATES}),
        Step(CUSTOMS, "set_restricted", {"op": "add", "keywords": [RESTRICTED_KEYWORD],
                                         "note": "MFDS banned ingredient"}),
        # 1. list clearance: USD 39.00 of T-shirts from the US.
        order(1, "US", [{"hs": "6109.10-0000", "description": "cotton T-shirt",
                         "kind": "general", "quantity": 2, "unit_price": 1_950}]),
        on(1, COURIER, "ship", waybill=f"{prefix}HAWB0001", weight_g=400, origin="US",
           carrier="KE0086"),
        on(1, COURIER, "declare"),
        on(1, COURIER, "arrive", port="KRICN"),
        on(1, CUSTOMS, "release"),
        on(1, COURIER, "out_for_delivery"),
        on(1, COURIER, "deliver"),
        on(1, BUYER, "confirm_receipt"),
        # 2. warned at screening (restricted ingredient), cancelled before shipping.
        order(2, "US", [{"hs": "2106.90-9099", "description": "Slim capsules, sibutramine 15 mg",
                         "kind": "health_functional_food", "quantity": 2,
                         "unit_price": 2_500}]),
        on(2, SELLER, "cancel", reason="restricted ingredient (pre-alert)"),
        # 3. general import: inspected, held for documents, released, duty paid.
        order(3, "US", [dict(SHOES)]),
        on(3, COURIER, "ship", waybill=f"{prefix}HAWB0003", weight_g=1_200, origin="US",
           carrier="OZ0201"),
        on(3, COURIER, "declare"),
        on(3, CUSTOMS, "arrive", port="KRICN"),
        on(3, CUSTOMS, "select_inspection", reason="value check"),
        on(3, CUSTOMS, "inspection_result", result="HELD",
           reason="invoice value under review", documents=["commercial invoice",
                                                           "payment receipt"]),
        on(3, CUSTOMS, "resolve_hold", to="RELEASED", note="documents received"),
        on(3, BUYER, "pay_duty", amount_krw=compute_demo_duty_krw(),
           payment_ref=f"{prefix}-PAY-3"),
        on(3, COURIER, "out_for_delivery"),
        on(3, COURIER, "deliver"),
        on(3, BUYER, "confirm_receipt"),
    ]
