"""End to end, as a person would: `moego-monitor demo` up, a real Chromium, the operator's fix step.

The demo stack (sandbox, scheduled collector, dashboard) runs as one subprocess exactly as
`make demo` starts it; Playwright drives Debian's /usr/bin/chromium. The tests redeliver a failed
entry (and see a failure shown as one), download the CSV and open it, run a bulk redelivery whose
summary must equal its audit, check that a row's detail opens inside the viewport at 1440x900 and
390x844, acknowledge an incident the demo's rules opened, log in to a team console behind a login proxy and
through OpenID Connect (a local provider, tests/e2e/oidc_provider.py), and record every request the browser
makes: none may leave the machine. Screenshots go to
test-artifacts/. Without chromium the tests skip locally and fail under CI.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit
from typing import NamedTuple

import httpx
import pytest

from tests.conftest import REPO, free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.browser


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail("CI must run the browser test: /usr/bin/chromium is missing (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)")


class Demo(NamedTuple):
    """The running demo: the dashboard's URL, its archive, and the sandbox API's URL."""

    url: str
    db: Path
    sandbox: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`moego-monitor demo` on free ports with its own archive; yields a :class:`Demo`."""
    _require_chromium()
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    sandbox_port, dashboard_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEGO_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "collectors", "demo", "--sandbox-port", str(sandbox_port),
         "--dashboard-port", str(dashboard_port), "--db", str(db), "--every", "1m", "--rate", "30"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    url = f"http://127.0.0.1:{dashboard_port}"
    try:
        _wait(lambda: _first_collection_done(db), 120, proc, "the first collection")
        _wait(lambda: httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200, 60, proc, "the dashboard")
        yield Demo(url, db, f"http://127.0.0.1:{sandbox_port}")
    finally:
        # Ctrl-C, as a person stops the demo: every process must go, cleanly.
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            pytest.fail("the demo did not stop within 30 s of Ctrl-C:\n" + output[-3000:])
    assert proc.returncode == 0, output[-3000:]
    assert "stopping the demo" in output


def _first_collection_done(db: Path) -> bool:
    if not db.exists():
        return False
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM collector_runs WHERE outcome = 'ok'").fetchone()[0] > 0
        except sqlite3.OperationalError:
            return False


def _wait(check, timeout_s: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the demo exited ({proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        try:
            if check():
                return
        except (httpx.HTTPError, sqlite3.Error):
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {timeout_s:.0f}s")


def _select_first_row(page, grid) -> None:
    """Click the first row's selector cell of the canvas grid until the detail's link is in the URL.

    The grid draws on a canvas after the page settles, so a click can land before rows exist;
    clicking again is harmless (the selection stays on that row).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(10):
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)
        try:
            page.wait_for_url(re.compile(r"delivery=dlv_[0-9a-f]+"), timeout=3_000)
            return
        except PlaywrightTimeout:  # the grid had not drawn its rows yet
            continue
    pytest.fail("selecting the first row of the deliveries table never opened a delivery")


# -- the browser, and every request it makes ---------------------------------------------------------

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def browser(demo):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def outside_requests() -> list[str]:
    """Every request any page made to a host other than this machine (each was also refused)."""
    return []


def open_page(browser, outside: list[str], width: int = 1440, height: int = 900):
    """A page at ``width`` x ``height`` (UTC) whose requests off this machine are recorded and refused: offline."""
    context = browser.new_context(viewport={"width": width, "height": height}, timezone_id="UTC", accept_downloads=True)

    def guard(route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    return context.new_page()


def sandbox_api(demo: Demo) -> httpx.Client:
    from sandbox.demo import SANDBOX_API_KEY

    token = base64.b64encode(SANDBOX_API_KEY.encode()).decode()
    return httpx.Client(base_url=demo.sandbox, headers={"Authorization": f"Basic {token}"}, timeout=30, trust_env=False)


def webhook_with_test_events(demo: Demo, endpoint: str, events: int) -> tuple[str, list[str]]:
    """A new webhook at ``endpoint`` in the demo's sandbox and ``events`` test events sent to it: (id, delivery ids)."""
    with sandbox_api(demo) as api:
        hook = api.post("/v1/webhooks", json={"endpointUrl": endpoint, "eventTypes": ["PET_CREATED"], "isActive": True})
        assert hook.status_code == 200, hook.text
        hook_id = hook.json()["id"]
        ids = [api.post(f"/v1/webhooks/{hook_id}/test", json={"eventType": "PET_CREATED"}).json()["id"]
               for _ in range(events)]
    return hook_id, ids


def receiver_url(demo: Demo) -> str:
    return httpx.get(f"{demo.sandbox}/_sandbox/health", timeout=10).json()["receiverUrl"]


def archived(db: Path, delivery_ids: list[str]) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        marks = ",".join("?" for _ in delivery_ids)
        return conn.execute(f"SELECT COUNT(*) FROM deliveries WHERE id IN ({marks})", delivery_ids).fetchone()[0] \
            == len(delivery_ids)


def collect_now(page, demo: Demo, delivery_ids: list[str]) -> None:
    """Click Archive health → Collect now (it shows a status box while it works) until the entries are archived."""
    from playwright.sync_api import expect

    page.goto(f"{demo.url}/archive")
    deadline = time.monotonic() + 120
    while not archived(demo.db, delivery_ids):
        assert time.monotonic() < deadline, "Collect now never archived the new entries"
        page.locator(".st-key-collect_now").get_by_role("button").click()
        # A sign of work right beside the button, then its outcome (or "Not started" while the schedule collects).
        expect(page.get_by_text(re.compile(r"Collecting from MoeGo|Collection finished|Not started")).first) \
            .to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile(r"Collected: |Not started|Collection ended")).first).to_be_visible(timeout=90_000)
        if not archived(demo.db, delivery_ids):
            time.sleep(2)


def metric_value(page, label: str) -> str:
    return page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue").inner_text()


def assert_in_viewport(page, locator, what: str) -> None:
    box = locator.bounding_box()
    view = page.viewport_size
    assert box is not None, f"{what} is not drawn"
    assert 0 <= box["y"] and box["y"] + box["height"] <= view["height"], (what, box, view)
    assert 0 <= box["x"] and box["x"] + box["width"] <= view["width"], (what, box, view)


# -- the tests ------------------------------------------------------------------------------------


def test_filter_to_failures_open_one_and_redeliver_it(demo, browser, outside_requests):
    from playwright.sync_api import expect

    url, db = demo.url, demo.db
    page = open_page(browser, outside_requests, 1400, 1000)
    page.goto(f"{url}/deliveries")
    expect(page.get_by_role("heading", name="Deliveries")).to_be_visible(timeout=30_000)

    # Filter to failures with the sidebar's outcome radio: the view and its link follow.
    page.locator(".st-key-filter_outcome").get_by_text("Failed", exact=True).click()
    expect(page).to_have_url(re.compile(r"outcome=failed"), timeout=15_000)

    # Open the newest failed entry by selecting its row (the first column is the row selector).
    grid = page.locator(".st-key-deliveries_table")
    expect(grid).to_be_visible(timeout=15_000)
    _select_first_row(page, grid)
    delivery_id = re.search(r"delivery=(dlv_[0-9a-f]+)", page.url).group(1)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (success,) = conn.execute("SELECT success FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    assert success == 0, "the failures filter opened an entry that succeeded"
    expect(page.get_by_text(f"Delivery {delivery_id}")).to_be_visible(timeout=15_000)

    # Redeliver it: one click, a confirmation, then the outcome (whichever it is, said as it is).
    page.locator(".st-key-redeliver").get_by_role("button").click()
    page.locator(".st-key-redeliver_confirm").get_by_role("button").click()
    outcome = page.get_by_text(re.compile(rf"Redelivered {delivery_id}(:|, but) the new attempt dlv_[0-9a-f]+")).first
    expect(outcome).to_be_visible(timeout=60_000)
    new_id = re.search(r"the new attempt (dlv_[0-9a-f]+)", outcome.inner_text()).group(1)
    assert new_id != delivery_id

    # The audit trail and the archive hold the new attempt, and its own page shows it.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        audit = conn.execute(
            "SELECT outcome, new_delivery_id, requested_by FROM redeliveries WHERE delivery_id = ?",
            (delivery_id,),
        ).fetchall()
        same_event = conn.execute(
            "SELECT COUNT(*) FROM deliveries WHERE event_id = (SELECT event_id FROM deliveries WHERE id = ?)",
            (delivery_id,),
        ).fetchone()[0]
    assert audit == [("sent", new_id, "local")]  # the demo: loopback, no login, one local user
    assert same_event >= 2, "the new attempt was not synced into the archive"
    page.screenshot(path=str(ARTIFACTS / "e2e-redelivered.png"), full_page=True)

    page.goto(f"{url}/deliveries?delivery={new_id}")
    expect(page.get_by_text(f"Delivery {new_id}")).to_be_visible(timeout=30_000)
    page.get_by_role("tab", name="Attempts at this event").click()
    expect(page.get_by_text("This is the only archived attempt at this event.")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "e2e-new-attempt.png"), full_page=True)
    page.context.close()


def test_a_failed_redelivery_is_shown_as_failed(demo, browser, outside_requests):
    from playwright.sync_api import expect

    port = free_port()  # nothing listens there: the endpoint refuses every delivery, the redelivery too
    hook_id, [first] = webhook_with_test_events(demo, f"http://127.0.0.1:{port}/hook", 1)
    page = open_page(browser, outside_requests)
    collect_now(page, demo, [first])
    page.goto(f"{demo.url}/deliveries?delivery={first}")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Delivery {first}")).to_be_visible(timeout=30_000)
    dialog.locator(".st-key-redeliver").get_by_role("button").click()
    dialog.locator(".st-key-redeliver_confirm").get_by_role("button").click()
    red = page.get_by_test_id("stAlertContentError").filter(has_text=f"Redelivered {first}, but the new attempt")
    expect(red).to_be_visible(timeout=60_000)
    text = red.inner_text()
    new_id = re.search(r"the new attempt (dlv_[0-9a-f]+) failed", text).group(1)
    assert f"(no response: dial tcp 127.0.0.1:{port}: connect: connection refused)" in text
    assert page.get_by_test_id("stAlertContentSuccess").count() == 0  # nothing green about it
    page.screenshot(path=str(ARTIFACTS / "e2e-failed-redelivery.png"))
    page.get_by_role("button", name=f"Open the new attempt {new_id}").click()
    expect(page).to_have_url(re.compile(rf"delivery={new_id}"), timeout=15_000)
    expect(page.get_by_role("dialog").get_by_text(f"Delivery {new_id}")).to_be_visible(timeout=30_000)
    page.context.close()


def test_download_csv_and_open_it(demo, browser, outside_requests):
    from playwright.sync_api import expect

    from collectors.archive.export import COLUMNS

    with httpx.Client(timeout=10) as c:
        hooks = c.get(f"{demo.sandbox}/_sandbox/stats").json()["webhooks"]
    orders = next(w for w, info in hooks.items() if info["label"] == "orders-sync")  # it sends a bearer token
    day = datetime.now(timezone.utc).date() - timedelta(days=1)  # a whole past day: its count cannot move
    view = (f"range=custom&since={day:%Y-%m-%d}T00:00:00Z&until={day + timedelta(days=1):%Y-%m-%d}T00:00:00Z"
            f"&webhook={orders}")
    page = open_page(browser, outside_requests)
    page.goto(f"{demo.url}/deliveries?{view}")
    expect(page.get_by_test_id("stMetric").filter(has_text="Deliveries in view")).to_be_visible(timeout=30_000)
    shown = int(metric_value(page, "Deliveries in view").replace(",", ""))
    assert shown > 0
    with page.expect_download(timeout=60_000) as download:
        page.locator(".st-key-export_csv").get_by_role("button").click()
    saved = ARTIFACTS / "e2e-download.csv"
    download.value.save_as(saved)
    text = saved.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(COLUMNS)
    assert len(rows) - 1 == shown, "the file holds a different number of rows than the page counts"
    assert {r[1] for r in rows[1:]} == {orders}
    headers = [json.loads(r[COLUMNS.index("request_headers")]) for r in rows[1:]]
    assert all(h["Authorization"] == ["[redacted]"] and h["X-Moe-Signature-256"] == ["[redacted]"] for h in headers)
    assert "demo-partner-token" not in text and "moego-sandbox-demo-key" not in text
    page.context.close()


def test_a_bulk_run_says_on_screen_what_its_audit_says(demo, browser, outside_requests):
    from playwright.sync_api import expect

    hook_id, ids = webhook_with_test_events(demo, f"{receiver_url(demo)}/hooks/status/503", 5)
    page = open_page(browser, outside_requests)
    collect_now(page, demo, ids)
    page.goto(f"{demo.url}/deliveries?outcome=failed&webhook={hook_id}")
    page.get_by_text("Redeliver every failed entry in this view").click()
    page.locator(".st-key-bulk_count").get_by_role("button").click()
    confirm = page.locator(".st-key-bulk_confirm").get_by_role("button")
    expect(confirm).to_be_visible(timeout=30_000)
    expect(page.get_by_text(re.compile(r"^Estimated time: "))).to_be_visible()
    confirm.click()
    finished = page.get_by_text(re.compile(r"^Bulk redelivery finished: ")).first
    expect(finished).to_be_visible(timeout=90_000)
    with sqlite3.connect(f"file:{demo.db}?mode=ro", uri=True) as conn:
        [(job_id,)] = conn.execute(
            "SELECT id FROM bulk_jobs WHERE id IN (SELECT batch_id FROM redeliveries WHERE webhook_id = ?)", (hook_id,)
        ).fetchall()
        audit = conn.execute("SELECT delivery_id, outcome, new_success FROM redeliveries WHERE batch_id = ?",
                             (job_id,)).fetchall()
    rows = [(o, s) for _, o, s in audit]
    succeeded = sum(o == "sent" and s == 1 for o, s in rows)
    failed = sum(o == "failed" or (o == "sent" and s != 1) for o, s in rows)
    skipped = sum(o == "skipped" for o, _ in rows)
    # The five test events (and any live event the sandbox sent the webhook meanwhile), each once; the
    # endpoint answers 503, so the new attempts failed.
    assert set(ids) <= {d for d, _, _ in audit} and len(audit) == len({d for d, _, _ in audit}) and failed >= 5
    assert finished.inner_text() == f"Bulk redelivery finished: {succeeded} succeeded, {failed} failed, {skipped} skipped."
    page.screenshot(path=str(ARTIFACTS / "e2e-bulk.png"), full_page=True)
    page.context.close()


@pytest.mark.parametrize(("width", "height"), [(1440, 900), (390, 844)], ids=["desktop", "phone"])
def test_a_rows_detail_opens_inside_the_viewport(demo, browser, outside_requests, width, height):
    from playwright.sync_api import expect

    page = open_page(browser, outside_requests, width, height)
    page.goto(f"{demo.url}/deliveries?outcome=failed")
    grid = page.locator(".st-key-deliveries_table")
    expect(grid).to_be_visible(timeout=30_000)
    grid.scroll_into_view_if_needed()
    _select_first_row(page, grid)
    delivery_id = re.search(r"delivery=(dlv_[0-9a-f]+)", page.url).group(1)
    heading = page.get_by_role("dialog").get_by_text(f"Delivery {delivery_id}")
    expect(heading).to_be_visible(timeout=30_000)
    assert_in_viewport(page, heading, "the detail's heading")
    assert_in_viewport(page, page.get_by_role("dialog").get_by_test_id("stMetric").first, "the detail's outcome")
    page.screenshot(path=str(ARTIFACTS / f"e2e-detail-{width}x{height}.png"))
    page.context.close()


def _reruns_sent(frames: list) -> list[str]:
    """The reruns the websocket frames a page sent asked Streamlit for: the fragment id of each ('' for the page)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    reruns = []
    for frame in frames:
        message = BackMsg()
        message.ParseFromString(frame if isinstance(frame, bytes) else frame.encode())
        if message.WhichOneof("type") == "rerun_script":
            reruns.append(message.rerun_script.fragment_id)
    return reruns


def test_an_idle_overview_stays_still(demo, browser, outside_requests):
    """Once drawn, the Overview asks the server for nothing while no one acts and no job runs: no rerun lands
    in the middle of a load, and the page does not redraw itself every few seconds. The one thing allowed is the
    jobs panel's check for a job started elsewhere, every 10 s: at most once in the 5 s watched."""
    from playwright.sync_api import expect

    page = open_page(browser, outside_requests, 1400, 1000)
    sent: list = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
    page.goto(demo.url)
    expect(page.get_by_test_id("stMetric").filter(has_text="Deliveries").first).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=30_000)
    drawn = _reruns_sent(sent)
    assert drawn.count("") == 1  # the page's own run
    page.wait_for_timeout(5_000)
    idle = _reruns_sent(sent)[len(drawn):]
    assert "" not in idle, "the idle page reran on its own"
    assert len(idle) <= 1, f"a fragment of the idle page reran {len(idle)} times in 5 s"
    page.context.close()


def test_the_overviews_trends_say_what_the_archive_holds(demo, browser, outside_requests):
    """A whole past day (its numbers cannot move): the trend chart is drawn with its three panels, and pointing at
    the volume panel shows an hour's figures, which are that hour's entries in the archive."""
    from playwright.sync_api import expect

    day = datetime.now(timezone.utc).date() - timedelta(days=1)
    page = open_page(browser, outside_requests, 1400, 1000)
    page.goto(f"{demo.url}/?range=custom&since={day:%Y-%m-%d}T00:00:00Z&until={day + timedelta(days=1):%Y-%m-%d}T00:00:00Z")
    chart = page.get_by_test_id("stVegaLiteChart")
    expect(chart).to_have_count(1, timeout=30_000)
    expect(chart.locator("canvas, svg.marks").first).to_be_attached(timeout=30_000)
    for title in ("Deliveries per hour", "Success rate per hour", "Latency percentiles per hour"):
        expect(chart.locator("svg.marks text", has_text=title)).to_have_count(1)
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    tooltip = page.locator("#vg-tooltip-element")
    for x in (0.5, 0.3, 0.7):  # the middle of the day, or beside it; in the volume panel (the top band)
        page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * 0.2)
        if tooltip.get_by_text("Deliveries", exact=True).count():
            break
    expect(tooltip).to_contain_text("Deliveries", timeout=10_000)
    keys = [k.inner_text() for k in tooltip.locator("td.key").all()]
    values = [v.inner_text() for v in tooltip.locator("td.value").all()]
    shown = dict(zip(keys, values))
    hour = datetime.strptime(shown["Hour"], "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)  # the page's zone: UTC
    assert hour.date() == day
    bounds = [(hour + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%S.000000Z") for h in (0, 1)]
    with sqlite3.connect(f"file:{demo.db}?mode=ro", uri=True) as conn:
        total, failed = conn.execute("SELECT COUNT(*), COUNT(*) - SUM(success) FROM deliveries "
                                     "WHERE delivered_at >= ? AND delivered_at < ?", bounds).fetchone()
    assert (int(shown["Deliveries"].replace(",", "")), int(shown["Failed"].replace(",", ""))) == (total, failed)
    assert int(shown["Succeeded"].replace(",", "")) == total - failed and total > 0
    page.screenshot(path=str(ARTIFACTS / "e2e-overview-trends.png"))
    page.context.close()


def test_the_overviews_tabs_open_on_a_click_and_by_link(demo, browser, outside_requests):
    """The Overview opens on its trends; a click on Failures draws the four breakdowns (and no chart) and puts the
    tab in the URL, and that URL opened anew shows the same tab."""
    from playwright.sync_api import expect

    page = open_page(browser, outside_requests, 1400, 1000)
    page.goto(demo.url)
    expect(page.get_by_test_id("stVegaLiteChart")).to_have_count(1, timeout=30_000)
    expect(page.get_by_test_id("stDataFrame")).to_have_count(0)
    page.get_by_role("tab", name="Failures").click()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(4, timeout=30_000)
    expect(page.get_by_test_id("stVegaLiteChart")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"[?&]tab=Failures"), timeout=10_000)
    link = page.url
    page.context.close()
    again = open_page(browser, outside_requests, 1400, 1000)
    again.goto(link)
    expect(again.get_by_test_id("stDataFrame")).to_have_count(4, timeout=30_000)
    expect(again.get_by_role("tab", name="Failures")).to_have_attribute("aria-selected", "true")
    again.context.close()


def test_nothing_is_fetched_from_outside(demo, browser, outside_requests):
    from playwright.sync_api import expect

    page = open_page(browser, outside_requests)
    for path, title in (("", "Overview"), ("deliveries", "Deliveries"), ("archive", "Archive health"),
                        ("webhooks", "Webhooks")):
        page.goto(f"{demo.url}/{path}")
        expect(page.get_by_role("heading", name=title)).to_be_visible(timeout=30_000)
        page.wait_for_load_state("networkidle")
    page.context.close()
    # Every page of this module, the ones above included: the dashboard works with no network at all.
    assert outside_requests == []


def _open_incident(db: Path) -> int | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT id FROM incidents WHERE state = 'open' ORDER BY opened_at DESC, id DESC LIMIT 1").fetchone()
    return row[0] if row else None


def test_acknowledge_an_incident_with_ones_name(demo, browser, outside_requests):
    from playwright.sync_api import expect

    url, db = demo.url, demo.db
    deadline = time.monotonic() + 120  # the demo's rules run after its first collector pass
    while (incident_id := _open_incident(db)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert incident_id is not None, "the demo's rules opened no incident within 2 minutes"
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_page(browser, outside_requests, 1400, 1000)
    page.goto(f"{url}/incidents")
    expect(page.get_by_role("heading", name="Incidents")).to_be_visible(timeout=30_000)
    # The banner says something is open, on this page as on every other.
    expect(page.locator(".st-key-incident_banner")).to_contain_text("unresolved", timeout=15_000)

    name = page.locator(".st-key-incident_actor input")
    name.fill("Playwright Pat")
    name.press("Enter")
    page.locator(f".st-key-ack_{incident_id}").get_by_role("button").click()
    expect(page.get_by_text(f"Incident #{incident_id} is acknowledged (Playwright Pat).")).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "e2e-incident-acknowledged.png"), full_page=True)
    page.context.close()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        state = conn.execute("SELECT state FROM incidents WHERE id = ?", (incident_id,)).fetchone()[0]
        last = conn.execute("SELECT action, actor FROM incident_events WHERE incident_id = ? ORDER BY id DESC LIMIT 1",
                            (incident_id,)).fetchone()
    assert state == "acknowledged"
    assert last == ("acknowledged", "Playwright Pat")


# -- the console for a team: a login proxy in front, two roles; and links that must stay text ---------------

PROXY_SECRET = "e2e-proxy-secret-0123456789abcdef0123456789"


@pytest.fixture(scope="module")
def proxied(demo):
    """A second dashboard on the demo's archive as a team runs it behind a login proxy (MOEGO_MONITOR_AUTH=proxy):
    olivia operates, victor views. The browser plays the proxy by sending its headers."""
    env = dict(MOEGO_MONITOR_AUTH="proxy", MOEGO_MONITOR_OPERATORS="olivia", MOEGO_MONITOR_VIEWERS="victor",
               MOEGO_MONITOR_PROXY_SECRET=PROXY_SECRET)
    with _team_dashboard(demo, env, "the team dashboard") as url:
        yield url, demo.db


@contextlib.contextmanager
def _team_dashboard(demo, login_env: dict[str, str], what: str, *args: str, port: int | None = None):
    """Another dashboard on the demo's archive (``streamlit run`` with ``args``), logging people in as
    ``login_env`` says; yields its URL once it answers, stops it after."""
    from sandbox.demo import SANDBOX_API_KEY

    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEGO_")}
    env.update(MOEGO_MONITOR_DB=str(demo.db), MOEGO_API_KEY=SANDBOX_API_KEY, MOEGO_BASE_URL=demo.sandbox, **login_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "dashboard" / "app.py"), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200, 60, proc, what)
        yield url
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _as(user: str | None) -> dict[str, str]:
    return {} if user is None else {"X-Forwarded-User": user, "X-Moego-Monitor-Proxy-Secret": PROXY_SECRET}


def test_team_console_behind_a_login_proxy(proxied, browser):
    from playwright.sync_api import expect

    url, db = proxied
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (delivery_id,) = conn.execute(
            "SELECT id FROM deliveries WHERE success = 0 AND delivered_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day') "
            "AND id NOT IN (SELECT delivery_id FROM redeliveries) ORDER BY delivered_at DESC LIMIT 1").fetchone()
    # Straight to the port, past the proxy: nothing but the refusal.
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{url}/deliveries?delivery={delivery_id}")
    expect(page.get_by_text("This console answers only through its login proxy")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(f"Delivery {delivery_id}")).to_have_count(0)

    # A viewer reads the entry; the Redeliver button is disabled and says why.
    page = browser.new_context(viewport={"width": 1400, "height": 1000}, extra_http_headers=_as("victor")).new_page()
    page.goto(f"{url}/deliveries?delivery={delivery_id}")
    expect(page.get_by_text(f"Delivery {delivery_id}")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Signed in as victor (viewer)", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Redeliver", exact=True)).to_be_disabled(timeout=30_000)
    # An operator's console, as the project's Streamlit config has it: no "Deploy" button, no developer menu.
    expect(page.locator('[data-testid="stAppDeployButton"], [data-testid="stMainMenu"]')).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "e2e-viewer.png"), full_page=True)

    # An operator redelivers it; the audit names her.
    page = browser.new_context(viewport={"width": 1400, "height": 1000}, extra_http_headers=_as("olivia")).new_page()
    page.goto(f"{url}/deliveries?delivery={delivery_id}")
    expect(page.get_by_text("Signed in as olivia (operator)", exact=True)).to_be_visible(timeout=30_000)
    page.locator(".st-key-redeliver").get_by_role("button").click()
    page.locator(".st-key-redeliver_confirm").get_by_role("button").click()
    expect(page.get_by_text(re.compile(rf"Redelivered {delivery_id}(:|, but) the new attempt")).first).to_be_visible(
        timeout=60_000)
    page.context.close()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        audit = conn.execute("SELECT outcome, requested_by FROM redeliveries WHERE delivery_id = ?", (delivery_id,)).fetchall()
    assert audit == [("sent", "olivia")]


def test_a_crafted_link_draws_no_link_and_fetches_nothing(demo, browser, outside_requests):
    """`/deliveries?delivery=` with Markdown in it: shown as the characters it is; the browser fetches no image."""
    import http.server
    import threading
    from urllib.parse import quote

    from playwright.sync_api import expect

    url = demo.url
    hits: list[str] = []

    class Pixel(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Pixel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pixel = f"http://127.0.0.1:{server.server_address[1]}/pixel.png"
    crafted = (f"x` Your session expired: [log in here](https://evil.example/login) ![p]({pixel}) "
               f"<img src=\"{pixel}?html\"> www.evil.example")
    try:
        page = open_page(browser, outside_requests, 1400, 1000)
        page.goto(f"{url}/deliveries?delivery={quote(crafted)}")
        expect(page.get_by_text("in the archive.")).to_be_visible(timeout=30_000)
        warning = page.locator("[data-testid='stAlertContentWarning']")
        expect(warning).to_contain_text("[log in here](https://evil.example/login)")
        page.wait_for_timeout(1_000)
        assert page.locator("a[href*='evil.example']").count() == 0
        assert page.locator(f"img[src*='{server.server_address[1]}']").count() == 0
        page.screenshot(path=str(ARTIFACTS / "e2e-crafted-link.png"), full_page=True)
        page.context.close()
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []


# -- the console for a team with an identity provider: st.login against OpenID Connect, end to end ------------


@pytest.fixture(scope="module")
def oidc_console(demo, tmp_path_factory):
    """A third dashboard on the demo's archive, logging people in with `MOEGO_MONITOR_AUTH=oidc` against a local
    OpenID Connect provider (tests/e2e/oidc_provider.py): olivia@example.com operates, victor@example.com views."""
    from .oidc_provider import OidcProvider

    port = free_port()
    with OidcProvider() as idp:
        secrets_file = tmp_path_factory.mktemp("oidc") / "secrets.toml"
        secrets_file.write_text(idp.secrets_toml(f"http://127.0.0.1:{port}"))
        env = dict(MOEGO_MONITOR_AUTH="oidc", MOEGO_MONITOR_OPERATORS="olivia@example.com",
                   MOEGO_MONITOR_VIEWERS="victor@example.com")
        with _team_dashboard(demo, env, "the OIDC dashboard", "--secrets.files", str(secrets_file),
                             port=port) as url:
            yield url, idp


def _log_in(browser, url: str, email: str):
    """A new browser: open the console, press "Log in", sign in at the provider as ``email``; the page after."""
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    expect(page.get_by_text("This console needs a login.")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Example identity provider")).to_be_visible(timeout=30_000)
    page.get_by_label("E-mail").fill(email)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/**", timeout=30_000)
    return page


def test_team_console_with_an_openid_connect_login(demo, oidc_console, browser):
    from playwright.sync_api import expect

    url, idp = oidc_console
    # Before logging in: only the login screen, no page of the archive.
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{url}/deliveries")
    expect(page.get_by_text("This console needs a login.")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Deliveries in view")).to_have_count(0)
    page.context.close()

    # An operator logs in at the provider and comes back signed in; her redelivery is audited under her e-mail.
    with sqlite3.connect(f"file:{demo.db}?mode=ro", uri=True) as conn:
        (delivery_id,) = conn.execute(
            "SELECT id FROM deliveries WHERE success = 0 AND delivered_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day') "
            "AND id NOT IN (SELECT delivery_id FROM redeliveries) ORDER BY delivered_at DESC LIMIT 1").fetchone()
    page = _log_in(browser, url, "Olivia@Example.com")
    expect(page.get_by_text("Signed in as olivia@example.com (operator)", exact=True)).to_be_visible(timeout=30_000)
    page.goto(f"{url}/deliveries?delivery={delivery_id}")
    expect(page.get_by_text(f"Delivery {delivery_id}")).to_be_visible(timeout=30_000)
    page.locator(".st-key-redeliver").get_by_role("button").click()
    page.locator(".st-key-redeliver_confirm").get_by_role("button").click()
    expect(page.get_by_text(re.compile(rf"Redelivered {delivery_id}(:|, but) the new attempt")).first).to_be_visible(
        timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "e2e-oidc-operator.png"), full_page=True)
    page.context.close()
    with sqlite3.connect(f"file:{demo.db}?mode=ro", uri=True) as conn:
        audit = conn.execute("SELECT outcome, requested_by FROM redeliveries WHERE delivery_id = ?", (delivery_id,)).fetchall()
    assert audit == [("sent", "olivia@example.com")]

    # A viewer reads, and may not act.
    page = _log_in(browser, url, "victor@example.com")
    expect(page.get_by_text("Signed in as victor@example.com (viewer)", exact=True)).to_be_visible(timeout=30_000)
    page.context.close()

    # Someone the provider knows but the console does not, and an e-mail the provider has not verified: refused.
    page = _log_in(browser, url, "mallory@example.com")
    expect(page.get_by_text("mallory@example.com may not use this console")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Signed in as", exact=False)).to_have_count(0)
    page.context.close()
    page = _log_in(browser, url, "unverified-olivia@example.com")
    expect(page.get_by_text("has not verified the e-mail")).to_be_visible(timeout=30_000)
    page.context.close()
    assert idp.issued == ["Olivia@Example.com", "victor@example.com", "mallory@example.com",
                          "unverified-olivia@example.com"]
