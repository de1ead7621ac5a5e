"""Issue #7's actions against a real sandbox over loopback, driven through AppTest as a person would.

- A redelivery MoeGo sends to an endpoint that refuses it again is shown as a failure (red, with the
  status and the error, and a link to the new attempt), never as a success.
- A bulk redelivery is a job: it keeps going when the user leaves the page, shows progress (elapsed,
  remaining, Cancel) on every page, can be cancelled from another page, and its summary on screen and in
  the toast is the one its audit rows give.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from collectors.collect import collect
from collectors.config import Settings
from tests.conftest import SandboxHandle, free_port, start_sandbox, stop_sandbox

from .test_app import no_exception, read


@pytest.fixture(scope="module")
def moego() -> Iterator[SandboxHandle]:
    """A sandbox of this module's own with one day of history."""
    handle = start_sandbox("--history-days", "1")
    try:
        yield handle
    finally:
        stop_sandbox(handle)


def create_webhook(moego: SandboxHandle, endpoint: str) -> dict[str, Any]:
    with moego.client() as api:
        r = api.post("/v1/webhooks", json={"endpointUrl": endpoint, "eventTypes": ["HEALTH_CHECK", "PET_CREATED"],
                                           "isActive": True})
    assert r.status_code == 200, r.text
    return r.json()


def send_test_event(moego: SandboxHandle, webhook_id: str) -> dict[str, Any]:
    with moego.client() as api:
        r = api.post(f"/v1/webhooks/{webhook_id}/test", json={"eventType": "PET_CREATED"})
    assert r.status_code == 200, r.text
    return r.json()


def point_at(moego: SandboxHandle, webhook: dict[str, Any], endpoint: str) -> None:
    with moego.client() as api:
        r = api.put(f"/v1/webhooks/{webhook['id']}", json={**webhook, "endpointUrl": endpoint})
    assert r.status_code == 200, r.text


def query(path: Path, sql: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def collected(moego: SandboxHandle, path: Path) -> Path:
    result = collect(Settings(api_key=moego.api_key, base_url=moego.base_url, db_path=path), trigger="collect")
    assert result.ok, result.summary_lines
    return path


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f} s")


def test_a_failed_redelivery_is_shown_as_failed_with_a_link_to_the_new_attempt(run_app, moego: SandboxHandle,
                                                                                tmp_path: Path) -> None:
    port = free_port()  # nothing listens here: every delivery is refused
    hook = create_webhook(moego, f"http://127.0.0.1:{port}/hook")
    first = send_test_event(moego, hook["id"])
    assert not first.get("success")
    path = collected(moego, tmp_path / "archive.db")
    at = run_app(path, page="views/deliveries.py", query={"delivery": first["id"]}, api_key=moego.api_key,
                 base_url=moego.base_url)
    at.button(key="redeliver").click().run()
    at.button(key="redeliver_confirm").click().run()
    no_exception(at)
    [(outcome, new_id, new_success)] = query(path, "SELECT outcome, new_delivery_id, new_success FROM redeliveries "
                                                   "WHERE delivery_id = ?", first["id"])
    assert (outcome, new_success) == ("sent", 0)  # MoeGo sent it; the endpoint refused it again
    expected = (f"Redelivered {first['id']}, but the new attempt {new_id} failed "
                f"(no response: dial tcp 127.0.0.1:{port}: connect: connection refused).")
    assert [read(e.value) for e in at.error] == [expected]  # red, with the status and the error
    assert not at.success
    assert [read(t.value) for t in at.toast] == [expected]
    link = at.button(key="open_new_attempt")
    assert read(link.label) == f"Open the new attempt {new_id}"
    link.click().run()
    no_exception(at)
    assert at.query_params["delivery"] == [new_id] or at.query_params["delivery"] == new_id
    assert any(s.value == f"Delivery `{new_id}`" for s in at.subheader)


def test_a_bulk_job_outlives_the_page_and_is_cancelled_from_another(run_app, moego: SandboxHandle,
                                                                      tmp_path: Path) -> None:
    hook = create_webhook(moego, f"{moego.receiver_url}/hooks/status/503")
    for _ in range(12):
        send_test_event(moego, hook["id"])
    path = collected(moego, tmp_path / "archive.db")
    # From now on the endpoint answers 200, after a second: a redelivery takes a while, and succeeds.
    point_at(moego, hook, f"{moego.receiver_url}/hooks/slow/1000")
    at = run_app(path, page="views/deliveries.py", query={"outcome": "failed", "webhook": hook["id"]},
                 api_key=moego.api_key, base_url=moego.base_url)
    at.button(key="bulk_count").click().run()
    no_exception(at)
    assert any(c.value.startswith("Estimated time: under a minute. Each redelivery waits for the endpoint")
               for c in at.caption)
    at.button(key="bulk_confirm").click().run()
    [(job_id,)] = query(path, "SELECT id FROM bulk_jobs")

    # Leave the page at once: the job goes on, and its progress and Cancel follow to the Overview.
    at.switch_page("views/overview.py").run()
    no_exception(at)
    wait_until(lambda: query(path, "SELECT COUNT(*) FROM redeliveries WHERE batch_id = ? AND outcome = 'sent'",
                             job_id)[0][0] >= 2, 60, "two redeliveries")
    at.run()
    [bar] = at.get("progress")
    assert re.match(rf"Bulk redelivery {job_id}: \d+ of 12 done: \d+ succeeded, 0 failed, 0 skipped · "
                    r"\d+ s elapsed, (under a minute|about \d+ min) left", bar.proto.text), bar.proto.text
    at.button(key=f"job_cancel_{job_id}").click().run()
    wait_until(lambda: query(path, "SELECT state FROM bulk_jobs WHERE id = ?", job_id)[0][0] == "cancelled", 30,
               "the cancel")
    at.run()
    no_exception(at)
    rows = query(path, "SELECT outcome, new_success FROM redeliveries WHERE batch_id = ?", job_id)
    succeeded = sum(o == "sent" and s == 1 for o, s in rows)
    skipped = sum(o == "skipped" for o, _ in rows)
    assert len(rows) == 12 and succeeded >= 2 and skipped >= 1 and succeeded + skipped == 12
    expected = f"Bulk redelivery cancelled: {succeeded} succeeded, 0 failed, {skipped} skipped."
    assert [w.value for w in at.warning if w.value.startswith("Bulk redelivery")] == [expected]
    assert expected in [t.value for t in at.toast]
    assert not at.get("progress")  # nothing runs any more
