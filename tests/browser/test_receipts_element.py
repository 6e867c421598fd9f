"""``<wattfare-connect receipts>`` in a real Chromium: the user's own receipts, each reply's exact cost."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from .conftest import Demo, Visit
from .test_connect_button import budget_label, connect_through_popup, open_home

pytestmark = pytest.mark.browser


def test_the_receipts_button_lists_each_reply_with_what_it_cost(visit: Visit, demo: Demo) -> None:
    page = open_home(visit, demo)
    page.evaluate("document.querySelector('wattfare-connect').setAttribute('receipts', '')")
    connect_through_popup(page, "10")
    receipts_button = page.get_by_role("button", name="Receipts")
    expect(receipts_button).to_be_visible()
    for _ in range(2):
        before = budget_label(page).inner_text()
        page.get_by_role("button", name="Send").click()
        expect(budget_label(page)).not_to_have_text(before)

    receipts_button.click()
    rows = page.locator("wattfare-connect [part=receipts] tbody tr")
    expect(rows).to_have_count(2)
    expect(receipts_button).to_have_attribute("aria-expanded", "true")
    costs = [Decimal(row.locator("td").nth(3).inner_text().removeprefix("$")) for row in rows.all()]
    spent = Decimal(str(demo.server_status(visit.user)["spentUsd"]))
    assert all(cost > 0 for cost in costs)
    assert sum(costs) == spent  # exact: the decimal strings add up to what was charged
    receipts_button.click()
    expect(page.locator("wattfare-connect [part=receipts]")).to_be_hidden()
    assert visit.console.errors == []
