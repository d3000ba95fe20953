"""When a contact may go out: the customer's plausible time zones and the lawful send window.

Regulation F 1006.6(b)(1)(i) presumes a contact before 08:00 or from 21:00 *local time at the
consumer's location* inconvenient, and an email counts when it is *sent*. When what recoup knows
points at several zones (a state that spans two, a phone number from another area), the contact
must be convenient in every one of them: the window is the intersection.

The plausible zones of a customer:
- the IANA zone the billing system gave for the customer, when there is one (it is taken as the
  customer's own statement of where they are);
- otherwise the zone of their US ZIP code (the `zipcodes` data), else every zone of their state
  or province, else every zone of their country (tzdata's zone.tab), together with the zones of
  their phone number's area code (the `phonenumbers` data);
- the company's own zone when none of that points anywhere.

The window keeps `margin` clear inside both ends, so the provider's queueing cannot push a send
out of it. `next_send_time` returns now when now is inside the window in every zone, else the
first instant that is, when that is within `horizon` (SendGrid schedules at most 72 hours ahead).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass

import phonenumbers
import zipcodes
from phonenumbers import timezone as phone_timezones

UTC = dt.UTC
SENDGRID_MAX_SCHEDULE = dt.timedelta(hours=72)

# Canadian provinces and territories (ISO 3166-2:CA) and the zones they span (tz database).
CANADA_PROVINCE_ZONES: dict[str, tuple[str, ...]] = {
    "AB": ("America/Edmonton",),
    "BC": ("America/Vancouver", "America/Edmonton", "America/Creston", "America/Fort_Nelson"),
    "MB": ("America/Winnipeg",),
    "NB": ("America/Moncton",),
    "NL": ("America/St_Johns", "America/Goose_Bay"),
    "NS": ("America/Halifax",),
    "NT": ("America/Edmonton", "America/Inuvik"),
    "NU": ("America/Iqaluit", "America/Rankin_Inlet", "America/Cambridge_Bay"),
    "ON": ("America/Toronto", "America/Winnipeg", "America/Atikokan"),
    "PE": ("America/Halifax",),
    "QC": ("America/Toronto", "America/Blanc-Sablon"),
    "SK": ("America/Regina", "America/Edmonton"),
    "YT": ("America/Whitehorse",),
}


@dataclass(frozen=True)
class SendWindow:
    start_hour: int  # local hour from which contacts may go (8)
    end_hour: int  # local hour before which they must have gone (21)
    margin: dt.timedelta  # kept clear inside both ends

    def local_bounds(
        self, day: dt.date, zone: zoneinfo.ZoneInfo
    ) -> tuple[dt.datetime, dt.datetime]:
        """The allowed interval of one local day, in UTC."""
        start = dt.datetime.combine(day, dt.time(self.start_hour), zone) + self.margin
        end_day = day + dt.timedelta(days=1) if self.end_hour == 24 else day
        end = dt.datetime.combine(end_day, dt.time(self.end_hour % 24), zone) - self.margin
        return start.astimezone(UTC), end.astimezone(UTC)


def plausible_zones(
    *,
    timezone: str | None,
    country: str | None,
    state: str | None,
    postal_code: str | None,
    phone: str | None,
    fallback: str,
) -> tuple[str, ...]:
    """Every IANA zone the customer may be in, sorted; `fallback` (the company's zone) when
    nothing about the customer points anywhere."""
    if timezone and timezone in _known_zones():
        return (timezone,)
    zones = set(_address_zones(country, state, postal_code)) | set(_phone_zones(phone, country))
    return tuple(sorted(zones)) or (fallback,)


def next_send_time(
    now: dt.datetime,
    zones: tuple[str, ...],
    window: SendWindow,
    horizon: dt.timedelta = SENDGRID_MAX_SCHEDULE,
) -> dt.datetime | None:
    """Now, when now is inside the window in every zone; else the earliest instant within
    `horizon` that is; None when there is none (the zones share no convenient hour)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    for start, end in _common_intervals(zones, window, now.date()):
        if end <= now:
            continue
        candidate = max(start, now)
        return candidate if candidate - now <= horizon else None
    return None


def lawful_intervals(
    zones: tuple[str, ...], window: SendWindow, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The intervals (UTC) between `start` and `end` inside the window in every zone."""
    out = []
    for low, high in _common_intervals(zones, window, start.astimezone(UTC).date()):
        low, high = max(low, start), min(high, end)
        if low < high:
            out.append((low, high))
    return out


def _common_intervals(
    zones: tuple[str, ...], window: SendWindow, around: dt.date
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The intervals (UTC) that are inside the window in every zone, over the days around
    `around` (enough to cover the horizon from any zone's point of view)."""
    return list(_common_intervals_cached(zones, window, around))


@functools.lru_cache(maxsize=4096)
def _common_intervals_cached(
    zones: tuple[str, ...], window: SendWindow, around: dt.date
) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    days = [around + dt.timedelta(days=offset) for offset in range(-1, 6)]
    common: list[tuple[dt.datetime, dt.datetime]] | None = None
    for name in zones:
        zone = zoneinfo.ZoneInfo(name)
        intervals = [window.local_bounds(day, zone) for day in days]
        common = intervals if common is None else _intersect(common, intervals)
    return tuple(common or ())


def _intersect(
    left: list[tuple[dt.datetime, dt.datetime]], right: list[tuple[dt.datetime, dt.datetime]]
) -> list[tuple[dt.datetime, dt.datetime]]:
    out = []
    for a_start, a_end in left:
        for b_start, b_end in right:
            start, end = max(a_start, b_start), min(a_end, b_end)
            if start < end:
                out.append((start, end))
    return sorted(out)


def _address_zones(
    country: str | None, state: str | None, postal_code: str | None
) -> tuple[str, ...]:
    country = (country or "").upper()
    state = (state or "").upper()
    if country == "US":
        zip_zone = _zip_zones().get((postal_code or "")[:5])
        if zip_zone:
            return (zip_zone,)
        if state in _us_state_zones():
            return _us_state_zones()[state]
    if country == "CA" and state in CANADA_PROVINCE_ZONES:
        return CANADA_PROVINCE_ZONES[state]
    return _country_zones().get(country, ())


# numbers that say nothing about where their owner is: toll-free, premium, shared-cost, VoIP,
# personal and universal numbers (a toll-free number "is" in every zone of North America)
_NOT_GEOGRAPHIC = frozenset(
    {
        phonenumbers.PhoneNumberType.TOLL_FREE,
        phonenumbers.PhoneNumberType.PREMIUM_RATE,
        phonenumbers.PhoneNumberType.SHARED_COST,
        phonenumbers.PhoneNumberType.VOIP,
        phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
        phonenumbers.PhoneNumberType.UAN,
        phonenumbers.PhoneNumberType.VOICEMAIL,
    }
)


@functools.lru_cache(maxsize=65_536)
def _phone_zones(phone: str | None, country: str | None = None) -> tuple[str, ...]:
    """The zones of a phone number's area; none for numbers that are not tied to a place.
    A number without a +country prefix is read as a number of the customer's country."""
    if not phone:
        return ()
    try:
        number = phonenumbers.parse(phone, (country or "").upper() or None)
    except phonenumbers.NumberParseException:
        return ()
    if phonenumbers.number_type(number) in _NOT_GEOGRAPHIC:
        return ()
    return tuple(
        zone for zone in phone_timezones.time_zones_for_number(number) if zone in _known_zones()
    )


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@functools.cache
def _zip_zones() -> dict[str, str]:
    known = _known_zones()
    return {
        entry["zip_code"]: entry["timezone"]
        for entry in zipcodes.list_all()
        if entry.get("timezone") in known
    }


@functools.cache
def _us_state_zones() -> dict[str, tuple[str, ...]]:
    known = _known_zones()
    by_state: dict[str, set[str]] = defaultdict(set)
    for entry in zipcodes.list_all():
        if entry.get("timezone") in known:
            by_state[entry["state"]].add(entry["timezone"])
    return {state: tuple(sorted(zones)) for state, zones in by_state.items()}


@functools.cache
def _country_zones() -> dict[str, tuple[str, ...]]:
    """ISO 3166 alpha-2 → zones, from tzdata's zone.tab."""
    table = importlib.resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text()
    by_country: dict[str, list[str]] = defaultdict(list)
    for line in table.splitlines():
        if line and not line.startswith("#"):
            code, _coordinates, zone, *_ = line.split("\t")
            by_country[code].append(zone)
    return {code: tuple(sorted(zones)) for code, zones in by_country.items()}
