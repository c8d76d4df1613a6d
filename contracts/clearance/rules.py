"""Korean import-clearance facts, formats, thresholds and rates: the one table to update.

Everything the law or the customs service may change lives here and nowhere else; the
rest of the package only reads these names. Amounts are integers: USD values in cents,
KRW in won, rates in basis points (1 bp = 0.01 %).
"""

from __future__ import annotations

import functools
import re
from typing import Final

from contracts.sdk import ContractError

# --- stable error codes of this contract (the shared ones live in contracts.sdk) ---------
E_INVALID_HS: Final = "E_INVALID_HS"
E_INVALID_CURRENCY: Final = "E_INVALID_CURRENCY"
E_INVALID_PCCC: Final = "E_INVALID_PCCC"
E_INVALID_BUYER_REF: Final = "E_INVALID_BUYER_REF"
E_INVALID_SEALED: Final = "E_INVALID_SEALED"
E_INVALID_KIND: Final = "E_INVALID_KIND"
E_INVALID_COUNTRY: Final = "E_INVALID_COUNTRY"
E_INVALID_WAYBILL: Final = "E_INVALID_WAYBILL"
E_NOT_OWNER: Final = "E_NOT_OWNER"
E_NO_RATE: Final = "E_NO_RATE"
E_NO_DUTY: Final = "E_NO_DUTY"
E_DUTY_UNPAID: Final = "E_DUTY_UNPAID"
E_AMOUNT: Final = "E_AMOUNT"
E_GROUP_LIMIT: Final = "E_GROUP_LIMIT"

# --- roles (organisation roles held in membership) ---------------------------------------
SELLER: Final = "seller"
COURIER: Final = "courier"
CUSTOMS: Final = "customs"
BUYER: Final = "buyer"

# --- identifier formats -------------------------------------------------------------------
PCCC: Final = re.compile(r"P[0-9]{12}")  # 개인통관고유부호: P + 12 digits
BUYER_REF: Final = re.compile(r"[0-9a-f]{64}")  # hex SHA-256(salt || PCCC)
ORDER_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ORG_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
WAYBILL: Final = re.compile(r"[A-Z0-9]{8,20}")  # house air waybill number
COUNTRY: Final = re.compile(r"[A-Z]{2}")  # ISO 3166-1 alpha-2
PORT: Final = re.compile(r"[A-Z]{2}[A-Z0-9]{3}")  # UN/LOCODE, e.g. KRICN
BASE64: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# The same language as ``BASE64`` when the length is also a multiple of 4 (see
# ``is_base64``): one character-class loop instead of a repeated group, twice as fast.
BASE64_CHARS: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
HS_SEPARATORS: Final = re.compile(r"[.\- ]")
HS_DIGITS: Final = re.compile(r"[0-9]{6,10}")  # HSK is 10 digits; 6-10 accepted, normalised
HS_PREFIX_DIGITS: Final = re.compile(r"[0-9]{2,10}")  # restricted-list entries may be chapters

# Sealed buyer data: a libsodium sealed box adds 48 bytes (ephemeral key + MAC) to a payload
# that holds at least the PCCC (13 characters) plus a name and an address.
SEALED_MIN_BYTES: Final = 48 + 24
SEALED_MAX_BYTES: Final = 2048

# --- money ----------------------------------------------------------------------------------
# ISO 4217 currencies accepted in orders, with their minor-unit exponent.
CURRENCY_EXPONENT: Final[dict[str, int]] = {
    "KRW": 0,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "CNY": 2,
    "HKD": 2,
    "AUD": 2,
    "CAD": 2,
    "SGD": 2,
    "TWD": 2,
    "CHF": 2,
}
# Rates are set by customs (``set_rates``) per currency, as integers:
#   usd_micro  = US dollars x 10^6 for one major unit (used for the USD thresholds);
#   krw_centi  = Korean won x 100 for one major unit (the weekly taxation rate, 과세환율).
USD_MICRO_PER_USD: Final = 1_000_000
KRW_CENTI_PER_KRW: Final = 100
MAX_RATE: Final = 10**12

# --- list clearance (목록통관) and the duty-free small-value threshold ------------------------
THRESHOLD_USD_CENTS: Final = 150_00  # general
THRESHOLD_US_USD_CENTS: Final = 200_00  # shipped from the US (KORUS FTA), except food kinds
US: Final = "US"

# Item kinds an order line declares. ``general`` is everything not listed below.
GENERAL: Final = "general"
FOOD: Final = "food"
HEALTH_FUNCTIONAL_FOOD: Final = "health_functional_food"
MEDICINE: Final = "medicine"
MEDICAL_DEVICE: Final = "medical_device"
HERBAL_MEDICINE: Final = "herbal_medicine"  # incl. ginseng and red ginseng
CITES: Final = "cites"  # CITES wildlife products
QUARANTINE: Final = "quarantine"  # goods under animal/plant quarantine
FUNCTIONAL_COSMETIC: Final = "functional_cosmetic"
KINDS: Final = frozenset({
    GENERAL, FOOD, HEALTH_FUNCTIONAL_FOOD, MEDICINE, MEDICAL_DEVICE, HERBAL_MEDICINE, CITES,
    QUARANTINE, FUNCTIONAL_COSMETIC,
})
# Kinds that never go through list clearance (general import declaration instead).
EXCLUDED_FROM_LIST: Final = frozenset({
    MEDICINE, MEDICAL_DEVICE, HERBAL_MEDICINE, CITES, QUARANTINE, HEALTH_FUNCTIONAL_FOOD,
    FUNCTIONAL_COSMETIC,
})
# Kinds that keep the USD 150 threshold even when shipped from the US.
FOOD_KINDS: Final = frozenset({FOOD, HEALTH_FUNCTIONAL_FOOD})
# Words in an item description that reveal an excluded kind whatever kind was declared
# (matched case-insensitively as substrings); such an item is screened as that kind.
KIND_KEYWORDS: Final[dict[str, str]] = {
    "ginseng": HERBAL_MEDICINE,
    "인삼": HERBAL_MEDICINE,
    "홍삼": HERBAL_MEDICINE,
}
# Personal-use quantity caps per order (units, e.g. bottles).
QUANTITY_CAPS: Final[dict[str, int]] = {HEALTH_FUNCTIONAL_FOOD: 6}

# --- duty and VAT ---------------------------------------------------------------------------
BASIS_POINTS: Final = 10_000
DUTY_GENERAL_BP: Final = 800  # 8 %
DUTY_BP_BY_CHAPTER: Final[dict[int, int]] = {
    61: 1300,  # knitted apparel
    62: 1300,  # woven apparel
    63: 1300,  # other made-up textile articles
    64: 1300,  # footwear
}
VAT_BP: Final = 1000  # 10 %

# --- calendar -------------------------------------------------------------------------------
KST_OFFSET_MS: Final = 9 * 3_600_000  # Korea Standard Time is UTC+9, no daylight saving
DAY_MS: Final = 86_400_000

# --- size limits of arguments ---------------------------------------------------------------
MAX_ITEMS: Final = 50
MAX_QUANTITY: Final = 10_000
MAX_AMOUNT: Final = 10**15
MAX_TEXT: Final = 256
MAX_RESTRICTED_PER_CALL: Final = 200
MAX_WEIGHT_G: Final = 1_000_000
MAX_GROUP_ORDERS: Final = 1_000
"""Orders of one buyer from one seller on one KST day (a combined-taxation group). The
group is one state value rewritten with each new order (O(size) per order); far beyond any
real shopping day, and it keeps that value far below the 4 MiB encoding limit."""


def normalise_hs(code: str, *, pattern: re.Pattern[str] = HS_DIGITS) -> str:
    """Strip ``.``, ``-`` and spaces from an HS code and check it is 6-10 digits."""
    digits = HS_SEPARATORS.sub("", code)
    if not pattern.fullmatch(digits):
        raise ContractError(E_INVALID_HS, f"invalid HS code {code!r}")
    return digits


def is_base64(text: str) -> bool:
    """True when ``BASE64`` fully matches ``text`` (standard alphabet, canonical padding).

    Equivalent because a length that is a multiple of 4 leaves exactly the data lengths the
    grouped pattern allows before ``=``/``==``; a hot path of every order's admission.
    """
    return len(text) % 4 == 0 and BASE64_CHARS.fullmatch(text) is not None


def get_base64_size(text: str) -> int:
    """The decoded size in bytes of ``text``, which must satisfy :func:`is_base64`.

    Such text always decodes; its size follows from its length and padding, so the bytes
    need not be decoded just to be counted.
    """
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return len(text) // 4 * 3 - padding


def get_duty_bp(hs: str) -> int:
    """The duty rate (basis points) of a normalised HS code, by its chapter."""
    return DUTY_BP_BY_CHAPTER.get(int(hs[:2]), DUTY_GENERAL_BP)


def get_threshold_usd_cents(origin: str, kinds: frozenset[str]) -> int:
    """The list-clearance / duty-free threshold for goods of ``kinds`` shipped from ``origin``."""
    if origin == US and not (kinds & FOOD_KINDS):
        return THRESHOLD_US_USD_CENTS
    return THRESHOLD_USD_CENTS


def compute_kst_date(time_ms: int) -> str:
    """The calendar date (``YYYY-MM-DD``) in Korea of a block time."""
    return _civil_date((time_ms + KST_OFFSET_MS) // DAY_MS)


@functools.lru_cache(maxsize=1024)
def _civil_date(days: int) -> str:
    """``YYYY-MM-DD`` of ``days`` since 1970-01-01: civil-from-days (Howard Hinnant).

    Pure integer arithmetic, memoised (bounded, keyed by the exact day, returning an
    immutable ``str``): every order of a block falls on one or two dates.
    """
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return f"{year:04d}-{month:02d}-{day:02d}"
