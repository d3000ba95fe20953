"""What the monthly Metro 2 file says about each account, in one set-based query.

`bureau_rows` returns one row per account that has something to report for the period (or is
held from reporting, with the reason), every Metro 2 field already decided. The rules are in
docs/credit-bureau.md; in short:

- **Date of account information (DOAI)**: the last date in the period the marts were built
  for. Balances are that day's `marts.fct_account_aging`; no row that day means nothing owed.
- **Who is reported**: consumer accounts in US dollars with a US address, that owe something on
  the DOAI, or were reported before and not yet closed out (a paid, closed or deleted account
  gets one last record). Business customers, other currencies and countries are out of scope.
- **Held from reporting** (with a reason, counted, never in the file): no SSN and no date of
  birth; no usable name or address; a fraud flag (unless the account was reported open: then
  one DF record deletes it at the bureaus); an obsolete
  debt (DOFD more than 7 years and 180 days back, FCRA 605(c)); in third-party mode, an account
  not yet contacted by letter or email at least `furnish_wait_days` before (Reg F 1006.30(a)).
- **Account status**, first party: 11 current, 71/78/80/82/83/84 by days past due, 93 while
  placed with an agency or at the agency stage, 97 when written off (charged off); when the
  balance reaches zero: 64 after a charge-off, 62 after collection, 13 when closed in billing
  or settled, else 11 (open, current at zero); DF once for a confirmed fraud. Third party
  (an agency's own tradeline, account type 48 with K1): 93 open, 62 paid, DF.
- **DOFD**: the first day the current delinquency was 30 days past due, from the aging history
  (each day's oldest open due date + 30, over the run of days at 30+ days past due that ends on
  the DOAI); once a delinquent record reported it, it never changes (ops.bureau_records)
  until a current or closing record ends the delinquency.
- **Payment history profile**: the 24 months before the period, newest first: the status
  reported for that month if there was one, else B before the account was opened, L once
  written off, D for a month without a build, else the month's last aging row (0-6 by days
  past due, G at the agency stages; no row: 0).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

NOT_REPORTED_REASONS = (
    "no_ssn_or_date_of_birth",
    "incomplete_name_or_address",
    "fraud",
    "obsolete",
    "not_contacted_yet",
)
TERMINAL_STATUSES = ("13", "62", "64", "DA", "DF")
# Metro 2's delinquency ladder (reference §4.1-§4.3): from this many days past due, the
# account status and the payment rating / history profile symbol
DELINQUENCY_LADDER = (
    (180, "84", "6"), (150, "83", "5"), (120, "82", "4"), (90, "80", "3"), (60, "78", "2"),
    (30, "71", "1"),
)  # fmt: skip
# an open delinquency: the next record keeps its DOFD (and closing it as 13, 62 or 64 does too)
DELINQUENT_STATUSES = ("71", "78", "80", "82", "83", "84", "93", "97")
# the reason text on a write_off or credit_note that makes it a settlement ("paid for less")
SETTLEMENT_REASON_PATTERN = "%settle%"

# every date the marts were built for: recorded builds, and the dates the aging history holds
BUILD_DATES_SQL = """
    select as_of_date from ops.builds
    union
    select distinct as_of_date from marts.fct_account_aging
"""

BUREAU_ROWS_SQL = """
with

params as (
    select
        $period::varchar as period,
        $period_start::date as period_start,
        $doai::date as doai,
        $third_party::boolean as third_party,
        $wait_days::integer as wait_days
),

accounts as (
    select
        accounts.account_id,
        accounts.customer_id,
        accounts.currency,
        accounts.segment,
        accounts.account_status as billing_status,
        accounts.credit_limit,
        accounts.opened_date,
        customers.customer_type,
        customers.full_name,
        -- what the billing system sent: a skip-trace result is not reported to the bureaus
        customers.billing_phone as phone,
        customers.billing_address_line1 as address_line1,
        customers.billing_address_line2 as address_line2,
        customers.billing_city as city,
        customers.billing_state as state,
        customers.billing_postal_code as postal_code,
        customers.billing_country as country
    from marts.dim_accounts as accounts
    inner join marts.dim_customers as customers
        on accounts.customer_id = customers.customer_id
),

aging as (
    select *
    from marts.fct_account_aging
    where as_of_date = (select doai from params)
),

previous as (
    -- the latest record of an earlier period: what the bureaus hold
    select *
    from ops.bureau_records
    where period < (select period from params)
    qualify row_number() over (partition by account_id order by period desc) = 1
),

recovered as (
    -- a charge-off reported paid (64) is over: only later write-offs charge off again
    select account_id, max(date_of_account_information) as recovered_on
    from ops.bureau_records
    where account_status = '64' and period < (select period from params)
    group by account_id
),

adjustments as (
    select
        adjustments.account_id,
        sum(amount) filter (
            where adjustment_kind = 'write_off'
            and coalesce(reason, '') not ilike $settlement_pattern
            and effective_date > coalesce(recovered.recovered_on, date '0001-01-01')
        ) as charged_off,
        min(effective_date) filter (
            where adjustment_kind = 'write_off'
            and coalesce(reason, '') not ilike $settlement_pattern
            and effective_date > coalesce(recovered.recovered_on, date '0001-01-01')
        ) as charged_off_on,
        sum(amount) filter (
            where adjustment_kind in ('write_off', 'credit_note')
            and reason ilike $settlement_pattern
            and effective_date >= (select period_start from params)
        ) as settled_this_period
    from staging.stg_billing__adjustments as adjustments
    left join recovered
        on adjustments.account_id = recovered.account_id
    where effective_date <= (select doai from params)
    group by adjustments.account_id
),

billing_payments as (
    select payments.account_id, payments.received_date, payments.amount
    from staging.stg_billing__payments as payments
    where not payments.is_reversal
        and payments.received_date <= (select doai from params)
        and not exists (
            select 1
            from staging.stg_billing__payments as reversals
            where reversals.is_reversal
                and reversals.reverses_payment_id = payments.payment_id
                and reversals.received_date <= (select doai from params)
        )
),

all_payments as (
    select * from billing_payments
    union all
    -- what agencies collected that the billing export does not hold
    select account_id, paid_date as received_date, collected_amount as amount
    from marts.fct_remittance_reconciliation
    where reconciliation_status = 'agency_only'
        and paid_date <= (select doai from params)
),

payments as (
    select
        account_id,
        max(received_date) as last_payment_date,
        sum(amount) filter (
            where received_date >= (select period_start from params)
        ) as paid_this_period
    from all_payments
    group by account_id
),

account_flags as (
    -- a flag names one account, or (account_id null) every account of the customer
    select flags.account_id, flags.flag, flags.start_date
    from staging.stg_billing__account_flags as flags
    where flags.account_id is not null
        and flags.start_date <= (select doai from params)
        and (flags.end_date is null or flags.end_date > (select doai from params))
    union all
    select accounts.account_id, flags.flag, flags.start_date
    from staging.stg_billing__account_flags as flags
    inner join accounts
        on flags.customer_id = accounts.customer_id
    where flags.account_id is null
        and flags.start_date <= (select doai from params)
        and (flags.end_date is null or flags.end_date > (select doai from params))
),

flags as (
    select
        account_id,
        bool_or(flag = 'bankruptcy') as is_bankrupt,
        min(start_date) filter (where flag = 'bankruptcy') as bankruptcy_date,
        bool_or(flag = 'deceased') as is_deceased,
        bool_or(flag = 'fraud') as is_fraud
    from account_flags
    group by account_id
),

disputes as (
    select
        account_id,
        bool_or(
            resolved_date is null or resolved_date > (select doai from params)
        ) as has_open_dispute,
        -- a rejected dispute (the finding went against the consumer) outweighs an upheld one
        bool_or(
            dispute_status = 'rejected' and resolved_date <= (select doai from params)
        ) as has_rejected_resolution
    from marts.fct_disputes
    where opened_date <= (select doai from params)
    group by account_id
),

placed as (
    select account_id, true as is_placed
    from ops.placements
    where placed_date <= (select doai from params)
        and (recalled_date is null or recalled_date > (select doai from params))
    group by account_id
),

history as (
    select account_id, as_of_date, total_open, current, max_days_past_due, stage
    from marts.fct_account_aging
    where as_of_date <= (select doai from params)
),

builds as (
    -- a built day without an account's row (it owed nothing) breaks its run of late days
    select as_of_date, row_number() over (order by as_of_date) as build_no
    from ({build_dates})
    where as_of_date <= (select doai from params)
),

late_days as (
    -- every built day an account was 30+ days past due, numbered in runs of consecutive builds
    select
        history.account_id,
        history.as_of_date,
        history.as_of_date - history.max_days_past_due::integer + 30 as delinquent_since,
        builds.build_no
            - row_number() over (
                partition by history.account_id order by builds.build_no
            ) as run_key,
        builds.build_no
    from history
    inner join builds
        on history.as_of_date = builds.as_of_date
    where history.max_days_past_due >= 30
),

episodes as (
    -- per account: the run of late builds that reaches the DOAI (the current delinquency) and
    -- the most recent run (the last delinquency, for an account paid or written off since)
    select
        account_id,
        min(delinquent_since) filter (
            where max_build = (select max(build_no) from builds)
        ) as current_episode_dofd,
        arg_max(delinquent_since, max_build) as latest_episode_dofd
    from (
        select
            account_id,
            run_key,
            min(delinquent_since) as delinquent_since,
            max(build_no) as max_build
        from late_days
        group by account_id, run_key
    )
    group by account_id
),

highest as (
    select account_id, max(total_open) as highest_balance
    from history
    group by account_id
),

period_worst as (
    select account_id, max(max_days_past_due) as worst_days_past_due
    from history
    where as_of_date >= (select period_start from params)
    group by account_id
),

contacted as (
    -- third party: a letter or email that went out `wait_days` before the DOAI and did not
    -- bounce or drop (1006.30(a)(1)(ii))
    select account_id, true as is_contacted
    from marts.fct_contact_log
    where channel in ('email', 'letter')
        and is_contacted
        and sent_at is not null
        and cast(timezone($timezone, sent_at) as date)
        <= (select doai from params) - (select wait_days from params)
        and bounced_at is null
        and dropped_at is null
    group by account_id
),

facts as (
    select
        accounts.*,
        aging.total_open,
        aging.current as current_amount,
        aging.dpd_1_30,
        aging.dpd_31_60,
        aging.dpd_61_90,
        aging.dpd_91_120,
        aging.dpd_121_150,
        aging.dpd_151_180,
        aging.dpd_181_plus,
        aging.credit_balance,
        aging.max_days_past_due,
        aging.stage,
        aging.oldest_due_date,
        coalesce(adjustments.charged_off, 0) as charged_off,
        adjustments.charged_off_on,
        coalesce(adjustments.settled_this_period, 0) > 0 as is_settled,
        payments.last_payment_date,
        coalesce(payments.paid_this_period, 0) as paid_this_period,
        coalesce(flags.is_bankrupt, false) as is_bankrupt,
        flags.bankruptcy_date,
        coalesce(flags.is_deceased, false) as is_deceased,
        coalesce(flags.is_fraud, false) as is_fraud,
        coalesce(disputes.has_open_dispute, false) as has_open_dispute,
        disputes.has_rejected_resolution,
        coalesce(placed.is_placed, false) as is_placed,
        episodes.current_episode_dofd,
        episodes.latest_episode_dofd,
        highest.highest_balance,
        period_worst.worst_days_past_due,
        coalesce(contacted.is_contacted, false) as is_contacted,
        previous.period as previous_period,
        previous.account_status as previous_status,
        -- the DOFD goes on only while the delinquency does: after a current (11) or a closing
        -- record (13, 62, 64) a new delinquency starts a new one
        case
            when previous.account_status in {delinquent}
                then previous.date_of_first_delinquency
        end as previous_dofd,
        previous.compliance_condition_code as previous_ccc,
        previous.highest_credit as previous_highest_credit,
        previous.identification_number as previous_identification_number,
        previous.account_status is not null
        and previous.account_status not in {terminal} as was_reported_open
    from accounts
    left join aging on accounts.account_id = aging.account_id
    left join adjustments on accounts.account_id = adjustments.account_id
    left join payments on accounts.account_id = payments.account_id
    left join flags on accounts.account_id = flags.account_id
    left join disputes on accounts.account_id = disputes.account_id
    left join placed on accounts.account_id = placed.account_id
    left join episodes on accounts.account_id = episodes.account_id
    left join highest on accounts.account_id = highest.account_id
    left join period_worst on accounts.account_id = period_worst.account_id
    left join contacted on accounts.account_id = contacted.account_id
    left join previous on accounts.account_id = previous.account_id
    where accounts.customer_type = 'consumer'
        and accounts.currency = 'USD'
        and accounts.country = 'US'
        and accounts.opened_date <= (select doai from params)
),

owed_late as (
    -- what is owed at least this late, from the buckets up (reference §0: whole dollars)
    select
        *,
        coalesce(dpd_181_plus, 0) as late_181,
        coalesce(dpd_181_plus, 0) + coalesce(dpd_151_180, 0) as late_151,
        coalesce(dpd_181_plus, 0) + coalesce(dpd_151_180, 0) + coalesce(dpd_121_150, 0)
            as late_121,
        coalesce(dpd_181_plus, 0) + coalesce(dpd_151_180, 0) + coalesce(dpd_121_150, 0)
        + coalesce(dpd_91_120, 0) as late_91,
        coalesce(dpd_181_plus, 0) + coalesce(dpd_151_180, 0) + coalesce(dpd_121_150, 0)
        + coalesce(dpd_91_120, 0) + coalesce(dpd_61_90, 0) as late_61,
        coalesce(dpd_181_plus, 0) + coalesce(dpd_151_180, 0) + coalesce(dpd_121_150, 0)
        + coalesce(dpd_91_120, 0) + coalesce(dpd_61_90, 0) + coalesce(dpd_31_60, 0) as late_31
    from facts
),

rated_late as (
    -- how late the account is for the bureaus: its oldest item's days past due when at least
    -- a whole dollar is that late, else the oldest bucket with a whole dollar in and above it
    -- (cents left on an old invoice do not make an account 120 days late)
    select
        *,
        case
            when coalesce(max_days_past_due, 0) < 30 then coalesce(max_days_past_due, 0)
            when case
                    when max_days_past_due >= 181 then late_181
                    when max_days_past_due >= 151 then late_151
                    when max_days_past_due >= 121 then late_121
                    when max_days_past_due >= 91 then late_91
                    when max_days_past_due >= 61 then late_61
                    when max_days_past_due >= 31 then late_31
                    else late_31 + coalesce(dpd_1_30, 0)
                end >= 1 then max_days_past_due
            when late_181 >= 1 then 181
            when late_151 >= 1 then 151
            when late_121 >= 1 then 121
            when late_91 >= 1 then 91
            when late_61 >= 1 then 61
            when late_31 >= 1 then 31
            else 29
        end as days_late
    from owed_late
),

balanced as (
    select
        *,
        -- a charged-off debt is still owed: the write-off comes back into the balance
        greatest(
            coalesce(total_open, 0) - coalesce(credit_balance, 0)
            + case when charged_off > 0 then charged_off else 0 end,
            0
        ) as balance
    from rated_late
),

candidates as (
    select *
    from balanced
    where balance > 0 or was_reported_open
),

statused as (
    select
        *,
        case
            when is_fraud then 'DF'
            when (select third_party from params) then
                case when balance > 0 then '93' else '62' end
            when balance = 0 then
                case
                    when charged_off > 0 or previous_status = '97' then '64'
                    when previous_status = '93' or is_placed then '62'
                    -- paid up but still open: current, at zero; closed: 13
                    when billing_status = 'closed' or is_settled then '13'
                    else '11'
                end
            when charged_off > 0 then '97'
            when
                is_placed
                or stage in ('agency_placement', 'legal_referral', 'write_off_recommendation')
                then '93'
            {status_by_days_late}
            else '11'
        end as account_status
    from candidates
),

worst as (
    -- how late the account was in the period before it was paid: the period's aging rows,
    -- else what was reported last period
    select
        *,
        coalesce(
            worst_days_past_due,
            case previous_status {days_by_previous_status} end,
            0
        ) as worst_late
    from statused
),

rated as (
    select
        *,
        case
            when account_status <> '13' then null
            {rating_by_worst_late}
            else '0'
        end as payment_rating
    from worst
),

dated as (
    select
        *,
        case
            when account_status in ('DF', 'DA') then null
            when account_status = '11' then case when is_bankrupt then bankruptcy_date end
            when account_status = '13' and payment_rating = '0' then null
            -- once reported, the DOFD stays: never re-aged
            when previous_dofd is not null then previous_dofd
            when account_status in ('13', '62', '64') then latest_episode_dofd
            else least(
                coalesce(
                    current_episode_dofd,
                    latest_episode_dofd,
                    oldest_due_date + 30,
                    charged_off_on,
                    (select doai from params)
                ),
                coalesce(charged_off_on, (select doai from params)),
                (select doai from params)
            )
        end as date_of_first_delinquency
    from rated
)

select
    account_id,
    customer_id,
    segment,
    full_name,
    phone,
    address_line1,
    address_line2,
    city,
    state,
    postal_code,
    opened_date,
    credit_limit,
    account_status,
    payment_rating,
    date_of_first_delinquency,
    balance,
    case
        when account_status in ('11', '13', '62', '64', 'DF') then 0
        when account_status = '97' then balance
        -- what is 30 or more days past due; at exactly 30 days everything past due
        else least(
            greatest(
                case
                    when days_late >= 31 then late_31
                    else coalesce(total_open, 0) - coalesce(current_amount, 0)
                end,
                0
            ),
            balance
        )
    end as amount_past_due,
    case when account_status in ('64', '97') then charged_off else 0 end as charge_off_amount,
    greatest(
        coalesce(previous_highest_credit, 0), coalesce(highest_balance, 0), balance
    ) as highest_balance,
    paid_this_period,
    last_payment_date,
    case
        when account_status in ('13', '62', '64')
            then coalesce(last_payment_date, (select doai from params))
    end as date_closed,
    case
        when account_status in ('13', '62', '64') and is_settled then 'AU'
    end as special_comment,
    case
        when has_open_dispute then 'XB'
        when previous_ccc = 'XB' and has_rejected_resolution then 'XC'
        when previous_ccc = 'XB' then 'XH'
    end as compliance_condition_code,
    case when is_bankrupt then 'Z' end as consumer_information_indicator,
    case when is_deceased then 'X' else '1' end as ecoa_code,
    previous_identification_number,
    case
        when is_fraud and not was_reported_open then 'fraud'
        when date_of_first_delinquency is not null
            and date_of_first_delinquency + interval 7 year + interval 180 day
            <= (select doai from params) then 'obsolete'
        when (select third_party from params) and not is_contacted and previous_period is null
            then 'not_contacted_yet'
    end as held_reason
from dated
order by account_id
"""


def bureau_rows(
    connection: duckdb.DuckDBPyConnection,
    *,
    period: str,
    period_start: dt.date,
    doai: dt.date,
    third_party: bool,
    wait_days: int,
    timezone: str,
) -> list[dict[str, Any]]:
    """Every account with something to report for `period` (or held from it, `held_reason`),
    ordered by account id. Identity checks that need Python (name, SSN) come later."""
    sql = _sql(BUREAU_ROWS_SQL)
    cursor = connection.execute(
        sql,
        {
            "period": period,
            "period_start": period_start,
            "doai": doai,
            "third_party": third_party,
            "wait_days": wait_days,
            "timezone": timezone,
            "settlement_pattern": SETTLEMENT_REASON_PATTERN,
        },
    )
    columns = [description[0] for description in cursor.description]
    return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]


def _by_days(column: str, code: int) -> str:
    """`when column >= days then code` for each rung of the ladder, oldest first (code 1:
    the account status, 2: the rating / profile symbol)."""
    return " ".join(
        f"when {column} >= {rung[0]} then '{rung[code]}'" for rung in DELINQUENCY_LADDER
    )


def _sql(template: str) -> str:
    """A query with the shared pieces filled in."""
    pieces = {
        "{terminal}": repr(TERMINAL_STATUSES),
        "{delinquent}": repr(DELINQUENT_STATUSES),
        "{build_dates}": BUILD_DATES_SQL,
        "{status_by_days_late}": _by_days("days_late", 1),
        "{rating_by_worst_late}": _by_days("worst_late", 2),
        "{symbol_by_days_past_due}": _by_days("aging.max_days_past_due", 2),
        "{days_by_previous_status}": " ".join(
            f"when '{status}' then {days}" for days, status, _ in DELINQUENCY_LADDER
        ),
    }
    for placeholder, piece in pieces.items():
        template = template.replace(placeholder, piece)
    return template


def payment_history_rows(
    connection: duckdb.DuckDBPyConnection, *, period_start: dt.date, account_ids: list[str]
) -> dict[str, str]:
    """The 24-character payment history profile of each account (reference §4.3)."""
    rows = connection.execute(
        _sql(PAYMENT_HISTORY_SQL),
        {
            "period_start": period_start,
            "accounts": account_ids,
            "settlement_pattern": SETTLEMENT_REASON_PATTERN,
        },
    ).fetchall()
    return dict(rows)


PAYMENT_HISTORY_SQL = """
with

wanted as (
    select unnest($accounts::varchar[]) as account_id
),

months as (
    -- the 24 months before the period, 1 = the month just before it
    select
        months_back,
        cast($period_start::date - to_months(months_back) as date) as month_start,
        cast($period_start::date - to_months(months_back - 1) as date) - 1 as month_end
    from range(1, 25) as months(months_back)
),

month_builds as (
    select months.months_back, max(aging.as_of_date) as last_build
    from months
    inner join ({build_dates}) as aging
        on aging.as_of_date between months.month_start and months.month_end
    group by months.months_back
),

reported as (
    select
        account_id,
        period,
        case account_status
            when '11' then '0' when '71' then '1' when '78' then '2' when '80' then '3'
            when '82' then '4' when '83' then '5' when '84' then '6'
            when '93' then 'G' when '62' then 'G' when '97' then 'L' when '64' then 'L'
            when '13' then '0'
        end as symbol
    from ops.bureau_records
    where account_id in (select unnest($accounts::varchar[]))
),

charged_off as (
    select account_id, min(effective_date) as charged_off_date
    from staging.stg_billing__adjustments
    where adjustment_kind = 'write_off' and coalesce(reason, '') not ilike $settlement_pattern
    group by account_id
),

grid as (
    select
        wanted.account_id,
        months.months_back,
        months.month_start,
        months.month_end,
        month_builds.last_build,
        accounts.opened_date,
        charged_off.charged_off_date
    from wanted
    cross join months
    inner join marts.dim_accounts as accounts
        on wanted.account_id = accounts.account_id
    left join month_builds
        on months.months_back = month_builds.months_back
    left join charged_off
        on wanted.account_id = charged_off.account_id
),

symbols as (
    select
        grid.account_id,
        grid.months_back,
        coalesce(
            reported.symbol,
            case
                when grid.opened_date > grid.month_end then 'B'
                when grid.charged_off_date <= grid.month_end then 'L'
                when grid.last_build is null then 'D'
                when aging.account_id is null then '0'
                when
                    aging.stage
                    in ('agency_placement', 'legal_referral', 'write_off_recommendation')
                    then 'G'
                {symbol_by_days_past_due}
                else '0'
            end
        ) as symbol
    from grid
    left join reported
        on grid.account_id = reported.account_id
        and strftime(grid.month_start, '%Y-%m') = reported.period
    left join marts.fct_account_aging as aging
        on grid.account_id = aging.account_id
        and grid.last_build = aging.as_of_date
)

select account_id, string_agg(symbol, '' order by months_back) as profile
from symbols
group by account_id
"""
