"""SendGrid Event Webhook: the verifying endpoint, the spool, and the idempotent import.

Pure functions are marked unit; the app (FastAPI TestClient) and the DuckDB import are marked
integration. Multi-event posts are signed with a P-256 key generated here; SendGrid's own test
vector (sendgrid/sendgrid-python: test/unit/test_eventwebhook.py) checks the raw-text rule.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from flows.lib.config import EmailSettings, Settings
from flows.lib.email_events import (
    EVENT_SEVERITY,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventKeyError,
    EventPayloadError,
    ImportOutcome,
    SpooledPost,
    event_key,
    import_events,
    import_events_file,
    import_spool,
    incoming_folder,
    load_verifier,
    parse_event,
    parse_event_array,
    signature_is_valid,
    timestamp_problem,
    write_spool_file,
)
from flows.lib.warehouse import open_warehouse, scalar
from flows.webhook import create_app

unit = pytest.mark.unit
integration = pytest.mark.integration

# --- keys and signatures ----------------------------------------------------------------------

SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())  # a stranger's key: its signatures must fail


def public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


PUBLIC_KEY = public_key_b64(SIGNING_KEY)


def sign(body: str, timestamp: str, key: ec.EllipticCurvePrivateKey = SIGNING_KEY) -> str:
    signature = key.sign((timestamp + body).encode("utf-8"), ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


# SendGrid's published test vector (sendgrid-python test/unit/test_eventwebhook.py): the payload
# is compact, key-sorted JSON followed by "\r\n", and the signature covers those exact characters.
VECTOR_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+"
    "2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
VECTOR_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
VECTOR_TIMESTAMP = "1600112502"
VECTOR_PAYLOAD = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
)

# --- builders ---------------------------------------------------------------------------------

EVENT_TIME = 1_767_261_600  # 2026-01-01 10:00 UTC


def an_event(
    event: str = "delivered",
    *,
    email: str = "Ann@Example.com",
    outbox_id: str | None = "key-1",
    timestamp: int = EVENT_TIME,
    **fields: Any,
) -> dict[str, Any]:
    """One event as SendGrid posts it; custom args (outbox_id) are top-level keys."""
    built: dict[str, Any] = {
        "email": email,
        "event": event,
        "timestamp": timestamp,
        "sg_event_id": f"sg-{event}-{timestamp}",
        "sg_message_id": f"msg-{outbox_id}.filterdrecv-1" if outbox_id else None,
    }
    if outbox_id is not None:
        built["outbox_id"] = outbox_id
    return {**{k: v for k, v in built.items() if v is not None}, **fields}


def settings_for(home: Path, public_key: str | None = PUBLIC_KEY, **email: Any) -> Settings:
    return Settings(home=home, email=EmailSettings(event_public_key=public_key, **email))


def now_stamp() -> str:
    return str(int(dt.datetime.now(dt.UTC).timestamp()))


def post_events(
    client: TestClient,
    body: str | bytes,
    *,
    timestamp: str | None = None,
    signature: str | None = None,
):
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    stamp = timestamp or now_stamp()
    return client.post(
        "/sendgrid/events",
        content=body,
        headers={
            SIGNATURE_HEADER: signature if signature is not None else sign(text, stamp),
            TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json",
        },
    )


def spooled(home: Path) -> list[Path]:
    folder = home / "state" / "email_events" / "incoming"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def add_ledger_row(
    connection: duckdb.DuckDBPyConnection, action_key: str, status: str = "maybe_sent"
) -> None:
    """An email contact in the ledger, every NOT NULL column filled."""
    connection.execute(
        """
        insert into ops.action_ledger (
            action_key, account_id, customer_id, stage, stage_order, channel, template,
            policy_version, stage_entered_date, as_of_date, run_id, currency,
            collectible_amount, status, times_planned, attempts, planned_at, status_at
        ) values (
            ?, 'A1', 'C1', 'reminder_1', 1, 'email', 'reminder_1', 'v1',
            date '2025-12-30', date '2026-01-01', 'run-1', 'USD',
            120.00, ?, 1, 1, timestamptz '2026-01-01 08:00:00+00', timestamptz '2026-01-01 08:00:00+00'
        )
        """,
        [action_key, status],
    )


def ledger_row(connection: duckdb.DuckDBPyConnection, action_key: str) -> dict[str, Any]:
    cursor = connection.execute(
        "select status, reason, last_event, last_event_at, sent_at from ops.action_ledger "
        "where action_key = ?",
        [action_key],
    )
    names = [column[0] for column in cursor.description]
    return dict(zip(names, cursor.fetchall()[0], strict=True))


def suppressions(connection: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = connection.execute("select email, reason from ops.email_suppressions").fetchall()
    return dict(rows)


RECEIVED = dt.datetime(2026, 1, 1, 10, 5, tzinfo=dt.UTC)


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    warehouse = open_warehouse(tmp_path / "w.duckdb")
    yield warehouse
    warehouse.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def client(home: Path) -> TestClient:
    return TestClient(create_app(settings_for(home, event_max_body_bytes=2_000)))


# --- verification, keys and parsing (pure) ----------------------------------------------------


@unit
def test_sendgrid_test_vector_verifies_only_as_the_raw_text() -> None:
    verifier = load_verifier(VECTOR_PUBLIC_KEY)
    assert signature_is_valid(verifier, VECTOR_PAYLOAD, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)
    reserialized = json.dumps(json.loads(VECTOR_PAYLOAD))
    assert not signature_is_valid(verifier, reserialized, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)
    without_crlf = VECTOR_PAYLOAD.removesuffix("\r\n")
    assert not signature_is_valid(verifier, without_crlf, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)


@unit
@pytest.mark.parametrize(
    "signature",
    ["", "not base64 at all!", base64.b64encode(b"not DER").decode()],
    ids=["empty", "not base64", "not DER"],
)
def test_a_malformed_signature_is_invalid_not_an_error(signature: str) -> None:
    assert not signature_is_valid(load_verifier(PUBLIC_KEY), "[]", signature, "1")


@unit
def test_a_key_that_is_not_base64_p256_says_what_to_fix() -> None:
    with pytest.raises(EventKeyError, match="event_public_key"):
        load_verifier("not-a-key")


@unit
@pytest.mark.parametrize(
    ("offset_seconds", "refused"),
    [
        pytest.param(-86_401, True, id="older than the max age (replay)"),
        pytest.param(-86_000, False, id="a SendGrid retry within the max age"),
        pytest.param(240, False, id="4 minutes ahead (clock skew)"),
        pytest.param(301, True, id="more than 5 minutes ahead"),
    ],
)
def test_timestamp_window(offset_seconds: int, refused: bool) -> None:
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    stamp = str(int(now.timestamp()) + offset_seconds)
    problem = timestamp_problem(stamp, now=now, max_age_seconds=86_400)
    assert (problem is not None) == refused


@unit
@pytest.mark.parametrize(
    "stamp", ["", "12.5", "soon", "١٢٣"], ids=["missing", "decimal", "word", "arabic digits"]
)
def test_a_timestamp_that_is_not_unix_seconds_is_refused(stamp: str) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert timestamp_problem(stamp, now=now, max_age_seconds=86_400)


@unit
def test_event_key_ignores_sg_event_id_and_address_case() -> None:
    first = an_event("bounce", type="bounce", sg_event_id="first-try")
    retried = {**first, "sg_event_id": "changed-on-retry", "email": "ANN@example.COM"}
    assert event_key(first) == event_key(retried)


@unit
@pytest.mark.parametrize(
    "other",
    [
        pytest.param(an_event("click", url="https://pay.example/2"), id="another link"),
        pytest.param(
            an_event("click", url="https://pay.example/1", timestamp=EVENT_TIME + 1),
            id="a second later",
        ),
        pytest.param(an_event("open", url="https://pay.example/1"), id="another event"),
        pytest.param(
            an_event("click", url="https://pay.example/1", outbox_id="key-2"), id="another message"
        ),
    ],
)
def test_event_key_tells_distinct_events_apart(other: dict[str, Any]) -> None:
    assert event_key(an_event("click", url="https://pay.example/1")) != event_key(other)


@unit
def test_event_key_falls_back_to_outbox_id_for_a_bounce_without_message_id() -> None:
    late_bounce = an_event("bounce", type="bounce")
    del late_bounce["sg_message_id"]
    other_message = {**late_bounce, "outbox_id": "key-2"}
    assert event_key(late_bounce) != event_key(other_message)


@unit
@pytest.mark.parametrize(
    ("event", "reason"),
    [
        pytest.param(an_event("bounce", type="bounce"), "hard_bounce", id="hard bounce"),
        pytest.param(an_event("bounce"), "hard_bounce", id="bounce without type"),
        pytest.param(an_event("bounce", type="blocked"), None, id="blocked is temporary"),
        pytest.param(an_event("dropped", reason="Invalid"), "dropped", id="dropped"),
        pytest.param(an_event("spamreport"), "spam_report", id="spam report"),
        pytest.param(an_event("unsubscribe"), "unsubscribed", id="unsubscribe"),
        pytest.param(
            an_event("group_unsubscribe", asm_group_id=7),
            "group_unsubscribed",
            id="group unsubscribe",
        ),
        pytest.param(
            an_event("group_resubscribe", asm_group_id=7), None, id="resubscribe lifts nothing"
        ),
        pytest.param(an_event("deferred"), None, id="deferred"),
        pytest.param(an_event("open"), None, id="open"),
    ],
)
def test_which_events_flag_an_address(event: dict[str, Any], reason: str | None) -> None:
    assert parse_event(event).suppression_reason == reason


@unit
def test_severity_order_puts_outcomes_above_delivery_above_acceptance_above_engagement() -> None:
    for outcome in ("bounce", "dropped", "spamreport", "unsubscribe"):
        assert EVENT_SEVERITY[outcome] > EVENT_SEVERITY["delivered"]
    for accepted in ("processed", "deferred", "blocked"):
        assert EVENT_SEVERITY["delivered"] > EVENT_SEVERITY[accepted]
        for engagement in ("open", "click", "group_resubscribe"):
            assert EVENT_SEVERITY[accepted] > EVENT_SEVERITY[engagement]


@unit
@pytest.mark.parametrize(
    "text",
    ['{"event": "delivered"}', '["delivered"]', "[{]", ""],
    ids=["an object", "an array of strings", "broken JSON", "empty"],
)
def test_only_a_json_array_of_objects_is_an_event_payload(text: str) -> None:
    with pytest.raises(EventPayloadError):
        parse_event_array(text)


@unit
def test_an_event_without_timestamp_does_not_parse() -> None:
    with pytest.raises(EventPayloadError, match="timestamp"):
        parse_event({"event": "delivered", "email": "ann@example.com"})


# --- the endpoint ------------------------------------------------------------------------------


@integration
def test_a_good_signed_post_is_spooled_byte_for_byte_and_answered_200(
    client: TestClient, home: Path
) -> None:
    body = json.dumps([an_event("processed"), an_event("delivered")], indent=1) + "\r\n"
    stamp = now_stamp()
    response = post_events(client, body, timestamp=stamp)
    assert response.status_code == 200
    assert response.json() == {"status": "spooled", "events": 2}
    assert "example.com" not in response.text.lower()  # answers never echo the body
    [path] = spooled(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["body"] == body
    assert document["timestamp"] == stamp
    assert signature_is_valid(load_verifier(PUBLIC_KEY), body, document["signature"], stamp)


@integration
def test_spool_file_names_sort_by_arrival_and_never_collide(tmp_path: Path) -> None:
    first = SpooledPost(received_at=RECEIVED, timestamp="1", signature="s", body="[]")
    same_moment_other_body = SpooledPost(
        received_at=RECEIVED, timestamp="1", signature="s", body="[ ]"
    )
    later = SpooledPost(
        received_at=RECEIVED + dt.timedelta(microseconds=1), timestamp="1", signature="s", body="[]"
    )
    paths = [write_spool_file(tmp_path, post) for post in (later, first, same_moment_other_body)]
    assert len(set(paths)) == 3
    assert sorted(paths)[-1] == paths[0]  # the later arrival sorts last
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


@integration
def test_the_sendgrid_test_vector_is_accepted_and_kept_with_its_crlf(home: Path) -> None:
    at_signing = dt.datetime.fromtimestamp(int(VECTOR_TIMESTAMP) + 10, dt.UTC)
    app = create_app(settings_for(home, VECTOR_PUBLIC_KEY), clock=lambda: at_signing)
    response = post_events(
        TestClient(app), VECTOR_PAYLOAD, timestamp=VECTOR_TIMESTAMP, signature=VECTOR_SIGNATURE
    )
    assert response.status_code == 200
    [path] = spooled(home)
    assert json.loads(path.read_text(encoding="utf-8"))["body"].endswith("]\r\n")


@integration
def test_the_sendgrid_test_vector_today_is_a_replay(home: Path) -> None:
    client = TestClient(create_app(settings_for(home, VECTOR_PUBLIC_KEY)))
    response = post_events(
        client, VECTOR_PAYLOAD, timestamp=VECTOR_TIMESTAMP, signature=VECTOR_SIGNATURE
    )
    assert response.status_code == 403
    assert "replay" in response.json()["detail"]
    assert spooled(home) == []


@integration
def test_a_bad_signature_is_refused_and_nothing_is_spooled(client: TestClient, home: Path) -> None:
    body = json.dumps([an_event()])
    stamp = now_stamp()
    response = post_events(client, body, timestamp=stamp, signature=sign(body, stamp, OTHER_KEY))
    assert response.status_code == 403
    assert spooled(home) == []


@integration
def test_a_missing_signature_is_refused(client: TestClient, home: Path) -> None:
    response = client.post(
        "/sendgrid/events", content="[]", headers={TIMESTAMP_HEADER: now_stamp()}
    )
    assert response.status_code == 403
    assert spooled(home) == []


@integration
def test_re_serialized_json_fails_verification(client: TestClient, home: Path) -> None:
    raw = json.dumps([an_event("open"), an_event("click", url="https://pay.example/1")], indent=2)
    stamp = now_stamp()
    signature = sign(raw, stamp)
    reserialized = json.dumps(json.loads(raw))  # what a framework that parses first would pass on
    response = post_events(client, reserialized, timestamp=stamp, signature=signature)
    assert response.status_code == 403
    assert spooled(home) == []


@integration
@pytest.mark.parametrize(
    "offset_seconds", [-86_401, 600], ids=["replayed a day later", "ten minutes ahead"]
)
def test_a_signed_timestamp_outside_the_window_is_refused(
    client: TestClient, home: Path, offset_seconds: int
) -> None:
    stamp = str(int(now_stamp()) + offset_seconds)
    response = post_events(client, json.dumps([an_event()]), timestamp=stamp)
    assert response.status_code == 403
    assert spooled(home) == []


@integration
def test_a_body_over_the_limit_is_refused_by_its_content_length(
    client: TestClient, home: Path
) -> None:
    body = json.dumps([an_event(reason="x" * 3_000)])  # the client allows 2,000 bytes
    response = post_events(client, body)
    assert response.status_code == 413
    assert spooled(home) == []


@integration
def test_a_chunked_body_over_the_limit_is_refused_while_reading(
    client: TestClient, home: Path
) -> None:
    chunks = [b"[" + b" " * 999, b" " * 1_000, b" " * 1_000 + b"]"]  # no Content-Length
    stamp = now_stamp()
    response = client.post(
        "/sendgrid/events",
        content=iter(chunks),
        headers={SIGNATURE_HEADER: sign(b"".join(chunks).decode(), stamp), TIMESTAMP_HEADER: stamp},
    )
    assert response.status_code == 413
    assert spooled(home) == []


@integration
@pytest.mark.parametrize(
    "body",
    ['{"event": "delivered"}', '[{"event": "open"}, 3]', "not json"],
    ids=["an object", "an array with a number", "not JSON"],
)
def test_a_signed_body_that_is_not_an_array_of_objects_is_400(
    client: TestClient, home: Path, body: str
) -> None:
    response = post_events(client, body)
    assert response.status_code == 400
    assert body not in response.text
    assert spooled(home) == []


@integration
def test_without_a_public_key_every_post_is_refused_with_503(home: Path) -> None:
    client = TestClient(create_app(settings_for(home, public_key=None)))
    response = post_events(client, json.dumps([an_event()]))
    assert response.status_code == 503
    assert "event_public_key" in response.json()["detail"]
    assert spooled(home) == []
    assert client.get("/healthz").json() == {"status": "ok", "accepting_events": False}


@integration
def test_healthz_answers_without_touching_the_warehouse(client: TestClient, home: Path) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "accepting_events": True}
    assert not (home / "warehouse").exists()


# --- the import --------------------------------------------------------------------------------


@integration
def test_the_same_event_delivered_twice_is_stored_once(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    bounce = an_event("bounce", type="bounce", reason="550 no such user")
    first = import_events(
        connection, [bounce, an_event("processed")], source="t", received_at=RECEIVED
    )
    again = import_events(connection, [bounce], source="t", received_at=RECEIVED)
    retried = {**bounce, "sg_event_id": "a-new-id-on-retry"}
    within_batch = import_events(connection, [retried, retried], source="t", received_at=RECEIVED)
    assert (first.events_new, first.duplicates) == (2, 0)
    assert (again.events_new, again.duplicates) == (0, 1)
    assert (within_batch.events_read, within_batch.events_new, within_batch.duplicates) == (2, 0, 2)
    assert scalar(connection, "select count(*) from ops.email_events") == 2
    stored = connection.execute(
        "select sg_event_id, email, event_type, reason from ops.email_events where event = 'bounce'"
    ).fetchall()
    assert stored == [("sg-bounce-1767261600", "ann@example.com", "bounce", "550 no such user")]


@integration
def test_a_hard_bounce_flags_the_address_and_a_blocked_bounce_does_not(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    events = [
        an_event("bounce", type="bounce", email="Gone@Example.com", outbox_id="key-1"),
        an_event("bounce", type="blocked", email="busy@example.com", outbox_id="key-2"),
    ]
    outcome = import_events(connection, events, source="t", received_at=RECEIVED)
    assert outcome.suppressions_added == 1
    assert suppressions(connection) == {"gone@example.com": "hard_bounce"}
    assert (
        scalar(
            connection, "select event_type from ops.email_events where email = 'busy@example.com'"
        )
        == "blocked"
    )


@integration
def test_opt_outs_flag_the_address_first_reason_wins_and_resubscribe_lifts_nothing(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    events = [
        an_event("spamreport", email="ann@example.com", timestamp=EVENT_TIME),
        an_event("unsubscribe", email="ANN@example.com", timestamp=EVENT_TIME + 60),
        an_event("unsubscribe", email="bob@example.com", outbox_id="key-2"),
        an_event("dropped", email="cy@example.com", outbox_id="key-3", reason="Invalid Address"),
    ]
    import_events(connection, events, source="t", received_at=RECEIVED)
    resubscribe = an_event("group_resubscribe", email="bob@example.com", timestamp=EVENT_TIME + 120)
    import_events(connection, [resubscribe], source="t", received_at=RECEIVED)
    assert suppressions(connection) == {
        "ann@example.com": "spam_report",
        "bob@example.com": "unsubscribed",
        "cy@example.com": "dropped",
    }
    assert (
        scalar(connection, "select reason from ops.email_events where event = 'dropped'")
        == "Invalid Address"
    )


@integration
def test_a_delivered_event_confirms_a_maybe_sent_contact_and_logs_it(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    add_ledger_row(connection, "key-1", status="maybe_sent")  # a timeout left it unclear
    add_ledger_row(connection, "key-2", status="maybe_sent")  # only opened: not proof enough
    add_ledger_row(connection, "key-3", status="failed")  # recorded failed, yet SendGrid had it
    events = [
        an_event("delivered", outbox_id="key-1"),
        an_event("open", outbox_id="key-2", email="bob@example.com"),
        an_event("processed", outbox_id="key-3", email="cy@example.com"),
    ]
    outcome = import_events(connection, events, source="t", received_at=RECEIVED)
    assert outcome.actions_confirmed == 2
    confirmed = ledger_row(connection, "key-1")
    assert (confirmed["status"], confirmed["reason"]) == ("sent", "confirmed by a delivered event")
    assert confirmed["last_event"] == "delivered"
    assert confirmed["last_event_at"] == dt.datetime.fromtimestamp(EVENT_TIME, dt.UTC)
    # dated by its event: the furnishing wait of Reg F 1006.30(a) counts from the send
    assert confirmed["sent_at"] == dt.datetime.fromtimestamp(EVENT_TIME, dt.UTC)
    assert ledger_row(connection, "key-2")["status"] == "maybe_sent"
    # proof it went: never planned and sent again
    assert ledger_row(connection, "key-3")["status"] == "sent"
    log = connection.execute(
        "select action_key, from_status, to_status, reason from ops.action_log order by 1"
    ).fetchall()
    assert log == [
        ("key-1", "maybe_sent", "sent", "confirmed by a delivered event"),
        ("key-3", "failed", "sent", "confirmed by a processed event"),
    ]
    again = import_events(connection, events, source="t", received_at=RECEIVED)
    assert again.actions_confirmed == 0
    assert scalar(connection, "select count(*) from ops.action_log") == 2


@integration
@pytest.mark.parametrize(
    ("arrivals", "expected"),
    [
        pytest.param([["bounce"], ["delivered"]], "bounce", id="delivered after bounce"),
        pytest.param([["delivered"], ["bounce"]], "bounce", id="bounce after delivered"),
        pytest.param([["delivered", "bounce"]], "bounce", id="both in one post"),
        pytest.param([["open"], ["processed"]], "processed", id="processed after open"),
        pytest.param([["blocked"], ["delivered"]], "delivered", id="delivered after a blocked try"),
        pytest.param([["unsubscribe"], ["group_resubscribe"]], "unsubscribe", id="resubscribe"),
    ],
)
def test_last_event_does_not_depend_on_arrival_order(
    connection: duckdb.DuckDBPyConnection, arrivals: list[list[str]], expected: str
) -> None:
    add_ledger_row(connection, "key-1", status="sent")
    for offset, post in enumerate(arrivals):
        events = [
            an_event("bounce", type="blocked", timestamp=EVENT_TIME + offset)
            if name == "blocked"
            else an_event(name, timestamp=EVENT_TIME + offset)
            for name in post
        ]
        import_events(connection, events, source="t", received_at=RECEIVED)
    assert ledger_row(connection, "key-1")["last_event"] == expected


@integration
def test_spool_import_rejects_a_bad_file_and_imports_the_others(
    connection: duckdb.DuckDBPyConnection, home: Path
) -> None:
    folder = incoming_folder(settings_for(home))
    add_ledger_row(connection, "key-1", status="sending")  # a crash while sending
    good_bodies = [
        json.dumps([an_event("processed"), an_event("delivered")]),
        json.dumps([an_event("unsubscribe", email="bob@example.com", outbox_id="key-2")]),
    ]
    forged = json.dumps([an_event("spamreport", email="cy@example.com", outbox_id="key-3")])
    for offset, (body, key) in enumerate(
        [(good_bodies[0], SIGNING_KEY), (forged, OTHER_KEY), (good_bodies[1], SIGNING_KEY)]
    ):
        stamp = str(EVENT_TIME + offset)
        post = SpooledPost(
            received_at=RECEIVED + dt.timedelta(seconds=offset),
            timestamp=stamp,
            signature=sign(body, stamp, key),
            body=body,
        )
        write_spool_file(folder, post)

    outcome = import_spool(connection, folder, public_key=PUBLIC_KEY, now=RECEIVED)

    assert (outcome.files_imported, outcome.files_rejected) == (2, 1)
    assert (outcome.events_read, outcome.events_new, outcome.suppressions_added) == (3, 3, 1)
    assert outcome.actions_confirmed == 1
    assert ledger_row(connection, "key-1")["reason"] == "confirmed by a processed event"
    assert suppressions(connection) == {"bob@example.com": "unsubscribed"}
    assert list(folder.glob("*.json")) == []
    assert len(list((folder.parent / "imported").glob("*.json"))) == 2
    [rejected] = (folder.parent / "rejected").glob("*.json")
    note = (folder.parent / "rejected" / f"{rejected.name}.reason.txt").read_text()
    assert "signature" in note
    assert "cy@example.com" not in note
    sources = connection.execute("select distinct source from ops.email_events").fetchall()
    assert all(source.startswith("webhook:") for (source,) in sources)


@integration
def test_importing_the_spool_twice_adds_nothing(
    connection: duckdb.DuckDBPyConnection, home: Path
) -> None:
    folder = incoming_folder(settings_for(home))
    body = json.dumps([an_event("bounce", type="bounce"), an_event("delivered")])
    stamp = str(EVENT_TIME)
    write_spool_file(folder, SpooledPost(RECEIVED, stamp, sign(body, stamp), body))
    first = import_spool(connection, folder, public_key=PUBLIC_KEY)
    nothing_left = import_spool(connection, folder, public_key=PUBLIC_KEY)
    # a crash after the import committed but before the file moved leaves it to import again
    for path in (folder.parent / "imported").glob("*.json"):
        shutil.copy(path, folder / path.name)
    replayed = import_spool(connection, folder, public_key=PUBLIC_KEY)
    assert (first.events_new, first.suppressions_added, first.files_imported) == (2, 1, 1)
    assert nothing_left == ImportOutcome()
    assert (replayed.events_new, replayed.duplicates, replayed.suppressions_added) == (0, 2, 0)
    assert scalar(connection, "select count(*) from ops.email_events") == 2
    assert scalar(connection, "select count(*) from ops.email_suppressions") == 1


@integration
def test_a_spooled_file_whose_events_do_not_parse_is_rejected_without_a_key(
    connection: duckdb.DuckDBPyConnection, home: Path
) -> None:
    folder = incoming_folder(settings_for(home))
    body = json.dumps([an_event("delivered"), {"event": "open"}])  # the second has no timestamp
    write_spool_file(folder, SpooledPost(RECEIVED, "1", "unchecked", body))
    outcome = import_spool(connection, folder, public_key=None)
    assert (outcome.files_rejected, outcome.events_new) == (1, 0)
    assert scalar(connection, "select count(*) from ops.email_events") == 0  # all or nothing


@integration
def test_a_post_travels_from_the_webhook_through_the_spool_to_a_flag(
    connection: duckdb.DuckDBPyConnection, client: TestClient, home: Path
) -> None:
    body = json.dumps([an_event("group_unsubscribe", asm_group_id=7)])
    assert post_events(client, body).status_code == 200
    outcome = import_spool(connection, incoming_folder(settings_for(home)), public_key=PUBLIC_KEY)
    assert outcome.files_imported == 1
    assert suppressions(connection) == {"ann@example.com": "group_unsubscribed"}


@integration
def test_an_operator_file_imports_with_its_name_as_source(
    connection: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = tmp_path / "events-2026-01-01.json"
    path.write_text(json.dumps([an_event("dropped", reason="Bounced Address")]), encoding="utf-8")
    outcome = import_events_file(connection, path)
    assert (outcome.events_new, outcome.suppressions_added) == (1, 1)
    assert scalar(connection, "select source from ops.email_events") == "events-2026-01-01.json"
    not_events = tmp_path / "not-events.json"
    not_events.write_text('{"event": "dropped"}', encoding="utf-8")
    with pytest.raises(EventPayloadError, match=r"not-events\.json"):
        import_events_file(connection, not_events)
