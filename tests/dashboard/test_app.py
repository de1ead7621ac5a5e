"""The dashboard in Streamlit's AppTest, page by page, on a seeded archive: the numbers a person reads."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from streamlit.testing.v1 import AppTest

from collectors import archive

from tests.seed import ALPHA, BETA, GAMMA, Seed


def metrics(at: AppTest) -> dict[str, tuple[str, str]]:
    return {m.label: (m.value, m.delta) for m in at.metric}


def table_with(at: AppTest, *columns: str, without: tuple[str, ...] = ()) -> pd.DataFrame:
    """The first table shown with all ``columns`` and none of ``without`` (display-only tables carry no key in AppTest)."""
    for frame in at.dataframe:
        value = frame.value
        if all(c in value.columns for c in columns) and not any(c in value.columns for c in without):
            return value
    raise AssertionError(f"no table with columns {columns}")


def trend_charts(at: AppTest) -> list[tuple[list[str], pd.DataFrame]]:
    """The Overview's trend charts as (the titles of its panels, top down; the data it draws)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    def titles(spec: dict) -> list[str]:
        return [layer["mark"]["text"] for layer in spec["layer"] if layer["mark"]["type"] == "text"]

    return [(titles(json.loads(c.proto.spec)), convert_arrow_bytes_to_pandas_df(c.proto.data.data))
            for c in at.get("vega_lite_chart")]


def read(markdown: str) -> str:
    """What a person reads of a Markdown element: its backslash escapes resolved (``wh\\_alpha`` reads ``wh_alpha``)."""
    return re.sub(r"\\([!-/:-@[-`{-~])", r"\1", markdown)


def open_tab(at: AppTest, label: str) -> AppTest:
    """Open one of the Overview's tabs (Trends, Failures, Webhook health) as a click on it does, and run."""
    at.session_state["tab"] = label
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def everything_shown(at: AppTest) -> str:
    """All text an AppTest run rendered: markdown, captions, alerts, code, tables, metrics."""
    parts: list[Any] = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "code", "metric", "subheader", "title"):
        parts.extend(str(getattr(e, "value", "")) for e in at.get(kind))
    parts.extend(df.value.to_csv() for df in at.dataframe)
    parts.extend(str(t.value) for t in at.table)
    return "\n".join(parts)


def test_no_archive_is_one_clear_line(run_app, tmp_path: Path) -> None:
    at = run_app(tmp_path / "nowhere.db")
    no_exception(at)
    assert [e.value for e in at.error] == [f"no archive at {tmp_path / 'nowhere.db'}: run 'moego-monitor collect' first"]
    assert not at.metric


def test_an_uninitialised_archive_is_one_clear_line(run_app, tmp_path: Path) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    at = run_app(tmp_path / "empty.db")
    no_exception(at)
    assert len(at.error) == 1 and "is not ready (schema 0" in at.error[0].value


def test_a_corrupt_archive_is_one_clear_line(run_app, tmp_path: Path) -> None:
    (tmp_path / "corrupt.db").write_bytes(b"not an archive at all " * 100)
    at = run_app(tmp_path / "corrupt.db")
    no_exception(at)
    assert [e.value for e in at.error] == [f"{tmp_path / 'corrupt.db'} is not a moego-monitor archive (file is not a "
                                           "database): point --db or MOEGO_MONITOR_DB at the archive"]
    assert not at.metric


def test_an_empty_archive_reads_as_zero(run_app, tmp_path: Path) -> None:
    archive.ensure_db_shape(archive.connect(tmp_path / "fresh.db"))
    at = run_app(tmp_path / "fresh.db")
    no_exception(at)
    shown = metrics(at)
    assert shown["Deliveries"] == ("0", "no archive for the previous 24 h") and shown["Success rate"][0] == "—" and shown["Latency p95"][0] == "—"
    at = open_tab(at, "Failures")
    assert any(s.value == "No failed deliveries in this view." for s in at.success)
    at.switch_page("views/deliveries.py").run()
    no_exception(at)
    assert metrics(at)["Deliveries in view"][0] == "0" and at.dataframe(key="deliveries_table").value.empty


def test_overview_tiles_charts_and_health(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path)
    no_exception(at)
    shown = metrics(at)
    assert shown["Deliveries"] == ("53", "+33")
    assert shown["Success rate"] == ("73.58%", "-26.42 pp")
    assert shown["Failures"] == ("14", "+14")
    assert shown["Redeliveries"] == ("1", "+1")
    assert shown["At risk of expiry (48 h)"][1] == "108 h not archived"
    assert int(shown["At risk of expiry (48 h)"][0]) > 0
    assert shown["Latency p99"][0].endswith(" s")
    # Volume, success rate and latency per hour: the tiles' numbers, bucket by bucket (Vega-Lite, no plotly).
    drawn = trend_charts(at)  # one chart, its three panels bands of one plot over one time axis
    assert [titles for titles, _ in drawn] == [["Deliveries per hour", "Success rate per hour",
                                                "Latency percentiles per hour"]]
    per_hour = drawn[0][1]
    assert (per_hour["deliveries"].sum(), per_hour["failed"].sum(), per_hour["succeeded"].sum()) == (53, 14, 39)
    assert not at.get("plotly_chart")
    # Only the open tab is drawn: the first view holds no data grid (the failures and health tabs run on a click).
    assert [t.label for t in at.tabs] == ["Trends", "Failures", "Webhook health"] and not at.dataframe
    assert any("expire within 48 hours" in w.value for w in at.warning)
    at = open_tab(at, "Failures")
    no_exception(at)
    assert not trend_charts(at) and metrics(at)["Failures"] == ("14", "+14")  # the tiles stay above every tab
    by_hook = table_with(at, "webhook_id", "failures", without=("state",))
    assert dict(zip(by_hook["webhook_id"], by_hook["failures"])) == {  # labelled by endpoint, the id beside it
        f"receiver.example/{ALPHA} ({ALPHA})": 6, f"receiver.example/{BETA} ({BETA})": 8}
    by_status = table_with(at, "status", "failures")
    assert by_status["failures"].sum() == 14 and "no response" in set(by_status["status"])
    assert table_with(at, "error_class", "failures")["failures"].sum() == 14
    at = open_tab(at, "Webhook health")
    no_exception(at)
    health = table_with(at, "webhook_id", "state", "consecutive_failures").set_index("webhook_id")
    assert health.loc[BETA, "state"] == "failing" and health.loc[ALPHA, "state"] == "degraded"
    assert health.loc[GAMMA, "state"] == "inactive" and health.loc[BETA, "consecutive_failures"] == 8
    # A webhook without deliveries has no rate and no p95: missing values read as the dash, not Streamlit's "None".
    assert pd.isna(health.loc[GAMMA, "success_rate"]) and pd.isna(health.loc[GAMMA, "p95_ms"])
    assert [t.proto.placeholder for t in at.dataframe] == ["—"]
    # Each state is its word on its colour (failing red, degraded orange ...), drawn by the column, not a Styler.
    shown = next(t for t in at.dataframe if "state" in t.value.columns)
    labels = json.loads(shown.proto.columns)["state"]["type_config"]["options"]
    assert {o["value"]: o["color"] for o in labels} == {"failing": "#c62828", "degraded": "#ef6c00",
                                                        "healthy": "#2e7d32", "inactive": "#757575"}
    assert not shown.proto.arrow_data.styler.styles


def test_a_link_opens_an_overview_tab(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, query={"tab": "Webhook health", "outcome": "failed"})
    no_exception(at)
    assert table_with(at, "webhook_id", "state").set_index("webhook_id").loc[BETA, "state"] == "failing"
    assert not trend_charts(at) and metrics(at)["Deliveries"][0] == "14"
    assert at.query_params["tab"] == "Webhook health" and at.query_params["outcome"] == "failed"


def test_outcome_filter_changes_the_numbers_and_the_url(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path)
    at.radio(key="filter_outcome").set_value("failed").run()
    no_exception(at)
    assert metrics(at)["Deliveries"][0] == "14"
    # A rate the filter fixes at 0% says so instead of showing "0.00%".
    assert metrics(at)["Success rate"] == ("n/a", "not meaningful: the Outcome filter shows failed deliveries only")
    assert at.query_params == {"outcome": "failed"}
    at.multiselect(key="filter_webhooks").set_value([BETA]).run()
    assert metrics(at)["Deliveries"][0] == "8"
    assert at.query_params == {"outcome": "failed", "webhook": BETA}


def test_a_filter_change_keeps_the_open_tab(run_app, live_seed: Seed) -> None:
    at = open_tab(run_app(live_seed.path), "Failures")
    at.radio(key="filter_outcome").set_value("failed").run()
    no_exception(at)
    assert not trend_charts(at) and table_with(at, "error_class", "failures")["failures"].sum() == 14
    at.multiselect(key="filter_webhooks").set_value([BETA]).run()
    assert table_with(at, "webhook_id", "failures")["failures"].sum() == 8 == int(metrics(at)["Failures"][0])


def test_health_in_a_view_of_failures_still_describes_each_webhook(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, query={"outcome": "failed", "tab": "Webhook health"})
    no_exception(at)
    assert metrics(at)["Success rate"][0] == "n/a"  # the view: failures only
    health = table_with(at, "webhook_id", "state", "consecutive_failures").set_index("webhook_id")
    assert health.loc[ALPHA, "state"] == "degraded" and round(health.loc[ALPHA, "success_rate"], 2) == 86.05
    assert health.loc[ALPHA, "deliveries"] == 43
    assert any(c.value.startswith("Health counts every delivery of the filtered webhooks") for c in at.caption)


def test_a_shared_link_opens_the_same_view(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, query={"outcome": "failed", "webhook": [ALPHA, BETA], "range": "7d"})
    no_exception(at)
    assert metrics(at)["Deliveries"][0] == "14"
    assert at.selectbox(key="filter_range").value == "7d"
    assert at.radio(key="filter_outcome").value == "failed"
    assert at.multiselect(key="filter_webhooks").value == [ALPHA, BETA]


def test_filters_follow_the_user_to_another_page(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path)
    at.radio(key="filter_outcome").set_value("failed").run()
    at.switch_page("views/deliveries.py").run()
    no_exception(at)
    assert metrics(at)["Deliveries in view"][0] == "14"
    assert at.query_params.get("outcome") == "failed"


def test_custom_dates_reach_back_past_moegos_retention(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, timezone_name="UTC")
    at.selectbox(key="filter_range").set_value("custom").run()
    first = (live_seed.now - timedelta(days=20, minutes=5)).date()  # the five old entries span 5 minutes
    last = (live_seed.now - timedelta(days=20)).date()
    at.date_input(key="filter_dates").set_value((first, last)).run()
    no_exception(at)
    assert metrics(at)["Deliveries"][0] == "5"  # only the archive still has these
    assert at.query_params["range"] == "custom"
    assert at.query_params["since"] == f"{first:%Y-%m-%d}T00:00:00Z"
    assert at.query_params["until"] == f"{last + timedelta(days=1):%Y-%m-%d}T00:00:00Z"


def test_a_link_with_absurd_dates_opens_the_clamped_range(run_app, live_seed: Seed) -> None:
    link = {"range": "custom", "since": "0001-01-01T00:00:00Z", "until": "9999-12-31T00:00:00Z"}
    at = run_app(live_seed.path, query=link, timezone_name="UTC")
    no_exception(at)
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert at.caption[0].value.startswith(f"2000-01-01 00:00:00 UTC → {tomorrow} ")
    assert any(c.value.startswith("The link's dates reach outside 2000-01-01 .. tomorrow: showing 2000-01-01 00:00 → "
                                  f"{tomorrow} ") for c in at.sidebar.caption)
    assert metrics(at)["Deliveries"][0] == "78"  # everything archived, the 20-day-old entries included
    assert at.query_params["since"] == "2000-01-01T00:00:00Z" and at.query_params["until"].startswith(tomorrow)
    at.switch_page("views/deliveries.py").run()
    no_exception(at)
    assert metrics(at)["Deliveries in view"][0] == "78"


def test_times_are_shown_in_the_browsers_zone(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, timezone_name="Asia/Tokyo")
    assert at.selectbox(key="filter_tz").value == "Asia/Tokyo"
    assert " JST → " in at.caption[0].value
    at.selectbox(key="filter_tz").set_value("UTC").run()
    assert " UTC → " in at.caption[0].value


def test_deliveries_page_lists_a_page_and_pages_on(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py")
    no_exception(at)
    assert metrics(at)["Deliveries in view"][0] == "53"
    table = at.dataframe(key="deliveries_table").value
    assert len(table) == 50 and table["id"].iloc[0] == "dlv_a01"
    assert at.button(key="page_prev").disabled and not at.button(key="page_next").disabled
    at.button(key="page_next").click().run()
    rest = at.dataframe(key="deliveries_table").value
    assert len(rest) == 3 and not set(rest["id"]) & set(table["id"])
    assert at.button(key="page_next").disabled
    assert at.download_button(key="export_csv") is not None


def test_search_box_finds_payload_text(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py")
    at.text_input(key="filter_search").set_value("Lovelace").run()
    assert metrics(at)["Deliveries in view"][0] == "1"
    assert list(at.dataframe(key="deliveries_table").value["id"]) == ["dlv_a07"]
    assert at.query_params.get("q") == "Lovelace"


def test_delivery_detail_redacts_and_pretty_prints(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_r2"})
    no_exception(at)
    shown = metrics(at)
    assert shown["Outcome"][0] == "Failed" and shown["Response"][0] == "HTTP 502" and shown["Retries"][0] == "0"
    text = everything_shown(at)
    assert "Delivery `dlv_r2`" in text
    assert "X-Moe-Signature-256,[redacted]" in text and "Set-Cookie,[redacted]" in text
    assert "c2lnbmF0dXJl" not in text and "session=abc" not in text
    assert '{\n  "id": "evt_retry",' in text  # JSON body, pretty-printed
    attempts = table_with(at, "Delivery id", "Automatic retries", "Open")
    assert list(attempts["Delivery id"]) == ["dlv_r1", "dlv_r2", "dlv_r3"]
    button = at.button(key="redeliver")
    assert button.disabled  # no API key configured
    at.button(key="close_detail").click().run()
    assert "delivery" not in at.query_params


def test_an_entry_moego_already_deleted_cannot_be_redelivered(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_old1"}, api_key="key")
    no_exception(at)
    button = at.button(key="redeliver")
    assert button.disabled and "MoeGo deletes its log entries after 15 days" in button.help
    assert ("Not redeliverable: expired upstream (older than 15 days). MoeGo has deleted this entry; only the archive "
            "has it.") in [c.value for c in at.caption]
    fresh = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_r2"}, api_key="key")
    assert not fresh.button(key="redeliver").disabled  # an entry MoeGo still holds can be


def test_unknown_delivery_link_says_so(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_nope"})
    no_exception(at)
    assert [w.value for w in at.warning] == ["No delivery `dlv_nope` in the archive."]


def test_archive_health_page(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/archive_health.py")
    no_exception(at)
    risks = [e.value for e in at.error]
    # Named by endpoint (Markdown-escaped: a label is never formatting), the id beside it.
    assert len(risks) == 3 and read(risks[0]).startswith("**receiver.example/wh_alpha** (wh_alpha): 12.0 h not archived")
    assert at.button(key="collect_now").disabled
    runs = table_with(at, "outcome", "trigger", "new_rows")
    assert list(runs["outcome"]) == ["ok", "failed"] and runs["error"].iloc[1].startswith("MoeGo is unavailable")
    gaps = table_with(at, "Webhook id", "Hours", "MoeGo deletes from")
    assert set(gaps["Webhook id"]) == {ALPHA, BETA, GAMMA}
    assert len(at.get("plotly_chart")) == 1


def test_webhooks_page_never_shows_secrets(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/webhooks.py")
    no_exception(at)
    table = table_with(at, "id", "endpoint_url", "secret").set_index("id")
    assert len(table.loc[ALPHA, "secret"]) == 8 and table.loc[BETA, "secret"] == "none"
    text = everything_shown(at)
    assert "s3cr3t-token-value" not in text and "very-secret-key" not in text
    assert "X-Api-Key,[redacted]" in text
    assert any("Set MOEGO_API_KEY" in i.value for i in at.info)
