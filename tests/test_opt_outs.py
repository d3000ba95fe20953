"""recoup's opt-out link: a GET only asks, a POST (the button, or one-click) records, and the
next import stops every email to that address."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flows.lib.config import load_settings
from flows.lib.opt_outs import import_opt_outs, opt_out_folder
from flows.webhook import create_app
from tests.contact_fixtures import AS_OF, contacted

pytestmark = pytest.mark.integration
KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings({"RECOUP_HOME": str(tmp_path)})


@pytest.fixture
def client(settings) -> TestClient:
    return TestClient(create_app(settings))


def spooled(settings) -> list[str]:
    folder = opt_out_folder(settings)
    return sorted(path.name for path in folder.glob("*.json")) if folder.is_dir() else []


def test_opening_the_link_only_asks(client: TestClient, settings) -> None:
    page = client.get("/opt-out", params={"ref": KEY})
    assert page.status_code == 200
    assert 'method="post"' in page.text and f'value="{KEY}"' in page.text
    assert spooled(settings) == []  # a mail scanner following the link opts nobody out


@pytest.mark.parametrize(
    "post",
    [
        pytest.param(lambda c: c.post("/opt-out", data={"ref": KEY}), id="the page's button"),
        pytest.param(
            lambda c: c.post(f"/opt-out?ref={KEY}", data={"List-Unsubscribe": "One-Click"}),
            id="one-click from the mail client",
        ),
    ],
)
def test_posting_records_the_request(client: TestClient, settings, post) -> None:
    answer = post(client)
    assert answer.status_code == 200 and "we will not email this address again" in answer.text
    assert spooled(settings) == [f"{KEY}.json"]


@pytest.mark.parametrize("ref", ["", "../../etc/passwd", "<script>", KEY.upper() + "0"])
def test_a_link_that_is_not_ours_records_nothing(client: TestClient, settings, ref: str) -> None:
    assert client.get("/opt-out", params={"ref": ref}).status_code == 400
    assert client.post("/opt-out", data={"ref": ref}).status_code == 400
    assert spooled(settings) == []


def test_the_import_suppresses_the_address_the_email_went_to(warehouse, settings, client) -> None:
    key = contacted(warehouse, day=AS_OF)
    warehouse.execute(
        "update ops.action_ledger set recipient = ' Ann@Example.com' where action_key = ?", [key]
    )
    client.post("/opt-out", data={"ref": key})
    client.post("/opt-out", data={"ref": key})  # clicked twice: one request
    client.post("/opt-out", data={"ref": KEY})  # an outbox id recoup never sent
    outcome = import_opt_outs(warehouse, opt_out_folder(settings))
    assert (outcome.addresses_suppressed, outcome.files_imported, outcome.files_rejected) == (
        1,
        1,
        1,
    )
    rows = warehouse.execute("select email, reason from ops.email_suppressions").fetchall()
    assert rows == [("ann@example.com", "opted_out")]
    assert spooled(settings) == []
    again = import_opt_outs(warehouse, opt_out_folder(settings))
    assert again.files_imported == 0  # moved aside: nothing imported twice
