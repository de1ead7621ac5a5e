"""Saved views: a named set of the dashboard's filters, kept in the archive so every session can pick it.

A view is stored as the URL query parameters of its filters (``{key: [values]}``, see
:mod:`dashboard.filters`), so a saved view and a shared link mean the same thing, and reading one back
goes through the same forgiving parser as a link. Names are a person's input, checked by
:func:`collectors.archive.names.clean_name`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

from ..models import format_timestamp
from .names import WebhookNameError, clean_name
from .schema import open_archive, transaction

__all__ = ["MAX_VIEWS", "ViewError", "SavedView", "saved_views", "save_view", "delete_view"]

#: The most views an archive keeps (the sidebar lists them all).
MAX_VIEWS = 100
#: The most bytes of query parameters a view holds.
MAX_PARAMS_BYTES = 4_000


class ViewError(ValueError):
    """A view that cannot be saved (no name, a bad name, too many views, too large)."""


@dataclass(frozen=True)
class SavedView:
    """A saved view: its name and its query parameters."""

    name: str
    params: dict[str, list[str]]


def saved_views(conn: sqlite3.Connection) -> list[SavedView]:
    """Every saved view, by name; a view whose stored parameters cannot be read is left out."""
    out = []
    for name, text in conn.execute("SELECT name, params FROM saved_views ORDER BY name COLLATE NOCASE"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(raw, dict):
            out.append(SavedView(name, {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])]
                                        for k, vs in raw.items()}))
    return out


def save_view(db_path: str | Path, name: str, params: Mapping[str, str | Sequence[str]], *, saved_by: str,
              now: datetime | None = None) -> str:
    """Store ``params`` under ``name`` (replacing a view of that name); returns the name stored."""
    try:
        cleaned = clean_name(name)
    except WebhookNameError as exc:
        raise ViewError(str(exc).replace("a short name", "a view's name")) from None
    if not cleaned:
        raise ViewError("give the view a name")
    lists = {k: [v] if isinstance(v, str) else list(v) for k, v in params.items()}
    text = json.dumps(lists, sort_keys=True)
    if len(text.encode()) > MAX_PARAMS_BYTES:
        raise ViewError(f"the view's filters are too long to save (over {MAX_PARAMS_BYTES:,} bytes)")
    with open_archive(db_path) as conn, transaction(conn):
        exists = conn.execute("SELECT 1 FROM saved_views WHERE name = ?", (cleaned,)).fetchone()
        if not exists and conn.execute("SELECT COUNT(*) FROM saved_views").fetchone()[0] >= MAX_VIEWS:
            raise ViewError(f"the archive keeps at most {MAX_VIEWS} views: delete one first")
        conn.execute(
            "INSERT INTO saved_views (name, params, saved_at, saved_by) VALUES (?, ?, ?, ?) ON CONFLICT (name) "
            "DO UPDATE SET params = excluded.params, saved_at = excluded.saved_at, saved_by = excluded.saved_by",
            (cleaned, text, format_timestamp(now or datetime.now(timezone.utc)), saved_by),
        )
    return cleaned


def delete_view(db_path: str | Path, name: str) -> None:
    """Forget the view ``name`` (nothing happens when there is none)."""
    with open_archive(db_path) as conn, transaction(conn):
        conn.execute("DELETE FROM saved_views WHERE name = ?", (name,))
