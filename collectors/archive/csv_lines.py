"""The CSV lines of archived deliveries, as bytes: the cells of :mod:`collectors.archive.export`'s columns.

:class:`Lines` turns rows of its :meth:`~Lines.select` (a WHERE and ORDER BY to follow) into CSV bytes a
batch at a time, exactly as ``csv.writer`` (QUOTE_MINIMAL, CRLF line ends) writes the cells after each was
neutralized (:func:`neutralize`: a leading ``'`` on a cell that starts like a formula).

Three paths, the same bytes. All work on bytes (``CAST AS BLOB``: nothing is decoded to text to be encoded
again): SQLite joins the first 11 cells with ``printf`` (the "head"), checks the error's cell, and builds the
encodings and the webhook's name (the "tail"); the payload's 6 cells are built in Python, header sets copied as
archived (redacted when written).

- **A column at a time** (:meth:`Lines._columns`, about :data:`COLUMN_BYTES` of payload at a time): when every head of the batch
  is plain (one comma-joined check) and every row's fields are in its payload, the payloads are decompressed
  and joined, their keys put back for the whole batch from the heads' cells (the payload refers to its row's
  id, event id, webhook, event type and time by one byte each: :mod:`collectors.archive.codec`), base64 bodies
  stored as their text encoded again, quotes doubled and the fields split out in a few whole-batch byte
  operations; each of the 6 cells is then a column, quoted for the whole column when every cell (or none)
  needs it, and the lines are one ``join`` of the pieces. A few copies of the batch's bytes stay in the CPU's
  cache.
- **Row by row** (:meth:`Lines._by_row`): any other batch; a payload's keys put back with
  :func:`collectors.archive.codec.unkeyed`, its cells quoted one at a time.
- **The general path** (:meth:`Lines.general`): a row read again and built cell by cell, when its head would
  need a quote or a ``'``, when its fields are still in the text columns (archived before the payload column,
  compaction not done yet; header text is then redacted again), or when a header set holds a name given as
  ``secret_headers``.
"""

from __future__ import annotations

import sqlite3
from binascii import b2a_base64
from itertools import repeat
from operator import itemgetter
from typing import Any, Sequence

from . import codec

__all__ = ["BATCH", "Lines", "neutralize"]

#: Rows read at a time.
BATCH = 500
#: Compressed payload bytes built a column at a time, about (some 80 KB once decompressed: a few copies of them stay
#: in the CPU's cache), in at least :data:`MIN_COLUMN_ROWS` rows.
COLUMN_BYTES = 8_192
MIN_COLUMN_ROWS = 32
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
#: The payload's zstd frame (after its dictionary byte), then that byte.
_FAST_PAYLOAD = ("(CASE WHEN " + " AND ".join(f"{codec.PAYLOAD_FIELDS[i]} = ''" for i in _PAYLOAD_CELLS)
                 + " THEN substr(payload, 2) END), substr(payload, 1, 1)")
#: The row's delivery time as epoch milliseconds, as ``codec._epoch_ms`` gives it, for a payload referring to it
#: (its other keys are read from the head): NULL when the time does not end in 6 digits of fraction and a Z or
#: SQLite does not read it as a date and time (the row by row path then works it out, or says why it cannot).
#: Payloads :class:`Lines` looks at to decide whether to select :data:`_MILLIS`.
_SAMPLE = 50
_MILLIS = ("CASE WHEN length(delivered_at) = 27 AND substr(delivered_at, 20) GLOB '.[0-9][0-9][0-9][0-9][0-9][0-9]Z' "
           "THEN CAST(unixepoch(substr(delivered_at, 1, 19)) * 1000 + substr(delivered_at, 21, 3) AS BLOB) END")
_FORMULA_BYTES = frozenset(bytes((c,)) for c in b"=+-@\t\r")

# The column by column path (Lines._columns).
#: Between two rows' payloads when a batch's are joined: a byte UTF-8 text never holds, nor a payload.
_ROW = b"\xf5"
_MARKS = frozenset((0xF5, 0xFF, *codec.KEY_TOKENS))
_ALL_BUT_MARKS = bytes(b for b in range(256) if b not in _MARKS)
_ALL_BUT_KEYS_AND_ROW = bytes(b for b in range(256) if b not in codec.KEY_TOKENS and b != _ROW[0])
_HEAD_CELLS = _HEAD_COMMAS + 1
#: The separators of a payload of 8 fields, and the row mark after it.
_EIGHT_FIELDS = codec.SEPARATOR * (len(codec.PAYLOAD_FIELDS) - 1) + _ROW
#: Every key byte as the first (to split on one byte), and the row mark as a separator (once the keys are back,
#: a row's fields follow the previous row's as if one payload).
_KEYS_AS_ONE = bytes.maketrans(codec.KEY_TOKENS + _ROW, codec.KEY_TOKENS[:1] * len(codec.KEY_TOKENS) + codec.SEPARATOR)
_ONE_KEY = codec.KEY_TOKENS[:1]
_FIELDS = len(codec.PAYLOAD_FIELDS)
#: The payload's fields in the CSV's order of its 6 cells; which of them are checked (not header sets).
_CSV_ORDER = tuple(codec.PAYLOAD_FIELDS.index(f) for f in (
    "request_url", "delivered_to", "request_headers", "response_headers", "request_body", "response_body"))
_HEADER_COLUMNS = (2, 3)
_CHECKED = (0, 1, 4, 5)
_FIRST = itemgetter(slice(None, 1))
_PIECES = 3 + 2 * len(_CSV_ORDER) + 2
#: The separator between two cells, by whether the one before and the one after are wrapped in quotes.
_SEPARATOR = {(False, False): b",", (True, False): b'",', (False, True): b',"', (True, True): b'","'}


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


def _column_rows(rows: Sequence[Sequence[Any]]) -> int:
    """Rows of this batch to build a column at a time: :data:`COLUMN_BYTES` of payload, guessed from three rows."""
    sizes = [len(rows[i][4] or b"") for i in (0, len(rows) // 2, -1)] if rows else [0]
    return max(MIN_COLUMN_ROWS, COLUMN_BYTES * 3 // max(1, sum(sizes)))


def _doubled_cell(value: bytes) -> bytes:
    """:func:`_byte_cell` of UTF-8 bytes whose quotes are doubled already."""
    if value[:1] in _FORMULA_BYTES:
        value = b"'" + value
    if b'"' in value or b"," in value or b"\n" in value or b"\r" in value:
        return b'"' + value + b'"'
    return value


def _needs_quotes(column: Sequence[bytes]) -> bool:
    """True when a cell of ``column`` holds a quote, a comma or a line break (a few scans of the joined column)."""
    joined = b"\0".join(column)
    return b'"' in joined or b"," in joined or b"\n" in joined or b"\r" in joined


def _plain_heads(heads: Sequence[bytes]) -> bool:
    """True when no cell of these heads (11 cells each, joined by commas) holds a quote, a comma or a line break
    or starts like a formula: then a head is already the CSV text of its cells (:func:`_joined_plain_heads`)."""
    return _joined_plain_heads(heads) is not None


def _joined_plain_heads(heads: Sequence[bytes]) -> bytes | None:
    """The heads joined by commas when they are plain (:func:`_plain_heads`), else ``None``. A few scans of the
    batch, most of them ``memchr``: with a comma between two heads, every comma is between two cells exactly
    when there are 11 cells a head."""
    joined = b",".join(heads)
    if b'"' in joined or b"\r" in joined or b"\n" in joined or joined.count(b",") != _HEAD_CELLS * len(heads) - 1:
        return None
    if b"=" in joined or b"+" in joined or b"@" in joined or b"\t" in joined:
        return None  # rare in a head: look no closer
    if joined[:1] == b"-" or b",-" in joined:
        return None
    return joined


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
        self.millis = _MILLIS if self._refers_to_time() else "NULL"

    def _refers_to_time(self) -> bool:
        """Whether the newest payloads (among the newest rows) refer to their row's delivery time (MoeGo's ``X-Moe-Timestamp``): then the
        SELECT has SQLite work out the epoch milliseconds of every row; otherwise it does not (a batch whose
        payloads refer to it then goes row by row). A guess from a sample: either way the bytes are the same."""
        for (dict_id, frame) in self.conn.execute(
                "SELECT substr(payload, 1, 1), substr(payload, 2) FROM (SELECT payload FROM deliveries ORDER BY rowid "
                "DESC LIMIT ?) WHERE payload IS NOT NULL LIMIT ?", (20 * _SAMPLE, _SAMPLE)):
            try:
                if codec.KEY_TOKENS[-1:] in self.coder.decompressor(dict_id[0])(frame):
                    return True
            except Exception:  # noqa: BLE001 - a payload this cannot read is for the export to report
                return True
        return False

    def select(self) -> tuple[str, tuple[str, ...]]:
        """The SELECT (a WHERE to follow) and its parameters: ``rowid, head, error cell, tail, payload frame,
        dictionary byte, epoch milliseconds``. The tail holds the encodings, the name's cell (a CASE over the names
        given) and CRLF; with no name given, it is the encodings' number (:data:`_ENCODINGS`) instead. The payload
        is NULL for a row whose fields are (partly) in the text columns; the milliseconds are NULL unless the
        sampled payloads refer to the delivery time (:data:`_MILLIS`)."""
        if not self.name_cells:
            return f"SELECT rowid, {_HEAD}, {_ERROR}, {_ENCODINGS}, {_FAST_PAYLOAD}, {self.millis} FROM deliveries", ()
        name = "(CASE webhook_id " + " ".join("WHEN ? THEN ?" for _ in self.name_cells) + " ELSE '' END)"
        params = tuple(x for pair in self.name_cells.items() for x in pair)
        tail = f"CAST({_SUFFIX} || ',' || {name} || char(13, 10) AS BLOB)"
        return f"SELECT rowid, {_HEAD}, {_ERROR}, {tail}, {_FAST_PAYLOAD}, {self.millis} FROM deliveries", params

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

        A batch written by this version (every row's fields in its payload, its head plain, no secret name in its
        headers, every payload referring to the same keys) is built a column at a time (:meth:`_columns`); any
        other goes row by row (:meth:`_by_row`), and a row that needs it down the general path (:meth:`general`)."""
        if not rows:
            return b""
        step = _column_rows(rows)
        if len(rows) > step:
            return b"".join([self._lines(rows[i:i + step]) for i in range(0, len(rows), step)])
        return self._lines(rows)

    def _lines(self, rows: Sequence[Sequence[Any]]) -> bytes:
        built = self._columns(rows)
        return built if built is not None else self._by_row(rows)

    def _columns(self, rows: Sequence[Sequence[Any]]) -> bytes | None:
        """:meth:`lines` a column at a time, with no Python work per row beyond a few list comprehensions, or
        ``None`` when the batch does not have the shape this needs (then :meth:`_by_row` builds it).

        The payloads are decompressed (``map`` over one dictionary's decompressor) and joined, a row mark
        (0xF5: never in UTF-8) between two; when every payload holds the same sequence of separators and key
        bytes (one ``translate`` and one comparison say so), the keys are put back for the whole batch at once
        (split on the key bytes, interleaved with the key columns), then base64 bodies stored as their text,
        quotes doubled, and the fields split out: the 6 cells are columns (slices), quoted a column at a time
        when no cell starts like a formula. Each step is exactly what :func:`codec.unkeyed` and the row by row
        path do to one row, so the bytes are the same."""
        n = len(rows)
        _, heads, errors, tails, bodies, dict_ids, millis = zip(*rows)
        joined_heads = None if None in bodies else _joined_plain_heads(heads)
        if joined_heads is None:
            return None
        kinds = set(dict_ids)
        # Memory: each step below replaces the batch's bytes, so about two copies of it are alive at a time.
        if len(kinds) == 1:
            joined = _ROW.join(map(self.coder.decompressor(dict_ids[0][0]), bodies))
        else:
            by_kind = {kind: self.coder.decompressor(kind[0]) for kind in kinds}
            joined = _ROW.join([by_kind[kind](body) for kind, body in zip(dict_ids, bodies)])
        if self.secret_bytes:
            lower = joined.lower()
            if any(name in lower for name in self.secret_bytes):
                return None  # a header set may name one: row by row looks
            del lower
        marks = joined.translate(None, _ALL_BUT_MARKS)
        if marks.translate(None, codec.KEY_TOKENS) != (_EIGHT_FIELDS * n)[:-1]:
            return None  # a payload that is not 8 fields: row by row says why
        tokens = marks.translate(None, _ALL_BUT_KEYS_AND_ROW)
        keyed = len(tokens) >= n  # some payload refers to its keys (then the row marks go with them)
        if keyed:
            if 0xFC in tokens and None in millis:
                return None  # a delivery time SQLite did not turn into epoch milliseconds: row by row says why
            # The keys, from the heads (plain: their first 5 cells are the keys' text as it is).
            cells = joined_heads.split(b",")
            columns = (cells[0::_HEAD_CELLS], cells[3::_HEAD_CELLS], cells[1::_HEAD_CELLS], cells[2::_HEAD_CELLS],
                       millis)
            unit = tokens[: tokens.find(_ROW) + 1] if n > 1 else tokens + _ROW
            if tokens + _ROW == unit * n:  # every payload refers to the same keys in the same order
                width = len(unit) - 1
                values: list[Any] = [None] * (width * n)
                for j, token in enumerate(unit[:-1]):
                    values[j::width] = columns[token - 0xF8]
            else:
                by_row = list(zip(*columns))
                values = [keys[token - 0xF8] for row, keys in zip(tokens.split(_ROW), by_row) for token in row]
            merged: list[Any] = [None] * (2 * len(values) + 1)
            merged[0::2] = joined.translate(_KEYS_AS_ONE).split(_ONE_KEY)
            merged[1::2] = values
            del joined, values
            joined = b"".join(merged)
            del merged
        if b"\xfd" in joined:
            pieces = codec.EXPANDED_BASE64.split(joined)
            texts = pieces[1::2]
            if _ROW in b"".join(texts) or codec.SEPARATOR in b"".join(texts):
                return None  # a mark left open in one field, closed in another: row by row
            pieces[1::2] = [b2a_base64(text, newline=False) for text in texts]
            del joined, texts
            joined = b"".join(pieces)
            del pieces
        if b'"' in joined:
            joined = joined.replace(b'"', b'""')
        if not keyed:
            joined = joined.replace(_ROW, codec.SEPARATOR)
        fields = joined.split(codec.SEPARATOR)
        del joined
        if len(fields) != _FIELDS * n:
            return None
        # The 6 cells in CSV order, a column each; wrapped[k]: every cell of column k is to be wrapped in quotes
        # (done by the separators around it); a column of mixed cells is quoted cell by cell.
        columns = [fields[at::_FIELDS] for at in _CSV_ORDER]
        del fields
        firsts: set[bytes] = set()
        for k in _CHECKED:
            firsts.update(map(_FIRST, columns[k]))
        formula = not _FORMULA_BYTES.isdisjoint(firsts)
        wrapped = [False] * len(columns)
        for k, column in enumerate(columns):
            if k in _HEADER_COLUMNS:  # header sets as written: a JSON object (never a formula start), quoted unless "{}"
                empty = column.count(b"{}")
                if not empty:
                    wrapped[k] = True
                elif empty != n:
                    columns[k] = [h if h == b"{}" else b'"' + h + b'"' for h in column]
            elif formula:
                columns[k] = list(map(_doubled_cell, column))
            elif _needs_quotes(column):
                if sum(map(bytes.__contains__, column, repeat(b'"'))) == n:
                    wrapped[k] = True  # every cell holds a quote (a JSON body): every cell is wrapped
                else:
                    columns[k] = [b'"' + c + b'"' if b'"' in c or b"," in c or b"\n" in c or b"\r" in c else c
                                  for c in column]
        if not self.name_cells:
            tails = list(map(_TAILS.__getitem__, tails))
        # head , error SEP cell SEP cell ... SEP tail: 17 pieces a row, joined once.
        edges = [False, *wrapped, False]
        pieces: list[Any] = [None] * (_PIECES * n)
        pieces[0::_PIECES] = heads
        pieces[1::_PIECES] = [b","] * n
        pieces[2::_PIECES] = errors
        for k, column in enumerate(columns):
            pieces[3 + 2 * k::_PIECES] = [_SEPARATOR[edges[k], edges[k + 1]]] * n
            pieces[4 + 2 * k::_PIECES] = column
        pieces[_PIECES - 2::_PIECES] = [_SEPARATOR[edges[-2], False]] * n
        pieces[_PIECES - 1::_PIECES] = tails
        return b"".join(pieces)

    def _by_row(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """:meth:`lines` row by row: a row written by this version (its fields all in the payload, its head plain,
        no secret name in its headers) is built here from bytes; any other is read again down the general path
        (:meth:`general`)."""
        plain = _plain_heads([r[1] for r in rows])
        decompress = self.coder.decompressor
        secret, formula, sep = self.secret_bytes, _FORMULA_BYTES, codec.SEPARATOR
        tails = None if self.name_cells else _TAILS
        out: list[bytes] = []
        slow: dict[int, int] = {}
        for rowid, head, error, tail, body, dict_id, _ in rows:
            if body is not None and (plain or _plain_heads((head,))):
                # A plain head's first 5 cells are the row's keys as they are (codec.KEY_COLUMNS' order differs).
                did, webhook_id, event_type, event_id, delivered_at = head.decode("utf-8").split(",", 5)[:5]
                data = codec.unkeyed(decompress(dict_id[0])(body), (did, event_id, webhook_id, event_type, delivered_at))
                url, to, req_h, req_b, resp_h, resp_b, _, _ = data.split(sep)
            else:
                body = None
            if body is None or secret and any(n in req_h.lower() or n in resp_h.lower() for n in secret):
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
