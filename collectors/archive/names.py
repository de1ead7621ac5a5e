"""People's names for webhooks: a short name a user gives one, else its endpoint's host and path.

MoeGo names a webhook by an id (``whk_8cwci8gnjnj0``); people think of it by where it delivers. Every
page, chart, filter and the CSV export label a webhook with :func:`webhook_label`: the short name stored
in ``webhook_names`` when a user gave one (:func:`set_webhook_name`), else ``host/path`` of its
``endpoint_url``, else the id. The id stays at hand beside the label wherever one is shown.

Names are a person's input: :func:`clean_name` bounds and checks them (one line, printable, at most
:data:`MAX_NAME_CHARS` characters); they are shown as text, never as Markdown or HTML.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from ..models import format_timestamp
from .schema import open_archive, transaction

__all__ = ["MAX_NAME_CHARS", "WebhookNameError", "clean_name", "endpoint_label", "webhook_label", "webhook_labels",
           "webhook_names", "set_webhook_name", "name_webhook"]

#: The longest short name accepted.
MAX_NAME_CHARS = 40
#: Endpoint labels longer than this are cut with an ellipsis (the full URL is on the Webhooks page).
MAX_ENDPOINT_CHARS = 48


class WebhookNameError(ValueError):
    """A short name that cannot be stored (empty after trimming, too long, or with control characters)."""


def clean_name(text: str) -> str:
    """``text`` trimmed and checked for use as a short name; ``""`` means "no name". Raises :class:`WebhookNameError`."""
    name = " ".join(str(text).split())
    if len(name) > MAX_NAME_CHARS:
        raise WebhookNameError(f"a short name has at most {MAX_NAME_CHARS} characters ({len(name)} given)")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise WebhookNameError("a short name cannot hold control or invisible characters")
    return name


def endpoint_label(endpoint_url: str) -> str:
    """``host/path`` of an endpoint URL (no scheme, credentials, query or fragment), cut to a readable length."""
    try:
        parts = urlsplit(endpoint_url or "")
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return ""
    label = (host + parts.path.rstrip("/")) if host else ""
    if len(label) > MAX_ENDPOINT_CHARS:
        label = label[: MAX_ENDPOINT_CHARS - 1] + "…"
    return label


def webhook_label(webhook_id: str, endpoint_url: str | None = None, name: str | None = None) -> str:
    """What a person reads for a webhook: its short name, else its endpoint's ``host/path``, else its id."""
    return name or endpoint_label(endpoint_url or "") or webhook_id


def webhook_names(conn: sqlite3.Connection) -> dict[str, str]:
    """Every short name given, by webhook id."""
    return {row[0]: row[1] for row in conn.execute("SELECT webhook_id, name FROM webhook_names")}


def webhook_labels(conn: sqlite3.Connection) -> dict[str, str]:
    """The label of every webhook the archive knows (configured, or named), by id."""
    names = webhook_names(conn)
    labels = {wid: webhook_label(wid, url, names.get(wid)) for wid, url in conn.execute("SELECT id, endpoint_url FROM webhooks")}
    for wid, name in names.items():
        labels.setdefault(wid, name)
    return labels


def set_webhook_name(conn: sqlite3.Connection, webhook_id: str, name: str, *, set_by: str,
                     now: datetime | None = None) -> str:
    """Store ``name`` (cleaned, see :func:`clean_name`) as ``webhook_id``'s short name; an empty name removes it.

    Returns the name stored (``""`` when removed). ``conn`` must be open for writing.
    """
    cleaned = clean_name(name)
    with transaction(conn):
        if not cleaned:
            conn.execute("DELETE FROM webhook_names WHERE webhook_id = ?", (webhook_id,))
        else:
            conn.execute(
                "INSERT INTO webhook_names (webhook_id, name, set_at, set_by) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (webhook_id) DO UPDATE SET name = excluded.name, set_at = excluded.set_at, "
                "set_by = excluded.set_by",
                (webhook_id, cleaned, format_timestamp(now or datetime.now(timezone.utc)), set_by),
            )
    return cleaned


def name_webhook(db_path: str | Path, webhook_id: str, name: str, *, set_by: str) -> str:
    """:func:`set_webhook_name` on the archive at ``db_path`` (opened for writing for the call): what a page calls."""
    with open_archive(db_path) as conn:
        return set_webhook_name(conn, webhook_id, name, set_by=set_by)
