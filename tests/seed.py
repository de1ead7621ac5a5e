"""A small archive with known contents, written through ``collectors.archive.writer`` so the rollup is consistent.

Everything is placed relative to ``now`` so the same archive serves unit tests (fixed ``now``)
and AppTests (the real clock). The expected numbers are computed here from the Python lists,
independently of the SQL under test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from collectors import archive
from collectors.archive import writer
from collectors.models import Organization, Webhook, WebhookDelivery, format_timestamp

ALPHA, BETA, GAMMA = "wh_alpha", "wh_beta", "wh_gamma"
#: A fixed, not hour-aligned "now" for unit tests.
NOW = datetime(2026, 11, 20, 12, 34, 56, tzinfo=timezone.utc)

# Durations of wh_alpha's 40 current deliveries: 4 failures first (k = 1..4), then successes.
ALPHA_DURATIONS = [30_000, 120, 35, 2_400] + [80 + 10 * i for i in range(36)]


def delivery(
    delivery_id: str,
    webhook_id: str,
    at: datetime,
    *,
    success: bool = True,
    status: int = 200,
    duration_ms: int = 100,
    event_type: str = "APPOINTMENT_CREATED",
    event_id: str | None = None,
    error: str = "",
    request_body: bytes | None = None,
    response_body: bytes = b'{"ok":true}',
    retry_count: int = 0,
) -> WebhookDelivery:
    """A delivery log entry with the headers MoeGo sends (secret ones included, to be redacted)."""
    body = request_body if request_body is not None else json.dumps(
        {"id": event_id or f"evt_{delivery_id}", "type": event_type, "payload": {"appointmentId": delivery_id}}
    ).encode()
    return WebhookDelivery(
        id=delivery_id,
        webhook_id=webhook_id,
        event_type=event_type,
        event_id=event_id or f"evt_{delivery_id}",
        request_url=f"https://receiver.example/{webhook_id}",
        delivered_to="203.0.113.7:443",
        request_headers={
            "Content-Type": ["application/json"],
            "X-Moe-Signature-256": ["c2lnbmF0dXJl"],
            "X-Moe-Delivery-ID": [delivery_id],
        },
        request_body=body,
        response_status=status,
        response_headers={"Content-Type": ["application/json"], "Set-Cookie": ["session=abc"]},
        response_body=response_body,
        delivered_at=at,
        duration_ms=duration_ms,
        success=success,
        error=error,
        retry_count=retry_count,
        request_format="CONTENT_TYPE_JSON",
        response_format="CONTENT_TYPE_JSON",
    )


@dataclass
class Seed:
    """The archive's path, its ``now``, and what tests expect of it."""

    path: Path
    now: datetime
    deliveries: list[WebhookDelivery] = field(default_factory=list)

    def in_window(self, since: datetime, until: datetime, **match: object) -> list[WebhookDelivery]:
        """The seeded deliveries in ``[since, until)`` whose attributes equal ``match``."""
        out = []
        for d in self.deliveries:
            assert d.delivered_at is not None
            if not since <= d.delivered_at < until:
                continue
            if all(getattr(d, k) == v for k, v in match.items()):
                out.append(d)
        return out


def build(now: datetime) -> list[WebhookDelivery]:
    """The seeded deliveries, relative to ``now``."""
    out: list[WebhookDelivery] = []
    # wh_alpha, last 24 h: one every 30 min, k = 1..40; k = 1..4 failed in four different ways.
    failures = {
        1: dict(success=False, status=0, error="context deadline exceeded (Client.Timeout exceeded)"),
        2: dict(success=False, status=500, error="=HYPERLINK(\"http://evil.example\",\"click\")"),
        3: dict(success=False, status=404, error="endpoint answered 404"),
        4: dict(success=False, status=503, error="endpoint answered 503"),
    }
    for k in range(1, 41):
        extra = failures.get(k, {})
        event_type = "CUSTOMER_CREATED" if k % 4 == 0 else "APPOINTMENT_CREATED"
        body = None
        if k == 7:
            body = json.dumps({"id": "evt_a7", "type": event_type, "payload": {"customer": "Ada Lovelace"}}).encode()
        out.append(
            delivery(f"dlv_a{k:02d}", ALPHA, now - timedelta(minutes=30 * k), duration_ms=ALPHA_DURATIONS[k - 1],
                     event_type=event_type, request_body=body, **extra)  # type: ignore[arg-type]
        )
    # wh_alpha, the previous 24 h: 20 successes, one an hour.
    for k in range(1, 21):
        out.append(delivery(f"dlv_p{k:02d}", ALPHA, now - timedelta(hours=24, minutes=60 * k), duration_ms=90))
    # wh_beta: 2 successes long ago in the window, then 8 failures in a row (the latest entries).
    for k in range(1, 11):
        ok = k > 8
        out.append(
            delivery(f"dlv_b{k:02d}", BETA, now - timedelta(minutes=45 * k), success=ok, status=200 if ok else 500,
                     duration_ms=250, event_type="PET_CREATED", error="" if ok else "endpoint answered 500")
        )
    # One event tried three times at wh_alpha: failed, failed, then succeeded (bulk must skip the failures).
    base = now - timedelta(hours=22, minutes=7)
    out.append(delivery("dlv_r1", ALPHA, base, success=False, status=502, event_id="evt_retry", error="bad gateway"))
    out.append(delivery("dlv_r2", ALPHA, base + timedelta(minutes=5), success=False, status=502, event_id="evt_retry",
                        error="bad gateway"))
    out.append(delivery("dlv_r3", ALPHA, base + timedelta(minutes=10), event_id="evt_retry"))
    # Twenty days ago, beyond MoeGo's retention: only the archive still has these.
    for k in range(1, 6):
        out.append(delivery(f"dlv_old{k}", ALPHA, now - timedelta(days=20, minutes=k), duration_ms=60))
    return out


def webhooks(now: datetime) -> list[Webhook]:
    """Three webhooks: alpha with a secret and a custom header, beta without, gamma disabled."""
    return [
        Webhook(id=ALPHA, endpoint_url="https://receiver.example/wh_alpha", event_types=["APPOINTMENT_CREATED", "CUSTOMER_CREATED"],
                secret_token="s3cr3t-token-value", is_active=True, verify_ssl=True,
                headers={"X-Api-Key": ["very-secret-key"]}, organizations=[Organization(id="org1", type="COMPANY")],
                created_time=now - timedelta(days=60), updated_time=now - timedelta(days=2)),
        Webhook(id=BETA, endpoint_url="https://receiver.example/wh_beta", event_types=["PET_CREATED"], is_active=True),
        Webhook(id=GAMMA, endpoint_url="https://receiver.example/wh_gamma", event_types=["PET_DELETED"], is_active=False),
    ]


def seed(path: Path, now: datetime) -> Seed:
    """Create the archive at ``path`` with :func:`build`'s deliveries, webhooks, coverage, runs and one audit row."""
    db = archive.connect(path)
    archive.ensure_db_shape(db)
    items = build(now)
    with archive.transaction(db):
        writer.save_webhooks(db, webhooks(now), seen_at=now)
        writer.save_deliveries(db, items, seen_at=now)
    with archive.transaction(db) as conn:
        cover = [
            (ALPHA, now - timedelta(days=16), now - timedelta(days=14, hours=12)),
            (ALPHA, now - timedelta(days=14), now - timedelta(hours=1)),
            (BETA, now - timedelta(days=10), now - timedelta(hours=1)),
        ]
        for webhook_id, start, end in cover:
            conn.execute("INSERT INTO coverage (webhook_id, start, end) VALUES (?, ?, ?)",
                         (webhook_id, format_timestamp(start), format_timestamp(end)))
        conn.execute(
            "INSERT INTO collector_runs (started_at, finished_at, outcome, trigger, webhooks, pages, new_rows, updated_rows) "
            "VALUES (?, ?, 'ok', 'schedule', 3, 4, ?, 0)",
            (format_timestamp(now - timedelta(minutes=20)), format_timestamp(now - timedelta(minutes=19)), len(items)),
        )
        conn.execute(
            "INSERT INTO collector_runs (started_at, finished_at, outcome, trigger, error) VALUES (?, ?, 'failed', 'schedule', ?)",
            (format_timestamp(now - timedelta(minutes=80)), format_timestamp(now - timedelta(minutes=79)),
             "MoeGo is unavailable for ListWebhookDeliveries (HTTP 503): try again later"),
        )
        conn.execute(
            "INSERT INTO redeliveries (requested_at, delivery_id, webhook_id, event_id, outcome, new_delivery_id, "
            "new_success, new_status, requested_by) VALUES (?, 'dlv_a03', ?, 'evt_dlv_a03', 'sent', 'dlv_new', 1, 200, 'dashboard')",
            (format_timestamp(now - timedelta(hours=2)), ALPHA),
        )
    db.close()
    return Seed(path=path, now=now, deliveries=items)
