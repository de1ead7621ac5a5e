"""Write MoeGo messages into the archive: the only code that turns API objects into rows.

Every function here runs inside a transaction the caller opened with
:func:`collectors.archive.transaction`, so that a page of deliveries, the rollup rows it touches and
the sync position that says it was read are committed together or not at all.

- :func:`save_deliveries` upserts on the delivery id. A row whose content is unchanged is not
  rewritten (its ``last_seen_at`` is), so a second sync of the same window reports 0 new and 0
  updated. Secret-like header values are redacted before they are written.
- :func:`save_webhooks` keeps one configuration snapshot per webhook, without its secret token.
- The rollups (``delivery_hourly`` and :mod:`collectors.archive.rollups`) gain the page's new rows
  (:mod:`collectors.archive.rollup_delta`); a (webhook, hour) where a row changed is recomputed.
- The full-text index is fed the page's new and changed rows (:mod:`collectors.archive.search_index`).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import dataclass
from operator import itemgetter
from datetime import datetime
from typing import Iterable, Sequence

from . import codec, compaction, rollup_delta, rollups, search_index, when
from .schema import HISTOGRAM_COLUMNS, error_class, histogram_sql, hour_of, status_class
from ..models import Webhook, WebhookDelivery, format_timestamp
from ..redaction import REDACTED, secret_fingerprint

__all__ = ["SaveResult", "save_deliveries", "save_webhooks", "mark_webhooks_deleted", "delivery_row", "refresh_hourly",
           "archived", "Archived"]


@dataclass(frozen=True)
class SaveResult:
    """How many delivery rows a save added and changed (unchanged rows are counted in neither)."""

    new: int = 0
    updated: int = 0

    def __add__(self, other: "SaveResult") -> "SaveResult":
        return SaveResult(self.new + other.new, self.updated + other.updated)


# The columns that hold what MoeGo said; a difference in any of them makes an upsert an update.
_CONTENT_COLUMNS = (
    "webhook_id", "event_type", "event_id", "request_url", "delivered_to", "request_headers",
    "request_body", "request_body_base64", "response_status", "response_headers", "response_body",
    "response_body_base64", "delivered_at", "duration_ms", "success", "error", "retry_count",
    "request_format", "response_format", "status_class", "error_class",
)
_ALL_COLUMNS = ("id",) + _CONTENT_COLUMNS + ("first_seen_at", "last_seen_at")
#: Every column of a ``deliveries`` row, in the order :func:`delivery_row` and the writer use.
ALL_COLUMNS = _ALL_COLUMNS


def _body_text(body: bytes) -> tuple[str, int]:
    """A body as stored: its UTF-8 text, or base64 (flag 1) when it is not valid UTF-8."""
    try:
        return body.decode("utf-8"), 0
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), 1


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _json(value: object) -> str:
    return _ENCODER.encode(value)


def delivery_row(delivery: WebhookDelivery, *, seen_at: datetime, secret_headers: Iterable[str] = ()) -> dict:
    """The archive row for one delivery: bodies decoded, secrets redacted, classes derived.

    Plain text in every column; :func:`save_deliveries` stores the :data:`codec.PAYLOAD_FIELDS` of it
    compressed (:func:`collectors.archive.codec.stored_row`).
    """
    return _row(delivery, format_timestamp(seen_at), secret_headers)


def _row(delivery: WebhookDelivery, seen: str, secret_headers: Iterable[str]) -> dict:
    """:func:`delivery_row` with ``seen_at`` already formatted (the writer formats it once a page)."""
    if delivery.delivered_at is None:
        raise ValueError(f"delivery {delivery.id} has no deliveredAt")
    request_body, request_b64 = _body_text(delivery.request_body)
    response_body, response_b64 = _body_text(delivery.response_body)
    return {
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event_type": delivery.event_type,
        "event_id": delivery.event_id,
        "request_url": delivery.request_url,
        "delivered_to": delivery.delivered_to,
        "request_headers": codec.canonical_headers(delivery.request_headers, secret_headers),
        "request_body": request_body,
        "request_body_base64": request_b64,
        "response_status": delivery.response_status,
        "response_headers": codec.canonical_headers(delivery.response_headers, secret_headers),
        "response_body": response_body,
        "response_body_base64": response_b64,
        "delivered_at": format_timestamp(delivery.delivered_at),
        "duration_ms": delivery.duration_ms,
        "success": int(delivery.success),
        "error": delivery.error,
        "retry_count": delivery.retry_count,
        "request_format": delivery.request_format,
        "response_format": delivery.response_format,
        "status_class": status_class(delivery.response_status),
        "error_class": error_class(delivery.success, delivery.response_status, delivery.error),
        "first_seen_at": seen,
        "last_seen_at": seen,
    }


def _custom_header_names(conn: sqlite3.Connection, webhook_ids: set[str]) -> dict[str, tuple[str, ...]]:
    """Per webhook, the names of its custom headers (from its archived configuration).

    MoeGo sends a webhook's custom headers (often credentials for the receiver) with every
    delivery and logs them; their values are redacted in deliveries just as in the configuration.
    """
    if not webhook_ids:
        return {}
    ids = sorted(webhook_ids)
    found = conn.execute(f"SELECT id, headers FROM webhooks WHERE id IN ({', '.join('?' for _ in ids)})", ids)
    return {webhook_id: tuple(json.loads(headers)) for webhook_id, headers in found}


#: Every column of a ``deliveries`` row as stored in text form (as an archive before schema 10 held it: the seen
#: times in ``first_seen_text`` and ``last_seen_text``; as one before schema 13, the delivery time in
#: ``delivered_text``), in :data:`ALL_COLUMNS`' order; it reads the same.
TEXT_COLUMNS = (("id",) + tuple("delivered_text" if c == "delivered_at" else c for c in _CONTENT_COLUMNS)
                + ("first_seen_text", "last_seen_text"))
# The writer's form: payload fields compressed, seen times as integers (first_seen_text and last_seen_text
# empty, last_seen_us NULL: the same as seen_us), see collectors.archive.compaction.SEEN_DDL; the delivery time
# as an integer (delivered_text empty), see collectors.archive.when.
_PLAIN_COLUMNS = tuple(c for c in ("id",) + _CONTENT_COLUMNS if c not in codec.PAYLOAD_FIELDS and c != "delivered_at")
_STORED_COLUMNS = _PLAIN_COLUMNS + codec.PAYLOAD_FIELDS + ("first_seen_text", "last_seen_text", "seen_us", "payload",
                                                           "delivered_text", "delivered_us")
# New rows are given their rowids explicitly: the ones SQLite would give (see save_deliveries).
_INSERT = (f"INSERT INTO deliveries (rowid, {', '.join(_STORED_COLUMNS)}) "
           f"VALUES ({', '.join('?' for _ in ('rowid',) + _STORED_COLUMNS)})")
_INSERT_NO_ROWID = (f"INSERT INTO deliveries ({', '.join(_STORED_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in _STORED_COLUMNS)})")
#: The largest rowid SQLite gives as "one more than the largest" (beyond it, it picks a random unused one).
_MAX_ROWID = 2**63 - 1
_plain_of = itemgetter(*_PLAIN_COLUMNS)
_payload_of = itemgetter(*codec.PAYLOAD_FIELDS)
_keys_of = itemgetter(*codec.KEY_COLUMNS)
_EMPTY_TEXTS = ("",) * (len(codec.PAYLOAD_FIELDS) + 2)  # the payload's text columns, first_seen_text, last_seen_text
_SET_COLUMNS = tuple(c for c in _CONTENT_COLUMNS if c != "delivered_at")  # delivered_at is generated
_UPDATE = (
    f"UPDATE deliveries SET {', '.join(f'{c} = ?' for c in _SET_COLUMNS)}, payload = ?, delivered_text = ?, "
    "delivered_us = ?, last_seen_text = '', last_seen_us = ? WHERE id = ?"
)
_SELECT_EXISTING = (
    f"SELECT id, delivered_at, webhook_id, {', '.join(_CONTENT_COLUMNS)}, payload, rowid FROM deliveries WHERE id IN "
)
_LOOKUP_CHUNK = 500
_PAYLOAD_AT = tuple(_CONTENT_COLUMNS.index(f) for f in codec.PAYLOAD_FIELDS)
_HEADERS_AT = tuple(_CONTENT_COLUMNS.index(f) for f in ("request_headers", "response_headers"))
_KEYS_AT = tuple(_CONTENT_COLUMNS.index(f) for f in codec.KEY_COLUMNS[1:])


class Archived(dict):
    """What the archive holds of a page's ids (:func:`archived`): delivery id -> its row as
    :func:`save_deliveries` compares it (id, delivery time, webhook id, content columns, payload, rowid).
    One lookup per page serves the contract check (:meth:`owners`) and the save."""

    def owners(self) -> dict[str, str]:
        """For each archived id: the webhook it is archived under (:func:`collectors.validate.check_page`)."""
        return {delivery_id: found[2] for delivery_id, found in self.items()}


def archived(conn: sqlite3.Connection, ids: Sequence[str]) -> Archived:
    """The rows the archive holds among ``ids`` (one indexed lookup per id, :data:`_LOOKUP_CHUNK` ids a statement)."""
    found = Archived()
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), _LOOKUP_CHUNK):
        chunk = unique[start : start + _LOOKUP_CHUNK]
        for row in conn.execute(_SELECT_EXISTING + f"({', '.join('?' for _ in chunk)})", chunk):
            found[row[0]] = row
    return found


def _old_content(coder: codec.Codec, found: Sequence[object]) -> tuple[object, ...]:
    """An existing row's content columns as plain text (payload fields decoded; legacy header text canonical)."""
    content = list(found[3:-2])
    texts = [content[i] for i in _PAYLOAD_AT]
    keys = [found[0], *(content[i] for i in _KEYS_AT)]
    legacy_headers = {i for i in _HEADERS_AT if content[i]}
    for i, value in zip(_PAYLOAD_AT, codec.fields(coder, found[-2], texts, keys)):  # type: ignore[arg-type]
        content[i] = value
    for i in legacy_headers:
        content[i] = codec.canonical_headers_text(content[i])  # type: ignore[arg-type]
    return tuple(content)


def save_deliveries(
    conn: sqlite3.Connection,
    deliveries: Sequence[WebhookDelivery],
    *,
    seen_at: datetime,
    secret_headers: Iterable[str] = (),
    existing: Archived | None = None,
) -> SaveResult:
    """Upsert a page of deliveries and refresh the rollup hours they touch. Call inside a transaction.

    ``existing`` is :func:`archived` of the page's ids, looked up in the same transaction (the caller checked the
    page against it); without it, it is looked up here. New rows get the rowids SQLite would have given them
    (one more than the largest, in the page's order), set explicitly so that the full-text index and the
    rollups need no second lookup; a changed row keeps its rowid."""
    if not conn.in_transaction:
        raise RuntimeError("save_deliveries must run inside archive.transaction()")
    secret_headers = tuple(secret_headers)
    custom = _custom_header_names(conn, {d.webhook_id for d in deliveries})
    seen = format_timestamp(seen_at)
    seen_us = compaction.seen_us(seen_at)
    secrets = {hook: secret_headers + names for hook, names in custom.items()}
    rows = {d.id: _row(d, seen, secrets.get(d.webhook_id, secret_headers)) for d in deliveries}
    if not rows:
        return SaveResult()
    times = {d.id: d.delivered_at for d in deliveries}
    coder = codec.for_writing(conn, {d.webhook_id for d in deliveries})
    if existing is None:
        existing = archived(conn, list(rows))
    touched: set[tuple[str, str]] = set()  # (webhook, hour) keys recomputed from the raw rows
    inserts: list[tuple] = []
    updates: list[list[object]] = []
    indexed_new: list[dict] = []  # for the full-text index (collectors.archive.search_index) and the rollups
    indexed_changes: list[tuple[dict, dict]] = []
    unchanged: list[tuple[str, str]] = []
    rowids: dict[str, int] = {}
    for delivery_id, row in rows.items():
        old = existing.get(delivery_id)
        if old is None:
            text, us = when.stored_time(times[delivery_id], row["delivered_at"])
            keys = _keys_of(row)
            if us is not None:  # the delivery time as the integer key the readers select (codec.KEY_SELECT): same keys
                keys = (*keys[:-1], us)
            inserts.append((*_plain_of(row), *_EMPTY_TEXTS, seen_us, coder.encode(_payload_of(row), keys), text, us))
            indexed_new.append(row)
            continue
        rowids[delivery_id] = old[-1]
        new_content = tuple(row[c] for c in _CONTENT_COLUMNS)
        old_content = _old_content(coder, old)
        if old_content == new_content:
            unchanged.append((seen_us, delivery_id))
            continue
        stored = codec.stored_row(coder, row)
        updates.append([*(stored[c] for c in _SET_COLUMNS), stored["payload"],
                        *when.stored_time(times[delivery_id], row["delivered_at"]), seen_us, delivery_id])
        indexed_changes.append((dict(zip(_CONTENT_COLUMNS, old_content)), row))
        touched.add((row["webhook_id"], hour_of(row["delivered_at"])))
        touched.add((old[2], hour_of(old[1])))
    if inserts:
        # What SQLite gives a row inserted without a rowid (the table has no AUTOINCREMENT): one more than the
        # largest rowid in the table, so the page's rows get top + 1, top + 2, ... in the order inserted.
        top = conn.execute("SELECT max(rowid) FROM deliveries").fetchone()[0] or 0
        if top + len(inserts) < _MAX_ROWID:
            conn.executemany(_INSERT, [(top + n, *values) for n, values in enumerate(inserts, 1)])
            rowids.update((row["id"], top + n) for n, row in enumerate(indexed_new, 1))
        else:  # past the largest rowid SQLite picks random free ones: ask it which
            conn.executemany(_INSERT_NO_ROWID, inserts)
            rowids.update(search_index.rowids_of(conn, [r["id"] for r in indexed_new]))
    conn.executemany(_UPDATE, updates)
    conn.executemany("UPDATE deliveries SET last_seen_text = '', last_seen_us = ? WHERE id = ?", unchanged)
    search_index.index_saved(conn, indexed_new, indexed_changes, rowids=rowids)
    # New rows are added to the rollups; hours where a row changed are recomputed from the raw rows.
    rollup_delta.add_inserted(conn, indexed_new, rowids, skip=touched)
    refresh_hourly(conn, touched)
    return SaveResult(new=len(inserts), updated=len(updates))


_REFRESH_HOUR = f"""
INSERT INTO delivery_hourly (webhook_id, hour, event_type, success, status_class, error_class,
    deliveries, retries, duration_sum, duration_max, {', '.join(HISTOGRAM_COLUMNS)})
SELECT webhook_id, ?, event_type, success, status_class, error_class,
    COUNT(*), SUM(retry_count), SUM(duration_ms), MAX(duration_ms), {histogram_sql()}
FROM deliveries
WHERE webhook_id = ? AND delivered_key >= ? AND delivered_key < ?
GROUP BY event_type, success, status_class, error_class
"""


def refresh_hourly(conn: sqlite3.Connection, keys: Iterable[tuple[str, str]]) -> None:
    """Recompute the ``delivery_hourly`` rows of each (webhook id, ``YYYY-MM-DDTHH`` hour) from the raw rows."""
    keys = sorted(set(keys))
    for webhook_id, hour in keys:
        conn.execute("DELETE FROM delivery_hourly WHERE webhook_id = ? AND hour = ?", (webhook_id, hour))
        conn.execute(_REFRESH_HOUR, (hour, webhook_id, when.key_of(hour), when.next_hour_key(hour)))
    rollups.refresh(conn, keys)


def save_webhooks(conn: sqlite3.Connection, webhooks: Iterable[Webhook], *, seen_at: datetime) -> int:
    """Upsert webhook configuration snapshots (secret reduced to a fingerprint, header values redacted).

    Returns how many were saved. Call inside a transaction.
    """
    seen = format_timestamp(seen_at)
    count = 0
    for hook in webhooks:
        conn.execute(
            """
            INSERT INTO webhooks (id, endpoint_url, event_types, content_type, is_active, verify_ssl,
                has_secret, secret_fingerprint, headers, retry_policy, organizations, created_time,
                updated_time, first_seen_at, last_seen_at, deleted_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
            ON CONFLICT (id) DO UPDATE SET
                endpoint_url = excluded.endpoint_url, event_types = excluded.event_types,
                content_type = excluded.content_type, is_active = excluded.is_active,
                verify_ssl = excluded.verify_ssl, has_secret = excluded.has_secret,
                secret_fingerprint = excluded.secret_fingerprint, headers = excluded.headers,
                retry_policy = excluded.retry_policy, organizations = excluded.organizations,
                created_time = excluded.created_time, updated_time = excluded.updated_time,
                last_seen_at = excluded.last_seen_at, deleted_at = NULL
            """,
            (
                hook.id,
                hook.endpoint_url,
                _json(hook.event_types),
                hook.content_type,
                int(hook.is_active),
                int(hook.verify_ssl),
                int(bool(hook.secret_token)),
                secret_fingerprint(hook.secret_token),
                # Every custom header value is redacted: they are credentials more often than not.
                _json({name: [REDACTED for _ in values] for name, values in hook.headers.items()}),
                _json(hook.retry_policy.to_json()) if hook.retry_policy else None,
                _json([{"id": o.id, "type": o.type} for o in hook.organizations]),
                format_timestamp(hook.created_time) if hook.created_time else None,
                format_timestamp(hook.updated_time) if hook.updated_time else None,
                seen,
                seen,
            ),
        )
        count += 1
    return count


def mark_webhooks_deleted(conn: sqlite3.Connection, present_ids: Iterable[str], *, seen_at: datetime,
                          confirmed: Iterable[str] | None = None) -> list[str]:
    """Mark archived webhooks MoeGo no longer has as deleted (their deliveries stay); returns their ids.

    Without ``confirmed``, every archived webhook not in ``present_ids`` is marked. With it, only
    those of them in ``confirmed`` (e.g. that GetWebhook answered NOT_FOUND for) are.
    """
    present = set(present_ids)
    allowed = None if confirmed is None else set(confirmed)
    gone = [
        row[0]
        for row in conn.execute("SELECT id FROM webhooks WHERE deleted_at IS NULL")
        if row[0] not in present and (allowed is None or row[0] in allowed)
    ]
    for webhook_id in gone:
        conn.execute("UPDATE webhooks SET deleted_at = ? WHERE id = ?", (format_timestamp(seen_at), webhook_id))
    return gone
