"""The archive writer: what reaches the archive, and what never does."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from collectors import archive
from collectors.archive import writer
from collectors.models import Webhook, WebhookDelivery

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def test_a_webhooks_custom_header_values_are_redacted_in_its_deliveries_too(tmp_path):
    """MoeGo sends (and logs) a webhook's custom headers with every delivery: often the receiver's credentials."""
    db = archive.connect(tmp_path / "a.db")
    archive.ensure_db_shape(db)
    hook = Webhook(id="whk_1", endpoint_url="https://partner.example/hook",
                   headers={"X-Partner-Token": ["pt-SECRET-123"]})
    delivery = WebhookDelivery(
        id="dlv_1", webhook_id="whk_1", delivered_at=NOW, success=True, response_status=200,
        request_headers={"X-Partner-Token": ["pt-SECRET-123"], "X-Moe-Event-Type": ["PET_CREATED"]},
        response_headers={"x-partner-token": ["pt-SECRET-123"]},
    )
    with archive.transaction(db):
        writer.save_webhooks(db, [hook], seen_at=NOW)
        writer.save_deliveries(db, [delivery], seen_at=NOW)
    request_headers, response_headers = db.execute(
        "SELECT request_headers, response_headers FROM deliveries").fetchone()
    everything = str(db.execute("SELECT * FROM deliveries").fetchall()) + str(
        db.execute("SELECT * FROM webhooks").fetchall())
    db.close()
    assert json.loads(request_headers) == {"X-Partner-Token": ["[redacted]"], "X-Moe-Event-Type": ["PET_CREATED"]}
    assert json.loads(response_headers) == {"x-partner-token": ["[redacted]"]}
    assert "pt-SECRET-123" not in everything
