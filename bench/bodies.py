"""Body shapes (issue #12): what decoding base64 payloads for search costs the writer and the index.

The same events are written through the archive writer twice, side by side: once with each payload as
an object (MoeGo's proto ``oneof`` shape) and once as the base64 of that object (``oneof-base64``).
Decoding happens only for the second; the first pays only the check for a string payload. Reported as
ratios of medians, plus the full-text index's bytes per entry in each archive (from ``dbstat``).
"""

from __future__ import annotations

import base64
import json
import random
import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from collectors import archive
from collectors.archive import writer
from collectors.models import WebhookDelivery

from .archive_gen import synthetic_deliveries

__all__ = ["bench_body_shapes"]

_NAMES = ("Olivia", "Liam", "Emma", "Noah", "Ava", "Mia", "Lucas", "Sofia")


def _shaped(deliveries: list[WebhookDelivery], *, as_base64: bool) -> list[WebhookDelivery]:
    rng = random.Random(12)
    out = []
    for d in deliveries:
        customer = {"id": str(rng.randrange(10**8)), "firstName": rng.choice(_NAMES), "lastName": "Garcia",
                    "email": f"c{rng.randrange(10**6)}@example.com", "phoneNumber": f"+1555{rng.randrange(10**7)}"}
        value: object = customer
        if as_base64:
            value = base64.b64encode(json.dumps(customer, separators=(",", ":")).encode()).decode()
        body = {"id": d.event_id, "type": "CUSTOMER_UPDATED", "timestamp": "2026-11-01T00:00:00Z",
                "companyId": "cmp_1", "customer": value}
        out.append(replace(d, request_body=json.dumps(body, separators=(",", ":")).encode()))
    return out


def _write(path: Path, pages: list[list[WebhookDelivery]]) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = archive.connect(path)
    archive.ensure_db_shape(db)
    for page in pages:
        with archive.transaction(db):
            writer.save_deliveries(db, page, seen_at=page[0].delivered_at)  # type: ignore[arg-type]
    db.close()


def _fts_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'deliveries_fts%'").fetchone()[0] or 0
    finally:
        conn.close()


def bench_body_shapes(workdir: Path, repeat: int, side_by_side) -> list[str]:
    """Lines for ``python -m bench``: writer time and index bytes per entry, base64 payloads vs objects."""
    count = 5000
    end = datetime(2026, 11, 1, tzinfo=timezone.utc)
    base = list(synthetic_deliveries(count, webhooks=2, days=1, end=end - timedelta(hours=1)))
    plain = _shaped(base, as_base64=False)
    encoded = _shaped(base, as_base64=True)
    pages = {name: [rows[i : i + 500] for i in range(0, count, 500)] for name, rows in (("plain", plain), ("b64", encoded))}
    p, b = side_by_side(lambda: _write(workdir / "b64.db", pages["b64"]),
                        lambda: _write(workdir / "plain.db", pages["plain"]), repeat)
    plain_bytes, b64_bytes = _fts_bytes(workdir / "plain.db"), _fts_bytes(workdir / "b64.db")
    return [
        f"writer, base64 payloads (decoded for search): {p / b:6.2f}x the time of the same payloads as objects",
        f"search index per entry: {b64_bytes / count:6.0f} B with base64 payloads (decoded in place), "
        f"{plain_bytes / count:6.0f} B with objects ({b64_bytes / plain_bytes:.2f}x)",
    ]
