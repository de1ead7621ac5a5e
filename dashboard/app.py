"""The dashboard's entry point and router: ``streamlit run dashboard/app.py``.

The frame around every page: settings (read once, from ``MOEGO_*``, by
:func:`collectors.config.load_settings`), a check that the archive exists and has this version's
shape, the navigation, and the sidebar filters shared by all pages (kept in the URL). Each page in
``dashboard/views/`` reads the run's :class:`dashboard.ui.Context`.
"""

from __future__ import annotations

import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NoReturn

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the project: make the packages importable.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from collectors import archive  # noqa: E402
from collectors.config import ConfigError, Settings, load_settings  # noqa: E402
from dashboard import auth, reads, ui  # noqa: E402
from dashboard.safe import md  # noqa: E402
from collectors.archive.filters import ceil_minute  # noqa: E402
from dashboard.freshness import render_collector_banner  # noqa: E402
from dashboard.incidents_ui import render_banner  # noqa: E402
from dashboard.sidebar import render_filters  # noqa: E402
from dashboard.jobs_panel import render_jobs  # noqa: E402
from dashboard.saved_views import render_saved_views  # noqa: E402
from collectors.jobs import JobWorker  # noqa: E402


@st.cache_resource(show_spinner=False)
def _settings() -> Settings:
    """The dashboard's settings, read from the environment once per process."""
    return load_settings()


@st.cache_resource(show_spinner=False, validate=lambda worker: worker.alive, on_release=lambda worker: worker.stop(0))
def _job_worker(db_path: str) -> JobWorker:
    """The process's bulk-job worker (one per archive): sends queued jobs outside any script run, and takes
    over a job whose worker stopped (the dashboard was restarted) without sending any entry twice."""
    return JobWorker(_settings()).start()


def _fail(message: str) -> NoReturn:
    """Show one line and stop the run (no traceback)."""
    st.error(message, icon=":material/error:")
    st.stop()


def _check_archive(settings: Settings) -> None:
    """Stop with one line when there is no archive, or one this version cannot read."""
    try:
        archive.check_readable(settings.db_path)
    except archive.ArchiveError as exc:
        _fail(str(exc))


# An emoji icon: Streamlit draws it as an inline SVG. A :material/...: page icon would be fetched from
# fonts.gstatic.com, and the dashboard must work with no network at all.
st.set_page_config(page_title="MoeGo Webhook Monitor", page_icon="📬", layout="wide")

try:
    settings = _settings()
except ConfigError as exc:
    _fail(f"Configuration problem: {exc}")
user = auth.sign_in(settings)  # stops here for anyone the console does not serve: no page, read or action
_check_archive(settings)

page = st.navigation(
    [
        st.Page("views/overview.py", title="Overview", icon=":material/monitoring:", default=True),
        st.Page("views/deliveries.py", title="Deliveries", icon=":material/list_alt:", url_path="deliveries"),
        st.Page("views/archive_health.py", title="Archive health", icon=":material/inventory_2:", url_path="archive"),
        st.Page("views/webhooks.py", title="Webhooks", icon=":material/webhook:", url_path="webhooks"),
        st.Page("views/incidents.py", title="Incidents", icon=":material/notification_important:", url_path="incidents"),
    ]
)

now = datetime.now(timezone.utc)
try:
    options = reads.filter_options(str(settings.db_path), ceil_minute(now) - timedelta(days=31))
except sqlite3.DatabaseError as exc:
    _fail(f"Cannot read the archive at {settings.db_path}: {exc}")
views_box = st.sidebar.container()  # saved views sit above the filters, and need this run's filters
filters, tz = render_filters(options.webhooks, options.event_types, now, label=options.labeled)
ctx = ui.Context(settings, filters, now, tz, options, user)
ui.set_context(ctx)
with views_box:
    render_saved_views(ctx)
with st.sidebar:
    st.caption(f"Archive: {md(settings.db_path)}")
    st.caption(f"Signed in as {md(user.name)} ({user.role})" if user.via != "local"
               else "Local use on this machine, no login (operator)")
    if user.via == "oidc":
        st.button("Log out", key="auth_logout", on_click=st.logout)
upgrading = reads.upgrade_note(str(settings.db_path))
if upgrading:
    st.info(upgrading, icon=":material/compress:")
if settings.api_key:
    _job_worker(str(settings.db_path))
render_jobs(ctx)

render_collector_banner(ctx)  # while no webhook has synced completely for a while
render_banner(str(settings.db_path))  # while any incident is unresolved
page.run()
