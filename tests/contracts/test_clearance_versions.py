"""clearance rules version 3 against version 2: the same history gives the same receipts.

Version 3 only adds a flag to combined-taxation group entries (``"list": 1`` while the order
holds a list declaration) so that re-assessing a group reads the flagged orders instead of
every order of the group. Property: for random workflows over several parcels of the same
buyer and seller, every receipt (code, message, events) and every parcel is identical under
both versions; the group entries differ by the flag alone, and the flag is set exactly on
the members whose declaration is a list declaration.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_clearance import BUYER_1, C, item, order_args, setup_ledger, step_args
from test_clearance_property import resolve

from consensus import canonical
from contracts.clearance.contract import LISTED, ClearanceContract
from node.registry import ContractLoadError, load_contracts

ORDERS = ["P1", "P2", "P3", "P4"]
PRICES = [3_000, 9_000, 14_000, 60_000]  # alone under the threshold, and together over it
step = st.tuples(st.sampled_from(["proper"] * 10 + ["seller", "courier", "customs"]),
                 st.sampled_from(["next"] * 12 + ["create_order", "cancel", "declare"]),
                 st.sampled_from(ORDERS), st.integers(min_value=0, max_value=3))


def ledger_of(version: str) -> Any:
    ledger = setup_ledger()
    ledger.contracts[C] = ClearanceContract(rules_version=version)
    return ledger


def state_of(ledger: Any, prefix: bytes) -> dict[bytes, Any]:
    return {key: canonical.decode(value) for key, value in ledger.base.data.items()
            if key.startswith(prefix)}


def parcel_state(ledger: Any, order_id: str) -> str | None:
    raw = ledger.base.data.get(f"{C}/order/{order_id}".encode())
    return None if raw is None else canonical.decode(raw)["state"]


def args_for(ledger: Any, action: str, order_id: str, variant: int) -> dict[str, Any]:
    if action == "create_order":
        price = PRICES[(ORDERS.index(order_id) + variant) % len(PRICES)]
        return order_args(order_id, items=[item(price=price)], buyer=BUYER_1)
    args = step_args(action, order_id, ledger)
    if action == "inspection_result":
        args["result"] = ["RELEASED", "HELD", "SEIZED"][variant % 3]
    elif action == "resolve_hold":
        args["to"] = ["UNDER_INSPECTION", "RELEASED", "SEIZED", "RETURNED"][variant]
    return args


def without_flags(groups: dict[bytes, Any]) -> dict[bytes, Any]:
    return {key: {order_id: {k: v for k, v in entry.items() if k != LISTED}
                  for order_id, entry in group.items()}
            for key, group in groups.items()}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=4, max_size=70))
def test_version_3_gives_version_2s_receipts_and_parcels(steps):
    old, new = ledger_of("2"), ledger_of("3")
    for raw_signer, raw_action, order_id, variant in steps:
        signer, action = resolve(raw_signer, raw_action, parcel_state(old, order_id), variant)
        args = args_for(old, action, order_id, variant)
        assert args == args_for(new, action, order_id, variant)
        got_old = old.apply(signer, C, action, args)
        got_new = new.apply(signer, C, action, args)
        assert got_new.to_obj() == got_old.to_obj(), (action, order_id)
        for e in got_new.events:
            if e.type in ("duty_assessed", "combined_taxation_late") and action != "declare":
                event(f"re-assessed: {e.type}")
    order_prefix = f"{C}/order/".encode()
    assert state_of(new, order_prefix) == state_of(old, order_prefix)
    group_prefix = f"{C}/group/".encode()
    old_groups, new_groups = state_of(old, group_prefix), state_of(new, group_prefix)
    assert all(LISTED not in e for g in old_groups.values() for e in g.values())
    assert without_flags(new_groups) == old_groups
    orders = state_of(new, order_prefix)
    for group in new_groups.values():
        for order_id, entry in group.items():
            declaration = orders[f"{C}/order/{order_id}".encode()]["declaration"]
            listed = declaration is not None and declaration["type"] == "list"
            assert (LISTED in entry) == listed, (order_id, entry, declaration)
            if listed:
                event("a member flagged at the end")


def test_a_declared_list_parcel_is_flagged_and_unflagged_when_reassessed():
    ledger = ledger_of("3")
    key = None
    for order_id, price in (("A", 5_000), ("B", 9_000)):
        assert ledger.apply("seller", C, "create_order",
                            order_args(order_id, items=[item(price=price)])).ok
    for action in ("ship", "declare"):
        assert ledger.apply("courier", C, action, step_args(action, "A", ledger)).ok
    key = next(k for k in ledger.base.data if k.startswith(f"{C}/group/".encode()))
    assert LISTED in canonical.decode(ledger.base.data[key])["A"]
    # A third order pushes the group over the threshold: A is re-declared with duty.
    receipt = ledger.apply("seller", C, "create_order",
                           order_args("C", items=[item(price=150_000)]))
    assert receipt.ok and "duty_assessed" in [e.type for e in receipt.events]
    group = canonical.decode(ledger.base.data[key])
    assert all(LISTED not in entry for entry in group.values())


def test_genesis_version_picks_the_rules():
    assert load_contracts([("clearance", "2")])["clearance"].flags_listed is False
    assert load_contracts([("clearance", "3")])["clearance"].flags_listed is True
    assert load_contracts([("clearance", "4")])["clearance"].flags_listed is True
    assert load_contracts([("clearance", "5")])["clearance"].folds_text is True
    assert load_contracts([("clearance", "4")])["clearance"].folds_text is False
    assert ClearanceContract.version == "5"


def test_invalid_unknown_rules_version_is_refused():
    with pytest.raises(ContractLoadError, match="genesis requires 9"):
        load_contracts([("clearance", "9")])
    with pytest.raises(ValueError):
        ClearanceContract(rules_version="1")


def test_a_released_list_parcel_is_reported_late_under_both_versions():
    """The path random runs seldom reach: a list-cleared parcel already released when its
    group goes over the threshold stays list-declared (flag kept) and is reported each time."""
    script = [("seller", "create_order", "A", 5_000), ("courier", "ship", "A", 0),
              ("courier", "declare", "A", 0), ("courier", "arrive", "A", 0),
              ("customs", "release", "A", 0),
              ("seller", "create_order", "B", 150_000), ("courier", "ship", "B", 0),
              ("seller", "create_order", "C", 4_000)]
    receipts = {}
    for version in ("2", "3"):
        ledger = ledger_of(version)
        receipts[version] = []
        for signer, action, order_id, price in script:
            args = (order_args(order_id, items=[item(price=price)]) if action == "create_order"
                    else step_args(action, order_id, ledger))
            receipt = ledger.apply(signer, C, action, args)
            assert receipt.ok, (version, action, receipt)
            receipts[version].append(receipt.to_obj())
        group = next(canonical.decode(v) for k, v in ledger.base.data.items()
                     if k.startswith(f"{C}/group/".encode()))
        assert (LISTED in group["A"]) == (version == "3")
    assert receipts["3"] == receipts["2"]
    late = [e for r in receipts["3"] for e in r["events"] if e["type"] == "combined_taxation_late"]
    assert len(late) == 3  # B's order, B's shipment, C's order


def order_reads_of_one_more_order(version: str, members: int) -> int:
    """How many orders a new order of a taxable ``members``-order group reads."""
    ledger = ledger_of(version)
    for i in range(members):
        assert ledger.apply("seller", C, "create_order",
                            order_args(f"G{i}", items=[item(price=20_000)])).ok
    reads = []
    get = ledger.base.get

    def counting_get(key: bytes) -> bytes | None:
        if key.startswith(f"{C}/order/".encode()):
            reads.append(key)
        return get(key)

    ledger.base.get = counting_get
    assert ledger.apply("seller", C, "create_order",
                        order_args("NEW", items=[item(price=20_000)])).ok
    return len(reads)


def test_a_new_order_reads_only_list_declared_members():
    """Version 2 read every other order of a group over its threshold for each new order
    (quadratic in the group, up to 1,000 orders); version 3 reads the flagged ones only."""
    assert order_reads_of_one_more_order("2", 30) == 31  # its own id check + 30 members
    assert order_reads_of_one_more_order("3", 30) == 1  # its own id check
