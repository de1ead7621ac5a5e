"""A collector no server can hang, exhaust or fool (issue #11, items 3-8 and 13), against real loopback servers.

Hostile servers are :mod:`tests.collectors.hostile`; the clock-skew and retry-policy scenarios
run against the sandbox. Every test reads back what a user would look at: the archive's rows, the
run log, the ``status`` output, the command's output.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from collectors.cli import cli
from collectors.client import make_client
from collectors.config import Settings
from collectors.models import RetryPolicy, parse_timestamp
from collectors.archive.runs import collector_lock
from collectors.collect import collect
from tests.conftest import SandboxHandle, start_sandbox, stop_sandbox

from .conftest import db_rows, run_cli, sandbox_now, sandbox_settings
from .hostile import HostileRequest, HostileServer, entry, moego, send_head, send_json

KEY = "moego-live-key-0123456789"
B64 = base64.b64encode(KEY.encode()).decode()


def settings_for(url: str, db: Path, **changes) -> Settings:
    return Settings(api_key=KEY, base_url=url, db_path=db, timeout_s=10.0, **changes)


def window(request: HostileRequest) -> tuple[datetime, datetime]:
    interval = request.json()["filter"]["deliveryTime"]
    return parse_timestamp(interval["startTime"]), parse_timestamp(interval["endTime"])


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env={"MOEGO_API_KEY": None, "MOEGO_BASE_URL": None,
                                                    "MOEGO_SYNC_OVERLAP": None, **(env or {})})


# -- 3: the key echoed back --------------------------------------------------------------------------


def test_a_400_echoing_the_key_leaves_it_nowhere(tmp_path):
    def echo(request: HostileRequest, conn: socket.socket) -> None:
        send_json(conn, {"code": 3, "message": f"rejected header Authorization: {request.headers['authorization']}; "
                                                f"key={KEY}"}, 400)

    db = tmp_path / "a.db"
    with HostileServer(moego(echo)) as server:
        env = {"MOEGO_API_KEY": KEY, "MOEGO_BASE_URL": server.base_url}
        collected = run_cli("collect", "--db", str(db), timeout=60, **env)
        status = run_cli("status", "--db", str(db), timeout=60, **env)
        status_json = run_cli("status", "--json", "--db", str(db), timeout=60, **env)

    assert collected.returncode == 1
    assert "rejected header Authorization: Basic [redacted]; key=[redacted]" in collected.stderr
    stored = db_rows(db, "SELECT error FROM collector_runs") + db_rows(db, "SELECT last_error FROM sync_state")
    assert stored and all("[redacted]" in row[0] for row in stored)
    everything = [collected.stdout, collected.stderr, status.stdout, status.stderr, status_json.stdout,
                  status_json.stderr, *(row[0] for row in stored)]
    for text in everything:
        assert KEY not in text and B64 not in text and B64.rstrip("=") not in text
    assert "[redacted]" in status.stdout and "[redacted]" in status_json.stdout


# -- 4 and 13: answers too large or too deep ---------------------------------------------------------


def test_an_answer_nested_100000_levels_deep_fails_collect_in_one_line(tmp_path):
    def nested(request: HostileRequest, conn: socket.socket) -> None:
        send_json(conn, b'{"deliveries": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")

    with HostileServer(moego(nested)) as server:
        result = invoke("collect", "--api-key", KEY, "--base-url", server.base_url, "--db", str(tmp_path / "a.db"))

    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("Error: whk_1: MoeGo answered ListWebhookDeliveries with JSON "
                                                     "nested too deep")
    assert "Traceback" not in result.output


# -- 5: deadlines, budget, endless paging -----------------------------------------------------------


def test_a_pass_ends_at_its_budget_and_frees_the_lock(tmp_path):
    def silent(request: HostileRequest, conn: socket.socket) -> None:
        server.sleep(60)

    db = tmp_path / "a.db"
    with HostileServer(moego(silent)) as server:
        settings = settings_for(server.base_url, db, deadline_s=60.0, pass_budget=timedelta(seconds=1.5))
        began = time.monotonic()
        result = collect(settings)
        took = time.monotonic() - began
        with collector_lock(db):  # free at once: the next scheduled pass can run
            pass

    assert result.outcome == "interrupted"
    assert "used up its time budget (--budget, MOEGO_PASS_BUDGET)" in result.error
    assert took < 10
    assert db_rows(db, "SELECT outcome, error FROM collector_runs") == [("interrupted", result.error)]


def test_empty_pages_with_a_new_token_each_time_fail_the_webhook(tmp_path):
    asked = []

    def endless(request: HostileRequest, conn: socket.socket) -> None:
        asked.append(request.json())
        more = len(asked) < 200  # a collector without the guard reads 200 pages (the test's patience), not forever
        send_json(conn, {"nextPageToken": f"token-{len(asked)}"} if more else {})

    with HostileServer(moego(endless)) as server:
        result = collect(settings_for(server.base_url, tmp_path / "a.db"))

    assert result.outcome == "failed"
    assert "would never end" in result.error and "nothing of this page was saved" in result.error
    assert len(asked) < 20


def test_a_page_token_coming_back_fails_the_webhook(tmp_path):
    cycle = ["A", "B", "C"]  # never the same token twice in a row, yet a cycle
    calls = []

    def cycling(request: HostileRequest, conn: socket.socket) -> None:
        calls.append(1)
        send_json(conn, {"nextPageToken": cycle[(len(calls) - 1) % 3]} if len(calls) < 200 else {})

    with HostileServer(moego(cycling)) as server:
        result = collect(settings_for(server.base_url, tmp_path / "a.db"))

    assert result.outcome == "failed"
    assert "page token 'A' came back a second time" in result.error


def test_full_pages_without_end_fail_at_what_moegos_limits_allow(tmp_path):
    served = []

    def flood(request: HostileRequest, conn: socket.socket) -> None:
        start, end = window(request)
        step = (end - start) / 1000
        base = len(served) * 500
        page = [entry("whk_1", f"d{base + i}", start + step * ((base + i) % 1000)) for i in range(500)]
        served.append(len(page))
        send_json(conn, {"deliveries": page, "nextPageToken": f"t{len(served)}"} if len(served) < 100 else
                  {"deliveries": page})

    db = tmp_path / "a.db"
    with HostileServer(moego(flood)) as server:
        result = collect(settings_for(server.base_url, db))

    assert result.outcome == "failed"
    assert "more than MoeGo's limits allow" in result.error
    assert len(served) <= 12  # a 15-minute edge chunk: 2 x 100 pushes a minute x 16 minutes, in pages of 500
    archived = db_rows(db, "SELECT COUNT(*) FROM deliveries")[0][0]
    # Every page before the refused one, nothing of that one. Pages are read ahead of the writer
    # (collectors.prefetch: at most 2 waiting and 1 in flight), so up to 3 more were served, never saved.
    saved = archived // 500
    assert archived == saved * 500 and saved >= 1
    assert saved + 1 <= len(served) <= saved + 1 + 3


# -- 6: answers the contract rules out ---------------------------------------------------------------


def _one_page(make_entries) -> HostileServer:
    def page(request: HostileRequest, conn: socket.socket) -> None:
        start, end = window(request)
        send_json(conn, {"deliveries": make_entries(request, start, end)})

    return HostileServer(moego(page))


@pytest.mark.parametrize("case, problem", [
    ("far future", "is dated 9999-12-31T00:00:00.000000Z, outside the requested"),
    ("before start", "outside the requested"),
    ("other webhook", "is listed for webhook 'whk_1' but says it belongs to 'whk_9'"),
    ("too many", "600 entries on one page when at most 500 were asked"),
])
def test_a_page_the_contract_rules_out_is_refused_whole(tmp_path, case, problem):
    def entries(request, start, end):
        good = [entry("whk_1", f"good-{i}", start + (end - start) / 10 * i) for i in range(5)]
        if case == "far future":
            return good + [entry("whk_1", "bad", datetime(9999, 12, 31, tzinfo=timezone.utc))]
        if case == "before start":
            return good + [entry("whk_1", "bad", start - timedelta(microseconds=1))]
        if case == "other webhook":
            return good + [entry("whk_9", "bad", start)]
        return [entry("whk_1", f"many-{i}", start) for i in range(600)]

    db = tmp_path / "a.db"
    with _one_page(entries) as server:
        result = collect(settings_for(server.base_url, db))

    assert result.outcome == "failed"
    assert problem in result.error and "nothing of this page was saved" in result.error
    assert db_rows(db, "SELECT COUNT(*) FROM deliveries") == [(0,)]
    assert db_rows(db, "SELECT COUNT(*) FROM coverage") == [(0,)]
    (last_error,) = db_rows(db, "SELECT last_error FROM sync_state WHERE webhook_id = 'whk_1'")[0]
    assert problem in last_error


@pytest.mark.parametrize("concurrency", [1, 4])
def test_one_id_listed_under_two_webhooks_stays_with_the_first(tmp_path, concurrency):
    hooks = [{"id": w, "endpointUrl": f"https://receiver.example/{w}", "isActive": True} for w in ("whk_1", "whk_2")]

    def page(request: HostileRequest, conn: socket.socket) -> None:
        asked = request.json()["webhookId"]
        start, _ = window(request)
        send_json(conn, {"deliveries": [entry(asked, "shared-id", start), entry(asked, f"own-{asked}", start)]})

    db = tmp_path / "a.db"
    with HostileServer(moego(page, webhooks=hooks)) as server:
        result = collect(settings_for(server.base_url, db, concurrency=concurrency))

    # One at a time, whk_1 goes first (ties by id); read at once, whichever page is committed first keeps the id.
    [first] = [r.webhook_id for r in result.webhooks if r.outcome == "ok"]
    [second] = [r for r in result.webhooks if r.outcome == "failed"]
    if concurrency == 1:
        assert first == "whk_1"
    assert (f"delivery 'shared-id' is listed for webhook '{second.webhook_id}' but is archived under '{first}'"
            in second.error)
    assert db_rows(db, "SELECT id, webhook_id FROM deliveries ORDER BY id") == [
        (f"own-{first}", first), ("shared-id", first)]


# -- 7: clock skew ----------------------------------------------------------------------------------


def test_a_moego_clock_10_minutes_ahead_is_measured_corrected_recorded_and_warned(tmp_path):
    skew = timedelta(minutes=10)
    asked: list[tuple[datetime, datetime]] = []

    def page(request: HostileRequest, conn: socket.socket) -> None:
        asked.append(window(request))
        send_json(conn, {}, date=datetime.now(timezone.utc) + skew)

    db = tmp_path / "a.db"
    with HostileServer(moego(page, date=lambda: datetime.now(timezone.utc) + skew)) as server:
        result = collect(settings_for(server.base_url, db))
        status = invoke("status", "--db", str(db))
        status_json = invoke("status", "--json", "--db", str(db))

    assert result.ok
    assert abs(result.clock_skew.total_seconds() - 600) < 3
    moego_now = datetime.now(timezone.utc) + skew
    assert abs((max(end for _, end in asked) - moego_now).total_seconds()) < 5  # the window ends at MoeGo's now
    (recorded,) = db_rows(db, "SELECT clock_skew_s FROM collector_runs")[0]
    assert abs(recorded - 600) < 3
    assert "CLOCK: this host's clock is 10 min behind MoeGo's: the collector corrects its windows by it" in status.output
    assert "10 min behind" in json.loads(status_json.output)["clockWarning"]


@pytest.mark.parametrize("date, recorded, line", [
    ("Fri, 31 Dec 9999 23:59:59 GMT", True, "cannot correct a skew this large"),
    ("not a date at all", False, None),
    ("Mon, 01 Jan 0001 00:00:00 GMT", True, "cannot correct a skew this large"),
])
def test_an_absurd_or_broken_date_header_changes_no_window(tmp_path, date, recorded, line):
    asked: list[tuple[datetime, datetime]] = []

    def respond(request: HostileRequest, conn: socket.socket) -> None:
        if "deliveries" in request.path:
            asked.append(window(request))
        body = b'{"webhooks": [{"id": "whk_1", "isActive": true}]}' if "webhooks:list" in request.path else b"{}"
        send_head(conn, 200, {"Content-Type": "application/json", "Content-Length": str(len(body)), "Date": date})
        conn.sendall(body)

    db = tmp_path / "a.db"
    with HostileServer(respond) as server:
        result = collect(settings_for(server.base_url, db))
    status = invoke("status", "--db", str(db))

    assert result.ok
    assert abs((max(end for _, end in asked) - datetime.now(timezone.utc)).total_seconds()) < 5  # this host's time
    assert (result.clock_skew is not None) == recorded
    assert "Traceback" not in status.output
    if line:
        assert line in status.output
    else:
        assert "CLOCK" not in status.output


def test_no_warning_when_the_clocks_agree(tmp_path):
    db = tmp_path / "a.db"
    with HostileServer(moego(lambda request, conn: send_json(conn, {}))) as server:
        result = collect(settings_for(server.base_url, db))
    status = invoke("status", "--db", str(db))

    assert abs(result.clock_skew.total_seconds()) < 3
    assert "CLOCK" not in status.output


@pytest.fixture()
def quiet_sandbox() -> Iterator[SandboxHandle]:
    handle = start_sandbox("--history-days", "1")
    try:
        yield handle
    finally:
        stop_sandbox(handle)


def test_a_host_10_minutes_ahead_loses_nothing_with_overlap_0(quiet_sandbox, tmp_path):
    db = tmp_path / "a.db"
    settings = sandbox_settings(quiet_sandbox, db, overlap=timedelta(0))
    with make_client(settings) as client:
        hook = next(w for w in client.list_webhooks() if w.is_active)
    ahead = timedelta(minutes=10)

    first = collect(settings, now=sandbox_now(quiet_sandbox) + ahead)
    assert first.ok and abs(first.clock_skew.total_seconds() + 600) < 3
    time.sleep(1.0)
    before = {r[0] for r in db_rows(db, "SELECT id FROM deliveries WHERE webhook_id = ?", hook.id)}
    assert quiet_sandbox.generate(hook.id, 20, spread_seconds=0.5)["generated"] == 20  # logged after the first pass
    time.sleep(2.0)  # older than the Date header's one-second resolution when the second pass reads
    second = collect(settings, now=sandbox_now(quiet_sandbox) + ahead)

    assert second.ok
    archived = {r[0] for r in db_rows(db, "SELECT id FROM deliveries WHERE webhook_id = ?", hook.id)}
    with make_client(settings) as client:
        upstream = {d.id for d in client.list_deliveries(hook.id)}
    assert len(upstream - before) == 20
    assert upstream <= archived, f"{len(upstream - archived)} entries lost"


# -- 8: the re-read span from the retry policy -------------------------------------------------------


def test_an_entry_retried_6_hours_later_is_updated_by_the_next_pass(quiet_sandbox, tmp_path):
    db = tmp_path / "a.db"
    settings = sandbox_settings(quiet_sandbox, db)  # --overlap at its default, 1 h
    hourly = RetryPolicy(max_retries=3, initial_interval_ms=3_600_000, backoff_factor=2,
                         retryable_http_codes=[500, 503])  # retries 1 h, 2 h and 4 h after: final after ~7 h
    with make_client(settings) as client:
        hook = client.create_webhook("https://receiver.example/slow-retries", ["APPOINTMENT_CREATED"],
                                     retry_policy=hourly, is_active=False)
    quiet_sandbox.generate(hook.id, 40, fail_rate=1.0, spread_seconds=8 * 3600)
    assert collect(settings).ok
    now = sandbox_now(quiet_sandbox)
    rows = db_rows(db, "SELECT id, delivered_at FROM deliveries WHERE webhook_id = ? ORDER BY delivered_at", hook.id)
    target = next(i for i, at in rows if timedelta(hours=5) < now - parse_timestamp(at) < timedelta(hours=7))
    with quiet_sandbox.client() as raw:
        raw.post("/_sandbox/deliveries:mutate",
                 json={"id": target, "success": True, "responseStatus": 200, "retryCount": 3, "error": ""}
                 ).raise_for_status()

    assert collect(settings).ok

    assert db_rows(db, "SELECT success, response_status, retry_count FROM deliveries WHERE id = ?", target) == [
        (1, 200, 3)]


# -- 13: no tracebacks, one rule for flags and environment -------------------------------------------


@pytest.mark.parametrize("args, env, expected", [
    ((), {"MOEGO_SYNC_OVERLAP": "99999999999d"}, "Error: duration too long: '99999999999d'"),
    ((), {"MOEGO_BASE_URL": "http://[::1"}, "Error: MoeGo base URL is not a valid URL: 'http://[::1'"),
    ((), {"MOEGO_BASE_URL": "http://host:99999"}, "Error: MoeGo base URL is not a valid URL"),
    ((), {"MOEGO_DEADLINE": "0s"}, "Error: the call deadline (--deadline, MOEGO_DEADLINE) must be between 1s and 1h"),
    (("--budget", "10d"), {}, "Error: the pass budget (--budget, MOEGO_PASS_BUDGET) must be between 1m and 1d"),
    ((), {"MOEGO_CONCURRENCY": "0"}, "Error: the concurrency (--concurrency, MOEGO_CONCURRENCY) must be between 1 and 10, got 0"),
    (("--concurrency", "11"), {}, "Error: the concurrency (--concurrency, MOEGO_CONCURRENCY) must be between 1 and 10, got 11"),
    (("--concurrency", "four"), {}, "Error: the concurrency (--concurrency, MOEGO_CONCURRENCY) must be a whole number 1..10, got 'four'"),
])
def test_bad_settings_are_one_line_without_traceback(tmp_path, args, env, expected):
    result = invoke("collect", "--api-key", KEY, "--db", str(tmp_path / "a.db"), *args, env=env)

    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [result.output.strip()]
    assert result.output.startswith(expected)
    assert not (tmp_path / "a.db").exists()


def test_a_chunk_too_long_for_a_timedelta_is_a_usage_error_not_a_traceback(tmp_path):
    result = invoke("collect", "--api-key", KEY, "--db", str(tmp_path / "a.db"), "--chunk", "99999999999d")

    assert result.exit_code == 2
    assert "Error: Invalid value for '--chunk': duration too long: '99999999999d'" in result.output
    assert isinstance(result.exception, SystemExit)


def test_overlap_from_the_environment_and_from_the_flag_follow_one_rule(tmp_path):
    from_env = invoke("collect", "--api-key", KEY, "--db", str(tmp_path / "a.db"), env={"MOEGO_SYNC_OVERLAP": "30d"})
    from_flag = invoke("collect", "--api-key", KEY, "--db", str(tmp_path / "a.db"), "--overlap", "30d")

    assert from_env.exit_code == from_flag.exit_code == 1
    assert from_env.output == from_flag.output == (
        "Error: the overlap (--overlap, MOEGO_SYNC_OVERLAP) must be between 0s and 2d, got 30d\n")


def test_the_process_prints_no_traceback_for_a_bad_base_url(tmp_path):
    result = run_cli("status", "--db", str(tmp_path / "a.db"), MOEGO_BASE_URL="http://[::1")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Error: MoeGo base URL is not a valid URL")
