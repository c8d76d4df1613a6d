"""Read-only answers of the ``clearance`` contract, served from secondary indexes.

Everything about a parcel is visible to every member by design (DESIGN.md section 7),
except the sealed buyer blob, which only customs receives, and to any caller of the API
(unsigned too: the tracking page), since the same data is in the blocks and events any
caller reads (docs/contracts-clearance.md, Privacy). A buyer's parcels are listed only to
a signed caller of role ``buyer`` (its own platform's parcels) or ``customs``; the work
queue and combined-taxation groups only to customs: answers shaped for their users, not
access control.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.clearance import rules
from contracts.clearance.rules import BUYER, CUSTOMS
from contracts.clearance.states import QUEUE_STATES
from contracts.sdk import (
    E_ARGS,
    E_FORBIDDEN,
    E_NOT_FOUND,
    E_UNKNOWN_QUERY,
    ContractError,
    Member,
    QueryContext,
    arg_str,
)

SEALED_FIELDS = ("buyer_sealed",)


def is_customs(caller: Member | None) -> bool:
    return caller is not None and caller.has_role(CUSTOMS)


def require_caller_role(ctx: QueryContext, *roles: str) -> Member:
    """Refuse unsigned callers and callers without one of ``roles`` (E_FORBIDDEN)."""
    if ctx.caller is None or ctx.caller.revoked or not ctx.caller.has_role(*roles):
        raise ContractError(E_FORBIDDEN, f"this query needs a signed caller of role "
                                         f"{' or '.join(roles)}")
    return ctx.caller


def get_view(order: Mapping[str, Any], caller: Member | None) -> dict[str, Any]:
    """The parcel as ``caller`` may see it: sealed personal data only for customs."""
    if is_customs(caller):
        return dict(order)
    return {key: value for key, value in order.items() if key not in SEALED_FIELDS}


def find_order(ctx: QueryContext, args: Mapping[str, Any]) -> Mapping[str, Any]:
    """The order named by ``order_id`` or by ``waybill``."""
    if args.get("order_id") is not None:
        order_id = arg_str(args, "order_id", pattern=rules.ORDER_ID, max_len=64)
    elif args.get("waybill") is not None:
        waybill = arg_str(args, "waybill", pattern=rules.WAYBILL,
                          code=rules.E_INVALID_WAYBILL)
        found = ctx.state.get(f"waybill/{waybill}")
        if found is None:
            raise ContractError(E_NOT_FOUND, f"no parcel with waybill {waybill}")
        order_id = str(found)
    else:
        raise ContractError(E_ARGS, "give order_id or waybill")
    order = ctx.state.get(f"order/{order_id}")
    if order is None:
        raise ContractError(E_NOT_FOUND, f"no order {order_id!r}")
    return dict(order)


def get_summary(order: Mapping[str, Any]) -> dict[str, Any]:
    shipment = order.get("shipment") or {}
    declaration = order.get("declaration") or {}
    assessment = declaration.get("assessment") or {}
    return {
        "order_id": order["order_id"],
        "state": order["state"],
        "waybill": shipment.get("waybill"),
        "seller": order["seller"],
        "courier": order["courier"],
        "declaration": declaration.get("type"),
        "total_krw": assessment.get("total_krw"),
        "screening": order["screening"]["result"] if order.get("screening") else None,
        "updated_height": order["history"][-1]["height"],
    }


def query_parcel(ctx: QueryContext, args: Mapping[str, Any]) -> Any:
    return get_view(find_order(ctx, args), ctx.caller)


def query_history(ctx: QueryContext, args: Mapping[str, Any]) -> Any:
    order = find_order(ctx, args)
    return {"order_id": order["order_id"], "state": order["state"],
            "history": list(order["history"])}


def query_buyer_parcels(ctx: QueryContext, args: Mapping[str, Any]) -> Any:
    caller = require_caller_role(ctx, BUYER, CUSTOMS)
    ref = arg_str(args, "buyer_ref", pattern=rules.BUYER_REF, code=rules.E_INVALID_BUYER_REF)
    parcels = []
    for key, platform in ctx.state.scan(f"buyer/{ref}/"):
        # A buyer platform sees only the parcels it acts for.
        if not caller.has_role(CUSTOMS) and platform != caller.org:
            continue
        order = ctx.state.get(f"order/{key.rsplit('/', 1)[1]}")
        if order is not None:
            parcels.append(get_view(order, caller))
    return parcels


def query_work_queue(ctx: QueryContext, args: Mapping[str, Any]) -> Any:
    require_caller_role(ctx, CUSTOMS)
    wanted = arg_str(args, "state", optional=True, max_len=32)
    if wanted and wanted not in QUEUE_STATES:
        raise ContractError(E_ARGS, f"state must be one of {', '.join(QUEUE_STATES)}")
    queue = []
    for state in (wanted,) if wanted else QUEUE_STATES:
        for key, _ in ctx.state.scan(f"queue/{state}/"):
            order = ctx.state.get(f"order/{key.rsplit('/', 1)[1]}")
            if order is not None:
                queue.append(get_summary(order))
    return queue


def parse_flag(args: Mapping[str, Any], name: str) -> bool:
    """A yes/no argument: JSON ``true``/``false``, or from a query string ``true``/``1`` and
    ``false``/``0`` (regression: the string "false" counted as true)."""
    value = args.get(name, False)
    if isinstance(value, bool):
        return value
    if value in ("true", "1", 1):  # JSON 1 and 0 counted before as well
        return True
    if value in ("false", "0", "", 0):
        return False
    raise ContractError(E_ARGS, f"{name} must be true or false")


def query_combined_groups(ctx: QueryContext, args: Mapping[str, Any]) -> Any:
    """Groups of parcels of one buyer, seller and Korean date; ``over`` when taxed together."""
    require_caller_role(ctx, CUSTOMS)
    prefix = "group/"
    if args.get("buyer_ref") is not None:
        ref = arg_str(args, "buyer_ref", pattern=rules.BUYER_REF,
                      code=rules.E_INVALID_BUYER_REF)
        prefix += f"{ref}/"
    include_single = parse_flag(args, "include_single")
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, members in ctx.state.scan(prefix):
        _, ref, seller, date = key.split("/")
        for order_id, member in members.items():
            group = groups.setdefault((ref, seller, date), {
                "buyer_ref": ref, "seller": seller, "date": date, "orders": [],
                "usd_cents": 0, "threshold_usd_cents": member["threshold_usd_cents"],
            })
            group["orders"].append(order_id)
            group["usd_cents"] += member["usd_cents"]
            group["threshold_usd_cents"] = min(group["threshold_usd_cents"],
                                               member["threshold_usd_cents"])
    answer = []
    for group in groups.values():
        if len(group["orders"]) < 2 and not include_single:
            continue
        group["over"] = group["usd_cents"] > group["threshold_usd_cents"]
        answer.append(group)
    return answer


def query_restricted_list(ctx: QueryContext, args: Mapping[str, Any]) -> Any:
    return {
        "hs": [{"prefix": key.rsplit("/", 1)[1], **v}
               for key, v in ctx.state.scan("restricted/hs/")],
        "keywords": [{"keyword": key.rsplit("/", 1)[1], **v}
                     for key, v in ctx.state.scan("restricted/kw/")],
    }


def query_rates(ctx: QueryContext, args: Mapping[str, Any]) -> Any:
    return {key.rsplit("/", 1)[1]: value for key, value in ctx.state.scan("rate/")}


QUERIES = {
    "parcel": query_parcel,
    "history": query_history,
    "buyer_parcels": query_buyer_parcels,
    "work_queue": query_work_queue,
    "combined_groups": query_combined_groups,
    "restricted_list": query_restricted_list,
    "rates": query_rates,
}


def run(ctx: QueryContext, name: str, args: Mapping[str, Any]) -> Any:
    handler = QUERIES.get(name)
    if handler is None:
        raise ContractError(E_UNKNOWN_QUERY, f"clearance has no query {name!r}")
    return handler(ctx, args)
