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


@pytest.fixture
def live_seed(tmp_path: Path) -> Seed:
    """The seed archive placed relative to the real clock (for the app, which reads the clock)."""
    return seed(tmp_path / "live.db", datetime.now(timezone.utc))


@pytest.fixture
def run_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AppTest]]:
    """Run the dashboard on an archive: ``run_app(db_path, page=None, query=None, api_key="", base_url=None)``.

    Streamlit's caches live for the process, so they are cleared around each test; the settings the
    app reads once come from the environment set here.
    """
    st.cache_data.clear()
    st.cache_resource.clear()

    def run(db_path: Path, page: str | None = None, query: dict[str, str | list[str]] | None = None,
            api_key: str = "", base_url: str | None = None, timezone_name: str | None = None) -> AppTest:
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
