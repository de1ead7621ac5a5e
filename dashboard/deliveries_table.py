"""The Deliveries list as a person reads it: outcome first as a coloured badge, the error readable, relative times.

:func:`list_frame` turns a page of :func:`dashboard.queries.delivery_page` rows into the table shown
(pure: no Streamlit), :data:`COLUMN_CONFIG` names and sizes the columns and draws the outcome as a coloured
label (:data:`OUTCOME_COLUMN`). At 1440 px the outcome, status, error and webhook fit without sideways
scrolling; ids, the exact time and the link follow to the right.
"""

from __future__ import annotations

from typing import Callable
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from .ui import label_column

__all__ = ["COLUMN_ORDER", "COLUMN_CONFIG", "OUTCOME_COLORS", "OUTCOME_COLUMN", "outcome_text", "list_frame"]

#: The columns in the order they are shown (the first ones fit a 1440 px screen).
COLUMN_ORDER = ["when", "outcome", "status", "error", "webhook", "event_type", "duration_ms", "retry_count",
                "delivered_at", "event_id", "id", "link"]

#: Label colours of an outcome cell (white text on them), readable in light and dark themes.
OUTCOME_COLORS = {"OK": "#2e7d32", "Failed": "#c62828"}


def outcome_text(success: bool) -> str:
    """The badge's word: ``OK`` or ``Failed``."""
    return "OK" if success else "Failed"


def list_frame(rows: pd.DataFrame, tz: ZoneInfo, label: Callable[[str], str]) -> pd.DataFrame:
    """A page of the list ready to show: outcome word, ``—`` for no response, labelled webhook, local times."""
    local = rows["delivered_at"].dt.tz_convert(tz)
    return pd.DataFrame({
        "when": local,
        "outcome": rows["success"].map(outcome_text),
        # 0 means no HTTP answer at all (timeout, refused): say so rather than show a status that never came.
        "status": rows["response_status"].map(lambda s: str(s) if s else "—"),
        "error": rows["error"].fillna(""),
        "webhook": rows["webhook_id"].map(label),
        "event_type": rows["event_type"],
        "duration_ms": rows["duration_ms"],
        "retry_count": rows["retry_count"],
        "delivered_at": local,
        "event_id": rows["event_id"],
        "id": rows["id"],
        "link": "deliveries?delivery=" + rows["id"],
    }, columns=COLUMN_ORDER)


#: The outcome column: ``OK`` on green, ``Failed`` on red (the Deliveries list and its live tail).
OUTCOME_COLUMN = label_column("Outcome", OUTCOME_COLORS, width=70, help="OK: HTTP 2xx. Failed: anything else.")

COLUMN_CONFIG = {
    "when": st.column_config.DatetimeColumn("When", format="distance", width=120,
                                            help="How long ago; the exact time is in Delivered at."),
    "outcome": OUTCOME_COLUMN,
    "status": st.column_config.TextColumn("Status", width=60, help="HTTP status; — = no response (timeout, refused)."),
    "error": st.column_config.TextColumn("Error", width="large"),
    "webhook": st.column_config.TextColumn("Webhook", width="medium",
                                           help="Its short name, else its endpoint's host and path."),
    "event_type": st.column_config.TextColumn("Event type", width="medium"),
    "duration_ms": st.column_config.NumberColumn("ms", format="localized", width=60, help="Duration in ms."),
    "retry_count": st.column_config.NumberColumn("Retries", width=60),
    "delivered_at": st.column_config.DatetimeColumn("Delivered at", format="YYYY-MM-DD HH:mm:ss"),
    "event_id": st.column_config.TextColumn("Event id"),
    "id": st.column_config.TextColumn("Delivery id"),
    "link": st.column_config.LinkColumn("Link", display_text="open", help="A link to this delivery alone."),
}
