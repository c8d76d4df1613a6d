"""livestock epcis: a trace exported as a GS1 EPCIS 2.0 JSON-LD document."""

from __future__ import annotations

import json
import re

from test_livestock_scenario import run_demo

from contracts.livestock.scenario import CALF_1, CALF_2

ISO_KST = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+09:00")
EVENT_TYPES = {"ObjectEvent", "AggregationEvent", "TransformationEvent"}


def demo_document(number: str | None = None):
    ledger, _, answers = run_demo()
    number = number or answers["trace"]["number"]
    return ledger, ledger.query("livestock", "epcis", {"number": number})


def test_document_is_an_epcis_2_document():
    _, doc = demo_document()
    assert doc["@context"][0] == "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
    assert doc["type"] == "EPCISDocument" and doc["schemaVersion"] == "2.0"
    assert ISO_KST.fullmatch(doc["creationDate"])
    json.dumps(doc)  # plain JSON: no bytes, no floats needed
    events = doc["epcisBody"]["eventList"]
    assert events and {e["type"] for e in events} <= EVENT_TYPES
    for event in events:
        assert ISO_KST.fullmatch(event["eventTime"]) and event["eventTimeZoneOffset"] == "+09:00"
        assert event["eventID"].startswith("urn:jangbu:event:")
        assert event["bizLocation"]["id"].startswith("urn:jangbu:org:")
    ids = [e["eventID"] for e in events]
    assert len(ids) == len(set(ids))
    times = [e["eventTime"] for e in events]
    assert times == sorted(times)


def test_stages_map_to_the_cbv_vocabulary():
    _, doc = demo_document()
    events = doc["epcisBody"]["eventList"]
    by_step: dict[str, list[dict]] = {}
    for event in events:
        by_step.setdefault(event.get("bizStep", ""), []).append(event)
    births = by_step["commissioning"]
    assert {e["epcList"][0] for e in births} == {f"urn:jangbu:animal:{CALF_1}",
                                                 f"urn:jangbu:animal:{CALF_2}"}
    assert all(e["type"] == "ObjectEvent" and e["action"] == "ADD" for e in births)
    assert births[0]["ilmd"]["jangbu:breed"] == "Hanwoo"
    shipping = by_step["shipping"][0]
    assert shipping["sourceList"][0]["source"] == "urn:jangbu:org:farm-a"
    assert shipping["destinationList"][0]["destination"] == "urn:jangbu:org:farm-b"
    assert by_step["receiving"]
    slaughter = by_step["killing"]
    assert {e["type"] for e in slaughter} == {"TransformationEvent"}
    assert slaughter[0]["outputEPCList"][0].startswith("urn:jangbu:carcass:")
    cuts = by_step["creating_class_instance"]
    assert all(e["type"] == "TransformationEvent" for e in cuts)
    assert cuts[0]["outputQuantityList"][0]["uom"] == "GRM"
    bundle = by_step["packing"][0]
    assert bundle["type"] == "AggregationEvent" and bundle["action"] == "ADD"
    assert len(bundle["childQuantityList"]) == 2
    sale = by_step["retail_selling"][0]
    assert sale["disposition"] == "retail_sold" and sale["quantityList"][0]["quantity"] == 600


def test_recall_is_exported_with_disposition_recalled():
    _, doc = demo_document()
    recalled = [e for e in doc["epcisBody"]["eventList"] if e.get("disposition") == "recalled"]
    assert recalled and all(e["jangbu:recallReason"] for e in recalled)


def test_export_of_an_animal_covers_its_downstream():
    _, doc = demo_document(CALF_2)
    steps = [e.get("bizStep") for e in doc["epcisBody"]["eventList"]]
    assert steps[0] == "commissioning" and "killing" in steps and "retail_selling" in steps
