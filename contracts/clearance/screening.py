"""Deterministic screening of an order and the choice of clearance route.

Screening runs inside ``create_order``; its result is ``clear`` or ``warn`` with reasons.
Warnings (the seller gets a ``pre_alert`` event at once, so it can cancel before the goods
fly) are:

* ``RESTRICTED_HS``: an item's HS code starts with a customs-listed restricted prefix;
* ``RESTRICTED_KEYWORD``: an item's description contains a customs-listed keyword;
* ``QUANTITY_CAP``: more units of a kind than personal use allows (e.g. 6 bottles of
  health functional food);
* ``COMBINED_TAXATION``: with the buyer's other parcels from the same seller on the same
  Korean date, the value exceeds the threshold (the order is taxed as a general import).

* ``KIND_INFERRED``: the description names an excluded kind (e.g. red ginseng) that the
  seller did not declare; the item is screened as that kind.

Notes (facts, not warnings) say why the route is a general declaration: ``EXCLUDED_KIND``
and ``OVER_THRESHOLD``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.clearance.rules import (
    EXCLUDED_FROM_LIST,
    KIND_KEYWORDS,
    QUANTITY_CAPS,
    get_threshold_usd_cents,
)
from contracts.clearance.rules import (
    GENERAL as GENERAL_KIND,
)

CLEAR = "clear"
WARN = "warn"
LIST = "list"  # list clearance (목록통관)
GENERAL = "general"  # general import declaration (일반수입신고)


@dataclass(frozen=True)
class Route:
    """How a parcel clears: route, the threshold applied, the value compared, taxable."""

    route: str
    threshold_usd_cents: int
    assessed_usd_cents: int
    taxable: bool
    combined: bool
    excluded_kinds: tuple[str, ...]

    def to_obj(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "threshold_usd_cents": self.threshold_usd_cents,
            "assessed_usd_cents": self.assessed_usd_cents,
            "taxable": self.taxable,
            "combined": self.combined,
            "excluded_kinds": list(self.excluded_kinds),
        }


@dataclass(frozen=True)
class GroupMember:
    """Another parcel of the same buyer, seller and date (combined taxation)."""

    order_id: str
    usd_cents: int
    threshold_usd_cents: int


# ``KIND_KEYWORDS`` in the order they are tried, sorted once rather than per item.
_KIND_KEYWORDS_SORTED: tuple[tuple[str, str], ...] = tuple(sorted(KIND_KEYWORDS.items()))


def reason(code: str, detail: str) -> dict[str, str]:
    return {"code": code, "detail": detail}


def get_kind(item: Mapping[str, Any], any_declared: bool = False) -> str:
    """The kind an item is screened as: the declared one, unless its words reveal another.

    ``any_declared`` (rules version 4 on): the words are read whatever kind was declared,
    unless that kind is itself excluded from list clearance. Before, only ``general``
    items were read, so red ginseng declared as ``food`` went through list clearance,
    though the workflow excludes herbal medicines whatever they are declared as.
    """
    declared = str(item["kind"])
    if declared != GENERAL_KIND and not (any_declared and declared not in EXCLUDED_FROM_LIST):
        return declared
    description = str(item["description"]).casefold()
    for word, kind in _KIND_KEYWORDS_SORTED:
        if word in description:
            return kind
    return declared


def get_kinds(items: Iterable[Mapping[str, Any]], any_declared: bool = False) -> list[str]:
    return [get_kind(item, any_declared) for item in items]


def compute_route(
    kinds: Iterable[str],
    origin: str,
    value_usd_cents: int,
    others: Sequence[GroupMember] = (),
) -> Route:
    """List clearance or general declaration, and whether the whole value is taxed.

    With other parcels in the combined-taxation group, the group's total is compared with
    the strictest threshold of its members.
    """
    kind_set = frozenset(kinds)
    threshold = get_threshold_usd_cents(origin, kind_set)
    assessed = value_usd_cents
    for member in others:
        threshold = min(threshold, member.threshold_usd_cents)
        assessed += member.usd_cents
    taxable = assessed > threshold
    excluded = tuple(sorted(kind_set & EXCLUDED_FROM_LIST))
    route = GENERAL if taxable or excluded else LIST
    combined = bool(others) and taxable and value_usd_cents <= threshold
    return Route(route, threshold, assessed, taxable, combined, excluded)


def screen_order(
    items: Sequence[dict[str, Any]],
    route: Route,
    restricted_hs: Iterable[str],
    restricted_keywords: Iterable[str],
    *,
    kinds: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The screening record of an order: result, warning reasons, notes and route.

    ``kinds``, when the caller already has them, must be ``get_kinds(items)``.
    """
    reasons: list[dict[str, str]] = []
    hs_prefixes = sorted(restricted_hs)
    keywords = sorted(restricted_keywords)
    if kinds is None:
        kinds = get_kinds(items)
    units: dict[str, int] = {}
    for index, item in enumerate(items):
        kind = kinds[index]
        if kind != item["kind"]:
            reasons.append(reason("KIND_INFERRED", f"item {index}: screened as {kind}"))
        for prefix in hs_prefixes:
            if str(item["hs"]).startswith(prefix):
                reasons.append(reason("RESTRICTED_HS", f"item {index}: HS {item['hs']} ({prefix})"))
        description = str(item["description"]).casefold()
        for keyword in keywords:
            if keyword in description:
                reasons.append(reason("RESTRICTED_KEYWORD", f"item {index}: {keyword!r}"))
        units[kind] = units.get(kind, 0) + int(item["quantity"])
    for kind, cap in sorted(QUANTITY_CAPS.items()):
        if units.get(kind, 0) > cap:
            reasons.append(reason("QUANTITY_CAP", f"{units[kind]} units of {kind}, cap {cap}"))
    if route.combined:
        reasons.append(reason(
            "COMBINED_TAXATION",
            f"same buyer, seller and date total {route.assessed_usd_cents} US cents "
            f"> {route.threshold_usd_cents}",
        ))
    notes: list[dict[str, str]] = []
    if route.excluded_kinds:
        notes.append(reason("EXCLUDED_KIND", ", ".join(route.excluded_kinds)))
    if route.taxable and not route.combined:
        notes.append(reason(
            "OVER_THRESHOLD",
            f"{route.assessed_usd_cents} US cents > {route.threshold_usd_cents}",
        ))
    return {
        "result": WARN if reasons else CLEAR,
        "reasons": reasons,
        "notes": notes,
        **route.to_obj(),
    }
