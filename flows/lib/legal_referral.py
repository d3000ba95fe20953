"""Legal referral: accounts at the end of the ladder → the company's attorneys, once each, and
referrals that must come back → withdrawn. The referral ledger (`ops.legal_referrals`) is where
exactly-once lives; the files are a projection of it. Layouts and rules: docs/legal-referral.md.

The stage is the ladder's stage whose channel is `legal` (`legal_referral` in
dbt_project/seeds/escalation_policy.csv: after agency placement, or instead of it in a segment
whose ladder has no agency stage). Each run, for its as-of date D and its scope (the scope's
accounts only), in this order:

1. **Withdraw** every open referral made on or before D for the first reason that applies on D:
   `bankruptcy`, `deceased`, `servicemember`, `fraud` (fct_account_stage_history.hold_reason
   and contact_restrictions), `paid_in_full` (no open balance), `nothing_collectible` (all that
   is open is disputed), `disputed` (a disputed amount or an open dispute). withdrawn_on = D.
2. **Judge** the accounts at the legal stage on D that have no referral open (now, or on D).
   An account is never referred, and is recorded in `ops.legal_exclusions` with every reason
   that applies (the first is `reason`), when it is: `bankruptcy`, `deceased`, `servicemember`
   (a flag in force), `disputed` (disputed_amount > 0 or an open dispute row), `fraud`,
   `legal_hold`, `cease_communication`, `attorney_represented` (holds; a held account's stage
   freezes, so it may sit at the stage), `time_barred` (marts.fct_statute_of_limitations),
   `statute_unknown` (no statute row: nothing to date the debt by), `on_hold` (any other hold:
   a plan, a promise, a manual hold, ...) or `below_min_balance` (collectible below
   legal.min_balance).
3. **Refer** the rest: one row each, referral_id = sha256(account_id|D), with the amounts, the
   statute and the attorney of the day. The next build holds the account (`referred_to_legal`,
   int_account_holds), so recoup's own dunning stops while the attorneys have it.
4. **Write the day's files** in `out/legal/<D>/`, each rewritten whole from the ledger (every
   referral and withdrawal of D, whatever the scope): referrals.csv, referral_items.csv,
   referral_history.csv, withdrawals.csv. They are written when the day has a referral or a
   withdrawal, or when the day's files exist already (a rerun rewrites them).

An account has at most one open referral: a candidate with a referral open now (withdrawn_on
null, whatever its date) or open on D is not referred again, and the id of (account, D) is the
primary key, so a rerun of the day adds nothing and writes the same files. A dry run judges
and counts, and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb

from flows.lib.config import Settings
from flows.lib.output_files import csv_bytes, write_atomically
from flows.lib.planner import ALL_ACCOUNTS, ContactScope

LEGAL_CHANNEL = "legal"
REFERRED_HOLD = "referred_to_legal"  # the hold a referral causes (int_account_holds)
# holds that keep an account from the attorneys, in the order they are named
HOLD_EXCLUSIONS = (
    "fraud",
    "legal_hold",
    "cease_communication",
    "attorney_represented",
)
EXCLUSION_REASONS = (
    "bankruptcy",
    "deceased",
    "servicemember",
    "disputed",
    *HOLD_EXCLUSIONS,
    "time_barred",
    "statute_unknown",
    "on_hold",
    "below_min_balance",
)
WITHDRAWAL_REASONS = (
    "bankruptcy",
    "deceased",
    "servicemember",
    "fraud",
    "paid_in_full",
    "nothing_collectible",
    "disputed",
)
# hold reasons named by a reason of their own (or caused by the referral): not `on_hold`
_NAMED_HOLDS = ("bankruptcy", "deceased", "dispute", *HOLD_EXCLUSIONS, REFERRED_HOLD)

REFERRALS_FILE = "referrals.csv"
ITEMS_FILE = "referral_items.csv"
HISTORY_FILE = "referral_history.csv"
WITHDRAWALS_FILE = "withdrawals.csv"
DAY_FILES = (REFERRALS_FILE, ITEMS_FILE, HISTORY_FILE, WITHDRAWALS_FILE)

REFERRAL_COLUMNS = (
    "referral_id", "referred_on", "attorney", "original_creditor", "account_id", "customer_id",
    "customer_type", "full_name", "address_line1", "address_line2", "city", "state",
    "postal_code", "country", "phone", "email", "currency", "collectible_amount", "total_open",
    "oldest_due_date", "last_payment_date", "statute_state", "statute_years", "sol_expires_on",
    "days_past_due", "stage_history",
)  # fmt: skip
ITEM_COLUMNS = (
    "referral_id", "account_id", "record_type", "currency", "item_id", "item_type",
    "invoice_number", "issue_date", "due_date", "original_amount", "open_amount",
    "disputed_amount", "days_past_due", "itemization_date", "amount_on_itemization_date",
    "interest_since", "fees_since", "payments_since", "credits_since", "current_amount",
)  # fmt: skip
HISTORY_COLUMNS = (
    "referral_id", "account_id", "event_date", "event", "reference", "amount", "currency",
    "detail",
)  # fmt: skip
WITHDRAWAL_COLUMNS = (
    "referral_id", "account_id", "customer_id", "attorney", "referred_on", "withdrawn_on",
    "reason", "currency", "total_open", "collectible_amount",
)  # fmt: skip

REFERRALS_DDL = """
create table if not exists ops.legal_referrals (
    referral_id VARCHAR PRIMARY KEY,
    account_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    attorney VARCHAR NOT NULL,
    referred_on DATE NOT NULL,
    run_id VARCHAR NOT NULL,
    referred_at TIMESTAMPTZ NOT NULL,
    currency VARCHAR NOT NULL,
    collectible_amount DECIMAL(18,2) NOT NULL,
    total_open DECIMAL(18,2) NOT NULL,
    oldest_due_date DATE,
    last_payment_date DATE,
    days_past_due INTEGER,
    state VARCHAR,
    statute_years INTEGER NOT NULL,
    sol_expires_on DATE NOT NULL,
    referral_file VARCHAR NOT NULL,
    withdrawn_on DATE,
    withdrawn_reason VARCHAR,
    withdrawn_run_id VARCHAR,
    withdrawn_at TIMESTAMPTZ,
    withdrawn_total_open DECIMAL(18,2),
    withdrawn_collectible_amount DECIMAL(18,2),
    withdrawal_file VARCHAR
)
"""

EXCLUSIONS_DDL = """
create table if not exists ops.legal_exclusions (
    as_of_date DATE NOT NULL,
    account_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    reasons VARCHAR[] NOT NULL,
    hold_reason VARCHAR,
    currency VARCHAR NOT NULL,
    collectible_amount DECIMAL(18,2) NOT NULL,
    sol_expires_on DATE,
    run_id VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (as_of_date, account_id)
)
"""

COMMENTS = {
    "ops.legal_referrals": "Accounts referred to the attorneys: one row per referral "
    "(referral_id hashes account and referred_on), withdrawn with the date and reason. At most "
    "one open per account. Written by flows/lib/legal_referral.py.",
    "ops.legal_exclusions": "Accounts at the legal stage that were not referred, one row per "
    "account per as-of date, with every reason (time_barred, bankruptcy, servicemember, ...).",
}

REFERRAL_ID_SQL = "sha256(concat_ws('|', judged.account_id, strftime($as_of::date, '%Y-%m-%d')))"


def ensure_legal_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """The referral ledger and the exclusions (idempotent)."""
    connection.execute("create schema if not exists ops")
    connection.execute(REFERRALS_DDL)
    connection.execute(EXCLUSIONS_DDL)
    for table, comment in COMMENTS.items():
        connection.execute(f"comment on table {table} is '{comment}'")


def referral_id(account_id: str, referred_on: dt.date) -> str:
    """The id of the referral of `account_id` made on `referred_on`; REFERRAL_ID_SQL agrees."""
    text = f"{account_id}|{referred_on.isoformat()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def legal_folder(out: Path, as_of: dt.date) -> Path:
    """out/legal/<as-of>/"""
    return out / "legal" / as_of.isoformat()


@dataclass(frozen=True)
class LegalOutcome:
    """What one run's legal step did (a dry run: would do)."""

    as_of: dt.date
    referred: int = 0  # new referrals
    referred_amounts: dict[str, Decimal] = field(default_factory=dict)  # of those, per currency
    excluded: dict[str, int] = field(default_factory=dict)  # at the stage, not referred: why
    withdrawn: dict[str, int] = field(default_factory=dict)  # withdrawals per reason
    open_referrals: int = 0  # open after the run, every account
    files: tuple[str, ...] = ()
    dry_run: bool = False

    @property
    def total_withdrawn(self) -> int:
        return sum(self.withdrawn.values())

    def __str__(self) -> str:
        def listed(counts: dict[str, object]) -> str:
            inner = ", ".join(f"{key} {value:,}" for key, value in sorted(counts.items()))
            return f" ({inner})" if inner else ""

        refer, withdraw = (
            ("would refer", "would withdraw") if self.dry_run else ("referred", "withdrew")
        )
        return (
            f"{refer} {self.referred:,}{listed(self.referred_amounts)}; "
            f"{withdraw} {self.total_withdrawn:,}{listed(self.withdrawn)}; "
            f"not referred {sum(self.excluded.values()):,}{listed(self.excluded)}; "
            f"{self.open_referrals:,} open"
        )


def refer_to_legal(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    *,
    scope: ContactScope = ALL_ACCOUNTS,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> LegalOutcome:
    """Withdraw the referrals that must come back, refer the accounts that are due (recording
    why the others at the stage are not) and write the day's files; a dry run only counts.
    Needs the marts built for `as_of`."""
    from flows.lib.contact_data import require_build_for

    require_build_for(
        connection,
        as_of,
        would=f"the legal referrals of {as_of} would judge another day's balances",
        nothing="nothing was referred or withdrawn and no file written",
    )
    ensure_legal_schema(connection)
    now = now or dt.datetime.now(dt.UTC)
    folder = legal_folder(settings.path("out"), as_of)
    parameters = {"as_of": as_of, "min_balance": settings.legal.min_balance}
    scope_sql, scope_parameters = scope.sql("stages")
    accounts_scope_sql, _ = scope.sql("accounts")
    try:
        withdrawals_sql = _withdrawals_sql(accounts_scope_sql)
        connection.execute(
            f"create or replace temp table _legal_withdrawals as {withdrawals_sql}",
            {"as_of": as_of, **scope_parameters},
        )
        withdrawn = _counts(
            connection, "select reason, count(*) from _legal_withdrawals group by 1"
        )
        if not dry_run:
            _withdraw(connection, as_of=as_of, run_id=run_id, now=now, folder=folder)
        # judged after the withdrawals: a referral withdrawn today does not block its account
        connection.execute(
            f"create or replace temp table _legal_judged as {_judged_sql(scope_sql)}",
            {**parameters, **scope_parameters},
        )
        excluded = _counts(
            connection,
            "select reasons[1], count(*) from _legal_judged where len(reasons) > 0 group by 1",
        )
        if dry_run:
            to_refer = "select * from _legal_judged where len(reasons) = 0"
            referred = connection.execute(f"select count(*) from ({to_refer})").fetchall()[0][0]
            amounts = _amounts(connection, to_refer)
            return LegalOutcome(
                as_of=as_of,
                referred=int(referred),
                referred_amounts=amounts,
                excluded=excluded,
                withdrawn=withdrawn,
                open_referrals=_open_referrals(connection),
                dry_run=True,
            )
        new_ids = _refer(
            connection,
            settings,
            as_of=as_of,
            run_id=run_id,
            now=now,
            folder=folder,
            accounts_scope_sql=accounts_scope_sql,
            scope_parameters=scope_parameters,
        )
    finally:
        connection.execute("drop table if exists _legal_withdrawals")
        connection.execute("drop table if exists _legal_judged")
    amounts = _amounts(
        connection,
        "select * from ops.legal_referrals where referral_id in (select unnest($ids::varchar[]))",
        {"ids": new_ids},
    )
    files = write_legal_files(connection, settings, as_of=as_of)
    return LegalOutcome(
        as_of=as_of,
        referred=len(new_ids),
        referred_amounts=amounts,
        excluded=excluded,
        withdrawn=withdrawn,
        open_referrals=_open_referrals(connection),
        files=tuple(str(path) for path in files),
    )


def _flags_sql(column: str) -> str:
    """A comma-separated hold_reason or contact_restrictions as a list."""
    return (
        f"list_filter(list_transform(string_split(coalesce({column}, ''), ','), "
        f"lambda flag: trim(flag)), lambda flag: flag <> '')"
    )


def _sql_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


OPEN_DISPUTES_SQL = """
    select distinct account_id
    from marts.fct_disputes
    where dispute_status = 'open' and opened_date <= $as_of
"""


def _withdrawals_sql(accounts_scope_sql: str) -> str:
    """Open referrals made on or before D (in scope) that must come back, with the reason."""
    return f"""
        with

        open_referrals as (
            select
                referrals.referral_id,
                referrals.account_id
            from ops.legal_referrals as referrals
            left join marts.dim_accounts as accounts
                on referrals.account_id = accounts.account_id
            -- a rerun for an earlier date leaves later referrals alone
            where
                referrals.withdrawn_on is null
                and referrals.referred_on <= $as_of
                and {accounts_scope_sql}
        ),

        stages as (
            select
                account_id,
                {_flags_sql("hold_reason")} as hold_reasons,
                {_flags_sql("contact_restrictions")} as restrictions
            from marts.fct_account_stage_history
            where as_of_date = $as_of
        ),

        aging as (
            select
                account_id,
                total_open,
                disputed_amount,
                collectible_amount
            from marts.fct_account_aging
            where as_of_date = $as_of
        ),

        open_disputes as ({OPEN_DISPUTES_SQL}),

        judged as (
            select
                open_referrals.referral_id,
                case
                    when list_contains(stages.hold_reasons, 'bankruptcy') then 'bankruptcy'
                    when list_contains(stages.hold_reasons, 'deceased') then 'deceased'
                    when list_contains(stages.restrictions, 'servicemember') then 'servicemember'
                    when list_contains(stages.hold_reasons, 'fraud') then 'fraud'
                    when aging.account_id is null or aging.total_open <= 0 then 'paid_in_full'
                    when aging.collectible_amount <= 0 then 'nothing_collectible'
                    when aging.disputed_amount > 0 or open_disputes.account_id is not null
                        then 'disputed'
                end as reason,
                coalesce(aging.total_open, 0) as total_open,
                coalesce(aging.collectible_amount, 0) as collectible_amount
            from open_referrals
            left join stages
                on open_referrals.account_id = stages.account_id
            left join aging
                on open_referrals.account_id = aging.account_id
            left join open_disputes
                on open_referrals.account_id = open_disputes.account_id
        )

        select * from judged
        where reason is not null
    """


def _judged_sql(scope_sql: str) -> str:
    """The accounts at the legal stage on D (in scope) with no referral open, and the reasons
    (a list, in EXCLUSION_REASONS order; empty: refer it) that keep each from the attorneys."""
    holds = "\n".join(
        f"case when list_contains(stages.hold_reasons, '{hold}') then '{hold}' end,"
        for hold in HOLD_EXCLUSIONS
    )
    return f"""
        with

        stages as (
            select
                stages.account_id,
                stages.customer_id,
                stages.currency,
                stages.total_open,
                stages.disputed_amount,
                stages.collectible_amount,
                stages.max_days_past_due,
                stages.hold_reason,
                {_flags_sql("stages.hold_reason")} as hold_reasons,
                {_flags_sql("stages.contact_restrictions")} as restrictions
            from marts.fct_account_stage_history as stages
            where
                stages.as_of_date = $as_of
                and stages.stage_channel = '{LEGAL_CHANNEL}'
                and {scope_sql}
        ),

        statutes as (
            select
                account_id,
                statute_state,
                statute_years,
                last_payment_date,
                sol_expires_on,
                is_time_barred
            from marts.fct_statute_of_limitations
            where as_of_date = $as_of
        ),

        aging as (
            select
                account_id,
                oldest_due_date
            from marts.fct_account_aging
            where as_of_date = $as_of
        ),

        open_disputes as ({OPEN_DISPUTES_SQL}),

        -- open now (whatever its date), or open on the as-of date: never a second one
        referred as (
            select distinct account_id
            from ops.legal_referrals
            where withdrawn_on is null or (referred_on <= $as_of and withdrawn_on > $as_of)
        ),

        judged as (
            select
                stages.*,
                statutes.statute_state,
                statutes.statute_years,
                statutes.last_payment_date,
                statutes.sol_expires_on,
                aging.oldest_due_date,
                list_filter(
                    [
                        case when list_contains(stages.hold_reasons, 'bankruptcy')
                            then 'bankruptcy' end,
                        case when list_contains(stages.hold_reasons, 'deceased')
                            then 'deceased' end,
                        case when list_contains(stages.restrictions, 'servicemember')
                            then 'servicemember' end,
                        case
                            when
                                stages.disputed_amount > 0
                                or open_disputes.account_id is not null
                                or list_contains(stages.hold_reasons, 'dispute')
                                then 'disputed'
                        end,
                        {holds}
                        case when statutes.is_time_barred then 'time_barred' end,
                        case when statutes.sol_expires_on is null then 'statute_unknown' end,
                        case
                            when len(list_filter(
                                stages.hold_reasons,
                                lambda hold: hold not in {_sql_list(_NAMED_HOLDS)}
                            )) > 0
                                then 'on_hold'
                        end,
                        case when stages.collectible_amount < $min_balance
                            then 'below_min_balance' end
                    ],
                    lambda reason: reason is not null
                ) as reasons
            from stages
            left join statutes
                on stages.account_id = statutes.account_id
            left join aging
                on stages.account_id = aging.account_id
            left join open_disputes
                on stages.account_id = open_disputes.account_id
            where stages.account_id not in (select referred.account_id from referred)
        )

        select * from judged
    """


def _withdraw(
    connection: duckdb.DuckDBPyConnection,
    *,
    as_of: dt.date,
    run_id: str,
    now: dt.datetime,
    folder: Path,
) -> None:
    connection.execute(
        """
        update ops.legal_referrals as referrals
        set
            withdrawn_on = $as_of,
            withdrawn_reason = withdrawals.reason,
            withdrawn_run_id = $run_id,
            withdrawn_at = $now,
            withdrawn_total_open = withdrawals.total_open,
            withdrawn_collectible_amount = withdrawals.collectible_amount,
            withdrawal_file = $file
        from _legal_withdrawals as withdrawals
        where referrals.referral_id = withdrawals.referral_id
        """,
        {"as_of": as_of, "run_id": run_id, "now": now, "file": str(folder / WITHDRAWALS_FILE)},
    )


def _refer(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    *,
    as_of: dt.date,
    run_id: str,
    now: dt.datetime,
    folder: Path,
    accounts_scope_sql: str,
    scope_parameters: dict[str, object],
) -> list[str]:
    """Record the day's exclusions (replacing a rerun's) and insert the referrals; the ids of
    the new ones."""
    connection.execute("begin transaction")
    try:
        connection.execute(
            f"""
            delete from ops.legal_exclusions
            where
                as_of_date = $as_of
                and account_id in (
                    select accounts.account_id from marts.dim_accounts as accounts
                    where {accounts_scope_sql}
                )
            """,
            {"as_of": as_of, **scope_parameters},
        )
        connection.execute(
            """
            insert into ops.legal_exclusions
            select
                $as_of, account_id, customer_id, reasons[1], reasons, hold_reason, currency,
                collectible_amount, sol_expires_on, $run_id, $now
            from _legal_judged
            where len(reasons) > 0
            """,
            {"as_of": as_of, "run_id": run_id, "now": now},
        )
        new_ids = [
            row[0]
            for row in connection.execute(
                f"""
                insert into ops.legal_referrals (
                    referral_id, account_id, customer_id, attorney, referred_on, run_id,
                    referred_at, currency, collectible_amount, total_open, oldest_due_date,
                    last_payment_date, days_past_due, state, statute_years, sol_expires_on,
                    referral_file
                )
                select
                    {REFERRAL_ID_SQL}, judged.account_id, judged.customer_id, $attorney,
                    $as_of, $run_id, $now, judged.currency, judged.collectible_amount,
                    judged.total_open, judged.oldest_due_date, judged.last_payment_date,
                    judged.max_days_past_due, judged.statute_state, judged.statute_years,
                    judged.sol_expires_on, $file
                from _legal_judged as judged
                where len(judged.reasons) = 0
                order by judged.account_id
                on conflict do nothing
                returning referral_id
                """,
                {
                    "as_of": as_of,
                    "run_id": run_id,
                    "now": now,
                    "attorney": settings.legal.attorney,
                    "file": str(folder / REFERRALS_FILE),
                },
            ).fetchall()
        ]
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    return new_ids


def write_legal_files(
    connection: duckdb.DuckDBPyConnection, settings: Settings, *, as_of: dt.date
) -> list[Path]:
    """Rewrite the day's four files from every referral and withdrawal dated `as_of` (when
    there is one, or the files exist already); the files written."""
    folder = legal_folder(settings.path("out"), as_of)
    referrals = _rows(connection, _referral_rows_sql(), as_of, settings.company.name)
    withdrawals = _rows(connection, _withdrawal_rows_sql(), as_of)
    if not referrals and not withdrawals and not any((folder / n).exists() for n in DAY_FILES):
        return []
    contents = {
        REFERRALS_FILE: (REFERRAL_COLUMNS, referrals),
        ITEMS_FILE: (ITEM_COLUMNS, _rows(connection, _item_rows_sql(), as_of)),
        HISTORY_FILE: (HISTORY_COLUMNS, _rows(connection, _history_rows_sql(), as_of)),
        WITHDRAWALS_FILE: (WITHDRAWAL_COLUMNS, withdrawals),
    }
    return [
        write_atomically(folder / name, csv_bytes(header, lines))
        for name, (header, lines) in contents.items()
    ]


def _rows(
    connection: duckdb.DuckDBPyConnection, sql: str, as_of: dt.date, creditor: str | None = None
) -> list[tuple[object, ...]]:
    parameters: dict[str, object] = {"as_of": as_of}
    if creditor is not None:
        parameters["creditor"] = creditor
    rows = connection.execute(sql, parameters).fetchall()
    return [tuple(_cell(value) for value in row) for row in rows]


def _cell(value: object) -> object:
    """Dates as ISO dates, amounts with their two decimals, the rest as it is."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return value


def _referral_rows_sql() -> str:
    return """
        with

        referrals as (
            select * from ops.legal_referrals
            where referred_on = $as_of
        ),

        stage_entries as (
            select distinct
                history.account_id,
                history.stage,
                history.stage_entered_date
            from marts.fct_account_stage_history as history
            where
                history.as_of_date <= $as_of
                and history.stage <> 'none'
                and history.account_id in (select referrals.account_id from referrals)
        ),

        stage_summaries as (
            select
                account_id,
                string_agg(
                    stage || ' ' || strftime(stage_entered_date, '%Y-%m-%d'), '; '
                    order by stage_entered_date, stage
                ) as stage_history
            from stage_entries
            group by account_id
        )

        select
            referrals.referral_id,
            referrals.referred_on,
            referrals.attorney,
            $creditor,
            referrals.account_id,
            referrals.customer_id,
            customers.customer_type,
            customers.full_name,
            customers.billing_address_line1,
            customers.billing_address_line2,
            customers.billing_city,
            customers.billing_state,
            customers.billing_postal_code,
            customers.billing_country,
            customers.phone,
            customers.email,
            referrals.currency,
            referrals.collectible_amount,
            referrals.total_open,
            referrals.oldest_due_date,
            referrals.last_payment_date,
            referrals.state,
            referrals.statute_years,
            referrals.sol_expires_on,
            referrals.days_past_due,
            stage_summaries.stage_history
        from referrals
        left join marts.dim_customers as customers
            on referrals.customer_id = customers.customer_id
        left join stage_summaries
            on referrals.account_id = stage_summaries.account_id
        order by referrals.account_id, referrals.referral_id
    """


def _item_rows_sql() -> str:
    """Every open item of each account referred on D, then its itemization line."""
    return """
        with

        referrals as (
            select
                referral_id,
                account_id
            from ops.legal_referrals
            where referred_on = $as_of
        ),

        lines as (
            select
                referrals.referral_id,
                referrals.account_id,
                'open_item' as record_type,
                items.currency,
                items.item_id,
                items.item_type,
                items.invoice_number,
                items.issue_date,
                items.due_date,
                items.original_amount,
                items.open_amount,
                items.disputed_amount,
                items.days_past_due,
                null::date as itemization_date,
                null::decimal(18,2) as amount_on_itemization_date,
                null::decimal(18,2) as interest_since,
                null::decimal(18,2) as fees_since,
                null::decimal(18,2) as payments_since,
                null::decimal(18,2) as credits_since,
                null::decimal(18,2) as current_amount,
                0 as line_order
            from referrals
            inner join marts.fct_invoice_aging as items
                on referrals.account_id = items.account_id
            where items.as_of_date = $as_of and items.open_amount > 0

            union all

            select
                referrals.referral_id,
                referrals.account_id,
                'itemization' as record_type,
                itemization.currency,
                null as item_id,
                null as item_type,
                null as invoice_number,
                null as issue_date,
                null as due_date,
                null as original_amount,
                null as open_amount,
                null as disputed_amount,
                null as days_past_due,
                itemization.itemization_date,
                itemization.amount_on_itemization_date,
                itemization.interest_since,
                itemization.fees_since,
                itemization.payments_since,
                itemization.credits_since,
                itemization.current_amount,
                1 as line_order
            from referrals
            inner join marts.fct_account_itemization as itemization
                on referrals.account_id = itemization.account_id
            where itemization.as_of_date = $as_of
        )

        select * exclude (line_order) from lines
        order by account_id, referral_id, line_order, due_date, item_id
    """


def _history_rows_sql() -> str:
    """The whole history of each account referred on D, up to D: what billing sent (invoices,
    payments and reversals, adjustments, disputes), what recoup did (contacts, agency
    placements and recalls, earlier referrals). Dates and amounts; no message bodies."""
    return """
        with

        referrals as (
            select
                referral_id,
                account_id,
                currency
            from ops.legal_referrals
            where referred_on = $as_of
        ),

        events as (
            select
                account_id,
                issue_date as event_date,
                'invoice' as event,
                invoice_number as reference,
                amount,
                'due ' || strftime(due_date, '%Y-%m-%d')
                || coalesce(': ' || description, '') as detail,
                invoice_id as sort_key
            from raw.invoices_latest
            where issue_date <= $as_of

            union all

            select
                account_id,
                received_date as event_date,
                case when reverses_payment_id is null then 'payment' else 'payment_reversal' end
                    as event,
                payment_id as reference,
                amount,
                concat_ws(
                    ' ', method, 'invoice ' || invoice_id, 'reverses ' || reverses_payment_id
                ) as detail,
                payment_id as sort_key
            from raw.payments_latest
            where received_date <= $as_of

            union all

            select
                account_id,
                effective_date as event_date,
                kind as event,
                adjustment_id as reference,
                amount,
                concat_ws(': ', 'invoice ' || invoice_id, reason) as detail,
                adjustment_id as sort_key
            from raw.adjustments_latest
            where effective_date <= $as_of

            union all

            select
                account_id,
                opened_date as event_date,
                'dispute_opened' as event,
                dispute_id as reference,
                amount,
                coalesce('invoice ' || invoice_id, 'whole account') as detail,
                dispute_id as sort_key
            from raw.disputes_latest
            where opened_date <= $as_of

            union all

            select
                account_id,
                resolved_date as event_date,
                'dispute_resolved' as event,
                dispute_id as reference,
                null as amount,
                coalesce(resolution, 'resolved') as detail,
                dispute_id as sort_key
            from raw.disputes_latest
            where resolved_date <= $as_of

            union all

            select
                account_id,
                as_of_date as event_date,
                'contact' as event,
                action_key as reference,
                collectible_amount as amount,
                concat_ws(' ', channel, stage, status, reason) as detail,
                action_key as sort_key
            from marts.fct_contact_log
            where as_of_date <= $as_of

            union all

            select
                account_id,
                placed_date as event_date,
                'agency_placement' as event,
                placement_id as reference,
                placed_balance as amount,
                agency_id as detail,
                placement_id as sort_key
            from ops.placements
            where placed_date <= $as_of

            union all

            select
                account_id,
                recalled_date as event_date,
                'agency_recall' as event,
                placement_id as reference,
                null as amount,
                concat_ws(' ', agency_id, recall_reason) as detail,
                placement_id as sort_key
            from ops.placements
            where recalled_date <= $as_of

            union all

            select
                account_id,
                referred_on as event_date,
                'legal_referral' as event,
                referral_id as reference,
                collectible_amount as amount,
                attorney as detail,
                referral_id as sort_key
            from ops.legal_referrals
            where referred_on < $as_of

            union all

            select
                account_id,
                withdrawn_on as event_date,
                'legal_withdrawal' as event,
                referral_id as reference,
                null as amount,
                withdrawn_reason as detail,
                referral_id as sort_key
            from ops.legal_referrals
            where withdrawn_on <= $as_of and referred_on < $as_of
        )

        select
            referrals.referral_id,
            referrals.account_id,
            events.event_date,
            events.event,
            events.reference,
            events.amount,
            referrals.currency,
            events.detail
        from referrals
        inner join events
            on referrals.account_id = events.account_id
        order by
            referrals.account_id, referrals.referral_id, events.event_date, events.event,
            events.sort_key
    """


def _withdrawal_rows_sql() -> str:
    return """
        select
            referral_id,
            account_id,
            customer_id,
            attorney,
            referred_on,
            withdrawn_on,
            withdrawn_reason,
            currency,
            withdrawn_total_open,
            withdrawn_collectible_amount
        from ops.legal_referrals
        where withdrawn_on = $as_of
        order by account_id, referral_id
    """


def _counts(
    connection: duckdb.DuckDBPyConnection, sql: str, parameters: dict[str, object] | None = None
) -> dict[str, int]:
    return {key: int(n) for key, n in connection.execute(sql, parameters or {}).fetchall()}


def _amounts(
    connection: duckdb.DuckDBPyConnection,
    rows_sql: str,
    parameters: dict[str, object] | None = None,
) -> dict[str, Decimal]:
    """The collectible amounts of `rows_sql`'s rows, per currency."""
    return dict(
        connection.execute(
            f"select currency, sum(collectible_amount) from ({rows_sql}) group by 1 order by 1",
            parameters or {},
        ).fetchall()
    )


def _open_referrals(connection: duckdb.DuckDBPyConnection) -> int:
    return int(
        connection.execute(
            "select count(*) from ops.legal_referrals where withdrawn_on is null"
        ).fetchall()[0][0]
    )
