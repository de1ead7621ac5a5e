"""The CSV lines of archived deliveries, as bytes: the cells of :mod:`collectors.archive.export`'s columns.

:class:`Lines` turns rows of its :meth:`~Lines.select` (a WHERE and ORDER BY to follow) into CSV bytes a
batch at a time, exactly as ``csv.writer`` (QUOTE_MINIMAL, CRLF line ends) writes the cells after each was
neutralized (:func:`neutralize`: a leading ``'`` on a cell that starts like a formula).

Two paths, the same bytes. The fast path works on bytes (``CAST AS BLOB``: nothing is decoded to text
to be encoded again): SQLite joins the first 11 cells with ``printf`` (the "head"), checks the error's
cell, and builds the encodings and the webhook's name (the "tail"); the payload is decompressed a batch
at a time (:meth:`collectors.archive.codec.Codec.packed_many`) and its 6 cells quoted with bytes operations,
header sets copied as archived (redacted when written). A row takes the general path, read again and built
cell by cell, when its head would need a quote or a ``'`` (checked for a whole batch at once), when its
fields are still in the text columns (archived before the payload column, compaction not done yet; header
text is then redacted again), or when a header set holds a name given as ``secret_headers``.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

from . import codec

__all__ = ["BATCH", "Lines", "neutralize"]

#: Rows read and built at a time.
BATCH = 500
_FORMULA_START = frozenset("=+-@\t\r")


def neutralize(value: str) -> str:
    """``value`` made inert for spreadsheets: a leading ``'`` when it starts like a formula."""
    return "'" + value if value[:1] in _FORMULA_START else value


def _sql_cell(expr: str) -> str:
    """SQL for the CSV cell of the text ``expr``: neutralized (:func:`neutralize`) and quoted as
    ``csv.writer`` quotes (only when it holds a quote, a comma, CR or LF; quotes doubled)."""
    neutral = (f"(CASE WHEN substr({expr}, 1, 1) IN ('=', '+', '-', '@', char(9), char(13)) "
               f"THEN '''' || {expr} ELSE {expr} END)")
    return (f"(CASE WHEN instr({expr}, '\"') OR instr({expr}, ',') OR instr({expr}, char(10)) "
            f"OR instr({expr}, char(13)) THEN '\"' || replace({neutral}, '\"', '\"\"') || '\"' ELSE {neutral} END)")


# The general path (any row, cell by cell): SQLite builds the first 12 cells and the 2 encodings, each cell
# checked (_sql_cell); Python adds the 6 payload cells (collectors.archive.codec), redacting header text that
# needs it, and the webhook's name.
_CAREFUL = " || ',' || ".join([
    *(_sql_cell(c) for c in ("id", "webhook_id", "event_type", "event_id", "delivered_at")),
    "(CASE WHEN success THEN 'true' ELSE 'false' END)",
    _sql_cell("CAST(response_status AS TEXT)"), _sql_cell("status_class"), _sql_cell("error_class"),
    _sql_cell("CAST(duration_ms AS TEXT)"), _sql_cell("CAST(retry_count AS TEXT)"), _sql_cell("COALESCE(error, '')"),
])
_SUFFIX = ("(CASE WHEN request_body_base64 THEN 'base64' ELSE 'utf-8' END) || ',' || "
           "(CASE WHEN response_body_base64 THEN 'base64' ELSE 'utf-8' END)")
#: The payload's cells, in CSV order, as positions in :data:`codec.PAYLOAD_FIELDS`.
_PAYLOAD_CELLS = tuple(codec.PAYLOAD_FIELDS.index(name) for name in (
    "request_url", "delivered_to", "request_headers", "response_headers", "request_body", "response_body"))
_HEADER_CELLS = (2, 3)
#: The row's columns its payload may refer to (:data:`codec.KEY_COLUMNS`), selected after the payload.
_KEYS = codec.KEY_SELECT  # the delivery time as its integer: delivered_at is rendered once per row, in the head
_KEY_COUNT = len(codec.KEY_COLUMNS)
_GENERAL = (f"SELECT rowid, {_CAREFUL}, {_SUFFIX}, webhook_id, payload, {_KEYS}, "
            f"{', '.join(codec.PAYLOAD_FIELDS[i] for i in _PAYLOAD_CELLS)} FROM deliveries")

# The fast path, in bytes (CAST AS BLOB: nothing is decoded to text to be encoded again). SQLite joins the
# first 11 cells unchecked (the "head"); Python checks a batch's heads at once (_plain_heads) and sends a row
# whose head would need a quote or a neutralizing ' down the general path. The error, the one free text among
# the 12, is checked in SQL. The payload is NULL for a row whose fields are still (partly) in the text columns
# (archived before the payload column, its compaction not done yet): it takes the general path too.
_HEAD = ("CAST(printf('" + ",".join(["%s"] * 11) + "', id, webhook_id, event_type, event_id, delivered_at, "
         "CASE WHEN success THEN 'true' ELSE 'false' END, response_status, status_class, error_class, duration_ms, "
         "retry_count) AS BLOB)")
_HEAD_COMMAS = 10
_ERROR = "CAST(CASE WHEN error = '' THEN '' ELSE " + _sql_cell("COALESCE(error, '')") + " END AS BLOB)"
#: The two encodings as a number (request 2, response 1: base64) when no webhook has a name: Python looks the
#: tail up in _TAILS (cheaper than SQLite building it for every row).
_ENCODINGS = ("((CASE WHEN request_body_base64 THEN 2 ELSE 0 END) + "
              "(CASE WHEN response_body_base64 THEN 1 ELSE 0 END))")
_TAILS = (b"utf-8,utf-8,\r\n", b"utf-8,base64,\r\n", b"base64,utf-8,\r\n", b"base64,base64,\r\n")
_FAST_PAYLOAD = ("(CASE WHEN " + " AND ".join(f"{codec.PAYLOAD_FIELDS[i]} = ''" for i in _PAYLOAD_CELLS)
                 + " THEN payload END)")
_FORMULA_BYTES = frozenset(bytes((c,)) for c in b"=+-@\t\r")


def _cell(value: str) -> str:
    """One CSV cell: neutralized, then quoted as ``csv.writer`` (QUOTE_MINIMAL, CRLF) quotes it."""
    if value[:1] in _FORMULA_START:
        value = "'" + value
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def _byte_cell(value: bytes) -> bytes:
    """:func:`_cell` of UTF-8 bytes."""
    if value[:1] in _FORMULA_BYTES:
        value = b"'" + value
    if b'"' in value:
        return b'"' + value.replace(b'"', b'""') + b'"'
    if b"," in value or b"\n" in value or b"\r" in value:
        return b'"' + value + b'"'
    return value


def _plain_heads(heads: Sequence[bytes]) -> bool:
    """True when no cell of these heads (11 cells each, joined by commas) holds a quote, a comma or a line break
    or starts like a formula: then a head is already the CSV text of its cells. A few scans of the batch, most
    of them ``memchr`` (a NUL separates the heads: one inside a cell only sends the batch down the careful way)."""
    joined = b"\0".join(heads)
    if b'"' in joined or b"\r" in joined or b"\n" in joined or joined.count(b",") != _HEAD_COMMAS * len(heads):
        return False
    if b"=" in joined or b"+" in joined or b"@" in joined or b"\t" in joined or joined.count(b"\0") != len(heads) - 1:
        return False  # rare in a head: look no closer
    return not (joined[:1] == b"-" or b",-" in joined or b"\0-" in joined)


class Lines:
    """CSV lines of archived rows. A payload's header sets are redacted already (when written) and copied;
    header text from a text column (archived before the payload column, or edited by hand) and any holding a
    name of ``secret_headers`` are parsed and redacted again (on the general path)."""

    def __init__(self, conn: sqlite3.Connection, secret_headers: Sequence[str], names: dict[str, str]) -> None:
        self.conn = conn
        self.coder = codec.Codec(conn)
        self.name_cells = {webhook_id: _cell(name) for webhook_id, name in names.items()}
        self.secret_headers = tuple(secret_headers)
        self.secret_lower = tuple(n.strip().lower() for n in secret_headers if n.strip())
        self.secret_bytes = tuple(n.encode("utf-8") for n in self.secret_lower)

    def select(self) -> tuple[str, tuple[str, ...]]:
        """The fast path's SELECT (a WHERE to follow) and its parameters: ``rowid, head, error cell, tail,
        payload`` and the row's :data:`codec.KEY_COLUMNS`. The tail holds the encodings, the name's cell (a CASE over the names given) and CRLF; with no
        name given, it is the encodings' number (:data:`_ENCODINGS`) instead."""
        if not self.name_cells:
            return f"SELECT rowid, {_HEAD}, {_ERROR}, {_ENCODINGS}, {_FAST_PAYLOAD}, {_KEYS} FROM deliveries", ()
        name = "(CASE webhook_id " + " ".join("WHEN ? THEN ?" for _ in self.name_cells) + " ELSE '' END)"
        params = tuple(x for pair in self.name_cells.items() for x in pair)
        tail = f"CAST({_SUFFIX} || ',' || {name} || char(13, 10) AS BLOB)"
        return f"SELECT rowid, {_HEAD}, {_ERROR}, {tail}, {_FAST_PAYLOAD}, {_KEYS} FROM deliveries", params

    def _headers(self, text: str, from_payload: bool) -> str:
        if from_payload and not (self.secret_lower and any(n in text.lower() for n in self.secret_lower)):
            return text
        return codec.canonical_headers_text(text, self.secret_headers)

    def general(self, rowids: Sequence[int]) -> dict[int, bytes]:
        """The CSV lines of the rows ``rowids``, read again and built cell by cell (any row), by rowid."""
        decode, cell, headers, names = self.coder.decode, _cell, self._headers, self.name_cells
        lines = {}
        for rowid, prefix, suffix, webhook_id, blob, *rest in self.conn.execute(
                f"{_GENERAL} WHERE rowid IN ({', '.join('?' for _ in rowids)})", tuple(rowids)):
            keys, texts = rest[:_KEY_COUNT], rest[_KEY_COUNT:]
            payload = decode(blob, keys) if blob is not None else None
            cells = []
            for n, (at, text) in enumerate(zip(_PAYLOAD_CELLS, texts)):
                from_payload = not text and payload is not None
                value = payload[at] if from_payload else (text or "")  # type: ignore[index]
                if n in _HEADER_CELLS:
                    value = headers(value, from_payload)
                cells.append(cell(value))
            lines[rowid] = f"{prefix},{','.join(cells)},{suffix},{names.get(webhook_id, '')}\r\n".encode("utf-8")
        return lines

    def lines(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """The CSV bytes of a batch of :meth:`select` rows, in their order.

        A row written by this version (its fields all in the payload, its head plain, no secret name in its
        headers) is built here from bytes; any other is read again down the general path (:meth:`general`)."""
        plain = _plain_heads([r[1] for r in rows])
        with_payload = [r for r in rows if r[4] is not None]
        packed = iter(self.coder.packed_many([r[4] for r in with_payload], [r[5:] for r in with_payload]))
        secret, formula, sep = self.secret_bytes, _FORMULA_BYTES, codec.SEPARATOR
        tails = None if self.name_cells else _TAILS
        out: list[bytes] = []
        slow: dict[int, int] = {}
        for rowid, head, error, tail, blob, *_keys in rows:
            if blob is not None:
                url, to, req_h, req_b, resp_h, resp_b, _, _ = next(packed).split(sep)
            if blob is None or not plain and not _plain_heads((head,)) or secret and any(
                    n in req_h.lower() or n in resp_h.lower() for n in secret):
                slow[rowid] = len(out)
                out.append(b"")
                continue
            # Header sets as written: a JSON object (never a formula start), quoted unless "{}".
            if req_h != b"{}":
                req_h = b'"' + req_h.replace(b'"', b'""') + b'"'
            if resp_h != b"{}":
                resp_h = b'"' + resp_h.replace(b'"', b'""') + b'"'
            # The other four as _byte_cell() would make them, checked inline (most need nothing, bodies quotes).
            if url[:1] in formula or b'"' in url or b"," in url or b"\n" in url or b"\r" in url:
                url = _byte_cell(url)
            if to[:1] in formula or b'"' in to or b"," in to or b"\n" in to or b"\r" in to:
                to = _byte_cell(to)
            if req_b[:1] in formula:
                req_b = _byte_cell(req_b)
            elif b'"' in req_b:
                req_b = b'"' + req_b.replace(b'"', b'""') + b'"'
            elif b"," in req_b or b"\n" in req_b or b"\r" in req_b:
                req_b = b'"' + req_b + b'"'
            if resp_b[:1] in formula:
                resp_b = _byte_cell(resp_b)
            elif b'"' in resp_b:
                resp_b = b'"' + resp_b.replace(b'"', b'""') + b'"'
            elif b"," in resp_b or b"\n" in resp_b or b"\r" in resp_b:
                resp_b = b'"' + resp_b + b'"'
            out.append(b",".join((head, error, url, to, req_h, resp_h, req_b, resp_b, tails[tail] if tails else tail)))
        if slow:
            for rowid, line in self.general(list(slow)).items():
                out[slow[rowid]] = line
        return b"".join(out)
