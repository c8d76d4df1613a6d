"""The Definition-of-done demo as data: five organisations take calves from birth to sale.

:func:`demo_steps` is pure: given how to name keys (``pub``), how a device signs (``sign``)
and the chain time before the first step (``t0_ms``), it returns the ordered steps. The
contract tests and the future ``jangbu demo livestock`` command run the same list, so the
demo cannot drift from what is tested. Each step says which key signs, what it calls, how far
block time advances before it, and the receipt code it must get.

Story: farm A registers three calves (one reported late), sells two to farm B, which treats
one and whose collar and scale devices sign readings (one fever alert). The slaughterhouse is
refused while the withdrawal period runs, slaughters both calves four days later; the
packer-and-shop cuts the carcasses into lots, bundles two lots of different animals, receives
and sells; a consumer traces the package; the regulator recalls the treated calf and the
recall reaches every lot and shop downstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from . import identifiers

DAY_MS: Final = identifiers.DAY_MS

DEMO_ORGS: Final[tuple[Mapping[str, Any], ...]] = (
    {"id": "farm-a", "roles": ["farm"], "business_ids": ["110001"]},
    {"id": "farm-b", "roles": ["farm"], "business_ids": ["220002"]},
    {"id": "plant", "roles": ["slaughterhouse"], "business_ids": ["0301"]},
    {"id": "meatco", "roles": ["packer", "shop"], "business_ids": ["4521"]},
    {"id": "mafra", "roles": ["regulator"], "business_ids": []},
)
"""The five organisations (one node each): two farms, a slaughterhouse, packer+shop, regulator."""

DEMO_DEVICES: Final[Mapping[str, str]] = {"collar-1": "farm-b", "scale-1": "farm-b"}
"""Device key name -> organisation that registers it."""


@dataclass(frozen=True)
class Step:
    """One call (``kind="apply"``) or query (``kind="query"``) of the demo."""

    kind: str
    signer: str | None  # key name: an organisation's admin key is named after the org
    contract: str
    action: str  # action name, or query name
    args: Mapping[str, Any]
    advance_ms: int = 1000  # block time moves this far before an apply step
    expect: str = "OK"  # receipt code an apply step must get
    note: str = ""
    checks: Mapping[str, Any] = field(default_factory=dict)  # facts the demo asserts


def with_check_digit(serial8: str) -> str:
    """A cattle number ``002`` + serial + the (example, mod10) check digit."""
    body = "002" + serial8
    return body + str((10 - sum(int(c) for c in body) % 10) % 10)


CALF_1: Final = with_check_digit("10000001")
CALF_2: Final = with_check_digit("10000002")
CALF_3: Final = with_check_digit("10000003")
DAM: Final = with_check_digit("09000001")


def demo_steps(pub: Callable[[str], str], sign: Callable[[str, Mapping[str, Any]], str],
               t0_ms: int) -> list[Step]:
    """The ordered demo; ``pub(name)`` -> public key hex, ``sign(device, body)`` -> sig hex."""
    steps: list[Step] = []
    now = t0_ms

    def call(signer: str, action: str, args: Mapping[str, Any], *, advance_ms: int = 1000,
             expect: str = "OK", note: str = "", contract: str = "livestock") -> None:
        nonlocal now
        now += advance_ms
        steps.append(Step("apply", signer, contract, action, args, advance_ms, expect, note))

    def query(name: str, args: Mapping[str, Any], note: str, **checks: Any) -> None:
        steps.append(Step("query", None, "livestock", name, args, 0, "OK", note, checks))

    def today(offset_days: int = 0) -> int:
        return identifiers.compute_kst_day(now + 1000) + offset_days

    def lot(serial: int) -> str:
        return f"L0{identifiers.format_yymmdd(today())}4521{serial:03d}"

    def reading(device: str, seq: int, animal: str, kind: str, value: Any) -> dict[str, Any]:
        body = {"device": pub(device), "animal": animal, "kind": kind, "value": value,
                "seq": seq}
        return {**body, "sig": sign(device, body)}

    for device, org in DEMO_DEVICES.items():
        call(org, "add_member", {"pubkey": pub(device), "kind": "device", "label": device},
             contract="membership", note=f"{org} registers device {device}")

    calf = {"species": "cattle", "breed": "Hanwoo", "farm_no": "110001"}
    call("farm-a", "register_birth", {**calf, "id": CALF_1, "sex": "castrated",
                                      "birth_date": identifiers.format_day(today(-2))})
    call("farm-a", "register_birth", {**calf, "id": CALF_2, "sex": "female", "dam": DAM,
                                      "birth_date": identifiers.format_day(today(-1))})
    call("farm-a", "register_birth", {**calf, "id": CALF_3, "sex": "female",
                                      "birth_date": identifiers.format_day(today(-9))},
         note="reported 9 days after birth: accepted, flagged LATE_REPORT")
    for number in (CALF_1, CALF_2):
        call("farm-a", "transfer_out", {"animal": number, "to": "farm-b"})
        call("farm-b", "transfer_in", {"animal": number}, advance_ms=3_600_000)
    call("farm-b", "treat", {"animal": CALF_1, "drug": "penicillin", "withdrawal_days": 3})
    call("collar-1", "record_readings", {"readings": [
        reading("collar-1", 1, CALF_1, "temperature", 386),
        reading("collar-1", 2, CALF_2, "temperature", 401),
    ]}, note="the collar signs and submits itself; 40.1 °C raises a fever alert")
    call("farm-b", "record_readings", {"readings": [
        reading("scale-1", 1, CALF_1, "weight", 452_000),
        reading("scale-1", 2, CALF_2, "weight", 431_000),
        reading("collar-1", 3, CALF_1, "location",
                {"lat_e6": 36_350_000, "lon_e6": 127_380_000}),
    ]}, note="farm-b's gateway submits a batch for two devices")

    inspection_ok = {"passed": True, "residue": "negative", "bse": "negative"}
    slaughter = {"species": "cattle", "grade": "1+", "inspection": inspection_ok}
    call("plant", "slaughter", {**slaughter, "animal": CALF_1, "carcass": "C0001",
                                "date": identifiers.format_day(today()), "weight_g": 280_000},
         expect="E_WITHDRAWAL", note="refused: penicillin withdrawal still running")
    call("plant", "arrival", {"animal": CALF_1, "from": "farm-b"}, advance_ms=4 * DAY_MS)
    call("plant", "slaughter", {**slaughter, "animal": CALF_1, "carcass": "C0001",
                                "date": identifiers.format_day(today()), "weight_g": 280_000})
    call("plant", "slaughter", {**slaughter, "animal": CALF_2, "carcass": "C0002",
                                "grade": "1++", "date": identifiers.format_day(today()),
                                "weight_g": 260_000})
    lots = [lot(n) for n in range(1, 6)]
    call("meatco", "cut", {"carcass": "C0001", "lots": [{"lot": lots[0], "weight_g": 120_000},
                                                       {"lot": lots[1], "weight_g": 90_000}]})
    call("meatco", "cut", {"carcass": "C0002", "lots": [{"lot": lots[2], "weight_g": 110_000},
                                                       {"lot": lots[3], "weight_g": 80_000}]})
    call("meatco", "cut", {"carcass": "C0002", "lots": [{"lot": lot(9), "weight_g": 100_000}]},
         expect="E_WEIGHT", note="refused: 290 kg of lots from a 260 kg carcass")
    call("meatco", "bundle", {"inputs": [lots[1], lots[3]], "lot": lots[4],
                              "weight_g": 170_000})
    for number in (lots[0], lots[2], lots[4]):
        call("meatco", "receive", {"lot": number})
    call("meatco", "sell", {"lot": lots[4], "weight_g": 600, "package": "P000001"})
    query("trace", {"number": lots[4]}, "consumer scans package P000001",
          origins=[CALF_1, CALF_2])
    call("mafra", "recall", {"number": CALF_1, "reason": "residue found in retained sample"})
    query("recall_scope", {"number": CALF_1}, "everything downstream of the recalled calf",
          lots=sorted([lots[0], lots[1], lots[4]]), shops=["meatco"],
          parties=["farm-b", "meatco", "plant"])
    call("meatco", "sell", {"lot": lots[4], "weight_g": 600}, expect="E_RECALLED",
         note="a recalled lot can no longer be sold")
    call("meatco", "sell", {"lot": lots[2], "weight_g": 500},
         note="a lot of the other calf only is unaffected")
    return steps
