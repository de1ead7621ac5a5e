"""Test events: ask MoeGo to send a test event to a webhook (TriggerTestWebhookDelivery), archive the attempt,
and audit who asked (``test_events``)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Sequence

from . import archive
from .archive import writer
from .client import MoeGoClient, MoeGoError, make_client
from .config import Settings
from .archive.audit import record_test_event
from .models import WebhookDelivery
from .redelivery import utcnow

__all__ = ["SentTestEvent", "send_test_event", "send_test_event_now"]


@dataclass(frozen=True)
class SentTestEvent:
    """The outcome of TriggerTestWebhookDelivery: MoeGo's attempt, or the one-line error."""

    webhook_id: str
    delivery: WebhookDelivery | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when MoeGo sent the test event and the endpoint answered 2xx."""
        return self.delivery is not None and self.delivery.success


def _audit(conn: sqlite3.Connection, sent: SentTestEvent, *, at: datetime, event_type: str | None,
           requested_by: str) -> None:
    record_test_event(conn, at=at, webhook_id=sent.webhook_id, event_type=event_type,
                      delivery_id=sent.delivery.id if sent.delivery else None, error=sent.error,
                      requested_by=requested_by)


def send_test_event(client: MoeGoClient, conn: sqlite3.Connection, webhook_id: str, *, event_type: str | None = None,
                    payload: bytes | None = None, secret_headers: Sequence[str] = (),
                    clock: Callable[[], datetime] = utcnow, requested_by: str = "cli") -> SentTestEvent:
    """Ask MoeGo to send a test event to ``webhook_id``, save the attempt it reports in the archive, and
    audit the request in ``test_events`` under ``requested_by``.

    Never raises :class:`~collectors.client.MoeGoError`: the error comes back in ``error``.
    """
    asked_at = clock()
    try:
        delivery = client.trigger_test(webhook_id, event_type=event_type, payload=payload)
    except MoeGoError as exc:
        sent = SentTestEvent(webhook_id, error=str(exc))
        with archive.transaction(conn):
            _audit(conn, sent, at=asked_at, event_type=event_type, requested_by=requested_by)
        return sent
    sent = SentTestEvent(webhook_id, delivery=delivery)
    with archive.transaction(conn):
        if delivery.delivered_at is not None:
            writer.save_deliveries(conn, [delivery], seen_at=clock(), secret_headers=secret_headers)
        _audit(conn, sent, at=asked_at, event_type=event_type, requested_by=requested_by)
    return sent


def send_test_event_now(settings: Settings, webhook_id: str, *, event_type: str | None = None,
                        payload: bytes | None = None, requested_by: str = "cli") -> SentTestEvent:
    """:func:`send_test_event` with a client and the archive opened from ``settings`` (both closed after)."""
    conn = archive.connect(settings.db_path)
    try:
        with make_client(settings) as client:
            return send_test_event(client, conn, webhook_id, event_type=event_type, payload=payload,
                                   secret_headers=settings.secret_headers, requested_by=requested_by)
    finally:
        conn.close()
