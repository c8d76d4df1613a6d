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


def _index_roles() -> dict[str, tuple[str, ...]]:
    """Action -> the roles of its rows, in table order without repeats."""
    roles: dict[str, dict[str, None]] = {}
    for edge in EDGES:
        roles.setdefault(edge.action, {}).update(dict.fromkeys(edge.roles))
    return {action: tuple(found) for action, found in roles.items()}


def _index_edges() -> dict[tuple[str, str], tuple[Edge, ...]]:
    """(source, action) -> its rows, in table order."""
    edges: dict[tuple[str, str], list[Edge]] = {}
    for edge in EDGES:
        edges.setdefault((edge.source, edge.action), []).append(edge)
    return {pair: tuple(rows) for pair, rows in edges.items()}


# ``EDGES`` indexed once at import: every transition looks rows up here, and scanning the
# whole table per lookup showed in profiles. The tables are immutable (tuples of frozen rows).
_ROLES_BY_ACTION: Final[dict[str, tuple[str, ...]]] = _index_roles()
_EDGES_BY_SOURCE_ACTION: Final[dict[tuple[str, str], tuple[Edge, ...]]] = _index_edges()


def get_roles(action: str) -> tuple[str, ...]:
    """The roles that may sign ``action`` (from any state)."""
    return _ROLES_BY_ACTION.get(action, ())


def get_edges(source: str, action: str) -> tuple[Edge, ...]:
    """The rows leaving ``source`` by ``action`` (empty: not allowed in this state)."""
    return _EDGES_BY_SOURCE_ACTION.get((source, action), ())


def is_transition(source: str, action: str, target: str) -> bool:
    """True when ``source --action--> target`` is a row of the table."""
    return any(edge.target == target for edge in get_edges(source, action))
