"""What every page shares: the run's context, and the formatting of times, durations and rates.

``app.py`` builds a :class:`Context` once per run (settings, filters, window, time zone, the signed-in
user) and keeps it in session state; pages read it with :func:`context`, ask :func:`blocker` whether the
user may act and :func:`may_act` again right before acting, and name the user in the audit with :func:`actor`. Reads of the archive go through the cached
functions of :mod:`dashboard.reads`, called with :attr:`Context.db_path`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from collectors.config import Settings

from .auth import User, action_blocker
from .queries import FilterOptions
from collectors.archive.filters import Bucket, Filters, Window
from .filters import choose_bucket

__all__ = ["Context", "context", "set_context", "actor", "blocker", "may_act", "local", "fmt_time", "fmt_ms",
           "fmt_rate", "STATE_COLORS", "label_column", "span_text", "window_caption"]

_CTX_KEY = "_moego_context"


@dataclass(frozen=True)
class Context:
    """One run's frame: validated settings, the shared filters, their window, the user's time zone, and who
    is at the console (:func:`dashboard.auth.sign_in`)."""

    settings: Settings
    filters: Filters
    now: datetime
    tz: ZoneInfo
    options: FilterOptions
    user: User

    @property
    def db_path(self) -> str:
        """The archive's path, as text (a cache key part)."""
        return str(self.settings.db_path)

    @property
    def window(self) -> Window:
        """The UTC window the filters select at this run's ``now``."""
        return self.filters.window(self.now)

    @property
    def bucket(self) -> Bucket:
        """The chart bucket for the window."""
        return choose_bucket(self.window)

    def label(self, webhook_id: str) -> str:
        """What a person reads for a webhook: its short name, else its endpoint's host and path."""
        return self.options.label(webhook_id)

    def labeled(self, webhook_id: str) -> str:
        """The label with the id at hand: ``api.example.com/hooks (whk_8cwci8gnjnj0)``."""
        return self.options.labeled(webhook_id)

    def fresh(self) -> "Context":
        """This context at the current time (for a fragment that reruns on its own)."""
        return Context(self.settings, self.filters, datetime.now(timezone.utc), self.tz, self.options, self.user)


def set_context(ctx: Context) -> None:
    """Make ``ctx`` this run's context (called by ``app.py`` before the page runs)."""
    st.session_state[_CTX_KEY] = ctx


def context() -> Context:
    """This run's context; a page run without ``app.py`` stops with a one-line message."""
    ctx = st.session_state.get(_CTX_KEY)
    if ctx is None:
        st.error("Start the dashboard with `moego-monitor dashboard` (or `streamlit run dashboard/app.py`).")
        st.stop()
    return ctx


def actor() -> str:
    """Who acts from this session, as the audit records it (``requested_by`` of a redelivery, a bulk batch,
    a test event, a collection, an incident action): the logged-in identity (an e-mail with ``oidc``, the
    proxy's user name with ``proxy``), or ``local`` for the one user of a console without login on loopback.
    Every page that writes an audit row takes the name from here."""
    return context().user.name


def blocker(ctx: Context, what: str) -> str | None:
    """Why this session may not ``what`` (``"redeliver"``, ``"collect"``...), in one line; ``None`` when it may."""
    return action_blocker(ctx.settings, ctx.user, what=what)


def may_act(ctx: Context, what: str) -> bool:
    """Check right before acting (a disabled button is no permission check): ``False``, with the reason
    shown, when this session may not ``what``."""
    reason = blocker(ctx, what)
    if reason is not None:
        st.error(reason, icon=":material/lock:")
        return False
    return True


def local(values: pd.Series, tz: ZoneInfo) -> pd.Series:
    """Aware timestamps converted to ``tz`` (missing values stay missing)."""
    return values.dt.tz_convert(tz)


def fmt_time(value: datetime | pd.Timestamp | str | None, tz: ZoneInfo) -> str:
    """A moment as ``2026-11-20 13:04:56 CET`` in ``tz``; :data:`MISSING` when missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return MISSING
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def fmt_ms(value: float | None) -> str:
    """A duration in ms for a tile: ``742 ms``, ``2.4 s``; ``—`` when unknown."""
    if value is None or pd.isna(value):
        return "—"
    if value >= 1000:
        return f"{value / 1000:,.1f} s"
    return f"{value:,.0f} ms"


def fmt_rate(value: float | None) -> str:
    """A success rate (0..1) as ``98.50%``; ``—`` without deliveries."""
    if value is None or pd.isna(value):
        return "—"
    return f"{value * 100:.2f}%"


#: What every table shows for a missing value (a rate or latency of a webhook without deliveries, a time never
#: reached): the dash the detail view writes, not Streamlit's "None", which reads as a value.
MISSING = "—"

#: The label colour of each webhook health state, readable in light and dark themes (white text on it).
STATE_COLORS = {"failing": "#c62828", "degraded": "#ef6c00", "healthy": "#2e7d32", "inactive": "#757575"}


def label_column(title: str, colors: dict[str, str], *, width: int | None = None, help: str | None = None) -> dict:
    """A text column of a table drawn as coloured labels, the word written on its colour (so it reads without the
    colour): ``colors`` maps each value to its colour; the cells stay plain strings. Streamlit's own read-only
    multiselect column draws them (a pandas Styler did before: it rendered CSS for every cell on the server and
    sent it with the table)."""
    return st.column_config.MultiselectColumn(title, options=list(colors), color=list(colors.values()), width=width,
                                              help=help)


def span_text(span: timedelta) -> str:
    """A window length in words: ``24 h``, ``7 days``, ``90 min``."""
    seconds = span.total_seconds()
    if seconds % 86400 == 0 and seconds >= 2 * 86400:
        return f"{int(seconds // 86400)} days"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 60)} min"


def window_caption(ctx: Context) -> str:
    """One line saying what the page shows: the window in the user's zone and the chart bucket."""
    window = ctx.window
    return (f"{fmt_time(window.since, ctx.tz)} → {fmt_time(window.until, ctx.tz)} "
            f"({span_text(window.span)}, {ctx.bucket} buckets)")
