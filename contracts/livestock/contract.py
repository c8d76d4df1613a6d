"""The ``livestock`` contract: birth-to-sale traceability of cattle and pigs (축산물이력제).

Farms, slaughterhouses, packers and shops write each stage as it happens; IoT devices sign
their own readings; the regulator receives every record through the event stream the moment
it commits (each successful call emits one event with ``report: true``, plus ``violation``
and ``alert`` events when an automatic check fires), and may recall an animal or a lot.
Business rules: ``/work/shared/workflows/livestock-traceability.md``; reference for callers:
``docs/contracts-livestock.md``.

A refused call keeps no writes, so rules the regulator must *see* but that need not stop
anything are accepted-and-flagged reports (late reports, unregistered animals or lots met
downstream, failed inspections, carcass heavier than the live animal); rules that must
*stop* something are refusals with a stable code (``E_WITHDRAWAL``, ``E_WEIGHT``...). Since
rules version 2 those refusals also carry a ``violation`` event (``ContractError.reports``:
the failed receipt's events), because the workflow has the regulator hear of a slaughter
during withdrawal or a weight inconsistency, and a receipt code alone never reaches its
event stream. Version 2 also keeps a recalled live animal where it is (no arrival at a
slaughterhouse, no confirmed transfer in), as the reference always said.

State layout (namespace ``livestock``):

* ``config/rules`` -> ``{"check_digit_rule": name}``
* ``animal/<cattle no>``, ``herd/<farm no>``, ``carcass/<no>``, ``pig/<trace no>`` -> carcass
  no, ``lot/<bundle no>``: records (see :mod:`.states` for their ``state`` field)
* ``down/<node>/<node>``, ``up/<node>/<node>``: derivation edges (see :mod:`.trace`)
* ``log/<node>/<nnnnnn>``, ``logn/<node>``: each node's history, for trace and EPCIS
* ``device/<pubkey hex>`` -> ``{"last_seq", "org"}``: replay guard
* ``reading/<subject>/<nnnnnnnnnn>``, ``rcount/<subject>``: readings by animal, site, device
* ``unreg/<number>/<nnnnnn>``, ``unregn/<number>``: sightings of unregistered animals/lots
* ``herdbatch/<farm no>/<date>/<trace no>`` -> carcass no: a herd's batches by slaughter
  date (version 3), for a late herd treatment's check
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from contracts import membership
from contracts.sdk import (
    E_ARGS,
    E_EXISTS,
    E_FORBIDDEN,
    E_NOT_FOUND,
    E_UNKNOWN_ACTION,
    E_UNKNOWN_QUERY,
    Call,
    Context,
    Contract,
    ContractError,
    QueryContext,
    Report,
    StateReader,
    arg_int,
    arg_list,
    arg_map,
    arg_str,
)

from . import epcis, identifiers, rules, trace
from .identifiers import (
    E_INVALID_ANIMAL_ID,
    E_INVALID_DATE,
    E_INVALID_LOT,
    E_INVALID_TRACE_NO,
)
from .states import ANIMAL, CARCASS, E_RECALLED, LOT, next_state

NAME: Final = "livestock"
TAG_DEVICE: Final = "jangbu/device/v1"  # node.execution.TAG_DEVICE

FARM: Final = "farm"
SLAUGHTERHOUSE: Final = "slaughterhouse"
PACKER: Final = "packer"
SHOP: Final = "shop"
REGULATOR: Final = "regulator"
DEVICE: Final = "device"
GATEWAY_ROLES: Final = (FARM, SLAUGHTERHOUSE, PACKER, SHOP)

E_INVALID_SPECIES: Final = "E_INVALID_SPECIES"
E_INVALID_GRADE: Final = "E_INVALID_GRADE"
E_INVALID_READING: Final = "E_INVALID_READING"
E_BUSINESS_ID: Final = "E_BUSINESS_ID"
E_WITHDRAWAL: Final = "E_WITHDRAWAL"
E_WEIGHT: Final = "E_WEIGHT"
E_INSPECTION_FAILED: Final = "E_INSPECTION_FAILED"
E_DEVICE: Final = "E_DEVICE"
E_SIGNATURE: Final = "E_SIGNATURE"
E_REPLAY: Final = "E_REPLAY"

PUBKEY_HEX = membership.PUBKEY_HEX
SIG_HEX = re.compile(r"[0-9a-f]{128}")
ANY_NUMBER = re.compile(r"[A-Za-z0-9-]{1,32}")
_QUERY_COUNT = re.compile(r"-?[0-9]{1,9}")  # a count as a query string spells it

READING_KEYS: Final = frozenset({"device", "animal", "site", "kind", "value", "seq", "sig"})


# --- stateless argument parsing (shared by check and apply) ------------------------------------


def parse_cattle_id(args: Mapping[str, Any], name: str, *, optional: bool = False) -> str:
    value = arg_str(args, name, max_len=32, optional=optional)
    if value == "" and optional:
        return ""
    return identifiers.validate_cattle_id(value)


def parse_org(args: Mapping[str, Any], name: str, *, optional: bool = False) -> str:
    return arg_str(args, name, pattern=identifiers.ORG_ID, max_len=64, optional=optional)


def parse_weight(args: Mapping[str, Any], name: str = "weight_g") -> int:
    return arg_int(args, name, minimum=1, maximum=rules.MAX_WEIGHT_G)


def parse_lot(args: Mapping[str, Any], name: str) -> identifiers.LotNumber:
    return identifiers.parse_lot(arg_str(args, name, max_len=15, code=E_INVALID_LOT))


def parse_bool(args: Mapping[str, Any], name: str, default: bool) -> bool:
    value = args.get(name, default)
    if not isinstance(value, bool):
        raise ContractError(E_ARGS, f"argument {name!r} must be a boolean")
    return value


def parse_choice(args: Mapping[str, Any], name: str, choices: tuple[str, ...], code: str) -> str:
    value = arg_str(args, name, max_len=32)
    if value not in choices:
        raise ContractError(code, f"argument {name!r} must be one of {list(choices)}")
    return value


def parse_register_birth(args: Mapping[str, Any]) -> dict[str, Any]:
    species = parse_choice(args, "species", ("cattle",), E_INVALID_SPECIES)
    breed = arg_str(args, "breed", max_len=rules.BREED_MAX_LEN)
    if not breed.strip():
        raise ContractError(E_ARGS, "breed must not be empty")
    return {
        "id": parse_cattle_id(args, "id"),
        "species": species,
        "breed": breed,
        "sex": parse_choice(args, "sex", rules.SEXES, E_ARGS),
        "birth_day": identifiers.parse_date(arg_str(args, "birth_date", max_len=10)),
        "dam": parse_cattle_id(args, "dam", optional=True),
        "farm_no": arg_str(args, "farm_no", max_len=32, optional=True),
    }


def parse_transfer_out(args: Mapping[str, Any]) -> dict[str, Any]:
    return {"animal": parse_cattle_id(args, "animal"), "to": parse_org(args, "to")}


def parse_transfer_in(args: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "animal": parse_cattle_id(args, "animal"),
        "accept": parse_bool(args, "accept", True),
        "from": parse_org(args, "from", optional=True),
        "farm_no": arg_str(args, "farm_no", max_len=32, optional=True),
    }


def parse_arrival(args: Mapping[str, Any]) -> dict[str, Any]:
    return {"animal": parse_cattle_id(args, "animal"),
            "from": parse_org(args, "from", optional=True)}


def parse_death(args: Mapping[str, Any]) -> dict[str, Any]:
    return {"animal": parse_cattle_id(args, "animal"),
            "cause": arg_str(args, "cause", max_len=128, optional=True)}


def parse_treat(args: Mapping[str, Any]) -> dict[str, Any]:
    has_animal, has_herd = args.get("animal") is not None, args.get("herd") is not None
    if has_animal == has_herd:
        raise ContractError(E_ARGS, "give exactly one of 'animal' (cattle) or 'herd' (pig farm no)")
    kind = arg_str(args, "kind", max_len=16, optional=True) or "treatment"
    if kind not in ("treatment", "vaccination"):
        raise ContractError(E_ARGS, "kind must be 'treatment' or 'vaccination'")
    drug = arg_str(args, "drug", max_len=128)
    if not drug.strip():
        raise ContractError(E_ARGS, "drug must not be empty")
    return {
        "animal": parse_cattle_id(args, "animal") if has_animal else "",
        "herd": identifiers.validate_farm_no(arg_str(args, "herd", max_len=6)) if has_herd else "",
        "drug": drug,
        "kind": kind,
        "withdrawal_days": arg_int(args, "withdrawal_days", maximum=rules.MAX_WITHDRAWAL_DAYS),
        "day": (identifiers.parse_date(arg_str(args, "date", max_len=10))
                if args.get("date") is not None else None),
    }


def parse_reading(item: Any) -> dict[str, Any]:
    """One signed reading; the signed body is the reading without ``sig``."""
    if not isinstance(item, Mapping):
        raise ContractError(E_INVALID_READING, "each reading must be a map")
    extra = sorted(set(item) - READING_KEYS)
    if extra:
        raise ContractError(E_INVALID_READING, f"unknown reading fields {extra}")
    try:
        device = arg_str(item, "device", pattern=PUBKEY_HEX, code=E_INVALID_READING)
        sig = arg_str(item, "sig", pattern=SIG_HEX, code=E_INVALID_READING)
        kind = parse_choice(item, "kind", rules.READING_KINDS, E_INVALID_READING)
        seq = arg_int(item, "seq")
    except ContractError as exc:
        raise ContractError(E_INVALID_READING, exc.message) from None
    has_animal, has_site = item.get("animal") is not None, item.get("site") is not None
    if has_animal == has_site:
        raise ContractError(E_INVALID_READING, "a reading names exactly one of animal or site")
    if has_animal:
        subject, ident = "animal", parse_cattle_id(item, "animal")
    else:
        subject = "site"
        ident = arg_str(item, "site", pattern=identifiers.SITE_ID, max_len=64,
                        code=E_INVALID_READING)
    value = item.get("value")
    if kind == "location":
        ok = (isinstance(value, Mapping) and set(value) == {"lat_e6", "lon_e6"}
              and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values())
              and -90_000_000 <= value["lat_e6"] <= 90_000_000
              and -180_000_000 <= value["lon_e6"] <= 180_000_000)
        if ok:
            assert isinstance(value, Mapping)
            value = {"lat_e6": value["lat_e6"], "lon_e6": value["lon_e6"]}
    else:
        low, high = (-1000, 1000) if kind == "temperature" else (0, rules.MAX_WEIGHT_G)
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        raise ContractError(E_INVALID_READING, f"invalid {kind} value {value!r}")
    body = {k: v for k, v in item.items() if k != "sig"}
    return {"device": device, "subject": subject, "ident": ident, "kind": kind,
            "value": value, "seq": seq, "sig": sig, "body": body}


def parse_record_readings(args: Mapping[str, Any]) -> dict[str, Any]:
    items = arg_list(args, "readings", max_items=rules.MAX_READINGS_PER_BATCH)
    return {"readings": [parse_reading(item) for item in items]}


def parse_slaughter(args: Mapping[str, Any]) -> dict[str, Any]:
    species = parse_choice(args, "species", rules.SPECIES, E_INVALID_SPECIES)
    carcass = identifiers.validate_carcass_no(arg_str(args, "carcass", max_len=32))
    if identifiers.is_lot_number(carcass) or identifiers.TRACE_NO.fullmatch(carcass):
        raise ContractError(identifiers.E_INVALID_CARCASS,
                            "a carcass number may not look like a lot or 12-digit number")
    inspection = arg_map(args, "inspection")
    result = {
        "species": species,
        "carcass": carcass,
        "day": identifiers.parse_date(arg_str(args, "date", max_len=10)),
        "weight_g": parse_weight(args),
        "grade": parse_choice(args, "grade", rules.GRADES[species], E_INVALID_GRADE),
        "passed": parse_bool(inspection, "passed", False) if "passed" in inspection else None,
        "residue": parse_choice(inspection, "residue", rules.TEST_RESULTS, E_ARGS),
        "bse": (parse_choice(inspection, "bse", rules.TEST_RESULTS, E_ARGS)
                if "bse" in inspection else "not_tested"),
        "note": arg_str(inspection, "note", max_len=256, optional=True),
    }
    if result["passed"] is None:
        raise ContractError(E_ARGS, "inspection.passed is required")
    if species == "cattle":
        if any(args.get(k) is not None for k in ("farm_no", "trace_no", "head_count")):
            raise ContractError(E_ARGS, "cattle are slaughtered by 'animal'; no pig batch fields")
        result["animal"] = parse_cattle_id(args, "animal")
    else:
        if args.get("animal") is not None:
            raise ContractError(E_ARGS, "pigs are slaughtered by farm shipment batch, not animal")
        result["farm_no"] = identifiers.validate_farm_no(arg_str(args, "farm_no", max_len=6))
        result["trace_no"] = identifiers.validate_trace_no(arg_str(args, "trace_no", max_len=12))
        result["head_count"] = arg_int(args, "head_count", minimum=1, maximum=100_000)
    return result


def parse_cut(args: Mapping[str, Any]) -> dict[str, Any]:
    carcass = identifiers.validate_carcass_no(arg_str(args, "carcass", max_len=32))
    lots = []
    for item in arg_list(args, "lots", max_items=rules.MAX_LOTS_PER_CUT):
        if not isinstance(item, Mapping):
            raise ContractError(E_ARGS, "each lot must be a map {lot, weight_g}")
        lots.append((parse_lot(item, "lot"), parse_weight(item)))
    if len({lot.number for lot, _ in lots}) != len(lots):
        raise ContractError(E_ARGS, "lot numbers in one cut must be distinct")
    return {"carcass": carcass, "lots": lots}


def parse_bundle(args: Mapping[str, Any]) -> dict[str, Any]:
    inputs = arg_list(args, "inputs", max_items=rules.MAX_BUNDLE_INPUTS)
    parsed = [identifiers.parse_lot(x) if isinstance(x, str) else None for x in inputs]
    if any(p is None for p in parsed):
        raise ContractError(E_INVALID_LOT, "inputs must be lot numbers")
    numbers = [p.number for p in parsed if p is not None]
    if len(set(numbers)) != len(numbers) or len(numbers) < 2:
        raise ContractError(E_ARGS, "a bundle needs at least two distinct input lots")
    lot = parse_lot(args, "lot")
    if lot.number in numbers:
        raise ContractError(E_ARGS, "a bundle cannot contain itself")
    return {"inputs": sorted(numbers), "lot": lot, "weight_g": parse_weight(args)}


def parse_receive(args: Mapping[str, Any]) -> dict[str, Any]:
    return {"lot": parse_lot(args, "lot")}


def parse_sell(args: Mapping[str, Any]) -> dict[str, Any]:
    return {"lot": parse_lot(args, "lot"), "weight_g": parse_weight(args),
            "package": arg_str(args, "package", pattern=ANY_NUMBER, max_len=32, optional=True)}


def parse_recall(args: Mapping[str, Any]) -> dict[str, Any]:
    number = arg_str(args, "number", pattern=ANY_NUMBER, max_len=32)
    reason = arg_str(args, "reason", max_len=256)
    if not reason.strip():
        raise ContractError(E_ARGS, "a recall needs a reason")
    return {"number": number, "reason": reason}


def parse_update_rules(args: Mapping[str, Any]) -> dict[str, Any]:
    rule = arg_str(args, "check_digit_rule", max_len=32)
    if rule not in identifiers.CHECK_DIGIT_RULES:
        raise ContractError(E_ARGS, f"unknown check-digit rule {rule!r}; "
                                    f"known: {sorted(identifiers.CHECK_DIGIT_RULES)}")
    return {"check_digit_rule": rule}


PARSERS: Final[Mapping[str, Callable[[Mapping[str, Any]], dict[str, Any]]]] = {
    "register_birth": parse_register_birth,
    "transfer_out": parse_transfer_out,
    "transfer_in": parse_transfer_in,
    "arrival": parse_arrival,
    "death": parse_death,
    "treat": parse_treat,
    "record_readings": parse_record_readings,
    "slaughter": parse_slaughter,
    "cut": parse_cut,
    "bundle": parse_bundle,
    "receive": parse_receive,
    "sell": parse_sell,
    "recall": parse_recall,
    "update_rules": parse_update_rules,
}
ACTIONS: Final = tuple(PARSERS)


def parse_args(action: str, args: Mapping[str, Any]) -> dict[str, Any]:
    parser = PARSERS.get(action)
    if parser is None:
        raise ContractError(E_UNKNOWN_ACTION, f"livestock has no action {action!r}")
    return parser(args)


# --- state helpers ------------------------------------------------------------------------------


def get_org(ctx: Context | QueryContext, org_id: str) -> dict[str, Any] | None:
    org = ctx.read_other("membership").get(f"org/{org_id}")
    return None if org is None else dict(org)


def get_business_ids(ctx: Context, org_id: str) -> list[str]:
    org = get_org(ctx, org_id)
    return [] if org is None else [str(b) for b in org.get("business_ids", [])]


def get_check_digit_rule(state: StateReader, default: str) -> str:
    config = state.get("config/rules")
    return default if config is None else str(config["check_digit_rule"])


def get_kst_today(ctx: Context) -> int:
    return identifiers.compute_kst_day(ctx.time_ms)


def require(ctx: Context, key: str, what: str) -> dict[str, Any]:
    record = ctx.state.get(key)
    if record is None:
        raise ContractError(E_NOT_FOUND, f"{what} not found")
    return dict(record)


def next_count(ctx: Context, key: str) -> int:
    count = int(ctx.state.get(key) or 0)
    ctx.state.put(key, count + 1)
    return count


def append_log(ctx: Context, value: str, action: str, **fields: Any) -> None:
    """Add an entry to a node's history (used by trace and the EPCIS export)."""
    n = next_count(ctx, f"logn/{value}")
    entry = {"action": action, "time_ms": ctx.time_ms, "height": ctx.height,
             "org": ctx.signer.org, "node": value, "n": n, **fields}
    ctx.state.put(f"log/{value}/{n:06d}", entry)


def link(ctx: Context, source: str, target: str, weight_g: int | None = None) -> None:
    """Record that ``target`` derives from ``source`` (both directions)."""
    edge = {"time_ms": ctx.time_ms, "weight_g": weight_g}
    ctx.state.put(f"down/{source}/{target}", edge)
    ctx.state.put(f"up/{target}/{source}", edge)


def report(ctx: Context, action: str, attrs: Mapping[str, Any], *keys: str) -> None:
    """The event the regulator's node consumes for every successful action."""
    ctx.emit(action, {"report": True, "action": action, "org": ctx.signer.org,
                      "time_ms": ctx.time_ms, "height": ctx.height, **attrs},
             keys=tuple(dict.fromkeys([*keys, ctx.signer.org])))


def violation_report(ctx: Context, code: str, attrs: Mapping[str, Any],
                     *keys: str) -> Report:
    """The ``violation`` event of an automatic check, as ``(type, attrs, keys)``."""
    return ("violation", {"report": True, "code": code, "org": ctx.signer.org,
                          "time_ms": ctx.time_ms, "height": ctx.height, **attrs},
            tuple(dict.fromkeys([*keys, ctx.signer.org, REGULATOR])))


def violation(ctx: Context, code: str, attrs: Mapping[str, Any], *keys: str) -> None:
    """An automatic check fired: flagged for the regulator, the call itself is accepted."""
    type_, fields, event_keys = violation_report(ctx, code, attrs, *keys)
    ctx.emit(type_, fields, keys=event_keys)


def record_unregistered(ctx: Context, number: str, action: str, **fields: Any) -> None:
    """Keep a sighting of an animal or lot the ledger does not know, and flag it."""
    n = next_count(ctx, f"unregn/{number}")
    ctx.state.put(f"unreg/{number}/{n:06d}", {"number": number, "action": action,
                                              "org": ctx.signer.org, "time_ms": ctx.time_ms,
                                              **fields})
    code = "UNREGISTERED_LOT" if identifiers.is_lot_number(number) else "UNREGISTERED_ANIMAL"
    violation(ctx, code, {"number": number, "action": action, **fields}, number)


def put_state(ctx: Context, key: str, record: dict[str, Any], kind: str, action: str) -> None:
    record["state"] = next_state(kind, action, str(record["state"]))
    ctx.state.put(key, record)


# --- the contract -------------------------------------------------------------------------------


class LivestockContract(Contract):
    """Birth-to-sale traceability; see the module docstring and docs/contracts-livestock.md."""

    name = NAME
    # 2: refusals for a drug withdrawal period (E_WITHDRAWAL) or a weight that does not add
    # up (E_WEIGHT) carry a ``violation`` event (SLAUGHTER_DURING_WITHDRAWAL,
    # WEIGHT_INCONSISTENCY); a recalled live animal can no longer arrive at a slaughterhouse
    # or be taken in by a farm (E_RECALLED; version 1 let both through). Receipts, and so
    # the results root, of the same history differ from version 1's: genesis names the
    # version, and a chain begun under 1 keeps running by 1's rules.
    # 3 (a review against the workflow): the check-digit rule in force applies to numbers
    # not yet on the ledger (a regulator's rule change stranded registered animals); an
    # animal that arrived at one slaughterhouse is slaughtered only there; a device writes
    # readings only on animals its organisation owns, holds or is receiving; a
    # ``record_readings`` event names its animals, sites and devices; a lot is not dated
    # before its carcass's slaughter or its input lots; a treatment reported after its
    # animal arrived or was slaughtered is recorded (the slaughter flagged when it fell in
    # the withdrawal period), where it was refused and lost.
    version = "3"
    runs_versions: tuple[str, ...] = ("1", "2", "3")

    @classmethod
    def for_version(cls, version: str) -> LivestockContract | None:
        return cls(rules_version=version) if version in cls.runs_versions else None

    def __init__(self, check_digit_rule: str = identifiers.DEFAULT_CHECK_DIGIT_RULE, *,
                 rules_version: str = version) -> None:
        if check_digit_rule not in identifiers.CHECK_DIGIT_RULES:
            raise ValueError(f"unknown check-digit rule {check_digit_rule!r}")
        if rules_version not in self.runs_versions:
            raise ValueError(f"livestock has no rules version {rules_version!r}")
        self.check_digit_rule = check_digit_rule
        self.refusals_report = rules_version != "1"
        self.recall_stops_moves = rules_version != "1"
        self.custody_checks = rules_version not in ("1", "2")  # the version 3 rules above

    def refusal(self, ctx: Context, code: str, message: str, violation_code: str,
                attrs: Mapping[str, Any], *keys: str) -> ContractError:
        """A refusal that also tells the regulator (version 2 on; see the module doc)."""
        reports = ((violation_report(ctx, violation_code, attrs, *keys),)
                   if self.refusals_report else ())
        return ContractError(code, message, reports=reports)

    def next_animal_move(self, action: str, animal: Mapping[str, Any]) -> str:
        """The state after a move; a recalled animal may not move (version 2 on)."""
        recalled = self.recall_stops_moves and bool(animal["recalled"])
        return next_state(ANIMAL, action, str(animal["state"]), recalled=recalled)

    def check(self, call: Call) -> None:
        parse_args(call.action, call.args)

    def apply(self, ctx: Context, call: Call) -> None:
        args = parse_args(call.action, call.args)
        getattr(self, f"process_{call.action}")(ctx, args)

    # Verify an animal id against the check-digit rule in force (configurable, so in apply).
    def verify_cattle_id(self, ctx: Context, number: str) -> None:
        if not number:
            return
        if self.custody_checks and ctx.state.get(f"animal/{number}") is not None:
            return  # registered under the rule of its day, which stands (version 3)
        identifiers.validate_cattle_id(number, get_check_digit_rule(ctx.state,
                                                                    self.check_digit_rule))

    # --- farms ---------------------------------------------------------------------------------

    def process_register_birth(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(FARM)
        number = args["id"]
        self.verify_cattle_id(ctx, number)
        self.verify_cattle_id(ctx, args["dam"])
        # Verify the number is new (also among pig trace numbers, so a number names one thing).
        if ctx.state.get(f"animal/{number}") is not None or ctx.state.get(f"pig/{number}"):
            raise ContractError(E_EXISTS, f"animal {number} is already registered")
        if args["dam"] == number:
            raise ContractError(E_ARGS, "an animal cannot be its own dam")
        # Verify the farm number is one of the signer's registered business ids.
        business_ids = get_business_ids(ctx, ctx.signer.org)
        farm_no = args["farm_no"] or (business_ids[0] if business_ids else "")
        if args["farm_no"] and farm_no not in business_ids:
            raise ContractError(E_BUSINESS_ID, f"{farm_no!r} is not a business id of this farm")
        today = get_kst_today(ctx)
        # Verify the birth is not in the future (KST calendar day of the block).
        if args["birth_day"] > today:
            raise ContractError(E_INVALID_DATE, "birth date is after the block date")
        late = rules.is_late(args["birth_day"], today)
        birth_date = identifiers.format_day(args["birth_day"])
        record = {
            "id": number, "species": args["species"], "breed": args["breed"],
            "sex": args["sex"], "birth_date": birth_date, "dam": args["dam"] or None,
            "birth_farm": ctx.signer.org, "owner": ctx.signer.org, "farm_no": farm_no,
            "state": next_state(ANIMAL, "register_birth", ""), "recalled": False,
            "late_report": late, "flags": ["LATE_REPORT"] if late else [],
            "registered_ms": ctx.time_ms, "withdrawal_until_ms": 0, "pending_to": None,
            "location": ctx.signer.org, "last_weight_g": None, "carcass": None,
        }
        ctx.state.put(f"animal/{number}", record)
        append_log(ctx, trace.node(ANIMAL, number), "birth", breed=args["breed"],
                   sex=args["sex"], birth_date=birth_date, farm_no=farm_no, late=late)
        report(ctx, "register_birth", {"animal": number, "breed": args["breed"],
                                       "birth_date": birth_date, "late_report": late}, number)
        if late:
            violation(ctx, "LATE_REPORT", {"animal": number, "birth_date": birth_date,
                                           "days_late": today - args["birth_day"]}, number)

    def get_own_animal(self, ctx: Context, number: str) -> dict[str, Any]:
        animal = require(ctx, f"animal/{number}", f"animal {number}")
        if animal["owner"] != ctx.signer.org:
            raise ContractError(E_FORBIDDEN, f"animal {number} belongs to another farm")
        return animal

    def process_transfer_out(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(FARM)
        number, to = args["animal"], args["to"]
        animal = self.get_own_animal(ctx, number)
        # Verify the receiver is another organisation holding the farm role.
        receiver = get_org(ctx, to)
        if receiver is None:
            raise ContractError(E_NOT_FOUND, f"organisation {to!r} not found")
        if FARM not in receiver["roles"] or to == ctx.signer.org:
            raise ContractError(E_ARGS, "animals move to another organisation with role farm")
        animal["state"] = next_state(ANIMAL, "transfer_out", animal["state"],
                                     recalled=animal["recalled"])
        animal["pending_to"] = to
        animal["location"] = None
        ctx.state.put(f"animal/{number}", animal)
        append_log(ctx, trace.node(ANIMAL, number), "transfer_out", source=ctx.signer.org,
                   destination=to)
        report(ctx, "transfer_out", {"animal": number, "to": to}, number, to)

    def process_transfer_in(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(FARM)
        number = args["animal"]
        self.verify_cattle_id(ctx, number)
        animal = ctx.state.get(f"animal/{number}")
        if animal is None:
            # A farm reporting an animal the ledger never registered: accept the report so the
            # regulator sees it (a refusal would leave no event), but create no animal.
            if not args["accept"]:
                raise ContractError(E_NOT_FOUND, f"animal {number} not found")
            record_unregistered(ctx, number, "transfer_in", source=args["from"] or None)
            report(ctx, "transfer_in", {"animal": number, "registered": False}, number)
            return
        animal = dict(animal)
        # Verify the animal was shipped to the signer's farm.
        if animal["state"] == "in_transit" and animal["pending_to"] != ctx.signer.org:
            raise ContractError(E_FORBIDDEN, f"animal {number} is not on its way to you")
        source = str(animal["owner"])
        if not args["accept"]:
            animal["state"] = next_state(ANIMAL, "transfer_refused", animal["state"])
            animal.update(pending_to=None, location=source)
            ctx.state.put(f"animal/{number}", animal)
            append_log(ctx, trace.node(ANIMAL, number), "transfer_refused", source=source,
                       destination=ctx.signer.org)
            report(ctx, "transfer_refused", {"animal": number, "from": source}, number, source)
            return
        business_ids = get_business_ids(ctx, ctx.signer.org)
        farm_no = args["farm_no"] or (business_ids[0] if business_ids else "")
        if args["farm_no"] and farm_no not in business_ids:
            raise ContractError(E_BUSINESS_ID, f"{farm_no!r} is not a business id of this farm")
        animal["state"] = self.next_animal_move("transfer_in", animal)
        animal.update(owner=ctx.signer.org, pending_to=None, location=ctx.signer.org,
                      farm_no=farm_no)
        ctx.state.put(f"animal/{number}", animal)
        append_log(ctx, trace.node(ANIMAL, number), "transfer_in", source=source,
                   destination=ctx.signer.org, farm_no=farm_no)
        report(ctx, "transfer_in", {"animal": number, "from": source, "registered": True},
               number, source)

    def process_death(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(FARM)
        number = args["animal"]
        animal = self.get_own_animal(ctx, number)
        animal["pending_to"] = None  # an animal that dies in transport never arrives
        put_state(ctx, f"animal/{number}", animal, ANIMAL, "death")
        append_log(ctx, trace.node(ANIMAL, number), "death", cause=args["cause"])
        report(ctx, "death", {"animal": number, "cause": args["cause"]}, number)

    def process_treat(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(FARM)
        today = get_kst_today(ctx)
        day = today if args["day"] is None else args["day"]
        # Verify the treatment date is not after the block's KST date.
        if day > today:
            raise ContractError(E_INVALID_DATE, "treatment date is after the block date")
        until = rules.compute_withdrawal_until_ms(ctx.time_ms, day, args["withdrawal_days"])
        details = {"drug": args["drug"], "kind": args["kind"],
                   "withdrawal_days": args["withdrawal_days"], "withdrawal_until_ms": until,
                   "date": identifiers.format_day(day)}
        late = rules.is_late(day, today)
        if args["animal"]:
            number = args["animal"]
            animal = self.get_own_animal(ctx, number)
            if self.custody_checks and animal["state"] in ("arrived", "slaughtered"):
                self.record_late_treatment(ctx, animal, day, until, details)
                if late:
                    violation(ctx, "LATE_REPORT", {"animal": number,
                                                   "treatment_date": details["date"],
                                                   "days_late": today - day}, number)
                return
            put_state(ctx, f"animal/{number}", animal, ANIMAL, "treat")
            # Verify the animal was born by the treatment date.
            if day < identifiers.parse_date(animal["birth_date"]):
                raise ContractError(E_INVALID_DATE, "treatment date is before the birth date")
            animal["withdrawal_until_ms"] = max(int(animal["withdrawal_until_ms"]), until)
            ctx.state.put(f"animal/{number}", animal)
            append_log(ctx, trace.node(ANIMAL, number), "treat", **details)
            report(ctx, "treat", {"animal": number, **details}, number)
            if late:
                violation(ctx, "LATE_REPORT", {"animal": number, "treatment_date": details["date"],
                                               "days_late": today - day}, number)
            return
        herd = args["herd"]
        # Verify the herd is one of the signer's farms.
        if herd not in get_business_ids(ctx, ctx.signer.org):
            raise ContractError(E_BUSINESS_ID, f"{herd!r} is not a farm number of this farm")
        record = dict(ctx.state.get(f"herd/{herd}") or {"farm_no": herd, "owner": ctx.signer.org,
                                                          "withdrawal_until_ms": 0})
        record["withdrawal_until_ms"] = max(int(record["withdrawal_until_ms"]), until)
        ctx.state.put(f"herd/{herd}", record)
        n = next_count(ctx, f"herdn/{herd}")
        ctx.state.put(f"herdlog/{herd}/{n:06d}", {"action": "treat", "time_ms": ctx.time_ms,
                                                 "org": ctx.signer.org, **details})
        report(ctx, "treat", {"herd": herd, **details}, herd)
        if late:
            violation(ctx, "LATE_REPORT", {"herd": herd, "treatment_date": details["date"],
                                           "days_late": today - day}, herd)
        if self.custody_checks:
            self.flag_batches_slaughtered_during(ctx, herd, day, until)

    def flag_batches_slaughtered_during(self, ctx: Context, herd: str, day: int,
                                        until: int) -> None:
        """Flag the herd's batches already slaughtered within a treatment's withdrawal
        period (version 3): the treatment was reported after them, so their slaughter could
        not be refused. A batch counts if even the end of its slaughter day came before the
        period's end, as for a single animal (:meth:`record_late_treatment`). One scan per
        day of the period up to today, of ``herdbatch/<farm_no>/<date>/`` (at most 731)."""
        last_day = min(get_kst_today(ctx), identifiers.compute_kst_day(until))
        found: list[tuple[str, str]] = []
        for slaughter_day in range(day, last_day + 1):
            if rules.compute_kst_day_start_ms(slaughter_day + 1) >= until:
                break
            date = identifiers.format_day(slaughter_day)
            for key, carcass_no in ctx.state.scan(f"herdbatch/{herd}/{date}/"):
                found.append((key.rsplit("/", 1)[-1], str(carcass_no)))
                if len(found) > rules.MAX_BATCH_FLAGS:
                    break
            if len(found) > rules.MAX_BATCH_FLAGS:
                break
        for trace_no, carcass_no in found[:rules.MAX_BATCH_FLAGS]:
            carcass = ctx.state.get(f"carcass/{carcass_no}") or {}
            violation(ctx, "SLAUGHTER_DURING_WITHDRAWAL",
                      {"carcass": carcass_no, "farm_no": herd, "trace_no": trace_no,
                       "withdrawal_until_ms": until, "reported_after_slaughter": True},
                      carcass_no, trace_no, herd, str(carcass.get("slaughterhouse") or ""))
        if len(found) > rules.MAX_BATCH_FLAGS:
            # The rest in one line: a receipt must fit one message, and a treatment whose
            # receipt could not be written would not be recorded at all (review: 15,000
            # batches of one farm number made the treatment, and its withdrawal, vanish).
            violation(ctx, "SLAUGHTER_DURING_WITHDRAWAL",
                      {"farm_no": herd, "withdrawal_until_ms": until,
                       "reported_after_slaughter": True, "more_batches": True,
                       "from_date": identifiers.format_day(day)}, herd)

    def record_late_treatment(self, ctx: Context, animal: dict[str, Any], day: int, until: int,
                              details: Mapping[str, Any]) -> None:
        """A treatment its farm reports once the animal has left for slaughter (version 3).

        It happened on the farm, before the animal left, so it is recorded as any other. An
        animal still at the slaughterhouse gets the withdrawal period, which then blocks its
        slaughter; a slaughtered one was slaughtered during it if even the end of its
        slaughter day came before the period's end, and the regulator is told. Version 2
        refused the report (``E_STATE``), so the fact was lost.
        """
        number = str(animal["id"])
        if day < identifiers.parse_date(animal["birth_date"]):
            raise ContractError(E_INVALID_DATE, "treatment date is before the birth date")
        arrived_ms = animal.get("arrived_ms")
        if arrived_ms is not None and day > identifiers.compute_kst_day(int(arrived_ms)):
            raise ContractError(E_INVALID_DATE, "treatment date is after the animal arrived "
                                                "at the slaughterhouse")
        carcass = (ctx.state.get(f"carcass/{animal['carcass']}")
                   if animal["state"] == "slaughtered" else None)
        slaughter_day = None if carcass is None else identifiers.parse_date(carcass["date"])
        if slaughter_day is not None and day > slaughter_day:
            raise ContractError(E_INVALID_DATE, "treatment date is after the slaughter date")
        animal["withdrawal_until_ms"] = max(int(animal["withdrawal_until_ms"]), until)
        ctx.state.put(f"animal/{number}", animal)
        append_log(ctx, trace.node(ANIMAL, number), "treat", **details)
        report(ctx, "treat", {"animal": number, "after_leaving": animal["state"], **details},
               number)
        if carcass is not None and slaughter_day is not None and (
                rules.compute_kst_day_start_ms(slaughter_day + 1) < until):
            violation(ctx, "SLAUGHTER_DURING_WITHDRAWAL",
                      {"carcass": carcass["number"], "animal": number,
                       "withdrawal_until_ms": until, "reported_after_slaughter": True},
                      str(carcass["number"]), number, str(carcass["slaughterhouse"]))

    # --- devices -------------------------------------------------------------------------------

    def process_record_readings(self, ctx: Context, args: dict[str, Any]) -> None:
        # Verify the submitter: a device for its own readings, or a member of a site-holding
        # organisation acting as gateway for that organisation's devices.
        is_device = ctx.signer.kind == DEVICE
        if not is_device:
            ctx.require_role(*GATEWAY_ROLES)
        alerts = 0
        for reading in args["readings"]:
            device_hex = reading["device"]
            if is_device and device_hex != ctx.signer.pubkey.hex():
                raise ContractError(E_DEVICE, "a device may only submit its own readings")
            device = ctx.lookup_member(bytes.fromhex(device_hex))
            # Verify the device is a registered, non-revoked device of the submitter's org.
            if device is None or device.kind != DEVICE or device.revoked:
                raise ContractError(E_DEVICE, f"{device_hex[:16]}... is not an active device")
            if device.org != ctx.signer.org:
                raise ContractError(E_DEVICE, "device belongs to another organisation")
            # Verify the device itself signed this reading.
            if not ctx.check_signature(bytes.fromhex(device_hex), TAG_DEVICE, reading["body"],
                                       bytes.fromhex(reading["sig"])):
                raise ContractError(E_SIGNATURE, f"bad device signature on seq {reading['seq']}")
            # Verify (device, seq) is new: sequence numbers strictly increase per device.
            guard = dict(ctx.state.get(f"device/{device_hex}") or {"last_seq": -1,
                                                                    "org": device.org})
            if reading["seq"] <= guard["last_seq"]:
                raise ContractError(E_REPLAY, f"seq {reading['seq']} already used by device")
            guard["last_seq"] = reading["seq"]
            ctx.state.put(f"device/{device_hex}", guard)
            alerts += self.store_reading(ctx, reading)
        keys = ([str(r["ident"]) for r in args["readings"]] + [str(r["device"])
                                                            for r in args["readings"]]
                if self.custody_checks else [])
        report(ctx, "record_readings", {"count": len(args["readings"]), "alerts": alerts},
               *keys)

    def store_reading(self, ctx: Context, reading: dict[str, Any]) -> int:
        subject, ident, kind, value = (reading["subject"], reading["ident"], reading["kind"],
                                       reading["value"])
        if subject == "animal":
            animal = require(ctx, f"animal/{ident}", f"animal {ident}")
            next_state(ANIMAL, "reading", animal["state"])
            # Verify the device's organisation owns, holds or is receiving the animal
            # (version 3; before, any organisation's device could raise alerts on, or set
            # the live weight of, another farm's animal).
            if self.custody_checks and ctx.signer.org not in (
                    animal["owner"], animal["location"], animal.get("pending_to")):
                raise ContractError(E_FORBIDDEN, f"animal {ident} is not with your "
                                                 "organisation")
            if kind == "weight":
                animal["last_weight_g"] = value
                ctx.state.put(f"animal/{ident}", animal)
        alert = rules.compute_alert(subject, kind, value)
        record = {"device": reading["device"], subject: ident, "kind": kind, "value": value,
                  "seq": reading["seq"], "time_ms": ctx.time_ms, "height": ctx.height,
                  "org": ctx.signer.org, "alert": alert}
        for index in (f"{subject}:{ident}", f"device:{reading['device']}"):
            n = next_count(ctx, f"rcount/{index}")
            ctx.state.put(f"reading/{index}/{n:010d}", record)
        if alert is None:
            return 0
        ctx.emit("alert", {"report": True, "reason": alert, **record},
                 keys=(ident, reading["device"], ctx.signer.org, REGULATOR))
        return 1

    # --- slaughterhouse ------------------------------------------------------------------------

    def process_arrival(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(SLAUGHTERHOUSE)
        number = args["animal"]
        self.verify_cattle_id(ctx, number)
        animal = ctx.state.get(f"animal/{number}")
        if animal is None:
            record_unregistered(ctx, number, "arrival", source=args["from"] or None)
            report(ctx, "arrival", {"animal": number, "registered": False}, number)
            return
        animal = dict(animal)
        previous = animal["location"]
        if self.custody_checks and animal["state"] == "arrived" and previous != ctx.signer.org:
            # Version 3: an animal recorded as arrived at another slaughterhouse arrives
            # here instead, and the regulator hears of the conflict. Slaughter is bound to
            # the last arrival, so without this a stray arrival (any slaughterhouse may
            # record one) would have left the animal unslaughterable (review).
            if animal["recalled"]:
                raise ContractError(E_RECALLED, f"animal {number} has been recalled")
            violation(ctx, "ARRIVAL_CONFLICT", {"animal": number, "previous": previous},
                      number, str(previous), str(animal["owner"]))
        else:
            animal["state"] = self.next_animal_move("arrival", animal)
        animal["location"] = ctx.signer.org
        if self.custody_checks:
            animal["arrived_ms"] = ctx.time_ms  # bounds a late treatment's date
        ctx.state.put(f"animal/{number}", animal)
        append_log(ctx, trace.node(ANIMAL, number), "arrival", source=animal["owner"],
                   destination=ctx.signer.org)
        report(ctx, "arrival", {"animal": number, "from": animal["owner"], "registered": True},
               number, str(animal["owner"]))

    def process_slaughter(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(SLAUGHTERHOUSE)
        carcass_no = args["carcass"]
        if ctx.state.get(f"carcass/{carcass_no}") is not None:
            raise ContractError(E_EXISTS, f"carcass {carcass_no} already recorded")
        today = get_kst_today(ctx)
        if args["day"] > today:
            raise ContractError(E_INVALID_DATE, "slaughter date is after the block date")
        moment = rules.compute_slaughter_moment_ms(ctx.time_ms, args["day"], today)
        inspection_ok = rules.is_inspection_passed(args["passed"], args["residue"], args["bse"])
        record: dict[str, Any] = {
            "number": carcass_no, "species": args["species"], "animals": [],
            "farm": None, "farm_no": None, "trace_no": None, "head_count": 1,
            "slaughterhouse": ctx.signer.org, "date": identifiers.format_day(args["day"]),
            "weight_g": args["weight_g"], "grade": args["grade"],
            "inspection": {"passed": args["passed"], "residue": args["residue"],
                           "bse": args["bse"], "note": args["note"], "ok": inspection_ok},
            "state": next_state(CARCASS, "slaughter_passed" if inspection_ok
                                else "slaughter_failed", ""),
            "cut_g": 0, "recalled_reason": None,
        }
        flags: list[tuple[str, dict[str, Any]]] = []
        keys: list[str] = [carcass_no]
        if args["species"] == "cattle":
            number = args["animal"]
            self.verify_cattle_id(ctx, number)
            animal = ctx.state.get(f"animal/{number}")
            if animal is None:
                raise ContractError(E_NOT_FOUND, f"animal {number} is not registered")
            animal = dict(animal)
            if animal["species"] != "cattle":
                raise ContractError(E_INVALID_SPECIES, "species does not match the animal")
            if (self.custody_checks and animal["state"] == "arrived"
                    and animal["location"] != ctx.signer.org):
                raise ContractError(E_FORBIDDEN, f"animal {number} arrived at another "
                                                 "slaughterhouse")
            animal["state"] = next_state(ANIMAL, "slaughter", animal["state"],
                                         recalled=animal["recalled"])
            born_after = identifiers.parse_date(animal["birth_date"]) > args["day"]
            if born_after and self.refusals_report:  # checked before a report is published
                raise ContractError(E_INVALID_DATE, "slaughter date is before the birth date")
            # Verify no drug withdrawal period was still running when the animal was slaughtered.
            if moment < int(animal["withdrawal_until_ms"]):
                raise self.refusal(
                    ctx, E_WITHDRAWAL, f"animal {number} is in a withdrawal period",
                    "SLAUGHTER_DURING_WITHDRAWAL",
                    {"carcass": carcass_no, "animal": number,
                     "withdrawal_until_ms": int(animal["withdrawal_until_ms"])},
                    carcass_no, number, str(animal["owner"]))
            if born_after:
                raise ContractError(E_INVALID_DATE, "slaughter date is before the birth date")
            if animal["last_weight_g"] is not None and args["weight_g"] > animal["last_weight_g"]:
                flags.append(("WEIGHT_INCONSISTENCY", {
                    "carcass_weight_g": args["weight_g"],
                    "live_weight_g": animal["last_weight_g"], "animal": number}))
            animal.update(carcass=carcass_no, location=ctx.signer.org)
            ctx.state.put(f"animal/{number}", animal)
            record.update(animals=[number], farm=animal["owner"], farm_no=animal["farm_no"])
            link(ctx, trace.node(ANIMAL, number), trace.node(CARCASS, carcass_no))
            keys += [number, str(animal["owner"])]
        else:
            farm_no, trace_no = args["farm_no"], args["trace_no"]
            if ctx.state.get(f"pig/{trace_no}") is not None:
                raise ContractError(E_EXISTS, f"pig trace number {trace_no} already issued")
            if ctx.state.get(f"animal/{trace_no}") is not None:
                raise ContractError(E_INVALID_TRACE_NO, "trace number collides with an animal")
            farm = self.find_farm(ctx, farm_no)
            herd = ctx.state.get(f"herd/{farm_no}")
            if herd is not None and moment < int(herd["withdrawal_until_ms"]):
                raise self.refusal(
                    ctx, E_WITHDRAWAL, f"herd {farm_no} is in a withdrawal period",
                    "SLAUGHTER_DURING_WITHDRAWAL",
                    {"carcass": carcass_no, "farm_no": farm_no, "trace_no": trace_no,
                     "withdrawal_until_ms": int(herd["withdrawal_until_ms"])},
                    carcass_no, trace_no, farm_no, farm)
            record.update(farm=farm, farm_no=farm_no, trace_no=trace_no,
                          head_count=args["head_count"])
            ctx.state.put(f"pig/{trace_no}", carcass_no)
            if self.custody_checks:  # version 3: a herd's batches by slaughter date
                ctx.state.put(f"herdbatch/{farm_no}/{record['date']}/{trace_no}", carcass_no)
            keys += [trace_no, farm_no, farm]
        ctx.state.put(f"carcass/{carcass_no}", record)
        append_log(ctx, trace.node(CARCASS, carcass_no), "slaughter",
                   animals=record["animals"], trace_no=record["trace_no"],
                   farm=record["farm"], weight_g=args["weight_g"], grade=args["grade"],
                   inspection=record["inspection"], date=record["date"])
        report(ctx, "slaughter", {"carcass": carcass_no, "animals": record["animals"],
                                  "trace_no": record["trace_no"], "grade": args["grade"],
                                  "weight_g": args["weight_g"],
                                  "inspection_ok": inspection_ok}, *keys)
        if rules.is_late(args["day"], today):
            flags.append(("LATE_REPORT", {"slaughter_date": record["date"]}))
        if not inspection_ok:
            flags.append(("INSPECTION_FAILED", {"inspection": record["inspection"]}))
        for code, attrs in flags:
            violation(ctx, code, {"carcass": carcass_no, **attrs}, *keys)

    def find_farm(self, ctx: Context, farm_no: str) -> str:
        """The farm organisation registered with ``farm_no`` (pigs are traced by farm)."""
        for _, org in ctx.read_other("membership").scan("org/"):
            if FARM in org["roles"] and farm_no in org.get("business_ids", []):
                return str(org["id"])
        raise ContractError(E_NOT_FOUND, f"no farm is registered with farm number {farm_no}")

    # --- packer --------------------------------------------------------------------------------

    def new_lot(self, ctx: Context, lot: identifiers.LotNumber, product: str, kind: str,
                inputs: list[str], weight_g: int, *, not_before: int | None = None
                ) -> dict[str, Any]:
        """Checks shared by cut and bundle; returns the new lot record (not yet stored).

        ``not_before``: the day of the lot's sources (its carcass's slaughter, its input
        lots' dates), before which it cannot be dated (version 3)."""
        if ctx.state.get(f"lot/{lot.number}") is not None:
            raise ContractError(E_EXISTS, f"lot {lot.number} already exists")
        if lot.product != product:
            raise ContractError(E_INVALID_LOT, f"lot {lot.number} has the wrong product code")
        if lot.business_code not in get_business_ids(ctx, ctx.signer.org):
            raise ContractError(E_BUSINESS_ID, f"{lot.business_code} is not your business code")
        if lot.day > get_kst_today(ctx):
            raise ContractError(E_INVALID_LOT, f"lot {lot.number} is dated after the block date")
        if self.custody_checks and not_before is not None and lot.day < not_before:
            raise ContractError(E_INVALID_LOT, f"lot {lot.number} is dated before its sources "
                                               f"({identifiers.format_day(not_before)})")
        return {"number": lot.number, "product": product, "kind": kind, "inputs": inputs,
                "weight_g": weight_g, "packer": ctx.signer.org,
                "state": next_state(LOT, "create", ""), "shop": None, "sold_g": 0,
                "created_ms": ctx.time_ms, "recalled_reason": None}

    def process_cut(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(PACKER)
        carcass_no = args["carcass"]
        carcass = require(ctx, f"carcass/{carcass_no}", f"carcass {carcass_no}")
        # Verify the carcass passed inspection: a failed one blocks every lot from it.
        if carcass["state"] == "failed":
            raise ContractError(E_INSPECTION_FAILED, f"carcass {carcass_no} failed inspection")
        put_state(ctx, f"carcass/{carcass_no}", carcass, CARCASS, "cut")
        source = trace.node(CARCASS, carcass_no)
        product = identifiers.SPECIES_PRODUCT[carcass["species"]]
        slaughtered = identifiers.parse_date(carcass["date"])
        if self.refusals_report:
            # Every lot's own checks (new number, the signer's business code...) before a
            # weight report is published: a report names these lots to the regulator, so a
            # call refused anyway must not (review: another packer's lot numbers).
            for lot, weight in args["lots"]:
                self.new_lot(ctx, lot, product, "cut", [source], weight, not_before=slaughtered)
        # Verify the lots (with every earlier cut) do not weigh more than the carcass.
        total = int(carcass["cut_g"]) + sum(weight for _, weight in args["lots"])
        if total > int(carcass["weight_g"]):
            raise self.refusal(
                ctx, E_WEIGHT, f"lots weigh {total} g, carcass {carcass['weight_g']} g",
                "WEIGHT_INCONSISTENCY",
                {"carcass": carcass_no, "lots_weight_g": total,
                 "carcass_weight_g": int(carcass["weight_g"])},
                carcass_no, *(lot.number for lot, _ in args["lots"]))
        carcass["cut_g"] = total
        ctx.state.put(f"carcass/{carcass_no}", carcass)
        for lot, weight in args["lots"]:
            record = self.new_lot(ctx, lot, product, "cut", [source], weight,
                                  not_before=slaughtered)
            ctx.state.put(f"lot/{lot.number}", record)
            link(ctx, source, trace.node(LOT, lot.number), weight)
        lots = [{"lot": lot.number, "weight_g": weight} for lot, weight in args["lots"]]
        append_log(ctx, source, "cut", lots=lots)
        report(ctx, "cut", {"carcass": carcass_no, "lots": lots}, carcass_no,
               *(lot.number for lot, _ in args["lots"]))

    def process_bundle(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(PACKER)
        total, products = 0, set()
        for number in args["inputs"]:
            record = require(ctx, f"lot/{number}", f"lot {number}")
            if record["packer"] != ctx.signer.org:
                raise ContractError(E_FORBIDDEN, f"lot {number} belongs to another packer")
            put_state(ctx, f"lot/{number}", record, LOT, "bundle")
            total += int(record["weight_g"])
            products.add(str(record["product"]))
        if len(products) != 1:
            raise ContractError(E_INVALID_LOT, "a bundle holds lots of one product")
        lot = args["lot"]
        inputs = [trace.node(LOT, number) for number in args["inputs"]]
        newest = max(identifiers.parse_lot(number).day for number in args["inputs"])
        if self.refusals_report:  # the new lot's own checks before a report (see cut)
            self.new_lot(ctx, lot, next(iter(products)), "bundle", inputs, args["weight_g"],
                         not_before=newest)
        # Verify the bundle does not weigh more than its inputs.
        if args["weight_g"] > total:
            raise self.refusal(
                ctx, E_WEIGHT, f"bundle {args['weight_g']} g > inputs {total} g",
                "WEIGHT_INCONSISTENCY",
                {"lot": lot.number, "weight_g": args["weight_g"], "inputs_weight_g": total,
                 "inputs": args["inputs"]},
                lot.number, *args["inputs"])
        record = self.new_lot(ctx, lot, products.pop(), "bundle", inputs, args["weight_g"],
                              not_before=newest)
        ctx.state.put(f"lot/{lot.number}", record)
        target = trace.node(LOT, lot.number)
        for source in inputs:
            link(ctx, source, target)
        append_log(ctx, target, "bundle", inputs=args["inputs"], weight_g=args["weight_g"])
        report(ctx, "bundle", {"lot": lot.number, "inputs": args["inputs"],
                               "weight_g": args["weight_g"]}, lot.number, *args["inputs"])

    # --- shop ----------------------------------------------------------------------------------

    def process_receive(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(SHOP)
        number = args["lot"].number
        record = ctx.state.get(f"lot/{number}")
        if record is None:
            # Meat labelled with a bundle number nobody packed: untraceable, so the regulator
            # must hear of it. Accept the sighting; no lot is created and nothing can be sold.
            record_unregistered(ctx, number, "receive")
            report(ctx, "receive", {"lot": number, "registered": False}, number)
            return
        record = dict(record)
        put_state(ctx, f"lot/{number}", record, LOT, "receive")
        record["shop"] = ctx.signer.org
        ctx.state.put(f"lot/{number}", record)
        link(ctx, trace.node(LOT, number), trace.node(trace.SHOP, ctx.signer.org))
        append_log(ctx, trace.node(LOT, number), "receive", source=record["packer"],
                   destination=ctx.signer.org)
        report(ctx, "receive", {"lot": number, "from": record["packer"], "registered": True},
               number, str(record["packer"]))

    def process_sell(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(SHOP)
        number = args["lot"].number
        record = require(ctx, f"lot/{number}", f"lot {number}")
        if record["state"] == "at_shop" and record["shop"] != ctx.signer.org:
            raise ContractError(E_FORBIDDEN, f"lot {number} is at another shop")
        sold = int(record["sold_g"]) + args["weight_g"]
        remaining = int(record["weight_g"]) - sold
        put_state(ctx, f"lot/{number}", record, LOT, "sell" if remaining > 0 else "sell_last")
        # Verify the shop does not sell more meat than the lot holds.
        if remaining < 0:
            left = int(record["weight_g"]) - int(record["sold_g"])
            raise self.refusal(
                ctx, E_WEIGHT, f"only {left} g left", "WEIGHT_INCONSISTENCY",
                {"lot": number, "weight_g": args["weight_g"], "left_g": left}, number)
        record["sold_g"] = sold
        ctx.state.put(f"lot/{number}", record)
        append_log(ctx, trace.node(LOT, number), "sell", weight_g=args["weight_g"],
                   package=args["package"] or None)
        report(ctx, "sell", {"lot": number, "weight_g": args["weight_g"],
                             "package": args["package"] or None, "remaining_g": remaining},
               number)

    # --- regulator -----------------------------------------------------------------------------

    def process_recall(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(REGULATOR)
        number, reason = args["number"], args["reason"]
        root = trace.resolve_number(ctx.state, number)
        if root is None:
            raise ContractError(E_NOT_FOUND, f"nothing is registered under {number}")
        root_record = trace.get_record(ctx.state, root)
        assert root_record is not None
        if root_record.get("recalled") is True or root_record["state"] == "recalled":
            raise ContractError(E_RECALLED, f"{number} has already been recalled")
        scope = trace.get_recall_scope(ctx.state, root)
        for ident in scope["animals"]:
            animal = require(ctx, f"animal/{ident}", f"animal {ident}")
            animal.update(recalled=True, flags=sorted({*animal["flags"], "RECALLED"}))
            ctx.state.put(f"animal/{ident}", animal)
            append_log(ctx, trace.node(ANIMAL, ident), "recall", reason=reason, root=number)
        for kind, plural in ((CARCASS, "carcasses"), (LOT, "lots")):
            for ident in scope[plural]:
                record = require(ctx, f"{kind}/{ident}", f"{kind} {ident}")
                if record["state"] == "recalled":
                    continue  # recalled before through another root: nothing changes
                record["recalled_reason"] = reason
                put_state(ctx, f"{kind}/{ident}", record, kind, "recall")
                append_log(ctx, trace.node(kind, ident), "recall", reason=reason, root=number)
        report(ctx, "recall", {"number": number, "reason": reason, "root": root,
                               "lots": scope["lots"], "carcasses": scope["carcasses"],
                               "shops": scope["shops"], "parties": scope["parties"]},
               number, *scope["parties"])
        # One notice per affected party, keyed by its organisation, listing what it holds.
        held: dict[str, list[str]] = {org: [] for org in scope["parties"]}
        for ident in scope["lots"]:
            lot = require(ctx, f"lot/{ident}", f"lot {ident}")
            for org in sorted({lot["packer"], lot["shop"]} - {None}):
                held[str(org)].append(ident)
        for org in scope["parties"]:
            ctx.emit("recall_notice", {"report": True, "org": org, "number": number,
                                       "reason": reason, "lots": held[org]},
                     keys=(org, number))

    def process_update_rules(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.require_role(REGULATOR)
        ctx.state.put("config/rules", {"check_digit_rule": args["check_digit_rule"]})
        report(ctx, "update_rules", {"check_digit_rule": args["check_digit_rule"]}, "rules")

    # --- queries -------------------------------------------------------------------------------

    def query(self, ctx: QueryContext, name: str, args: Mapping[str, Any]) -> Any:
        if name in ("trace", "recall_scope", "epcis"):
            number = arg_str(args, "number", pattern=ANY_NUMBER, max_len=32)
            root = trace.resolve_number(ctx.state, number)
            if root is None:
                raise ContractError(E_NOT_FOUND, f"nothing is registered under {number}")
            if name == "trace":
                return trace.get_trace(ctx.state, root)
            if name == "recall_scope":
                return trace.get_recall_scope(ctx.state, root)
            return epcis.compute_document(ctx.state, root, ctx.time_ms)
        if name == "animal":
            number = arg_str(args, "id", max_len=32, pattern=ANY_NUMBER,
                             code=E_INVALID_ANIMAL_ID)
            return self.get_with_history(ctx.state, trace.node(ANIMAL, number))
        if name == "carcass":
            number = arg_str(args, "number", max_len=32, pattern=ANY_NUMBER)
            return self.get_with_history(ctx.state, trace.node(CARCASS, number))
        if name == "lot":
            number = parse_lot(args, "number").number
            return self.get_with_history(ctx.state, trace.node(LOT, number))
        if name == "readings":
            return self.query_readings(ctx.state, args)
        if name == "unregistered":
            number = arg_str(args, "number", pattern=ANY_NUMBER, max_len=32)
            return [value for _, value in ctx.state.scan(f"unreg/{number}/")]
        if name == "rules":
            return {"check_digit_rule": get_check_digit_rule(ctx.state, self.check_digit_rule),
                    "check_digit_rules": sorted(identifiers.CHECK_DIGIT_RULES),
                    "late_report_days": rules.LATE_REPORT_DAYS}
        raise ContractError(E_UNKNOWN_QUERY, f"livestock has no query {name!r}")

    def get_with_history(self, state: StateReader, value: str) -> dict[str, Any]:
        record = trace.get_record(state, value)
        if record is None:
            raise ContractError(E_NOT_FOUND, f"{value} not found")
        record["history"] = trace.get_history(state, value)
        return record

    def query_readings(self, state: StateReader, args: Mapping[str, Any]) -> list[Any]:
        """The last ``n`` readings (oldest first) of one animal, device or site."""
        given = [k for k in ("animal", "device", "site") if args.get(k) is not None]
        if len(given) != 1:
            raise ContractError(E_ARGS, "give exactly one of animal, device or site")
        subject = given[0]
        # Each subject's own format: a device is a public key (review: ``device=zz``
        # answered an empty list instead of a bad argument).
        ident = (parse_cattle_id(args, subject) if subject == "animal"
                 else arg_str(args, subject, pattern=PUBKEY_HEX) if subject == "device"
                 else arg_str(args, subject, max_len=64, pattern=identifiers.SITE_ID))
        raw_n = args.get("n")
        if type(raw_n) is str and _QUERY_COUNT.fullmatch(raw_n):
            args = {**args, "n": int(raw_n)}  # from a query string: ?n=3 (docs/protocol.md)
        n = arg_int(args, "n", minimum=1, maximum=rules.MAX_READINGS_QUERY, optional=True,
                    default=10)
        index = f"{subject}:{ident}"
        count = int(state.get(f"rcount/{index}") or 0)
        return [state.get(f"reading/{index}/{i:010d}") for i in range(max(0, count - n), count)]

