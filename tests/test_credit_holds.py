"""Credit holds (flows/lib/credit_holds.py) on small hand-built marts: who is held and why, the
edges of both criteria, exactly once across reruns and days, releases and their reasons, the
day's files, dry runs and scopes; and, once per module, the holds in the contact log through
the real dbt views (stg_ops__credit_holds, fct_contact_log)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import stat
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import yaml

from flows.lib.config import Settings, load_settings
from flows.lib.contact_data import MartsNotForDate
from flows.lib.credit_holds import (
    HOLD_COLUMNS,
    RELEASE_COLUMNS,
    CreditHoldOutcome,
    CreditHoldSettingsError,
    credit_hold_folder,
    ensure_credit_hold_schema,
    hold_id,
    release_id,
    update_credit_holds,
)
from flows.lib.dbt_build import DBT_PROJECT, build_warehouse
from flows.lib.gates import record_build
from flows.lib.planner import ALL_ACCOUNTS, ContactScope
from flows.lib.warehouse import open_warehouse

pytestmark = pytest.mark.integration

SEED = DBT_PROJECT / "seeds" / "escalation_policy.csv"
POLICY_VERSION = yaml.safe_load((DBT_PROJECT / "dbt_project.yml").read_text())["vars"][
    "policy_version"
]
D1, D2, D3 = dt.date(2026, 3, 30), dt.date(2026, 3, 31), dt.date(2026, 4, 1)
NOW = dt.datetime(2026, 3, 31, 7, 0, tzinfo=dt.UTC)
DEFAULT_FROM_STAGE = Settings.model_fields["credit_hold"].default.from_stage


# --- the ladder, read from the seed (another stage may be added at any time) ------------------


def _seed_rows() -> list[dict[str, str]]:
    with SEED.open(encoding="utf-8", newline="") as stream:
        return [each for each in csv.DictReader(stream) if each["policy_version"] == POLICY_VERSION]


LADDERS: dict[str, list[str]] = {}
for _each in sorted(_seed_rows(), key=lambda each: int(each["stage_order"])):
    LADDERS.setdefault(_each["segment"], []).append(_each["stage"])


def ladder_segment(segment: str) -> str:
    return segment if segment in LADDERS else "default"


def order_of(segment: str, stage: str) -> int:
    """stage_order of `stage` on the ladder the segment follows (0: no stage)."""
    if stage == "none":
        return 0
    ladder = LADDERS[ladder_segment(segment)]
    return 1 + ladder.index(stage) if stage in ladder else 100  # a test-only ladder's stage


def stage_below(stage: str, segment: str = "residential") -> str:
    ladder = LADDERS[ladder_segment(segment)]
    return ladder[ladder.index(stage) - 1]


# --- a small book: the marts as the day's build leaves them ----------------------------------

ACCOUNT_DEFAULTS: dict[str, object] = {
    "account_id": "A1",
    "customer_id": "C1",
    "segment": "residential",
    "currency": "USD",
    "account_status": "active",
    "credit_limit": None,
    "stage": DEFAULT_FROM_STAGE,
    "hold_reason": "",
    "total_open": Decimal("300.00"),
    "collectible_amount": None,  # None: all of total_open
    "owes": True,  # False: no stage-history row that day (nothing open, no credit)
}


def an_account(account_id: str = "A1", **overrides: object) -> dict[str, object]:
    values = {**ACCOUNT_DEFAULTS, "account_id": account_id, **overrides}
    if "customer_id" not in overrides:
        values["customer_id"] = "C" + account_id.lstrip("A")
    if values["collectible_amount"] is None:
        values["collectible_amount"] = values["total_open"]
    return values


def paid(account_id: str = "A1", **overrides: object) -> dict[str, object]:
    return an_account(account_id, owes=False, **overrides)


def new_book(connection: duckdb.DuckDBPyConnection) -> None:
    """Empty marts, the real ladder in policy.escalation_policy and the hold ledger."""
    ensure_credit_hold_schema(connection)
    for schema in ("marts", "policy"):
        connection.execute(f"create schema if not exists {schema}")
    connection.execute(
        f"""
        create or replace table policy.escalation_policy as
        select policy_version, segment, stage_order::integer as stage_order, stage, channel
        from read_csv('{SEED}', all_varchar = true)
        """
    )
    connection.execute(
        """
        create or replace table marts.fct_account_stage_history (
            as_of_date DATE, account_id VARCHAR, customer_id VARCHAR, segment VARCHAR,
            currency VARCHAR, policy_version VARCHAR, policy_segment VARCHAR,
            stage_order INTEGER, stage VARCHAR, hold_reason VARCHAR,
            total_open DECIMAL(18,2), collectible_amount DECIMAL(18,2)
        )
        """
    )


def build_day(
    connection: duckdb.DuckDBPyConnection, as_of: dt.date, accounts: list[dict[str, object]]
) -> None:
    """The day's stage history (replacing the day, as dbt does), dim_accounts as of the
    newest data, and the build recorded for `as_of`."""
    connection.execute("delete from marts.fct_account_stage_history where as_of_date = ?", [as_of])
    history = [each for each in accounts if each["owes"]]
    if history:
        connection.executemany(
            "insert into marts.fct_account_stage_history values "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    as_of, each["account_id"], each["customer_id"], each["segment"],
                    each["currency"], POLICY_VERSION, ladder_segment(str(each["segment"])),
                    order_of(str(each["segment"]), str(each["stage"])), each["stage"],
                    each["hold_reason"], each["total_open"], each["collectible_amount"],
                ]
                for each in history
            ],
        )  # fmt: skip
    connection.execute(
        "create or replace table marts.dim_accounts (account_id VARCHAR, customer_id VARCHAR, "
        "currency VARCHAR, segment VARCHAR, account_status VARCHAR, "
        "credit_limit DECIMAL(18,2), opened_date DATE)"
    )
    connection.executemany(
        "insert into marts.dim_accounts values (?, ?, ?, ?, ?, ?, '2024-01-01')",
        [
            [
                each["account_id"], each["customer_id"], each["currency"], each["segment"],
                each["account_status"], each["credit_limit"],
            ]
            for each in accounts
        ],
    )  # fmt: skip
    record_build(connection, as_of)


def settings_for(home: Path, **credit_hold: object) -> Settings:
    settings = load_settings({"RECOUP_HOME": str(home)})
    changed = settings.credit_hold.model_copy(update=credit_hold)
    return settings.model_copy(update={"credit_hold": changed})


def run(
    connection: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: dt.date = D2,
    *,
    scope: ContactScope = ALL_ACCOUNTS,
    dry_run: bool = False,
    run_id: str = "run-1",
) -> CreditHoldOutcome:
    return update_credit_holds(
        connection, settings, as_of, run_id, scope=scope, dry_run=dry_run, now=NOW
    )


def ledger(connection: duckdb.DuckDBPyConnection) -> list[tuple]:
    """(account, held_on, reasons, released_on, release_reason) of every hold."""
    return connection.execute(
        "select account_id, held_on, reasons, released_on, release_reason "
        "from ops.credit_holds order by account_id, held_on"
    ).fetchall()


def file_rows(folder: Path, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / name).read_text(encoding="utf-8"))))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture
def book(tmp_path: Path):
    connection = duckdb.connect(":memory:")
    new_book(connection)
    yield connection
    connection.close()


# --- who is held ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "reasons"),
    [
        pytest.param(an_account(), [f"stage:{DEFAULT_FROM_STAGE}"], id="at from_stage"),
        pytest.param(an_account(stage=stage_below(DEFAULT_FROM_STAGE)), None,
                     id="one stage below"),
        pytest.param(an_account(stage=LADDERS["default"][-1]),
                     [f"stage:{LADDERS['default'][-1]}"], id="top of the ladder"),
        pytest.param(an_account(segment="enterprise"), [f"stage:{DEFAULT_FROM_STAGE}"],
                     id="at from_stage on the enterprise ladder"),
        pytest.param(an_account(segment="enterprise",
                                stage=stage_below(DEFAULT_FROM_STAGE, "enterprise")), None,
                     id="one below on the enterprise ladder"),
        pytest.param(an_account(stage="none"), None, id="in no stage"),
        pytest.param(an_account(hold_reason="promise_to_pay"), [f"stage:{DEFAULT_FROM_STAGE}"],
                     id="a promise in force does not stop the hold"),
        pytest.param(an_account(hold_reason="manual: awaiting check, placed_with_agency"),
                     [f"stage:{DEFAULT_FROM_STAGE}"], id="manual hold and placement"),
        pytest.param(an_account(hold_reason="bankruptcy"), None, id="bankruptcy: never"),
        pytest.param(an_account(hold_reason="bankruptcy, deceased"), None,
                     id="bankruptcy among other holds"),
        pytest.param(an_account(collectible_amount=Decimal("0.00"), hold_reason="dispute"), None,
                     id="the whole balance disputed"),
        pytest.param(an_account(collectible_amount=Decimal("10.00")),
                     [f"stage:{DEFAULT_FROM_STAGE}"], id="part of the balance disputed"),
    ],
)  # fmt: skip
def test_who_is_held_by_stage(book, tmp_path: Path, account, reasons) -> None:
    build_day(book, D2, [account])
    outcome = run(book, settings_for(tmp_path))
    if reasons is None:
        assert ledger(book) == [] and outcome.new_holds == 0
    else:
        assert ledger(book) == [("A1", D2, reasons, None, None)]
        assert outcome.new_holds == 1 and outcome.held == dict.fromkeys(reasons, 1)


def test_a_ladder_without_from_stage_holds_nobody_by_stage(book, tmp_path: Path) -> None:
    # a segment with its own short ladder that has no final notice: never held by stage
    book.execute(
        "insert into policy.escalation_policy values "
        "(?, 'prepaid', 1, 'reminder_1', 'email'), (?, 'prepaid', 2, 'suspension', 'manager')",
        [POLICY_VERSION, POLICY_VERSION],
    )
    LADDERS["prepaid"] = ["reminder_1", "suspension"]
    try:
        build_day(book, D2, [an_account(segment="prepaid", stage="suspension")])
        assert run(book, settings_for(tmp_path)).new_holds == 0
        assert run(book, settings_for(tmp_path, from_stage="suspension")).held == {
            "stage:suspension": 1
        }
    finally:
        del LADDERS["prepaid"]


@pytest.mark.parametrize(
    ("limit", "total_open", "over_credit_limit", "held"),
    [
        pytest.param("250.00", "250.00", True, False, id="equal to the limit"),
        pytest.param("250.00", "250.01", True, True, id="a cent above"),
        pytest.param(None, "9999.00", True, False, id="no credit limit"),
        pytest.param("0.00", "5.00", True, True, id="limit zero: any debt"),
        pytest.param("250.00", "900.00", False, False, id="criterion off"),
    ],
)
def test_over_the_credit_limit(book, tmp_path, limit, total_open, over_credit_limit, held) -> None:
    account = an_account(
        stage="none",
        credit_limit=None if limit is None else Decimal(limit),
        total_open=Decimal(total_open),
    )
    build_day(book, D2, [account])
    outcome = run(book, settings_for(tmp_path, over_credit_limit=over_credit_limit))
    assert outcome.held == ({"over_credit_limit": 1} if held else {})
    assert [row[2] for row in ledger(book)] == ([["over_credit_limit"]] if held else [])


def test_over_the_limit_with_only_disputed_debt_is_not_held(book, tmp_path: Path) -> None:
    account = an_account(stage="none", credit_limit=Decimal("100.00"), collectible_amount=0)
    build_day(book, D2, [account])
    assert run(book, settings_for(tmp_path)).new_holds == 0


def test_both_reasons_and_from_stage_null(book, tmp_path: Path) -> None:
    accounts = [
        an_account("A1", credit_limit=Decimal("100.00")),  # at the stage and over the limit
        an_account("A2", stage=LADDERS["default"][-1]),  # at the top, no limit
    ]
    build_day(book, D2, accounts)
    assert run(book, settings_for(tmp_path, from_stage=None), dry_run=True).held == {
        "over_credit_limit": 1
    }
    outcome = run(book, settings_for(tmp_path))
    assert outcome.held == {f"stage:{DEFAULT_FROM_STAGE}": 1, "over_credit_limit": 1,
                            f"stage:{LADDERS['default'][-1]}": 1}  # fmt: skip
    assert ledger(book)[0][2] == [f"stage:{DEFAULT_FROM_STAGE}", "over_credit_limit"]


# --- bad inputs: a clear error and nothing written --------------------------------------------


def test_a_from_stage_no_ladder_has_is_refused(book, tmp_path: Path) -> None:
    build_day(book, D2, [an_account()])
    with pytest.raises(CreditHoldSettingsError) as caught:
        run(book, settings_for(tmp_path, from_stage="final_notise"))
    message = str(caught.value)
    assert "credit_hold.from_stage is 'final_notise'" in message
    assert DEFAULT_FROM_STAGE in message and "nothing was held or released" in message
    assert ledger(book) == [] and not (tmp_path / "out").exists()


def test_marts_of_another_day_are_refused(book, tmp_path: Path) -> None:
    build_day(book, D2, [an_account()])
    with pytest.raises(MartsNotForDate, match="the marts hold 2026-03-31, not 2026-04-01"):
        run(book, settings_for(tmp_path), D3)
    assert ledger(book) == [] and not (tmp_path / "out").exists()


# --- releases -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cured", "reason"),
    [
        pytest.param(an_account(stage=stage_below(DEFAULT_FROM_STAGE),
                                total_open=Decimal("40.00")), "cured",
                     id="paid down below the stage"),
        pytest.param(paid(), "paid_in_full", id="nothing owed"),
        pytest.param(an_account(stage="none", total_open=Decimal("0.00")), "paid_in_full",
                     id="only a credit balance left"),
        pytest.param(paid(account_status="closed"), "account_closed",
                     id="closed with nothing owed"),
        pytest.param(an_account(hold_reason="bankruptcy"), "bankruptcy_stay",
                     id="bankruptcy: released at once"),
        pytest.param(an_account(collectible_amount=Decimal("0.00"), hold_reason="dispute"),
                     "disputed", id="the whole balance disputed"),
        pytest.param(an_account(hold_reason="installment_plan"), None,
                     id="a plan alone releases nothing"),
        pytest.param(an_account(account_status="closed"), None,
                     id="closed but still owing: stays held"),
    ],
)  # fmt: skip
def test_release_reasons(book, tmp_path: Path, cured, reason) -> None:
    settings = settings_for(tmp_path)
    build_day(book, D1, [an_account()])
    run(book, settings, D1)
    build_day(book, D2, [cured])
    outcome = run(book, settings, D2)
    released = file_rows(credit_hold_folder(tmp_path / "out", D2), "credit_hold_releases.csv")
    if reason is None:
        assert outcome.released == {} and released == [] and outcome.open_holds == 1
        assert ledger(book)[0][3:] == (None, None)
    else:
        assert outcome.released == {reason: 1} and outcome.open_holds == 0
        assert ledger(book)[0][3:] == (D2, reason)
        assert [(each["account_id"], each["release_reason"]) for each in released] == [
            ("A1", reason)
        ]


def test_over_limit_released_when_paid_to_the_limit(book, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    build_day(book, D1, [an_account(stage="none", credit_limit=Decimal("100.00"))])
    run(book, settings, D1)
    build_day(book, D2, [an_account(stage="none", credit_limit=Decimal("100.00"),
                                    total_open=Decimal("100.00"))])  # fmt: skip
    assert run(book, settings, D2).released == {"cured": 1}
    released = file_rows(credit_hold_folder(tmp_path / "out", D2), "credit_hold_releases.csv")
    assert released == [{
        "account_id": "A1", "customer_id": "C1", "held_on": "2026-03-30",
        "released_on": "2026-03-31", "release_reason": "cured", "total_open": "100.00",
        "currency": "USD", "hold_id": hold_id("A1", D1),
    }]  # fmt: skip


# --- exactly once, reruns, past dates ---------------------------------------------------------


def test_a_hold_is_made_once_per_episode(book, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    build_day(book, D1, [an_account()])
    assert run(book, settings, D1).new_holds == 1
    build_day(book, D2, [an_account(total_open=Decimal("280.00"))])
    second = run(book, settings, D2)  # still at the stage a day later: the same hold
    assert second.new_holds == 0 and second.open_holds == 1
    folder = credit_hold_folder(tmp_path / "out", D2)
    assert file_rows(folder, "credit_holds.csv") == []
    assert [each["hold_id"] for each in file_rows(folder, "open_credit_holds.csv")] == [
        hold_id("A1", D1)
    ]
    build_day(book, D3, [paid()])
    assert run(book, settings, D3).released == {"paid_in_full": 1}
    # later at the stage again: a new episode, a new hold
    later = D3 + dt.timedelta(days=20)
    build_day(book, later, [an_account()])
    assert run(book, settings, later).new_holds == 1
    assert [(row[1], row[4]) for row in ledger(book)] == [(D1, "paid_in_full"), (later, None)]


def test_a_backfilled_earlier_day_adds_no_second_hold(book, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    build_day(book, D3, [an_account()])
    run(book, settings, D3)
    build_day(book, D2, [an_account()])  # D2 was missed and is run afterwards
    assert run(book, settings, D2).new_holds == 0
    assert ledger(book) == [("A1", D3, [f"stage:{DEFAULT_FROM_STAGE}"], None, None)]


def test_a_past_date_never_releases_a_later_hold(book, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    build_day(book, D3, [an_account()])
    run(book, settings, D3)
    build_day(book, D2, [paid()])  # the account owed nothing the day before it was held
    outcome = run(book, settings, D2)
    assert outcome.released == {} and outcome.open_holds == 0  # not held yet on D2
    assert ledger(book)[0][3:] == (None, None)


def test_a_rerun_that_now_finds_the_account_cured_releases_it_the_same_day(
    book, tmp_path: Path
) -> None:
    # the first run of D2 sent the hold; a payment dated D2 loaded later: the rerun releases
    # it on D2 (billing already has the hold), and a third run makes no second hold
    settings = settings_for(tmp_path)
    build_day(book, D2, [an_account()])
    run(book, settings, D2)
    build_day(book, D2, [paid()])
    assert run(book, settings, D2).released == {"paid_in_full": 1}
    build_day(book, D2, [an_account()])
    assert run(book, settings, D2).new_holds == 0
    assert ledger(book) == [("A1", D2, [f"stage:{DEFAULT_FROM_STAGE}"], D2, "paid_in_full")]
    folder = credit_hold_folder(tmp_path / "out", D2)
    assert len(file_rows(folder, "credit_holds.csv")) == 1
    assert len(file_rows(folder, "credit_hold_releases.csv")) == 1


# --- dry run and scope ------------------------------------------------------------------------


def test_a_dry_run_counts_and_writes_nothing(book, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    build_day(book, D1, [an_account("A1"), an_account("A2")])
    run(book, settings, D1)
    files_before = folder_bytes(credit_hold_folder(tmp_path / "out", D1))
    build_day(book, D2, [paid("A1"), an_account("A2"), an_account("A3")])
    ledger_before = ledger(book)
    dry = run(book, settings, D2, dry_run=True)
    assert (dry.new_holds, dry.released, dry.open_holds) == (1, {"paid_in_full": 1}, 2)
    assert dry.files == () and dry.dry_run
    assert str(dry) == (
        f"would hold 1 (stage:{DEFAULT_FROM_STAGE} 1); would release 1 (paid_in_full 1); 2 open"
    )
    assert ledger(book) == ledger_before
    assert not credit_hold_folder(tmp_path / "out", D2).exists()
    assert folder_bytes(credit_hold_folder(tmp_path / "out", D1)) == files_before
    real = run(book, settings, D2)
    assert (real.new_holds, real.released, real.open_holds) == (1, {"paid_in_full": 1}, 2)


def test_a_scoped_run_acts_on_its_scope_only(book, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    build_day(book, D1, [an_account("A1"), an_account("A2", segment="enterprise")])
    run(book, settings, D1, scope=ContactScope(account_ids=("A2",)))
    assert [row[0] for row in ledger(book)] == ["A2"]
    run(book, settings, D1, scope=ContactScope(segment="residential"))
    assert [row[0] for row in ledger(book)] == ["A1", "A2"]
    # the day's file lists both, though each run saw one
    folder = credit_hold_folder(tmp_path / "out", D1)
    assert [each["account_id"] for each in file_rows(folder, "credit_holds.csv")] == ["A1", "A2"]
    # both pay; a run scoped to enterprise releases only A2
    build_day(book, D2, [paid("A1"), paid("A2", segment="enterprise")])
    outcome = run(book, settings, D2, scope=ContactScope(segment="enterprise"))
    assert outcome.released == {"paid_in_full": 1}
    assert [(row[0], row[4]) for row in ledger(book)] == [("A1", None), ("A2", "paid_in_full")]


# --- the files ------------------------------------------------------------------------------


def test_the_files_are_whole_owner_only_and_formula_safe(book, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    evil = '=HYPERLINK("http://evil.example")'
    build_day(book, D2, [
        an_account("A2", credit_limit=Decimal("50.00")),
        an_account("A1", customer_id=evil, stage="none", credit_limit=Decimal("50.00")),
    ])  # fmt: skip
    outcome = run(book, settings, D2)
    folder = credit_hold_folder(tmp_path / "out", D2)
    assert outcome.files == tuple(
        str(folder / name)
        for name in ("credit_holds.csv", "credit_hold_releases.csv", "open_credit_holds.csv")
    )
    for path in map(Path, outcome.files):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    text = (folder / "credit_holds.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(HOLD_COLUMNS)
    assert (folder / "credit_hold_releases.csv").read_text().strip() == ",".join(RELEASE_COLUMNS)
    holds = file_rows(folder, "credit_holds.csv")
    assert holds == [
        {"account_id": "A1", "customer_id": "'" + evil, "held_on": "2026-03-31",
         "reasons": "over_credit_limit", "stage": "none", "total_open": "300.00",
         "credit_limit": "50.00", "currency": "USD", "hold_id": hold_id("A1", D2)},
        {"account_id": "A2", "customer_id": "C2", "held_on": "2026-03-31",
         "reasons": f"stage:{DEFAULT_FROM_STAGE}|over_credit_limit",
         "stage": DEFAULT_FROM_STAGE, "total_open": "300.00", "credit_limit": "50.00",
         "currency": "USD", "hold_id": hold_id("A2", D2)},
    ]  # fmt: skip
    assert file_rows(folder, "open_credit_holds.csv") == holds
    before = folder_bytes(folder)
    again = run(book, settings, D2, run_id="run-2")
    assert again.new_holds == 0 and folder_bytes(folder) == before


# --- once per module: a timeline through the real dbt views -----------------------------------


def _build_contact_log(warehouse: Path, state: Path) -> None:
    """dbt builds the ops staging views and fct_contact_log (with their data tests) over the
    hand-built warehouse: only the nodes the contact log needs, so it stays quick."""
    build_warehouse(warehouse, state, D3, select=(
        "stg_ops__actions", "stg_ops__email_events", "stg_ops__credit_holds", "fct_contact_log",
    ))  # fmt: skip


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Three days: A1 held by stage on D1 and paid in full on D3; A2 held over its limit on D1
    and paid down to the limit on D2; A3 one stage short throughout. Reruns of D1 and, after
    D3, of D2; then the contact log as dbt builds it."""
    root = tmp_path_factory.mktemp("credit-holds")
    warehouse = root / "warehouse" / "recoup.duckdb"
    connection = open_warehouse(warehouse)
    new_book(connection)
    settings = settings_for(root)
    folder = {day: credit_hold_folder(root / "out", day) for day in (D1, D2, D3)}
    limit = {"credit_limit": Decimal("200.00"), "stage": "none"}
    a3 = an_account("A3", stage=stage_below(DEFAULT_FROM_STAGE))
    seen: dict[str, object] = {}
    build_day(connection, D1, [an_account("A1"), an_account("A2", **limit), a3])
    seen["d1"] = run(connection, settings, D1)
    seen["d1_files"] = folder_bytes(folder[D1])
    seen["d1_rerun"] = run(connection, settings, D1, run_id="run-1b")
    seen["d1_files_rerun"] = folder_bytes(folder[D1])
    build_day(connection, D2, [
        an_account("A1"), an_account("A2", total_open=Decimal("200.00"), **limit), a3,
    ])  # fmt: skip
    seen["d2"] = run(connection, settings, D2, run_id="run-2")
    seen["d2_files"] = folder_bytes(folder[D2])
    build_day(connection, D3, [paid("A1"), an_account("A2", total_open=Decimal("150.00"),
                                                      **limit), a3])  # fmt: skip
    seen["d3"] = run(connection, settings, D3, run_id="run-3")
    seen["d3_releases"] = file_rows(folder[D3], "credit_hold_releases.csv")
    # a rerun of D2 after D3 ran, from D2's marts as they were
    build_day(connection, D2, [
        an_account("A1"), an_account("A2", total_open=Decimal("200.00"), **limit), a3,
    ])  # fmt: skip
    seen["d2_rerun"] = run(connection, settings, D2, run_id="run-2b")
    seen["d2_files_rerun"] = folder_bytes(folder[D2])
    seen["ledger"] = ledger(connection)
    connection.close()
    _build_contact_log(warehouse, root / "state")
    connection = duckdb.connect(str(warehouse), read_only=True)
    seen["contact_log"] = connection.execute(
        "select action_key, account_id, run_id, channel, stage, status, reason, provider, "
        "provider_message_id, currency, collectible_amount, is_contacted, as_of_date "
        "from marts.fct_contact_log order by as_of_date, account_id, channel"
    ).fetchall()
    connection.close()
    seen["folder"] = folder
    return seen


def test_holds_and_releases_across_days(timeline) -> None:
    assert timeline["d1"].held == {f"stage:{DEFAULT_FROM_STAGE}": 1, "over_credit_limit": 1}
    assert (timeline["d2"].new_holds, timeline["d2"].released) == (0, {"cured": 1})
    assert (timeline["d3"].new_holds, timeline["d3"].released) == (0, {"paid_in_full": 1})
    assert timeline["d3"].open_holds == 0
    assert timeline["ledger"] == [
        ("A1", D1, [f"stage:{DEFAULT_FROM_STAGE}"], D3, "paid_in_full"),
        ("A2", D1, ["over_credit_limit"], D2, "cured"),
    ]
    assert [(each["account_id"], each["total_open"]) for each in timeline["d3_releases"]] == [
        ("A1", "0.00")
    ]


def test_reruns_add_nothing_and_rewrite_the_same_files(timeline) -> None:
    assert timeline["d1_rerun"].new_holds == 0 and timeline["d1_rerun"].released == {}
    assert timeline["d1_files_rerun"] == timeline["d1_files"]
    # D2 again after D3: A1's hold was open on D2 (released on D3 stays so), A2's release
    # stays on D2
    rerun = timeline["d2_rerun"]
    assert (rerun.new_holds, rerun.released, rerun.open_holds) == (0, {}, 1)
    assert timeline["d2_files_rerun"] == timeline["d2_files"]
    open_on_d2 = list(csv.DictReader(io.StringIO(
        timeline["d2_files"]["open_credit_holds.csv"].decode("utf-8")
    )))  # fmt: skip
    assert [each["account_id"] for each in open_on_d2] == ["A1"]


def test_holds_and_releases_are_in_the_contact_log(timeline) -> None:
    folder = timeline["folder"]
    a1, a2 = hold_id("A1", D1), hold_id("A2", D1)
    stage = DEFAULT_FROM_STAGE
    assert timeline["contact_log"] == [
        (a1, "A1", "run-1", "credit_hold", stage, "sent", f"stage:{stage}", "billing_file",
         str(folder[D1] / "credit_holds.csv"), "USD", Decimal("300.00"), False, D1),
        (a2, "A2", "run-1", "credit_hold", "none", "sent", "over_credit_limit", "billing_file",
         str(folder[D1] / "credit_holds.csv"), "USD", Decimal("300.00"), False, D1),
        (release_id(a2), "A2", "run-2", "credit_hold_release", "none", "sent", "cured",
         "billing_file", str(folder[D2] / "credit_hold_releases.csv"), "USD",
         Decimal("200.00"), False, D2),
        (release_id(a1), "A1", "run-3", "credit_hold_release", stage, "sent", "paid_in_full",
         "billing_file", str(folder[D3] / "credit_hold_releases.csv"), "USD",
         Decimal("0.00"), False, D3),
    ]  # fmt: skip
