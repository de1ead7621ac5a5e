"""Test events: ask MoeGo to send a test event to a webhook (TriggerTestWebhookDelivery) and archive the attempt."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Sequence

from . import archive
from .archive import writer
from .client import MoeGoClient, MoeGoError, make_client
from .config import Settings
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


def send_test_event(client: MoeGoClient, conn: sqlite3.Connection, webhook_id: str, *, event_type: str | None = None,
                    payload: bytes | None = None, secret_headers: Sequence[str] = (),
                    clock: Callable[[], datetime] = utcnow) -> SentTestEvent:
    """Ask MoeGo to send a test event to ``webhook_id`` and save the attempt it reports in the archive.

    Never raises :class:`~collectors.client.MoeGoError`: the error comes back in ``error``.
    """
    try:
        delivery = client.trigger_test(webhook_id, event_type=event_type, payload=payload)
    except MoeGoError as exc:
        return SentTestEvent(webhook_id, error=str(exc))
    if delivery.delivered_at is not None:
        with archive.transaction(conn):
            writer.save_deliveries(conn, [delivery], seen_at=clock(), secret_headers=secret_headers)
    return SentTestEvent(webhook_id, delivery=delivery)


def send_test_event_now(settings: Settings, webhook_id: str, *, event_type: str | None = None,
                        payload: bytes | None = None) -> SentTestEvent:
    """:func:`send_test_event` with a client and the archive opened from ``settings`` (both closed after)."""
    conn = archive.connect(settings.db_path)
    try:
        with make_client(settings) as client:
            return send_test_event(client, conn, webhook_id, event_type=event_type, payload=payload,
                                   secret_headers=settings.secret_headers)
    finally:
        conn.close()
