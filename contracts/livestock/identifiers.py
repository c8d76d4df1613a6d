"""Identifier formats of Korea's livestock traceability system (축산물이력제), and dates.

Everything here is pure string arithmetic: no clock, no state. A format mismatch raises
:class:`~contracts.sdk.ContractError` with the identifier's own stable code, so a client can
tell a mistyped ear tag (``E_INVALID_ANIMAL_ID``) from a mistyped bundle number
(``E_INVALID_LOT``).

* Cattle individual number (개체식별번호): 12 digits, ``002`` + 8-digit serial + 1 check
  digit. The official check-digit algorithm is not public, so the rule is *pluggable*: the
  contract names a rule from :data:`CHECK_DIGIT_RULES` (default ``"any"``, which accepts any
  digit) and the regulator may switch rules with ``update_rules``. Every node ships the same
  registry, so the choice stays deterministic.
* Pig farm number (농장식별번호): 6 digits.
* Pig traceability number (이력번호): 12 digits, issued at slaughter per farm shipment batch.
* Bundle (lot) number (묶음번호): 15 characters, ``L`` + product code (0 beef, 1 pork,
  2 chicken, 5 duck) + ``YYMMDD`` + 4-digit business code + 3-digit daily serial.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

from contracts.sdk import ContractError

E_INVALID_ANIMAL_ID: Final = "E_INVALID_ANIMAL_ID"
E_INVALID_FARM_NO: Final = "E_INVALID_FARM_NO"
E_INVALID_TRACE_NO: Final = "E_INVALID_TRACE_NO"
E_INVALID_LOT: Final = "E_INVALID_LOT"
E_INVALID_CARCASS: Final = "E_INVALID_CARCASS"
E_INVALID_DATE: Final = "E_INVALID_DATE"

CATTLE_ID = re.compile(r"002[0-9]{9}")
FARM_NO = re.compile(r"[0-9]{6}")
TRACE_NO = re.compile(r"[0-9]{12}")
LOT_NO = re.compile(r"L([0125])([0-9]{6})([0-9]{4})([0-9]{3})")
CARCASS_NO = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
ORG_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SITE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

DAY_MS: Final = 86_400_000
KST_OFFSET_MS: Final = 9 * 3_600_000
"""Korea Standard Time is UTC+9 all year (no daylight saving)."""

PRODUCT_CODES: Final[Mapping[str, str]] = {"0": "beef", "1": "pork", "2": "chicken", "5": "duck"}
SPECIES_PRODUCT: Final[Mapping[str, str]] = {"cattle": "0", "pig": "1"}
"""Which lot product code a carcass of each species may be cut into."""


# --- check-digit rules ----------------------------------------------------------------------

CheckDigitRule = Callable[[str], bool]
"""``rule(number)`` for a 12-digit cattle number that already matches the format."""


def is_any_check_digit(number: str) -> bool:
    """The default: the official algorithm is not public, so any digit is accepted."""
    return number[-1].isdigit()


def is_mod10_check_digit(number: str) -> bool:
    """Example rule (NOT the official one): digit = (10 - sum of first 11 digits % 10) % 10."""
    return (10 - sum(int(c) for c in number[:11]) % 10) % 10 == int(number[11])


def is_luhn_check_digit(number: str) -> bool:
    """Example rule (NOT the official one): the Luhn algorithm over all 12 digits."""
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


CHECK_DIGIT_RULES: Final[Mapping[str, CheckDigitRule]] = {
    "any": is_any_check_digit,
    "mod10": is_mod10_check_digit,
    "luhn": is_luhn_check_digit,
}
"""Registry of rules, by the name stored in contract configuration. Add the official rule
here (one line) once it is published; every node must ship the same registry."""

DEFAULT_CHECK_DIGIT_RULE: Final = "any"


# --- validation -------------------------------------------------------------------------------


def validate_cattle_id(number: str, rule: str = DEFAULT_CHECK_DIGIT_RULE) -> str:
    """Check a cattle individual number's format and check digit; returns it."""
    if not CATTLE_ID.fullmatch(number):
        raise ContractError(E_INVALID_ANIMAL_ID,
                            f"cattle number must be 002 + 9 digits: {number!r}")
    if not CHECK_DIGIT_RULES[rule](number):
        raise ContractError(E_INVALID_ANIMAL_ID, f"check digit of {number!r} fails rule {rule!r}")
    return number


def validate_farm_no(number: str) -> str:
    if not FARM_NO.fullmatch(number):
        raise ContractError(E_INVALID_FARM_NO, f"farm number must be 6 digits: {number!r}")
    return number


def validate_trace_no(number: str) -> str:
    if not TRACE_NO.fullmatch(number):
        raise ContractError(E_INVALID_TRACE_NO, f"pig trace number must be 12 digits: {number!r}")
    return number


def validate_carcass_no(number: str) -> str:
    if not CARCASS_NO.fullmatch(number):
        raise ContractError(E_INVALID_CARCASS, f"invalid carcass number: {number!r}")
    return number


@dataclass(frozen=True)
class LotNumber:
    """A parsed bundle number."""

    number: str
    product: str  # "0" beef, "1" pork, "2" chicken, "5" duck
    day: int  # days since 1970-01-01 of the YYMMDD part
    business_code: str
    serial: str


def parse_lot(number: str) -> LotNumber:
    """Parse and validate a 15-character bundle number (including its calendar date)."""
    match = LOT_NO.fullmatch(number)
    if match is None:
        raise ContractError(
            E_INVALID_LOT, f"lot number must be L + product + YYMMDD + 4 + 3 digits: {number!r}"
        )
    product, yymmdd, business, serial = match.groups()
    day = compute_day(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    if day is None:
        raise ContractError(E_INVALID_LOT, f"lot number {number!r} has an invalid date")
    return LotNumber(number, product, day, business, serial)


def is_lot_number(number: str) -> bool:
    return LOT_NO.fullmatch(number) is not None


# --- dates ------------------------------------------------------------------------------------

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def compute_day(year: int, month: int, day: int) -> int | None:
    """Days since 1970-01-01 of a calendar date, or None if the date does not exist."""
    try:
        return date(year, month, day).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None


def parse_date(text: str) -> int:
    """``YYYY-MM-DD`` -> days since 1970-01-01 (raises ``E_INVALID_DATE``)."""
    match = ISO_DATE.fullmatch(text)
    day = None if match is None else compute_day(*(int(part) for part in match.groups()))
    if day is None:
        raise ContractError(E_INVALID_DATE, f"not a valid YYYY-MM-DD date: {text!r}")
    return day


def compute_kst_day(time_ms: int) -> int:
    """The calendar day (days since 1970-01-01) in Korea at block time ``time_ms``."""
    return (time_ms + KST_OFFSET_MS) // DAY_MS


def format_day(day: int) -> str:
    """Days since 1970-01-01 -> ``YYYY-MM-DD``."""
    return date.fromordinal(day + _EPOCH_ORDINAL).isoformat()


def format_yymmdd(day: int) -> str:
    return date.fromordinal(day + _EPOCH_ORDINAL).strftime("%y%m%d")


def format_kst_iso(time_ms: int) -> str:
    """Block time as ISO 8601 in KST with offset, millisecond precision (for EPCIS)."""
    local_ms = time_ms + KST_OFFSET_MS
    day, rest = divmod(local_ms, DAY_MS)
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{format_day(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}+09:00"
