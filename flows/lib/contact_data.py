"""Gather what each planned contact says: one query from the ledger to typed template contexts.

The amounts and open items are the warehouse's for the run's as-of date (fct_account_aging and
fct_invoice_aging, just built); the customer's name, address, email and phone are the newest
the billing system sent, with accepted skip-trace corrections (ops.customer_contacts,
flows/lib/contact_details.py), so a correction loaded since planning is used.
A template never computes: everything it shows is decided here or in the marts.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from dataclasses import dataclass
from decimal import Decimal

import duckdb

from flows.lib.business_days import business_day_after
from flows.lib.config import Settings
from flows.lib.ledger import ChannelOutcome, transition
from flows.lib.offers import offers_for_actions
from flows.lib.plan_servicing import REMINDER_STAGE, installments_due, with_installment
from flows.lib.templates import (
    CompanyIdentity,
    ContactContext,
    OpenItem,
    ValidationNotice,
    babel_locale,
    template_language,
)

VALIDATION_PERIOD_DAYS = 30  # Reg F 1006.34(b)(5): 30 days after assumed receipt
ASSUMED_RECEIPT_BUSINESS_DAYS = 5  # receipt assumed 5 days after, less weekends and holidays


class MartsNotForDate(RuntimeError):
    """The marts were built for another date than the contacts are for."""


def require_build_for(
    connection: duckdb.DuckDBPyConnection, as_of: dt.date, *, would: str, nothing: str
) -> None:
    """Refuse marts whose latest build (ops.builds) is for another date than `as_of`, or that
    a build which did not finish may have left mixing two dates: the message says what reading
    them `would` do and that `nothing` was done."""
    from flows.lib.gates import latest_build

    refuse_unfinished_build(connection, would=would, nothing=nothing)
    built_for = latest_build(connection)
    if built_for == as_of:
        return
    found = (
        f"the marts hold {built_for}, not {as_of}" if built_for else "the marts were never built"
    )
    raise MartsNotForDate(
        f"{found}: {would}. Build the date first (`recoup run --as-of {as_of}`); {nothing}."
    )


def refuse_unfinished_build(
    connection: duckdb.DuckDBPyConnection, *, would: str, nothing: str
) -> None:
    """Refuse marts that a failed or stopped build may have left mixing two dates (see
    gates.unfinished_build), whatever date they are read for."""
    from flows.lib.gates import unfinished_build

    unfinished = unfinished_build(connection)
    if unfinished is not None:
        raise MartsNotForDate(
            f"{unfinished.warning()}; {would}. {unfinished.recovery()}; {nothing}."
        )


@dataclass(frozen=True)
class Recipient:
    """Who the contact goes to, and what decides when it may go."""

    customer_id: str
    customer_type: str
    name: str
    email: str | None
    phone: str | None
    timezone: str | None
    country: str | None
    state: str | None
    postal_code: str | None
    mailing_address: tuple[str, ...]


@dataclass(frozen=True)
class PlannedContact:
    action_key: str
    account_id: str
    channel: str
    stage: str
    template: str
    as_of_date: dt.date
    recipient: Recipient
    context: ContactContext


def company_identity(settings: Settings) -> CompanyIdentity:
    company = settings.company
    return CompanyIdentity(
        name=company.name,
        address_lines=tuple(
            line
            for line in (
                company.address_line1,
                company.address_line2,
                f"{company.city}, {company.state} {company.postal_code}",
                company.country,
            )
            if line
        ),
        phone=company.phone,
        email=company.email,
        website=company.website,
    )


def load_planned_contacts(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    keys: list[str],
    as_of: dt.date,
    *,
    sent_on: dt.date | None = None,
) -> tuple[list[PlannedContact], list[str]]:
    """The contexts of these planned contacts, and the keys with nothing owed any more (no
    aging row with a collectible amount on `as_of`: the send step cancels them).

    In third-party mode the initial communication about an account (no earlier contact went
    out, or may have) carries the validation notice of Reg F 1006.34, provided on `sent_on`
    (default: `as_of`); its pay-by date is never before the end of the validation period, so
    the request to pay does not overshadow the right to dispute (1006.38(b))."""
    if not keys:
        return [], []
    refuse_unfinished_build(
        connection,
        would=f"the contacts of {as_of} could show the amounts and open items of two days",
        nothing="nothing was sent",
    )
    # fct_invoice_aging holds the latest build's date only: a contact of another date would
    # show that day's open items and amounts
    held = [
        day
        for (day,) in connection.execute(
            "select distinct as_of_date from marts.fct_invoice_aging"
        ).fetchall()
    ]
    if held and held != [as_of]:
        raise MartsNotForDate(
            f"the marts hold {', '.join(map(str, held))}, not {as_of}: the contacts of {as_of} "
            "would show another day's amounts and open items. Build the date first "
            f"(`recoup run --as-of {as_of}`); nothing was sent."
        )
    sent_on = sent_on or as_of
    third_party = settings.collector_type == "third_party"
    period_end = validation_end(connection, sent_on) if third_party else None
    rows = connection.execute(
        """
        with

        planned as (
            select * from ops.action_ledger
            where action_key in (select unnest($keys::varchar[]))
        ),

        aging as (
            select * from marts.fct_account_aging
            where as_of_date = $as_of
        ),

        stages as (
            select * from marts.fct_account_stage_history
            where as_of_date = $as_of
        ),

        itemization as (
            select * from marts.fct_account_itemization
            where as_of_date = $as_of
        ),

        earlier_contacts as (
            select distinct account_id from ops.action_ledger
            where
                status in ('sending', 'sent', 'maybe_sent')
                and channel in ('email', 'letter')  -- a queued call is not a communication
                and action_key not in (select unnest($keys::varchar[]))
        ),

        items as (
            select
                account_id,
                list(
                    struct_pack(
                        reference := coalesce(invoice_number, item_id),
                        kind := item_type,
                        issue_date := issue_date,
                        due_date := due_date,
                        original_amount := original_amount,
                        open_amount := open_amount,
                        disputed_amount := disputed_amount,
                        days_past_due := days_past_due
                    )
                    order by due_date, item_id
                ) as items
            from marts.fct_invoice_aging
            where as_of_date = $as_of and open_amount > 0
            group by account_id
        )

        select
            planned.action_key,
            planned.account_id,
            planned.channel,
            planned.stage,
            planned.template,
            planned.as_of_date,
            planned.currency,
            customers.customer_id,
            customers.customer_type,
            customers.full_name,
            customers.email,
            customers.phone,
            customers.timezone,
            customers.country,
            customers.state,
            customers.postal_code,
            customers.address_line1,
            customers.address_line2,
            customers.city,
            customers.language,
            aging.total_open,
            aging.disputed_amount,
            aging.collectible_amount,
            aging.oldest_due_date,
            aging.max_days_past_due,
            stages.next_action_due_date,
            coalesce(
                list_contains(string_split(stages.contact_restrictions, ', '), 'servicemember'),
                false
            ) as is_servicemember,
            coalesce(items.items, []) as items,
            earlier_contacts.account_id is null as is_initial,
            itemization.itemization_date,
            itemization.amount_on_itemization_date,
            itemization.interest_since,
            itemization.fees_since,
            itemization.payments_since,
            itemization.credits_since,
            itemization.current_amount
        from planned
        inner join ops.customer_contacts as customers
            on planned.customer_id = customers.customer_id
        left join aging
            on planned.account_id = aging.account_id
        left join stages
            on planned.account_id = stages.account_id
        left join items
            on planned.account_id = items.account_id
        left join earlier_contacts
            on planned.account_id = earlier_contacts.account_id
        left join itemization
            on planned.account_id = itemization.account_id
        order by planned.action_key
        """,
        {"keys": keys, "as_of": as_of},
    ).fetchall()
    company = company_identity(settings)
    offers = offers_for_actions(connection, settings, as_of, [row[0] for row in rows])
    # installment reminders: the installment each is about (none: no longer due)
    installments = installments_due(
        connection, [row[0] for row in rows if row[3] == REMINDER_STAGE], as_of
    )
    contacts, nothing_owed = [], []
    for row in rows:
        (
            key, account_id, channel, stage, template, planned_as_of, currency,
            customer_id, customer_type, full_name, email, phone, timezone, country, state,
            postal_code, line1, line2, city, language,
            total_open, disputed, collectible, oldest_due, max_dpd, next_step, servicemember,
            items, is_initial, *itemized,
        ) = row  # fmt: skip
        if (
            collectible is None
            or collectible <= 0
            or (stage == REMINDER_STAGE and key not in installments)
        ):
            nothing_owed.append(key)
            continue
        chosen = template_language(language, settings.contact.default_language)
        mailing = tuple(
            line
            for line in (
                line1,
                line2,
                _city_line(city, state, postal_code),
                country if country != settings.company.country else None,
            )
            if line
        )
        recipient = Recipient(
            customer_id=customer_id,
            customer_type=customer_type,
            name=full_name,
            email=email,
            phone=phone,
            timezone=timezone,
            country=country,
            state=state,
            postal_code=postal_code,
            mailing_address=mailing,
        )
        open_items = tuple(_open_item(item) for item in items)
        amount_due, not_yet_due = amounts_asked(open_items, collectible)
        pay_by = _pay_by(oldest_due, as_of, settings.contact.pay_within_days)
        validation = None
        if third_party and is_initial and itemized[0] is not None and period_end:
            validation = _validation_notice(settings, itemized, period_end)
            pay_by = max(pay_by, period_end)
        context = ContactContext(
            template=template,
            language=chosen,
            locale=babel_locale(chosen, country),
            as_of=as_of,
            company=company,
            customer_name=full_name,
            mailing_address=mailing,
            account_id=account_id,
            currency=currency,
            total_open=total_open,
            disputed_amount=disputed,
            collectible_amount=collectible,
            amount_due=amount_due,
            not_yet_due_amount=not_yet_due,
            items=open_items,
            oldest_due_date=oldest_due,
            max_days_past_due=max_dpd,
            pay_by_date=pay_by,
            # the next step never comes before the date the notice asks payment by
            next_step_date=max(next_step, pay_by) if next_step else None,
            pay_link=settings.contact.pay_link.format(
                account_id=urllib.parse.quote(account_id, safe="")
            ),
            opt_out_link=settings.contact.opt_out_link.format(outbox_id=key),
            third_party=third_party,
            validation=validation,
            servicemember=bool(servicemember),
            offer=offers.get(key),
        )
        if key in installments:
            context = with_installment(context, installments[key])
        contacts.append(
            PlannedContact(
                key, account_id, channel, stage, template, planned_as_of, recipient, context
            )
        )
    return contacts, nothing_owed


def _city_line(city: str | None, state: str | None, postal_code: str | None) -> str:
    """ "Austin, TX 78701"; the parts the address has."""
    return " ".join(part for part in (f"{city}," if city else None, state, postal_code) if part)


def _open_item(item: dict) -> OpenItem:
    return OpenItem(
        reference=item["reference"],
        kind=item["kind"],
        issue_date=item["issue_date"],
        due_date=item["due_date"],
        original_amount=Decimal(item["original_amount"]),
        open_amount=Decimal(item["open_amount"]),
        disputed_amount=Decimal(item["disputed_amount"] or 0),
        days_past_due=int(item["days_past_due"]),
    )


def amounts_asked(items: tuple[OpenItem, ...], collectible: Decimal) -> tuple[Decimal, Decimal]:
    """What a notice asks for, and what it lists only for information.

    Past-due items, less their disputed parts, are asked for (never more than the account's
    collectible amount, which also nets disputes of the whole account). Items not due yet are
    listed but not asked for. Before anything is past due (a courtesy reminder), the notice
    asks for what falls due next: the whole collectible amount."""
    past_due = sum(
        (item.open_amount - item.disputed_amount for item in items if item.days_past_due > 0),
        Decimal("0.00"),
    )
    if past_due <= 0:
        return collectible, Decimal("0.00")
    asked = min(past_due, collectible)
    return asked, collectible - asked


def validation_end(connection: duckdb.DuckDBPyConnection, sent_on: dt.date) -> dt.date | None:
    """The last day of the validation period for a notice provided on `sent_on`: receipt is
    assumed five days later not counting Saturdays, Sundays and legal public holidays
    (marts.dim_calendar), and the period ends 30 days after that."""
    receipt = business_day_after(connection, sent_on, ASSUMED_RECEIPT_BUSINESS_DAYS)
    return receipt + dt.timedelta(days=VALIDATION_PERIOD_DAYS) if receipt else None


def due_contacts(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    keys: list[str],
    as_of: dt.date,
    *,
    run_id: str,
    outcome: ChannelOutcome,
    sent_on: dt.date | None = None,
) -> list[PlannedContact]:
    """The contexts of these planned contacts; those with nothing owed any more on `as_of`
    are cancelled (`nothing_owed`) and counted in `outcome`."""
    contacts, nothing_owed = load_planned_contacts(
        connection, settings, keys, as_of, sent_on=sent_on
    )
    cancelled = transition(
        connection, nothing_owed, "cancelled", run_id=run_id, reason="nothing_owed",
        only_from=("planned",),
    )  # fmt: skip
    outcome.add("cancelled", "nothing_owed", cancelled)
    return contacts


def _validation_notice(
    settings: Settings, itemized: list, validation_end: dt.date
) -> ValidationNotice:
    date, on_date, interest, fees, payments, credits, current = itemized
    return ValidationNotice(
        creditor_name=settings.company.creditor_name or settings.company.name,
        itemization_date=date,
        amount_on_itemization_date=on_date,
        interest_since=interest,
        fees_since=fees,
        payments_since=payments,
        credits_since=credits,
        current_amount=current,
        validation_end_date=validation_end,
    )


def _pay_by(oldest_due: dt.date | None, as_of: dt.date, pay_within_days: int) -> dt.date:
    """A reminder before the due date asks for payment by the due date; later ones within
    `pay_within_days` of the run."""
    if oldest_due is not None and oldest_due >= as_of:
        return oldest_due
    return as_of + dt.timedelta(days=pay_within_days)
