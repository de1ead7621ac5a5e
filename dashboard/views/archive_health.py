"""Archive health: what is at risk of expiring, coverage over 30 days, collector runs, "collect now"."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from collectors.archive import ArchiveError
from collectors.client import MoeGoError
from collectors.config import ConfigError
from collectors.archive.runs import CollectorBusy
from collectors.collect import collect
from dashboard import charts, reads, ui
from dashboard.safe import md
from collectors.archive.filters import ceil_minute

ctx = ui.context()
now = ceil_minute(ctx.now)
since = now - timedelta(days=30)
hooks = list(ctx.filters.webhooks) or None
st.title("Archive health")
st.caption("MoeGo keeps its delivery log 15 days. What the archive does not hold by then is lost.")


def _collect() -> None:
    """Run one collection pass now; its summary is shown below the button."""
    if not ui.may_act(ctx, "collect"):
        return
    try:
        # A status box beside the button, in view while the pass runs (it can take a while), then its end state.
        with right.status("Collecting from MoeGo… (every webhook, oldest gaps first)", expanded=False) as box:
            result = collect(ctx.settings, trigger="dashboard", requested_by=ui.actor())
            box.update(label="Collection finished", state="complete" if result.ok else "error")
    except CollectorBusy as exc:
        st.session_state["_collect_result"] = ("warning", f"Not started: {md(exc)}", [])
    except (ConfigError, MoeGoError, ArchiveError) as exc:
        st.session_state["_collect_result"] = ("error", f"Collection failed: {md(exc)}", [])
    else:
        kind = "success" if result.ok else "error"
        headline = (f"Collected: {result.new:,} new, {result.updated:,} updated entries."
                    if result.ok else f"Collection ended {result.outcome}.")
        st.session_state["_collect_result"] = (kind, headline, result.summary_lines)
    reads.clear()


left, right = st.columns([1, 3], vertical_alignment="center")
blocked = ui.blocker(ctx, "collect")
if left.button("Collect now", key="collect_now", icon=":material/sync:", type="primary", disabled=blocked is not None,
               help=blocked or "Reads every webhook's new entries from MoeGo into the archive."):
    _collect()
outcome = st.session_state.pop("_collect_result", None)
if outcome:
    kind, headline, lines = outcome
    getattr(right, kind)(headline)
    for line in lines:
        st.caption(md(line))

risk = reads.at_risk(ctx.db_path, now, webhook_ids=hooks)
if risk.gaps.empty:
    st.success("Nothing at risk: every webhook's log expiring within 48 hours is archived.", icon=":material/verified:")
else:
    for gap in risk.gaps.itertuples(index=False):
        st.error(
            f"**{md(ctx.label(gap.webhook_id))}** ({md(gap.webhook_id)}): {gap.hours:,.1f} h not archived "
            f"({ui.fmt_time(gap.start, ctx.tz)} → {ui.fmt_time(gap.end, ctx.tz)}), about {gap.estimated_entries:,} "
            f"entries; MoeGo deletes them from {ui.fmt_time(gap.expires_at, ctx.tz)} on.",
            icon=":material/schedule:",
        )


st.subheader("Coverage, last 30 days")
intervals = reads.coverage_intervals(ctx.db_path, since, now, hooks)
gaps = reads.coverage_gaps(ctx.db_path, since, now, now=now, webhook_ids=hooks)
if not intervals and gaps.empty:
    st.info("No coverage recorded yet: run a collection.")
else:
    st.plotly_chart(charts.coverage_figure(intervals, gaps, since, now, ctx.tz, label=ctx.label), key="chart_coverage")
    # One rule names every span (collectors.archive.status.classify_gaps, as `moego-monitor status` does): the
    # tail since a webhook's last collection is pending, what the next pass reads; only holes are gaps.
    pending = gaps[gaps["kind"] == "pending"]
    for tail in pending.itertuples(index=False):
        st.caption(f"{md(ctx.labeled(tail.webhook_id))}: pending since {ui.fmt_time(tail.start, ctx.tz)} "
                   f"({ui.span_text(tail.end - tail.start) if tail.end - tail.start >= timedelta(minutes=1) else 'under a minute'}): "
                   "archived by the next collection.")
    holes = gaps[gaps["kind"] != "pending"]
    if holes.empty:
        st.success("No gaps: everything before each webhook's last collection is archived.", icon=":material/verified:")
    else:
        shown = pd.DataFrame({
            "Webhook": holes["webhook_id"].map(ctx.label),
            "Gap from": ui.local(holes["start"], ctx.tz),
            "to": ui.local(holes["end"], ctx.tz),
            "Hours": holes["hours"],
            "MoeGo deletes from": ui.local(holes["expires_at"], ctx.tz),
            "State": holes["kind"].map({"expired": "deleted by MoeGo", "open": "missing: still collectable"}),
            "Webhook id": holes["webhook_id"],
        })
        st.dataframe(
            shown, hide_index=True, key="gaps_table",
            column_config={
                "Gap from": st.column_config.DatetimeColumn("Gap from", format="YYYY-MM-DD HH:mm"),
                "to": st.column_config.DatetimeColumn("to", format="YYYY-MM-DD HH:mm"),
                "Hours": st.column_config.NumberColumn("Hours", format="%.2f"),
                "MoeGo deletes from": st.column_config.DatetimeColumn("MoeGo deletes from", format="YYYY-MM-DD HH:mm"),
            },
            placeholder=ui.MISSING,
        )

st.subheader("Collector runs")
runs = reads.collector_runs(ctx.db_path, limit=20)
if runs.empty:
    st.info("No collector run recorded yet.")
else:
    st.dataframe(
        runs.assign(started_at=ui.local(runs["started_at"], ctx.tz), finished_at=ui.local(runs["finished_at"], ctx.tz)),
        hide_index=True, key="runs_table",
        column_config={
            "id": None,
            "started_at": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm:ss"),
            "finished_at": st.column_config.DatetimeColumn("Finished", format="YYYY-MM-DD HH:mm:ss"),
            "outcome": "Outcome",
            "trigger": "Trigger",
            "webhooks": "Webhooks",
            "pages": "Pages",
            "new_rows": st.column_config.NumberColumn("New", format="localized"),
            "updated_rows": st.column_config.NumberColumn("Updated", format="localized"),
            "error": st.column_config.TextColumn("Error", width="large"),
        },
        placeholder=ui.MISSING,
    )

states = reads.sync_states(ctx.db_path)
if not states.empty:
    st.subheader("Per webhook")
    st.dataframe(
        states.assign(last_success_at=ui.local(states["last_success_at"], ctx.tz),
                      last_error_at=ui.local(states["last_error_at"], ctx.tz),
                      webhook=states["webhook_id"].map(ctx.label)),
        hide_index=True, key="sync_state_table",
        column_order=["webhook", "last_success_at", "last_error", "last_error_at", "webhook_id"],
        column_config={
            "webhook": "Webhook",
            "webhook_id": "Webhook id",
            "last_success_at": st.column_config.DatetimeColumn("Last complete sync", format="YYYY-MM-DD HH:mm:ss"),
            "last_error": st.column_config.TextColumn("Last error", width="large"),
            "last_error_at": st.column_config.DatetimeColumn("Error at", format="YYYY-MM-DD HH:mm:ss"),
        },
        placeholder=ui.MISSING,
    )
