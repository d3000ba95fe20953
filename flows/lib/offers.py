"""Plan and settlement offers: which accounts may pay in installments or settle for less, on
what terms, made set-based once a day and kept while they stand (docs/negotiation.md).

An account is offered something on a run's date when, in marts.fct_account_stage_history for
that date, it is in a stage its segment's policy lists (`negotiation.offers.<segment>.stages`;
a segment not listed follows `default`), is not held and has a collectible balance. Days past
due are `days_past_oldest_collectible_due`: the age of the oldest collectible item, the measure
that put the account into its stage (a disputed item does not age an offer). Then, per kind:

- **installment_plan**, one offer per allowed length: plan.min_balance <= collectible <=
  plan.max_balance, plan.min_days_past_due <= days past due <= plan.max_days_past_due, and no
  plan or promise broken in the last `no_broken_plan_months` months (marts.fct_payment_plans:
  broken_on on or after the as-of date less that many months, and not after the plan was
  cancelled). The installment is the balance divided by the length, rounded up to the cent;
  the last installment takes the remainder, so the installments add up to the balance. A
  length whose installment is under `min_installment` is not offered.
- **settlement**: collectible >= settlement.min_balance and a tier met (the highest
  min_days_past_due at or under the days past due). The amount is collectible x percent / 100,
  rounded half up to the cent. It needs approval when it forgives more than `approval_above`.

Every offer of a day expires on the same date: the date plus `settlement.valid_days` (30 days
when the segment makes no settlement offers).

**Offers stand.** An account's offers are those of the latest day it was made any (its *offer
set*). While that set has not expired and was made on the collectible balance the account has
today, it stands: no new offers are made and the set is what reminders and the phone queue
show. A payment (another balance) or the expiry makes a new set that day. A run for a date D
judges standing with the sets made before D only, so a rerun of D, or a run for a past D,
computes what a run on D would have; offer ids hash (account, date, kind, length), so a rerun
inserts nothing new, and rows of D that the rerun no longer makes (the facts changed) are
replaced. A dry run counts and writes nothing; a scoped run judges only its scope's accounts.
A policy change applies to the offers made from then on; standing sets keep their terms.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb

from flows.lib.config import OfferPolicy, Settings
from flows.lib.planner import ALL_ACCOUNTS, ContactScope
from flows.lib.templates import OfferTerms, PlanOption, SettlementOption

OFFERS_TABLE = "ops.offers"
DEFAULT_VALID_DAYS = 30  # the expiry of plan offers in a segment without settlement offers
# temp tables of one make_offers call, dropped when it ends
_WORKING_TABLES = ("_offer_policy", "_settlement_tiers", "_offer_accounts", "_offers_new")
_NO_OFFERS = "_no_offers"  # a dry run's empty stand-in for a missing ops.offers

OFFERS_DDL = """
create table if not exists ops.offers (
    offer_id VARCHAR PRIMARY KEY,
    account_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    segment VARCHAR,
    currency VARCHAR NOT NULL,
    offer_date DATE NOT NULL,
    kind VARCHAR NOT NULL CHECK (kind in ('installment_plan', 'settlement')),
    plan_length INTEGER,
    installment_amount DECIMAL(18,2),
    last_installment_amount DECIMAL(18,2),
    offer_amount DECIMAL(18,2) NOT NULL,
    balance_at_offer DECIMAL(18,2) NOT NULL,
    percent DECIMAL(5,2),
    expires_on DATE NOT NULL,
    stage VARCHAR NOT NULL,
    requires_approval BOOLEAN NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
)
"""

COMMENT = (
    "One row per plan or settlement offer made (its id hashes account, date, kind and plan "
    "length): the terms, the collectible balance they were made on and when they expire. "
    "An account's offers in force are those of its latest offer date, while unexpired and on "
    "the same collectible balance."
)

# what an offer says: a rerun of the day keeps a row whose terms are the same
_TERMS = (
    "installment_amount", "last_installment_amount", "offer_amount", "balance_at_offer",
    "percent", "expires_on", "requires_approval",
)  # fmt: skip

OFFER_ID_SQL = (
    "left(sha256(account_id || '|' || strftime($as_of, '%Y-%m-%d') || '|' || kind || '|' "
    "|| coalesce(cast(plan_length as varchar), '')), 32)"
)


def ensure_offer_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """`ops.offers` (idempotent)."""
    connection.execute("create schema if not exists ops")
    connection.execute(OFFERS_DDL)
    comment = COMMENT.replace("'", "''")
    connection.execute(f"comment on table {OFFERS_TABLE} is '{comment}'")


def offer_id(account_id: str, offer_date: dt.date, kind: str, plan_length: int | None) -> str:
    """The id of one offer; OFFER_ID_SQL agrees."""
    length = "" if plan_length is None else str(plan_length)
    text = f"{account_id}|{offer_date.isoformat()}|{kind}|{length}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class OfferOutcome:
    """What one run's offer step made (a dry run: would make)."""

    accounts_offered: int = 0  # accounts given a new offer set
    plan_offers: int = 0  # new installment-plan offers (one per length)
    settlement_offers: int = 0  # new settlement offers
    requiring_approval: int = 0  # of those settlements, the ones that need an approver
    reused: int = 0  # accounts whose earlier offers still stand: nothing new for them
    already_made: int = 0  # accounts whose offers of the date an earlier run made already
    dry_run: bool = False

    def __str__(self) -> str:
        verb = "would offer" if self.dry_run else "offered"
        return (
            f"{verb} {self.accounts_offered:,} accounts ({self.plan_offers:,} plans, "
            f"{self.settlement_offers:,} settlements, {self.requiring_approval:,} needing "
            f"approval); {self.reused:,} standing from earlier; {self.already_made:,} made "
            "earlier today"
        )


def make_offers(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    *,
    scope: ContactScope = ALL_ACCOUNTS,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> OfferOutcome:
    """Make the day's offers for the eligible accounts whose earlier offers do not stand (see
    the module docstring); what was made. Needs the marts built for `as_of`."""
    from flows.lib.contact_data import require_build_for  # contact_data reads the offers

    require_build_for(
        connection,
        as_of,
        would=f"the offers of {as_of} would be made on another day's balances",
        nothing="no offer was made",
    )
    scope_sql, scope_parameters = scope.sql("history")
    parameters: dict[str, object] = {"as_of": as_of, **scope_parameters}
    offers = OFFERS_TABLE
    try:
        _stage_policies(connection, settings)  # refuses a bad policy before anything is made
        offers = _offers_table(connection, dry_run=dry_run)
        connection.execute(
            f"create or replace temp table _offer_accounts as {_accounts_sql(offers, scope_sql)}",
            parameters,
        )
        connection.execute(
            f"create or replace temp table _offers_new as {_new_offers_sql()}", {"as_of": as_of}
        )
        counts = _counts(connection, offers)
        if not dry_run:
            _write(connection, scope, as_of=as_of, run_id=run_id, now=now)
    finally:
        for table in (*_WORKING_TABLES, _NO_OFFERS):
            connection.execute(f"drop table if exists {table}")
    return OfferOutcome(**counts, dry_run=dry_run)


def current_offers(
    connection: duckdb.DuckDBPyConnection, as_of: dt.date, account_ids: Sequence[str]
) -> dict[str, OfferTerms]:
    """The offers in force on `as_of` for these accounts (those that have any), by account:
    each account's latest offer set made on or before `as_of`, unexpired and made on the
    collectible balance the account has on `as_of` (marts.fct_account_stage_history)."""
    if not account_ids or not _has_offers_table(connection):
        return {}
    rows = connection.execute(
        f"""
        with

        in_force as ({in_force_sql()})

        {_terms_select("account_id")}
        """,
        {"as_of": as_of, "accounts": list(account_ids)},
    ).fetchall()
    return {row[0]: _offer_terms(*row[1:]) for row in rows}


def offers_for_actions(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    action_keys: Sequence[str],
) -> dict[str, OfferTerms]:
    """The offers in force on `as_of` for these planned contacts (ops.action_ledger keys)
    whose stage uses offers in their segment's policy, by action key."""
    if not action_keys or not _has_offers_table(connection):
        return {}
    rows = connection.execute(
        f"""
        with

        {_actions_in_force_sql()}

        {_terms_select("action_key")}
        """,
        {"as_of": as_of, "keys": list(action_keys), **_stage_parameters(settings)},
    ).fetchall()
    return {row[0]: _offer_terms(*row[1:]) for row in rows}


def talking_points(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    action_keys: Sequence[str],
) -> dict[str, str]:
    """A line for the caller per queued item (ops.action_ledger key) whose stage uses offers
    and whose account has offers in force on `as_of`, by action key: "Plan: 3 x 120.00 USD,
    6 x 60.00 USD; settlement 540.00 USD (90%) until 2026-04-30 (needs approval)". A plan
    whose last installment differs says so: "3 x 61.84 USD (last 61.82)"."""
    if not action_keys or not _has_offers_table(connection):
        return {}
    rows = connection.execute(
        f"""
        with

        {_actions_in_force_sql()},

        per_item as (
            select
                action_key,
                string_agg(
                    plan_length || ' x ' || cast(installment_amount as varchar) || ' '
                    || currency
                    || case
                        when last_installment_amount <> installment_amount
                            then ' (last ' || cast(last_installment_amount as varchar) || ')'
                        else ''
                    end,
                    ', '
                    order by plan_length
                ) filter (where kind = 'installment_plan') as plans,
                max(
                    cast(offer_amount as varchar) || ' ' || currency || ' ('
                    || {_PERCENT_TEXT_SQL} || '%)'
                ) filter (where kind = 'settlement') as settlement,
                coalesce(bool_or(requires_approval), false) as needs_approval,
                max(expires_on) as expires_on
            from in_force
            group by action_key
        )

        select
            action_key,
            concat_ws(
                '; ',
                'Plan: ' || plans,
                case when plans is null then 'Settlement ' else 'settlement ' end || settlement
            )
            || ' until ' || strftime(expires_on, '%Y-%m-%d')
            || case when needs_approval then ' (needs approval)' else '' end
        from per_item
        """,
        {"as_of": as_of, "keys": list(action_keys), **_stage_parameters(settings)},
    ).fetchall()
    return dict(rows)


def in_force_sql(
    offers: str = OFFERS_TABLE,
    *,
    before: str = "<=",
    accounts: str = "account_id in (select unnest($accounts::varchar[]))",
) -> str:
    """The offers in force on $as_of for the accounts `accounts` selects (a predicate over
    `account_id`): each account's latest offer set made on or before $as_of (with
    `before="<"`: before $as_of), if unexpired and made on the collectible balance the account
    has on $as_of."""
    return f"""
        select latest.*
        from (
            select * from {offers}
            where offer_date {before} $as_of and {accounts}
            qualify offer_date = max(offer_date) over (partition by account_id)
        ) as latest
        inner join marts.fct_account_stage_history as today
            on
                latest.account_id = today.account_id
                and today.as_of_date = $as_of
        where
            latest.expires_on >= $as_of
            and latest.balance_at_offer = today.collectible_amount
    """


_PERCENT_TEXT_SQL = "rtrim(rtrim(cast(percent as varchar), '0'), '.')"  # 90.00 -> 90


def _actions_in_force_sql() -> str:
    """CTEs `actions` (the ledger rows of $keys whose stage uses offers in their segment's
    policy; $offer_segments, $offer_stages from _stage_parameters) and `in_force` (their
    offers in force, with the action key)."""
    return f"""
        actions as (
            select
                action_key,
                account_id
            from ops.action_ledger
            where
                action_key in (select unnest($keys::varchar[]))
                and list_contains(
                    $offer_stages,
                    coalesce(
                        case when list_contains($offer_segments, segment) then segment end,
                        'default'
                    ) || '|' || stage
                )
        ),

        in_force as (
            select
                actions.action_key,
                offers.*
            from actions
            inner join (
                {in_force_sql(accounts="account_id in (select account_id from actions)")}
            ) as offers
                on actions.account_id = offers.account_id
        )
    """


def _terms_select(key: str) -> str:
    """One row per `key` over `in_force`: what _offer_terms needs."""
    return f"""
        select
            {key},
            any_value(balance_at_offer),
            max(expires_on),
            coalesce(
                list(
                    struct_pack(
                        length := plan_length,
                        installment := installment_amount,
                        last := last_installment_amount,
                        total := offer_amount
                    )
                    order by plan_length
                ) filter (where kind = 'installment_plan'),
                []
            ),
            max(offer_amount) filter (where kind = 'settlement'),
            max(percent) filter (where kind = 'settlement'),
            bool_or(requires_approval) filter (where kind = 'settlement')
        from in_force
        group by {key}
    """


def _offer_terms(
    balance: Decimal,
    expires_on: dt.date,
    plans: list[dict[str, Any]],
    settlement_amount: Decimal | None,
    percent: Decimal | None,
    requires_approval: bool | None,
) -> OfferTerms:
    return OfferTerms(
        balance=balance,
        expires_on=expires_on,
        plans=tuple(
            PlanOption(
                length=int(plan["length"]),
                installment_amount=plan["installment"],
                last_installment_amount=plan["last"],
                total=plan["total"],
            )
            for plan in plans
        ),
        settlement=None
        if settlement_amount is None or percent is None
        else SettlementOption(
            amount=settlement_amount,
            percent=plain_percent(percent),
            expires_on=expires_on,
            requires_approval=bool(requires_approval),
        ),
    )


def plain_percent(percent: Decimal) -> Decimal:
    """A percent without trailing zeros, as a template prints it: 90.00 -> 90, 87.50 -> 87.5."""
    if percent == percent.to_integral_value():
        return percent.quantize(Decimal(1))
    return percent.normalize()


def offer_letter_data(
    terms: OfferTerms,
    money: Callable[[Decimal], str],
    long_date: Callable[[dt.date | None, str], str],
) -> dict[str, Any]:
    """The `offer` of a letter's data (flows/lib/letters.py): the terms as formatted strings.
    `last_installment_amount` is None when it equals the others."""
    settlement = terms.settlement
    return {
        "balance": money(terms.balance),
        "expires_on": long_date(terms.expires_on, "offer.expires_on"),
        "plans": [
            {
                "length": str(plan.length),
                "installment_amount": money(plan.installment_amount),
                "last_installment_amount": None
                if plan.last_installment_amount == plan.installment_amount
                else money(plan.last_installment_amount),
                "total": money(plan.total),
            }
            for plan in terms.plans
        ],
        "settlement": None
        if settlement is None
        else {
            "amount": money(settlement.amount),
            "percent": str(settlement.percent),
            "requires_approval": settlement.requires_approval,
        },
    }


# --- the day's offers --------------------------------------------------------------------


def _accounts_sql(offers: str, scope_sql: str) -> str:
    """The accounts in an offer stage today with their policy, and whether their earlier
    offers stand."""
    standing = in_force_sql(
        offers, before="<", accounts="account_id in (select account_id from history)"
    )
    return f"""
        with

        history as (
            select
                history.account_id,
                history.customer_id,
                history.segment,
                history.currency,
                history.stage,
                history.collectible_amount,
                history.days_past_oldest_collectible_due as days_past_due
            from marts.fct_account_stage_history as history
            where
                history.as_of_date = $as_of
                and not history.is_held
                and history.collectible_amount > 0
                and {scope_sql}
        ),

        standing as (
            select distinct account_id from ({standing})
        ),

        -- a segment without a policy of its own follows `default`
        candidates as (
            select
                history.*,
                policy.* exclude (segment),
                policy.segment as policy_segment,
                standing.account_id is not null as is_standing
            from history
            left join _offer_policy as own_policy
                on history.segment = own_policy.segment
            inner join _offer_policy as policy
                on coalesce(own_policy.segment, 'default') = policy.segment
            left join standing
                on history.account_id = standing.account_id
            where list_contains(policy.stages, history.stage)
        )

        select * from candidates
    """


def _new_offers_sql() -> str:
    """The offers `_offer_accounts` without a standing set get today, in ops.offers columns."""
    return f"""
        with

        fresh as (
            select * from _offer_accounts where not is_standing
        ),

        -- a plan or promise broken (before any cancellation) in the last N months
        recently_broken as (
            select distinct plans.account_id
            from marts.fct_payment_plans as plans
            inner join fresh
                on plans.account_id = fresh.account_id
            where
                fresh.no_broken_plan_months > 0
                and plans.broken_on <= $as_of
                and plans.broken_on
                >= cast($as_of - to_months(fresh.no_broken_plan_months) as date)
                and (plans.cancelled_date is null or plans.broken_on <= plans.cancelled_date)
        ),

        plan_lengths as (
            select
                fresh.*,
                unnest(fresh.plan_lengths) as plan_length,
                cast(fresh.collectible_amount * 100 as bigint) as balance_cents
            from fresh
            where
                fresh.has_plan
                and fresh.collectible_amount
                between fresh.plan_min_balance and fresh.plan_max_balance
                and fresh.days_past_due
                between fresh.plan_min_days_past_due and fresh.plan_max_days_past_due
                and fresh.account_id not in (select account_id from recently_broken)
        ),

        plan_cents as (
            select
                *,
                -- rounded up to the cent; the last installment takes the remainder
                (balance_cents + plan_length - 1) // plan_length as installment_cents,
                balance_cents - ((balance_cents + plan_length - 1) // plan_length)
                * (plan_length - 1) as last_cents
            from plan_lengths
        ),

        plans as (
            select
                account_id,
                customer_id,
                segment,
                currency,
                'installment_plan' as kind,
                plan_length,
                cast(cast(installment_cents as decimal(18, 0)) * 0.01 as decimal(18, 2))
                    as installment_amount,
                cast(cast(last_cents as decimal(18, 0)) * 0.01 as decimal(18, 2))
                    as last_installment_amount,
                collectible_amount as offer_amount,
                collectible_amount as balance_at_offer,
                cast(null as decimal(5, 2)) as percent,
                $as_of + offer_valid_days as expires_on,
                stage,
                false as requires_approval
            from plan_cents
            where
                cast(installment_cents as decimal(18, 0)) * 0.01 >= plan_min_installment
                and last_cents > 0
        ),

        -- the highest tier met
        tiers as (
            select
                fresh.*,
                tiers.percent
            from fresh
            inner join _settlement_tiers as tiers
                on
                    fresh.policy_segment = tiers.segment
                    and tiers.min_days_past_due <= fresh.days_past_due
            where
                fresh.has_settlement
                and fresh.collectible_amount >= fresh.settlement_min_balance
            qualify row_number() over (
                partition by fresh.account_id
                order by tiers.min_days_past_due desc, tiers.percent desc
            ) = 1
        ),

        settlement_amounts as (
            select
                *,
                cast(
                    round(cast(collectible_amount as decimal(38, 2)) * percent * 0.01, 2)
                    as decimal(18, 2)
                ) as settlement_amount
            from tiers
        ),

        settlements as (
            select
                account_id,
                customer_id,
                segment,
                currency,
                'settlement' as kind,
                cast(null as integer) as plan_length,
                cast(null as decimal(18, 2)) as installment_amount,
                cast(null as decimal(18, 2)) as last_installment_amount,
                settlement_amount as offer_amount,
                collectible_amount as balance_at_offer,
                percent,
                $as_of + offer_valid_days as expires_on,
                stage,
                collectible_amount - settlement_amount > approval_above as requires_approval
            from settlement_amounts
        ),

        offers as (
            select * from plans
            union all
            select * from settlements
        ),

        final as (
            select
                {OFFER_ID_SQL} as offer_id,
                account_id,
                customer_id,
                segment,
                currency,
                $as_of as offer_date,
                kind,
                plan_length,
                installment_amount,
                last_installment_amount,
                offer_amount,
                balance_at_offer,
                percent,
                expires_on,
                stage,
                requires_approval
            from offers
        )

        select * from final
    """


def _counts(connection: duckdb.DuckDBPyConnection, offers: str) -> dict[str, int]:
    """What the day's computed offers add to `offers` (a row the same as one there adds
    nothing), and how many accounts' earlier offers stand."""
    (counts,) = connection.execute(
        f"""
        with

        new_rows as (
            select * from _offers_new as new
            where not exists (
                select 1 from {offers} as old
                where old.offer_id = new.offer_id and {_same_terms("old", "new")}
            )
        )

        select
            count(distinct account_id),
            count(*) filter (where kind = 'installment_plan'),
            count(*) filter (where kind = 'settlement'),
            count(*) filter (where kind = 'settlement' and requires_approval),
            (select count(*) from _offer_accounts where is_standing),
            (
                select count(distinct account_id) from _offers_new
                where account_id not in (select account_id from new_rows)
            )
        from new_rows
        """
    ).fetchall()
    names = (
        "accounts_offered", "plan_offers", "settlement_offers", "requiring_approval", "reused",
        "already_made",
    )  # fmt: skip
    return dict(zip(names, (int(each) for each in counts), strict=True))


def _write(
    connection: duckdb.DuckDBPyConnection,
    scope: ContactScope,
    *,
    as_of: dt.date,
    run_id: str,
    now: dt.datetime | None,
) -> None:
    """Store the day's computed offers: rows of the date (in scope) that the run no longer
    makes go, new rows come in, a row whose terms changed (a rerun on other facts) is
    replaced; a row the same as before stays as it was."""
    scope_sql, scope_parameters = scope.sql("offers")
    terms = ", ".join(
        f"{column} = excluded.{column}"
        for column in (*_TERMS, "customer_id", "segment", "currency", "stage", "run_id")
    )
    connection.execute("begin transaction")
    try:
        connection.execute(
            f"""
            delete from {OFFERS_TABLE} as offers
            where
                offers.offer_date = $as_of
                and {scope_sql}
                and offers.offer_id not in (select offer_id from _offers_new)
            """,
            {"as_of": as_of, **scope_parameters},
        )
        connection.execute(
            f"""
            insert into {OFFERS_TABLE}
            select new.*, $run_id, $now
            from _offers_new as new
            where not exists (
                select 1 from {OFFERS_TABLE} as old
                where old.offer_id = new.offer_id and {_same_terms("old", "new")}
            )
            on conflict (offer_id) do update set {terms}, created_at = excluded.created_at
            """,
            {"run_id": run_id, "now": now or dt.datetime.now(dt.UTC)},
        )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise


def _same_terms(old: str, new: str) -> str:
    return " and ".join(f"{old}.{column} is not distinct from {new}.{column}" for column in _TERMS)


def _offers_table(connection: duckdb.DuckDBPyConnection, *, dry_run: bool) -> str:
    """ops.offers (created if needed); a dry run on a warehouse without it gets an empty
    stand-in, so it creates nothing."""
    if not dry_run:
        ensure_offer_schema(connection)
        return OFFERS_TABLE
    if _has_offers_table(connection):
        return OFFERS_TABLE
    connection.execute(
        OFFERS_DDL.replace(
            "create table if not exists ops.offers", f"create temp table {_NO_OFFERS}"
        )
    )
    return _NO_OFFERS


def _has_offers_table(connection: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        connection.execute(
            "select count(*) from duckdb_tables() "
            "where schema_name = 'ops' and table_name = 'offers' and not temporary"
        ).fetchall()[0][0]
    )


# --- the policy, as temp tables the SQL joins ---------------------------------------------


def _stage_policies(connection: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """`_offer_policy` (one row per configured segment) and `_settlement_tiers`."""
    connection.execute(
        """
        create or replace temp table _offer_policy (
            segment VARCHAR PRIMARY KEY,
            stages VARCHAR[] NOT NULL,
            has_plan BOOLEAN NOT NULL,
            plan_min_balance DECIMAL(18,2),
            plan_max_balance DECIMAL(18,2),
            plan_min_days_past_due INTEGER,
            plan_max_days_past_due INTEGER,
            no_broken_plan_months INTEGER,
            plan_lengths INTEGER[],
            plan_min_installment DECIMAL(18,2),
            has_settlement BOOLEAN NOT NULL,
            settlement_min_balance DECIMAL(18,2),
            approval_above DECIMAL(18,2),
            offer_valid_days INTEGER NOT NULL
        )
        """
    )
    connection.execute(
        """
        create or replace temp table _settlement_tiers (
            segment VARCHAR NOT NULL,
            min_days_past_due INTEGER NOT NULL,
            percent DECIMAL(5,2) NOT NULL
        )
        """
    )
    policies, tiers = [], []
    for segment, policy in sorted(settings.negotiation.offers.items()):
        policies.append(_policy_row(segment, policy))
        for number, tier in enumerate(policy.settlement.tiers if policy.settlement else []):
            where = f"negotiation.offers.{segment}.settlement.tiers[{number}].percent"
            tiers.append([segment, tier.min_days_past_due, _two_decimals(tier.percent, where)])
    connection.executemany(
        "insert into _offer_policy values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", policies
    )
    if tiers:
        connection.executemany("insert into _settlement_tiers values (?, ?, ?)", tiers)


def _policy_row(segment: str, policy: OfferPolicy) -> list[object]:
    where = f"negotiation.offers.{segment}"
    plan, settlement = policy.plan, policy.settlement
    plan_values: list[object] = [None] * 7
    if plan is not None:
        plan_values = [
            _two_decimals(plan.min_balance, f"{where}.plan.min_balance"),
            _two_decimals(plan.max_balance, f"{where}.plan.max_balance"),
            plan.min_days_past_due,
            plan.max_days_past_due,
            plan.no_broken_plan_months,
            sorted(set(plan.lengths)),
            _two_decimals(plan.min_installment, f"{where}.plan.min_installment"),
        ]
    settlement_values: list[object] = [None, None]
    if settlement is not None:
        settlement_values = [
            _two_decimals(settlement.min_balance, f"{where}.settlement.min_balance"),
            _two_decimals(settlement.approval_above, f"{where}.settlement.approval_above"),
        ]
    valid_days = settlement.valid_days if settlement is not None else DEFAULT_VALID_DAYS
    return [
        segment, list(policy.stages), plan is not None, *plan_values, settlement is not None,
        *settlement_values, valid_days,
    ]  # fmt: skip


def _two_decimals(value: Decimal, where: str) -> Decimal:
    """An amount or percent of the policy, refused when it has more than two decimals (the
    warehouse would round it silently)."""
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(
            f"recoup.yaml: {where} is {value}; use at most two decimals, for example "
            f"{value.quantize(Decimal('0.01'))}"
        )
    return value


def _stage_parameters(settings: Settings) -> dict[str, list[str]]:
    """The segments with a policy of their own, and every `segment|stage` that uses offers."""
    offers = settings.negotiation.offers
    return {
        "offer_segments": sorted(offers),
        "offer_stages": sorted(
            f"{segment}|{stage}" for segment, policy in offers.items() for stage in policy.stages
        ),
    }
