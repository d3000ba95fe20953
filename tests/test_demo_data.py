"""The demo export: deterministic, in the contract's format, and covering every path."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from flows.lib.contract import ENTITIES
from flows.lib.demo_data import generate_demo_export
from flows.lib.loader import load_batch

pytestmark = pytest.mark.integration
AS_OF = dt.date(2026, 11, 23)


def digest(folder: Path) -> str:
    hashes = [hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())]
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory):
    from flows.lib.warehouse import open_warehouse

    root = tmp_path_factory.mktemp("demo")
    export = generate_demo_export(root / "batch", accounts=3_000, as_of=AS_OF, seed=7)
    connection = open_warehouse(root / "w.duckdb")
    outcome = load_batch(connection, export.folder)
    yield export, outcome, connection
    connection.close()


def test_the_same_seed_gives_the_same_files(tmp_path: Path) -> None:
    first = generate_demo_export(tmp_path / "a", accounts=300, as_of=AS_OF, seed=1)
    second = generate_demo_export(tmp_path / "b", accounts=300, as_of=AS_OF, seed=1)
    other = generate_demo_export(tmp_path / "c", accounts=300, as_of=AS_OF, seed=2)
    assert digest(first.folder) == digest(second.folder) != digest(other.folder)


def test_every_entity_has_a_file_with_the_contract_header(demo_warehouse) -> None:
    export, _, _ = demo_warehouse
    for entity in ENTITIES:
        header = (
            (export.folder / f"{entity.name}.csv").read_text(encoding="utf-8").split("\n", 1)[0]
        )
        assert header.split(",") == list(entity.column_names)


def test_only_the_planted_defects_are_quarantined(demo_warehouse) -> None:
    _, outcome, connection = demo_warehouse
    reasons = connection.execute(
        "select entity, reason_codes from raw.quarantine order by all"
    ).fetchall()
    assert reasons == [
        ("invoices", ["bad_amount"]),
        ("invoices", ["bad_date"]),
        ("invoices", ["orphan_foreign_key"]),
        ("payments", ["bad_amount"]),
        ("payments", ["unknown_value"]),
    ]
    assert (
        outcome.rows_loaded
        == sum(outcome.files[i].rows_read for i in range(len(outcome.files))) - 5
    )


def values(connection, sql: str) -> set:
    return {value for (value,) in connection.execute(sql).fetchall()}


def test_the_data_covers_every_path_of_the_pipeline(demo_warehouse) -> None:
    _, _, c = demo_warehouse
    assert values(c, "select distinct segment from raw.accounts") == {
        "residential",
        "healthcare",
        "smb",
        "enterprise",
    }
    assert values(c, "select distinct currency from raw.accounts") == {"USD", "CAD", "EUR", "GBP"}
    assert values(c, "select distinct kind from raw.adjustments") == {
        "credit_note",
        "write_off",
        "fee",
        "interest",
        "refund",
    }
    assert values(c, "select distinct flag from raw.account_flags") == {
        "bankruptcy",
        "deceased",
        "cease_communication",
        "attorney_represented",
        "do_not_email",
        "do_not_call",
        "fraud",
        "servicemember",
        "legal_hold",
    }
    assert values(c, "select distinct kind from raw.payment_plans") == {
        "promise_to_pay",
        "installment_plan",
    }
    assert values(c, "select distinct coalesce(resolution, 'open') from raw.disputes") == {
        "open",
        "upheld",
        "rejected",
    }
    assert values(c, "select distinct method from raw.payments") >= {"card", "ach", "check"}
    assert values(c, "select distinct language from raw.customers") >= {"en", "es", "fr", "de"}
    checks = {
        "reversals": "select count(*) from raw.payments where reverses_payment_id is not null",
        "unlinked payments": "select count(*) from raw.payments where invoice_id is null",
        "customers with only a state": "select count(*) from raw.customers where timezone is null and country = 'US'",
        "customers in several time zones": "select count(distinct timezone) - 5 from raw.customers where country = 'US'",
        "partial disputes": "select count(*) from raw.disputes where amount is not null",
        "account-level disputes": "select count(*) from raw.disputes where invoice_id is null",
        "customer-wide flags": "select count(*) from raw.account_flags where account_id is null",
        "customers with two currencies": "select count(*) from (select customer_id from raw.accounts group by 1 having count(distinct currency) > 1)",
        "18 months of invoices": "select (max(issue_date) - min(issue_date)) - 500 from raw.invoices",
        "invoices not paid yet": "select count(*) from raw.invoices i where not exists (select 1 from raw.payments p where p.invoice_id = i.invoice_id)",
    }
    for name, sql in checks.items():
        assert c.execute(sql).fetchall()[0][0] > 0, name


def test_no_invoice_or_payment_is_dated_after_the_as_of_date(demo_warehouse) -> None:
    _, _, c = demo_warehouse
    assert c.execute("select max(issue_date) from raw.invoices").fetchall()[0][0] <= AS_OF
    assert c.execute("select max(received_date) from raw.payments").fetchall()[0][0] <= AS_OF
