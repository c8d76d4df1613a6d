"""livestock: dated reports on a live chain, where block time is the wall clock.

A treatment may carry its own ``date`` (KST): its withdrawal period then runs from the end
of that day (or from block time, if earlier). A slaughter reported with an earlier ``date``
is checked against withdrawal periods at the start of that day, so a late report never
slips through a withdrawal it would have broken.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_livestock import COW, birth, day, events, setup_ledger, slaughter, violations

from contracts.livestock import rules
from contracts.livestock.identifiers import compute_kst_day

from contract_harness import DAY_MS


def treat(ledger: Any, days_ago: int | None, withdrawal_days: int = 3, **extra: Any) -> Any:
    args: dict[str, Any] = {"animal": COW, "drug": "penicillin",
                            "withdrawal_days": withdrawal_days, **extra}
    if days_ago is not None:
        args["date"] = day(ledger, -days_ago)
    return ledger.apply("farm-a", "livestock", "treat", args)


def test_treatment_dated_today_counts_withdrawal_from_block_time():
    ledger = setup_ledger()
    assert birth(ledger, days_ago=10).ok
    receipt = treat(ledger, 0)
    attrs = events(receipt, "treat")[0].attrs
    assert attrs["withdrawal_until_ms"] == ledger.time_ms + 3 * DAY_MS
    assert attrs["date"] == day(ledger, 0) and violations(receipt) == []


def test_treatment_dated_earlier_counts_withdrawal_from_the_end_of_that_day():
    ledger = setup_ledger()
    assert birth(ledger, days_ago=10).ok
    receipt = treat(ledger, 4)
    end_of_day = rules.compute_kst_day_start_ms(compute_kst_day(ledger.time_ms) - 3)
    assert events(receipt, "treat")[0].attrs["withdrawal_until_ms"] == end_of_day + 3 * DAY_MS
    assert slaughter(ledger).ok  # treated 4 days ago, 3 days' withdrawal: over since midnight


def test_treatment_dated_three_days_ago_still_blocks_slaughter_today():
    ledger = setup_ledger()
    assert birth(ledger, days_ago=10).ok
    assert treat(ledger, 3).ok  # may have been given late that day: runs until tonight
    assert slaughter(ledger).code == "E_WITHDRAWAL"


def test_late_slaughter_report_is_checked_at_the_start_of_its_date():
    ledger = setup_ledger()
    assert birth(ledger, days_ago=10).ok
    assert treat(ledger, 8, withdrawal_days=5).ok  # withdrawal over at the start of day -2
    assert slaughter(ledger, date=day(ledger, -3)).code == "E_WITHDRAWAL"
    assert slaughter(ledger, date=day(ledger, -2)).ok


def test_undated_treatment_blocks_a_slaughter_dated_before_it_was_reported():
    ledger = setup_ledger()
    assert birth(ledger, days_ago=10).ok
    assert treat(ledger, None).ok
    ledger.time_ms += 4 * DAY_MS
    assert slaughter(ledger, date=day(ledger, -3)).code == "E_WITHDRAWAL"


def test_treatment_reported_more_than_five_days_late_is_accepted_but_flagged():
    ledger = setup_ledger()
    assert birth(ledger, days_ago=10).ok
    receipt = treat(ledger, 6)
    assert receipt.ok and violations(receipt) == ["LATE_REPORT"]
    assert events(receipt, "violation")[0].attrs["days_late"] == 6


def test_herd_treatment_accepts_a_date():
    ledger = setup_ledger()
    receipt = ledger.apply("farm-a", "livestock", "treat", {
        "herd": "110001", "drug": "amoxicillin", "withdrawal_days": 2, "date": day(ledger, -1)})
    assert receipt.ok and events(receipt, "treat")[0].attrs["date"] == day(ledger, -1)


@pytest.mark.parametrize("date", ["2026-13-01", "2026-02-30", "20260101", "", "yesterday"])
def test_invalid_treatment_date_format_is_refused(date):
    ledger = setup_ledger()
    assert birth(ledger).ok
    assert ledger.apply("farm-a", "livestock", "treat", {
        "animal": COW, "drug": "x", "withdrawal_days": 1, "date": date}).code == "E_INVALID_DATE"


def test_invalid_treatment_date_type_is_refused():
    ledger = setup_ledger()
    assert birth(ledger).ok
    assert ledger.apply("farm-a", "livestock", "treat", {
        "animal": COW, "drug": "x", "withdrawal_days": 1, "date": 20260101}).code == "E_ARGS"


def test_invalid_treatment_in_the_future_is_refused():
    ledger = setup_ledger()
    assert birth(ledger).ok
    assert treat(ledger, -1).code == "E_INVALID_DATE"
    assert ledger.apply("farm-a", "livestock", "treat", {
        "herd": "110001", "drug": "x", "withdrawal_days": 1,
        "date": day(ledger, 1)}).code == "E_INVALID_DATE"


def test_invalid_treatment_before_birth_is_refused():
    ledger = setup_ledger()
    assert birth(ledger, days_ago=2).ok
    assert treat(ledger, 3).code == "E_INVALID_DATE"
    assert treat(ledger, 2).ok  # the day of birth itself is fine
