"""Build a synthetic archive through the product's own writer, so rollups and FTS are as in production."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from collectors import archive
from collectors.archive import writer
from collectors.models import WebhookDelivery

EVENT_TYPES = ("APPOINTMENT_CREATED", "APPOINTMENT_UPDATED", "CUSTOMER_UPDATED", "PET_UPDATED", "PET_CREATED")


def synthetic_deliveries(count: int, *, webhooks: int, days: int, end: datetime, seed: int = 1):
    """``count`` deliveries spread evenly over ``days`` before ``end`` across ``webhooks`` webhooks."""
    rng = random.Random(seed)
    step = timedelta(days=days) / count
    start = end - timedelta(days=days)
    for i in range(count):
        ok = rng.random() > 0.04
        status = 200 if ok else rng.choice((500, 502, 503, 404, 0))
        event_id = f"evt-{i:09d}"
        body = json.dumps({"id": event_id, "type": EVENT_TYPES[i % 5], "companyId": "cmp_1",
                           "payload": {"customerId": str(rng.randrange(10**8)), "note": "Rex needs a bath"}})
        yield WebhookDelivery(
            id=f"dlv-{i:09d}", webhook_id=f"whk_{i % webhooks}", event_type=EVENT_TYPES[i % 5], event_id=event_id,
            request_url="https://partner.example/hooks", delivered_to="203.0.113.7:443",
            request_headers={"User-Agent": ["Moego/Webhook-1.0"], "Authorization": ["Bearer t"],
                             "X-Moe-Nonce": [str(rng.randrange(10**17))]},
            request_body=body.encode(), response_status=status, response_body=b'{"received":true}',
            delivered_at=start + step * i, duration_ms=int(rng.lognormvariate(5, 0.7)), success=ok,
            error="" if ok else ("unexpected status %d" % status if status else "context deadline exceeded"),
            retry_count=0 if ok else 3, request_format="CONTENT_TYPE_JSON", response_format="CONTENT_TYPE_JSON",
        )


def build_archive(path: Path, *, rows: int, webhooks: int = 10, days: int = 30, end: datetime | None = None) -> datetime:
    """Write ``rows`` deliveries into a new archive at ``path``, 500 per transaction; returns ``end``."""
    end = end or datetime(2026, 11, 1, tzinfo=timezone.utc)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = archive.connect(path)
    archive.ensure_db_shape(db)
    page: list[WebhookDelivery] = []
    for delivery in synthetic_deliveries(rows, webhooks=webhooks, days=days, end=end):
        page.append(delivery)
        if len(page) == 500:
            with archive.transaction(db):
                writer.save_deliveries(db, page, seen_at=end)
            page = []
    if page:
        with archive.transaction(db):
            writer.save_deliveries(db, page, seen_at=end)
    db.execute("ANALYZE")
    db.close()
    return end
