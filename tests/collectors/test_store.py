"""The archive writer: what reaches the archive, and what never does."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from collectors import archive
from collectors.archive import codec, writer
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
    stored = codec.payload_of(db, "dlv_1")
    request_headers, response_headers = stored["request_headers"], stored["response_headers"]
    # Every column as stored, and the payload decompressed: the secret is in none of them.
    everything = str(db.execute("SELECT * FROM deliveries").fetchall()) + str(
        db.execute("SELECT * FROM webhooks").fetchall()) + str(stored)
    db.close()
    assert json.loads(request_headers) == {"X-Partner-Token": ["[redacted]"], "X-Moe-Event-Type": ["PET_CREATED"]}
    assert json.loads(response_headers) == {"x-partner-token": ["[redacted]"]}
    assert "pt-SECRET-123" not in everything


def test_the_writers_codec_follows_the_dictionaries_a_rolled_back_training_left_behind(tmp_path):
    """The writer keeps its codec for the next page while the archive's dictionaries are the same. A training that
    was rolled back (its page failed) leaves no dictionary, and the next one trained gets the same id: rows written
    after it decode with it, and rows from before with theirs."""
    from datetime import timedelta

    from tests.seed import delivery

    db = archive.connect(tmp_path / "a.db")
    archive.ensure_db_shape(db)

    def page(prefix: str, count: int, word: str) -> list:
        return [delivery(f"dlv_{prefix}{i}", "whk_1", NOW - timedelta(seconds=i),
                         request_body=json.dumps({"n": i, "word": word * (i % 7 + 1)}).encode()) for i in range(count)]

    with archive.transaction(db):
        writer.save_deliveries(db, page("a", codec.TRAIN_AT, "alpha"), seen_at=NOW)
    try:
        with archive.transaction(db):
            writer.save_deliveries(db, page("b", 10, "beta"), seen_at=NOW)  # trains dictionary 1
            writer.save_deliveries(db, page("b", 10, "beta"), seen_at=NOW)  # one page more in the same batch
            assert db.execute("SELECT count(*) FROM codec_dicts").fetchone()[0] == 1
            raise RuntimeError("the batch failed")
    except RuntimeError:
        pass
    assert db.execute("SELECT count(*) FROM codec_dicts").fetchone()[0] == 0
    with archive.transaction(db):
        db.execute("DELETE FROM deliveries")
        writer.save_deliveries(db, [delivery(f"dlv_c{i}", "whk_1", NOW - timedelta(seconds=i),
                                             request_body=f"<xml>{i * 7919}</xml>".encode())
                                    for i in range(codec.TRAIN_AT)], seen_at=NOW)
        writer.save_deliveries(db, page("d", 10, "delta"), seen_at=NOW)  # trains dictionary 1 again, on other rows
    with archive.transaction(db):
        writer.save_deliveries(db, page("e", 10, "epsilon"), seen_at=NOW)  # the codec kept, if it is still right
    for prefix, word in (("d", "delta"), ("e", "epsilon")):
        for i in range(10):
            body = codec.payload_of(db, f"dlv_{prefix}{i}")["request_body"]
            assert json.loads(body) == {"n": i, "word": word * (i % 7 + 1)}, (prefix, i)
    assert codec.payload_of(db, "dlv_c5")["request_body"] == f"<xml>{5 * 7919}</xml>"
    assert db.execute("SELECT count(*) FROM deliveries WHERE substr(payload, 1, 1) <> x'01'").fetchone()[0] == 0
    db.close()
