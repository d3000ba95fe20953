"""The contact details recoup uses: the billing system's, corrected by accepted skip-trace results.

recoup never edits what the billing system sent (`raw.customers`). A skip-trace result that is
accepted (flows/lib/skip_results.py) is appended to `ops.contact_overrides`, one row per field
group (`email`, `phone` or `address`: the six address columns travel together), with its
source, confidence and request. The view `ops.customer_contacts` is what every step that
contacts a customer reads (planning through marts.dim_customers, rendering, the re-check before
sending): the billing row with each field group replaced by the newest override *in effect*.

An override is in effect while the billing system still holds the value it replaced: it
records the billing value's fingerprint when accepted (`billing_fingerprint`). When billing
later sends a different value for that field (the customer told billing their new address),
billing's value wins again and the override stays in the history only.

Problems reported about a value (a returned letter, a phone marked invalid) are kept in
`ops.contact_problems` against the value's fingerprint, so they concern that address or number
only: once another one is in effect, the problem no longer applies. Hard bounces stay where the
event import puts them (`ops.email_suppressions`, by address).

Fingerprints normalise what does not change where mail goes: case, surrounding and repeated
white space, and a phone number's punctuation. `fingerprint_sql` is the one definition; the
view, the skip-trace candidates and the imports all use it.
"""

from __future__ import annotations

from typing import Literal

import duckdb

FieldGroup = Literal["email", "phone", "address"]
FIELD_GROUPS: tuple[FieldGroup, ...] = ("email", "phone", "address")
ADDRESS_COLUMNS = ("address_line1", "address_line2", "city", "state", "postal_code", "country")
# the ledger channel each field group reaches
CHANNEL_OF: dict[FieldGroup, str] = {"email": "email", "phone": "phone", "address": "letter"}
PROBLEM_CHANNELS = ("letter", "phone")


def fingerprint_sql(group: FieldGroup, alias: str = "") -> str:
    """A DuckDB expression normalising one field group of the row `alias` (columns named as in
    raw.customers). An empty string when the group holds nothing."""
    prefix = f"{alias}." if alias else ""
    if group == "email":
        return f"coalesce(lower(trim({prefix}email)), '')"
    if group == "phone":  # digits only; a North American number without its country code
        digits = f"regexp_replace({prefix}phone, '[^0-9]', '', 'g')"
        return f"coalesce(regexp_replace({digits}, '^1([0-9]{{10}})$', '\\1'), '')"
    parts = ", ".join(f"coalesce(trim({prefix}{column}), '')" for column in ADDRESS_COLUMNS)
    return f"trim(lower(regexp_replace(concat_ws('|', {parts}), '\\s+', ' ', 'g')), '|')"


OVERRIDES_DDL = """
create table if not exists ops.contact_overrides (
    override_id VARCHAR PRIMARY KEY,
    customer_id VARCHAR NOT NULL,
    field_group VARCHAR NOT NULL,
    email VARCHAR,
    phone VARCHAR,
    address_line1 VARCHAR,
    address_line2 VARCHAR,
    city VARCHAR,
    state VARCHAR,
    postal_code VARCHAR,
    country VARCHAR,
    billing_fingerprint VARCHAR NOT NULL,
    replaced_fingerprint VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    confidence INTEGER NOT NULL,
    request_id VARCHAR,
    import_id VARCHAR,
    accepted_on DATE NOT NULL,
    accepted_at TIMESTAMPTZ NOT NULL
)
"""

PROBLEMS_DDL = """
create table if not exists ops.contact_problems (
    problem_id VARCHAR PRIMARY KEY,
    customer_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    reported_on DATE NOT NULL,
    source VARCHAR NOT NULL,
    import_id VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL
)
"""


def _view_sql() -> str:
    def pick(group: FieldGroup, column: str) -> str:
        return (
            f"case when {group}_override.customer_id is not null "
            f"then {group}_override.{column} else billing.{column} end as {column}"
        )

    email_fp, phone_fp, address_fp = (fingerprint_sql(g, "billing") for g in FIELD_GROUPS)
    effective = ",\n            ".join(
        [pick("email", "email"), pick("phone", "phone")]
        + [pick("address", column) for column in ADDRESS_COLUMNS]
    )
    overrides = "\n".join(
        f"""
        left join in_effect as {group}_override
            on
                billing.customer_id = {group}_override.customer_id
                and {group}_override.field_group = '{group}'"""
        for group in FIELD_GROUPS
    )
    sources = ",\n            ".join(
        f"case when {group}_override.customer_id is null then 'billing' "
        f"else 'skip_trace' end as {group}_source,\n            "
        f"{group}_override.accepted_on as {group}_updated_on,\n            "
        f"{group}_override.accepted_at as {group}_updated_at"
        for group in FIELD_GROUPS
    )
    return f"""
        create or replace view ops.customer_contacts as
        with

        billing as (
            select
                * exclude (ssn, date_of_birth),  -- encrypted: files read them (pii.py)
                {email_fp} as billing_email_fingerprint,
                {phone_fp} as billing_phone_fingerprint,
                {address_fp} as billing_address_fingerprint
            from raw.customers_latest as billing
        ),

        -- the answer to the newest request wins (a late answer to an older request does not
        -- replace a newer one), then the latest accepted
        newest as (
            select overrides.*
            from ops.contact_overrides as overrides
            left join ops.skip_requests as requests
                on overrides.request_id = requests.request_id
            qualify row_number() over (
                partition by overrides.customer_id, overrides.field_group
                order by
                    requests.requested_on desc nulls last,
                    overrides.accepted_at desc,
                    overrides.override_id desc
            ) = 1
        ),

        -- an override holds while billing still sends the value it replaced
        in_effect as (
            select newest.*
            from newest
            inner join billing
                on newest.customer_id = billing.customer_id
            where newest.billing_fingerprint = case newest.field_group
                when 'email' then billing.billing_email_fingerprint
                when 'phone' then billing.billing_phone_fingerprint
                else billing.billing_address_fingerprint
            end
        ),

        effective as (
            select
                billing.* exclude (
                    email, phone, {", ".join(ADDRESS_COLUMNS)}, timezone,
                    billing_email_fingerprint, billing_phone_fingerprint,
                    billing_address_fingerprint
                ),
                -- billing's time zone belongs to billing's address and phone: with a new one
                -- in use, the send window judges by where the new details may be
                case
                    when address_override.customer_id is null
                        and phone_override.customer_id is null
                        then billing.timezone
                end as timezone,
                {effective},
                {sources},
                billing.billing_email_fingerprint,
                billing.billing_phone_fingerprint,
                billing.billing_address_fingerprint
            from billing
            {overrides}
        ),

        fingerprinted as (
            select
                effective.*,
                {fingerprint_sql("email", "effective")} as email_fingerprint,
                {fingerprint_sql("phone", "effective")} as phone_fingerprint,
                {fingerprint_sql("address", "effective")} as address_fingerprint
            from effective
        )

        select
            fingerprinted.*,
            exists (
                select 1 from ops.contact_problems as problems
                where
                    problems.customer_id = fingerprinted.customer_id
                    and problems.channel = 'letter'
                    and problems.fingerprint = fingerprinted.address_fingerprint
            ) as address_returned,
            exists (
                select 1 from ops.contact_problems as problems
                where
                    problems.customer_id = fingerprinted.customer_id
                    and problems.channel = 'phone'
                    and problems.fingerprint = fingerprinted.phone_fingerprint
            ) as phone_invalid
        from fingerprinted
    """


COMMENTS = {
    "ops.contact_overrides": "Contact details accepted from skip-trace results, one row per "
    "customer and field group (email, phone, address), never deleted: the history. The newest "
    "is in effect while billing still sends the value it replaced (billing_fingerprint).",
    "ops.contact_problems": "Problems reported about one address or phone number (returned "
    "mail, invalid phone), by the fingerprint of the value.",
}


def ensure_contact_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """The override and problem tables and the effective-contacts view (idempotent). Needs
    raw.customers_latest (warehouse.ensure_raw_schema) first."""
    connection.execute("create schema if not exists ops")
    connection.execute(OVERRIDES_DDL)
    connection.execute(PROBLEMS_DDL)
    connection.execute(_view_sql())
    for table, comment in COMMENTS.items():
        connection.execute(f"comment on table {table} is '{comment}'")
    connection.execute(
        "comment on view ops.customer_contacts is 'The contact details recoup uses: billing''s, "
        "each field group replaced by the skip-trace override in effect; with each group''s "
        "source and the date it changed, and whether the address came back or the phone is "
        "invalid. No SSN and no date of birth.'"
    )
