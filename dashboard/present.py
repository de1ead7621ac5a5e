"""Pure presentation helpers: how a body, a header set or a status reads on screen. No Streamlit here."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import pandas as pd

from collectors.bodies import decode_body
from collectors.redaction import redact_headers

from collectors.archive.filters import Filters, Window

__all__ = ["Body", "pretty_body", "header_rows", "status_text", "export_command_line"]

#: Bodies longer than this are cut for display (the archive and exports keep them whole).
MAX_BODY_CHARS = 200_000


@dataclass(frozen=True)
class Body:
    """A body ready to show: ``language`` for a code block (``json`` or ``None``) and a one-line note for the
    reader; ``decoded`` names the payload fields shown decoded from base64 (``text`` is then not the raw body).
    """

    text: str
    language: str | None
    note: str
    decoded: tuple[str, ...] = ()


def pretty_body(text: str, is_base64: bool, *, decode_payloads: bool = False) -> Body:
    """A stored body for display: pretty-printed when it is JSON, marked when empty, binary or cut.

    ``decode_payloads`` (request bodies: MoeGo's events) shows payload fields MoeGo sent as base64 as the
    objects they encode (:func:`collectors.bodies.decode_body`), and says so in the note.
    """
    if is_base64:
        return Body(text[:MAX_BODY_CHARS], None, f"Not UTF-8 text: shown as base64 ({len(text):,} characters).")
    if not text:
        return Body("", None, "Empty body.")
    note = ""
    decoded: tuple[str, ...] = ()
    if decode_payloads:
        read = decode_body(text)
        parsed, is_json, note, decoded = read.value, read.is_json, read.note, read.decoded
    else:
        try:
            parsed, is_json = json.loads(text), True
        except (json.JSONDecodeError, RecursionError):
            parsed, is_json = None, False
    if not is_json:
        shown = text
    else:
        shown = json.dumps(parsed, indent=2, ensure_ascii=False)
        note = note or "JSON, pretty-printed."
        if len(shown) <= MAX_BODY_CHARS:
            return Body(shown, "json", note, decoded)
    if len(shown) > MAX_BODY_CHARS:
        return Body(shown[:MAX_BODY_CHARS], None, f"Cut to the first {MAX_BODY_CHARS:,} of {len(shown):,} characters.")
    return Body(shown, None, note)


def header_rows(headers: Mapping[str, Sequence[str]], secret_headers: Iterable[str] = ()) -> pd.DataFrame:
    """Headers as a two-column table (one row per value), secret-like values redacted again."""
    redacted = redact_headers({k: list(v) for k, v in headers.items()}, secret_headers)
    rows = [(name, value) for name in sorted(redacted, key=str.lower) for value in redacted[name]]
    return pd.DataFrame(rows, columns=["header", "value"])


def status_text(status: int) -> str:
    """An HTTP status for a person: ``HTTP 503``, or ``no response`` for 0."""
    return f"HTTP {status}" if status else "no response"


def export_command_line(filters: Filters, window: Window) -> str:
    """The ``moego-monitor export`` command that writes the same rows as this view (when the view can be expressed so).

    Exports have no event-type or search filter and take one status: views using those get the
    nearest command, which the caller should say is wider.
    """
    parts = ["moego-monitor", "export", "--since", window.since_text.replace(".000000Z", "Z"),
             "--until", window.until_text.replace(".000000Z", "Z")]
    for webhook_id in filters.webhooks:
        parts += ["--webhook", webhook_id]
    if filters.outcome != "all":
        parts += ["--status", filters.outcome]
    elif len(filters.status_classes) == 1 and filters.status_classes[0] in ("2xx", "4xx", "5xx", "none"):
        parts += ["--status", filters.status_classes[0]]
    parts += ["--out", "deliveries.csv"]
    return shlex.join(parts)
