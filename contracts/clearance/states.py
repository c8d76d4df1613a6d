"""Every state of a parcel and every legal transition, on one screen.

Everything that moves a parcel from one state to another must be listed in ``EDGES``; the
contract looks transitions up here and nowhere else. A row reads: from ``source``, the
action ``action`` signed by one of ``roles`` may lead to ``target``, provided ``guard``
(a named data condition checked by the contract) holds. ``warn`` rows are self-loops: a
manual warning records reasons and alerts the seller without moving the parcel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contracts.clearance.rules import BUYER, COURIER, CUSTOMS, SELLER

ORDERED: Final = "ORDERED"  # the order is on the ledger (transient: screened at once)
SCREENED: Final = "SCREENED"  # screening done; result "clear" or "warn" with reasons
CANCELLED: Final = "CANCELLED"  # cancelled by the seller before shipping (final)
SHIPPED: Final = "SHIPPED"  # the courier holds it under a house waybill
DECLARED: Final = "DECLARED"  # list clearance or general declaration filed
ARRIVED: Final = "ARRIVED"  # at the port of entry
UNDER_INSPECTION: Final = "UNDER_INSPECTION"  # selected for physical/document inspection
HELD: Final = "HELD"  # held: reason and documents needed
SEIZED: Final = "SEIZED"  # seized by customs (final)
RETURNED: Final = "RETURNED"  # returned to the sender (final)
RELEASED: Final = "RELEASED"  # cleared; duty may still be due
DUTY_PAID: Final = "DUTY_PAID"  # the buyer paid duty and VAT
OUT_FOR_DELIVERY: Final = "OUT_FOR_DELIVERY"
DELIVERED: Final = "DELIVERED"
RECEIVED: Final = "RECEIVED"  # the buyer confirmed receipt (final)

STATES: Final = (
    ORDERED, SCREENED, CANCELLED, SHIPPED, DECLARED, ARRIVED, UNDER_INSPECTION, HELD, SEIZED,
    RETURNED, RELEASED, DUTY_PAID, OUT_FOR_DELIVERY, DELIVERED, RECEIVED,
)
FINAL_STATES: Final = frozenset({CANCELLED, SEIZED, RETURNED, RECEIVED})
# States customs must act on (the work queue).
QUEUE_STATES: Final = (DECLARED, ARRIVED, UNDER_INSPECTION, HELD)
# States in which customs may still add a manual warning ("any time before release").
BEFORE_RELEASE: Final = (SCREENED, SHIPPED, DECLARED, ARRIVED, UNDER_INSPECTION, HELD)
# States in which a list-clearance declaration may still be re-assessed (combined taxation).
REASSESSABLE: Final = (DECLARED, ARRIVED, UNDER_INSPECTION, HELD)

AUTO: Final = "auto"  # done by the contract itself inside another call
DUTY_DUE: Final = "duty_due"
NO_DUTY_DUE: Final = "no_duty_due"


@dataclass(frozen=True)
class Edge:
    source: str
    action: str
    target: str
    roles: tuple[str, ...]
    guard: str = ""


EDGES: Final = (
    # source            action               target             roles               guard
    Edge(ORDERED,          "screen",            SCREENED,          (AUTO,)),
    Edge(ORDERED,          "cancel",            CANCELLED,         (SELLER,)),
    Edge(SCREENED,         "cancel",            CANCELLED,         (SELLER,)),
    Edge(SCREENED,         "ship",              SHIPPED,           (COURIER,)),
    Edge(SHIPPED,          "declare",           DECLARED,          (COURIER,)),
    Edge(DECLARED,         "arrive",            ARRIVED,           (COURIER, CUSTOMS)),
    Edge(ARRIVED,          "select_inspection", UNDER_INSPECTION,  (CUSTOMS,)),
    Edge(ARRIVED,          "release",           RELEASED,          (CUSTOMS,)),
    Edge(UNDER_INSPECTION, "inspection_result", RELEASED,          (CUSTOMS,)),
    Edge(UNDER_INSPECTION, "inspection_result", HELD,              (CUSTOMS,)),
    Edge(UNDER_INSPECTION, "inspection_result", SEIZED,            (CUSTOMS,)),
    Edge(HELD,             "resolve_hold",      UNDER_INSPECTION,  (CUSTOMS,)),
    Edge(HELD,             "resolve_hold",      RELEASED,          (CUSTOMS,)),
    Edge(HELD,             "resolve_hold",      SEIZED,            (CUSTOMS,)),
    Edge(HELD,             "resolve_hold",      RETURNED,          (CUSTOMS,)),
    Edge(RELEASED,         "pay_duty",          DUTY_PAID,         (BUYER,),           DUTY_DUE),
    Edge(RELEASED,         "out_for_delivery",  OUT_FOR_DELIVERY,  (COURIER,),         NO_DUTY_DUE),
    Edge(DUTY_PAID,        "out_for_delivery",  OUT_FOR_DELIVERY,  (COURIER,)),
    Edge(OUT_FOR_DELIVERY, "deliver",           DELIVERED,         (COURIER,)),
    Edge(DELIVERED,        "confirm_receipt",   RECEIVED,          (BUYER,)),
    *(Edge(state, "warn", state, (CUSTOMS,)) for state in BEFORE_RELEASE),
)  # fmt: skip

# Actions that move an existing parcel (``create_order`` makes one: none -> ORDERED -> SCREENED).
PARCEL_ACTIONS: Final = tuple(dict.fromkeys(edge.action for edge in EDGES if edge.roles != (AUTO,)))


def get_roles(action: str) -> tuple[str, ...]:
    """The roles that may sign ``action`` (from any state)."""
    roles: dict[str, None] = {}
    for edge in EDGES:
        if edge.action == action:
            roles.update(dict.fromkeys(edge.roles))
    return tuple(roles)


def get_edges(source: str, action: str) -> tuple[Edge, ...]:
    """The rows leaving ``source`` by ``action`` (empty: not allowed in this state)."""
    return tuple(edge for edge in EDGES if edge.source == source and edge.action == action)


def is_transition(source: str, action: str, target: str) -> bool:
    """True when ``source --action--> target`` is a row of the table."""
    return any(edge.target == target for edge in get_edges(source, action))
