"""What a backfill cannot cost less than, for this archive's shape: the collector against the least code doing the
same storage work.

``backfill_floor`` (in ``make bench``) starts the sandbox (``--volume full --history-days 2``: 163 k entries; ``demo``
with ``--quick``; ``python -m bench.floor`` runs the full 15 days, 1.33 M entries), runs ``moego-monitor collect
--concurrency 1`` into a new archive (the product), then, in this process, against the same sandbox, the *floor*:
a bare collector that does only what every archive of this shape has to do, with no checks, no redaction, no resume
positions, no rollups, no alerts:

- fetch every page of every webhook (``httpx``, 500 per page) and ``json.loads`` it;
- per entry: base64-decode the bodies, build the row's tuple, compress the payload fields with ``zstandard``
  (no dictionary, the same level), the delivery time as integer microseconds;
- one ``executemany`` into ``deliveries`` (the same table and indexes: :func:`collectors.archive.ensure_db_shape`)
  and one into the full-text index (explicit rowids) per page, a commit per 20,000 entries.

Both read the same sandbox one after the other; the floor's CPU is this process's (``time.process_time``), the
product's is the ``collect`` process's. The ratio says how far the product is from what SQLite, zstd, httpx and
``json`` allow on this machine for the same rows; it also says whether issue #9's 20,000 entries per CPU-second
is within reach of any Python collector writing this archive.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import httpx
import zstandard

from collectors import archive
from collectors.archive.schema import error_class, status_class
from collectors.models import WebhookDelivery

from .core import Bench, Row, free_port, load, serving

__all__ = ["ROWS", "INSERT", "FTS", "bare_backfill", "delivery_rows", "entry_rows", "floor_rows"]

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-floor-key"
_PLAIN = ("id", "webhook_id", "event_type", "event_id", "request_body_base64", "response_status", "response_body_base64",
          "duration_ms", "success", "error", "retry_count", "status_class", "error_class")
_EMPTY = ("request_url", "delivered_to", "request_headers", "request_body", "response_headers", "response_body",
          "request_format", "response_format", "first_seen_text", "last_seen_text", "delivered_text")
_COLUMNS = _PLAIN + _EMPTY + ("seen_us", "payload", "delivered_us")
INSERT = f"INSERT INTO deliveries (rowid, {', '.join(_COLUMNS)}) VALUES (?, {', '.join('?' for _ in _COLUMNS)})"
FTS = "INSERT INTO deliveries_fts (rowid, request_body, response_body, error) VALUES (?, ?, ?, ?)"
_BLANKS = ("",) * len(_EMPTY)


def _text(b64: str) -> tuple[str, int]:
    raw = base64.b64decode(b64) if b64 else b""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        return b64, 1


def _micros(stamp: str) -> int:
    """RFC 3339 UTC with 0-9 fraction digits as integer microseconds (the floor's own, minimal)."""
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    whole = datetime.fromisoformat(seconds + "+00:00")
    return int(whole.timestamp()) * 1_000_000 + int((fraction + "000000")[:6])


@dataclass(frozen=True)
class _Entry:
    """The fields of one entry the floor stores, however it was read (MoeGo's JSON or a parsed delivery)."""

    ids: tuple[str, str, str, str]  # id, webhook id, event type, event id
    request_body: tuple[str, int]  # text, and 1 when it is base64 (not UTF-8)
    response_body: tuple[str, int]
    status: int
    success: bool
    error: str
    duration_ms: int
    retry_count: int
    request_url: str
    delivered_to: str
    request_headers: str  # JSON
    response_headers: str
    formats: tuple[str, str]  # request, response
    delivered_us: int


def _stored(e: _Entry, rowid: int, seen_us: int, compress: Callable[[bytes], bytes]) -> tuple[tuple, tuple]:
    """One entry's ``deliveries`` row (for :data:`INSERT`) and full-text values (for :data:`FTS`), the floor's way."""
    (request_body, request_b64), (response_body, response_b64) = e.request_body, e.response_body
    payload = "\xff".join((e.request_url, e.delivered_to, e.request_headers, request_body, e.response_headers,
                           response_body, *e.formats))
    row = (rowid, *e.ids, request_b64, e.status, response_b64, e.duration_ms, int(e.success), e.error, e.retry_count,
           status_class(e.status), error_class(e.success, e.status, e.error), *_BLANKS, seen_us,
           b"\x00" + compress(payload.encode()), e.delivered_us)
    return row, (rowid, request_body, response_body, e.error)


def _rows(entries: list[_Entry], rowid: int, seen_us: int, compress: Callable[[bytes], bytes]) -> tuple[list, list, int]:
    rows, texts = [], []
    for entry in entries:
        rowid += 1
        row, text = _stored(entry, rowid, seen_us, compress)
        rows.append(row)
        texts.append(text)
    return rows, texts, rowid


def entry_rows(entries: list[dict], rowid: int, seen_us: int, compress: Callable[[bytes], bytes]) -> tuple[list, list, int]:
    """A page of MoeGo's JSON entries as ``deliveries`` rows and full-text values, rowids from ``rowid + 1`` on;
    returns them and the last rowid given."""
    return _rows([_Entry(
        (d["id"], d["webhookId"], d.get("eventType", ""), d.get("eventId", "")), _text(d.get("requestBody", "")),
        _text(d.get("responseBody", "")), d.get("responseStatus", 0), d.get("success", False), d.get("error", ""),
        int(d.get("durationMs", "0")), d.get("retryCount", 0), d.get("requestUrl", ""), d.get("deliveredTo", ""),
        json.dumps(d.get("requestHeaders", {})), json.dumps(d.get("responseHeaders", {})),
        (d.get("requestFormat", ""), d.get("responseFormat", "")), _micros(d["deliveredAt"]),
    ) for d in entries], rowid, seen_us, compress)


def delivery_rows(deliveries: list[WebhookDelivery], rowid: int, seen_us: int,
                  compress: Callable[[bytes], bytes]) -> tuple[list, list, int]:
    """:func:`entry_rows` of parsed deliveries (bodies already bytes, times already datetimes): what the least writer
    of this archive does with a page the collector has parsed (``bench.writes``' writer row)."""
    return _rows([_Entry(
        (d.id, d.webhook_id, d.event_type, d.event_id), _decoded(d.request_body), _decoded(d.response_body),
        d.response_status, d.success, d.error, d.duration_ms, d.retry_count, d.request_url, d.delivered_to,
        json.dumps(d.request_headers), json.dumps(d.response_headers), (d.request_format, d.response_format),
        int(d.delivered_at.timestamp()) * 1_000_000 + d.delivered_at.microsecond,
    ) for d in deliveries], rowid, seen_us, compress)


def _decoded(body: bytes) -> tuple[str, int]:
    try:
        return body.decode("utf-8"), 0
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), 1


def bare_backfill(base_url: str, api_key: str, db_path: Path) -> int:
    """Fetch every delivery of every webhook at ``base_url`` into a new archive at ``db_path``, the bare way (module
    docstring); returns how many entries it stored."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    conn = archive.connect(db_path)
    archive.ensure_db_shape(conn)
    compress = zstandard.ZstdCompressor(level=3).compress
    token = base64.b64encode(api_key.encode()).decode()
    seen_us = int(time.time() * 1_000_000)
    rowid = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM deliveries").fetchone()[0]
    stored = pending = 0
    conn.execute("BEGIN")
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Basic {token}"}, timeout=60) as http:
        hooks = http.post("/v1/webhooks:list", json={"pagination": {"pageSize": 100}}).json().get("webhooks", [])
        for hook in hooks:
            page_token = ""
            while True:
                body: dict = {"pagination": {"pageSize": 500}, "webhookId": hook["id"]}
                if page_token:
                    body["pagination"]["pageToken"] = page_token
                page = json.loads(http.post("/v1/webhook/deliveries:list", json=body).content)
                rows, texts, rowid = entry_rows(page.get("deliveries", []), rowid, seen_us, compress)
                conn.executemany(INSERT, rows)
                conn.executemany(FTS, texts)
                stored += len(rows)
                pending += len(rows)
                if pending >= 20_000:
                    conn.execute("COMMIT")
                    conn.execute("BEGIN")
                    pending = 0
                page_token = page.get("nextPageToken", "")
                if not page_token:
                    break
    conn.execute("COMMIT")
    conn.close()
    return stored


def backfill_floor(bench: Bench) -> list[Row]:
    return floor_rows(bench.workdir, ["--volume", "demo"] if bench.quick else ["--volume", "full", "--history-days", "2"])


def floor_rows(workdir: Path, volume: list[str]) -> list[Row]:
    """The product's backfill and the floor against one sandbox started with ``volume`` (its arguments)."""
    port = free_port()
    command = [sys.executable, "-m", "sandbox", "--port", str(port), "--rate", "0", "--quiet", "--seed", "7", *volume,
               "--api-key", API_KEY]
    with serving(command, port, "/_sandbox/health", what="the sandbox", timeout_s=300, cwd=REPO) as (base, _proc):
        product_db, floor_db = workdir / "floor-product.db", workdir / "floor-bare.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{product_db}{suffix}").unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOEGO_")}
        env.update(MOEGO_API_KEY=API_KEY, MOEGO_BASE_URL=base, PYTHONPATH=str(REPO))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([sys.executable, "-m", "collectors", "collect", "--db", str(product_db), "--concurrency", "1"],
                              cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"collect failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        product_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        with archive.open_archive(product_db, readonly=True) as conn:
            product_entries = conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
        started = time.process_time()
        floor_entries = bare_backfill(base, API_KEY, floor_db)
        floor_cpu = time.process_time() - started
    product_rate, floor_rate = product_entries / product_cpu, floor_entries / floor_cpu
    print(f"  (floor: {floor_entries:,} entries in {floor_cpu:.1f} CPU-s; product: {product_entries:,} in "
          f"{product_cpu:.1f} CPU-s; load {load()})", flush=True)
    return [Row(f"backfill CPU vs the bare floor (same archive shape, {' '.join(volume[1:])})",
                f"{product_rate:,.0f} entries/CPU-s", f"floor {floor_rate:,.0f} entries/CPU-s",
                f"{product_rate / floor_rate:.2f}x", ">= 20,000 entries/CPU-s", product_rate >= 20_000)]


ROWS = [backfill_floor]


def main() -> None:
    """``python -m bench.floor [--history-days N]``: the row at full volume (15 days of history unless told)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--history-days", type=int, default=None, help="the sandbox's history (default: its 15 days)")
    args = parser.parse_args()
    volume = ["--volume", "full"] + (["--history-days", str(args.history_days)] if args.history_days else [])
    with tempfile.TemporaryDirectory(prefix="moego-bench-floor-") as tmp:
        print(f"load {load()}", flush=True)
        for row in floor_rows(Path(tmp), volume):
            print(row.line())


if __name__ == "__main__":
    main()
