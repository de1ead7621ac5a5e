"""End to end, as a person would: `moego-monitor demo` up, a real Chromium, redeliver a failed entry, acknowledge an incident.

The demo stack (sandbox, scheduled collector, dashboard) runs as one subprocess exactly as
`make demo` starts it; Playwright drives Debian's /usr/bin/chromium. The test saves a screenshot
of the redelivered entry to test-artifacts/. Without chromium it skips locally and fails under CI.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`moego-monitor demo` on free ports with its own archive; yields (dashboard URL, archive path, sandbox URL)."""
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
        yield url, db, f"http://127.0.0.1:{sandbox_port}"
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


def test_filter_to_failures_open_one_and_redeliver_it(demo):
    from playwright.sync_api import expect, sync_playwright

    url, db, _ = demo
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
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

            # Redeliver it: one click, a confirmation, then the outcome.
            page.locator(".st-key-redeliver").get_by_role("button").click()
            page.locator(".st-key-redeliver_confirm").get_by_role("button").click()
            outcome = page.get_by_text(re.compile(rf"Redelivered {delivery_id}: the new attempt dlv_[0-9a-f]+")).first
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
        finally:
            browser.close()


def _open_incident(db: Path) -> int | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT id FROM incidents WHERE state = 'open' ORDER BY opened_at DESC, id DESC LIMIT 1").fetchone()
    return row[0] if row else None


def test_acknowledge_an_incident_with_ones_name(demo):
    from playwright.sync_api import expect, sync_playwright

    url, db, _ = demo
    deadline = time.monotonic() + 120  # the demo's rules run after its first collector pass
    while (incident_id := _open_incident(db)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert incident_id is not None, "the demo's rules opened no incident within 2 minutes"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
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
        finally:
            browser.close()
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
    from sandbox.demo import SANDBOX_API_KEY

    _, db, sandbox_url = demo
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEGO_")}
    env.update(MOEGO_MONITOR_DB=str(db), MOEGO_API_KEY=SANDBOX_API_KEY, MOEGO_BASE_URL=sandbox_url,
               MOEGO_MONITOR_AUTH="proxy", MOEGO_MONITOR_OPERATORS="olivia", MOEGO_MONITOR_VIEWERS="victor",
               MOEGO_MONITOR_PROXY_SECRET=PROXY_SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "dashboard" / "app.py"), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200, 60, proc, "the team dashboard")
        yield url, db
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _as(user: str | None) -> dict[str, str]:
    return {} if user is None else {"X-Forwarded-User": user, "X-Moego-Monitor-Proxy-Secret": PROXY_SECRET}


def test_team_console_behind_a_login_proxy(proxied):
    from playwright.sync_api import expect, sync_playwright

    url, db = proxied
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (delivery_id,) = conn.execute(
            "SELECT id FROM deliveries WHERE success = 0 AND delivered_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day') "
            "AND id NOT IN (SELECT delivery_id FROM redeliveries) ORDER BY delivered_at DESC LIMIT 1").fetchone()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
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
            page.screenshot(path=str(ARTIFACTS / "e2e-viewer.png"), full_page=True)

            # An operator redelivers it; the audit names her.
            page = browser.new_context(viewport={"width": 1400, "height": 1000}, extra_http_headers=_as("olivia")).new_page()
            page.goto(f"{url}/deliveries?delivery={delivery_id}")
            expect(page.get_by_text("Signed in as olivia (operator)", exact=True)).to_be_visible(timeout=30_000)
            page.locator(".st-key-redeliver").get_by_role("button").click()
            page.locator(".st-key-redeliver_confirm").get_by_role("button").click()
            expect(page.get_by_text(re.compile(rf"Redelivered {delivery_id}: the new attempt")).first).to_be_visible(
                timeout=60_000)
        finally:
            browser.close()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        audit = conn.execute("SELECT outcome, requested_by FROM redeliveries WHERE delivery_id = ?", (delivery_id,)).fetchall()
    assert audit == [("sent", "olivia")]


def test_a_crafted_link_draws_no_link_and_fetches_nothing(demo):
    """`/deliveries?delivery=` with Markdown in it: shown as the characters it is; the browser fetches no image."""
    import http.server
    import threading
    from urllib.parse import quote

    from playwright.sync_api import expect, sync_playwright

    url, _, _ = demo
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
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{url}/deliveries?delivery={quote(crafted)}")
                expect(page.get_by_text("in the archive.")).to_be_visible(timeout=30_000)
                warning = page.locator("[data-testid='stAlertContentWarning']")
                expect(warning).to_contain_text("[log in here](https://evil.example/login)")
                page.wait_for_timeout(1_000)
                assert page.locator("a[href*='evil.example']").count() == 0
                assert page.locator(f"img[src*='{server.server_address[1]}']").count() == 0
                page.screenshot(path=str(ARTIFACTS / "e2e-crafted-link.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []
