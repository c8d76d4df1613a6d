"""The ``clearance`` contract: e-commerce import clearance in Korea.

The business rules are those of ``workflows/customs-clearance.md``.

Each party writes its own facts about a parcel, in order and signed; the contract checks
the signer's role and ownership, the parcel's state (``states.EDGES``) and the data, and
rejects anything else with a stable error code.

State layout (namespace ``clearance``):

* ``order/<order_id>`` -> the parcel record (public fields, sealed buyer blob, screening,
  shipment, declaration, inspection, payment, history)
* ``waybill/<waybill>`` -> order id
* ``buyer/<buyer_ref>/<order_id>`` -> buyer platform org
* ``queue/<state>/<order_id>`` -> 1 (customs' work queue: ``states.QUEUE_STATES``)
* ``group/<buyer_ref>/<seller>/<kst date>`` -> ``{<order_id>: {"usd_cents",
  "threshold_usd_cents"}}`` (one key per combined-taxation group: each new order reads its
  group with one lookup; a prefix scan opens a store iterator, ~10 µs a call)
* ``restricted/hs/<prefix>``, ``restricted/kw/<keyword>`` -> ``{"note", "height"}``
* ``rate/<currency>`` -> ``{"usd_micro", "krw_centi", "height"}``
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final, NamedTuple

from contracts import membership
from contracts.clearance import duty, queries, rules, screening
from contracts.clearance.rules import (
    BUYER,
    COURIER,
    CUSTOMS,
    E_AMOUNT,
    E_DUTY_UNPAID,
    E_GROUP_LIMIT,
    E_INVALID_BUYER_REF,
    E_INVALID_COUNTRY,
    E_INVALID_CURRENCY,
    E_INVALID_KIND,
    E_INVALID_SEALED,
    E_INVALID_WAYBILL,
    E_NO_DUTY,
    E_NO_RATE,
    E_NOT_OWNER,
    SELLER,
)
from contracts.clearance.states import (
    AUTO,
    DUTY_DUE,
    HELD,
    NO_DUTY_DUE,
    ORDERED,
    QUEUE_STATES,
    REASSESSABLE,
    RELEASED,
    RETURNED,
    SCREENED,
    SEIZED,
    UNDER_INSPECTION,
    get_edges,
    get_roles,
)
from contracts.sdk import (
    E_ARGS,
    E_EXISTS,
    E_NOT_FOUND,
    E_STATE,
    E_UNKNOWN_ACTION,
    Call,
    Context,
    Contract,
    ContractError,
    Member,
    QueryContext,
    arg_int,
    arg_list,
    arg_map,
    arg_str,
)

NAME = "clearance"
# In a combined-taxation group entry (rules version 3): the order holds a list declaration.
LISTED = "list"
PARSE_CACHE_SIZE: Final = 100_000
"""Parsed orders remembered between admission and execution (see ``parse_order``); the
default mempool holds at most this many transactions."""
TX_HASH_SIZE: Final = 32  # SHA-256 of the signed transaction body
OWNER_FIELDS: Final[dict[str, str]] = {SELLER: "seller", COURIER: "courier",
                                       BUYER: "buyer_platform"}
INSPECTION_RESULTS = (RELEASED, HELD, SEIZED)
HOLD_RESOLUTIONS = (UNDER_INSPECTION, RELEASED, SEIZED, RETURNED)
GUARD_ERRORS = {DUTY_DUE: E_NO_DUTY, NO_DUTY_DUE: E_DUTY_UNPAID}


# --- keys -------------------------------------------------------------------------------------


def order_key(order_id: str) -> str:
    return f"order/{order_id}"


def group_key(order: Mapping[str, Any]) -> str:
    return f"group/{order['buyer_ref']}/{order['seller']}/{order['date']}"


# --- stateless argument parsing (shared by check and apply) ------------------------------------


class OrderArgs(NamedTuple):
    """A checked ``create_order``: deeply immutable, so one parse can be shared safely.

    ``items`` are read-only views (copy them with ``dict(item)`` before storing);
    ``goods_value`` is the sum of their amounts, in minor units of ``currency``. A named
    tuple rather than a frozen dataclass: it is built at every admission, four times faster.
    """

    order_id: str
    courier: str
    buyer_platform: str
    buyer_ref: str
    buyer_sealed: str
    currency: str
    ship_from: str
    items: tuple[Mapping[str, Any], ...]
    goods_value: int


def parse_order_id(args: Mapping[str, Any]) -> str:
    return arg_str(args, "order_id", pattern=rules.ORDER_ID, max_len=64)


def parse_text(args: Mapping[str, Any], name: str, *, optional: bool = False) -> str:
    value = arg_str(args, name, max_len=rules.MAX_TEXT, optional=optional)
    if not optional and not value.strip():
        raise ContractError(E_ARGS, f"argument {name!r} must not be empty")
    return value


def parse_currency(value: str) -> str:
    if value not in rules.CURRENCY_EXPONENT:
        raise ContractError(E_INVALID_CURRENCY, f"unsupported currency {value!r}")
    return value


def parse_sealed(args: Mapping[str, Any]) -> str:
    text = arg_str(args, "buyer_sealed", max_len=4 * (rules.SEALED_MAX_BYTES // 3 + 1))
    if not rules.is_base64(text):
        raise ContractError(E_INVALID_SEALED, "buyer_sealed must be standard base64")
    # Well-formed base64 always decodes: its size is counted without decoding it.
    size = rules.get_base64_size(text)
    if not rules.SEALED_MIN_BYTES <= size <= rules.SEALED_MAX_BYTES:
        raise ContractError(
            E_INVALID_SEALED,
            f"sealed buyer data must be {rules.SEALED_MIN_BYTES}-{rules.SEALED_MAX_BYTES} bytes",
        )
    return text


def parse_item(index: int, raw: Any) -> dict[str, Any]:
    if type(raw) is not dict and not isinstance(raw, Mapping):  # dict: no ABC check
        raise ContractError(E_ARGS, f"item {index} must be a map")
    hs = rules.normalise_hs(arg_str(raw, "hs", max_len=16))
    description = parse_text(raw, "description")
    kind = arg_str(raw, "kind", max_len=32)
    if kind not in rules.KINDS:
        raise ContractError(E_INVALID_KIND, f"item {index}: unknown kind {kind!r}")
    quantity = arg_int(raw, "quantity", minimum=1, maximum=rules.MAX_QUANTITY)
    unit_price = arg_int(raw, "unit_price", maximum=rules.MAX_AMOUNT)
    amount = quantity * unit_price
    if amount > rules.MAX_AMOUNT:
        raise ContractError(E_ARGS, f"item {index}: amount too large")
    return {
        "hs": hs,
        "description": description,
        "kind": kind,
        "quantity": quantity,
        "unit_price": unit_price,
        "amount": amount,
    }


def parse_create_order(args: Mapping[str, Any]) -> OrderArgs:
    # The fields are checked in this order so that an order with several faults always
    # fails with the same error.
    raw_items = arg_list(args, "items", max_items=rules.MAX_ITEMS)
    order_id = parse_order_id(args)
    courier = arg_str(args, "courier", pattern=rules.ORG_ID, max_len=64)
    buyer_platform = arg_str(args, "buyer_platform", pattern=rules.ORG_ID, max_len=64)
    buyer_ref = arg_str(args, "buyer_ref", pattern=rules.BUYER_REF, code=E_INVALID_BUYER_REF)
    buyer_sealed = parse_sealed(args)
    currency = parse_currency(arg_str(args, "currency", max_len=3))
    ship_from = arg_str(args, "ship_from", pattern=rules.COUNTRY, code=E_INVALID_COUNTRY)
    items = tuple(
        MappingProxyType(parse_item(index, raw)) for index, raw in enumerate(raw_items)
    )
    goods_value = sum(int(item["amount"]) for item in items)
    if goods_value > rules.MAX_AMOUNT:
        raise ContractError(E_ARGS, "order value too large")
    return OrderArgs(order_id, courier, buyer_platform, buyer_ref, buyer_sealed, currency,
                     ship_from, items, goods_value)


def parse_rates(args: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    raw = arg_map(args, "rates")
    if not raw or len(raw) > len(rules.CURRENCY_EXPONENT):
        raise ContractError(E_ARGS, "rates must map 1 or more supported currencies")
    rates: dict[str, dict[str, int]] = {}
    for currency, entry in raw.items():
        parse_currency(str(currency))
        if not isinstance(entry, Mapping):
            raise ContractError(E_ARGS, f"rate of {currency} must be a map")
        usd_micro = arg_int(entry, "usd_micro", minimum=1, maximum=rules.MAX_RATE)
        krw_centi = arg_int(entry, "krw_centi", minimum=1, maximum=rules.MAX_RATE)
        # Verify the identities: a dollar is a dollar, a won is a won.
        if currency == "USD" and usd_micro != rules.USD_MICRO_PER_USD:
            raise ContractError(E_ARGS, f"USD usd_micro must be {rules.USD_MICRO_PER_USD}")
        if currency == "KRW" and krw_centi != rules.KRW_CENTI_PER_KRW:
            raise ContractError(E_ARGS, f"KRW krw_centi must be {rules.KRW_CENTI_PER_KRW}")
        rates[str(currency)] = {"usd_micro": usd_micro, "krw_centi": krw_centi}
    return rates


def parse_restricted(args: Mapping[str, Any], fold: Callable[[str], str] = str.casefold
                     ) -> tuple[str, list[str], list[str], str]:
    """The restricted-list update; keywords stored folded by ``fold``: ``str.casefold``
    before rules version 5, :func:`screening.fold_text` from it (as descriptions are
    compared; review: "thuốc" listed did not match "THUỐC", nor a ligature itself)."""
    op = arg_str(args, "op", max_len=8)
    if op not in ("add", "remove"):
        raise ContractError(E_ARGS, "op must be 'add' or 'remove'")
    hs_raw = args.get("hs") or []
    kw_raw = args.get("keywords") or []
    if not isinstance(hs_raw, list) or not isinstance(kw_raw, list):
        raise ContractError(E_ARGS, "hs and keywords must be lists")
    if not hs_raw and not kw_raw:
        raise ContractError(E_ARGS, "give at least one HS prefix or keyword")
    if len(hs_raw) + len(kw_raw) > rules.MAX_RESTRICTED_PER_CALL:
        raise ContractError(E_ARGS, f"at most {rules.MAX_RESTRICTED_PER_CALL} entries per call")
    hs_codes = []
    for code in hs_raw:
        if not isinstance(code, str) or len(code) > 16:
            raise ContractError(rules.E_INVALID_HS, f"invalid HS prefix {code!r}")
        hs_codes.append(rules.normalise_hs(code, pattern=rules.HS_PREFIX_DIGITS))
    keywords = []
    for word in kw_raw:
        if not isinstance(word, str) or not 2 <= len(word.strip()) <= 64 or "/" in word:
            raise ContractError(E_ARGS, f"invalid keyword {word!r} (2-64 characters, no '/')")
        keywords.append(fold(word.strip()))
    note = arg_str(args, "note", max_len=rules.MAX_TEXT, optional=True)
    return op, sorted(set(hs_codes)), sorted(set(keywords)), note


def parse_ship(args: Mapping[str, Any]) -> tuple[str, str, int, str, str]:
    return (
        parse_order_id(args),
        arg_str(args, "waybill", pattern=rules.WAYBILL, code=E_INVALID_WAYBILL),
        arg_int(args, "weight_g", minimum=1, maximum=rules.MAX_WEIGHT_G),
        arg_str(args, "origin", pattern=rules.COUNTRY, code=E_INVALID_COUNTRY),
        parse_text(args, "carrier"),
    )


def parse_choice(args: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = arg_str(args, name, max_len=32)
    if value not in choices:
        raise ContractError(E_ARGS, f"{name} must be one of {', '.join(choices)}")
    return value


def parse_inspection_result(args: Mapping[str, Any]) -> tuple[str, str, str, list[str]]:
    order_id = parse_order_id(args)
    result = parse_choice(args, "result", INSPECTION_RESULTS)
    reason = parse_text(args, "reason", optional=result == RELEASED)
    documents: list[str] = []
    if result == HELD:
        for doc in arg_list(args, "documents", max_items=32):
            if not isinstance(doc, str) or not doc.strip() or len(doc) > rules.MAX_TEXT:
                raise ContractError(E_ARGS, "documents must be non-empty strings")
            documents.append(doc)
    return order_id, result, reason, documents


def parse_pay_duty(args: Mapping[str, Any]) -> tuple[str, int, str]:
    return (
        parse_order_id(args),
        arg_int(args, "amount_krw", minimum=1, maximum=rules.MAX_AMOUNT),
        arg_str(args, "payment_ref", pattern=rules.ORDER_ID, max_len=64),
    )


def parse_simple(args: Mapping[str, Any]) -> str:
    return parse_order_id(args)


PARSERS: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "set_rates": parse_rates,
    "set_restricted": parse_restricted,
    "create_order": parse_create_order,
    "cancel": lambda a: (parse_order_id(a), parse_text(a, "reason", optional=True)),
    "warn": lambda a: (parse_order_id(a), parse_text(a, "reason")),
    "ship": parse_ship,
    "declare": parse_simple,
    "arrive": lambda a: (
        parse_order_id(a),
        arg_str(a, "port", pattern=rules.PORT, optional=True, max_len=5),
    ),
    "select_inspection": lambda a: (parse_order_id(a), parse_text(a, "reason", optional=True)),
    "release": parse_simple,
    "inspection_result": parse_inspection_result,
    "resolve_hold": lambda a: (
        parse_order_id(a),
        parse_choice(a, "to", HOLD_RESOLUTIONS),
        parse_text(a, "note", optional=True),
    ),
    "pay_duty": parse_pay_duty,
    "out_for_delivery": parse_simple,
    "deliver": parse_simple,
    "confirm_receipt": parse_simple,
}


# --- state helpers ---------------------------------------------------------------------------


def get_order(ctx: Context, order_id: str) -> dict[str, Any]:
    order = ctx.state.get(order_key(order_id))
    if order is None:
        raise ContractError(E_NOT_FOUND, f"no order {order_id!r}")
    return dict(order)


def get_rate(ctx: Context, currency: str) -> dict[str, int]:
    rate = ctx.state.get(f"rate/{currency}")
    if rate is None:
        raise ContractError(E_NO_RATE, f"customs has set no exchange rate for {currency}")
    return {"usd_micro": int(rate["usd_micro"]), "krw_centi": int(rate["krw_centi"])}


def get_group(ctx: Context, order: Mapping[str, Any]) -> dict[str, Any]:
    """The order's combined-taxation group: order id -> member, in order id order."""
    return dict(ctx.state.get(group_key(order)) or {})


def get_group_others(ctx: Context, order: Mapping[str, Any]) -> list[screening.GroupMember]:
    return group_others(get_group(ctx, order), order)


def group_others(group: Mapping[str, Any],
                 order: Mapping[str, Any]) -> list[screening.GroupMember]:
    """The members of ``group`` other than ``order``, for screening."""
    return [
        screening.GroupMember(order_id, int(v["usd_cents"]), int(v["threshold_usd_cents"]))
        for order_id, v in group.items()
        if order_id != order["order_id"]
    ]


def get_origin(order: Mapping[str, Any]) -> str:
    """Where the goods come from: the courier's shipment record, else the seller's word."""
    shipment = order.get("shipment")
    return str(shipment["origin"]) if shipment else str(order["ship_from"])


def get_kinds(order: Mapping[str, Any], any_declared: bool = False,
              fold: bool = False) -> list[str]:
    return screening.get_kinds(order["items"], any_declared, fold)


def get_route_kinds(order: Mapping[str, Any], any_declared: bool = False,
                    fold: bool = False) -> list[str]:
    """The kinds that pick the route and threshold: under version 4 the declared kinds
    count beside those the words reveal. Why: red ginseng declared as ``food`` is screened
    as herbal medicine, and dropping ``food`` would have raised its threshold from the US
    to 200 USD, so the stricter rule taxed the misdeclared parcel less (review)."""
    kinds = get_kinds(order, any_declared, fold)
    if any_declared:
        kinds += [str(item["kind"]) for item in order["items"]]
    return kinds


def get_restricted(ctx: Context) -> tuple[list[str], list[str]]:
    """Customs' restricted HS prefixes and keywords, in key order.

    One scan of ``restricted/`` (``hs/`` sorts before ``kw/``) rather than one per list:
    each scan opens a store iterator, and every new order reads both lists.
    """
    hs_prefixes: list[str] = []
    keywords: list[str] = []
    for key, _ in ctx.state.scan("restricted/"):
        if key.startswith("restricted/hs/"):
            hs_prefixes.append(key.rsplit("/", 1)[1])
        elif key.startswith("restricted/kw/"):
            keywords.append(key.rsplit("/", 1)[1])
    return hs_prefixes, keywords


def is_duty_due(order: Mapping[str, Any]) -> bool:
    declaration = order.get("declaration")
    if not declaration:
        return False
    return int(declaration["assessment"]["total_krw"]) > 0


def is_owner(signer: Member, order: Mapping[str, Any], roles: tuple[str, ...]) -> bool:
    """Customs acts on every parcel; others only on their own (by the role they act in)."""
    for role in roles:
        if not signer.has_role(role):
            continue
        if role == CUSTOMS or order.get(OWNER_FIELDS.get(role, "")) == signer.org:
            return True
    return False


def event_keys(order: Mapping[str, Any]) -> tuple[str, ...]:
    shipment = order.get("shipment")
    keys = [str(order["order_id"])]
    if shipment:
        keys.append(str(shipment["waybill"]))
    keys += [order["seller"], order["courier"], order["buyer_platform"], order["buyer_ref"]]
    return tuple(keys)


def require_org_role(ctx: Context, org_id: str, role: str) -> None:
    org = ctx.read_other(membership.NAME).get(membership.org_key(org_id))
    if org is None:
        raise ContractError(E_NOT_FOUND, f"organisation {org_id!r} not found")
    if role not in org["roles"]:
        raise ContractError(E_ARGS, f"organisation {org_id!r} does not hold role {role!r}")


def make_declaration(ctx: Context, order: Mapping[str, Any],
                     any_declared: bool = False, fold: bool = False) -> dict[str, Any]:
    """The declaration, assembled from the order's ledger data (nothing is retyped)."""
    rate = get_rate(ctx, str(order["currency"]))
    others = get_group_others(ctx, order)
    route = screening.compute_route(
        get_route_kinds(order, any_declared, fold), get_origin(order),
        int(order["value_usd_cents"]), others
    )
    lines = [duty.Line(str(item["hs"]), int(item["amount"])) for item in order["items"]]
    assessment = duty.compute_assessment(
        lines, str(order["currency"]), rate["krw_centi"], taxable=route.taxable
    )
    shipment = order["shipment"]
    return {
        "type": route.route,
        "declarant": order["courier"],
        "waybill": shipment["waybill"],
        "seller": order["seller"],
        "buyer_ref": order["buyer_ref"],
        "origin": shipment["origin"],
        "weight_g": shipment["weight_g"],
        "carrier": shipment["carrier"],
        "currency": order["currency"],
        "items": [
            {k: item[k] for k in ("hs", "description", "kind", "quantity", "amount")}
            for item in order["items"]
        ],
        "goods_value": order["goods_value"],
        "value_usd_cents": order["value_usd_cents"],
        "route": route.to_obj(),
        "combined_with": [member.order_id for member in others] if route.combined else [],
        "assessment": assessment,
        "height": ctx.height,
    }


# --- the contract ------------------------------------------------------------------------------


class ClearanceContract(Contract):
    """Import clearance of e-commerce parcels: seller, courier, customs and buyer platform."""

    name = NAME
    # 2: one state key per combined-taxation group (was one per member). The state, and so
    # the state root, of the same history differs from version 1's: genesis names the
    # version, and a node refuses to run a chain that names another.
    # 3: a group entry carries ``"list": 1`` while its order holds a list-clearance
    # declaration, so re-assessing a group reads only those orders. Under 2 every new order
    # of a group over its threshold read every other order of the group (O(group) reads per
    # order, up to 1,000). Same receipts and events as 2; only group entries differ.
    # 4 (a review against the workflow): words revealing an excluded kind (ginseng) count
    # whatever kind was declared; combined taxation re-assesses every declared parcel not
    # yet taxed, general declarations too (the flag now means "declared, not taxed"); and
    # a parcel cancelled, seized or returned leaves its group, its partners taxed only
    # because of it being re-assessed (or, once released, reported to customs).
    # 5 (a review of the workflow as its parties use it): descriptions, restricted
    # keywords and excluded-kind words are compared folded (screening.fold_text: full-width
    # letters, decomposed Hangul and invisible characters no longer hide a keyword); a
    # released parcel whose group falls under its threshold before its duty is paid is
    # re-declared without the group's duty (leave_group).
    version = "5"
    runs_versions: ClassVar[tuple[str, ...]] = ("2", "3", "4", "5")

    @classmethod
    def for_version(cls, version: str) -> ClearanceContract | None:
        return cls(rules_version=version) if version in cls.runs_versions else None

    def __init__(self, *, parse_cache_size: int = PARSE_CACHE_SIZE,
                 rules_version: str = version,
                 max_group_orders: int = rules.MAX_GROUP_ORDERS) -> None:
        if rules_version not in self.runs_versions:
            raise ValueError(f"clearance has no rules version {rules_version!r}")
        # Version 3 and later keep the list-declared members flagged in their group.
        self.flags_listed = rules_version != "2"
        new_rules = rules_version not in ("2", "3")
        self.reveals_any_kind = new_rules
        self.reassesses_general = new_rules
        self.exits_groups = new_rules
        self.folds_text = rules_version not in ("2", "3", "4")
        self.parse_cache_size = parse_cache_size
        # A parameter (not only the rules constant) so a test can reach the limit with a
        # few orders: a compiled build (mypyc) inlines Final constants.
        self.max_group_orders = max_group_orders
        # tx hash -> (the args parsed, the result); weighed as 1 + items per order so that
        # large orders count for what they hold.
        # Oldest first; an OrderedDict because executed orders leave it from the front, and
        # a plain dict's first key is then found by walking over their emptied slots.
        self._parsed_orders: OrderedDict[bytes, tuple[Mapping[str, Any], OrderArgs]] = \
            OrderedDict()
        self._parsed_weight = 0

    def check(self, call: Call) -> None:
        if call.action == "create_order":
            self.parse_order(call.args, call.tx_hash)
            return
        parser = PARSERS.get(call.action)
        if parser is None:
            raise ContractError(E_UNKNOWN_ACTION, f"clearance has no action {call.action!r}")
        parser(call.args)

    def apply(self, ctx: Context, call: Call) -> None:
        if call.action not in PARSERS:
            raise ContractError(E_UNKNOWN_ACTION, f"clearance has no action {call.action!r}")
        if call.action == "create_order":
            try:
                self.process_create_order(ctx, call.args, tx_hash=call.tx_hash)
            finally:
                # Executed: it will rarely be needed again (a re-execution just re-parses).
                self._forget_order(call.tx_hash)
            return
        handler: Callable[[Context, Mapping[str, Any]], None] = getattr(
            self, f"process_{call.action}")
        handler(ctx, call.args)

    def parse_order(self, args: Mapping[str, Any], tx_hash: bytes = b"") -> OrderArgs:
        """``parse_create_order(args)``, remembered by transaction hash.

        A node parses each order up to three times (mempool ``check``, then ``check`` and
        ``apply`` when the block executes); the parse is a pure function of ``args``, and
        ``tx_hash`` is the SHA-256 of the signed body that includes them, so one hash always
        stands for the same arguments and the same result. Only successes are kept (errors
        are rare and re-raised by re-parsing), the result is immutable, and the oldest entries
        go first beyond ``parse_cache_size`` (one unit per order plus one per item). A
        hand-made ``Call`` without a real hash (tools, tests) is parsed every time.
        """
        if len(tx_hash) != TX_HASH_SIZE:
            return parse_create_order(args)
        cache = self._parsed_orders
        entry = cache.get(tx_hash)
        # The hash is trusted only together with the arguments it was stored with: a
        # caller passing a mismatched hash gets a fresh parse, never another order's.
        if entry is not None and (entry[0] is args or entry[0] == args):
            return entry[1]
        parsed = parse_create_order(args)
        self._forget_order(tx_hash)
        cache[tx_hash] = (args, parsed)
        self._parsed_weight += 1 + len(parsed.items)
        while self._parsed_weight > self.parse_cache_size and cache:
            _, (_, oldest) = cache.popitem(last=False)
            self._parsed_weight -= 1 + len(oldest.items)
        return parsed

    def _forget_order(self, tx_hash: bytes) -> None:
        entry = self._parsed_orders.pop(tx_hash, None)
        if entry is not None:
            self._parsed_weight -= 1 + len(entry[1].items)

    def query(self, ctx: QueryContext, name: str, args: Mapping[str, Any]) -> Any:
        return queries.run(ctx, name, args)

    # --- reference data kept by customs --------------------------------------------------------

    def process_set_rates(self, ctx: Context, args: Mapping[str, Any]) -> None:
        ctx.require_role(CUSTOMS)
        rates = parse_rates(args)
        for currency, rate in sorted(rates.items()):
            ctx.state.put(f"rate/{currency}", {**rate, "height": ctx.height})
        ctx.emit("rates_set", {"rates": rates, "org": ctx.signer.org}, keys=tuple(sorted(rates)))

    def process_set_restricted(self, ctx: Context, args: Mapping[str, Any]) -> None:
        ctx.require_role(CUSTOMS)
        op, hs_codes, keywords, note = parse_restricted(
            args, screening.fold_text if self.folds_text else str.casefold)
        if self.folds_text and op == "add":
            for word in keywords:  # stored folded (version 5): it must still say something
                if len(word) < 2:
                    raise ContractError(E_ARGS, f"keyword {screening.quote_keyword(word)} "
                                                "folds to fewer than 2 characters")
        keys = [f"restricted/hs/{code}" for code in hs_codes]
        keys += [f"restricted/kw/{word}" for word in keywords]
        for key in keys:
            if op == "add":
                ctx.state.put(key, {"note": note, "height": ctx.height, "org": ctx.signer.org})
            elif ctx.state.get(key) is None:
                raise ContractError(E_NOT_FOUND, f"{key} is not on the restricted list")
            else:
                ctx.state.delete(key)
        ctx.emit("restricted_updated",
                 {"op": op, "hs": hs_codes, "keywords": keywords, "org": ctx.signer.org})

    # --- the seller's order and its automatic screening ------------------------------------

    def process_create_order(self, ctx: Context, args: Mapping[str, Any], *,
                             tx_hash: bytes = b"") -> None:
        ctx.require_role(SELLER)
        parsed = self.parse_order(args, tx_hash)
        # Verify the order id is new and the named parties hold their roles.
        if ctx.state.get(order_key(parsed.order_id)) is not None:
            raise ContractError(E_EXISTS, f"order {parsed.order_id!r} already exists")
        require_org_role(ctx, parsed.courier, COURIER)
        require_org_role(ctx, parsed.buyer_platform, BUYER)
        rate = get_rate(ctx, parsed.currency)
        value_usd_cents = duty.compute_usd_cents(
            parsed.goods_value, parsed.currency, rate["usd_micro"]
        )
        order: dict[str, Any] = {
            "order_id": parsed.order_id,
            "seller": ctx.signer.org,
            "courier": parsed.courier,
            "buyer_platform": parsed.buyer_platform,
            "buyer_ref": parsed.buyer_ref,
            "buyer_sealed": parsed.buyer_sealed,
            "currency": parsed.currency,
            "ship_from": parsed.ship_from,
            "items": [dict(item) for item in parsed.items],  # the parse is shared: copy
            "goods_value": parsed.goods_value,
            "usd_micro": rate["usd_micro"],
            "value_usd_cents": value_usd_cents,
            "date": rules.compute_kst_date(ctx.time_ms),
            "state": ORDERED,
            "screening": None,
            "warnings": [],
            "shipment": None,
            "declaration": None,
            "inspection": None,
            "payment": None,
            "created_height": ctx.height,
            "created_time_ms": ctx.time_ms,
            "history": [],
        }
        self.record(ctx, order, "create_order", ORDERED, ctx.signer.org)
        ctx.emit("create_order",
                 {"order_id": parsed.order_id, "from": None, "state": ORDERED,
                  "org": ctx.signer.org, "value_usd_cents": value_usd_cents},
                 keys=event_keys(order))
        # Screen at once: restricted list, thresholds, excluded kinds, quantity caps. The
        # group is read once here and handed to put_group_member below (it is a copy).
        group = get_group(ctx, order)
        others = group_others(group, order)
        kinds = get_kinds(order, self.reveals_any_kind, self.folds_text)
        route_kinds = (get_route_kinds(order, True, self.folds_text) if self.reveals_any_kind
                       else kinds)
        route = screening.compute_route(route_kinds, parsed.ship_from, value_usd_cents, others)
        restricted_hs, restricted_keywords = get_restricted(ctx)
        order["screening"] = screening.screen_order(
            order["items"], route, restricted_hs, restricted_keywords, kinds=kinds,
            fold=self.folds_text,
        )
        self.transition(ctx, order, "screen", SCREENED, org=NAME,
                        detail={"result": order["screening"]["result"]})
        ctx.state.put(f"buyer/{parsed.buyer_ref}/{parsed.order_id}", parsed.buyer_platform)
        self.put_group_member(ctx, order, route_kinds, group=group)
        if order["screening"]["result"] == screening.WARN:
            self.emit_pre_alert(ctx, order, order["screening"]["reasons"])
        if route.taxable and others:
            self.reassess_group(ctx, order)

    def process_cancel(self, ctx: Context, args: Mapping[str, Any]) -> None:
        order, target = self.begin(ctx, args, "cancel")
        reason = parse_text(args, "reason", optional=True)
        self.transition(ctx, order, "cancel", target, detail={"reason": reason})
        self.leave_group(ctx, order)
        # The buyer platform learns of it from the event stream at once.
        ctx.emit(
            "buyer_notice",
            {"order_id": order["order_id"], "buyer_platform": order["buyer_platform"],
             "buyer_ref": order["buyer_ref"], "notice": "order cancelled by seller",
             "reason": reason},
            keys=event_keys(order),
        )

    def process_warn(self, ctx: Context, args: Mapping[str, Any]) -> None:
        order, target = self.begin(ctx, args, "warn")
        warning = screening.reason("MANUAL", parse_text(args, "reason"))
        order["warnings"] = [*order["warnings"], {**warning, "org": ctx.signer.org,
                                                  "height": ctx.height}]
        if order["state"] == SCREENED:
            screened = dict(order["screening"])
            screened["result"] = screening.WARN
            screened["reasons"] = [*screened["reasons"], warning]
            order["screening"] = screened
        self.transition(ctx, order, "warn", target, detail=warning)
        self.emit_pre_alert(ctx, order, [warning])

    # --- the courier -----------------------------------------------------------------------------

    def process_ship(self, ctx: Context, args: Mapping[str, Any]) -> None:
        order, target = self.begin(ctx, args, "ship")
        _, waybill, weight_g, origin, carrier = parse_ship(args)
        # Verify the house waybill is not already used by another parcel.
        if ctx.state.get(f"waybill/{waybill}") is not None:
            raise ContractError(E_EXISTS, f"waybill {waybill} already used")
        order["shipment"] = {"waybill": waybill, "weight_g": weight_g, "origin": origin,
                             "carrier": carrier, "height": ctx.height}
        ctx.state.put(f"waybill/{waybill}", order["order_id"])
        self.transition(ctx, order, "ship", target, detail={"waybill": waybill,
                                                            "origin": origin})
        self.put_group_member(ctx, order)
        self.reassess_group(ctx, order)

    def process_declare(self, ctx: Context, args: Mapping[str, Any]) -> None:
        order, target = self.begin(ctx, args, "declare")
        order["declaration"] = make_declaration(ctx, order, self.reveals_any_kind, self.folds_text)
        if self.flags_listed and self.open_to_combination(order["declaration"]):
            self.flag_listed(ctx, order)
        self.transition(ctx, order, "declare", target,
                        detail={"type": order["declaration"]["type"]})
        self.emit_assessment(ctx, order)
        self.reassess_group(ctx, order)

    def process_arrive(self, ctx: Context, args: Mapping[str, Any]) -> None:
        order, target = self.begin(ctx, args, "arrive")
        port = arg_str(args, "port", pattern=rules.PORT, optional=True, max_len=5)
        self.transition(ctx, order, "arrive", target, detail={"port": port})

    def process_out_for_delivery(self, ctx: Context, args: Mapping[str, Any]) -> None:
        order, target = self.begin(ctx, args, "out_for_delivery")
        self.transition(ctx, order, "out_for_delivery", target)

    def process_deliver(self, ctx: Context, args: Mapping[str, Any]) -> None:
        order, target = self.begin(ctx, args, "deliver")
        self.transition(ctx, order, "deliver", target)

    # --- customs ---------------------------------------------------------------------------------

    def process_select_inspection(self, ctx: Context, args: Mapping[str, Any]) -> None:
        order, target = self.begin(ctx, args, "select_inspection")
        reason = parse_text(args, "reason", optional=True)
        order["inspection"] = {"selected_height": ctx.height, "reason": reason}
        self.transition(ctx, order, "select_inspection", target, detail={"reason": reason})

    def process_release(self, ctx: Context, args: Mapping[str, Any]) -> None:
        order, target = self.begin(ctx, args, "release")
        self.transition(ctx, order, "release", target)

    def process_inspection_result(self, ctx: Context, args: Mapping[str, Any]) -> None:
        _, result, reason, documents = parse_inspection_result(args)
        order, target = self.begin(ctx, args, "inspection_result", result)
        inspection = dict(order["inspection"] or {})
        inspection.update({"result": result, "reason": reason, "documents": documents,
                           "result_height": ctx.height})
        order["inspection"] = inspection
        self.transition(ctx, order, "inspection_result", target,
                        detail={"reason": reason, "documents": documents})
        if target == SEIZED and self.exits_groups:
            self.leave_group(ctx, order)

    def process_resolve_hold(self, ctx: Context, args: Mapping[str, Any]) -> None:
        to = parse_choice(args, "to", HOLD_RESOLUTIONS)
        order, target = self.begin(ctx, args, "resolve_hold", to)
        note = parse_text(args, "note", optional=True)
        self.transition(ctx, order, "resolve_hold", target, detail={"note": note})
        if target in (SEIZED, RETURNED) and self.exits_groups:
            self.leave_group(ctx, order)

    # --- the buyer platform --------------------------------------------------------------------

    def process_pay_duty(self, ctx: Context, args: Mapping[str, Any]) -> None:
        _, amount, payment_ref = parse_pay_duty(args)
        order, target = self.begin(ctx, args, "pay_duty")
        due = int(order["declaration"]["assessment"]["total_krw"])
        # Verify the payment matches the assessment exactly (duty + VAT, in won).
        if amount != due:
            raise ContractError(E_AMOUNT, f"duty and VAT due are {due} KRW, not {amount}")
        order["payment"] = {"amount_krw": amount, "payment_ref": payment_ref,
                            "org": ctx.signer.org, "height": ctx.height}
        self.transition(ctx, order, "pay_duty", target,
                        detail={"amount_krw": amount, "payment_ref": payment_ref})

    def process_confirm_receipt(self, ctx: Context, args: Mapping[str, Any]) -> None:
        order, target = self.begin(ctx, args, "confirm_receipt")
        self.transition(ctx, order, "confirm_receipt", target)

    # --- the machinery every transition shares ----------------------------------------------

    def begin(self, ctx: Context, args: Mapping[str, Any], action: str,
              wanted: str | None = None) -> tuple[dict[str, Any], str]:
        """Check role, existence, ownership, state and guard; return the order and target."""
        roles = get_roles(action)
        # Verify the signer's organisation may take this action at all.
        ctx.require_role(*roles)
        order = get_order(ctx, parse_order_id(args))
        # Verify the signer acts on its own parcel (customs acts on every parcel).
        if not is_owner(ctx.signer, order, roles):
            raise ContractError(E_NOT_OWNER, f"{ctx.signer.org} is not a party to this parcel")
        # Verify the state table has a row for this action from the current state.
        edges = [edge for edge in get_edges(order["state"], action)
                 if wanted is None or edge.target == wanted]
        if not edges:
            raise ContractError(E_STATE, f"{action} not allowed in state {order['state']}"
                                + (f" to {wanted}" if wanted else ""))
        edge = edges[0]
        # Verify the row's data guard (duty due / no duty due).
        if edge.guard and (edge.guard == DUTY_DUE) != is_duty_due(order):
            raise ContractError(GUARD_ERRORS[edge.guard],
                                "duty is due first" if edge.guard == NO_DUTY_DUE
                                else "no duty is due on this parcel")
        return order, edge.target

    def record(self, ctx: Context, order: dict[str, Any], action: str, state: str, org: str,
               detail: Mapping[str, Any] | None = None) -> None:
        entry = {"action": action, "state": state, "org": org, "height": ctx.height,
                 "time_ms": ctx.time_ms}
        if detail:
            entry["detail"] = dict(detail)
        order["history"] = [*order["history"], entry]

    def transition(self, ctx: Context, order: dict[str, Any], action: str, target: str, *,
                   org: str | None = None, detail: Mapping[str, Any] | None = None) -> None:
        """Move ``order`` along a table row, write it with its indexes, and emit the event."""
        source = order["state"]
        edges = [edge for edge in get_edges(source, action) if edge.target == target]
        if not edges or (org is None and edges[0].roles == (AUTO,)):
            raise AssertionError(f"no transition {source} --{action}--> {target}")  # our bug
        if source in QUEUE_STATES:
            ctx.state.delete(f"queue/{source}/{order['order_id']}")
        if target in QUEUE_STATES:
            ctx.state.put(f"queue/{target}/{order['order_id']}", 1)
        order["state"] = target
        by = org if org is not None else ctx.signer.org
        self.record(ctx, order, action, target, by, detail)
        ctx.state.put(order_key(order["order_id"]), order)
        ctx.emit(
            action,
            {"order_id": order["order_id"], "from": source, "state": target, "org": by,
             **(dict(detail) if detail else {})},
            keys=event_keys(order),
        )

    def put_group_member(self, ctx: Context, order: Mapping[str, Any],
                         kinds: list[str] | None = None, *,
                         group: dict[str, Any] | None = None) -> None:
        """Index ``order`` in its combined-taxation group (``kinds``, ``group``: if already
        read in this call; ``group`` is then changed and written)."""
        if kinds is None:
            kinds = get_route_kinds(order, self.reveals_any_kind, self.folds_text)
        threshold = rules.get_threshold_usd_cents(get_origin(order), frozenset(kinds))
        if group is None:
            group = get_group(ctx, order)
        if order["order_id"] not in group and len(group) >= self.max_group_orders:
            raise ContractError(
                E_GROUP_LIMIT,
                f"buyer already has {self.max_group_orders} orders from seller "
                f"{order['seller']!r} on {order['date']} (KST); customs reviews such groups")
        entry = {"usd_cents": order["value_usd_cents"], "threshold_usd_cents": threshold}
        if self.flags_listed and LISTED in group.get(order["order_id"], {}):
            entry[LISTED] = 1
        group[order["order_id"]] = entry
        ctx.state.put(group_key(order), group)

    def flag_listed(self, ctx: Context, order: Mapping[str, Any]) -> None:
        """Mark ``order``'s group entry as holding a list declaration."""
        group = get_group(ctx, order)
        if order["order_id"] not in group:  # left its group (cancelled): nothing to mark
            return
        group[order["order_id"]] = {**group[order["order_id"]], LISTED: 1}
        ctx.state.put(group_key(order), group)

    def unflag_listed(self, ctx: Context, member: Mapping[str, Any],
                      order_ids: list[str]) -> None:
        """Unmark ``order_ids`` (re-declared with duty) in ``member``'s group, in one write."""
        group = get_group(ctx, member)
        for order_id in order_ids:
            entry = dict(group[order_id])
            del entry[LISTED]
            group[order_id] = entry
        ctx.state.put(group_key(member), group)

    def remove_group_member(self, ctx: Context, order: Mapping[str, Any]) -> None:
        group = get_group(ctx, order)
        if group.pop(order["order_id"], None) is None:
            return
        if group:
            ctx.state.put(group_key(order), group)
        else:
            ctx.state.delete(group_key(order))

    def reassess_group(self, ctx: Context, changed: Mapping[str, Any]) -> None:
        """Combined taxation: re-assess list-cleared parcels the group has pushed over.

        Parcels still before release that were declared for list clearance are re-declared
        as general imports with duty; those already released are only reported to customs.
        """
        group = get_group(ctx, changed)
        if self.flags_listed:
            # Only orders holding a list declaration can be re-assessed (below); the
            # group's flags name them, in the same (order id) order as the full walk.
            candidates = [order_id for order_id, entry in group.items()
                          if order_id != changed["order_id"] and LISTED in entry]
        else:
            candidates = [member.order_id for member in group_others(group, changed)]
        redeclared: list[str] = []
        for order_id in candidates:
            order = get_order(ctx, order_id)
            declaration = order.get("declaration")
            if not declaration or not self.open_to_combination(declaration):
                continue
            fresh = make_declaration(ctx, order, self.reveals_any_kind, self.folds_text)
            if self.open_to_combination(fresh):
                continue
            if order["state"] not in REASSESSABLE:
                ctx.emit("combined_taxation_late",
                         {"order_id": order["order_id"], "state": order["state"],
                          "group_usd_cents": fresh["route"]["assessed_usd_cents"]},
                         keys=event_keys(order))
                continue
            order["declaration"] = fresh
            self.record(ctx, order, "reassess", order["state"], NAME,
                        {"type": fresh["type"], "reason": "COMBINED_TAXATION"})
            ctx.state.put(order_key(order["order_id"]), order)
            redeclared.append(order["order_id"])
            self.emit_assessment(ctx, order)
        if self.flags_listed and redeclared:
            self.unflag_listed(ctx, changed, redeclared)

    def open_to_combination(self, declaration: Mapping[str, Any]) -> bool:
        """Whether a group's growth can still tax this declaration: one for list clearance
        (versions 2 and 3), any not yet taxed (4: a general declaration of an excluded kind
        under the threshold owes nothing alone, but the group's whole value is taxed)."""
        if self.reassesses_general:
            return not declaration["route"]["taxable"]
        return bool(declaration["type"] == screening.LIST)

    def leave_group(self, ctx: Context, order: Mapping[str, Any]) -> None:
        """``order`` will not be imported (cancelled, seized, returned): it leaves its
        group, and (version 4 on) each partner taxed only because the group went over its
        threshold is assessed again without it. Before release it is re-declared; after,
        customs hears of it (``combined_taxation_late``, reason ``GROUP_MEMBER_LEFT``),
        since duty may already be paid. From version 5 a released parcel whose duty is not
        paid yet is re-declared too: under 4 it kept owing the group's duty with no action
        left to undo it, and could not go out for delivery unless the buyer paid a tax no
        longer due (review). Reads every member: this is rare."""
        self.remove_group_member(ctx, order)
        if not self.exits_groups:
            return
        relieved: list[str] = []
        for order_id in sorted(get_group(ctx, order)):
            partner = get_order(ctx, order_id)
            declaration = partner.get("declaration")
            # Taxed now, not taxed without the leaver: taxed because of the group, whether
            # the group's total or a member's stricter threshold did it (``combined_with``
            # names only the former; review).
            if (not declaration or not declaration["route"]["taxable"]
                    or "relief_reported" in declaration):
                continue
            fresh = make_declaration(ctx, partner, self.reveals_any_kind, self.folds_text)
            if not self.open_to_combination(fresh):
                continue
            relievable = partner["state"] in REASSESSABLE or (
                self.folds_text and partner["state"] == RELEASED)  # version 5, above
            if not relievable:
                ctx.emit("combined_taxation_late",
                         {"order_id": order_id, "state": partner["state"],
                          "group_usd_cents": fresh["route"]["assessed_usd_cents"],
                          "reason": "GROUP_MEMBER_LEFT", "left": order["order_id"]},
                         keys=event_keys(partner))
                # Once: later leavers change nothing customs has not been told (review).
                partner["declaration"] = {**declaration, "relief_reported": order["order_id"]}
                ctx.state.put(order_key(order_id), partner)
                continue
            partner["declaration"] = fresh
            self.record(ctx, partner, "reassess", partner["state"], NAME,
                        {"type": fresh["type"], "reason": "GROUP_MEMBER_LEFT",
                         "left": order["order_id"]})
            ctx.state.put(order_key(order_id), partner)
            relieved.append(order_id)
            ctx.emit("combined_taxation_undone",
                     {"order_id": order_id, "left": order["order_id"], "type": fresh["type"],
                      "total_krw": fresh["assessment"]["total_krw"]},
                     keys=event_keys(partner))
        for order_id in relieved:
            self.flag_listed(ctx, get_order(ctx, order_id))

    def emit_assessment(self, ctx: Context, order: Mapping[str, Any]) -> None:
        declaration = order["declaration"]
        if declaration["type"] != screening.GENERAL:
            return
        assessment = declaration["assessment"]
        ctx.emit(
            "duty_assessed",
            {"order_id": order["order_id"], "customs_value_krw": assessment["customs_value_krw"],
             "duty_krw": assessment["duty_krw"], "vat_krw": assessment["vat_krw"],
             "total_krw": assessment["total_krw"],
             "combined_with": declaration["combined_with"]},
            keys=event_keys(order),
        )

    def emit_pre_alert(self, ctx: Context, order: Mapping[str, Any],
                       reasons: list[dict[str, str]]) -> None:
        ctx.emit(
            "pre_alert",
            {"order_id": order["order_id"], "seller": order["seller"],
             "state": order["state"], "reasons": reasons},
            keys=event_keys(order),
        )
