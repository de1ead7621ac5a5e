"""A line above every page when the archive has not been collected for a while.

The ``collector_stale`` alert rule says it as an incident, but the rules run at the end of a collector pass: a
collector that stopped (its process gone, its timer disabled) cannot say it stopped. The console says it from
what the archive holds, with the model ``moego-monitor status`` reads too
(:class:`collectors.archive.status.CollectionState`): once the newest complete sync of any webhook ended 30 min ago
(the rule's default span), or two of the collector's usual intervals when it runs less often, it shows how long
ago that was, what it costs (MoeGo deletes its log after 15 days), and what the newest collector pass says: still
running, failed (with its one-line error: a rejected key, an unreachable host), interrupted, or nothing (then it
asks whether the collector is running).
"""

from __future__ import annotations

import sqlite3

import streamlit as st

from collectors import archive
from collectors.alerts.rules import span_words
from collectors.archive.status import CollectionState

from . import reads, ui
from .safe import md

__all__ = ["render_collector_banner", "stale_line"]


def render_collector_banner(ctx: ui.Context) -> None:
    """The line, with a link to the collector runs, while the collector is late (:meth:`CollectionState.late`);
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
    if last is None or not state.late(ctx.now):
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
