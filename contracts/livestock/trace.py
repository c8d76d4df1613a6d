"""Walks over the traceability graph: upstream (where did this come from) and downstream
(where did it go), for ``trace``, ``recall_scope``, ``recall`` and the EPCIS export.

Nodes are typed strings: ``animal:<cattle no>``, ``carcass:<carcass no>``, ``lot:<bundle
no>``, ``shop:<org id>``. Every derivation stores both edge directions when it commits
(``down/<from>/<to>`` and ``up/<to>/<from>``), so a walk is a breadth-first series of prefix
scans and never a scan of the whole namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from contracts.sdk import StateReader

from . import identifiers

ANIMAL = "animal"
CARCASS = "carcass"
LOT = "lot"
SHOP = "shop"


def node(kind: str, ident: str) -> str:
    return f"{kind}:{ident}"


def split_node(value: str) -> tuple[str, str]:
    kind, _, ident = value.partition(":")
    return kind, ident


def record_key(value: str) -> str:
    """State key of a node's record (shops have none: they are membership organisations)."""
    kind, ident = split_node(value)
    return f"{kind}/{ident}"


def get_record(state: StateReader, value: str) -> dict[str, Any] | None:
    kind, _ = split_node(value)
    if kind == SHOP:
        return None
    record = state.get(record_key(value))
    return None if record is None else dict(record)


def resolve_number(state: StateReader, number: str) -> str | None:
    """The node a traceability number names: a lot, an animal, a pig batch or a carcass."""
    if identifiers.is_lot_number(number):
        return node(LOT, number) if state.get(f"lot/{number}") is not None else None
    if "/" in number or not number:
        return None
    if state.get(f"animal/{number}") is not None:
        return node(ANIMAL, number)
    carcass = state.get(f"pig/{number}")
    if carcass is not None:
        return node(CARCASS, str(carcass))
    if state.get(f"carcass/{number}") is not None:
        return node(CARCASS, number)
    return None


def get_neighbours(state: StateReader, direction: str, value: str) -> list[str]:
    """Nodes one edge away: ``direction`` is ``"down"`` or ``"up"``."""
    prefix = f"{direction}/{value}/"
    return [key[len(prefix) :] for key, _ in state.scan(prefix)]


def walk(state: StateReader, start: str, direction: str) -> list[str]:
    """Every node reachable from ``start`` (excluded) along ``direction``, sorted."""
    seen: set[str] = {start}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for current in frontier:
            for neighbour in get_neighbours(state, direction, current):
                if neighbour not in seen:
                    seen.add(neighbour)
                    following.append(neighbour)
        frontier = following
    seen.discard(start)
    return sorted(seen)


def group(nodes: Iterable[str]) -> dict[str, list[str]]:
    """Split nodes by kind into ``animals``, ``carcasses``, ``lots`` and ``shops`` lists."""
    out: dict[str, list[str]] = {"animals": [], "carcasses": [], "lots": [], "shops": []}
    plural = {ANIMAL: "animals", CARCASS: "carcasses", LOT: "lots", SHOP: "shops"}
    for value in sorted(nodes):
        kind, ident = split_node(value)
        out[plural[kind]].append(ident)
    return out


def get_history(state: StateReader, value: str) -> list[dict[str, Any]]:
    """The log entries recorded on a node, oldest first."""
    return [dict(entry) for _, entry in state.scan(f"log/{value}/")]


def get_herd_treatments(state: StateReader, carcass: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The herd treatments of a pig shipment batch's farm given up to its slaughter.

    Why: pigs are treated by herd (``treat`` with ``herd``), not one by one, so their
    treatments live in the herd's log, not on any node of the trace; without them a pork
    lot's trace would show no treatment at all. Each entry gets ``farm_no`` and ``n``
    (its place in the herd's log) so it can be named (EPCIS ``eventID``).

    A treatment belongs to the batch if it was given (its ``date``) on or before the
    slaughter date, whenever it was reported: filtering on the report's time left out a
    treatment reported late, after the slaughter (review). Entries without a date (none
    are written so) fall back to the report's time.
    """
    farm_no = carcass.get("farm_no")
    if carcass.get("animals") or not farm_no:
        return []
    log = carcass.get("history") or get_history(state, node(CARCASS, str(carcass["number"])))
    slaughtered = [int(entry["time_ms"]) for entry in log if entry["action"] == "slaughter"]
    until = slaughtered[0] if slaughtered else None
    slaughter_date = carcass.get("date")
    treatments = []
    for n, (_, entry) in enumerate(state.scan(f"herdlog/{farm_no}/")):
        if entry.get("action") != "treat":
            continue
        if isinstance(slaughter_date, str) and isinstance(entry.get("date"), str):
            given = entry["date"] <= slaughter_date  # ISO dates order as strings
        else:
            given = until is None or int(entry["time_ms"]) <= until
        if given:
            treatments.append({**entry, "farm_no": farm_no, "n": n})
    return treatments


def compute_parties(state: StateReader, root: str, downstream: Iterable[str]) -> list[str]:
    """Organisations affected by a recall of ``root``: the owner of a recalled animal, the
    slaughterhouse of each carcass, the packer and the shop of each lot."""
    orgs: set[str] = set()
    for value in [root, *downstream]:
        kind, ident = split_node(value)
        record = get_record(state, value)
        if kind == SHOP:
            orgs.add(ident)
        elif record is None:
            continue
        elif kind == ANIMAL:
            orgs.add(str(record["owner"]))
        elif kind == CARCASS:
            orgs.add(str(record["slaughterhouse"]))
        elif kind == LOT:
            orgs.add(str(record["packer"]))
            if record.get("shop"):
                orgs.add(str(record["shop"]))
    return sorted(orgs)


def get_recall_scope(state: StateReader, root: str) -> dict[str, Any]:
    """Everything downstream of ``root`` (the root included), and who holds it."""
    downstream = walk(state, root, "down")
    scope: dict[str, Any] = dict(group([root, *downstream]))
    scope["root"] = root
    scope["parties"] = compute_parties(state, root, downstream)
    return scope


def compute_origin(state: StateReader, carcass: dict[str, Any] | None,
                   animal: dict[str, Any] | None) -> dict[str, Any]:
    """One line of the consumer page: an animal (or pig batch) and what became of it."""
    origin: dict[str, Any] = {
        "animal": None, "species": None, "breed": None, "sex": None, "birth_date": None,
        "farm": None, "farm_no": None, "trace_no": None, "head_count": None,
        "carcass": None, "slaughterhouse": None, "slaughter_date": None, "grade": None,
        "inspection": None, "recalled": False,
    }
    if animal is not None:
        origin.update(
            animal=animal["id"], species=animal["species"], breed=animal["breed"],
            sex=animal["sex"], birth_date=animal["birth_date"], farm=animal["birth_farm"],
            farm_no=animal["farm_no"], recalled=bool(animal["recalled"]),
        )
        origin["current_farm"] = animal["owner"]
    if carcass is not None:
        inspection = carcass["inspection"]
        origin.update(
            species=carcass["species"], carcass=carcass["number"],
            slaughterhouse=carcass["slaughterhouse"], slaughter_date=carcass["date"],
            grade=carcass["grade"], inspection="pass" if inspection["ok"] else "fail",
            recalled=origin["recalled"] or carcass["state"] == "recalled",
        )
        if carcass["species"] == "pig":
            origin.update(trace_no=carcass["trace_no"], farm_no=carcass["farm_no"],
                          head_count=carcass["head_count"], farm=carcass["farm"])
    return origin


def get_trace(state: StateReader, root: str) -> dict[str, Any]:
    """The full tree around ``root``: upstream records with history, downstream ids, and the
    consumer view (what the label page of a package shows)."""
    upstream = walk(state, root, "up")
    downstream = walk(state, root, "down")
    kind, ident = split_node(root)
    records: dict[str, list[dict[str, Any]]] = {"animals": [], "carcasses": [], "lots": []}
    plural = {ANIMAL: "animals", CARCASS: "carcasses", LOT: "lots"}
    for value in sorted([root, *upstream]):
        record = get_record(state, value)
        if record is None:
            continue
        record["history"] = get_history(state, value)
        if split_node(value)[0] == CARCASS and record.get("species") == "pig":
            record["herd_treatments"] = get_herd_treatments(state, record)
        records[plural[split_node(value)[0]]].append(record)

    # Consumer view: one origin per carcass upstream (or the animal itself before slaughter).
    origins: list[dict[str, Any]] = []
    for carcass in records["carcasses"]:
        animals = [state.get(f"animal/{a}") for a in carcass["animals"]] or [None]
        origins.extend(compute_origin(state, carcass, animal) for animal in animals)
    if kind == ANIMAL:
        root_animal = records["animals"][0]
        made = root_animal["carcass"]
        origins.append(compute_origin(state, state.get(f"carcass/{made}") if made else None,
                                      root_animal))
    lot = next((r for r in records["lots"] if r["number"] == ident), None)
    # The packer: the lot's own, else an upstream lot's, else (an animal or carcass number)
    # that of the lots cut from it, which is what a consumer holding one of them sees.
    packers = sorted({str(r["packer"]) for r in records["lots"]}) or sorted({
        str(record["packer"]) for value in downstream
        if split_node(value)[0] == LOT and (record := get_record(state, value)) is not None
    })
    recalled = any(o["recalled"] for o in origins) or any(
        r["state"] == "recalled" for r in records["lots"]
    )
    consumer = {
        "number": ident,
        "kind": kind,
        "product": identifiers.PRODUCT_CODES[lot["product"]] if lot else None,
        "weight_g": lot["weight_g"] if lot else None,
        "packer": lot["packer"] if lot else (packers[0] if packers else None),
        "shop": lot.get("shop") if lot else None,
        "recalled": recalled,
        "origins": origins,
    }
    return {
        "number": ident,
        "kind": kind,
        "root": root,
        "upstream": records,
        "downstream": group(downstream),
        "consumer": consumer,
    }
