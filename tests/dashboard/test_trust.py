"""Issue #7, "trust at the fix step", at the level a user sees it (AppTest on the seeded archive).

The list shows the failure first; the detail's tables read as words; webhooks are named by endpoint or
a short name everywhere, the CSV included; tiles a filter fixes say so; a comparison with time before the
archive says there is none; Archive health names spans as ``moego-monitor status`` does, the pending tail
as pending. Actions against a real sandbox are in ``test_trust_actions.py``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

from collectors import archive
from collectors.archive.status import archive_status
from collectors.archive.filters import Filters
from dashboard import reads
from tests.seed import ALPHA, BETA, GAMMA, Seed

from .test_app import metrics, no_exception, table_with


def unescaped(markdown: str) -> str:
    """Markdown text as it renders: backslash escapes gone, bold markers dropped."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("**", "")


# -- 7. the list shows the failure ------------------------------------------------------------------


def test_the_list_starts_with_outcome_status_and_error(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py")
    no_exception(at)
    table = at.dataframe(key="deliveries_table")
    # The first columns, those in view at 1440 px: when, the outcome badge, the status, the error.
    assert list(table.proto.column_order)[:5] == ["when", "outcome", "status", "error", "webhook"]
    config = json.loads(table.proto.columns)
    assert config["when"]["type_config"]["format"] == "distance" and config["delivered_at"]["label"] == "Delivered at"
    rows = table.value.set_index("id")
    assert rows.loc["dlv_a01", "outcome"] == "Failed" and rows.loc["dlv_a05", "outcome"] == "OK"
    assert rows.loc["dlv_a01", "status"] == "—" and rows.loc["dlv_a03", "status"] == "404"
    assert rows.loc["dlv_a01", "error"] == "context deadline exceeded (Client.Timeout exceeded)"
    assert rows.loc["dlv_b01", "webhook"] == "receiver.example/wh_beta"
    # The badge is the word on its colour: red for a failure, green for OK, drawn by the column (no Styler: the
    # cells are the words themselves, and no CSS travels with the table).
    assert config["outcome"]["type_config"]["options"] == [{"value": "OK", "color": "#2e7d32"},
                                                           {"value": "Failed", "color": "#c62828"}]
    assert not table.proto.arrow_data.styler.styles and set(rows["outcome"]) == {"OK", "Failed"}


def test_one_row_is_one_row(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py")
    at.text_input(key="filter_search").set_value("Lovelace").run()
    assert any(c.value.startswith("Page 1 · 1 row shown of 1.") for c in at.caption)


# -- 8. the detail's tables read as words -----------------------------------------------------------


def test_detail_tables_have_headers_words_and_dashes(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_a03"})
    no_exception(at)
    headers = [list(frame.value.columns) for frame in at.dataframe]
    raw = {"webhook_id", "new_success", "new_status", "batch_id", "requested_by", "value", "header", ""}
    detail_tables = headers[1:]  # the list itself keeps short column keys, labelled by its column config
    assert not raw & {c for columns in detail_tables for c in columns}, detail_tables
    facts = table_with(at, "Field", "Value").set_index("Field")["Value"]
    assert facts["Webhook"] == f"receiver.example/wh_alpha ({ALPHA})" and facts["Error"] == "endpoint answered 404"
    audit = table_with(at, "Requested at", "New attempt")
    assert audit.iloc[0][["Request", "New attempt", "New status", "New attempt id", "Error", "By", "Bulk batch"]].tolist() \
        == ["sent by MoeGo", "succeeded", "HTTP 200", "dlv_new", "—", "dashboard", "—"]
    assert "None" not in audit.to_csv()


def test_an_attempt_without_a_response_shows_a_dash_not_zero(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_a01"})
    no_exception(at)
    attempts = table_with(at, "Delivery id", "Status", "Outcome")
    assert attempts.set_index("Delivery id").loc["dlv_a01", ["Status", "Outcome"]].tolist() == ["—", "failed"]


# -- 9. webhooks by endpoint, or by the short name a person gives ------------------------------------


def test_a_short_name_is_used_on_every_page_and_in_the_csv(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/webhooks.py")
    no_exception(at)
    assert at.selectbox(key="name_webhook").options[0] == f"receiver.example/wh_alpha ({ALPHA})"
    at.selectbox(key="name_webhook").set_value(ALPHA)
    at.text_input(key="name_text").set_value("  Orders   ERP ")
    at.button(key="save_name").click().run()
    no_exception(at)
    assert [unescaped(s.value) for s in at.success] == [f"{ALPHA} is now shown as “Orders ERP”."]
    assert table_with(at, "name", "id").set_index("id").loc[ALPHA, "name"] == "Orders ERP"
    # The sidebar filter, the list, the overview's health table and the CSV all say "Orders ERP".
    assert f"Orders ERP ({ALPHA})" in at.multiselect(key="filter_webhooks").options
    at.switch_page("views/deliveries.py").run()
    no_exception(at)
    assert "Orders ERP" in set(at.dataframe(key="deliveries_table").value["webhook"])
    at.switch_page("views/overview.py").run()
    at.session_state["tab"] = "Webhook health"
    at.run()
    assert table_with(at, "webhook", "state").set_index("webhook_id").loc[ALPHA, "webhook"] == "Orders ERP"
    data = reads.csv_bytes(str(live_seed.path), Filters(time_range="24h"), live_seed.now, ())
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert list(rows[0])[-1] == "webhook_name"
    assert {r["webhook_name"] for r in rows if r["webhook_id"] == ALPHA} == {"Orders ERP"}
    assert {r["webhook_name"] for r in rows if r["webhook_id"] == BETA} == {""}


def test_a_name_is_text_never_markup_and_is_bounded(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/webhooks.py")
    at.selectbox(key="name_webhook").set_value(BETA)
    at.text_input(key="name_text").set_value("**x** :red[y]")
    at.button(key="save_name").click().run()
    no_exception(at)
    at.switch_page("views/archive_health.py").run()
    # Shown as typed: the Markdown is escaped, so it renders as the literal characters.
    [beta_risk] = [e.value for e in at.error if f"({BETA.replace('_', chr(92) + '_')})" in e.value]
    assert beta_risk.startswith(r"**\*\*x\*\* \:red\[y\]**")
    at.switch_page("views/webhooks.py").run()
    at.selectbox(key="name_webhook").set_value(BETA)
    at.text_input(key="name_text").set_value("\x1b[31mred")
    at.button(key="save_name").click().run()
    assert [unescaped(e.value) for e in at.error] == ["Not saved: a short name cannot hold control or invisible characters."]


# -- 10. numbers that mean nothing say so ------------------------------------------------------------


def test_a_rate_the_filter_fixes_says_so_and_draws_no_flat_line(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, query={"outcome": "failed"})
    no_exception(at)
    assert metrics(at)["Success rate"] == ("n/a", "not meaningful: the Outcome filter shows failed deliveries only")
    assert any(i.value.startswith("Success rate over time: not shown") for i in at.info)
    at = run_app(live_seed.path, query={"outcome": "success"})
    assert metrics(at)["Failures"] == ("n/a", "not meaningful: the Outcome filter shows successful deliveries only")


def test_no_comparison_with_a_period_before_the_archive(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, query={"range": "30d"}, timezone_name="UTC")
    no_exception(at)
    shown = metrics(at)
    # The archive's first data is 20 days old: the 30 days before this window were never archived.
    assert shown["Deliveries"] == ("78", "no archive for the previous 30 days")
    assert shown["Failures"][1] == "no archive for the previous 30 days"
    first = archive.connect(live_seed.path, readonly=True).execute("SELECT MIN(hour) FROM delivery_hourly").fetchone()[0]
    assert any(c.value.startswith(f"No comparison with the previous 30 days: the archive holds data from "
                                  f"{first.replace('T', ' ')}:00:00 UTC on.") for c in at.caption)
    # A day compares with the day before, which the archive holds.
    assert metrics(run_app(live_seed.path))["Deliveries"] == ("53", "+33")


# -- 11, 12. one read model; the pending tail is pending ---------------------------------------------


def test_archive_health_names_spans_as_status_does_and_lists_no_pending_tail_as_a_gap(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/archive_health.py", timezone_name="UTC")
    no_exception(at)
    gaps = table_with(at, "Webhook id", "Gap from", "State")
    assert set(gaps["State"]) <= {"missing: still collectable", "deleted by MoeGo"}
    # wh_alpha and wh_beta were collected an hour ago: that hour is pending, said once, not listed as a gap.
    tails = [c.value for c in at.caption if "pending since" in c.value]
    assert [unescaped(t).split(":")[0] for t in tails] == [f"receiver.example/wh_{x} (wh_{x})" for x in ("alpha", "beta")]
    assert all(t.endswith("archived by the next collection.") for t in tails)
    recent = gaps[gaps["Gap from"] >= live_seed.now - timedelta(hours=2)]
    assert set(recent["Webhook id"]) <= {GAMMA}  # only the never-collected webhook has a recent gap
    # moego-monitor status reads the same spans the same way (one rule: classify_gaps).
    with archive.open_archive(live_seed.path, readonly=True) as conn:
        status = {w.webhook_id: w for w in archive_status(conn, live_seed.now).webhooks}
    assert status[ALPHA].pending_since is not None and status[BETA].pending_since is not None
    assert status[GAMMA].pending_since is None and status[GAMMA].gaps  # never collected: a gap, in both
    gamma = gaps[(gaps["Webhook id"] == GAMMA) & (gaps["State"] == "missing: still collectable")]
    assert len(gamma) == 1 and abs(gamma.iloc[0]["Gap from"] - status[GAMMA].gaps[0].start) < timedelta(minutes=2)


# -- beyond: saved views ------------------------------------------------------------------------------


def test_a_saved_view_is_kept_in_the_archive_and_picked_from_the_sidebar(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, query={"outcome": "failed", "webhook": BETA, "range": "7d"})
    assert metrics(at)["Deliveries"][0] == "8"
    at.sidebar.text_input(key="view_name").set_value("Beta failures")
    at.sidebar.button(key="save_view").click().run()
    no_exception(at)
    assert [unescaped(s.value) for s in at.sidebar.success] == ["Saved the view “Beta failures”."]
    # A new session (another person, another day) finds it in the sidebar, and picking it applies it.
    other = run_app(live_seed.path)
    assert metrics(other)["Deliveries"][0] == "53"
    assert other.sidebar.selectbox(key="saved_view").options == ["—", "Beta failures"]
    other.sidebar.selectbox(key="saved_view").set_value("Beta failures").run()
    no_exception(other)
    assert metrics(other)["Deliveries"][0] == "8"
    assert other.query_params == {"outcome": ["failed"], "webhook": [BETA], "range": ["7d"]} or \
        dict(other.query_params) == {"outcome": "failed", "webhook": BETA, "range": "7d"}
    assert other.radio(key="filter_outcome").value == "failed" and other.selectbox(key="filter_range").value == "7d"
    # Deleting it leaves the picker empty; a nameless view is refused in one line.
    other.sidebar.button(key="delete_view").click().run()
    assert other.sidebar.selectbox(key="saved_view").options == ["—"]
    other.sidebar.button(key="save_view").click().run()
    assert [unescaped(e.value) for e in other.sidebar.error] == ["Not saved: give the view a name."]


# -- beyond: live tail --------------------------------------------------------------------------------


def test_the_live_tail_brings_in_new_entries_marked_new(run_app, live_seed: Seed) -> None:
    from datetime import datetime, timezone

    from collectors.archive import writer
    from tests.seed import delivery

    at = run_app(live_seed.path, page="views/deliveries.py", query={"webhook": BETA})
    at.toggle(key="live_tail").set_value(True).run()
    no_exception(at)
    assert any(c.value.startswith("Live since ") and ": 0 new entries in this view" in c.value for c in at.caption)
    # The collector archives two entries: one of this view's webhook, one of another.
    now = datetime.now(timezone.utc)
    conn = archive.connect(live_seed.path)
    with archive.transaction(conn):
        writer.save_deliveries(conn, [delivery("dlv_live_b", BETA, now - timedelta(seconds=30), success=False,
                                               status=503, error="endpoint answered 503"),
                                      delivery("dlv_live_a", ALPHA, now - timedelta(seconds=20))], seen_at=now)
    conn.close()
    at.run()
    no_exception(at)
    tail = table_with(at, "new", "archived", "outcome")
    assert list(tail["id"]) == ["dlv_live_b"]  # the view's filters hold: wh_alpha's entry is not in it
    assert tail.iloc[0][["new", "outcome", "status", "error"]].tolist() == ["NEW", "Failed", "503", "endpoint answered 503"]
    # "NEW" on blue, the outcome on its colour: labels drawn by the columns, not a Styler.
    shown = next(d for d in at.dataframe if "archived" in d.value.columns)
    config = json.loads(shown.proto.columns)
    assert config["new"]["type_config"]["options"] == [{"value": "NEW", "color": "#1565c0"}]
    assert config["outcome"]["type_config"]["options"][1] == {"value": "Failed", "color": "#c62828"}
    assert not shown.proto.arrow_data.styler.styles
    assert any(": 1 new entry in this view" in c.value for c in at.caption)
    at.toggle(key="live_tail").set_value(False).run()
    assert not [d for d in at.dataframe if "archived" in d.value.columns]


# -- beyond: one event, all its attempts ----------------------------------------------------------------


def test_the_event_timeline_names_each_entry_and_predicts_the_next_retry(run_app, live_seed: Seed) -> None:
    from collectors.archive import writer
    from collectors.models import format_timestamp
    from tests.seed import delivery

    conn = archive.connect(live_seed.path)
    redelivered = delivery("dlv_re1", ALPHA, live_seed.now - timedelta(minutes=3), success=False, status=503,
                           event_id="evt_retry", error="endpoint answered 503", retry_count=1)
    with archive.transaction(conn):
        writer.save_deliveries(conn, [redelivered], seen_at=live_seed.now)
        conn.execute("INSERT INTO redeliveries (requested_at, delivery_id, webhook_id, event_id, outcome, "
                     "new_delivery_id, new_success, new_status, requested_by) VALUES (?, 'dlv_r2', ?, 'evt_retry', "
                     "'sent', 'dlv_re1', 0, 503, 'alice')", (format_timestamp(live_seed.now), ALPHA))
        conn.execute("UPDATE webhooks SET retry_policy = ? WHERE id = ?",
                     (json.dumps({"maxRetries": 3, "initialIntervalMs": 600000, "backoffFactor": 2}), ALPHA))
    conn.close()
    at = run_app(live_seed.path, page="views/deliveries.py", query={"delivery": "dlv_r2"}, timezone_name="UTC")
    no_exception(at)
    attempts = table_with(at, "Entry", "Automatic retries", "Delivery id")
    assert list(zip(attempts["Delivery id"], attempts["Entry"])) == [
        ("dlv_r1", "original"), ("dlv_r2", "later entry"), ("dlv_r3", "later entry"),
        ("dlv_re1", "redelivery (by alice)")]
    # The latest entry made one automatic retry (after 10 min); the next waits 20 more: 30 min after it began.
    expected_at = (redelivered.delivered_at + timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M:%S UTC")
    [line] = [unescaped(c.value) for c in at.caption if c.value.startswith("Next at ")]
    assert line == f"Next at receiver.example/wh_alpha (dlv_re1) {expected_at}: retry 2 of 3 expected about then."


def test_the_webhooks_page_reads_webhooks_with_and_without_a_retry_policy(run_app, live_seed: Seed) -> None:
    conn = archive.connect(live_seed.path)
    with archive.transaction(conn):
        conn.execute("UPDATE webhooks SET retry_policy = ? WHERE id = ?", (json.dumps({"maxRetries": 2}), ALPHA))
        conn.execute("UPDATE webhooks SET retry_policy = NULL WHERE id = ?", (BETA,))
    conn.close()
    at = run_app(live_seed.path, page="views/webhooks.py")
    no_exception(at)  # a NULL policy beside a stored one used to break the page (json.loads of NaN)
    assert [json.loads(j.value) for j in at.json][:2] == [{"maxRetries": 2}, {}]  # alpha's policy, beta's none


# -- beyond: an exact HTTP status --------------------------------------------------------------------------


def test_filter_by_exact_status(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py")
    at.text_input(key="filter_codes").set_value("404, 0 abc").run()
    no_exception(at)
    assert metrics(at)["Deliveries in view"][0] == "2"
    assert set(at.dataframe(key="deliveries_table").value["id"]) == {"dlv_a01", "dlv_a03"}
    assert sorted(at.query_params["code"]) == ["0", "404"]  # the view is a link
    assert any(c.value == "Not a status, ignored: abc (use 0 or 100..599)." for c in at.sidebar.caption)
    data = reads.csv_bytes(str(live_seed.path), Filters(time_range="24h", status_codes=(0, 404)), live_seed.now, ())
    assert sorted(r["id"] for r in csv.DictReader(io.StringIO(data.decode("utf-8")))) == ["dlv_a01", "dlv_a03"]
    # A link carries it, and the overview's rate says the filter fixes it.
    linked = run_app(live_seed.path, query={"code": ["502"]})
    assert metrics(linked)["Deliveries"][0] == "2"  # dlv_r1, dlv_r2
    assert metrics(linked)["Success rate"] == ("n/a", "not meaningful: the Exact status filter leaves out every 2xx answer")


def test_the_search_words_are_marked_in_the_body(run_app, live_seed: Seed) -> None:
    at = run_app(live_seed.path, page="views/deliveries.py", query={"q": "lovelace", "delivery": "dlv_a07"})
    no_exception(at)
    [line] = [m.value for m in at.markdown if ":orange-background[" in m.value]
    # The word is marked where it is (case as in the body), everything else literal.
    assert line == 'line 5: "customer"\\: "Ada :orange-background[Lovelace]"'
