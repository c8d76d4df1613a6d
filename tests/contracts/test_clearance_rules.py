"""clearance: duty and VAT maths, thresholds, excluded kinds, caps, combined taxation, tables."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from test_clearance import (
    BUYER_1,
    BUYER_2,
    PCCC_1,
    SALT,
    C,
    advance,
    create,
    item,
    order_args,
    setup_ledger,
    state_of,
)

from contracts.clearance import ClearanceContract, buyer_ref, duty, rules, states
from contracts.clearance.privacy import buyer_payload, is_valid_pccc
from contracts.clearance.screening import compute_route
from contracts.sdk import ContractError
from node.state import MemoryKV

from contract_harness import DAY_MS

USD_KRW = 145_025  # 1 USD = 1,450.25 KRW (krw_centi)


def parcel(ledger, order_id="O1"):
    return ledger.query(C, "parcel", {"order_id": order_id})


# --- duty and VAT: worked examples --------------------------------------------------------------


def test_worked_example_shoes_usd_240_at_13_percent():
    # 240.00 USD x 1,450.25 = 348,060 won; duty 13 % = 45,247.8 -> 45,247;
    # VAT 10 % of (348,060 + 45,247) = 39,330.7 -> 39,330; total 84,577 won.
    got = duty.compute_assessment([duty.Line("6404119000", 24_000)], "USD", USD_KRW,
                                  taxable=True)
    assert got["customs_value_krw"] == 348_060
    assert got["duty_krw"] == 45_247
    assert got["vat_krw"] == 39_330
    assert got["total_krw"] == 84_577


def test_worked_example_mixed_lines_general_and_clothing():
    # Headphones 8517 (8 %) 180.00 USD and a jacket 6201 (13 %) 99.99 USD.
    # 18,000 x 145,025 / 10^4 = 261,045 won -> duty 20,883.6 -> 20,883
    #  9,999 x 145,025 / 10^4 = 145,010.4975 -> 145,010 won -> duty 18,851.3 -> 18,851
    # value 406,055; duty 39,734; VAT (406,055 + 39,734) / 10 = 44,578.9 -> 44,578
    lines = [duty.Line("8517620000", 18_000), duty.Line("6201400000", 9_999)]
    got = duty.compute_assessment(lines, "USD", USD_KRW, taxable=True)
    assert [line["value_krw"] for line in got["lines"]] == [261_045, 145_010]
    assert [line["duty_bp"] for line in got["lines"]] == [800, 1300]
    assert got["duty_krw"] == 20_883 + 18_851
    assert got["vat_krw"] == 44_578
    assert got["total_krw"] == 39_734 + 44_578


def test_worked_example_euro_order():
    # 199.99 EUR at 1,573.50 KRW = 314,684.265 -> 314,684 won; duty 8 % = 25,174.72 -> 25,174;
    # VAT = 33,985.8 -> 33,985.
    got = duty.compute_assessment([duty.Line("3304990000", 19_999)], "EUR", 157_350,
                                  taxable=True)
    assert (got["customs_value_krw"], got["duty_krw"], got["vat_krw"]) == (
        314_684, 25_174, 33_985)


def test_under_threshold_nothing_is_taxed_but_value_is_stated():
    got = duty.compute_assessment([duty.Line("6404119000", 14_000)], "USD", USD_KRW,
                                  taxable=False)
    assert got["customs_value_krw"] == 203_035
    assert got["total_krw"] == 0


@pytest.mark.parametrize(("amount", "currency", "usd_micro", "cents"), [
    (15_000, "USD", 1_000_000, 15_000),
    (217_000, "KRW", 690, 14_973),  # 217,000 won x 0.000690 = 149.73 USD
    (13_824, "EUR", 1_085_000, 14_999),  # 138.24 EUR = 149.9904 -> 149.99 USD (floor)
    (22_374, "JPY", 6_700, 14_990),  # 22,374 yen x 0.0067 = 149.9058 USD
])
def test_usd_conversion_floors_to_the_cent(amount, currency, usd_micro, cents):
    assert duty.compute_usd_cents(amount, currency, usd_micro) == cents


@pytest.mark.parametrize(("hs", "bp"), [
    ("6109100000", 1300), ("6201400000", 1300), ("6302600000", 1300), ("6404119000", 1300),
    ("6506100000", 800), ("6000000000", 800), ("8517620000", 800), ("210690", 800),
])
def test_duty_rate_by_chapter(hs, bp):
    assert rules.get_duty_bp(hs) == bp


@pytest.mark.parametrize(("raw", "normal"), [
    ("6109.10-0000", "6109100000"), ("610910", "610910"), ("6109 10 00", "61091000"),
])
def test_hs_codes_are_normalised(raw, normal):
    assert rules.normalise_hs(raw) == normal


@pytest.mark.parametrize("raw", ["61091", "61091000001", "6109x0", "", "６１０９１０"])
def test_invalid_hs_code(raw):
    with pytest.raises(ContractError) as refused:
        rules.normalise_hs(raw)
    assert refused.value.code == "E_INVALID_HS"


# --- thresholds on the ledger ---------------------------------------------------------------------


@pytest.mark.parametrize(("ship_from", "kind", "cents", "route", "taxed"), [
    ("CN", "general", 15_000, "list", False),  # exactly USD 150: list clearance
    ("CN", "general", 15_001, "general", True),
    ("US", "general", 20_000, "list", False),  # USD 200 from the US
    ("US", "general", 20_001, "general", True),
    ("US", "food", 15_000, "list", False),  # food stays at USD 150 even from the US
    ("US", "food", 15_001, "general", True),
    ("US", "health_functional_food", 15_001, "general", True),
    ("US", "health_functional_food", 5_000, "general", False),  # excluded kind, duty-free
])
def test_threshold_edges(ship_from, kind, cents, route, taxed):
    ledger = setup_ledger()
    hs = "2106909099" if kind != "general" else "4202920000"
    create(ledger, ship_from=ship_from, items=[item(hs, price=cents, kind=kind)])
    screening = parcel(ledger)["screening"]
    assert (screening["route"], screening["taxable"]) == (route, taxed)
    ledger.apply("courier", C, "ship", {"order_id": "O1", "waybill": "HAWB000001",
                                        "weight_g": 100, "origin": ship_from,
                                        "carrier": "KE1"})
    assert ledger.apply("courier", C, "declare", {"order_id": "O1"}).ok
    declaration = parcel(ledger)["declaration"]
    assert declaration["type"] == route
    assert (declaration["assessment"]["total_krw"] > 0) == taxed


def test_threshold_uses_the_couriers_origin_at_declaration():
    ledger = setup_ledger()
    create(ledger, ship_from="US", items=[item("4202920000", price=18_000)])
    assert parcel(ledger)["screening"]["route"] == "list"
    assert ledger.apply("courier", C, "ship", {"order_id": "O1", "waybill": "HAWB000001",
                                               "weight_g": 100, "origin": "CN",
                                               "carrier": "CA1"}).ok
    assert ledger.apply("courier", C, "declare", {"order_id": "O1"}).ok
    assert parcel(ledger)["declaration"]["type"] == "general"


@pytest.mark.parametrize("kind", sorted(rules.EXCLUDED_FROM_LIST))
def test_excluded_kinds_never_go_through_list_clearance(kind):
    ledger = setup_ledger()
    create(ledger, items=[item("3004909000", price=1_000, kind=kind, description="x")])
    screening = parcel(ledger)["screening"]
    assert screening["route"] == "general" and not screening["taxable"]
    assert {"code": "EXCLUDED_KIND", "detail": kind} in screening["notes"]


def test_converted_value_decides_the_threshold():
    ledger = setup_ledger()
    # 217,000 won = USD 149.73 -> list; 218,000 won = USD 150.42 -> general.
    create(ledger, "K1", currency="KRW", ship_from="CN", items=[item(price=217_000)])
    create(ledger, "K2", currency="KRW", ship_from="CN", items=[item(price=218_000)],
           buyer=BUYER_2)
    assert parcel(ledger, "K1")["screening"]["route"] == "list"
    assert parcel(ledger, "K2")["screening"]["route"] == "general"


# --- quantity caps -----------------------------------------------------------------------------


@pytest.mark.parametrize(("bottles", "result"), [(6, "clear"), (7, "warn")])
def test_health_functional_food_quantity_cap(bottles, result):
    ledger = setup_ledger()
    receipt = create(ledger, items=[
        item("2106909099", price=500, quantity=bottles - 1, kind="health_functional_food",
             description="omega-3"),
        item("2106909099", price=500, quantity=1, kind="health_functional_food",
             description="vitamin C"),
    ])
    screening = parcel(ledger)["screening"]
    assert screening["result"] == result
    assert any(e.type == "pre_alert" for e in receipt.events) == (result == "warn")
    if result == "warn":
        assert screening["reasons"][0]["code"] == "QUANTITY_CAP"


# --- combined taxation -------------------------------------------------------------------------


def ship_and_declare(ledger, order_id, waybill, origin="CN"):
    assert ledger.apply("courier", C, "ship", {"order_id": order_id, "waybill": waybill,
                                               "weight_g": 300, "origin": origin,
                                               "carrier": "CA1"}).ok
    assert ledger.apply("courier", C, "declare", {"order_id": order_id}).ok


def test_combined_taxation_same_buyer_seller_and_date():
    ledger = setup_ledger()
    create(ledger, "A", ship_from="CN", items=[item("4202920000", price=9_000)])
    receipt = create(ledger, "B", ship_from="CN", items=[item("4202920000", price=9_000)])
    screening = parcel(ledger, "B")["screening"]
    assert screening["result"] == "warn"
    assert screening["reasons"][0]["code"] == "COMBINED_TAXATION"
    assert screening["assessed_usd_cents"] == 18_000
    assert any(e.type == "pre_alert" for e in receipt.events)
    ship_and_declare(ledger, "A", "HAWB00000A")
    ship_and_declare(ledger, "B", "HAWB00000B")
    for order_id in ("A", "B"):
        declaration = parcel(ledger, order_id)["declaration"]
        assert declaration["type"] == "general"
        # Each parcel is taxed on its own value: 90.00 USD = 130,522 won at 8 %.
        assert declaration["assessment"]["customs_value_krw"] == 130_522
        assert declaration["assessment"]["duty_krw"] == 10_441
    groups = ledger.query(C, "combined_groups", caller="customs")
    assert groups == [{"buyer_ref": BUYER_1[0], "seller": "seller", "date": "2026-01-01",
                       "orders": ["A", "B"], "usd_cents": 18_000,
                       "threshold_usd_cents": 15_000, "over": True}]


def test_combined_taxation_reassesses_an_earlier_list_declaration():
    ledger = setup_ledger()
    create(ledger, "A", ship_from="CN", items=[item("4202920000", price=9_000)])
    ship_and_declare(ledger, "A", "HAWB00000A")
    assert parcel(ledger, "A")["declaration"]["type"] == "list"
    receipt = create(ledger, "B", ship_from="CN", items=[item("4202920000", price=9_000)])
    assessed = [e for e in receipt.events if e.type == "duty_assessed"]
    assert [e.attrs["order_id"] for e in assessed] == ["A"]
    first = parcel(ledger, "A")
    assert first["declaration"]["type"] == "general"
    assert first["declaration"]["combined_with"] == ["B"]
    assert first["history"][-1]["action"] == "reassess"
    assert first["state"] == "DECLARED"


def test_combined_taxation_does_not_join_other_days_sellers_or_buyers():
    ledger = setup_ledger()
    create(ledger, "A", ship_from="CN", items=[item("4202920000", price=9_000)])
    create(ledger, "B", seller="seller2", ship_from="CN", items=[item("4202920000", price=9_000)])
    create(ledger, "C", ship_from="CN", buyer=BUYER_2, items=[item("4202920000", price=9_000)])
    ledger.time_ms += DAY_MS
    create(ledger, "D", ship_from="CN", items=[item("4202920000", price=9_000)])
    for order_id in "ABCD":
        assert parcel(ledger, order_id)["screening"]["result"] == "clear", order_id
    assert ledger.query(C, "combined_groups", caller="customs") == []


def test_combined_taxation_group_under_the_threshold_stays_list():
    ledger = setup_ledger()
    create(ledger, "A", ship_from="CN", items=[item("4202920000", price=7_000)])
    create(ledger, "B", ship_from="CN", items=[item("4202920000", price=8_000)])
    assert parcel(ledger, "B")["screening"]["route"] == "list"
    groups = ledger.query(C, "combined_groups", caller="customs")
    assert groups[0]["usd_cents"] == 15_000 and groups[0]["over"] is False


def test_cancelled_parcel_leaves_its_combined_taxation_group():
    ledger = setup_ledger()
    create(ledger, "A", ship_from="CN", items=[item("4202920000", price=9_000)])
    create(ledger, "B", ship_from="CN", items=[item("4202920000", price=9_000)])
    assert ledger.apply("seller", C, "cancel", {"order_id": "B"}).ok
    ship_and_declare(ledger, "A", "HAWB00000A")
    assert parcel(ledger, "A")["declaration"]["type"] == "list"


def test_a_group_is_one_state_key_that_goes_with_its_last_member():
    ledger = setup_ledger()
    create(ledger, "A", ship_from="CN", items=[item("4202920000", price=7_000)])
    create(ledger, "B", ship_from="CN", items=[item("4202920000", price=8_000)])
    groups = [k for k, _ in ledger.base.scan(b"clearance/group/")]
    assert groups == [f"clearance/group/{BUYER_1[0]}/seller/2026-01-01".encode()]
    assert ledger.apply("seller", C, "cancel", {"order_id": "B"}).ok
    single = ledger.query(C, "combined_groups", {"include_single": True}, caller="customs")
    assert [g["orders"] for g in single] == [["A"]] and single[0]["usd_cents"] == 7_000
    assert ledger.apply("seller", C, "cancel", {"order_id": "A"}).ok
    assert list(ledger.base.scan(b"clearance/group/")) == []
    assert ledger.query(C, "combined_groups", {"include_single": True}, caller="customs") == []


def test_invalid_order_beyond_the_group_limit_is_refused_and_changes_nothing():
    ledger = setup_ledger()
    ledger.contracts[C] = ClearanceContract(max_group_orders=2)
    create(ledger, "A", ship_from="CN", items=[item("4202920000", price=100)])
    create(ledger, "B", ship_from="CN", items=[item("4202920000", price=100)])
    before = dict(ledger.base.scan(b"clearance/"))
    receipt = ledger.apply("seller", C, "create_order", order_args(
        "C", ship_from="CN", items=[item("4202920000", price=100)]))
    assert receipt.code == "E_GROUP_LIMIT" and "2 orders" in receipt.message
    assert dict(ledger.base.scan(b"clearance/")) == before
    ledger.time_ms += DAY_MS  # another day, another group
    assert create(ledger, "D", ship_from="CN", items=[item("4202920000", price=100)]).ok
    assert ledger.apply("courier", C, "ship", {"order_id": "A", "waybill": "HAWB0000A1",
                                               "weight_g": 300, "origin": "CN",
                                               "carrier": "CA1"}).ok  # a member: updated


def test_released_list_parcel_is_reported_not_reassessed():
    ledger = setup_ledger()
    create(ledger, "A", ship_from="CN", items=[item("4202920000", price=9_000)])
    advance(ledger, "A", "RELEASED")
    receipt = create(ledger, "B", ship_from="CN", items=[item("4202920000", price=9_000)])
    assert [e.type for e in receipt.events if e.attrs.get("order_id") == "A"] == [
        "combined_taxation_late"]
    assert parcel(ledger, "A")["declaration"]["type"] == "list"
    assert state_of(ledger, "A") == "RELEASED"


# --- privacy helper ------------------------------------------------------------------------------


def test_buyer_ref_is_salted_sha256_of_pccc():
    assert buyer_ref(SALT, PCCC_1) == hashlib.sha256(SALT + PCCC_1.encode()).hexdigest()
    assert buyer_ref(SALT, PCCC_1) != buyer_ref(SALT[::-1], PCCC_1)


@pytest.mark.parametrize("pccc", [
    "P12345678901", "p123456789012", "P1234567890123", "X123456789012", "P12345678901a", "",
    "P１２３４５６７８９０１２",  # full-width digits are not ASCII digits
])
def test_invalid_pccc_is_refused(pccc):
    assert not is_valid_pccc(pccc)
    with pytest.raises(ContractError) as refused:
        buyer_ref(SALT, pccc)
    assert refused.value.code == "E_INVALID_PCCC"
    with pytest.raises(ContractError):
        buyer_payload(pccc, "name", "address")


def test_invalid_short_salt_is_refused():
    with pytest.raises(ContractError) as refused:
        buyer_ref(b"short", PCCC_1)
    assert refused.value.code == "E_ARGS"


# --- the transition table ----------------------------------------------------------------------


def test_every_state_is_reachable_and_every_target_is_a_state():
    targets = {edge.target for edge in states.EDGES} | {states.ORDERED}
    assert targets == set(states.STATES)
    assert {edge.source for edge in states.EDGES} <= set(states.STATES)


def test_final_states_have_no_way_out():
    for edge in states.EDGES:
        assert edge.source not in states.FINAL_STATES


def test_table_roles_match_the_workflow():
    assert states.get_roles("cancel") == ("seller",)
    assert states.get_roles("arrive") == ("courier", "customs")
    assert states.get_roles("pay_duty") == ("buyer",)
    assert states.get_roles("confirm_receipt") == ("buyer",)
    assert set(states.get_roles("warn")) == {"customs"}
    assert not states.get_edges(states.RELEASED, "warn")


def test_kst_date_is_utc_plus_nine():
    assert rules.compute_kst_date(0) == "1970-01-01"
    assert rules.compute_kst_date(15 * 3_600_000 - 1) == "1970-01-01"
    assert rules.compute_kst_date(15 * 3_600_000) == "1970-01-02"
    assert rules.compute_kst_date(1_709_164_800_000) == "2024-02-29"  # 2024-02-29 09:00 KST


def test_compute_route_group_uses_the_strictest_threshold():
    from contracts.clearance.screening import GroupMember

    route = compute_route(["general"], "US", 10_000, [GroupMember("X", 6_000, 15_000)])
    assert route.threshold_usd_cents == 15_000 and route.taxable and route.combined


@pytest.mark.parametrize("description", ["Red Ginseng extract", "정관장 홍삼정"])
def test_herbal_medicine_named_in_description_is_screened_as_such(description):
    ledger = setup_ledger()
    receipt = create(ledger, items=[item("2106909099", price=3_000, description=description)])
    screening = parcel(ledger)["screening"]
    assert screening["result"] == "warn"
    assert screening["reasons"][0]["code"] == "KIND_INFERRED"
    assert screening["route"] == "general"
    assert screening["excluded_kinds"] == ["herbal_medicine"]
    assert any(e.type == "pre_alert" for e in receipt.events)


class CountingKV(MemoryKV):
    """Committed state that counts the reads reaching it."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        super().__init__(data)
        self.reads: Counter[bytes] = Counter()

    def get(self, key: bytes) -> bytes | None:
        self.reads[key] += 1
        return super().get(key)


def test_a_new_order_reads_its_group_once():
    """Screening and indexing share one read of the group (it was read twice per order)."""
    ledger = setup_ledger()
    create(ledger, "A", ship_from="CN", items=[item("4202920000", price=7_000)])
    ledger.base = CountingKV(ledger.base.data)
    assert create(ledger, "B", ship_from="CN", items=[item("4202920000", price=8_000)]).ok
    group_reads = [n for key, n in ledger.base.reads.items()
                   if key.startswith(b"clearance/group/")]
    assert group_reads == [1]
    single = ledger.query(C, "combined_groups", {"include_single": True}, caller="customs")
    assert [g["orders"] for g in single] == [["A", "B"]]
