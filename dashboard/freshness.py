"""A line above every page when the archive has not been collected for a while.

The ``collector_stale`` alert rule says it as an incident, but the rules run at the end of a collector pass: a
collector that stopped (its process gone, its timer disabled) cannot say it stopped. The console says it from
what the archive holds: when the newest complete sync of any webhook ended at least the rule's default span ago
(30 min), or two of the collector's usual intervals when it runs less often, it shows how long ago that was, what it costs (MoeGo deletes its log after 15 days), and what the newest
collector pass says: still running, failed (with its one-line error: a rejected key, an unreachable host),
interrupted, or nothing (then it asks whether the collector is running).
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import streamlit as st

from collectors import archive
from collectors.alerts.config import RULE_PARAMS
from collectors.alerts.rules import span_words

from . import reads, ui
from .queries import CollectionState
from .safe import md

__all__ = ["STALE_AFTER", "render_collector_banner", "stale_after", "stale_line"]

#: How long without a complete sync before the console says so: the ``collector_stale`` rule's default span.
STALE_AFTER: timedelta = RULE_PARAMS["collector_stale"]["span"][1]


def stale_after(state: CollectionState) -> timedelta:
    """How long without a complete sync is too long: :data:`STALE_AFTER`, or two of the collector's usual intervals
    when it runs less often (an hourly timer is not late 30 minutes after its last pass)."""
    return max(STALE_AFTER, 2 * state.usual_interval) if state.usual_interval else STALE_AFTER


def render_collector_banner(ctx: ui.Context) -> None:
    """The line, with a link to the collector runs, when the last complete sync ended :func:`stale_after` ago or more;
    nothing before the first sync (Archive health says that) or when the archive cannot be read (the page says)."""
    try:
        state = reads.collection_state(ctx.db_path)
    except (sqlite3.Error, archive.ArchiveError):
        return
    line = stale_line(state, ctx)
    if line is None:
        return
    # Coloured Markdown, as the incident banner: a page's own warnings stay the only alerts on it.
    with st.container(key="collector_banner", border=True):
        st.markdown(f":orange-background[:material/sync_problem: {line}]")
        st.page_link("views/archive_health.py", label="See the collector runs", icon=":material/arrow_forward:")


def stale_line(state: CollectionState, ctx: ui.Context) -> str | None:
    """What the banner says (Markdown, every archived text escaped), or None while the archive is current."""
    last = state.last_complete
    if last is None or ctx.now - last < stale_after(state):
        return None
    rhythm = f"; passes usually start every {span_words(state.usual_interval)}" if state.usual_interval else ""
    said = (f"**No complete collection for {span_words(ctx.now - last)}** (the last ended {ui.fmt_time(last, ctx.tz)}"
            f"{rhythm}): newer deliveries are not in the archive, and MoeGo deletes its log after 15 days.")
    started = ui.fmt_time(state.run_started, ctx.tz)
    if state.run_outcome == "running":
        return f"{said} A pass started {started} has not finished."
    if state.run_outcome == "failed":
        return f"{said} The last pass, started {started}, failed: {md(state.run_error or 'no error recorded')}"
    if state.run_outcome == "interrupted":
        return f"{said} The last pass, started {started}, was interrupted. Is the collector running?"
    return f"{said} Is the collector running?"
