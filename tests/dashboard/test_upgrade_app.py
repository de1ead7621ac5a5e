"""The dashboard on an archive whose upgrade (the compaction, the last migration) is half done: it says so, and
every number it shows is the one it shows once the upgrade is finished."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import streamlit as st

from collectors import archive
from collectors.archive import compaction

from tests.archive.legacy import legacy_archive, varied_deliveries
from tests.dashboard.test_app import metrics, no_exception
from tests.seed import ALPHA, BETA


class _Stop(Exception):
    pass


def _stop_after_two(progress: compaction.Progress, seen: list[int] = []) -> None:  # noqa: B006
    seen.append(progress.rowid)
    if len(seen) == 2:
        raise _Stop


def test_the_dashboard_reads_an_archive_being_compacted_and_says_so(run_app, tmp_path: Path) -> None:
    path = tmp_path / "upgrading.db"
    now = datetime.now(timezone.utc)
    legacy_archive(path, varied_deliveries(3_000, (ALPHA, BETA), now - timedelta(minutes=5)), seen_at=now)
    conn = archive.connect(path)
    archive.ensure_db_shape(conn, until=archive.schema.READABLE_FROM)
    with pytest.raises(_Stop):
        compaction.compact(conn, batch=500, on_batch=_stop_after_two)
    assert conn.execute("SELECT COUNT(*) FROM deliveries WHERE payload IS NULL").fetchone()[0] == 2_000

    at = run_app(path)
    no_exception(at)
    assert [i.value for i in at.info] == ["The archive is being compacted by the collector (33% done); "
                                          "everything reads as usual meanwhile."]
    during = metrics(at)
    at.switch_page("views/deliveries.py").run()
    no_exception(at)
    listed_during = at.dataframe(key="deliveries_table").value

    archive.ensure_db_shape(conn)
    conn.close()
    st.cache_data.clear()  # every number below is read again, from the compacted archive
    at = run_app(path)
    no_exception(at)
    assert not at.info
    assert metrics(at) == during and during["Deliveries"][0] == "3,000"
    at.switch_page("views/deliveries.py").run()
    assert at.dataframe(key="deliveries_table").value.equals(listed_during)
