"""The collector's commands through click's CliRunner: help, one-line failures and resume, status and AT RISK."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from click.testing import CliRunner

from collectors import archive
from collectors.cli import cli
from collectors.config import Settings
from collectors.archive.coverage import RETENTION
from collectors.models import format_timestamp, parse_timestamp
from collectors.collect import collect
from tests.conftest import SandboxHandle, free_port, running_sandbox

from .conftest import archived_by_webhook, db_rows, listed_ids
from .fake_moego import BASE_URL, KEY, FakeMoeGo


@pytest.fixture(scope="module")
def small_sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox("--history-days", "2") as handle:
        yield handle


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env={"MOEGO_API_KEY": None, "MOEGO_BASE_URL": None, **(env or {})})


def sandbox_args(handle: SandboxHandle, db_path, *, key: str | None = None) -> list[str]:
    return ["--api-key", key or handle.api_key, "--base-url", handle.base_url, "--db", str(db_path), "--chunk", "1d"]


# -- help -------------------------------------------------------------------------------------------


def test_every_command_has_help():
    assert {"collect", "schedule", "status"} <= set(cli.commands)
    for name, command in cli.commands.items():
        result = invoke(name, "--help")
        assert result.exit_code == 0, (name, result.output)
        assert command.help and command.help.strip(), f"{name} has no help"
        first_line = command.help.strip().splitlines()[0]
        assert " ".join(first_line.split()[:4]) in " ".join(result.output.split()), name


# -- collect: success and one-line failures ---------------------------------------------------------


def test_collect_prints_one_line_per_webhook_and_exits_0(small_sandbox, tmp_path):
    result = invoke("collect", *sandbox_args(small_sandbox, tmp_path / "a.db"))

    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("alerts: ")]
    listed = listed_ids(small_sandbox)
    assert len(lines) == 5  # every webhook, the inactive one too
    # The rules ran after the pass: the sandbox's inactive webhook is an incident, said in one line.
    (alerts,) = [line for line in result.output.splitlines() if line.startswith("alerts: ")]
    assert " opened, 0 resolved" in alerts
    for webhook_id, ids in listed.items():
        (line,) = [line for line in lines if line.startswith(webhook_id + " ")]
        assert f": {len(ids):,} new, 0 updated, " in line and line.endswith(" → now")
    assert archived_by_webhook(tmp_path / "a.db") == listed


def test_wrong_key_is_one_line_exit_1_and_recorded(small_sandbox, tmp_path):
    result = invoke("collect", *sandbox_args(small_sandbox, tmp_path / "a.db", key="wrong-key"))

    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: MoeGo rejected the API key (UNAUTHENTICATED, HTTP 401): check MOEGO_API_KEY or --api-key"]
    assert db_rows(tmp_path / "a.db", "SELECT outcome, error FROM collector_runs") == [
        ("failed", "MoeGo rejected the API key (UNAUTHENTICATED, HTTP 401): check MOEGO_API_KEY or --api-key")]


def test_unreachable_host_is_one_line_exit_1_and_recorded(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("collect", "--api-key", "k", "--base-url", url, "--db", str(tmp_path / "a.db"))

    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith(f"Error: cannot reach MoeGo at {url} for ListWebhooks (ConnectError")
    assert line.endswith("check MOEGO_BASE_URL and the network")
    assert db_rows(tmp_path / "a.db", "SELECT outcome FROM collector_runs") == [("failed",)]


def test_missing_key_is_one_line_exit_1(tmp_path):
    result = invoke("collect", "--db", str(tmp_path / "a.db"))
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Error: no MoeGo API key: pass --api-key or set MOEGO_API_KEY"]


def test_rate_limits_outlasting_retries_fail_the_run_then_the_next_run_completes(small_sandbox, tmp_path):
    db_path = tmp_path / "a.db"
    # The client makes 5 attempts per call: 25 limited answers fail every webhook's first page.
    small_sandbox.faults(429, count=25, retry_after=0, paths="/v1/webhook/deliveries")
    try:
        failed = invoke("collect", *sandbox_args(small_sandbox, db_path))
    finally:
        small_sandbox.clear_faults()

    assert failed.exit_code == 1
    error = failed.output.splitlines()[-1]
    assert error.startswith("Error: 5 of 5 webhooks failed; whk_")
    assert "is limiting ListWebhookDeliveries (RESOURCE_EXHAUSTED" in error and error.endswith("try again later")
    assert sum(": FAILED after 0 new" in line for line in failed.output.splitlines()) == 5
    assert db_rows(db_path, "SELECT outcome, error FROM collector_runs") == [("failed", error[len("Error: "):])]
    assert db_rows(db_path, "SELECT COUNT(*) FROM deliveries") == [(0,)]

    again = invoke("collect", *sandbox_args(small_sandbox, db_path))
    assert again.exit_code == 0, again.output
    assert archived_by_webhook(db_path) == listed_ids(small_sandbox)


def test_a_malformed_page_fails_its_webhook_only_and_the_next_run_completes(small_sandbox, tmp_path):
    db_path = tmp_path / "a.db"
    small_sandbox.faults(malformed=1, paths="/v1/webhook/deliveries")
    try:
        failed = invoke("collect", *sandbox_args(small_sandbox, db_path))
    finally:
        small_sandbox.clear_faults()

    assert failed.exit_code == 1
    lines = failed.output.splitlines()
    assert lines[-1].startswith("Error: whk_") and "ListWebhookDeliveries" in lines[-1]
    assert sum(": FAILED after " in line for line in lines[:-1]) == 1
    assert sum(line.endswith(" → now") for line in lines[:-1]) == 4  # the other webhooks synced
    assert db_rows(db_path, "SELECT outcome FROM collector_runs") == [("failed",)]

    again = invoke("collect", *sandbox_args(small_sandbox, db_path))
    assert again.exit_code == 0, again.output
    assert archived_by_webhook(db_path) == listed_ids(small_sandbox)


# -- status -----------------------------------------------------------------------------------------


@pytest.fixture
def archived(tmp_path) -> tuple[Settings, FakeMoeGo]:
    """An archive collected a moment ago (wall clock) from an in-memory MoeGo with two webhooks."""
    fake = FakeMoeGo(now=datetime.now(timezone.utc) - timedelta(seconds=5))
    fake.add_webhook("whk_a")
    fake.add_webhook("whk_b")
    fake.add_deliveries("whk_a", 200)
    fake.add_deliveries("whk_b", 100)
    settings = Settings(api_key=KEY, base_url=BASE_URL, db_path=tmp_path / "a.db")
    with fake.client() as client:
        assert collect(settings, client=client, now=fake.now).ok
    return settings, fake


def punch_hole(settings: Settings, webhook_id: str, start: datetime, end: datetime) -> None:
    """Remove ``[start, end)`` from a webhook's coverage, as if it had never been read."""
    db = archive.connect(settings.db_path)
    try:
        with archive.transaction(db) as conn:
            (cov_start, cov_end) = conn.execute(
                "SELECT start, end FROM coverage WHERE webhook_id = ?", (webhook_id,)).fetchone()
            conn.execute("DELETE FROM coverage WHERE webhook_id = ?", (webhook_id,))
            conn.executemany("INSERT INTO coverage (webhook_id, start, end) VALUES (?, ?, ?)", [
                (webhook_id, cov_start, format_timestamp(start)), (webhook_id, format_timestamp(end), cov_end)])
    finally:
        db.close()


def test_status_after_a_complete_collect_is_calm_and_exits_0(archived):
    settings, _ = archived
    result = invoke("status", "--db", str(settings.db_path))

    assert result.exit_code == 0, result.output
    out = result.output
    assert "whk_a  https://receiver.example/whk_a  [active]" in out
    assert out.count("gaps        none in the 15-day window") == 2
    assert "AT RISK" not in out
    assert "last run    #1 collect OK" in out and "2 webhooks" in out and "300 new" in out


def test_a_collector_that_stopped_is_late_and_exits_2_before_anything_is_at_risk(tmp_path):
    now = datetime.now(timezone.utc)
    fake = FakeMoeGo(now=now - timedelta(minutes=70))
    fake.add_webhook("whk_a")
    fake.add_deliveries("whk_a", 50)
    settings = Settings(api_key=KEY, base_url=BASE_URL, db_path=tmp_path / "a.db")
    for minutes in (70, 60, 50):  # a timer every 10 minutes, then nothing
        fake.now = now - timedelta(minutes=minutes)
        with fake.client() as client:
            assert collect(settings, client=client, now=fake.now, trigger="schedule").ok

    result = invoke("status", "--db", str(settings.db_path))
    assert result.exit_code == 2, result.output
    last = (now - timedelta(minutes=50)).strftime("%Y-%m-%d %H:%M UTC")
    assert result.output.rstrip().endswith(f"LATE: no complete sync for 50 min (the last ended {last}; passes usually "
                                           "start every 10 min): is the collector running? (last run above)")
    assert "AT RISK" not in result.output
    data = json.loads(invoke("status", "--db", str(settings.db_path), "--json").output)["collector"]
    ended = parse_timestamp(data.pop("lastCompleteSync"))  # when the last pass's sync ended: a moment after it began
    assert timedelta(0) <= ended - (now - timedelta(minutes=50)) < timedelta(seconds=5)
    assert data == {"late": True, "usualIntervalSeconds": 600.0, "lateAfterSeconds": 1800.0}

    fake.now = datetime.now(timezone.utc)  # the timer runs again
    with fake.client() as client:
        assert collect(settings, client=client, now=fake.now, trigger="schedule").ok
    result = invoke("status", "--db", str(settings.db_path))
    assert result.exit_code == 0 and "LATE" not in result.output, result.output


def test_a_hole_expiring_within_48h_is_at_risk_and_exits_2(archived):
    settings, _ = archived
    window_start = datetime.now(timezone.utc) - RETENTION
    hole = (window_start + timedelta(hours=30), window_start + timedelta(hours=33))
    punch_hole(settings, "whk_a", *hole)

    result = invoke("status", "--db", str(settings.db_path))
    assert result.exit_code == 2
    (risk_line,) = [line for line in result.output.splitlines() if line.startswith("  AT RISK     ")]
    assert re.search(r"\(3 h 0 min\) is not archived; MoeGo starts deleting it in (29 h 59|30 h 0) min$", risk_line)
    assert result.output.rstrip().endswith(
        "AT RISK: entries MoeGo deletes within 48 h are not archived: run 'moego-monitor collect' now")

    as_json = invoke("status", "--db", str(settings.db_path), "--json")
    assert as_json.exit_code == 2
    data = json.loads(as_json.output)
    assert data["atRisk"] is True
    by_id = {w["webhookId"]: w for w in data["webhooks"]}
    assert by_id["whk_a"]["atRisk"] == [{"start": format_timestamp(hole[0]), "end": format_timestamp(hole[1])}]
    assert by_id["whk_b"]["atRisk"] == [] and by_id["whk_b"]["gaps"] == []


def test_a_hole_expiring_later_is_a_gap_but_not_at_risk(archived):
    settings, _ = archived
    window_start = datetime.now(timezone.utc) - RETENTION
    punch_hole(settings, "whk_a", window_start + timedelta(days=5), window_start + timedelta(days=5, hours=2))

    result = invoke("status", "--db", str(settings.db_path), "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["atRisk"] is False
    (whk_a,) = [w for w in data["webhooks"] if w["webhookId"] == "whk_a"]
    assert len(whk_a["gaps"]) == 1 and whk_a["atRisk"] == []


def test_a_webhook_never_collected_is_at_risk_but_a_deleted_one_is_not(archived):
    settings, fake = archived
    db = archive.connect(settings.db_path)
    try:
        with archive.transaction(db) as conn:
            conn.execute("DELETE FROM coverage WHERE webhook_id = 'whk_b'")  # as if its syncs had all failed
    finally:
        db.close()
    assert invoke("status", "--db", str(settings.db_path)).exit_code == 2

    fake.webhooks = [w for w in fake.webhooks if w["id"] != "whk_b"]  # deleted in MoeGo: nothing left to read
    with fake.client() as client:
        assert collect(settings, client=client, now=datetime.now(timezone.utc)).ok
    result = invoke("status", "--db", str(settings.db_path))
    assert result.exit_code == 0, result.output
    assert "whk_b  https://receiver.example/whk_b  [deleted upstream (archive kept)]" in result.output


def test_status_without_an_archive_is_one_line_exit_1(tmp_path):
    result = invoke("status", "--db", str(tmp_path / "none.db"))
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"Error: no archive at {tmp_path / 'none.db'}: run 'moego-monitor collect' first"]


def test_status_of_an_archive_holding_no_webhook_exits_2(tmp_path):
    """Nothing archived means nothing protected: a monitoring check must not stay green."""
    db = archive.connect(tmp_path / "empty.db")
    archive.ensure_db_shape(db)
    db.close()
    result = invoke("status", "--db", str(tmp_path / "empty.db"))
    assert result.exit_code == 2
    assert "no webhooks archived yet: nothing is protected" in result.output


def test_sandbox_on_a_busy_port_says_so_in_one_line():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = invoke("sandbox", "--port", str(busy.getsockname()[1]), "--quiet")
    assert result.exit_code == 1
    assert "Address already in use" in result.output and "Traceback" not in result.output


def test_an_archive_path_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("collect", "--db", str(blocker / "archive.db"), "--api-key", KEY, "--base-url", BASE_URL)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot write the archive at {blocker / 'archive.db'}")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_bad_setting_in_the_environment_is_one_line_for_the_sandbox_too():
    result = CliRunner().invoke(cli, ["sandbox", "--quiet"], env={"MOEGO_TIMEOUT": "abc"})
    assert result.exit_code == 1
    assert result.output.strip() == "Error: timeout must be a number of seconds"
