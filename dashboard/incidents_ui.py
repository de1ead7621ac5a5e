"""What the Incidents page and the banner share: links to an incident's failed deliveries, safe text, the banner.

Reads go through :mod:`dashboard.reads` (which asks :mod:`collectors.alerts.incidents`, the owner of the
incident tables); actions through :mod:`collectors.alerts.actions`. Everything an incident says comes from MoeGo or the archive, so it is shown as
plain text: :func:`plain` escapes Markdown where a Streamlit element would render it.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime

import streamlit as st

from collectors import archive
from collectors.alerts.incidents import Incident

from . import reads
from .filters import Filters, to_query_params

__all__ = ["plain", "failed_link_params", "render_banner"]

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: str) -> str:
    """``text`` with Markdown's special characters escaped, so Streamlit shows it as written."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(text).split()))


def failed_link_params(incident: Incident, now: datetime) -> dict[str, str | list[str]]:
    """The Deliveries page's URL parameters for the incident's failed deliveries: its webhook, its span, failed."""
    since, until = incident.failed_window(now)
    filters = Filters(time_range="custom", since=since, until=until, webhooks=(incident.webhook_id,),
                      outcome="failed")
    return to_query_params(filters)


def render_banner(db_path: str) -> None:
    """A warning above every page while any incident is unresolved, with a link to the Incidents page."""
    try:
        active = reads.incidents(db_path, active_only=True, limit=4)
        total = reads.incident_count(db_path) if active else 0
    except (sqlite3.Error, archive.ArchiveError):  # the page itself says what is wrong with the archive
        return
    if not active:
        return
    shown = "; ".join(plain(i.subject) for i in active[:3]) + ("; …" if total > 3 else "")
    # Coloured Markdown, not an alert element: a page's own warnings stay the only alerts on it.
    with st.container(key="incident_banner", border=True):
        st.markdown(f":orange-background[:material/notification_important: **{total} incident{'s' if total != 1 else ''} "
                    f"unresolved:** {shown}]")
        st.page_link("views/incidents.py", label="Open the Incidents page", icon=":material/arrow_forward:")
