"""Credit holds: the daily list of accounts billing should put on credit hold (or service
suspension), and the release list when they cure. The hold ledger (`ops.credit_holds`) is where
exactly-once lives; the files are a projection of it. Layouts and rules: docs/credit-holds.md.

An account **meets a criterion** on the as-of date D (settings `credit_hold`) when something
undisputed is owed (fct_account_stage_history.collectible_amount > 0) and

- `stage:<stage>`: its stage on D is `from_stage` or later on its own ladder: stage_order at
  least the stage_order of `from_stage` in the ladder of its policy_segment (and policy
  version), read from policy.escalation_policy, never hard-coded. A ladder without
  `from_stage`, or `from_stage: null`, holds nobody by stage;
- `over_credit_limit`: `over_credit_limit` is on, the account has a credit limit
  (dim_accounts.credit_limit) and its total open balance on D is above it (equal is not).

Holds and plans (what a careful billing team expects):

- **bankruptcy** (a bankruptcy flag in force on D): never held, and an open hold is released
  with `bankruptcy_stay`. Stopping service to collect pre-petition debt can break the automatic
  stay (11 U.S.C. 362); whether a utility may ask for adequate assurance (section 366) is for
  counsel to decide, outside recoup.
- **a payment plan or promise** in force does not release a hold by itself: it freezes the
  stage, so an account held by stage stays held until it pays down below `from_stage` or pays
  in full. The plan does not stop a new hold either: holds follow the criteria alone.
- **a dispute of the whole balance** (nothing collectible): never held; an open hold is
  released with `disputed` (most utility rules forbid cutting service over a disputed amount).
  A partial dispute changes nothing: the stage already ignores disputed amounts, and the total
  open balance is what the credit limit is about.
- deceased, cease_communication, attorney_represented, legal_hold, fraud, manual holds and an
  agency placement stop contacting the customer; a credit hold is an instruction to billing,
  not a contact, so they neither place nor release one.

Each run, for D and the run's scope (the scope's accounts only):

1. **Release** every open hold held on or before D whose account meets no criterion on D, or
   is in bankruptcy, with the first reason that applies: `bankruptcy_stay`, `account_closed`
   (the account is closed and nothing is owed), `paid_in_full` (nothing owed: paid, credited
   or written off), `disputed` (all that is owed is disputed), `cured` (still owes, but below
   the stage and not over the limit). released_on = D.
2. **Hold** every account that meets a criterion on D and has no hold open on D and no open
   hold at all (at most one open hold per account). hold_id = sha256(account_id|held_on).
3. **Write the day's files** in `out/credit_holds/<D>/`, each rewritten whole from the ledger
   (every account, whatever the scope): `credit_holds.csv` (holds held on D),
   `credit_hold_releases.csv` (holds released on D), `open_credit_holds.csv` (holds open on D).

A rerun of the day adds nothing and writes the same files. A later day never repeats a hold:
the account's hold is still open. A rerun for a past date judges D's marts only, considers
holds held on or before D, and leaves holds released after D as they are (their release was
sent already); a hold released on D in the first run stays released. A dry run only counts.
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

STAGE_REASON_PREFIX = "stage:"
OVER_LIMIT_REASON = "over_credit_limit"
RELEASE_REASONS = ("bankruptcy_stay", "account_closed", "paid_in_full", "disputed", "cured")
REASON_SEPARATOR = "|"  # reasons in one CSV cell: `stage:final_notice|over_credit_limit`

HOLDS_FILE = "credit_holds.csv"
RELEASES_FILE = "credit_hold_releases.csv"
OPEN_HOLDS_FILE = "open_credit_holds.csv"
HOLD_COLUMNS = (
    "account_id", "customer_id", "held_on", "reasons", "stage", "total_open", "credit_limit",
    "currency", "hold_id",
)  # fmt: skip
RELEASE_COLUMNS = (
    "account_id", "customer_id", "held_on", "released_on", "release_reason", "total_open",
    "currency", "hold_id",
)  # fmt: skip

CREDIT_HOLDS_DDL = """
create table if not exists ops.credit_holds (
    hold_id VARCHAR PRIMARY KEY,
    account_id VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    held_on DATE NOT NULL,
    reasons VARCHAR[] NOT NULL,
    stage VARCHAR,
    total_open DECIMAL(18,2) NOT NULL,
    collectible_amount DECIMAL(18,2) NOT NULL,
    credit_limit DECIMAL(18,2),
    currency VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    held_at TIMESTAMPTZ NOT NULL,
    hold_file VARCHAR NOT NULL,
    released_on DATE,
    release_reason VARCHAR,
    release_id VARCHAR,
    released_run_id VARCHAR,
    released_at TIMESTAMPTZ,
    released_total_open DECIMAL(18,2),
    released_collectible_amount DECIMAL(18,2),
    release_file VARCHAR
)
"""

COMMENT = (
    "Credit holds for the billing system: one row per hold (hold_id hashes account and "
    "held_on), released with the date and reason when the account cures. At most one open "
    "per account. Written by the credit_holds step (flows/lib/credit_holds.py)."
)

HOLD_ID_SQL = "sha256(concat_ws('|', facts.account_id, strftime($as_of::date, '%Y-%m-%d')))"
RELEASE_ID_SQL = "sha256(concat_ws('|', holds.hold_id, 'release'))"


class CreditHoldSettingsError(ValueError):
    """credit_hold.from_stage names a stage no escalation ladder has."""


def ensure_credit_hold_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """The hold ledger `ops.credit_holds` (idempotent)."""
    connection.execute("create schema if not exists ops")
    connection.execute(CREDIT_HOLDS_DDL)
    connection.execute(f"comment on table ops.credit_holds is '{COMMENT}'")


def hold_id(account_id: str, held_on: dt.date) -> str:
    """The id of the hold of `account_id` placed on `held_on`; HOLD_ID_SQL computes the same."""
    text = f"{account_id}|{held_on.isoformat()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def release_id(hold: str) -> str:
    """The key of a hold's release (its contact-log row); RELEASE_ID_SQL computes the same."""
    return hashlib.sha256(f"{hold}|release".encode()).hexdigest()


def credit_hold_folder(out: Path, as_of: dt.date) -> Path:
    """out/credit_holds/<as-of>/"""
    return out / "credit_holds" / as_of.isoformat()


@dataclass(frozen=True)
class CreditHoldOutcome:
    """What one run's credit-hold step did (a dry run: would do)."""

    as_of: dt.date
    new_holds: int = 0
    held: dict[str, int] = field(default_factory=dict)  # new holds per reason (both if two)
    released: dict[str, int] = field(default_factory=dict)  # releases per reason
    open_holds: int = 0  # open on the as-of date after the run
    files: tuple[str, ...] = ()
    dry_run: bool = False

    @property
    def total_released(self) -> int:
        return sum(self.released.values())

    def __str__(self) -> str:
        def listed(counts: dict[str, int]) -> str:
            inner = ", ".join(f"{key} {n:,}" for key, n in sorted(counts.items()))
            return f" ({inner})" if inner else ""

        verb = "would hold" if self.dry_run else "held"
        return (
            f"{verb} {self.new_holds:,}{listed(self.held)}; "
            f"{'would release' if self.dry_run else 'released'} "
            f"{self.total_released:,}{listed(self.released)}; {self.open_holds:,} open"
        )


def update_credit_holds(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    *,
    scope: ContactScope = ALL_ACCOUNTS,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> CreditHoldOutcome:
    """Release the holds that cured, hold the accounts that are due and write the day's files
    (a dry run only counts). Needs the marts built for `as_of`."""
    from flows.lib.contact_data import require_build_for

    nothing = "nothing was held or released and no file written"
    require_build_for(
        connection,
        as_of,
        would=f"the credit holds of {as_of} would judge another day's balances",
        nothing=nothing,
    )
    ensure_credit_hold_schema(connection)
    check_from_stage(connection, settings.credit_hold.from_stage, nothing=nothing)
    now = now or dt.datetime.now(dt.UTC)
    folder = credit_hold_folder(settings.path("out"), as_of)
    _judge_accounts(connection, settings, as_of, scope)
    try:
        _stage_changes(connection, as_of)
        released = _counts(connection, "select release_reason, count(*) from _releases group by 1")
        held = _counts(
            connection, "select unnest(reasons) as reason, count(*) from _new_holds group by 1"
        )
        new_holds = _count(connection, "select count(*) from _new_holds")
        if dry_run:
            open_now = _count(connection, _OPEN_ON_SQL, {"as_of": as_of})
            return CreditHoldOutcome(
                as_of=as_of,
                new_holds=new_holds,
                held=held,
                released=released,
                open_holds=open_now - sum(released.values()) + new_holds,
                dry_run=True,
            )
        _apply_changes(connection, as_of, run_id, now, folder)
    finally:
        connection.execute("drop table if exists _credit_hold_accounts")
        connection.execute("drop table if exists _releases")
        connection.execute("drop table if exists _new_holds")
    files = write_credit_hold_files(connection, folder, as_of)
    return CreditHoldOutcome(
        as_of=as_of,
        new_holds=new_holds,
        held=held,
        released=released,
        open_holds=_count(connection, _OPEN_ON_SQL, {"as_of": as_of}),
        files=tuple(str(path) for path in files),
    )


def check_from_stage(
    connection: duckdb.DuckDBPyConnection, from_stage: str | None, *, nothing: str
) -> None:
    """Refuse a `from_stage` that no ladder has (a typo would silently hold nobody by stage)."""
    if from_stage is None:
        return
    stages = [
        stage
        for (stage,) in connection.execute(
            "select stage from policy.escalation_policy group by stage order by min(stage_order)"
        ).fetchall()
    ]
    if from_stage not in stages:
        raise CreditHoldSettingsError(
            f"recoup.yaml: credit_hold.from_stage is {from_stage!r}, and no escalation ladder "
            "(dbt_project/seeds/escalation_policy.csv) has that stage; use one of "
            f"{', '.join(stages)}, or null to hold by credit limit only; {nothing}."
        )


def _judge_accounts(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date,
    scope: ContactScope,
) -> None:
    """Every account of the scope with its facts on `as_of` and the criteria it meets, as the
    temp table `_credit_hold_accounts`."""
    scope_sql, scope_parameters = scope.sql("accounts")
    connection.execute(
        f"""
        create or replace temp table _credit_hold_accounts as
        with

        accounts as (
            select
                accounts.account_id,
                accounts.customer_id,
                accounts.segment,
                accounts.currency,
                accounts.account_status,
                accounts.credit_limit
            from marts.dim_accounts as accounts
            where {scope_sql}
        ),

        -- accounts with open items or a credit balance on the day; the others owe nothing
        history as (
            select
                account_id,
                currency,
                policy_version,
                policy_segment,
                stage,
                stage_order,
                total_open,
                collectible_amount,
                list_transform(
                    string_split(coalesce(hold_reason, ''), ','), lambda reason: trim(reason)
                ) as hold_reasons
            from marts.fct_account_stage_history
            where as_of_date = $as_of
        ),

        -- from_stage's place in each ladder (none when from_stage is null or not in it)
        thresholds as (
            select
                policy_version,
                segment as policy_segment,
                stage_order as from_order
            from policy.escalation_policy
            where stage = $from_stage
        ),

        facts as (
            select
                accounts.account_id,
                accounts.customer_id,
                accounts.account_status,
                accounts.credit_limit,
                coalesce(history.currency, accounts.currency) as currency,
                history.stage,
                coalesce(history.total_open, 0) as total_open,
                coalesce(history.collectible_amount, 0) as collectible_amount,
                coalesce(list_contains(history.hold_reasons, 'bankruptcy'), false)
                    as is_bankrupt,
                coalesce(history.collectible_amount, 0) > 0
                and coalesce(history.stage_order >= thresholds.from_order, false)
                    as is_past_stage,
                $over_limit
                and coalesce(history.collectible_amount, 0) > 0
                and coalesce(history.total_open > accounts.credit_limit, false)
                    as is_over_limit
            from accounts
            left join history
                on accounts.account_id = history.account_id
            left join thresholds
                on
                    history.policy_version = thresholds.policy_version
                    and history.policy_segment = thresholds.policy_segment
        )

        select
            facts.*,
            list_filter(
                [
                    case when facts.is_past_stage then '{STAGE_REASON_PREFIX}' || facts.stage end,
                    case when facts.is_over_limit then '{OVER_LIMIT_REASON}' end
                ],
                lambda reason: reason is not null
            ) as reasons,
            not facts.is_bankrupt and (facts.is_past_stage or facts.is_over_limit) as is_due
        from facts
        """,
        {
            "as_of": as_of,
            "from_stage": settings.credit_hold.from_stage,
            "over_limit": settings.credit_hold.over_credit_limit,
            **scope_parameters,
        },
    )


def _stage_changes(connection: duckdb.DuckDBPyConnection, as_of: dt.date) -> None:
    """The day's releases (`_releases`) and new holds (`_new_holds`), written nowhere yet."""
    connection.execute(
        """
        create or replace temp table _releases as
        select
            holds.hold_id,
            case
                when facts.is_bankrupt then 'bankruptcy_stay'
                when facts.total_open <= 0 and facts.account_status = 'closed'
                    then 'account_closed'
                when facts.total_open <= 0 then 'paid_in_full'
                when facts.collectible_amount <= 0 then 'disputed'
                else 'cured'
            end as release_reason,
            facts.total_open,
            facts.collectible_amount
        from ops.credit_holds as holds
        inner join _credit_hold_accounts as facts
            on holds.account_id = facts.account_id
        -- open holds from the day or before: a past date never judges a later hold, and a
        -- hold released after it keeps the release billing already has
        where
            holds.released_on is null
            and holds.held_on <= $as_of
            and not facts.is_due
        """,
        {"as_of": as_of},
    )
    connection.execute(
        f"""
        create or replace temp table _new_holds as
        select
            {HOLD_ID_SQL} as hold_id,
            facts.account_id,
            facts.customer_id,
            facts.reasons,
            facts.stage,
            facts.total_open,
            facts.collectible_amount,
            facts.credit_limit,
            facts.currency
        from _credit_hold_accounts as facts
        where
            facts.is_due
            -- at most one open hold per account, and none beside a hold open on the day
            and not exists (
                select 1
                from ops.credit_holds as holds
                where
                    holds.account_id = facts.account_id
                    and (
                        holds.released_on is null
                        or (holds.held_on <= $as_of and holds.released_on > $as_of)
                    )
            )
            -- released the same day it was held (a rerun): that hold stands, no second one
            and {HOLD_ID_SQL} not in (select holds.hold_id from ops.credit_holds as holds)
        """,
        {"as_of": as_of},
    )


def _apply_changes(
    connection: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    run_id: str,
    now: dt.datetime,
    folder: Path,
) -> None:
    """Write the staged releases and holds into the ledger, in one transaction."""
    connection.execute("begin transaction")
    try:
        connection.execute(
            f"""
            update ops.credit_holds as holds
            set
                released_on = $as_of,
                release_reason = releases.release_reason,
                release_id = {RELEASE_ID_SQL},
                released_run_id = $run_id,
                released_at = $now,
                released_total_open = releases.total_open,
                released_collectible_amount = releases.collectible_amount,
                release_file = $release_file
            from _releases as releases
            where holds.hold_id = releases.hold_id
            """,
            {
                "as_of": as_of,
                "run_id": run_id,
                "now": now,
                "release_file": str(folder / RELEASES_FILE),
            },
        )
        connection.execute(
            """
            insert into ops.credit_holds (
                hold_id, account_id, customer_id, held_on, reasons, stage, total_open,
                collectible_amount, credit_limit, currency, run_id, held_at, hold_file
            )
            select
                hold_id, account_id, customer_id, $as_of, reasons, stage, total_open,
                collectible_amount, credit_limit, currency, $run_id, $now, $hold_file
            from _new_holds
            on conflict do nothing
            """,
            {
                "as_of": as_of,
                "run_id": run_id,
                "now": now,
                "hold_file": str(folder / HOLDS_FILE),
            },
        )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise


_OPEN_ON_SQL = """
    select count(*) from ops.credit_holds
    where held_on <= $as_of and (released_on is null or released_on > $as_of)
"""


def write_credit_hold_files(
    connection: duckdb.DuckDBPyConnection, folder: Path, as_of: dt.date
) -> list[Path]:
    """Rewrite the day's three files whole from the ledger (every account, whatever a run's
    scope): holds held on `as_of`, holds released on it, and holds open on it."""
    hold_select = """
        select
            account_id, customer_id, held_on, reasons, stage, total_open, credit_limit,
            currency, hold_id
        from ops.credit_holds
    """
    holds = connection.execute(
        f"{hold_select} where held_on = $as_of order by account_id, hold_id", {"as_of": as_of}
    ).fetchall()
    open_holds = connection.execute(
        f"{hold_select} where held_on <= $as_of "
        "and (released_on is null or released_on > $as_of) order by account_id, hold_id",
        {"as_of": as_of},
    ).fetchall()
    releases = connection.execute(
        """
        select
            account_id, customer_id, held_on, released_on, release_reason,
            released_total_open, currency, hold_id
        from ops.credit_holds
        where released_on = $as_of
        order by account_id, hold_id
        """,
        {"as_of": as_of},
    ).fetchall()
    return [
        write_atomically(folder / HOLDS_FILE, csv_bytes(HOLD_COLUMNS, _hold_lines(holds))),
        write_atomically(
            folder / RELEASES_FILE, csv_bytes(RELEASE_COLUMNS, _release_lines(releases))
        ),
        write_atomically(
            folder / OPEN_HOLDS_FILE, csv_bytes(HOLD_COLUMNS, _hold_lines(open_holds))
        ),
    ]


def _hold_lines(rows: Sequence[tuple]) -> list[tuple[object, ...]]:
    """Ledger rows in HOLD_COLUMNS order as CSV cells."""
    lines = []
    for account_id, customer_id, held_on, reasons, stage, total_open, limit, currency, key in rows:
        lines.append(
            (
                account_id,
                customer_id,
                held_on.isoformat(),
                REASON_SEPARATOR.join(reasons),
                stage or "",
                _money(total_open),
                _money(limit),
                currency,
                key,
            )
        )
    return lines


def _release_lines(rows: Sequence[tuple]) -> list[tuple[object, ...]]:
    """Ledger rows in RELEASE_COLUMNS order as CSV cells."""
    lines = []
    for account_id, customer_id, held_on, released_on, reason, total_open, currency, key in rows:
        lines.append(
            (
                account_id,
                customer_id,
                held_on.isoformat(),
                released_on.isoformat(),
                reason,
                _money(total_open),
                currency,
                key,
            )
        )
    return lines


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _count(
    connection: duckdb.DuckDBPyConnection, sql: str, parameters: dict[str, object] | None = None
) -> int:
    return int(connection.execute(sql, parameters or {}).fetchall()[0][0])


def _counts(connection: duckdb.DuckDBPyConnection, sql: str) -> dict[str, int]:
    return {key: int(n) for key, n in connection.execute(sql).fetchall()}
