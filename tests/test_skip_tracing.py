"""Skip tracing: who becomes a candidate, one request per customer, the request file, and the
whole loop through the daily run (bounce → request → result → the new address is emailed)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import stat
from pathlib import Path

import duckdb
import pytest

from flows.lib.config import SkipTracingSettings
from flows.lib.contact_data import MartsNotForDate
from flows.lib.gates import record_build
from flows.lib.skip_tracing import REQUEST_COLUMNS, request_id, trace_skips
from tests.contact_fixtures import AS_OF, a_customer, a_stage, make_marts, no_stage

pytestmark = pytest.mark.integration
SETTINGS = SkipTracingSettings()


def bounced(connection: duckdb.DuckDBPyConnection, email: str = "ann@example.com") -> None:
    connection.execute(
        "insert into ops.email_suppressions values (?, 'hard_bounce', now(), null)", [email]
    )


def trace(
    connection: duckdb.DuckDBPyConnection,
    out: Path,
    as_of: dt.date = AS_OF,
    *,
    dry_run: bool = False,
    settings: SkipTracingSettings = SETTINGS,
):
    record_build(connection, as_of)
    return trace_skips(connection, settings, out, as_of, run_id="run-1", dry_run=dry_run)


def requests(connection: duckdb.DuckDBPyConnection) -> list[tuple]:
    return connection.execute(
        "select customer_id, requested_on, reasons, status from ops.skip_requests order by all"
    ).fetchall()


def request_lines(out: Path, as_of: dt.date = AS_OF) -> list[dict[str, str]]:
    path = out / "skip_tracing" / as_of.isoformat() / "skip_requests.csv"
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


@pytest.mark.parametrize(
    ("stage", "customer", "bounce", "reasons"),
    [
        pytest.param(a_stage(), a_customer(), True, ["email_hard_bounce"], id="hard bounce"),
        pytest.param(a_stage(), a_customer(is_address_returned=True), False,
                     ["letter_returned"], id="letter came back"),
        pytest.param(a_stage(), a_customer(is_phone_invalid=True), False, ["phone_invalid"],
                     id="invalid phone"),
        pytest.param(a_stage(), a_customer(email=None, postal_code=None, phone=None), False,
                     ["no_usable_channel"], id="nothing on record"),
        pytest.param(a_stage(), a_customer(postal_code=None, phone=None), True,
                     ["email_hard_bounce", "no_usable_channel"], id="bounced, nothing else"),
        pytest.param(a_stage(contact_restrictions="do_not_email, do_not_call"),
                     a_customer(is_address_returned=True), False,
                     ["letter_returned", "no_usable_channel"],
                     id="the only channel allowed came back"),
        pytest.param(a_stage(), a_customer(), False, None, id="reachable"),
        pytest.param(a_stage(is_held=True, hold_reason="deceased"), a_customer(), True, None,
                     id="held: the ladder is not working it"),
        pytest.param(a_stage(max_days_past_due=0), a_customer(), True, None,
                     id="not past due"),
        pytest.param(a_stage(collectible_amount=0), a_customer(), True, None,
                     id="nothing collectible"),
        pytest.param(no_stage(), a_customer(), True, None, id="in no stage"),
    ],
)  # fmt: skip
def test_who_becomes_a_skip_candidate(
    warehouse, tmp_path: Path, stage: dict, customer: dict, bounce: bool, reasons
) -> None:
    make_marts(warehouse, [stage], [customer])
    if bounce:
        bounced(warehouse)
    outcome = trace(warehouse, tmp_path)
    if reasons is None:
        assert requests(warehouse) == [] and outcome.total_candidates == 0
    else:
        assert requests(warehouse) == [("C1", AS_OF, reasons, "open")]
        assert outcome.candidates == dict.fromkeys(reasons, 1) and outcome.new_requests == 1


def test_an_account_placed_with_an_agency_is_the_agency_s_to_trace(warehouse, tmp_path) -> None:
    make_marts(warehouse, [a_stage()], [a_customer()])
    bounced(warehouse)
    warehouse.execute(
        "insert into ops.placements (placement_id, account_id, customer_id, agency_id, "
        "placed_date, placed_run_id, status, currency, placed_balance, commission_rate) "
        "values ('P1', 'A1', 'C1', 'acme', ?, 'run-0', 'open', 'USD', 120, 0.25)",
        [AS_OF],
    )
    assert trace(warehouse, tmp_path).total_candidates == 0


def test_the_request_file_lists_the_day_s_requests_whole(warehouse, tmp_path: Path) -> None:
    customers = [
        a_customer(
            customer_id="C2", full_name='=HYPERLINK("http://evil.example")', email="b@example.com"
        ),
        a_customer(),
    ]
    stages = [a_stage(), a_stage(account_id="A2", customer_id="C2")]
    make_marts(warehouse, stages, customers)
    bounced(warehouse)
    warehouse.execute("update marts.dim_customers set is_phone_invalid = customer_id = 'C2'")
    first = trace(warehouse, tmp_path)
    path = Path(first.files[0])
    assert path == tmp_path / "skip_tracing" / "2026-03-31" / "skip_requests.csv"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = request_lines(tmp_path)
    assert list(lines[0]) == list(REQUEST_COLUMNS)
    assert [(line["customer_id"], line["reasons"]) for line in lines] == [
        ("C1", "email_hard_bounce"),
        ("C2", "phone_invalid"),
    ]
    assert lines[0]["request_id"] == request_id("C1", AS_OF)
    assert lines[1]["full_name"].startswith("'=HYPERLINK")  # never a live formula
    assert "ssn" not in path.read_text(encoding="utf-8").split("\n")[0].replace("ssn_last4", "")
    # a rerun of the day makes no new request and writes the same lines
    again = trace(warehouse, tmp_path)
    assert again.new_requests == 0 and again.requested == 2 and again.waiting == 0
    assert request_lines(tmp_path) == lines
    assert len(requests(warehouse)) == 2


def test_a_customer_is_not_requested_again_while_a_request_waits(warehouse, tmp_path) -> None:
    make_marts(warehouse, [a_stage()], [a_customer()])
    bounced(warehouse)
    trace(warehouse, tmp_path)
    settings = SkipTracingSettings(result_wait_days=30, resubmit_after_days=90)

    def on(days: int):
        day = AS_OF + dt.timedelta(days=days)
        warehouse.execute("update marts.fct_account_stage_history set as_of_date = ?", [day])
        return trace(warehouse, tmp_path, day, settings=settings)

    tomorrow = on(1)
    assert (tomorrow.new_requests, tomorrow.waiting, tomorrow.open_requests) == (0, 1, 1)
    assert request_lines(tmp_path, AS_OF + dt.timedelta(days=1)) == []  # an empty file
    expired = on(30)  # unanswered for result_wait_days: expired, and requested again
    assert (expired.expired, expired.new_requests, expired.open_requests) == (1, 1, 1)
    statuses = [status for *_, status in requests(warehouse)]
    assert statuses == ["expired", "open"]


def test_a_result_that_found_nothing_waits_resubmit_after_days(warehouse, tmp_path) -> None:
    make_marts(warehouse, [a_stage()], [a_customer()])
    bounced(warehouse)
    trace(warehouse, tmp_path)
    warehouse.execute("update ops.skip_requests set status = 'not_found', answered_on = ?", [AS_OF])
    settings = SkipTracingSettings(resubmit_after_days=90)
    for days, new in ((89, 0), (90, 1)):
        day = AS_OF + dt.timedelta(days=days)
        warehouse.execute("update marts.fct_account_stage_history set as_of_date = ?", [day])
        assert trace(warehouse, tmp_path, day, settings=settings).new_requests == new


def test_a_dry_run_counts_and_writes_nothing(warehouse, tmp_path: Path) -> None:
    make_marts(warehouse, [a_stage()], [a_customer()])
    bounced(warehouse)
    outcome = trace(warehouse, tmp_path, dry_run=True)
    assert outcome.new_requests == 1 and outcome.files == []
    assert "would request 1" in str(outcome)
    assert requests(warehouse) == [] and not (tmp_path / "skip_tracing").exists()


def test_marts_of_another_day_make_no_request(warehouse, tmp_path: Path) -> None:
    make_marts(warehouse, [a_stage()], [a_customer()])
    bounced(warehouse)
    record_build(warehouse, AS_OF - dt.timedelta(days=1))
    with pytest.raises(MartsNotForDate, match="no request was made"):
        trace_skips(warehouse, SETTINGS, tmp_path, AS_OF, run_id="run-1")
    assert requests(warehouse) == [] and not (tmp_path / "skip_tracing").exists()


def test_bounce_request_result_and_the_next_run_emails_the_new_address(
    prefect_api, recoup_home: Path
) -> None:
    """The whole loop through the daily run: an email hard-bounces, the next run asks for a
    skip trace, the result gives a new address, and the run after emails the new address
    (under a new key) and never the old one."""
    from flows.daily_dunning import daily_dunning
    from flows.lib.email_events import import_events
    from flows.lib.skip_results import import_skip_results
    from flows.lib.warehouse import open_warehouse
    from tests.builders import base_batch, row

    day1, day2, day3 = (dt.date(2026, 11, 21) + dt.timedelta(days=n) for n in (0, 1, 2))
    base_batch(
        recoup_home / "inbox" / "2026-11-21",
        customers=[row("customers", email="old@example.com")],
        invoices=[row("invoices", issue_date="2026-10-20", due_date="2026-11-20")],
        payments=[row("payments", received_date="2026-11-19", amount="1.00")],
    )
    warehouse_path = recoup_home / "warehouse" / "recoup.duckdb"
    first = daily_dunning(as_of=day1)
    assert [c.total("sent") for c in first.contacts] == [1, 0, 0]
    [old_eml] = (recoup_home / "outbox" / "2026-11-21").glob("*.eml")
    assert "To: Ann Lee <old@example.com>" in old_eml.read_text(encoding="utf-8")
    assert first.skip_tracing is not None and first.skip_tracing.total_candidates == 0

    connection = open_warehouse(warehouse_path)
    [(old_key,)] = connection.execute("select action_key from ops.action_ledger").fetchall()
    bounce = {
        "email": "old@example.com", "event": "bounce", "type": "bounce",
        "timestamp": 1795000000, "sg_event_id": "sg-bounce-1", "outbox_id": old_key,
    }  # fmt: skip
    import_events(connection, [bounce], source="test", received_at=dt.datetime.now(dt.UTC))
    connection.close()

    second = daily_dunning(as_of=day2)
    assert second.skip_tracing is not None and second.skip_tracing.new_requests == 1
    [line] = request_lines(recoup_home / "out", day2)
    assert (line["customer_id"], line["email"]) == ("C1", "old@example.com")
    assert line["reasons"] == "email_hard_bounce"  # the letter would still reach them

    result = recoup_home / "skip_results.csv"
    result.write_text(
        "request_id,customer_id,email,phone,address_line1,address_line2,city,state,"
        "postal_code,country,source,confidence\n"
        f"{line['request_id']},C1,new@example.com,,,,,,,,vendor-x,92\n",
        encoding="utf-8",
    )
    connection = open_warehouse(warehouse_path)
    import_skip_results(connection, result, settings=SETTINGS, today=day2)
    assert connection.execute("select email from raw.customers_latest").fetchall() == [
        ("old@example.com",)
    ]  # the billing source is never overwritten
    connection.close()

    third = daily_dunning(as_of=day3)
    assert [c.total("sent") for c in third.contacts] == [1, 0, 0]
    [new_eml] = (recoup_home / "outbox" / "2026-11-23").glob("*.eml")
    text = new_eml.read_text(encoding="utf-8")
    assert "To: Ann Lee <new@example.com>" in text and "old@example.com" not in text
    again = daily_dunning(as_of=day3)  # a rerun sends nothing twice
    assert [c.counts for c in again.contacts] == [{}, {}, {}]
    assert third.skip_tracing is not None and third.skip_tracing.total_candidates == 0
    connection = open_warehouse(warehouse_path, read_only=True)
    rows = connection.execute(
        "select recipient, reentered_on, status from ops.action_ledger order by planned_at"
    ).fetchall()
    statuses = connection.execute("select status from ops.skip_requests").fetchall()
    connection.close()
    assert rows == [("old@example.com", None, "sent"), ("new@example.com", day2, "sent")]
    assert statuses == [("found",)]
    # four builds for three dates: dbt parsed the project once, then reused its manifest
    dbt_log = (recoup_home / "state" / "dbt" / "logs" / "dbt.log").read_text(encoding="utf-8")
    assert "Unable to do partial parsing because config vars" not in dbt_log
    assert dbt_log.count("Starting full parse") == 1


# --- the contact details in use, and re-entry against them --------------------------------


def billing_customer(connection: duckdb.DuckDBPyConnection, **values: str) -> None:
    from tests.contact_fixtures import a_raw_fact

    loaded = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    a_raw_fact(connection, "customers", loaded_at=loaded, **values)


def accepted(
    connection: duckdb.DuckDBPyConnection,
    group: str,
    at: dt.datetime,
    *,
    request: str | None = None,
    **values: str,
) -> None:
    """An accepted skip-trace override of one field group of C1, as the import writes it."""
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    connection.execute(
        f"""
        insert into ops.contact_overrides (
            override_id, customer_id, field_group, {names}, billing_fingerprint,
            replaced_fingerprint, source, confidence, request_id, accepted_on, accepted_at
        )
        select
            ?, 'C1', ?, {marks}, billing_{group}_fingerprint, {group}_fingerprint, 'vendor',
            90, ?, ?, ?
        from ops.customer_contacts where customer_id = 'C1'
        """,
        [f"{group}-{at.isoformat()}", group, *values.values(), request, at.date(), at],
    )


def in_use(connection: duckdb.DuckDBPyConnection, *columns: str) -> tuple:
    return connection.execute(
        f"select {', '.join(columns)} from ops.customer_contacts where customer_id = 'C1'"
    ).fetchall()[0]


def test_a_skip_traced_address_drops_billing_s_time_zone(warehouse) -> None:
    billing_customer(warehouse, timezone="America/Chicago")
    assert in_use(warehouse, "timezone") == ("America/Chicago",)
    accepted(warehouse, "address", NOON, address_line1="9 Sunset Blvd", city="Los Angeles",
             state="CA", postal_code="90012", country="US")  # fmt: skip
    # the send window now judges by every zone the new details allow, not Chicago's
    assert in_use(warehouse, "timezone", "city", "address_source") == (
        None, "Los Angeles", "skip_trace",
    )  # fmt: skip


def test_a_late_answer_to_an_older_request_does_not_replace_a_newer_one(warehouse) -> None:
    billing_customer(warehouse, email="old@example.com")
    for request, day in (("R-feb", dt.date(2026, 2, 1)), ("R-mar", dt.date(2026, 3, 1))):
        warehouse.execute(
            "insert into ops.skip_requests values (?, 'C1', ?, 'r', ['email_hard_bounce'], "
            "['A1'], 30, 'found', null, null, null, now(), now())",
            [request, day],
        )
    accepted(warehouse, "email", NOON, request="R-mar", email="march@example.com")
    accepted(warehouse, "email", NOON + dt.timedelta(days=10), request="R-feb",
             email="february@example.com")  # fmt: skip
    assert in_use(warehouse, "email") == ("march@example.com",)


def test_a_phone_is_the_same_number_with_or_without_its_country_code(warehouse) -> None:
    billing_customer(warehouse, phone="(512) 555-0100")
    warehouse.execute(
        "insert into ops.contact_problems select 'p1', 'C1', 'phone', phone_fingerprint, "
        "'phone_invalid', ?, 'test', null, now() from ops.customer_contacts",
        [AS_OF],
    )
    accepted(warehouse, "phone", NOON, phone="+1 512 555 0100")
    assert in_use(warehouse, "phone_invalid") == (True,)  # still the invalid number


def test_a_contact_still_planned_for_the_old_details_is_cancelled_and_sent_once(
    warehouse,
) -> None:
    """The stage's email was planned for the old address and not sent yet when a new one was
    accepted: the account re-enters the stage under a new key and the old key is cancelled
    before sending, so the stage's email goes out once, to the new address."""
    from flows.lib.config import ContactSettings
    from flows.lib.planner import build_plan, commit_plan
    from flows.lib.recheck import cancel_outdated
    from tests.contact_fixtures import contacted, manual_holds

    manual_holds(warehouse)
    entered = AS_OF - dt.timedelta(days=3)
    billing_customer(warehouse, email="old@example.com")
    old_key = contacted(warehouse, day=entered, entered=entered, status="planned")
    accepted(warehouse, "email", NOON - dt.timedelta(days=1), email="new@example.com")
    make_marts(
        warehouse,
        [a_stage(stage_entered_date=entered)],
        [a_customer(email="new@example.com", email_updated_on=AS_OF - dt.timedelta(days=1))],
    )
    commit_plan(warehouse, build_plan(warehouse, ContactSettings(), AS_OF, "run-2"))
    cancelled = cancel_outdated(warehouse, as_of=AS_OF, today=AS_OF, catch_up_days=7, run_id="r")
    assert cancelled == {"contact_details_changed": 1}
    rows = warehouse.execute(
        "select action_key = ?, reentered_on, status, reason from ops.action_ledger order by 1"
    , [old_key]).fetchall()  # fmt: skip
    assert rows == [
        (False, AS_OF - dt.timedelta(days=1), "planned", None),
        (True, None, "cancelled", "contact_details_changed"),
    ]


@pytest.mark.parametrize(
    ("old_status", "sent_hour", "accepted_hour"),
    [
        pytest.param("suppressed", 6, 14, id="suppressed at the morning run, new email at 2 pm"),
        pytest.param("sent", 6, 14, id="sent at the morning run, new email at 2 pm"),
    ],
)
def test_details_accepted_on_the_day_of_the_stage_s_contact_still_re_enter(
    warehouse, old_status: str, sent_hour: int, accepted_hour: int
) -> None:
    from flows.lib.config import ContactSettings
    from flows.lib.planner import build_plan
    from tests.contact_fixtures import contacted

    day = AS_OF - dt.timedelta(days=2)  # entered the stage and contacted that morning
    contacted(warehouse, day=day, entered=day, status=old_status)
    warehouse.execute(
        "update ops.action_ledger set planned_at = ?",
        [dt.datetime.combine(day, dt.time(sent_hour), dt.UTC)],
    )
    at = dt.datetime.combine(day, dt.time(accepted_hour), dt.UTC)
    make_marts(
        warehouse,
        [a_stage(stage_entered_date=day)],
        [a_customer(email="new@example.com", email_updated_on=day, email_updated_at=at)],
    )
    assert build_plan(warehouse, ContactSettings(), AS_OF, "run-3").planned() == {"email": 1}


def test_a_rerun_for_a_past_date_or_a_scoped_run_makes_no_request(warehouse, tmp_path) -> None:
    make_marts(warehouse, [a_stage()], [a_customer()])
    bounced(warehouse)
    warehouse.execute(
        "insert into ops.skip_requests values ('later', 'C9', ?, 'r', ['phone_invalid'], "
        "['A9'], 30, 'open', null, null, null, now(), now())",
        [AS_OF + dt.timedelta(days=1)],
    )
    past = trace(warehouse, tmp_path)
    assert past.total_candidates == 1 and past.new_requests == 0
    assert "a rerun for a past date makes no request" in str(past)
    warehouse.execute("delete from ops.skip_requests")
    record_build(warehouse, AS_OF)
    scoped = trace_skips(warehouse, SETTINGS, tmp_path, AS_OF, run_id="r", scoped=True)
    assert scoped.new_requests == 0 and "scoped" in str(scoped)
    assert requests(warehouse) == []


NOON = dt.datetime.combine(AS_OF, dt.time(12), dt.UTC)
