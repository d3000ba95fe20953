"""A realistic billing export for demos and benchmarks (SPEC §2 format), made without row loops.

Everything is drawn with numpy from one seeded generator, so the same (seed, accounts, as_of)
gives the same files. Columns are numbers and category indexes until the last step, where
DuckDB formats them and writes the CSV (or Parquet) files in parallel.

What the data holds, so a demo shows every path of the pipeline:
- customers in the US (several time zones; about 30 % give only a state), Canada, the euro area
  and the UK; consumers and businesses; languages en, es, fr, de;
- accounts in four segments (residential, healthcare, smb, enterprise) and four currencies;
  some customers hold a second account in another currency;
- about 18 months of monthly invoices; payers who pay on time, late, partially, never, or
  overpay; linked and unlinked payments; reversals (NSF, chargebacks);
- credit notes, late fees, interest, write-offs, refunds; disputes (open, upheld, rejected,
  whole-invoice, partial and account-level); installment plans and promises, kept and broken;
- every account flag;
- a few contract-breaking rows (`defects=True`) so the quarantine has something to show.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa

from flows.lib.contract import ENTITIES, Column

EPOCH = dt.date(1970, 1, 1)

# city, state/region, postal code prefix, IANA zone, country, currency, main language, weight
PLACES = [
    ("New York", "NY", "100", "America/New_York", "US", "USD", "en", 10),
    ("Miami", "FL", "331", "America/New_York", "US", "USD", "es", 6),
    ("Atlanta", "GA", "303", "America/New_York", "US", "USD", "en", 5),
    ("Indianapolis", "IN", "462", "America/Indiana/Indianapolis", "US", "USD", "en", 3),
    ("Chicago", "IL", "606", "America/Chicago", "US", "USD", "en", 8),
    ("Houston", "TX", "770", "America/Chicago", "US", "USD", "es", 8),
    ("Minneapolis", "MN", "554", "America/Chicago", "US", "USD", "en", 3),
    ("Denver", "CO", "802", "America/Denver", "US", "USD", "en", 4),
    ("Boise", "ID", "837", "America/Boise", "US", "USD", "en", 2),
    ("Phoenix", "AZ", "850", "America/Phoenix", "US", "USD", "es", 5),
    ("Los Angeles", "CA", "900", "America/Los_Angeles", "US", "USD", "es", 10),
    ("Seattle", "WA", "981", "America/Los_Angeles", "US", "USD", "en", 4),
    ("Anchorage", "AK", "995", "America/Anchorage", "US", "USD", "en", 1),
    ("Honolulu", "HI", "968", "Pacific/Honolulu", "US", "USD", "en", 1),
    ("Toronto", "ON", "M5V", "America/Toronto", "CA", "CAD", "en", 4),
    ("Montreal", "QC", "H2X", "America/Toronto", "CA", "CAD", "fr", 2),
    ("Vancouver", "BC", "V6B", "America/Vancouver", "CA", "CAD", "en", 2),
    ("Berlin", "BE", "101", "Europe/Berlin", "DE", "EUR", "de", 2),
    ("Madrid", "MD", "280", "Europe/Madrid", "ES", "EUR", "es", 2),
    ("Dublin", "D", "D02", "Europe/Dublin", "IE", "EUR", "en", 1),
    ("London", "LND", "EC1", "Europe/London", "GB", "GBP", "en", 3),
]
FIRST_NAMES = [
    "Ana",
    "Ben",
    "Carla",
    "David",
    "Elena",
    "Frank",
    "Grace",
    "Hector",
    "Ines",
    "James",
    "Keiko",
    "Luis",
    "Maria",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Samuel",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Aiden",
    "Beatriz",
    "Chen",
    "Dmitri",
]
LAST_NAMES = [
    "Garcia",
    "Smith",
    "Nguyen",
    "Johnson",
    "Martinez",
    "Brown",
    "Kim",
    "Lopez",
    "Patel",
    "Williams",
    "Rossi",
    "Muller",
    "Silva",
    "Jones",
    "Hernandez",
    "Okafor",
    "Cohen",
    "Sato",
    "Dubois",
    "Novak",
    "Andersen",
    "Kowalski",
    "Murphy",
    "O'Brien",
    "Haddad",
    "Singh",
]
BUSINESS_SUFFIXES = ["LLC", "Inc.", "& Sons", "Holdings", "Group", "Dental, P.C.", "Bakery"]
STREETS = ["Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Elm St", "Pine Rd", "Lake Blvd", "2nd St"]
SEGMENTS = ["residential", "healthcare", "smb", "enterprise"]
TERMS_DAYS = np.array([21, 30, 30, 45])
TYPICAL_CENTS = np.array([8_500, 24_000, 45_000, 420_000])
METHODS = ["card", "ach", "check", "wire", "cash", "other"]
FLAGS = [
    ("bankruptcy", 0.003),
    ("deceased", 0.001),
    ("cease_communication", 0.002),
    ("attorney_represented", 0.002),
    ("do_not_email", 0.01),
    ("do_not_call", 0.01),
    ("fraud", 0.001),
    ("servicemember", 0.003),
    ("legal_hold", 0.001),
]
# payer behaviour: on_time, late, partial, never, recovered, overpayer
BEHAVIOURS = np.array([0.55, 0.20, 0.08, 0.05, 0.07, 0.05])
ON_TIME, LATE, PARTIAL, NEVER, RECOVERED, OVERPAYER = range(6)


@dataclass(frozen=True)
class DemoExport:
    folder: Path
    as_of: dt.date
    rows: dict[str, int]


def generate_demo_export(
    folder: Path,
    *,
    accounts: int,
    as_of: dt.date,
    seed: int = 42,
    file_format: Literal["csv", "parquet"] = "csv",
    defects: bool = True,
) -> DemoExport:
    """Write one batch folder with a file per entity; return the row counts."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    today = (as_of - EPOCH).days
    tables: dict[str, pa.Table] = {}
    customers, customer_country = _customers(rng, accounts, today)
    tables["customers"] = customers
    account_table, account_info = _accounts(rng, accounts, customer_country, customers, today)
    tables["accounts"] = account_table
    invoices, invoice_info = _invoices(rng, account_info, today)
    tables["invoices"] = invoices
    payments, payment_info = _payments(rng, account_info, invoice_info, today)
    plans, plan_payments = _payment_plans(
        rng, account_info, today, first_payment=payment_info["next_id"]
    )
    tables["payments"] = _concat(payments, plan_payments)
    tables["adjustments"] = _adjustments(rng, account_info, invoice_info, payment_info, today)
    tables["disputes"] = _disputes(rng, account_info, invoice_info, today)
    tables["payment_plans"] = plans
    tables["account_flags"] = _flags(rng, account_info, today)

    connection = duckdb.connect()
    rows: dict[str, int] = {}
    for entity in ENTITIES:
        table = tables[entity.name]
        connection.register("generated", table)
        target = folder / f"{entity.name}.{file_format}"
        options = "(FORMAT parquet)" if file_format == "parquet" else "(HEADER, DELIMITER ',')"
        columns = ", ".join(_formatted(column) for column in entity.columns)
        connection.execute(f"copy (select {columns} from generated) to '{target}' {options}")
        connection.unregister("generated")
        rows[entity.name] = table.num_rows
    connection.close()
    if defects and file_format == "csv":
        rows = _append_defects(folder, rows, as_of)
    return DemoExport(folder=folder, as_of=as_of, rows=rows)


# --- customers ---------------------------------------------------------------------------


def _customers(rng: np.random.Generator, accounts: int, today: int) -> tuple[pa.Table, np.ndarray]:
    count = max(1, int(accounts * 0.92))
    weights = np.array([place[-1] for place in PLACES], dtype=float)
    place = rng.choice(len(PLACES), size=count, p=weights / weights.sum())
    business = rng.random(count) < 0.18
    first = rng.integers(0, len(FIRST_NAMES), count)
    last = rng.integers(0, len(LAST_NAMES), count)
    suffix = rng.integers(0, len(BUSINESS_SUFFIXES), count)
    first_names = np.array(FIRST_NAMES, dtype=object)[first]
    last_names = np.array(LAST_NAMES, dtype=object)[last]
    names = np.where(
        business,
        last_names + " " + np.array(BUSINESS_SUFFIXES, dtype=object)[suffix],
        first_names + " " + last_names,
    )
    ids = np.arange(1, count + 1)
    id_text = _ids("C", ids, 7)
    local = np.char.lower(np.char.replace((first_names + "." + last_names).astype(str), "'", ""))
    domains = np.array(["example.com", "example.net", "example.org"])[rng.integers(0, 3, count)]
    email = np.char.add(np.char.add(np.char.add(local, ids.astype(str)), "@"), domains)
    has_email = rng.random(count) < 0.9
    has_phone = rng.random(count) < 0.85
    phone = np.char.add(
        "+1",
        np.char.add(
            rng.integers(201, 989, count).astype(str),
            np.char.add("55501", np.char.zfill(rng.integers(0, 100, count).astype(str), 2)),
        ),
    )
    countries = np.array([p[4] for p in PLACES])[place]
    us = countries == "US"
    has_zone = rng.random(count) < 0.7
    zones = np.array([p[3] for p in PLACES], dtype=object)[place]
    consumer = ~business
    dob_days = today - rng.integers(18 * 365, 85 * 365, count)
    has_dob = consumer & (rng.random(count) < 0.95)
    ssn = np.char.add("9", np.char.zfill(rng.integers(0, 10**8, count).astype(str), 8))
    has_ssn = consumer & us & (rng.random(count) < 0.9)
    main_language = np.array([p[6] for p in PLACES], dtype=object)[place]
    spanish_speaker = (main_language == "es") & (rng.random(count) < 0.35)
    language = np.where(
        main_language == "es",
        np.where(spanish_speaker, "es", None),
        np.where(
            main_language == "en", np.where(rng.random(count) < 0.5, "en", None), main_language
        ),
    )
    created = today - rng.integers(30, 365 * 4, count)
    table = pa.table(
        {
            "customer_id": id_text,
            "customer_type": np.where(business, "business", "consumer"),
            "full_name": names.astype(str),
            "email": pa.array(email, mask=~has_email),
            "phone": pa.array(phone, mask=~has_phone),
            "address_line1": np.char.add(
                np.char.add(rng.integers(1, 9999, count).astype(str), " "),
                np.array(STREETS)[rng.integers(0, len(STREETS), count)],
            ),
            "address_line2": pa.array(
                np.char.add("Apt ", rng.integers(1, 40, count).astype(str)),
                mask=rng.random(count) > 0.2,
            ),
            "city": np.array([p[0] for p in PLACES])[place],
            "state": np.array([p[1] for p in PLACES])[place],
            "postal_code": np.char.add(
                np.array([p[2] for p in PLACES])[place],
                np.where(us, np.char.zfill(rng.integers(0, 100, count).astype(str), 2), " 1AB"),
            ),
            "country": countries,
            "timezone": pa.array(zones.astype(str), mask=~has_zone),
            "date_of_birth": _dates(dob_days, ~has_dob),
            "ssn": pa.array(ssn, mask=~has_ssn),
            "language": pa.array(language, type=pa.string()),
            "created_at": _timestamps(created, rng.integers(0, 86_400, count)),
        }
    )
    return table, place


# --- accounts ----------------------------------------------------------------------------


def _accounts(
    rng: np.random.Generator,
    accounts: int,
    customer_place: np.ndarray,
    customers: pa.Table,
    today: int,
) -> tuple[pa.Table, dict[str, np.ndarray]]:
    customer_count = customer_place.size
    owner = np.concatenate(
        (np.arange(customer_count), rng.integers(0, customer_count, accounts - customer_count))
    )[:accounts]
    business = (
        np.asarray(customers.column("customer_type").to_numpy(zero_copy_only=False)) == "business"
    )
    owner_business = business[owner]
    segment = np.where(
        owner_business,
        np.where(rng.random(accounts) < 0.8, 2, 3),
        np.where(rng.random(accounts) < 0.75, 0, 1),
    )
    currency_by_place = np.array([p[5] for p in PLACES])
    currency = currency_by_place[customer_place[owner]]
    second = np.arange(accounts) >= customer_count
    other_currency = second & (currency == "USD") & (rng.random(accounts) < 0.3)
    currency = np.where(other_currency, "CAD", currency)
    months_open = rng.integers(1, 25, accounts)
    opened = today - months_open * 30 - rng.integers(0, 28, accounts)
    closed = rng.random(accounts) < 0.06
    behaviour = rng.choice(len(BEHAVIOURS), size=accounts, p=BEHAVIOURS)
    credit_limit_cents = np.array([500_000, 1_000_000, 2_500_000, 10_000_000])[
        rng.integers(0, 4, accounts)
    ]
    ids = _ids("A", np.arange(1, accounts + 1), 8)
    table = pa.table(
        {
            "account_id": ids,
            "customer_id": np.asarray(
                customers.column("customer_id").to_numpy(zero_copy_only=False)
            )[owner],
            "currency": currency,
            "segment": np.array(SEGMENTS)[segment],
            "opened_date": _dates(opened),
            "status": np.where(closed, "closed", "active"),
            "credit_limit": _money(credit_limit_cents, ~owner_business),
        }
    )
    info = {
        "id": ids,
        "customer": owner,
        "segment": segment,
        "currency": currency,
        "opened": opened,
        "closed": closed,
        "behaviour": behaviour,
        "typical_cents": (TYPICAL_CENTS[segment] * rng.lognormal(0, 0.35, accounts)).astype(
            np.int64
        ),
    }
    return table, info


# --- invoices ----------------------------------------------------------------------------


def _invoices(
    rng: np.random.Generator, account: dict[str, np.ndarray], today: int
) -> tuple[pa.Table, dict[str, np.ndarray]]:
    window_start = today - 548  # 18 months
    first_bill = np.maximum(
        account["opened"] + 1, window_start + rng.integers(0, 30, account["id"].size)
    )
    last_bill = np.where(
        account["closed"], today - rng.integers(60, 300, account["id"].size), today
    )
    counts = np.clip((last_bill - first_bill) // 30 + 1, 0, None)
    owner = np.repeat(np.arange(counts.size), counts)
    total = owner.size
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    cycle = np.arange(total) - starts
    issue = first_bill[owner] + cycle * 30 + rng.integers(0, 3, total)
    issue = np.minimum(issue, today)
    due = issue + TERMS_DAYS[account["segment"][owner]]
    cents = np.maximum(
        500, (account["typical_cents"][owner] * rng.normal(1.0, 0.12, total)).astype(np.int64)
    )
    ids = _ids("I", np.arange(1, total + 1), 9)
    issue_dates = _dates(issue)
    table = pa.table(
        {
            "invoice_id": ids,
            "account_id": account["id"][owner],
            "invoice_number": np.char.add(
                "INV-", np.char.zfill(np.arange(1, total + 1).astype(str), 9)
            ),
            "issue_date": issue_dates,
            "due_date": _dates(due),
            "amount": _money(cents),
            "currency": account["currency"][owner],
            "description": np.char.add("Monthly service, cycle ", (cycle + 1).astype(str)),
        }
    )
    return table, {
        "id": ids,
        "account": owner,
        "issue": issue,
        "due": due,
        "cents": cents,
        "cycle": cycle,
        "count": counts,
    }


# --- payments ----------------------------------------------------------------------------


def _payments(
    rng: np.random.Generator,
    account: dict[str, np.ndarray],
    invoice: dict[str, np.ndarray],
    today: int,
) -> tuple[pa.Table, dict[str, object]]:
    owner = invoice["account"]
    size = owner.size
    behaviour = account["behaviour"][owner]
    cycles_left = account_cycles_left(invoice)
    delay = rng.integers(-10, 1, size)  # on time: up to 10 days early
    delay = np.where(behaviour == LATE, rng.integers(5, 75, size), delay)
    delay = np.where(behaviour == PARTIAL, rng.integers(0, 30, size), delay)
    delay = np.where(
        (behaviour == RECOVERED) & (cycles_left > 3), rng.integers(20, 90, size), delay
    )
    share = np.ones(size)
    partial_bill = (behaviour == PARTIAL) & (rng.random(size) < 0.4)
    share = np.where(partial_bill, rng.uniform(0.3, 0.8, size), share)
    share = np.where((behaviour == OVERPAYER) & (rng.random(size) < 0.15), 2.0, share)
    stopped = (behaviour == NEVER) & (cycles_left < rng.integers(2, 9, size))
    forgotten = rng.random(size) < 0.03  # the odd bill paid a month or two late
    delay = np.where(forgotten, rng.integers(30, 75, size), delay)
    received = invoice["due"] + delay
    pays = ~stopped & (received <= today)
    cents = (invoice["cents"] * share).astype(np.int64)
    index = np.flatnonzero(pays)
    count = index.size
    ids = _ids("P", np.arange(1, count + 1), 9)
    linked = rng.random(count) < 0.75
    method_index = rng.choice(len(METHODS), size=count, p=[0.4, 0.35, 0.15, 0.05, 0.03, 0.02])
    base = {
        "payment_id": ids,
        "account_id": account["id"][owner[index]],
        "invoice_id": pa.array(invoice["id"][index], mask=~linked),
        "received_date": _dates(received[index]),
        "amount": _money(cents[index]),
        "currency": account["currency"][owner[index]],
        "method": np.array(METHODS)[method_index],
        "reverses_payment_id": pa.array([None] * count, type=pa.string()),
    }
    # reversals: NSF, returned checks, chargebacks, a few days after the payment
    reversed_rows = np.flatnonzero(rng.random(count) < 0.012)
    reversal_date = received[index][reversed_rows] + rng.integers(3, 11, reversed_rows.size)
    reversed_rows = reversed_rows[reversal_date <= today]
    reversal_date = reversal_date[reversal_date <= today]
    reversal_ids = np.char.add(ids[reversed_rows].astype(str), "R")
    reversals = {
        "payment_id": reversal_ids,
        "account_id": base["account_id"][reversed_rows],
        "invoice_id": pa.array([None] * reversed_rows.size, type=pa.string()),
        "received_date": _dates(reversal_date),
        "amount": _money(cents[index][reversed_rows]),
        "currency": base["currency"][reversed_rows],
        "method": base["method"][reversed_rows],
        "reverses_payment_id": ids[reversed_rows],
    }
    table = _concat(pa.table(base), pa.table(reversals))
    overpaid = np.zeros(account["id"].size, dtype=np.int64)
    np.add.at(overpaid, owner[index], np.maximum(cents[index] - invoice["cents"][index], 0))
    return table, {
        "next_id": count + 1,
        "overpaid_cents": overpaid,
        "paid_index": index,
        "delay": delay,
    }


def account_cycles_left(invoice: dict[str, np.ndarray]) -> np.ndarray:
    """How many later invoices the same account has (0 for its newest)."""
    counts = invoice["count"]
    return counts[invoice["account"]] - invoice["cycle"] - 1


# --- adjustments -------------------------------------------------------------------------


def _adjustments(
    rng: np.random.Generator,
    account: dict[str, np.ndarray],
    invoice: dict[str, np.ndarray],
    payment: dict[str, object],
    today: int,
) -> pa.Table:
    owner = invoice["account"]
    size = owner.size
    parts: list[dict[str, object]] = []
    # credit notes, sometimes before the invoice is due
    credit = np.flatnonzero(rng.random(size) < 0.02)
    credit_date = invoice["issue"][credit] + rng.integers(0, 40, credit.size)
    keep = credit_date <= today
    credit, credit_date = credit[keep], credit_date[keep]
    parts.append(
        _adjustment_rows(
            account,
            owner[credit],
            invoice["id"][credit],
            "credit_note",
            (invoice["cents"][credit] * rng.uniform(0.1, 1.0, credit.size)).astype(np.int64),
            credit_date,
            "Service credit",
        )
    )
    # late fees on bills of customers who stopped or pay in part, 15 days after the due date
    # (customers who merely pay late are not charged: their fees would sit open for ever)
    behind = np.isin(account["behaviour"][owner], [NEVER, PARTIAL])
    late = np.flatnonzero(behind & (invoice["due"] + 15 <= today) & (rng.random(size) < 0.3))
    parts.append(
        _adjustment_rows(
            account,
            owner[late],
            invoice["id"][late],
            "fee",
            np.full(late.size, 1_500),
            invoice["due"][late] + 15,
            "Late payment fee",
        )
    )
    # unlinked interest for accounts that stopped paying
    never = np.flatnonzero(account["behaviour"] == NEVER)
    interest_date = today - rng.integers(1, 60, never.size)
    parts.append(
        _adjustment_rows(
            account,
            never,
            None,
            "interest",
            (account["typical_cents"][never] * 0.015).astype(np.int64) + 100,
            interest_date,
            "Interest on overdue balance",
        )
    )
    # write-offs of the oldest bill of some non-payers
    first_bill = np.flatnonzero((invoice["cycle"] == 0) & (account["behaviour"][owner] == NEVER))
    old = first_bill[
        (today - invoice["due"][first_bill] > 180) & (rng.random(first_bill.size) < 0.3)
    ]
    parts.append(
        _adjustment_rows(
            account,
            owner[old],
            invoice["id"][old],
            "write_off",
            invoice["cents"][old],
            np.full(old.size, today - 5),
            "Uncollectible, approved by controller",
        )
    )
    # refunds of part of an overpayment
    overpaid = np.asarray(payment["overpaid_cents"])
    refunded = np.flatnonzero((overpaid > 0) & (rng.random(overpaid.size) < 0.5))
    parts.append(
        _adjustment_rows(
            account,
            refunded,
            None,
            "refund",
            overpaid[refunded] // 2,
            today - rng.integers(1, 40, refunded.size),
            "Refund of overpayment",
        )
    )
    table = _concat(*[pa.table(part) for part in parts])
    ids = _ids("ADJ", np.arange(1, table.num_rows + 1), 8)
    return table.set_column(0, "adjustment_id", pa.array(ids))


def _adjustment_rows(
    account: dict[str, np.ndarray],
    accounts: np.ndarray,
    invoice_ids: np.ndarray | None,
    kind: str,
    cents: np.ndarray,
    effective: np.ndarray,
    reason: str,
) -> dict[str, object]:
    count = accounts.size
    return {
        "adjustment_id": np.full(count, ""),
        "account_id": account["id"][accounts],
        "invoice_id": pa.array(invoice_ids, type=pa.string())
        if invoice_ids is not None
        else pa.array([None] * count, type=pa.string()),
        "kind": np.full(count, kind),
        "amount": _money(np.maximum(cents, 1)),
        "currency": account["currency"][accounts],
        "effective_date": _dates(effective),
        "reason": np.full(count, reason),
    }


# --- disputes ----------------------------------------------------------------------------


def _disputes(
    rng: np.random.Generator,
    account: dict[str, np.ndarray],
    invoice: dict[str, np.ndarray],
    today: int,
) -> pa.Table:
    owner = invoice["account"]
    troubled = np.isin(account["behaviour"][owner], [LATE, PARTIAL, NEVER])
    chosen = np.flatnonzero(troubled & (rng.random(owner.size) < 0.03))
    opened = invoice["issue"][chosen] + rng.integers(5, 60, chosen.size)
    chosen, opened = chosen[opened <= today], opened[opened <= today]
    count = chosen.size
    whole = rng.random(count) < 0.5
    cents = (invoice["cents"][chosen] * rng.uniform(0.2, 0.9, count)).astype(np.int64)
    outcome = rng.choice(3, size=count, p=[0.4, 0.35, 0.25])  # open, rejected, upheld
    resolved = opened + rng.integers(10, 60, count)
    resolved_known = (outcome > 0) & (resolved <= today)
    account_level = rng.random(count) < 0.1
    return pa.table(
        {
            "dispute_id": _ids("D", np.arange(1, count + 1), 7),
            "account_id": account["id"][owner[chosen]],
            "invoice_id": pa.array(invoice["id"][chosen], mask=account_level),
            "amount": _money(cents, whole),
            "opened_date": _dates(opened),
            "resolved_date": _dates(resolved, ~resolved_known),
            "resolution": pa.array(
                np.where(outcome == 2, "upheld", "rejected"), mask=~resolved_known
            ),
        }
    )


# --- payment plans -----------------------------------------------------------------------


def _payment_plans(
    rng: np.random.Generator,
    account: dict[str, np.ndarray],
    today: int,
    first_payment: int,
) -> tuple[pa.Table, pa.Table]:
    candidates = np.flatnonzero(np.isin(account["behaviour"], [LATE, PARTIAL, NEVER, RECOVERED]))
    with_plan = candidates[rng.random(candidates.size) < 0.12]
    count = with_plan.size
    promise = rng.random(count) < 0.35
    installments = np.where(promise, 1, rng.integers(3, 7, count))
    created = today - rng.integers(10, 150, count)
    kept = rng.random(count) < np.where(promise, 0.5, 0.6)
    broken_after = np.where(kept, 99, rng.integers(0, 3, count))
    owner = np.repeat(np.arange(count), installments)
    number = np.arange(owner.size) - np.repeat(np.cumsum(installments) - installments, installments)
    first_due = created[owner] + np.where(promise[owner], rng.integers(3, 14, owner.size), 30)
    due = first_due + number * 30
    cents = np.maximum(2_000, account["typical_cents"][with_plan][owner] * 3 // installments[owner])
    cancelled = (rng.random(count) < 0.05) & ~promise
    plans = pa.table(
        {
            "plan_id": _ids("PL", with_plan[owner] + 1, 8),
            "account_id": account["id"][with_plan][owner],
            "kind": np.where(promise[owner], "promise_to_pay", "installment_plan"),
            "installment_no": number + 1,
            "due_date": _dates(due),
            "amount": _money(cents),
            "created_date": _dates(created[owner]),
            "cancelled_date": _dates(created[owner] + 20, ~cancelled[owner]),
        }
    )
    paid = (number < broken_after[owner]) & (due <= today) & ~cancelled[owner]
    index = np.flatnonzero(paid)
    payments = pa.table(
        {
            "payment_id": _ids("P", np.arange(first_payment, first_payment + index.size), 9),
            "account_id": account["id"][with_plan][owner[index]],
            "invoice_id": pa.array([None] * index.size, type=pa.string()),
            "received_date": _dates(due[index] - rng.integers(0, 3, index.size)),
            "amount": _money(cents[index]),
            "currency": account["currency"][with_plan][owner[index]],
            "method": np.full(index.size, "ach"),
            "reverses_payment_id": pa.array([None] * index.size, type=pa.string()),
        }
    )
    return plans, payments


# --- flags -------------------------------------------------------------------------------


def _flags(rng: np.random.Generator, account: dict[str, np.ndarray], today: int) -> pa.Table:
    parts = []
    customer_ids = np.char.add("C", np.char.zfill((account["customer"] + 1).astype(str), 7))
    for flag, share in FLAGS:
        chosen = np.flatnonzero(rng.random(account["id"].size) < share)
        if chosen.size == 0:
            chosen = rng.integers(0, account["id"].size, 1)
        whole_customer = rng.random(chosen.size) < 0.5
        start = today - rng.integers(1, 300, chosen.size)
        ended = rng.random(chosen.size) < (0.5 if flag == "legal_hold" else 0.1)
        parts.append(
            pa.table(
                {
                    "customer_id": customer_ids[chosen],
                    "account_id": pa.array(account["id"][chosen], mask=whole_customer),
                    "flag": np.full(chosen.size, flag),
                    "start_date": _dates(start),
                    "end_date": _dates(start + rng.integers(5, 60, chosen.size), ~ended),
                }
            )
        )
    table = _concat(*parts)
    # a customer with two accounts may draw the same flag twice for the whole customer
    connection = duckdb.connect()
    connection.register("flags", table)
    unique = connection.sql(
        "select distinct on (customer_id, account_id, flag, start_date) * from flags "
        "order by customer_id, account_id nulls first, flag, start_date, end_date nulls first"
    ).to_arrow_table()
    connection.close()
    return unique


# --- defects -----------------------------------------------------------------------------


def _append_defects(folder: Path, rows: dict[str, int], as_of: dt.date) -> dict[str, int]:
    """A handful of rows that break the contract, one per kind, for the quarantine to catch."""
    day = as_of.isoformat()
    extra = {
        "invoices": [
            f"IX000001,A00000001,INV-X1,2026-13-45,{day},120.00,USD,bad issue date",
            f"IX000002,A00000001,INV-X2,{day},{day},1e3,USD,amount in scientific notation",
            f"IX000003,A99999999,INV-X3,{day},{day},50.00,USD,account not in the export",
        ],
        "payments": [
            f"PX000001,A00000001,,{day},25.505,USD,card,",
            f"PX000002,A00000001,,{day},25.00,USD,crypto,",
        ],
    }
    counted = dict(rows)
    for entity, lines in extra.items():
        with (folder / f"{entity}.csv").open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        counted[entity] += len(lines)
    return counted


# --- helpers -----------------------------------------------------------------------------


def _formatted(column: Column) -> str:
    """SQL writing one column as the contract spells it."""
    if column.kind == "amount":
        return f"cast(cast({column.name} as HUGEINT) * 0.01 as DECIMAL(18,2)) as {column.name}"
    if column.kind == "timestamp":
        return f"strftime({column.name}, '%Y-%m-%dT%H:%M:%SZ') as {column.name}"
    return column.name


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(np.asarray(numbers).astype(str), width))


def _dates(days: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """Days since 1970-01-01 as dates; `missing` marks the rows left empty."""
    return pa.array(np.asarray(days, dtype="int32"), type=pa.int32(), mask=missing).cast(
        pa.date32()
    )


def _timestamps(days: np.ndarray, seconds: np.ndarray) -> pa.Array:
    epoch_seconds = np.asarray(days, dtype=np.int64) * 86_400 + seconds
    return pa.array(epoch_seconds * 1_000_000, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _money(cents: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """Whole cents; the writer turns them into decimal strings (never floats)."""
    return pa.array(np.asarray(cents, dtype=np.int64), type=pa.int64(), mask=missing)


def _concat(*tables: pa.Table) -> pa.Table:
    schema = tables[0].schema
    return pa.concat_tables([table.cast(schema) for table in tables])
