"""The words and numbers both reports and their charts share: the aging and roll-rate buckets,
what became of a contact, and how money, stages and dates are written for people."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from babel.numbers import format_decimal

# The aging buckets of marts.fct_account_aging, oldest last, with the labels charts show.
AGING_BUCKETS: tuple[tuple[str, str], ...] = (
    ("current", "Current"),
    ("dpd_1_30", "1-30"),
    ("dpd_31_60", "31-60"),
    ("dpd_61_90", "61-90"),
    ("dpd_91_120", "91-120"),
    ("dpd_121_150", "121-150"),
    ("dpd_151_180", "151-180"),
    ("dpd_181_plus", "181+"),
)

# What became of a contact, by its ledger status (marts.fct_contact_log.status).
CONTACT_OUTCOME = {
    "sent": "went_out",
    "maybe_sent": "went_out",  # no clear answer from the provider; never re-sent blindly
    "planned": "planned",  # a dry run plans and sends nothing
    "sending": "failed",  # still claimed after the step ended: treated as not sent
    "failed": "failed",
    "suppressed": "held_back",
    "deferred": "held_back",
    "cancelled": "held_back",
}
OUTCOME_ORDER = ("went_out", "planned", "held_back", "failed")
OUTCOME_LABELS = {
    "went_out": "went out",
    "planned": "planned",
    "held_back": "held back",
    "failed": "failed",
    "other": "other",
}

# delinquency buckets of marts.fct_account_stage_history, as roll rates move between them
ROLL_BUCKETS = (
    "current",
    "1_30",
    "31_60",
    "61_90",
    "91_120",
    "121_150",
    "151_180",
    "181_plus",
    "no_balance",
    "settled",
)


def amount_text(amount: object) -> str:
    """A money string for people: "1234567.5" -> "1,234,567.50"."""
    return format_decimal(Decimal(str(amount)), format="#,##0.00", locale="en_US")


def stage_label(stage: str) -> str:
    """A stage name for people: "reminder_1" -> "reminder 1"."""
    return stage.replace("_", " ")


def short_date(iso: str) -> str:
    """An ISO date as a short axis or column label: "2026-11-08" -> "Nov 8"."""
    day = dt.date.fromisoformat(iso)
    return f"{day:%b} {day.day}"
