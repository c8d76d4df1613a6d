"""clearance: random sequences of actions by random organisations never break the table.

Property: a parcel is always in a state of ``states.STATES``; a successful call moves it along
a row of ``states.EDGES`` and its state then equals that transition's target; a refused call
leaves it (and the work queue) as it was.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from test_clearance import (
    BUYER_1,
    BUYER_2,
    SIGNER,
    C,
    find_parcel,
    item,
    order_args,
    setup_ledger,
    step_args,
)

from contracts.clearance import states

ORGS = ["seller", "seller2", "courier", "courier2", "customs", "buyer", "buyer2"]
ACTIONS = ["create_order", *states.PARCEL_ACTIONS]
ORDERS = ["P1", "P2"]
INSPECTION = ["RELEASED", "HELD", "SEIZED"]
RESOLUTION = ["UNDER_INSPECTION", "RELEASED", "SEIZED", "RETURNED"]

PROPER = "proper"  # the organisation the workflow expects for the action
NEXT = "next"  # an action the table allows from the parcel's current state
# Biased towards plausible moves, so that random runs reach the far end of the table too.
step = st.tuples(st.sampled_from([PROPER] * 14 + ORGS), st.sampled_from([NEXT] * 30 + ACTIONS),
                 st.sampled_from(ORDERS), st.integers(min_value=0, max_value=3))


def resolve(signer, action, state, variant):
    if action == NEXT:
        edges = [e.action for e in states.EDGES if e.source == state and e.roles != ("auto",)]
        # Mostly forward; variant 3 also draws the side exits (cancel, warn).
        forward = [a for a in edges if a not in ("cancel", "warn")] if variant < 3 else edges
        choices = forward or edges
        action = choices[variant % len(choices)] if choices else "create_order"
    if signer == PROPER:
        signer = "seller" if action == "create_order" else SIGNER[action]
    return signer, action


def make_args(ledger, action, order_id, variant):
    if action == "create_order":
        items = [
            [item(price=3_000)],
            [item("6404.11-9000", price=24_000, description="running shoes")],
            [item("2106909099", price=1_000, quantity=7, kind="health_functional_food",
                  description="vitamins")],
            [item(price=9_000)],
        ][variant]
        return order_args(order_id, items=items, buyer=BUYER_1 if variant % 2 else BUYER_2)
    args = step_args(action, order_id, ledger)
    if action == "inspection_result":
        args["result"] = INSPECTION[variant % 3]
    elif action == "resolve_hold":
        args["to"] = RESOLUTION[variant]
    elif action == "pay_duty" and variant == 3:
        args["amount_krw"] += 1
    return args


def current_state(ledger, order_id):
    parcel = find_parcel(ledger, order_id)
    return None if parcel is None else parcel["state"]


FULL_TAXABLE_PATH = [
    ("seller", "create_order", "P1", 1), ("courier", "ship", "P1", 0),
    ("courier", "declare", "P1", 0), ("customs", "arrive", "P1", 0),
    ("customs", "select_inspection", "P1", 0), ("customs", "inspection_result", "P1", 1),
    ("customs", "resolve_hold", "P1", 1), ("buyer", "pay_duty", "P1", 3),
    ("buyer", "pay_duty", "P1", 0), ("courier", "out_for_delivery", "P1", 0),
    ("courier", "deliver", "P1", 0), ("buyer", "confirm_receipt", "P1", 0),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=5, max_size=80))
@example(FULL_TAXABLE_PATH)
def test_random_actions_never_leave_the_state_table(steps):
    ledger = setup_ledger()
    model: dict[str, str] = {}
    for raw_signer, raw_action, order_id, variant in steps:
        before = current_state(ledger, order_id)
        signer, action = resolve(raw_signer, raw_action, before, variant)
        receipt = ledger.apply(signer, C, action, make_args(ledger, action, order_id, variant))
        after = current_state(ledger, order_id)
        assert after is None or after in states.STATES
        if not receipt.ok:
            assert after == before, (action, receipt)
            continue
        moved = next(e for e in receipt.events if e.type == action)
        if action == "create_order":
            assert before is None and after == states.SCREENED
        else:
            assert states.is_transition(before, action, after), (before, action, after)
            assert moved.attrs["from"] == before
        model[order_id] = after
        event(f"reached {after}")
        for other, state in model.items():
            assert current_state(ledger, other) == state
        queue = ledger.query(C, "work_queue", caller="customs")
        assert sorted(p["order_id"] for p in queue) == sorted(
            o for o, s in model.items() if s in states.QUEUE_STATES)
    for order_id, state in model.items():
        history = ledger.query(C, "history", {"order_id": order_id})["history"]
        assert [h["state"] for h in history if h["action"] != "reassess"][-1] == state
