"""Overview: headline tiles against the previous period; below them three lazy tabs (trends, failure breakdowns,
webhook health), only the open one run and drawn."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, reads, ui
from collectors.archive import search_plan
from collectors.archive.filters import Window, ceil_minute
from dashboard.filters import choose_bucket, to_query_params
from dashboard.meaning import comparable, failures_meaningless, no_comparison_text, rate_meaningless
from dashboard.queries import Tiles

ctx = ui.context()
st.title("Overview")
st.caption(ui.window_caption(ctx))


def _figures_window(run: ui.Context) -> Window:
    """The window the figures cover: the run's, or for a very common search word its latest part (said on the page)."""
    if not run.filters.search:
        return run.window
    return reads.search_window(run.db_path, run.filters, run.window).window


def _breakdown(column, frame, dim: str, title: str, key: str) -> None:
    """Failures per value of ``dim`` as a table with a bar in each row, the largest first."""
    column.dataframe(
        frame, key=key, hide_index=True, column_order=[dim, "failures"],
        column_config={dim: st.column_config.TextColumn(title),
                       "failures": st.column_config.ProgressColumn("Failures", format="%d", min_value=0,
                                                                   max_value=int(frame["failures"].max()))},
    )


def _count_delta(current: int, previous: int) -> str:
    """``+12``/``-3``; ``"0"`` (Streamlit's zero: grey, no arrow) when unchanged."""
    return f"{current - previous:+,}" if current != previous else "0"


def _ms_delta(current: float | None, previous: float | None) -> str | None:
    if current is None or previous is None:
        return None
    change = round(current - previous)
    return f"{change:+,} ms" if change else "0"


def _rate_delta(current: float | None, previous: float | None) -> str | None:
    if current is None or previous is None:
        return None
    change = round((current - previous) * 100, 2)
    return f"{change:+.2f} pp" if change else "0"


@st.fragment(run_every=reads.CACHE_TTL_S)
def live_tiles() -> None:
    """The headline tiles; reruns on their own every minute to stay live."""
    live = ctx.fresh()
    window = _figures_window(live)
    # At-risk is a state of now, whatever the window: anchor it at the current minute.
    tiles: Tiles = reads.tiles(live.db_path, live.filters, window, ceil_minute(live.now))
    cur, prev = tiles.current, tiles.previous
    span = ui.span_text(window.span)
    versus = f"vs the previous {span}"
    compare = comparable(window, tiles.archive_since)
    if not compare:
        # The previous period lies (partly) before the archive began: a comparison would be with nothing.
        since = "nothing yet" if tiles.archive_since is None else ui.fmt_time(tiles.archive_since, live.tz)
        st.caption(f"No comparison with the previous {span}: the archive holds data from {since} on.")
    missing = no_comparison_text(span)

    def delta(value: str | None) -> str | None:
        return value if compare else missing

    def color(kind: str) -> str:
        return kind if compare else "off"

    arrow = "auto" if compare else "off"
    no_rate = rate_meaningless(live.filters)
    no_failures = failures_meaningless(live.filters)
    row1 = st.columns(4)
    row1[0].metric("Deliveries", f"{cur.deliveries:,}", delta(_count_delta(cur.deliveries, prev.deliveries)),
                   delta_color="off", delta_arrow=arrow, delta_description=versus if compare else None, border=True)
    if no_rate:
        row1[1].metric("Success rate", "n/a", f"not meaningful: {no_rate}", delta_color="off", delta_arrow="off",
                       border=True, help="Deliveries answered with HTTP 2xx: this view's filters decide it in advance.")
    else:
        row1[1].metric("Success rate", ui.fmt_rate(cur.success_rate),
                       delta(_rate_delta(cur.success_rate, prev.success_rate)), delta_color=color("normal"),
                       delta_arrow=arrow, delta_description=versus if compare else None, border=True,
                       help="Deliveries answered with HTTP 2xx.")
    if no_failures:
        row1[2].metric("Failures", "n/a", f"not meaningful: {no_failures}", delta_color="off", delta_arrow="off",
                       border=True)
    else:
        row1[2].metric("Failures", f"{cur.failures:,}", delta(_count_delta(cur.failures, prev.failures)),
                       delta_color=color("inverse"), delta_arrow=arrow, delta_description=versus if compare else None,
                       border=True)
    row1[3].metric("Redeliveries", f"{tiles.redeliveries:,}",
                   delta(_count_delta(tiles.redeliveries, tiles.previous_redeliveries)), delta_color="off",
                   delta_arrow=arrow, delta_description=versus if compare else None, border=True,
                   help="Redeliveries sent from moego-monitor in the window.")
    row2 = st.columns(4)
    for column, label, value, before in (
        (row2[0], "Latency p50", cur.p50_ms, prev.p50_ms),
        (row2[1], "Latency p95", cur.p95_ms, prev.p95_ms),
        (row2[2], "Latency p99", cur.p99_ms, prev.p99_ms),
    ):
        column.metric(label, ui.fmt_ms(value), delta(_ms_delta(value, before)) if value is not None else None,
                      delta_color=color("inverse"), delta_arrow=arrow, delta_description=versus if compare else None,
                      border=True,
                      help="Estimated from the archive's latency histogram (within one bucket of the exact value).")
    risk = tiles.at_risk
    row2[3].metric(
        "At risk of expiry (48 h)", f"{risk.estimated_entries:,}",
        delta=f"{risk.gap_hours:,.0f} h not archived" if risk.gap_hours else None, delta_color="inverse",
        delta_arrow="off", delta_description="expiring at MoeGo within 48 h", border=True,
        help="Entries in parts of MoeGo's 15-day window the archive does not cover yet, which MoeGo deletes "
             "within 48 h: estimated as the uncovered hours times each webhook's usual rate. A current state, "
             "so it has no previous period. See Archive health.",
    )
    if risk.gap_hours:
        st.warning(
            f"{risk.gap_hours:,.0f} hours of MoeGo's log (about {risk.estimated_entries:,} entries) are not archived "
            "and expire within 48 hours: run a collection (Archive health → Collect now).",
            icon=":material/schedule:",
        )


def _health() -> None:
    """Every webhook's state in the window, worst first."""
    if ctx.filters.outcome != "all" or ctx.filters.status_classes or ctx.filters.search:
        st.caption("Health counts every delivery of the filtered webhooks and event types in this window: "
                   "the outcome, status and search filters do not apply to it.")
    health = reads.webhook_health(ctx.db_path, ctx.filters, ctx.window)
    if health.empty:
        st.info("No webhooks in the archive yet.")
    else:
        shown = health.assign(
            webhook=health["webhook_id"].map(ctx.label),
            success_rate=health["success_rate"] * 100.0,
            last_success=ui.local(health["last_success"], ctx.tz),
            last_failure=ui.local(health["last_failure"], ctx.tz),
        )
        st.dataframe(
            shown,
            key="health_table",
            hide_index=True,
            column_order=["webhook", "state", "deliveries", "success_rate", "p95_ms", "last_success", "last_failure",
                          "consecutive_failures", "webhook_id", "endpoint_url"],
            column_config={
                "webhook": st.column_config.TextColumn("Webhook", help="Its short name, else its endpoint's host and path."),
                "webhook_id": st.column_config.TextColumn("Webhook id"),
                "endpoint_url": st.column_config.TextColumn("Endpoint"),
                "state": ui.label_column("State", ui.STATE_COLORS,
                                         help="failing: 5+ failures in a row or under 80% success; degraded: the "
                                              "latest failed, under 99% success or p95 over 10 s; inactive: "
                                              "disabled or no traffic."),
                "deliveries": st.column_config.NumberColumn("Deliveries", format="localized"),
                "success_rate": st.column_config.NumberColumn("Success rate", format="%.2f%%"),
                "p95_ms": st.column_config.NumberColumn("p95 (ms)", format="%.0f"),
                "last_success": st.column_config.DatetimeColumn("Last success", format="YYYY-MM-DD HH:mm:ss"),
                "last_failure": st.column_config.DatetimeColumn("Last failure", format="YYYY-MM-DD HH:mm:ss"),
                "consecutive_failures": st.column_config.NumberColumn("Failures in a row"),
            },
            placeholder=ui.MISSING,
        )


window, bucket = ctx.window, ctx.bucket
if ctx.filters.search:
    scoped = reads.search_window(ctx.db_path, ctx.filters, window)
    if scoped.capped:
        window, bucket = scoped.window, choose_bucket(scoped.window)
        st.info(f"The search matches more than {search_plan.COUNT_CAP:,} deliveries in this window: the figures "
                f"cover the latest of them, delivered from {ui.fmt_time(window.since, ctx.tz)} on.",
                icon=":material/filter_alt:")

live_tiles()

#: The Overview's three parts below the tiles, one tab each; the URL's ``tab`` names the one open (``?tab=Failures``).
#: Only the open tab runs its queries and is drawn: a browser opening the Overview draws the tiles and the trends,
#: not five data grids below the fold (bench/README.md, "The Overview in Chromium, part J").
TABS = ("Trends", "Failures", "Webhook health")
trends_tab, failures_tab, health_tab = st.tabs(TABS, key="tab", bind="query-params")

if trends_tab.open:
    with trends_tab:
        series = reads.time_series(ctx.db_path, ctx.filters, window, bucket, ctx.tz)
        no_rate = rate_meaningless(ctx.filters)
        if no_rate:
            st.info(f"Success rate over time: not shown, {no_rate} (the rate would be fixed by the filter).",
                    icon=":material/info:")
        trends, spec = charts.trends_chart(series, bucket, with_rate=not no_rate)
        st.vega_lite_chart(trends, spec, width="stretch", key="chart_trends")

if failures_tab.open:
    with failures_tab:
        by_class = reads.failures_by(ctx.db_path, ctx.filters, window, "error_class")
        if by_class.empty:
            st.success("No failed deliveries in this view.", icon=":material/check_circle:")
        else:
            cols = st.columns(4)
            _breakdown(cols[0], by_class, "error_class", "Error class", "failures_error_class")
            by_status = reads.failures_by_status(ctx.db_path, ctx.filters, window)
            by_status = by_status.assign(status=by_status["response_status"].map(lambda s: str(s) if s else "no response"))
            _breakdown(cols[1], by_status, "status", "Response status", "failures_status")
            _breakdown(cols[2], reads.failures_by(ctx.db_path, ctx.filters, window, "event_type"), "event_type",
                       "Event type", "failures_event_type")
            by_hook = reads.failures_by(ctx.db_path, ctx.filters, window, "webhook_id")
            _breakdown(cols[3], by_hook.assign(webhook_id=by_hook["webhook_id"].map(ctx.labeled)), "webhook_id",
                       "Webhook", "failures_webhook")
            failed_view = {**to_query_params(ctx.filters), "outcome": "failed"}
            st.page_link("views/deliveries.py", label="See the failed deliveries", icon=":material/arrow_forward:",
                         query_params=failed_view)

if health_tab.open:
    with health_tab:
        _health()
