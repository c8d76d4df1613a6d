"""Export of a trace as a GS1 EPCIS 2.0 JSON-LD document, so supply-chain tools can read it.

Mapping (each history entry of each node in the trace becomes one event):

=================  =====================  ==============  ===========================
entry              EPCIS event            bizStep         disposition
=================  =====================  ==============  ===========================
birth              ObjectEvent ADD        commissioning   active (ilmd: breed, sex...)
transfer_out       ObjectEvent OBSERVE    shipping        in_transit
transfer_in        ObjectEvent OBSERVE    receiving       active
transfer_refused   ObjectEvent OBSERVE    receiving       returned
arrival            ObjectEvent OBSERVE    receiving       in_progress
treat              ObjectEvent OBSERVE    jangbu treating active (jangbu:drug...)
herd treat         ObjectEvent OBSERVE    jangbu treating active (quantity: the herd)
death              ObjectEvent DELETE     decommissioning destroyed
slaughter          TransformationEvent    killing         active / non_sellable_other
cut                TransformationEvent    creating_class_instance  active
bundle             AggregationEvent ADD   packing         in_progress
receive            ObjectEvent OBSERVE    receiving       sellable_accessible
sell               ObjectEvent OBSERVE    retail_selling  retail_sold
recall             ObjectEvent OBSERVE    holding         recalled
=================  =====================  ==============  ===========================

Identifiers are URNs in the ``urn:jangbu:`` namespace (Korean cattle numbers and bundle
numbers have no EPC scheme): ``urn:jangbu:animal:<no>`` and ``urn:jangbu:carcass:<no>`` are
instance-level (``epcList``), ``urn:jangbu:lot:<no>`` is class-level (``quantityList`` in
grams, UN/ECE unit ``GRM``), parties and locations are ``urn:jangbu:org:<org id>``, a pig
shipment batch's input is ``urn:jangbu:herd:<farm no>`` counted in head (``H87``).
``eventTime`` is the block time in KST (``+09:00``); extensions use the ``jangbu:`` prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from contracts.sdk import StateReader

from . import identifiers, trace

EPCIS_CONTEXT: Final = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
JANGBU_CONTEXT: Final = {"jangbu": "urn:jangbu:epcis:"}
TIMEZONE: Final = "+09:00"
GRAMS: Final = "GRM"
HEADS: Final = "H87"


def urn(kind: str, ident: str) -> str:
    return f"urn:jangbu:{kind}:{ident}"


def compute_base(entry: dict[str, Any], type_: str) -> dict[str, Any]:
    """The fields every event has; ``jangbu:height`` when the entry knows its block (a
    herd's log does not)."""
    org = urn("org", str(entry["org"]))
    base = {
        "type": type_,
        "eventID": f"urn:jangbu:event:{entry['node']}:{entry['n']}",
        "eventTime": identifiers.format_kst_iso(int(entry["time_ms"])),
        "eventTimeZoneOffset": TIMEZONE,
        "readPoint": {"id": org},
        "bizLocation": {"id": org},
    }
    if "height" in entry:
        base["jangbu:height"] = entry["height"]
    return base


def node_ref(value: str, weight_g: int | None) -> tuple[str, dict[str, Any]]:
    """``("epcList", urn)`` for an animal/carcass, ``("quantityList", {...})`` for a lot."""
    kind, ident = trace.split_node(value)
    if kind == trace.LOT:
        quantity: dict[str, Any] = {"epcClass": urn("lot", ident)}
        if weight_g is not None:
            quantity.update(quantity=weight_g, uom=GRAMS)
        return "quantityList", quantity
    return "epcList", {"epc": urn(kind, ident)}


def compute_object_event(entry: dict[str, Any], action: str, biz_step: str, disposition: str,
                         weight_g: int | None = None) -> dict[str, Any]:
    event = compute_base(entry, "ObjectEvent")
    field, ref = node_ref(str(entry["node"]), weight_g)
    event["epcList" if field == "epcList" else "quantityList"] = (
        [ref["epc"]] if field == "epcList" else [ref]
    )
    event.update(action=action, bizStep=biz_step, disposition=disposition)
    if "source" in entry:
        event["sourceList"] = [{"type": "owning_party", "source": urn("org", entry["source"])}]
    if "destination" in entry:
        event["destinationList"] = [
            {"type": "owning_party", "destination": urn("org", entry["destination"])}
        ]
    return event


def on_birth(entry: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    event = compute_object_event(entry, "ADD", "commissioning", "active")
    event["ilmd"] = {"jangbu:species": record["species"], "jangbu:breed": entry["breed"],
                     "jangbu:sex": entry["sex"], "jangbu:birthDate": entry["birth_date"],
                     "jangbu:farmNumber": entry["farm_no"], "jangbu:lateReport": entry["late"]}
    return event


def treatment_fields(entry: dict[str, Any]) -> dict[str, Any]:
    return {"action": "OBSERVE", "bizStep": "urn:jangbu:bizstep:treating",
            "disposition": "active", "jangbu:drug": entry["drug"],
            "jangbu:treatmentKind": entry["kind"],
            "jangbu:withdrawalDays": entry["withdrawal_days"]}


def on_treat(entry: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    event = compute_object_event(entry, "OBSERVE", "urn:jangbu:bizstep:treating", "active")
    event.update(treatment_fields(entry))
    return event


def on_herd_treat(entry: dict[str, Any]) -> dict[str, Any]:
    """A pig herd's treatment before its batch's slaughter (:func:`trace.get_herd_treatments`).
    The herd log keeps no block height, so the event has no ``jangbu:height``."""
    herd = str(entry["farm_no"])
    event = compute_base({**entry, "node": f"herd:{herd}"}, "ObjectEvent")
    event["quantityList"] = [{"epcClass": urn("herd", herd)}]
    event.update(treatment_fields(entry))
    return event


def on_slaughter(entry: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    event = compute_base(entry, "TransformationEvent")
    if entry["animals"]:
        event["inputEPCList"] = [urn("animal", a) for a in entry["animals"]]
    else:
        event["inputQuantityList"] = [{"epcClass": urn("herd", str(record["farm_no"])),
                                       "quantity": record["head_count"], "uom": HEADS}]
    event["outputEPCList"] = [urn("carcass", str(record["number"]))]
    ok = bool(entry["inspection"]["ok"])
    event.update(bizStep="killing", disposition="active" if ok else "non_sellable_other")
    event["transformationID"] = f"urn:jangbu:slaughter:{record['number']}"
    event.update({"jangbu:grade": entry["grade"], "jangbu:carcassWeightG": entry["weight_g"],
                  "jangbu:inspection": entry["inspection"],
                  "jangbu:slaughterDate": entry["date"]})
    if entry["trace_no"]:
        event["jangbu:traceNumber"] = entry["trace_no"]
    return event


def on_cut(entry: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    event = compute_base(entry, "TransformationEvent")
    event["inputEPCList"] = [urn("carcass", str(record["number"]))]
    event["outputQuantityList"] = [
        {"epcClass": urn("lot", lot["lot"]), "quantity": lot["weight_g"], "uom": GRAMS}
        for lot in entry["lots"]
    ]
    event.update(bizStep="creating_class_instance", disposition="active")
    return event


def on_bundle(entry: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    event = compute_base(entry, "AggregationEvent")
    event.update(
        parentID=urn("lot", str(record["number"])),
        childQuantityList=[{"epcClass": urn("lot", n)} for n in entry["inputs"]],
        action="ADD", bizStep="packing", disposition="in_progress",
    )
    event["jangbu:weightG"] = entry["weight_g"]
    return event


def on_simple(action: str, biz_step: str, disposition: str,
              weighed: bool = False) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    def handler(entry: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        weight = entry.get("weight_g") if weighed else None
        if weighed and weight is None:
            weight = int(record["weight_g"])
        event = compute_object_event(entry, action, biz_step, disposition, weight)
        if entry.get("package"):
            event["jangbu:package"] = entry["package"]
        if entry.get("reason"):
            event["jangbu:recallReason"] = entry["reason"]
        return event

    return handler


HANDLERS: Final[dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]]] = {
    "birth": on_birth,
    "transfer_out": on_simple("OBSERVE", "shipping", "in_transit"),
    "transfer_in": on_simple("OBSERVE", "receiving", "active"),
    "transfer_refused": on_simple("OBSERVE", "receiving", "returned"),
    "arrival": on_simple("OBSERVE", "receiving", "in_progress"),
    "treat": on_treat,
    "death": on_simple("DELETE", "decommissioning", "destroyed"),
    "slaughter": on_slaughter,
    "cut": on_cut,
    "bundle": on_bundle,
    "receive": on_simple("OBSERVE", "receiving", "sellable_accessible", weighed=True),
    "sell": on_simple("OBSERVE", "retail_selling", "retail_sold", weighed=True),
    "recall": on_simple("OBSERVE", "holding", "recalled"),
}


def compute_events(state: StateReader, root: str) -> list[dict[str, Any]]:
    """Every EPCIS event of the nodes upstream and downstream of ``root``, in commit order."""
    nodes = [root, *trace.walk(state, root, "up"), *trace.walk(state, root, "down")]
    entries: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for value in nodes:
        record = trace.get_record(state, value)
        if record is None:
            continue
        entries.extend((entry, record) for entry in trace.get_history(state, value))
    entries.sort(key=lambda pair: (pair[0]["height"], pair[0]["node"], pair[0]["n"]))
    # A batch's herd treatments were all recorded before its slaughter, so before every
    # other event of a pig trace (which starts at the slaughter).
    herd_events = [on_herd_treat(entry) for value in sorted(set(nodes))
                   if trace.split_node(value)[0] == trace.CARCASS
                   and (record := trace.get_record(state, value)) is not None
                   for entry in trace.get_herd_treatments(state, record)]
    return [*herd_events,
            *(HANDLERS[entry["action"]](entry, record) for entry, record in entries)]


def compute_document(state: StateReader, root: str, time_ms: int) -> dict[str, Any]:
    """The EPCISDocument for the trace of ``root`` (``creationDate``: the chain's time)."""
    return {
        "@context": [EPCIS_CONTEXT, JANGBU_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": identifiers.format_kst_iso(time_ms),
        "epcisBody": {"eventList": compute_events(state, root)},
    }
