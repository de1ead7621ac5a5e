"""Fixtures for the dashboard's tests: seeded archives (fixed or real "now") and AppTest runs on them."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.seed import Seed, seed

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
_ACCESS_VARS = ("MOEGO_MONITOR_AUTH", "MOEGO_MONITOR_OPERATORS", "MOEGO_MONITOR_VIEWERS",
                "MOEGO_MONITOR_PROXY_USER_HEADER", "MOEGO_MONITOR_PROXY_SECRET")


@pytest.fixture(autouse=True)
def listen_on() -> Iterator[Callable[[str], None]]:
    """Make the app see Streamlit's ``server.address`` as given (as ``--server.address`` would); restored after.

    Every test starts on loopback, as the project's ``.streamlit/config.toml`` has it, whatever folder pytest
    was started from (Streamlit reads that file from the working directory).
    """
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield lambda address: config.set_option("server.address", address)
    config.set_option("server.address", before)


@pytest.fixture
def live_seed(tmp_path: Path) -> Seed:
    """The seed archive placed relative to the real clock (for the app, which reads the clock)."""
    return seed(tmp_path / "live.db", datetime.now(timezone.utc))


@pytest.fixture
def run_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AppTest]]:
    """Run the dashboard on an archive: ``run_app(db_path, page=None, query=None, api_key="", base_url=None)``.

    ``env`` adds ``MOEGO_*`` settings (the login's, e.g. ``MOEGO_MONITOR_AUTH``); ``user`` is what the run reads
    as ``st.user`` (the ID token's claims after ``st.login``) and ``secrets`` what it reads as ``st.secrets``.
    Streamlit's caches live for the process, so they are cleared around each test; the settings the
    app reads once come from the environment set here.
    """
    st.cache_data.clear()
    st.cache_resource.clear()

    def run(db_path: Path, page: str | None = None, query: dict[str, str | list[str]] | None = None,
            api_key: str = "", base_url: str | None = None, timezone_name: str | None = None,
            env: dict[str, str] | None = None, user: dict | None = None, secrets: dict | None = None) -> AppTest:
        for name in _ACCESS_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        st.cache_resource.clear()  # the settings are read once per process: read them again for this run
        monkeypatch.setenv("MOEGO_MONITOR_DB", str(db_path))
        if api_key:
            monkeypatch.setenv("MOEGO_API_KEY", api_key)
        else:
            monkeypatch.delenv("MOEGO_API_KEY", raising=False)
        if base_url:
            monkeypatch.setenv("MOEGO_BASE_URL", base_url)
        else:
            monkeypatch.delenv("MOEGO_BASE_URL", raising=False)
        at = AppTest.from_file(str(APP), default_timeout=30)
        if user is not None:
            at.user = user
        if secrets is not None:
            at.secrets = secrets
        if timezone_name:
            at.context["timezone"] = timezone_name
        if query and not page:  # a link to the overview, opened in a new session
            at.query_params.update(query)
        at.run()
        if page:  # a page needs one run to register the navigation; its link's parameters come after
            at.switch_page(page)
            if query:
                at.query_params.update(query)
            at.run()
        return at

    yield run
    st.cache_data.clear()
    st.cache_resource.clear()
