"""Archives with known deliveries for the rules, and running the alerts at a chosen moment."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Iterable

import pytest

from collectors import archive
from collectors.archive import writer
from collectors.alerts import AlertsOutcome, run_alerts
from collectors.alerts.config import parse_alerts_config
from collectors.alerts.incidents import Incident, history, list_incidents
from collectors.config import Settings
from collectors.models import Webhook, format_timestamp
from tests.seed import delivery

NOW = datetime(2026, 11, 20, 12, 0, 30, tzinfo=timezone.utc)
API_KEY = "key-that-must-never-leave-0123456789"


@dataclasses.dataclass
class Archive:
    """A real archive file and the helpers to fill it and run the alerts on it."""

    path: Path
    environ: dict[str, str] = dataclasses.field(default_factory=dict)
    config_text: str = ""
    counter: int = 0

    def db(self, readonly: bool = False):
        """A connection to the archive (the caller closes it)."""
        return archive.connect(self.path, readonly=readonly)

    def webhook(self, webhook_id: str, endpoint: str | None = None, *, active: bool = True, synced: datetime = NOW) -> None:
        hook = Webhook(id=webhook_id, endpoint_url=endpoint or f"https://receiver.example/{webhook_id}",
                       event_types=["APPOINTMENT_CREATED"], is_active=active, headers={"Authorization": ["Bearer hdr-secret-value"]})
        conn = self.db()
        with archive.transaction(conn):
            writer.save_webhooks(conn, [hook], seen_at=synced)
            conn.execute("INSERT OR REPLACE INTO sync_state (webhook_id, last_success_at) VALUES (?, ?)",
                         (webhook_id, format_timestamp(synced)))
            conn.execute("INSERT OR REPLACE INTO coverage (webhook_id, start, end) VALUES (?, ?, ?)",
                         (webhook_id, format_timestamp(synced - timedelta(days=16)), format_timestamp(synced)))
        conn.close()

    def deliveries(self, webhook_id: str, outcomes: Iterable[tuple[datetime, bool]], *, duration_ms: int = 100,
                   event_ids: Iterable[str] | None = None) -> None:
        ids = list(event_ids) if event_ids is not None else None
        items = []
        for i, (at, ok) in enumerate(outcomes):
            self.counter += 1
            items.append(delivery(f"dlv_{self.counter:05d}", webhook_id, at, success=ok, status=200 if ok else 503,
                                  duration_ms=duration_ms, error="" if ok else "unexpected status 503",
                                  event_id=ids[i] if ids else None))
        conn = self.db()
        with archive.transaction(conn):
            writer.save_deliveries(conn, items, seen_at=NOW)
        conn.close()

    def settings(self) -> Settings:
        config_path = self.path.with_name("moego-monitor.toml")
        if self.config_text:
            config_path.write_text(self.config_text)
        return Settings(api_key=API_KEY, base_url="http://127.0.0.1:9", db_path=self.path,
                        config_path=config_path if self.config_text else None,
                        environ=MappingProxyType(dict(self.environ)))

    def run(self, now: datetime = NOW) -> AlertsOutcome:
        conn = self.db()
        try:
            return run_alerts(self.settings(), conn, now=now)
        finally:
            conn.close()

    def incidents(self) -> list[Incident]:
        conn = self.db(readonly=True)
        try:
            return list_incidents(conn)
        finally:
            conn.close()

    def history(self, incident_id: int):
        conn = self.db(readonly=True)
        try:
            return history(conn, incident_id)
        finally:
            conn.close()

    def rows(self, sql: str, *params: object) -> list[tuple]:
        conn = self.db(readonly=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


@pytest.fixture
def arch(tmp_path: Path) -> Archive:
    """An empty archive at the current schema."""
    path = tmp_path / "archive.db"
    conn = archive.connect(path)
    archive.ensure_db_shape(conn)
    conn.close()
    return Archive(path)


def minutes_ago(*minutes: float, ok: bool, now: datetime = NOW) -> list[tuple[datetime, bool]]:
    return [(now - timedelta(minutes=m), ok) for m in minutes]


def config(text: str, environ: dict[str, str] | None = None):
    return parse_alerts_config(text, environ or {})
