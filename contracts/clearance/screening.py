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


# Characters that render as nothing: a keyword split by one matched nothing (review).
_INVISIBLE = frozenset([0x00AD, 0x034F, *range(0x200B, 0x2010), *range(0x202A, 0x202F),
                        *range(0x2060, 0x2065), 0xFEFF])
_HANGUL_S, _HANGUL_L, _HANGUL_V, _HANGUL_T = 0xAC00, 0x1100, 0x1161, 0x11A7
_HANGUL_V_COUNT, _HANGUL_T_COUNT, _HANGUL_S_COUNT = 21, 28, 11172


def fold_text(text: str) -> str:
    """``text`` as screening compares it (rules version 5): case folded, full-width ASCII
    as ASCII, decomposed Hangul (conjoining jamo) composed into syllables, and invisible
    format characters dropped.

    Why: "ｓｉｂｕｔｒａｍｉｎｅ" (full width) or "홍삼" typed as decomposed jamo passed the
    restricted keywords and the excluded-kind words, which compare code points (review).
    Not ``unicodedata.normalize``: its tables follow the interpreter's Unicode version, so
    nodes on two Python versions could fold a character differently and disagree on a
    block; these rules are fixed arithmetic on code points. Case is folded only where
    every Python agrees (:func:`_is_stably_cased`), not in scripts a later Unicode may
    still give new case pairs (a review of the round). Keywords are stored folded by this
    same function (version 5), so a keyword and a description fold alike.
    """
    if text.isascii():
        return text.casefold()
    out: list[int] = []
    for char in text:
        code = ord(char)
        if code in _INVISIBLE:
            continue
        if 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        elif code == 0x3000:
            code = 0x20
        last = out[-1] if out else -1
        if _HANGUL_L <= last < _HANGUL_L + 19 and _HANGUL_V <= code < _HANGUL_V + _HANGUL_V_COUNT:
            out[-1] = _HANGUL_S + ((last - _HANGUL_L) * _HANGUL_V_COUNT
                                   + (code - _HANGUL_V)) * _HANGUL_T_COUNT
            continue
        if (_HANGUL_S <= last < _HANGUL_S + _HANGUL_S_COUNT
                and (last - _HANGUL_S) % _HANGUL_T_COUNT == 0
                and _HANGUL_T < code < _HANGUL_T + _HANGUL_T_COUNT):
            out[-1] = last + code - _HANGUL_T
            continue
        if _is_stably_cased(code):
            out.extend(map(ord, chr(code).casefold()))
        else:
            out.append(code)
    return "".join(map(chr, out))


def _is_stably_cased(code: int) -> bool:
    """Latin, Greek, Cyrillic and Armenian (below U+0590), Latin Extended Additional
    (Vietnamese, U+1E00-U+1EFF) and the Latin and Armenian ligatures (U+FB00-U+FB17):
    scripts whose case folding every Python agrees on (identical from 3.11 to 3.13 for
    every code point, checked), unlike scripts a later Unicode may still give case pairs."""
    return code < 0x0590 or 0x1E00 <= code <= 0x1EFF or 0xFB00 <= code <= 0xFB17


def quote_keyword(keyword: str) -> str:
    """``keyword`` in single quotes as a reason's detail names it (rules version 5): as
    ``repr`` writes a printable one, with only backslash, the quote and the C0 and C1
    controls escaped. ``repr`` decides what else to escape by the interpreter's Unicode
    tables, so its text could differ between two nodes' Python versions (review)."""
    out = []
    for char in keyword:
        code = ord(char)
        if char in "\\'":
            out.append("\\" + char)
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


def reason(code: str, detail: str) -> dict[str, str]:
    return {"code": code, "detail": detail}


def get_kind(item: Mapping[str, Any], any_declared: bool = False, fold: bool = False) -> str:
    """The kind an item is screened as: the declared one, unless its words reveal another.

    ``any_declared`` (rules version 4 on): the words are read whatever kind was declared,
    unless that kind is itself excluded from list clearance. Before, only ``general``
    items were read, so red ginseng declared as ``food`` went through list clearance,
    though the workflow excludes herbal medicines whatever they are declared as.
    ``fold`` (rules version 5 on): the words are compared as :func:`fold_text` folds them.
    """
    declared = str(item["kind"])
    if declared != GENERAL_KIND and not (any_declared and declared not in EXCLUDED_FROM_LIST):
        return declared
    description = (fold_text if fold else str.casefold)(str(item["description"]))
    for word, kind in _KIND_KEYWORDS_SORTED:
        if word in description:
            return kind
    return declared


def get_kinds(items: Iterable[Mapping[str, Any]], any_declared: bool = False,
              fold: bool = False) -> list[str]:
    return [get_kind(item, any_declared, fold) for item in items]


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
    fold: bool = False,
) -> dict[str, Any]:
    """The screening record of an order: result, warning reasons, notes and route.

    ``kinds``, when the caller already has them, must be ``get_kinds(items)``. ``fold``
    (rules version 5 on): descriptions and keywords are compared as :func:`fold_text`
    folds them; a reason names the keyword as customs listed it.
    """
    reasons: list[dict[str, str]] = []
    hs_prefixes = sorted(restricted_hs)
    fold_one = fold_text if fold else str.casefold
    # Stored keywords are folded already (parse_restricted: by fold_text from version 5,
    # by str.casefold before), so they are compared as stored.
    keywords = sorted(restricted_keywords)
    if fold:  # a keyword folding to under 2 characters ("\u200b\u200b") matched every parcel
        keywords = [keyword for keyword in keywords if len(keyword) >= 2]
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
        description = fold_one(str(item["description"]))
        for keyword in keywords:
            if keyword in description:
                named = quote_keyword(keyword) if fold else repr(keyword)
                reasons.append(reason("RESTRICTED_KEYWORD", f"item {index}: {named}"))
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
