"""The filters every page shares, and their form in the URL so a view can be shared as a link.

A :class:`Filters` says *what* to look at; :meth:`Filters.window` turns its time range into the
half-open UTC interval ``[since, until)`` that bounds every query. Presets are relative to "now",
which is rounded up to the next minute so that cached queries keep one key for a minute and the
window still includes everything delivered so far.

URL form (``st.query_params``), every key optional, defaults omitted:

=========  ==============================================  ==============================
key        value                                            example
=========  ==============================================  ==============================
range      ``24h`` (default), ``7d``, ``15d``, ``30d``,      ``range=7d``
           ``custom``
since      RFC 3339 UTC, with ``range=custom``             ``since=2026-11-01T00:00:00Z``
until      RFC 3339 UTC (exclusive), with ``range=custom`` ``until=2026-11-08T00:00:00Z``
webhook    a webhook id, repeated                          ``webhook=wh_1&webhook=wh_2``
event      an event type, repeated                         ``event=APPOINTMENT_CREATED``
outcome    ``success`` or ``failed`` (default: both)        ``outcome=failed``
status     a response status class, repeated               ``status=5xx&status=none``
q          search: a delivery id, an event id or words      ``q=cust_42``
=========  ==============================================  ==============================

Parsing is forgiving: a link with an unknown or malformed value falls back to that value's
default rather than failing, since a link is user input. Custom dates are clamped to
:data:`EARLIEST` .. now + :data:`LATEST_AHEAD` (a link reaching to year 1 or 9999 opens that span).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Mapping, Sequence

from collectors.archive.filters import DEFAULT_RANGE, OUTCOMES, RANGES, STATUS_CLASSES, Bucket, Filters, Window
from collectors.models import MalformedMessage, format_timestamp, parse_timestamp

__all__ = [
    "QUERY_KEYS",
    "EARLIEST",
    "LATEST_AHEAD",
    "from_query_params",
    "clamp_range",
    "clamped",
    "to_query_params",
    "choose_bucket",
]

#: The query-parameter names the filters own; other keys in the URL (e.g. ``delivery``) are left alone.
QUERY_KEYS: tuple[str, ...] = ("range", "since", "until", "webhook", "event", "outcome", "status", "q")

#: The earliest instant a custom range from a link may start at (nothing is archived before it).
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
#: How far past "now" a custom range from a link may end.
LATEST_AHEAD = timedelta(days=1)


def _values(params: Mapping[str, str | Sequence[str]], key: str) -> list[str]:
    raw = params.get(key)
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    return [str(v) for v in raw]


def _last(params: Mapping[str, str | Sequence[str]], key: str) -> str:
    values = _values(params, key)
    return values[-1].strip() if values else ""


def _time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return parse_timestamp(text)
    except MalformedMessage:
        return None


def clamp_range(since: datetime, until: datetime, now: datetime) -> tuple[datetime, datetime]:
    """``since`` and ``until`` each moved into :data:`EARLIEST` .. ``now`` + :data:`LATEST_AHEAD`."""
    latest = now.astimezone(timezone.utc) + LATEST_AHEAD

    def clamp(moment: datetime) -> datetime:
        return min(max(moment, EARLIEST), latest)

    return clamp(since), clamp(until)


def from_query_params(params: Mapping[str, str | Sequence[str]], *, now: datetime | None = None) -> Filters:
    """The filters a URL's query parameters describe (see the module docstring); never raises.

    ``params`` maps a key to its value or to all its values (repeated keys). Unknown values are
    dropped; custom dates are clamped by :func:`clamp_range` at ``now`` (default: the current
    time); a custom range with missing or inverted bounds (or empty once clamped) falls back to the
    default range.
    """
    time_range = _last(params, "range") or DEFAULT_RANGE
    if time_range not in RANGES:
        time_range = DEFAULT_RANGE
    since = until = None
    if time_range == "custom":
        since, until = _time(_last(params, "since")), _time(_last(params, "until"))
        if since is not None and until is not None:
            since, until = clamp_range(since, until, now or datetime.now(timezone.utc))
        if since is None or until is None or since >= until:
            time_range, since, until = DEFAULT_RANGE, None, None
    outcome = _last(params, "outcome") or "all"
    if outcome not in OUTCOMES:
        outcome = "all"
    return Filters(
        time_range=time_range,
        since=since,
        until=until,
        webhooks=tuple(_values(params, "webhook")),
        event_types=tuple(_values(params, "event")),
        outcome=outcome,
        status_classes=tuple(s for s in _values(params, "status") if s in STATUS_CLASSES),
        search=_last(params, "q"),
    )


def clamped(params: Mapping[str, str | Sequence[str]], filters: Filters) -> bool:
    """True when ``filters``, read from ``params``, hold a custom range narrower than the link's (clamped)."""
    if filters.time_range != "custom":
        return False
    return (_time(_last(params, "since")), _time(_last(params, "until"))) != (filters.since, filters.until)


def to_query_params(filters: Filters) -> dict[str, str | list[str]]:
    """The query parameters for ``filters``: only what differs from the defaults, lists as lists.

    ``from_query_params(to_query_params(f)) == f`` for every :class:`Filters` ``f``.
    """
    out: dict[str, str | list[str]] = {}
    if filters.time_range != DEFAULT_RANGE:
        out["range"] = filters.time_range
    if filters.time_range == "custom":
        assert filters.since is not None and filters.until is not None
        out["since"] = _rfc3339(filters.since)
        out["until"] = _rfc3339(filters.until)
    if filters.webhooks:
        out["webhook"] = list(filters.webhooks)
    if filters.event_types:
        out["event"] = list(filters.event_types)
    if filters.outcome != "all":
        out["outcome"] = filters.outcome
    if filters.status_classes:
        out["status"] = list(filters.status_classes)
    if filters.search:
        out["q"] = filters.search
    return out


def _rfc3339(moment: datetime) -> str:
    """Short RFC 3339 for URLs: whole seconds without a fraction, else microseconds."""
    moment = moment.astimezone(timezone.utc)
    if moment.microsecond:
        return format_timestamp(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def choose_bucket(window: Window) -> Bucket:
    """The chart bucket for a window: minutes up to 6 hours, hours up to 8 days, days beyond."""
    if window.span <= timedelta(hours=6):
        return "minute"
    if window.span <= timedelta(days=8):
        return "hour"
    return "day"
