"""The lawful send window: the customer's plausible zones and the first instant inside it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from flows.lib.send_window import SendWindow, next_send_time, plausible_zones

pytestmark = pytest.mark.unit

WINDOW = SendWindow(start_hour=8, end_hour=21, margin=dt.timedelta(minutes=60))
CHICAGO = ZoneInfo("America/Chicago")


def at(text: str, zone: str = "America/Chicago") -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def zones(**known: str | None) -> tuple[str, ...]:
    fields = {"timezone": None, "country": None, "state": None, "postal_code": None, "phone": None}
    return plausible_zones(**{**fields, **known}, fallback="America/Chicago")


@pytest.mark.parametrize(
    ("known", "expected"),
    [
        pytest.param({"timezone": "America/Denver", "phone": "+12125550100"},
                     ("America/Denver",), id="the customer's own zone wins over the phone"),
        pytest.param({"country": "US", "state": "TX", "postal_code": "79901"},
                     ("America/Denver",), id="El Paso ZIP: mountain time only"),
        pytest.param({"country": "US", "state": "TX", "postal_code": "00000"},
                     ("America/Chicago", "America/Denver"), id="Texas, unknown ZIP: both zones"),
        pytest.param({"country": "US", "state": "CA", "phone": "+12125550100"},
                     ("America/Los_Angeles", "America/New_York"),
                     id="California address, New York area code"),
        pytest.param({"country": "CA", "state": "ON"},
                     ("America/Atikokan", "America/Toronto", "America/Winnipeg"), id="Ontario"),
        pytest.param({"country": "GB", "state": "LND", "postal_code": "EC1 1AB"},
                     ("Europe/London",), id="a country of one zone"),
        pytest.param({"timezone": "Mars/Olympus", "country": "IE"}, ("Europe/Dublin",),
                     id="an unknown zone name is ignored"),
        pytest.param({}, ("America/Chicago",), id="nothing known: the company's zone"),
        pytest.param({"phone": "+1 211 555 0100"}, ("America/Chicago",),
                     id="a phone with no area zone adds nothing"),
        pytest.param({"country": "US", "state": "CA", "phone": "+1 800 555 0100"},
                     ("America/Los_Angeles",), id="a toll-free number says nothing about place"),
        pytest.param({"country": "US", "state": "CA", "phone": "(212) 555-0100"},
                     ("America/Los_Angeles", "America/New_York"),
                     id="a number without +1 is read in the customer's country"),
    ],
)  # fmt: skip
def test_plausible_zones(known: dict[str, str], expected: tuple[str, ...]) -> None:
    assert zones(**known) == expected


def test_inside_the_window_sends_now() -> None:
    now = at("2026-12-01T10:15")
    assert next_send_time(now, ("America/Chicago",), WINDOW) == now


def test_before_the_window_waits_for_its_start_plus_margin() -> None:
    send = next_send_time(at("2026-12-01T06:00"), ("America/Chicago",), WINDOW)
    assert send == at("2026-12-01T09:00")


def test_after_the_window_moves_to_the_next_morning() -> None:
    send = next_send_time(at("2026-12-01T20:30"), ("America/Chicago",), WINDOW)
    assert send == at("2026-12-02T09:00")


def test_two_zones_use_the_hours_convenient_in_both() -> None:
    # 08:30 in Chicago is 07:30 in Denver: wait for 09:00 in Denver (10:00 in Chicago)
    send = next_send_time(at("2026-12-01T08:30"), ("America/Chicago", "America/Denver"), WINDOW)
    assert send == at("2026-12-01T09:00", "America/Denver")
    # and stop at 20:00 in Chicago even though Denver would still be fine
    late = next_send_time(at("2026-12-01T20:10"), ("America/Chicago", "America/Denver"), WINDOW)
    assert late == at("2026-12-02T09:00", "America/Denver")


def test_zones_with_no_common_hour_give_none() -> None:
    # New York 09:00-20:00 is 14:00-01:00 UTC; Shanghai 09:00-20:00 is 01:00-12:00 UTC
    now = at("2026-12-01T12:00")
    assert next_send_time(now, ("America/New_York", "Asia/Shanghai"), WINDOW) is None


def test_the_window_follows_daylight_saving_time() -> None:
    # 2026-03-08: clocks go forward in Chicago; 09:00 local is 14:00 UTC, not 15:00
    send = next_send_time(at("2026-03-08T05:00"), ("America/Chicago",), WINDOW)
    assert send == dt.datetime(2026, 3, 8, 14, 0, tzinfo=dt.UTC)


def test_nothing_is_scheduled_beyond_the_horizon() -> None:
    now = at("2026-12-01T20:30")
    assert next_send_time(now, ("America/Chicago",), WINDOW, dt.timedelta(hours=6)) is None


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_send_time(dt.datetime(2026, 12, 1, 10), ("America/Chicago",), WINDOW)
