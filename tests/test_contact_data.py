"""What a notice asks for: past-due items less their disputes; items not due yet are listed
for information only. And the dates it gives never contradict each other."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from flows.lib.contact_data import amounts_asked
from flows.lib.templates import OpenItem, render_email
from tests.test_templates import a_context, an_item

pytestmark = pytest.mark.unit
D = Decimal


def item(open_amount: str, days_past_due: int, disputed: str = "0.00") -> OpenItem:
    return OpenItem(
        reference="I",
        kind="invoice",
        issue_date=None,
        due_date=dt.date(2026, 3, 1),
        original_amount=D(open_amount),
        open_amount=D(open_amount),
        disputed_amount=D(disputed),
        days_past_due=days_past_due,
    )


@pytest.mark.parametrize(
    ("items", "collectible", "expected"),
    [
        pytest.param((item("100.00", 20), item("50.00", -5)), "150.00", ("100.00", "50.00"),
                     id="one past due, one not yet due"),
        pytest.param((item("100.00", 20, disputed="30.00"),), "70.00", ("70.00", "0.00"),
                     id="the disputed part is not asked for"),
        pytest.param((item("100.00", 20), item("50.00", 40)), "120.00", ("120.00", "0.00"),
                     id="an account-level dispute caps what is asked"),
        pytest.param((item("80.00", -3),), "80.00", ("80.00", "0.00"),
                     id="nothing past due yet: a courtesy reminder asks for what falls due"),
        pytest.param((item("100.00", 0),), "100.00", ("100.00", "0.00"),
                     id="due today is not past due"),
    ],
)  # fmt: skip
def test_amounts_asked(items: tuple, collectible: str, expected: tuple) -> None:
    assert amounts_asked(items, D(collectible)) == (D(expected[0]), D(expected[1]))


def test_a_reminder_asks_only_for_the_past_due_part() -> None:
    base = a_context("reminder_2")
    upcoming = an_item(
        "INV-2026-0150",
        due_date=base.as_of + dt.timedelta(days=9),
        original_amount=D("60.00"),
        open_amount=D("60.00"),
        days_past_due=-9,
    )
    items = (*base.items, upcoming)
    collectible = base.collectible_amount + D("60.00")
    due, later = amounts_asked(items, collectible)
    context = a_context(
        "reminder_2",
        items=items,
        total_open=base.total_open + D("60.00"),
        collectible_amount=collectible,
        amount_due=due,
        not_yet_due_amount=later,
    )
    text = render_email(context).text
    assert later == D("60.00")
    assert f"Not yet due (for your information): ${later:,.2f}" in text
    assert f"Amount to pay: ${due:,.2f}" in text
    assert f"${collectible:,.2f}" not in render_email(context).subject
