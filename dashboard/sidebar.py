"""The sidebar filters shared by every page, kept in step with the URL so a view is a shareable link.

The URL is read when a session starts (or when someone changes it by hand); from then on the
widgets own the filters and every run writes them back to ``st.query_params``. Page navigation
clears the URL's parameters; the next run writes them again from the widgets, so the filters
follow the user from page to page. Keys other than :data:`~dashboard.filters.QUERY_KEYS` (such as
``delivery``) are left alone.

Widget keys (stable, for tests and the browser test): ``filter_range``, ``filter_dates``,
``filter_webhooks``, ``filter_events``, ``filter_outcome``, ``filter_status``, ``filter_codes``,
``filter_search``, ``filter_tz``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Callable, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import streamlit as st

from collectors.archive.filters import OUTCOMES, RANGES, STATUS_CLASSES, Filters

from .filters import EARLIEST, QUERY_KEYS, clamped, from_query_params, parse_codes, to_query_params

__all__ = ["render_filters", "reseed_from_url", "browser_zone", "url_params"]

_RANGE_LABELS = {"24h": "Last 24 hours", "7d": "Last 7 days", "15d": "Last 15 days", "30d": "Last 30 days",
                 "custom": "Custom dates"}
_OUTCOME_LABELS = {"all": "All", "success": "Succeeded", "failed": "Failed"}
_SEEDED = "_filters_seeded"
_WRITTEN = "_filters_written"
_EXACT = "_filters_custom_exact"
_CLAMPED = "_filters_custom_clamped"
_ZONES = sorted(available_timezones() | {"UTC"})


def browser_zone() -> str:
    """The browser's IANA time zone when Streamlit knows it and it is valid, else ``UTC``."""
    name = st.context.timezone
    if not name:
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name


def reseed_from_url() -> None:
    """Make the next :func:`render_filters` read the filters from the URL again (after a saved view was applied)."""
    st.session_state[_SEEDED] = False


def url_params() -> dict[str, list[str]]:
    """The filter keys of the current URL, every value as a list."""
    return {k: st.query_params.get_all(k) for k in QUERY_KEYS if k in st.query_params}


def _as_lists(params: Mapping[str, str | Sequence[str]]) -> dict[str, list[str]]:
    return {k: [v] if isinstance(v, str) else list(v) for k, v in params.items()}


def _local_days(filters: Filters, tz: ZoneInfo) -> tuple[date, date]:
    assert filters.since is not None and filters.until is not None
    first = filters.since.astimezone(tz).date()
    last = (filters.until - timedelta(microseconds=1)).astimezone(tz).date()
    return first, last


def _seed(filters: Filters, tz: ZoneInfo, now: datetime) -> None:
    """Put ``filters`` into the widgets' session state (before they are drawn)."""
    state = st.session_state
    state["filter_range"] = filters.time_range
    if filters.time_range == "custom":
        days = _local_days(filters, tz)
        state["filter_dates"] = days
        state[_EXACT] = (days, filters.since, filters.until)
    else:
        today = now.astimezone(tz).date()
        state["filter_dates"] = (today - timedelta(days=6), today)
        state.pop(_EXACT, None)
    state["filter_webhooks"] = list(filters.webhooks)
    state["filter_events"] = list(filters.event_types)
    state["filter_outcome"] = filters.outcome
    state["filter_status"] = list(filters.status_classes)
    state["filter_search"] = filters.search
    state["filter_codes"] = ", ".join(str(c) for c in filters.status_codes)


def _custom_bounds(days: Sequence[date], tz: ZoneInfo) -> tuple[datetime, datetime]:
    first = days[0]
    last = days[1] if len(days) > 1 else days[0]
    since = datetime.combine(first, time(0), tzinfo=tz).astimezone(timezone.utc)
    until = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).astimezone(timezone.utc)
    return since, until


def _write_url(params: dict[str, list[str]]) -> None:
    for key in QUERY_KEYS:
        if key in params:
            values = params[key]
            st.query_params[key] = values if len(values) > 1 else values[0]
        elif key in st.query_params:
            del st.query_params[key]


def render_filters(webhooks: Sequence[str], event_types: Sequence[str], now: datetime,
                   label: Callable[[str], str] = str) -> tuple[Filters, ZoneInfo]:
    """Draw the filters in the sidebar and return them with the chosen time zone; keeps the URL in step.

    ``label`` names a webhook for people (its short name or endpoint, with the id); the URL keeps ids.
    """
    state = st.session_state
    if "filter_tz" not in state:
        state["filter_tz"] = browser_zone()
    current_url = url_params()
    if not state.get(_SEEDED) or (current_url and current_url != state.get(_WRITTEN)):
        linked = from_query_params(current_url, now=now)
        _seed(linked, ZoneInfo(state["filter_tz"]), now)
        state[_CLAMPED] = clamped(current_url, linked)
        state[_SEEDED] = True

    with st.sidebar:
        st.header("Filters")
        time_range = st.selectbox("Time range", RANGES, key="filter_range", format_func=_RANGE_LABELS.__getitem__)
        tz = ZoneInfo(state["filter_tz"])
        since = until = None
        if time_range == "custom":
            picked = st.date_input(
                "Dates (inclusive)", key="filter_dates",
                help="Reaches back as far as the archive does, past MoeGo's 15 days.",
            )
            days: tuple[date, ...] = tuple(picked) if isinstance(picked, (tuple, list)) else (picked,)
            exact = state.get(_EXACT)
            if exact is not None and tuple(exact[0]) == tuple(days):
                since, until = exact[1], exact[2]
                if state.get(_CLAMPED):
                    st.caption(f"The link's dates reach outside {EARLIEST:%Y-%m-%d} .. tomorrow: showing "
                               f"{since.astimezone(tz):%Y-%m-%d %H:%M} → {until.astimezone(tz):%Y-%m-%d %H:%M} "
                               f"({tz.key}).")
            elif days:
                since, until = _custom_bounds(days, tz)
            else:
                time_range = "24h"
        hooks = st.multiselect("Webhooks", sorted(set(webhooks) | set(state.get("filter_webhooks", []))),
                               key="filter_webhooks", placeholder="All webhooks", format_func=label)
        events = st.multiselect("Event types", sorted(set(event_types) | set(state.get("filter_events", []))),
                                key="filter_events", placeholder="All event types")
        outcome = st.radio("Outcome", OUTCOMES, key="filter_outcome", horizontal=True,
                           format_func=_OUTCOME_LABELS.__getitem__)
        statuses = st.multiselect("Response status", STATUS_CLASSES, key="filter_status", placeholder="Any status",
                                  help="`none`: no HTTP response (timeout, refused connection).")
        codes_text = st.text_input("Exact status", key="filter_codes", placeholder="e.g. 503, 0",
                                   help="Exact HTTP statuses, separated by commas; 0 = no response.")
        codes, not_codes = parse_codes(codes_text)
        if not_codes:
            st.caption(f"Not a status, ignored: {', '.join(not_codes)} (use 0 or 100..599).")
        search = st.text_input("Search", key="filter_search",
                               placeholder="delivery id, event id, or words in the bodies",
                               help="An exact delivery or event id, or words found in request body, response body or error.")
        st.selectbox("Time zone", _ZONES, key="filter_tz", help="Times are shown in this zone; the browser's by default.")

    filters = Filters(time_range=time_range, since=since, until=until, webhooks=tuple(hooks), event_types=tuple(events),
                      outcome=outcome, status_classes=tuple(statuses), search=search, status_codes=tuple(codes))
    written = _as_lists(to_query_params(filters))
    if written != current_url:
        _write_url(written)
    state[_WRITTEN] = written
    return filters, ZoneInfo(state["filter_tz"])
