"""Currency conversion and duty/VAT assessment: integer maths with stated rounding.

Rounding (every step floors, i.e. truncates toward zero, amounts being non-negative):

* USD value for thresholds: ``floor(amount_minor * usd_micro / (10^exponent * 10^4))`` cents;
* customs value (tax base) per order line: ``floor(amount_minor * krw_centi /
  (10^exponent * 100))`` won; the order's customs value is the sum of its lines;
* duty per line: ``floor(line_value_krw * duty_bp / 10^4)`` won; the order's duty is the sum;
* VAT: ``floor((customs_value_krw + duty_krw) * 1000 / 10^4)`` won, on the order total.

Over the threshold the whole value is taxed; at or under it, nothing is (small-value
duty exemption).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts.clearance.rules import (
    BASIS_POINTS,
    CURRENCY_EXPONENT,
    KRW_CENTI_PER_KRW,
    VAT_BP,
    get_duty_bp,
)

USD_CENTS_PER_MICRO = 10_000  # 1 cent = 10^4 micro-dollars


@dataclass(frozen=True)
class Line:
    """One order line as the assessment sees it: HS code and amount in minor units."""

    hs: str
    amount: int


def compute_usd_cents(amount_minor: int, currency: str, usd_micro: int) -> int:
    """Convert an amount in ``currency`` minor units to whole US cents (floor)."""
    scale = int(10 ** CURRENCY_EXPONENT[currency]) * USD_CENTS_PER_MICRO
    return amount_minor * usd_micro // scale


def compute_krw(amount_minor: int, currency: str, krw_centi: int) -> int:
    """Convert an amount in ``currency`` minor units to whole won (floor)."""
    scale = int(10 ** CURRENCY_EXPONENT[currency]) * KRW_CENTI_PER_KRW
    return amount_minor * krw_centi // scale


def compute_assessment(
    lines: Sequence[Line], currency: str, krw_centi: int, *, taxable: bool
) -> dict[str, Any]:
    """Customs value, duty and VAT in won for an order's lines at the taxation rate.

    ``taxable`` is False under the small-value threshold: the value is still stated, the
    duty and VAT are zero.
    """
    assessed_lines: list[dict[str, Any]] = []
    customs_value = 0
    duty = 0
    for line in lines:
        value_krw = compute_krw(line.amount, currency, krw_centi)
        rate_bp = get_duty_bp(line.hs) if taxable else 0
        line_duty = value_krw * rate_bp // BASIS_POINTS
        customs_value += value_krw
        duty += line_duty
        assessed_lines.append(
            {"hs": line.hs, "value_krw": value_krw, "duty_bp": rate_bp, "duty_krw": line_duty}
        )
    vat = (customs_value + duty) * VAT_BP // BASIS_POINTS if taxable else 0
    return {
        "taxable": taxable,
        "currency": currency,
        "krw_centi": krw_centi,
        "lines": assessed_lines,
        "customs_value_krw": customs_value,
        "duty_krw": duty,
        "vat_bp": VAT_BP if taxable else 0,
        "vat_krw": vat,
        "total_krw": duty + vat,
    }
