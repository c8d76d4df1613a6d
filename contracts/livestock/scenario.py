"""The Definition-of-done demo as data: five organisations take calves from birth to sale.

:func:`demo_steps` is pure: given how to name keys (``pub``), how a device signs (``sign``)
and the chain time before the first step (``t0_ms``), it returns the ordered steps. The
contract tests and ``jangbu demo livestock`` (cli/demo.py) run the same list, so the
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
"""The numbers of run 0; run ``r`` uses :func:`demo_numbers` ``(r)``."""

MAX_RUN: Final = 99_999
STORY_DAYS: Final = 4
"""Days between the treatment and the slaughter the story needs (withdrawal 3 days + 1)."""

BIRTH_OFFSETS: Final[Mapping[str, int]] = {"calf-1": -4, "calf-2": -1, "calf-3": -9}
"""Birth dates relative to the day the births are reported (calf 3: late, > 5 days)."""


@dataclass(frozen=True)
class DemoNumbers:
    """Every number one run of the demo creates: distinct runs never collide."""

    calves: tuple[str, str, str]
    dam: str
    carcasses: tuple[str, str]
    lot_serials: tuple[int, ...]  # lots 1-5, then the refused over-weight lot
    package: str


def demo_numbers(run: int) -> DemoNumbers:
    """The animal, carcass, lot-serial and package numbers of run ``run`` (0..MAX_RUN).

    Run 0 is the original demo (calves ``002 10000001..3``, carcasses ``C0001``/``C0002``,
    lot serials 1-5 and 9). Lot serials are daily per business code (3 digits), so only
    runs that differ modulo 100 may share a day; animals and carcasses never repeat.
    """
    if not 0 <= run <= MAX_RUN:
        raise ValueError(f"run must be in 0..{MAX_RUN}")
    base = run * 10
    calves = tuple(with_check_digit(f"{10_000_000 + base + n:08d}") for n in (1, 2, 3))
    serial0 = (run % 100) * 10
    return DemoNumbers(
        calves=(calves[0], calves[1], calves[2]),
        dam=with_check_digit(f"{9_000_000 + base + 1:08d}"),
        carcasses=(f"C{base + 1:04d}", f"C{base + 2:04d}"),
        lot_serials=tuple(serial0 + n for n in (1, 2, 3, 4, 5, 9)),
        package=f"P{base + 1:06d}",
    )


def demo_steps(pub: Callable[[str], str], sign: Callable[[str, Mapping[str, Any]], str],
               t0_ms: int, *, run: int = 0, seq_base: int = 0,
               dated: bool = False) -> list[Step]:
    """The ordered demo; ``pub(name)`` -> public key hex, ``sign(device, body)`` -> sig hex.

    ``run`` picks the numbers (:func:`demo_numbers`), so the demo can run again on the same
    ledger; ``seq_base`` is added to every device reading's sequence number (above the
    devices' last accepted ``seq``). The result is a pure function of its arguments.

    Two ways of telling time:

    * ``dated=False``: block time carries the story; steps advance it by hours and by the
      four days of the withdrawal period (an in-process ledger, where time is simulated).
    * ``dated=True``: every rule-relevant date is an argument: the treatment ``date`` is
      ``t0``'s KST day, the refused slaughter is dated that day too, the accepted slaughter
      and the lots :data:`STORY_DAYS` days later, births relative to that last day. Block
      time only advances a second per step. Run it on a live chain (block time = wall
      clock) with ``t0_ms = now - STORY_DAYS days``: same steps, same expected codes.
    """
    numbers = demo_numbers(run)
    calf_1, calf_2, calf_3 = numbers.calves
    carcass_1, carcass_2 = numbers.carcasses
    steps: list[Step] = []
    now = t0_ms
    story_day = identifiers.compute_kst_day(t0_ms)

    def call(signer: str, action: str, args: Mapping[str, Any], *, advance_ms: int = 1000,
             expect: str = "OK", note: str = "", contract: str = "livestock") -> None:
        nonlocal now
        if dated:
            advance_ms = 1000
        now += advance_ms
        steps.append(Step("apply", signer, contract, action, args, advance_ms, expect, note))

    def query(name: str, args: Mapping[str, Any], note: str, **checks: Any) -> None:
        steps.append(Step("query", None, "livestock", name, args, 0, "OK", note, checks))

    def today(offset_days: int = 0) -> int:
        """The KST day of the next block (dated: the story's last day), shifted."""
        if dated:
            return story_day + STORY_DAYS + offset_days
        return identifiers.compute_kst_day(now + 1000) + offset_days

    def lot(index: int) -> str:
        serial = numbers.lot_serials[index]
        return f"L0{identifiers.format_yymmdd(today())}4521{serial:03d}"

    def reading(device: str, seq: int, animal: str, kind: str, value: Any) -> dict[str, Any]:
        body = {"device": pub(device), "animal": animal, "kind": kind, "value": value,
                "seq": seq_base + seq}
        return {**body, "sig": sign(device, body)}

    for device, org in DEMO_DEVICES.items():
        call(org, "add_member", {"pubkey": pub(device), "kind": "device", "label": device},
             contract="membership", note=f"{org} registers device {device}")

    def born(calf: str) -> str:
        return identifiers.format_day(today(BIRTH_OFFSETS[calf]))

    calf = {"species": "cattle", "breed": "Hanwoo", "farm_no": "110001"}
    call("farm-a", "register_birth", {**calf, "id": calf_1, "sex": "castrated",
                                      "birth_date": born("calf-1")})
    call("farm-a", "register_birth", {**calf, "id": calf_2, "sex": "female",
                                      "dam": numbers.dam, "birth_date": born("calf-2")})
    call("farm-a", "register_birth", {**calf, "id": calf_3, "sex": "female",
                                      "birth_date": born("calf-3")},
         note="reported 9 days after birth: accepted, flagged LATE_REPORT")
    for number in (calf_1, calf_2):
        call("farm-a", "transfer_out", {"animal": number, "to": "farm-b"})
        call("farm-b", "transfer_in", {"animal": number}, advance_ms=3_600_000)
    treatment = {"animal": calf_1, "drug": "penicillin", "withdrawal_days": 3}
    if dated:
        treatment["date"] = identifiers.format_day(story_day)
    call("farm-b", "treat", treatment)
    call("collar-1", "record_readings", {"readings": [
        reading("collar-1", 1, calf_1, "temperature", 386),
        reading("collar-1", 2, calf_2, "temperature", 401),
    ]}, note="the collar signs and submits itself; 40.1 °C raises a fever alert")
    call("farm-b", "record_readings", {"readings": [
        reading("scale-1", 1, calf_1, "weight", 452_000),
        reading("scale-1", 2, calf_2, "weight", 431_000),
        reading("collar-1", 3, calf_1, "location",
                {"lat_e6": 36_350_000, "lon_e6": 127_380_000}),
    ]}, note="farm-b's gateway submits a batch for two devices")

    inspection_ok = {"passed": True, "residue": "negative", "bse": "negative"}
    slaughter = {"species": "cattle", "grade": "1+", "inspection": inspection_ok}
    refused_day = story_day if dated else today()
    call("plant", "slaughter", {**slaughter, "animal": calf_1, "carcass": carcass_1,
                                "date": identifiers.format_day(refused_day),
                                "weight_g": 280_000},
         expect="E_WITHDRAWAL", note="refused: penicillin withdrawal still running")
    call("plant", "arrival", {"animal": calf_1, "from": "farm-b"}, advance_ms=4 * DAY_MS)
    call("plant", "slaughter", {**slaughter, "animal": calf_1, "carcass": carcass_1,
                                "date": identifiers.format_day(today()), "weight_g": 280_000})
    call("plant", "slaughter", {**slaughter, "animal": calf_2, "carcass": carcass_2,
                                "grade": "1++", "date": identifiers.format_day(today()),
                                "weight_g": 260_000})
    lots = [lot(n) for n in range(5)]
    call("meatco", "cut", {"carcass": carcass_1, "lots": [{"lot": lots[0], "weight_g": 120_000},
                                                         {"lot": lots[1], "weight_g": 90_000}]})
    call("meatco", "cut", {"carcass": carcass_2, "lots": [{"lot": lots[2], "weight_g": 110_000},
                                                         {"lot": lots[3], "weight_g": 80_000}]})
    call("meatco", "cut", {"carcass": carcass_2, "lots": [{"lot": lot(5), "weight_g": 100_000}]},
         expect="E_WEIGHT", note="refused: 290 kg of lots from a 260 kg carcass")
    call("meatco", "bundle", {"inputs": [lots[1], lots[3]], "lot": lots[4],
                              "weight_g": 170_000})
    for number in (lots[0], lots[2], lots[4]):
        call("meatco", "receive", {"lot": number})
    call("meatco", "sell", {"lot": lots[4], "weight_g": 600, "package": numbers.package})
    query("trace", {"number": lots[4]}, f"consumer scans package {numbers.package}",
          origins=[calf_1, calf_2])
    call("mafra", "recall", {"number": calf_1, "reason": "residue found in retained sample"})
    query("recall_scope", {"number": calf_1}, "everything downstream of the recalled calf",
          lots=sorted([lots[0], lots[1], lots[4]]), shops=["meatco"],
          parties=["farm-b", "meatco", "plant"])
    call("meatco", "sell", {"lot": lots[4], "weight_g": 600}, expect="E_RECALLED",
         note="a recalled lot can no longer be sold")
    call("meatco", "sell", {"lot": lots[2], "weight_g": 500},
         note="a lot of the other calf only is unaffected")
    return steps
