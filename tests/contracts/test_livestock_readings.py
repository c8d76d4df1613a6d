"""livestock record_readings: device-signed sensor data, by a device or its org's gateway."""

from __future__ import annotations

from typing import Any

import pytest
from test_livestock import COW, birth, events, setup_ledger

from contracts.livestock import LivestockContract
from contracts.sdk import ContractError

from contract_harness import make_ledger


def add_device(ledger: Any, name: str, org: str = "farm-a") -> str:
    ledger.new_key(name)
    pubkey = ledger.pub(name).hex()
    assert ledger.apply(org, "membership", "add_member",
                        {"pubkey": pubkey, "kind": "device", "label": name}).ok
    return pubkey


def reading(ledger: Any, device: str, seq: int, value: Any = 385, kind: str = "temperature",
            signer: str | None = None, **subject: Any) -> dict[str, Any]:
    body = {"device": ledger.pub(device).hex(), "kind": kind, "value": value, "seq": seq,
            **(subject or {"animal": COW})}
    return {**body, "sig": ledger.sign_device(signer or device, body)}


def submit(ledger: Any, signer: str, *readings: dict[str, Any]) -> Any:
    return ledger.apply(signer, "livestock", "record_readings", {"readings": list(readings)})


def ready() -> Any:
    ledger = setup_ledger()
    assert birth(ledger).ok
    add_device(ledger, "collar")
    add_device(ledger, "scale")
    return ledger


def test_device_submits_its_own_signed_readings():
    ledger = ready()
    receipt = submit(ledger, "collar", reading(ledger, "collar", 1),
                     reading(ledger, "collar", 2, 386))
    assert receipt.ok, receipt
    assert events(receipt, "record_readings")[0].attrs["count"] == 2
    stored = ledger.query("livestock", "readings", {"animal": COW})
    assert [r["value"] for r in stored] == [385, 386] and stored[0]["alert"] is None


def test_gateway_submits_a_batch_for_several_devices_of_its_org():
    ledger = ready()
    receipt = submit(ledger, "farm-a", reading(ledger, "collar", 1),
                     reading(ledger, "scale", 1, 420_000, kind="weight"),
                     reading(ledger, "scale", 2, -35, site="barn-1"))
    assert receipt.ok, receipt
    assert ledger.query("livestock", "animal", {"id": COW})["last_weight_g"] == 420_000
    assert len(ledger.query("livestock", "readings", {"device": ledger.pub("scale").hex()})) == 2
    assert ledger.query("livestock", "readings", {"site": "barn-1"})[0]["value"] == -35


def test_out_of_range_readings_are_stored_and_raise_alerts():
    ledger = ready()
    receipt = submit(ledger, "farm-a", reading(ledger, "collar", 1, 402),
                     reading(ledger, "collar", 2, 360),
                     reading(ledger, "collar", 3, {"lat_e6": 35_000_000, "lon_e6": 139_000_000},
                             kind="location"),
                     reading(ledger, "collar", 4, {"lat_e6": 36_000_000, "lon_e6": 127_000_000},
                             kind="location"),
                     reading(ledger, "scale", 1, 400, site="cold-room"))
    assert receipt.ok
    reasons = [e.attrs["reason"] for e in events(receipt, "alert")]
    assert reasons == ["TEMPERATURE_HIGH", "TEMPERATURE_LOW", "LOCATION_OUTSIDE_KOREA",
                       "TEMPERATURE_HIGH"]
    assert all("regulator" in e.keys for e in events(receipt, "alert"))


def test_readings_query_returns_the_last_n():
    ledger = ready()
    assert submit(ledger, "collar", *(reading(ledger, "collar", s, 380 + s)
                                      for s in range(1, 8))).ok
    last = ledger.query("livestock", "readings", {"animal": COW, "n": 3})
    assert [r["seq"] for r in last] == [5, 6, 7]
    with pytest.raises(ContractError):
        ledger.query("livestock", "readings", {"animal": COW, "device": "ab"})


def test_readings_query_takes_n_from_a_query_string():
    """``GET /v1/query/livestock/readings?animal=...&n=3`` hands the contract ``"3"``; it
    was refused ("must be an integer") though docs/protocol.md shows that very request."""
    ledger = ready()
    assert submit(ledger, "collar", *(reading(ledger, "collar", s, 380 + s)
                                      for s in range(1, 8))).ok
    last = ledger.query("livestock", "readings", {"animal": COW, "n": "3"})
    assert [r["seq"] for r in last] == [5, 6, 7]
    for bad in ("0", "x", "1_0", " 3", "-1", "3.0", "9" * 30):
        with pytest.raises(ContractError) as refused:
            ledger.query("livestock", "readings", {"animal": COW, "n": bad})
        assert refused.value.code == "E_ARGS", bad


def test_invalid_bad_signature_is_refused():
    ledger = ready()
    forged = reading(ledger, "collar", 1, signer="scale")  # scale signs collar's body
    assert submit(ledger, "farm-a", forged).code == "E_SIGNATURE"
    tampered = {**reading(ledger, "collar", 1), "value": 390}
    assert submit(ledger, "collar", tampered).code == "E_SIGNATURE"
    assert ledger.query("livestock", "readings", {"animal": COW}) == []


def test_invalid_replayed_sequence_is_refused():
    ledger = ready()
    first = reading(ledger, "collar", 5)
    assert submit(ledger, "collar", first).ok
    assert submit(ledger, "collar", first).code == "E_REPLAY"
    assert submit(ledger, "farm-a", reading(ledger, "collar", 4)).code == "E_REPLAY"
    assert submit(ledger, "collar", reading(ledger, "collar", 6),
                  reading(ledger, "collar", 6)).code == "E_REPLAY"
    assert submit(ledger, "collar", reading(ledger, "collar", 6)).ok  # batch left no trace


def test_invalid_unregistered_or_revoked_or_foreign_device_is_refused():
    ledger = ready()
    ledger.new_key("rogue")
    assert submit(ledger, "farm-a", reading(ledger, "rogue", 1)).code == "E_DEVICE"
    add_device(ledger, "other", org="farm-b")
    assert submit(ledger, "farm-a", reading(ledger, "other", 1)).code == "E_DEVICE"
    assert submit(ledger, "collar", reading(ledger, "scale", 1)).code == "E_DEVICE"
    # A member key (not a device) cannot be named as the device of a reading.
    assert submit(ledger, "farm-a", reading(ledger, "farm-a", 1)).code == "E_DEVICE"
    assert ledger.apply("farm-a", "membership", "revoke_member",
                        {"pubkey": ledger.pub("scale").hex()}).ok
    assert submit(ledger, "farm-a", reading(ledger, "scale", 1)).code == "E_DEVICE"
    assert submit(ledger, "scale", reading(ledger, "scale", 1)).code == "E_REVOKED_SIGNER"


def test_invalid_gateway_without_a_site_role_is_refused():
    ledger = ready()
    assert submit(ledger, "mafra", reading(ledger, "collar", 1)).code == "E_ROLE"


def test_invalid_reading_shapes_are_refused():
    ledger = ready()
    good = reading(ledger, "collar", 1)
    bad_cases = [
        {**good, "kind": "humidity"},
        {**good, "value": "hot"},
        {**good, "value": True},
        {**good, "seq": -1},
        {**good, "sig": "zz"},
        {**good, "device": "AB" * 32},
        {**good, "site": "barn"},
        {k: v for k, v in good.items() if k != "animal"},
        {**good, "extra": 1},
        reading(ledger, "collar", 1, {"lat_e6": 1}, kind="location"),
        "not a map",
    ]
    for case in bad_cases:
        assert submit(ledger, "collar", case).code == "E_INVALID_READING", case
    assert ledger.apply("collar", "livestock", "record_readings",
                        {"readings": []}).code == "E_ARGS"


def test_invalid_reading_for_unknown_or_slaughtered_animal():
    ledger = ready()
    assert submit(ledger, "collar", reading(ledger, "collar", 1,
                                            animal="002999999990")).code == "E_NOT_FOUND"
    assert ledger.apply("farm-a", "livestock", "death", {"animal": COW}).ok
    assert submit(ledger, "collar", reading(ledger, "collar", 1)).code == "E_STATE"


def test_contract_is_usable_without_other_contracts():
    ledger = make_ledger(LivestockContract("luhn"))
    ledger.add_org("farm", ["farm"])
    assert ledger.query("livestock", "rules")["check_digit_rule"] == "luhn"
    with pytest.raises(ValueError):
        LivestockContract("secret")


def test_readings_query_names_what_is_wrong_with_its_arguments():
    """Regression (livestock review): ``n=-1`` and ``n=1000000`` were refused as "not an
    integer" rather than out of range, and ``device=zz`` answered an empty list."""
    ledger = ready()
    for bad, words in (("-1", "in [1, 200]"), ("1000000", "in [1, 200]"), ("0", "in [1, 200]")):
        with pytest.raises(ContractError) as refused:
            ledger.query("livestock", "readings", {"animal": COW, "n": bad})
        assert refused.value.code == "E_ARGS" and words in refused.value.message, (
            bad, refused.value.message)
    assert len(ledger.query("livestock", "readings", {"animal": COW, "n": "007"})) == 0
    for subject, ident in (("device", "zz"), ("device", "AB" * 32), ("animal", "12"),
                           ("site", "-x")):
        with pytest.raises(ContractError):
            ledger.query("livestock", "readings", {subject: ident})
    assert ledger.query("livestock", "readings", {"device": "ab" * 32}) == []
