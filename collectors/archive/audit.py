"""The console's audit of test events: who asked MoeGo to send one, to which webhook, and what came of it.

(Redeliveries are audited by :mod:`collectors.redelivery` in ``redeliveries``; collections name who asked in
``collector_runs.requested_by``, see :func:`collectors.archive.runs.start_run`.)
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from ..models import format_timestamp
from .runs import one_line

__all__ = ["record_test_event"]


def record_test_event(conn: sqlite3.Connection, *, at: datetime, webhook_id: str, event_type: str | None,
                      delivery_id: str | None, error: str | None, requested_by: str) -> None:
    """Add a ``test_events`` row (inside the caller's transaction): ``sent`` with MoeGo's attempt id, or
    ``failed`` with the one-line error when MoeGo did not send it."""
    conn.execute(
        "INSERT INTO test_events (requested_at, webhook_id, event_type, outcome, delivery_id, error, requested_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (format_timestamp(at), webhook_id, event_type, "failed" if delivery_id is None else "sent", delivery_id,
         one_line(error) if error else None, requested_by),
    )
