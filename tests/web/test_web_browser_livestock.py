"""Meat traceability in a real headless Chromium against a real 5-node livestock devnet.

The session fixture ``livestock_net`` starts the demo's five organisations as node
processes and runs ``contracts.livestock.scenario.demo_steps`` up to the recall: the consumer
scans the package (a bundle of two Hanwoo calves' lots). The recall test then runs the rest
of the demo (the regulator recalls one calf) and reloads the same address.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_web_browser_clearance import open_page, unexpected

from node.client import Client

from web_support import run_async

pytestmark = pytest.mark.e2e


def test_trace_bundle_shows_breed_farm_grade_and_packer(
        browser: Any, livestock_net: Any, screenshots: Any) -> None:
    net = livestock_net.net
    bundle = livestock_net.bundle
    context, page, errors = open_page(browser, f"{net.api('meatco')}/trace/{bundle}")
    try:
        page.wait_for_selector("#origins .origin")
        assert page.inner_text("#recall-status") == "No recall for this product."
        assert page.locator("#recall-banner").count() == 0
        product = page.inner_text("#product")
        assert bundle in product and "Beef" in product and "Meat packer and shop" in product
        origins = page.locator("#origins .origin")
        assert origins.count() == 2
        text = page.inner_text("#origins")
        assert text.count("Hanwoo (Korean native)") == 2
        assert "Hanwoo farm A (farm-a)" in text and "Slaughterhouse (plant)" in text
        assert "1++" in text and "1+" in text and "Passed" in text
        assert "Castrated male" in text and "Female" in text
        moves = page.inner_text("#movements")
        assert "Born" in moves and "Hanwoo farm A (farm-a) → Hanwoo farm B (farm-b)" in moves
        assert "Arrived at the slaughterhouse" in moves
        assert unexpected(errors) == []
        screenshots(page, "trace-en")
    finally:
        context.close()


def test_trace_cattle_number_in_korean(browser: Any, livestock_net: Any,
                                       screenshots: Any) -> None:
    from contracts.livestock.scenario import CALF_2

    net = livestock_net.net
    context, page, errors = open_page(browser, f"{net.api('farm-a')}/trace/{CALF_2}",
                                      locale="ko-KR")
    try:
        page.wait_for_selector("#origins .origin")
        text = page.inner_text("main")
        for word in ("한우", "암", "1++등급", "합격", "도축장", "개체식별번호", "출생", "전입"):
            assert word in text, word
        assert unexpected(errors) == []
        screenshots(page, "trace-cattle-ko")
    finally:
        context.close()


def test_trace_shows_recall_banner_after_the_recall(
        browser: Any, livestock_net: Any, screenshots: Any) -> None:
    livestock_net.recall()
    net = livestock_net.net
    bundle = livestock_net.bundle
    context, page, errors = open_page(browser, f"{net.api('mafra')}/trace/{bundle}")
    try:
        page.wait_for_selector("#recall-banner")
        banner = page.inner_text("#recall-banner")
        assert "RECALLED" in banner and "residue found in retained sample" in banner
        assert page.locator("#origins .tag.bad").count() == 1  # one of the two calves
        screenshots(page, "trace-recalled-en")
        page.click("#lang-toggle")
        page.wait_for_function("document.documentElement.lang === 'ko'")
        assert "회수 대상" in page.inner_text("#recall-banner")
        screenshots(page, "trace-recalled-ko")
        assert unexpected(errors) == []
    finally:
        context.close()


def test_trace_unknown_number_says_so(browser: Any, livestock_net: Any) -> None:
    net = livestock_net.net
    context, page, errors = open_page(browser, f"{net.api('plant')}/trace/002999999990")
    try:
        page.wait_for_selector("#error")
        assert "No animal or package" in page.inner_text("#error")
        assert unexpected(errors) == []
    finally:
        context.close()


def test_trace_pairs_farm_numbers_with_their_farm(browser: Any, livestock_net: Any) -> None:
    """Review: a calf born at farm A and moved to farm B showed "farm A · farm no. <B's
    number>" (the animal's farm number is its current farm's)."""
    from contracts.livestock.scenario import DEMO_ORGS

    farm_b_no = next(o["business_ids"][0] for o in DEMO_ORGS if o["id"] == "farm-b")
    net = livestock_net.net
    context, page, errors = open_page(browser, f"{net.api('meatco')}/trace/{livestock_net.bundle}")
    try:
        page.wait_for_selector("#origins .origin")
        text = page.inner_text("#origins")
        assert "Hanwoo farm A (farm-a)" in text and farm_b_no not in text, text
        assert unexpected(errors) == []
    finally:
        context.close()


def test_trace_dates_a_vaccination_by_its_day(browser: Any, livestock_net: Any) -> None:
    """Review: a treatment showed the time it was recorded instead of its reported day, and
    a vaccination read "Treated"."""
    from contracts.livestock import identifiers
    from contracts.livestock.scenario import demo_numbers

    calf_3 = demo_numbers(0).calves[2]  # stays at farm A, alive
    yesterday = identifiers.format_day(
        identifiers.compute_kst_day(int(time.time() * 1000)) - 1)

    async def vaccinate() -> None:
        async with Client(livestock_net.net.api("farm-a"),
                          chain_id=livestock_net.chain_id) as client:
            receipt = await client.call("livestock", "treat", {
                "animal": calf_3, "drug": "FMD vaccine", "withdrawal_days": 0,
                "kind": "vaccination", "date": yesterday}, key=livestock_net.keys["farm-a"])
            assert receipt["code"] == "OK", receipt

    run_async(vaccinate())
    context, page, errors = open_page(browser,
                                      f"{livestock_net.net.api('farm-a')}/trace/{calf_3}")
    try:
        page.wait_for_selector("#movements")
        rows = [row for row in page.inner_text("#movements").splitlines() if "FMD" in row]
        assert len(rows) == 1 and yesterday in rows[0] and "Vaccinated" in rows[0], rows
        assert unexpected(errors) == []
    finally:
        context.close()


def test_trace_of_a_carcass_names_its_number_so(browser: Any, livestock_net: Any) -> None:
    """Review: a carcass number was labelled "Cattle number"."""
    from contracts.livestock.scenario import demo_numbers

    carcass = demo_numbers(0).carcasses[0]
    context, page, errors = open_page(
        browser, f"{livestock_net.net.api('plant')}/trace/{carcass}")
    try:
        page.wait_for_selector("#product")
        assert f"Carcass number\n{carcass}" in page.inner_text("#product") or \
            f"Carcass number {carcass}" in page.inner_text("#product"), \
            page.inner_text("#product")
        assert unexpected(errors) == []
    finally:
        context.close()
