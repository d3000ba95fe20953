"""SQL for the contract checks that look beyond one row (SPEC §2).

Each function returns a SELECT of `(_row, code, message)` over `_typed` (this entity's candidate
rows, typed, with their per-row problem codes). Parents are read from the raw tables, which
already hold this batch's good parent rows: entities load parents first, in one transaction.

- duplicate_key: a key appears more than once in one file; every copy is quarantined, since
  the file does not say which one is right.
- orphan_foreign_key: the referenced row is unknown. Such a row is *held*: it stays in the
  quarantine and loads by itself when a later batch brings the parent.
- currency_mismatch, invoice_of_other_account, account_of_other_customer,
  reversal_amount_mismatch, reversal_of_other_account: the row contradicts its parent.
"""

from __future__ import annotations

from flows.lib.contract import ENTITY_BY_NAME, Entity, ForeignKey
from flows.lib.warehouse import latest_view

ORPHAN = "orphan_foreign_key"
CLEAN = "len(_codes) = 0"


def _key_text(columns: tuple[str, ...], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    if len(columns) == 1:
        return f"{prefix}{columns[0]}"
    return (
        "concat_ws('|', " + ", ".join(f"coalesce({prefix}{c}::VARCHAR, '')" for c in columns) + ")"
    )


def record_key_sql(entity: Entity, alias: str = "") -> str:
    return _key_text(entity.key, alias)


def duplicate_keys(entity: Entity) -> str:
    keys = ", ".join(entity.key)
    joined = " and ".join(f"t.{column} is not distinct from d.{column}" for column in entity.key)
    t_keys = ", ".join(f"t.{column}" for column in entity.key)
    described = " || ', ' || ".join(
        f"'{column} ''' || coalesce(t.{column}::VARCHAR, '') || ''''" for column in entity.key
    )
    # the keys first, the lines of the few duplicated ones after: listing the lines of every
    # key took 11 of the 12 s of this check on a file of 12 million rows
    return f"""
        with duplicated_keys as (
            select _batch_id, _file_name, {keys}
            from _typed
            where _quarantine_id is null
            group by _batch_id, _file_name, {keys}
            having count(*) > 1
        ),
        copies as (
            select t._row, t._line, t._batch_id, t._file_name, {t_keys}
            from _typed as t
            inner join duplicated_keys as d
                on t._batch_id = d._batch_id and t._file_name = d._file_name and {joined}
            where t._quarantine_id is null
        )
        select t._row, 'duplicate_key' as code,
            {described} || ' appears ' || count(*) over copy || ' times in this file (lines '
            || string_agg(t._line::VARCHAR, ', ' order by t._line) over copy
            || '); send one row per key' as message
        from copies as t
        window copy as (
            partition by t._batch_id, t._file_name, {t_keys}
            rows between unbounded preceding and unbounded following
        )
    """


def orphans(entity: Entity, foreign_key: ForeignKey) -> str:
    column, parent, parent_column = (
        foreign_key.column,
        foreign_key.parent,
        foreign_key.parent_column,
    )
    parent_table = f"raw.{parent}"
    same_batch = ""
    if parent == entity.name:  # a reversal may reverse a payment of the same file
        same_batch = (
            f"and not exists (select 1 from _first_pass as s "
            f"where s.{parent_column} = t.{column} and len(s._codes) = 0)"
        )
    article = "an" if parent[0] in "aeiou" else "a"
    return f"""
        select t._row, '{ORPHAN}' as code,
            '{column} ''' || left(t.{column}, 40) || ''' is not {article} {parent[:-1]} '
            || 'loaded so far; the row is held and loads by itself when a later batch '
            || 'brings that {parent[:-1]}' as message
        from _typed as t
        where t.{column} is not null
            and not exists (
                select 1 from {parent_table} as p where p.{parent_column} = t.{column}
            )
            {same_batch}
    """


def currency_mismatch(entity: Entity) -> str:
    column = entity.currency_column
    return f"""
        select t._row, 'currency_mismatch' as code,
            '{column} ''' || t.{column} || ''' differs from the currency ''' || a.currency
            || ''' of account ''' || t.account_id || '''; every amount is in its account''s '
            || 'currency' as message
        from _typed as t
        inner join {latest_view_for("accounts")} as a on a.account_id = t.account_id
        where t.{column} <> a.currency
    """


def invoice_of_other_account() -> str:
    return f"""
        select t._row, 'invoice_of_other_account' as code,
            'invoice_id ''' || t.invoice_id || ''' belongs to account ''' || i.account_id
            || ''', not to ''' || t.account_id || '''' as message
        from _typed as t
        inner join {latest_view_for("invoices")} as i on i.invoice_id = t.invoice_id
        where i.account_id <> t.account_id
    """


def account_of_other_customer() -> str:
    return f"""
        select t._row, 'account_of_other_customer' as code,
            'account_id ''' || t.account_id || ''' belongs to customer ''' || a.customer_id
            || ''', not to ''' || t.customer_id || '''' as message
        from _typed as t
        inner join {latest_view_for("accounts")} as a on a.account_id = t.account_id
        where a.customer_id <> t.customer_id
    """


def reversal_mismatch() -> str:
    """A reversal undoes exactly one earlier payment: same account, same amount."""
    return f"""
        with originals as (
            select payment_id, account_id, amount from _first_pass where len(_codes) = 0
            union all
            select payment_id, account_id, amount from {latest_view_for("payments")}
            where payment_id not in (select payment_id from _first_pass where len(_codes) = 0)
        )
        select t._row,
            case
                when t.reverses_payment_id = t.payment_id then 'bad_reversal'
                when o.account_id <> t.account_id then 'reversal_of_other_account'
                else 'reversal_amount_mismatch'
            end as code,
            case
                when t.reverses_payment_id = t.payment_id
                    then 'payment ''' || t.payment_id || ''' reverses itself'
                when o.account_id <> t.account_id
                    then 'reverses payment ''' || o.payment_id || ''' of account '''
                        || o.account_id || ''', not of ''' || t.account_id || ''''
                else 'reversal amount ' || t.amount || ' differs from the ' || o.amount
                    || ' of payment ''' || o.payment_id || ''' it reverses; a reversal undoes '
                    || 'the whole payment'
            end as message
        from _typed as t
        inner join originals as o on o.payment_id = t.reverses_payment_id
        where t.amount is not null
            and (
                t.reverses_payment_id = t.payment_id
                or o.account_id <> t.account_id
                or o.amount <> t.amount
            )
    """


def latest_view_for(entity_name: str) -> str:
    return latest_view(ENTITY_BY_NAME[entity_name])


def duplicate_reversals() -> str:
    """A payment is reversed once: a second reversal of it (in this batch, or of a payment
    reversed in an earlier batch) is quarantined; the earliest one stands."""
    return f"""
        with reversals as (
            select _row, _batch_id, _line, payment_id, reverses_payment_id
            from _typed
            where reverses_payment_id is not null
        ),
        loaded as (
            select payment_id, reverses_payment_id from {latest_view_for("payments")}
            where
                reverses_payment_id is not null
                and payment_id not in (select payment_id from _typed)
        ),
        earlier as (
            select r._row, min(coalesce(l.payment_id, o.payment_id)) as first_reversal
            from reversals as r
            left join loaded as l on l.reverses_payment_id = r.reverses_payment_id
            left join reversals as o
                on
                    o.reverses_payment_id = r.reverses_payment_id
                    and (o._batch_id < r._batch_id
                        or (o._batch_id = r._batch_id and o._line < r._line))
            where l.payment_id is not null or o.payment_id is not null
            group by r._row
        )
        select r._row, 'duplicate_reversal' as code,
            'payment ''' || r.reverses_payment_id || ''' is already reversed by payment '''
            || e.first_reversal || '''; a payment can be reversed only once' as message
        from reversals as r
        inner join earlier as e on r._row = e._row
    """


def link_checks(entity: Entity) -> tuple[list[str], list[str]]:
    """The cross-row checks of `entity`, in two passes. The second pass checks rows against
    parents of the same entity (a reversal against its payment), which count only when they
    passed every check of the first pass."""
    first = [duplicate_keys(entity)]
    second = []
    for foreign_key in entity.foreign_keys:
        target = second if foreign_key.parent == entity.name else first
        target.append(orphans(entity, foreign_key))
    names = entity.column_names
    if entity.currency_column:
        first.append(currency_mismatch(entity))
    if "invoice_id" in names and "account_id" in names and entity.name != "invoices":
        first.append(invoice_of_other_account())
    if entity.name == "account_flags":
        first.append(account_of_other_customer())
    if entity.name == "payments":
        first.append(duplicate_reversals())
        second.append(reversal_mismatch())
    return first, second
