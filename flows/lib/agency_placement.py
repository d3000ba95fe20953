"""Agency placement and recall: accounts at the end of the ladder → one collection agency each,
and placed accounts that must come back → recalled. The agency ledger (`ops.placements`,
`ops.placement_log`, see `flows/lib/placements.py`) is where exactly-once lives; the files are
a projection of it. Layouts, columns and file names: docs/agency-files.md.

Each run, for its as-of date, in this order:

1. **Recall** every open placement (whatever the run's scope) for the first reason that applies
   on the as-of date:
   - `bankruptcy`, `deceased`, `fraud`, `legal_hold`, `cease_communication`,
     `attorney_represented`: the account is held for it (fct_account_stage_history.hold_reason;
     `placed_with_agency`, the hold a placement itself causes, does not count);
   - `paid_in_full`: no open balance (no fct_account_aging row, or total_open = 0);
   - `nothing_collectible`: an open balance that is all disputed (collectible_amount = 0);
   - `disputed`: an open dispute (fct_disputes);
   - `placement_period_ended`: placed_date + the agency's max_placement_days <= as-of date.
   Reg F 1006.30(b) forbids placing a debt that is paid, discharged in bankruptcy or subject
   to identity theft; holding on to a placement then is the same act, so these come back.
2. **Place** the accounts (within the run's scope) whose stage on the as-of date is an agency
   stage (stage_channel `agency`), that are not held (other than by `placed_with_agency`),
   have a collectible balance and no open placement. Not placed, and counted with the reason:
   - `open_dispute`: the account has an open dispute; the recall above would bring it back at
     once, and an agency must not collect a disputed debt;
   - `placed_before`: the account was placed before and recalled for any reason but
     `placement_period_ended` (a paid, disputed or bankrupt account is never sent out again);
   - `no_agency_takes_it`: no agency's rules take it (below), or every agency that does had it
     before: after `placement_period_ended` an account goes only to an agency that never had it.
3. **Write the files** of the day: `out/agencies/<agency_id>/<as-of>/placements.csv` and
   `recalls.csv`, each holding every placement (recall) of that agency dated the as-of date,
   rewritten whole from the ledger, so a rerun of the day never repeats a row or loses one.

**Which agencies take an account**: its segment is in the agency's `segments`, its currency in
`currencies`, its customer's state (dim_customers.state) in `states` (each: empty = all), its
collectible amount is at least `min_balance`, and the agency's `share` is above 0 (share 0
pauses an agency: it keeps its open placements and takes no new ones).

**Which one of them** (`choose_agency`) depends only on the account id and the set of agencies
that take it, never on the order of the config or on earlier runs: the account id is hashed
(the first 8 bytes of its SHA-256, a number spread evenly), and the agencies are ordered by id.

- `split: share` (champion/challenger): the hash modulo the total share of those agencies is a
  point in [0, total share); each agency owns a stretch as long as its share, so agencies with
  shares 2 and 1 get about two thirds and one third of the new placements.
- `split: round_robin`: the hash modulo the number of those agencies picks one, so each gets
  an even part. It spreads like taking turns without depending on the order accounts arrive
  in, which keeps it deterministic; the shares' sizes play no part (only share 0 pauses).

A rerun of the day places nothing new: an account with an open placement is no candidate, and
the placement id (account, agency, date) is the primary key (`on conflict do nothing`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from flows.lib.bureau_records import LATEST_DOFD_SQL, ensure_bureau_schema
from flows.lib.config import AgencySettings, Settings
from flows.lib.contact_data import require_build_for
from flows.lib.output_files import csv_bytes, write_atomically
from flows.lib.placements import PLACEMENT_ID_SQL
from flows.lib.planner import ALL_ACCOUNTS, ContactScope

AGENCY_CHANNEL = "agency"
PLACED_HOLD = "placed_with_agency"  # the hold a placement causes (dbt); never a recall reason
# holds that recall a placement, in the order they are named when several apply
HOLD_RECALL_REASONS = (
    "bankruptcy",
    "deceased",
    "fraud",
    "legal_hold",
    "cease_communication",
    "attorney_represented",
)
BALANCE_RECALL_REASONS = ("paid_in_full", "nothing_collectible", "disputed")
PERIOD_ENDED = "placement_period_ended"
RECALL_REASONS = (*HOLD_RECALL_REASONS, *BALANCE_RECALL_REASONS, PERIOD_ENDED)
NOT_PLACED_REASONS = ("open_dispute", "placed_before", "no_agency_takes_it")
DEFAULT_LAYOUT_VERSION = "1"  # for an agency no longer in the config

PLACEMENT_HEADER = (
    "layout_version",
    "placement_id",
    "placed_date",
    "agency_id",
    "original_creditor",
    "account_id",
    "customer_id",
    "customer_type",
    "full_name",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "phone",
    "email",
    "language",
    "do_not_call",
    "email_opted_out",
    "currency",
    "balance",
    "principal",
    "interest_since",
    "fees_since",
    "payments_since",
    "credits_since",
    "itemization_date",
    "first_delinquency_date",
    "last_payment_date",
    "days_past_due",
    "disputed_amount",
    "commission_rate",
)
RECALL_HEADER = (
    "layout_version",
    "placement_id",
    "recalled_date",
    "agency_id",
    "account_id",
    "reason",
    "balance",
    "recall_contact",
)

_CHOSEN_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("agency_id", pa.string()),
        ("commission_rate", pa.decimal128(6, 4)),
    ]
)


@dataclass(frozen=True)
class PlacementOutcome:
    """What one run's placement step did."""

    placed: dict[str, int] = field(default_factory=dict)  # new placements per agency id
    recalled: dict[str, int] = field(default_factory=dict)  # recalls per reason
    not_placed: dict[str, int] = field(default_factory=dict)  # candidates left, per reason
    files: list[str] = field(default_factory=list)  # placement and recall files (re)written

    @property
    def total_placed(self) -> int:
        return sum(self.placed.values())

    @property
    def total_recalled(self) -> int:
        return sum(self.recalled.values())

    def __str__(self) -> str:
        def listed(counts: dict[str, int]) -> str:
            inner = ", ".join(f"{key} {n:,}" for key, n in sorted(counts.items()))
            return f"{sum(counts.values()):,}" + (f" ({inner})" if inner else "")

        return (
            f"placed {listed(self.placed)}; recalled {listed(self.recalled)}; "
            f"not placed {listed(self.not_placed)}"
        )


def place_and_recall(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    *,
    as_of: dt.date,
    run_id: str,
    now: dt.datetime,
    scope: ContactScope = ALL_ACCOUNTS,
) -> PlacementOutcome:
    """Recall the placements that must come back, place the accounts that are due, and write
    the day's placement and recall files; what was done."""
    # an account missing from another day's marts would look paid and be recalled, and a
    # placement would carry that day's itemization
    require_build_for(
        connection,
        as_of,
        would=f"placing and recalling for {as_of} would read another day's balances",
        nothing="nothing was placed or recalled",
    )
    ensure_bureau_schema(connection)  # placements carry the DOFD the bureaus hold
    agencies = {agency.id: agency for agency in settings.placement.agencies}
    root = settings.path("out") / "agencies"
    _stage_agencies(connection, settings.placement.agencies)
    try:
        recalled = _recall_placements(connection, as_of=as_of, run_id=run_id, now=now, root=root)
        candidates = _placement_candidates(connection, as_of=as_of, scope=scope)
    finally:
        connection.execute("drop table if exists _agencies")
    not_placed: dict[str, int] = {}
    chosen: list[dict[str, object]] = []
    for account_id, days_past_due, blocked_reason, agency_ids in candidates:
        agency = (
            None
            if blocked_reason
            else choose_agency(
                account_id, [agencies[each] for each in agency_ids], settings.placement.split
            )
        )
        if agency is None:
            reason = blocked_reason or "no_agency_takes_it"
            not_placed[reason] = not_placed.get(reason, 0) + 1
            continue
        chosen.append(
            {
                "account_id": account_id,
                "agency_id": agency.id,
                "commission_rate": agency.rate_for(days_past_due),
            }
        )
    placed = _insert_placements(connection, chosen, as_of=as_of, run_id=run_id, now=now, root=root)
    files = write_placement_files(connection, settings, as_of=as_of)
    files += write_recall_files(connection, settings, as_of=as_of)
    return PlacementOutcome(
        placed=placed, recalled=recalled, not_placed=not_placed, files=[str(f) for f in files]
    )


def account_hash(account_id: str) -> int:
    """A number spread evenly over 0..2^64-1, the same for the same account id everywhere."""
    digest = hashlib.sha256(account_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def choose_agency(
    account_id: str,
    eligible: Sequence[AgencySettings],
    split: Literal["share", "round_robin"],
) -> AgencySettings | None:
    """The one agency among those that take the account (see the module docstring); None when
    none does. The same account and the same set of agencies always give the same agency."""
    ordered = sorted((agency for agency in eligible if agency.share > 0), key=lambda a: a.id)
    if not ordered:
        return None
    point = account_hash(account_id)
    if split == "round_robin":
        return ordered[point % len(ordered)]
    point %= sum(agency.share for agency in ordered)
    for agency in ordered:
        if point < agency.share:
            return agency
        point -= agency.share
    raise AssertionError("unreachable: the point lies below the total share")


def agency_file(root: Path, agency_id: str, as_of: dt.date, kind: str) -> Path:
    """out/agencies/<agency_id>/<as-of>/<kind>.csv (kind: placements or recalls)."""
    return root / agency_id / as_of.isoformat() / f"{kind}.csv"


def _file_sql(kind: str) -> str:
    """`agency_file` in SQL, over `agency_id` and the parameters $root and $day."""
    return f"concat_ws('/', $root, agency_id, $day, '{kind}.csv')"


def _hold_reasons_sql(column: str) -> str:
    """A comma-separated hold_reason as a list, without `placed_with_agency`."""
    return (
        f"list_filter(list_transform(string_split(coalesce({column}, ''), ','), "
        f"lambda reason: trim(reason)), lambda reason: reason not in ('', '{PLACED_HOLD}'))"
    )


def _stage_agencies(
    connection: duckdb.DuckDBPyConnection, agencies: Sequence[AgencySettings]
) -> None:
    """The configured agencies and their rules as the temp table `_agencies`."""
    connection.execute(
        """
        create or replace temp table _agencies (
            agency_id VARCHAR PRIMARY KEY,
            segments VARCHAR[] NOT NULL,
            currencies VARCHAR[] NOT NULL,
            states VARCHAR[] NOT NULL,
            min_balance DECIMAL(18,2) NOT NULL,
            max_placement_days INTEGER NOT NULL,
            share INTEGER NOT NULL
        )
        """
    )
    if not agencies:
        return
    connection.executemany(
        "insert into _agencies values (?, ?, ?, ?, ?, ?, ?)",
        [
            [
                agency.id,
                list(agency.segments),
                list(agency.currencies),
                [state.strip().upper() for state in agency.states],
                agency.min_balance,
                agency.max_placement_days,
                agency.share,
            ]
            for agency in agencies
        ],
    )


def _recall_placements(
    connection: duckdb.DuckDBPyConnection,
    *,
    as_of: dt.date,
    run_id: str,
    now: dt.datetime,
    root: Path,
) -> dict[str, int]:
    """Close every open placement that must come back (first reason that applies); recalls
    per reason. Needs `_agencies` (the period ends only for agencies still configured)."""
    hold_cases = "\n".join(
        f"when list_contains(holds.hold_reasons, '{reason}') then '{reason}'"
        for reason in HOLD_RECALL_REASONS
    )
    connection.execute(
        f"""
        create or replace temp table _recalls as
        with

        open_placements as (
            select
                placements.placement_id,
                placements.account_id,
                placements.agency_id,
                placements.placed_date,
                agencies.max_placement_days
            from ops.placements as placements
            left join _agencies as agencies
                on placements.agency_id = agencies.agency_id
            -- a rerun for an earlier date leaves later placements alone
            where placements.status = 'open' and placements.placed_date <= $as_of
        ),

        holds as (
            select
                account_id,
                {_hold_reasons_sql("hold_reason")} as hold_reasons
            from marts.fct_account_stage_history
            where as_of_date = $as_of
        ),

        aging as (
            select
                account_id,
                total_open,
                collectible_amount
            from marts.fct_account_aging
            where as_of_date = $as_of
        ),

        open_disputes as (
            select distinct account_id
            from marts.fct_disputes
            where dispute_status = 'open' and opened_date <= $as_of
        ),

        judged as (
            select
                open_placements.placement_id,
                open_placements.agency_id,
                case
                    {hold_cases}
                    when aging.account_id is null or aging.total_open <= 0 then 'paid_in_full'
                    when aging.collectible_amount <= 0 then 'nothing_collectible'
                    when open_disputes.account_id is not null then 'disputed'
                    when open_placements.placed_date + open_placements.max_placement_days
                        <= $as_of then '{PERIOD_ENDED}'
                end as recall_reason
            from open_placements
            left join holds
                on open_placements.account_id = holds.account_id
            left join aging
                on open_placements.account_id = aging.account_id
            left join open_disputes
                on open_placements.account_id = open_disputes.account_id
        )

        select
            placement_id,
            recall_reason,
            {_file_sql("recalls")} as recall_file
        from judged
        where recall_reason is not null
        """,
        {"as_of": as_of, "root": str(root), "day": as_of.isoformat()},
    )
    connection.execute("begin transaction")
    try:
        connection.execute(
            """
            update ops.placements as placements
            set
                status = 'recalled',
                recalled_date = $as_of,
                recall_reason = recalls.recall_reason,
                recall_file = recalls.recall_file
            from _recalls as recalls
            where placements.placement_id = recalls.placement_id
            """,
            {"as_of": as_of},
        )
        connection.execute(
            """
            insert into ops.placement_log
            select placement_id, $now, $run_id, 'recalled', $as_of, recall_reason
            from _recalls
            """,
            {"now": now, "run_id": run_id, "as_of": as_of},
        )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    counts = dict(
        connection.execute(
            "select recall_reason, count(*) from _recalls group by 1 order by 1"
        ).fetchall()
    )
    connection.execute("drop table _recalls")
    return counts


def _placement_candidates(
    connection: duckdb.DuckDBPyConnection, *, as_of: dt.date, scope: ContactScope
) -> list[tuple[str, int, str | None, list[str]]]:
    """The accounts due for placement today: (account id, days past due, why it may not be
    placed or None, the ids of the agencies that take it, sorted). Needs `_agencies`."""
    scope_sql, scope_parameters = scope.sql("stages")
    return connection.execute(
        f"""
        with

        stages as (
            select
                stages.account_id,
                stages.customer_id,
                stages.segment,
                stages.currency,
                stages.collectible_amount,
                stages.max_days_past_due
            from marts.fct_account_stage_history as stages
            where
                stages.as_of_date = $as_of
                and stages.stage_channel = '{AGENCY_CHANNEL}'
                and stages.collectible_amount > 0
                -- held for anything but the placement itself (held with no reason: held)
                and (
                    not stages.is_held
                    or (
                        stages.hold_reason is not null
                        and len({_hold_reasons_sql("stages.hold_reason")}) = 0
                    )
                )
                and {scope_sql}
        ),

        customers as (
            select
                customer_id,
                upper(trim(state)) as state
            from marts.dim_customers
        ),

        earlier_placements as (
            select
                account_id,
                bool_or(status = 'open') as is_open,
                -- only the end of the placement period lets an account go out again
                bool_or(
                    status <> 'open' and coalesce(recall_reason, '') <> '{PERIOD_ENDED}'
                ) as is_closed_for_good,
                list(distinct agency_id) as agency_ids
            from ops.placements
            group by account_id
        ),

        open_disputes as (
            select distinct account_id
            from marts.fct_disputes
            where dispute_status = 'open' and opened_date <= $as_of
        ),

        candidates as (
            select
                stages.*,
                customers.state,
                coalesce(earlier_placements.agency_ids, []) as earlier_agency_ids,
                case
                    when open_disputes.account_id is not null then 'open_dispute'
                    when earlier_placements.is_closed_for_good then 'placed_before'
                end as blocked_reason
            from stages
            left join customers
                on stages.customer_id = customers.customer_id
            left join earlier_placements
                on stages.account_id = earlier_placements.account_id
            left join open_disputes
                on stages.account_id = open_disputes.account_id
            where not coalesce(earlier_placements.is_open, false)
        ),

        takers as (
            select
                candidates.account_id,
                agencies.agency_id
            from candidates
            inner join _agencies as agencies
                on
                    -- an empty list of segments, currencies or states: every one
                    (
                        len(agencies.segments) = 0
                        or list_contains(agencies.segments, candidates.segment)
                    )
                    and (
                        len(agencies.currencies) = 0
                        or list_contains(agencies.currencies, candidates.currency)
                    )
                    and (
                        len(agencies.states) = 0
                        or list_contains(agencies.states, candidates.state)
                    )
                    and candidates.collectible_amount >= agencies.min_balance
                    and agencies.share > 0
                    and not list_contains(candidates.earlier_agency_ids, agencies.agency_id)
            where candidates.blocked_reason is null
        )

        select
            candidates.account_id,
            candidates.max_days_past_due,
            candidates.blocked_reason,
            coalesce(
                list(takers.agency_id order by takers.agency_id)
                    filter (where takers.agency_id is not null),
                []
            ) as agency_ids
        from candidates
        left join takers
            on candidates.account_id = takers.account_id
        group by candidates.account_id, candidates.max_days_past_due, candidates.blocked_reason
        order by candidates.account_id
        """,
        {"as_of": as_of, **scope_parameters},
    ).fetchall()


def _insert_placements(
    connection: duckdb.DuckDBPyConnection,
    chosen: list[dict[str, object]],
    *,
    as_of: dt.date,
    run_id: str,
    now: dt.datetime,
    root: Path,
) -> dict[str, int]:
    """Write the chosen placements with the day's amounts and log them; new ones per agency."""
    if not chosen:
        return {}
    connection.register("_chosen_arrow", pa.Table.from_pylist(chosen, schema=_CHOSEN_SCHEMA))
    try:
        connection.execute(
            f"""
            create or replace temp table _new_placements as
            with

            chosen as (
                select * from _chosen_arrow
            ),

            stages as (
                select
                    account_id,
                    customer_id,
                    currency,
                    collectible_amount,
                    max_days_past_due
                from marts.fct_account_stage_history
                where as_of_date = $as_of
            ),

            aging as (
                select
                    account_id,
                    oldest_due_date
                from marts.fct_account_aging
                where as_of_date = $as_of
            ),

            reported as ({LATEST_DOFD_SQL}),

            itemization as (
                select
                    account_id,
                    itemization_date,
                    amount_on_itemization_date,
                    interest_since,
                    fees_since,
                    payments_since,
                    credits_since
                from marts.fct_account_itemization
                where as_of_date = $as_of
            ),

            payments as (
                select
                    payment_id,
                    account_id,
                    received_date,
                    reverses_payment_id
                from raw.payments_latest
                where
                    received_date <= $as_of
                    and account_id in (select chosen.account_id from chosen)
            ),

            -- a payment counts unless it is a reversal or was reversed by the as-of date
            last_payments as (
                select
                    account_id,
                    max(received_date) as last_payment_date
                from payments
                where
                    reverses_payment_id is null
                    and payment_id not in (
                        select reversals.reverses_payment_id
                        from payments as reversals
                        where reversals.reverses_payment_id is not null
                    )
                group by account_id
            ),

            placed as (
                select
                    chosen.account_id,
                    chosen.agency_id,
                    $as_of::date as placed_date,
                    stages.customer_id,
                    stages.currency,
                    stages.collectible_amount as placed_balance,
                    itemization.amount_on_itemization_date as principal,
                    itemization.fees_since as fees,
                    itemization.interest_since as interest,
                    itemization.payments_since,
                    itemization.credits_since,
                    itemization.itemization_date,
                    -- the DOFD the credit bureaus hold (Metro 2: never re-aged); not reported
                    -- yet: the day the oldest open item was 30 days past due, as the bureau
                    -- file computes it
                    coalesce(
                        reported.date_of_first_delinquency, aging.oldest_due_date + 30
                    ) as first_delinquency_date,
                    last_payments.last_payment_date,
                    stages.max_days_past_due as days_past_due,
                    chosen.commission_rate
                from chosen
                inner join stages
                    on chosen.account_id = stages.account_id
                left join aging
                    on chosen.account_id = aging.account_id
                left join itemization
                    on chosen.account_id = itemization.account_id
                left join reported
                    on chosen.account_id = reported.account_id
                left join last_payments
                    on chosen.account_id = last_payments.account_id
            ),

            keyed as (
                select
                    {PLACEMENT_ID_SQL} as placement_id,
                    placed.*,
                    {_file_sql("placements")} as placement_file
                from placed
            )

            -- a rerun of the day: what is already in the ledger stays as it is
            select * from keyed
            where placement_id not in (select placements.placement_id from ops.placements)
            """,
            {
                "as_of": as_of,
                "root": str(root),
                "day": as_of.isoformat(),
                "period": f"{as_of:%Y-%m}",
            },
        )
    finally:
        connection.unregister("_chosen_arrow")
    connection.execute("begin transaction")
    try:
        connection.execute(
            """
            insert into ops.placements (
                placement_id, account_id, customer_id, agency_id, status, placed_date,
                placed_run_id, currency, placed_balance, principal, fees, interest,
                payments_since, credits_since, itemization_date, first_delinquency_date,
                last_payment_date, days_past_due, commission_rate, placement_file
            )
            select
                placement_id, account_id, customer_id, agency_id, 'open', placed_date,
                $run_id, currency, placed_balance, principal, fees, interest,
                payments_since, credits_since, itemization_date, first_delinquency_date,
                last_payment_date, days_past_due, commission_rate, placement_file
            from _new_placements
            on conflict do nothing
            """,
            {"run_id": run_id},
        )
        connection.execute(
            """
            insert into ops.placement_log
            select placement_id, $now, $run_id, 'placed', placed_date, null
            from _new_placements
            """,
            {"now": now, "run_id": run_id},
        )
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    counts = dict(
        connection.execute(
            "select agency_id, count(*) from _new_placements group by 1 order by 1"
        ).fetchall()
    )
    connection.execute("drop table _new_placements")
    return counts


def write_placement_files(
    connection: duckdb.DuckDBPyConnection, settings: Settings, *, as_of: dt.date
) -> list[Path]:
    """Rewrite each agency's placements.csv of the day from every placement dated `as_of`."""
    rows = connection.execute(
        """
        with

        placements as (
            select * from ops.placements
            where placed_date = $as_of
        ),

        stages as (
            select
                account_id,
                disputed_amount,
                list_contains(
                    list_transform(
                        string_split(coalesce(contact_restrictions, ''), ','),
                        lambda flag: trim(flag)
                    ),
                    'do_not_call'
                ) as is_do_not_call
            from marts.fct_account_stage_history
            where as_of_date = $as_of
        ),

        customers as (
            select * from marts.dim_customers
        ),

        suppressions as (
            select distinct lower(trim(email)) as email
            from ops.email_suppressions
        )

        select
            placements.agency_id,
            placements.placement_id,
            placements.placed_date,
            placements.account_id,
            placements.customer_id,
            customers.customer_type,
            customers.full_name,
            customers.address_line1,
            customers.address_line2,
            customers.city,
            customers.state,
            customers.postal_code,
            customers.country,
            customers.phone,
            customers.email,
            customers.language,
            coalesce(stages.is_do_not_call, false) as is_do_not_call,
            suppressions.email is not null as is_email_opted_out,
            placements.currency,
            placements.placed_balance,
            placements.principal,
            placements.interest,
            placements.fees,
            placements.payments_since,
            placements.credits_since,
            placements.itemization_date,
            placements.first_delinquency_date,
            placements.last_payment_date,
            placements.days_past_due,
            coalesce(stages.disputed_amount, 0) as disputed_amount,
            placements.commission_rate
        from placements
        left join customers
            on placements.customer_id = customers.customer_id
        left join stages
            on placements.account_id = stages.account_id
        left join suppressions
            on lower(trim(customers.email)) = suppressions.email
        order by placements.agency_id, placements.account_id, placements.placement_id
        """,
        {"as_of": as_of},
    ).fetchall()
    agencies = {agency.id: agency for agency in settings.placement.agencies}
    by_agency: dict[str, list[tuple[object, ...]]] = {}
    for (
        agency_id, placement_id, placed_date, account_id, customer_id, customer_type, full_name,
        address_line1, address_line2, city, state, postal_code, country, phone, email, language,
        is_do_not_call, is_email_opted_out, currency, balance, principal, interest, fees,
        payments_since, credits_since, itemization_date, first_delinquency_date,
        last_payment_date, days_past_due, disputed_amount, commission_rate,
    ) in rows:  # fmt: skip
        by_agency.setdefault(agency_id, []).append(
            (
                _layout_version(agencies.get(agency_id)),
                placement_id,
                _date(placed_date),
                agency_id,
                settings.company.name,
                account_id,
                customer_id,
                customer_type,
                full_name,
                address_line1,
                address_line2,
                city,
                state,
                postal_code,
                country,
                phone,
                email,
                language,
                _flag(is_do_not_call),
                _flag(is_email_opted_out),
                currency,
                _money(balance),
                _money(principal),
                _money(interest),
                _money(fees),
                _money(payments_since),
                _money(credits_since),
                _date(itemization_date),
                _date(first_delinquency_date),
                _date(last_payment_date),
                days_past_due,
                _money(disputed_amount),
                _rate(commission_rate),
            )
        )
    root = settings.path("out") / "agencies"
    return [
        write_atomically(
            agency_file(root, agency_id, as_of, "placements"), csv_bytes(PLACEMENT_HEADER, lines)
        )
        for agency_id, lines in by_agency.items()
    ]


def write_recall_files(
    connection: duckdb.DuckDBPyConnection, settings: Settings, *, as_of: dt.date
) -> list[Path]:
    """Rewrite each agency's recalls.csv of the day from every placement recalled `as_of`."""
    rows = connection.execute(
        """
        with

        recalled as (
            select
                placement_id,
                agency_id,
                account_id,
                recalled_date,
                recall_reason
            from ops.placements
            where recalled_date = $as_of
        ),

        aging as (
            select
                account_id,
                collectible_amount
            from marts.fct_account_aging
            where as_of_date = $as_of
        )

        select
            recalled.agency_id,
            recalled.placement_id,
            recalled.recalled_date,
            recalled.account_id,
            recalled.recall_reason,
            coalesce(aging.collectible_amount, 0) as balance
        from recalled
        left join aging
            on recalled.account_id = aging.account_id
        order by recalled.agency_id, recalled.account_id, recalled.placement_id
        """,
        {"as_of": as_of},
    ).fetchall()
    agencies = {agency.id: agency for agency in settings.placement.agencies}
    by_agency: dict[str, list[tuple[object, ...]]] = {}
    for agency_id, placement_id, recalled_date, account_id, reason, balance in rows:
        agency = agencies.get(agency_id)
        by_agency.setdefault(agency_id, []).append(
            (
                _layout_version(agency),
                placement_id,
                _date(recalled_date),
                agency_id,
                account_id,
                reason,
                _money(max(balance, Decimal("0"))),
                agency.recall_contact if agency else "",
            )
        )
    root = settings.path("out") / "agencies"
    return [
        write_atomically(
            agency_file(root, agency_id, as_of, "recalls"), csv_bytes(RECALL_HEADER, lines)
        )
        for agency_id, lines in by_agency.items()
    ]


def _layout_version(agency: AgencySettings | None) -> str:
    return agency.layout_version if agency else DEFAULT_LAYOUT_VERSION


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _rate(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _date(value: dt.date | None) -> str:
    return "" if value is None else value.isoformat()


def _flag(value: bool | None) -> str:
    return "true" if value else "false"
