"""The Deliveries page's live tail: a toggle (``live_tail``) that brings in the view's new entries as the
collector archives them, every :data:`REFRESH_S` seconds, each marked new (:mod:`dashboard.tail`)."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from . import reads, ui
from .deliveries_table import OUTCOME_COLUMN

__all__ = ["REFRESH_S", "render_tail"]

#: How often the tail looks for new entries (seconds).
REFRESH_S = 5.0
_STARTED = "_tail_started"
_NEW_COLORS = {"NEW": "#1565c0"}  # a blue label on each entry archived since the tail was turned on


def _toggled() -> None:
    if st.session_state.get("live_tail"):
        st.session_state[_STARTED] = datetime.now(timezone.utc)
    else:
        st.session_state.pop(_STARTED, None)


@st.fragment(run_every=REFRESH_S)
def _live(ctx: ui.Context) -> None:
    now = datetime.now(timezone.utc)
    started: datetime = st.session_state.setdefault(_STARTED, now)
    frame = reads.tail(ctx.db_path, ctx.filters, started, now)
    count = len(frame)
    st.caption(f"Live since {ui.fmt_time(started, ctx.tz)}: {count:,} new {'entry' if count == 1 else 'entries'} "
               f"in this view (checked every {REFRESH_S:.0f} s; the collector archives them on its own schedule).")
    if frame.empty:
        return
    shown = pd.DataFrame({
        "new": "NEW",
        "archived": frame["first_seen_at"].dt.tz_convert(ctx.tz),
        "outcome": frame["success"].map({True: "OK", False: "Failed"}),
        "status": frame["response_status"].map(lambda s: str(s) if s else "—"),
        "error": frame["error"].fillna(""),
        "webhook": frame["webhook_id"].map(ctx.label),
        "event_type": frame["event_type"],
        "delivered_at": frame["delivered_at"].dt.tz_convert(ctx.tz),
        "id": frame["id"],
        "link": "deliveries?delivery=" + frame["id"],
    })
    st.dataframe(
        shown,
        key="tail_table", hide_index=True, height=min(400, 38 + 35 * count),
        column_config={
            "new": ui.label_column("", _NEW_COLORS, width=50, help="Archived since you turned the live tail on."),
            "archived": st.column_config.DatetimeColumn("Archived", format="distance", width=120),
            "outcome": OUTCOME_COLUMN,
            "status": st.column_config.TextColumn("Status", width=60),
            "error": st.column_config.TextColumn("Error", width="large"),
            "webhook": st.column_config.TextColumn("Webhook", width="medium"),
            "event_type": st.column_config.TextColumn("Event type"),
            "delivered_at": st.column_config.DatetimeColumn("Delivered at", format="YYYY-MM-DD HH:mm:ss"),
            "id": st.column_config.TextColumn("Delivery id"),
            "link": st.column_config.LinkColumn("Link", display_text="open"),
        },
        placeholder=ui.MISSING,
    )


def render_tail(ctx: ui.Context) -> None:
    """The toggle, and while it is on, the new entries of the view."""
    if st.toggle("Live tail", key="live_tail", on_change=_toggled,
                 help="Brings in this view's new entries as the collector archives them, marked new."):
        _live(ctx)
