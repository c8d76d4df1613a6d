"""Thresholds and ranges the livestock contract checks, in one place.

Units are integers only (no floats on the ledger): weights in grams, temperatures in tenths
of a degree Celsius, coordinates in micro-degrees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .identifiers import DAY_MS, KST_OFFSET_MS

LATE_REPORT_DAYS: Final = 5
"""A birth (or slaughter) reported more than this many days after it happened is late."""

MAX_WITHDRAWAL_DAYS: Final = 730
MAX_READINGS_PER_BATCH: Final = 256
MAX_BATCH_FLAGS: Final = 64
"""Pig batches a late herd treatment flags one by one; beyond, one violation says there
are more (a receipt must fit one message)."""
MAX_LOTS_PER_CUT: Final = 64
MAX_BUNDLE_INPUTS: Final = 64
MAX_READINGS_QUERY: Final = 200
MAX_WEIGHT_G: Final = 5_000_000_000
"""Upper bound of any weight argument (5,000 t): bigger values are typing errors."""

SPECIES: Final = ("cattle", "pig")
SEXES: Final = ("female", "male", "castrated")
BREED_MAX_LEN: Final = 64

BEEF_GRADES: Final = ("1++", "1+", "1", "2", "3")
PORK_GRADES: Final = ("1+", "1", "2", "out")
GRADES: Final[Mapping[str, tuple[str, ...]]] = {"cattle": BEEF_GRADES, "pig": PORK_GRADES}

TEST_RESULTS: Final = ("negative", "positive", "not_tested")
"""Residue (antibiotics etc.) and BSE test outcomes at inspection."""

READING_KINDS: Final = ("temperature", "weight", "location")

# Alert ranges (inclusive) per (subject, kind). Values outside raise an ``alert`` event; the
# reading is still recorded (it is a fact that the device measured it).
TEMPERATURE_RANGE: Final[Mapping[str, tuple[int, int]]] = {
    "animal": (375, 395),  # body temperature 37.5-39.5 °C; above is fever, below hypothermia
    "site": (-50, 300),  # barn, truck or cold room: -5.0 to 30.0 °C
}
WEIGHT_RANGE_G: Final[Mapping[str, tuple[int, int]]] = {
    "animal": (10_000, 1_500_000),  # live weight 10 kg - 1.5 t
    "site": (0, 50_000_000),  # a scale at a site (a pen, a truck)
}
KOREA_LAT_E6: Final = (33_000_000, 38_700_000)
KOREA_LON_E6: Final = (124_500_000, 131_000_000)
"""Location readings outside South Korea's bounding box (micro-degrees) raise an alert."""


def compute_alert(subject: str, kind: str, value: object) -> str | None:
    """The alert reason for an out-of-range reading, or None when it is in range.

    ``subject`` is ``"animal"`` or ``"site"``; ``value`` has been type-checked already
    (an int for temperature/weight, ``{"lat_e6", "lon_e6"}`` for location).
    """
    if kind == "temperature":
        low, high = TEMPERATURE_RANGE[subject]
        assert isinstance(value, int)
        if value < low:
            return "TEMPERATURE_LOW"
        if value > high:
            return "TEMPERATURE_HIGH"
        return None
    if kind == "weight":
        low, high = WEIGHT_RANGE_G[subject]
        assert isinstance(value, int)
        return None if low <= value <= high else "WEIGHT_OUT_OF_RANGE"
    assert isinstance(value, dict)
    lat, lon = value["lat_e6"], value["lon_e6"]
    inside = KOREA_LAT_E6[0] <= lat <= KOREA_LAT_E6[1] and KOREA_LON_E6[0] <= lon <= KOREA_LON_E6[1]
    return None if inside else "LOCATION_OUTSIDE_KOREA"


def is_late(event_day: int, report_day: int) -> bool:
    """True when an event on ``event_day`` reported on ``report_day`` is a late report."""
    return report_day - event_day > LATE_REPORT_DAYS


def is_inspection_passed(passed: bool, residue: str, bse: str) -> bool:
    """A carcass is fit for sale only if the inspector passed it and no test was positive."""
    return passed and residue != "positive" and bse != "positive"


def compute_kst_day_start_ms(day: int) -> int:
    """Block time (ms) at which the KST calendar day ``day`` (days since 1970-01-01) begins."""
    return day * DAY_MS - KST_OFFSET_MS


def compute_withdrawal_until_ms(time_ms: int, treatment_day: int, withdrawal_days: int) -> int:
    """When the withdrawal period of a treatment reported at block time ``time_ms`` ends.

    The treatment happened at the latest at the end of its KST day ``treatment_day`` and not
    after the report: the period runs ``withdrawal_days`` x 24 h from the later of the two
    bounds that is still possible, ``min(time_ms, end of treatment_day)``. A treatment dated
    today therefore counts from block time; a back-dated one from the end of its day.
    """
    treated_ms = min(time_ms, compute_kst_day_start_ms(treatment_day + 1))
    return treated_ms + withdrawal_days * DAY_MS


def compute_slaughter_moment_ms(time_ms: int, slaughter_day: int, today: int) -> int:
    """The moment checked against withdrawal periods for a slaughter dated ``slaughter_day``.

    Dated today: block time. Dated earlier (a late report): the start of that KST day, the
    earliest moment the date allows, so a late report never gains the benefit of the doubt.
    """
    return time_ms if slaughter_day >= today else compute_kst_day_start_ms(slaughter_day)
