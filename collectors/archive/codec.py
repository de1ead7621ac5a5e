"""The archive's compressed payload: one zstd frame per delivery holding its bulky, rarely read fields.

Which fields (:data:`PAYLOAD_FIELDS`): the request URL, the address that answered, both header sets
(JSON, already redacted), both bodies (text, or base64 when not UTF-8) and both formats. No query
filters, sorts or groups on them: the list, charts and rollups never read them; the detail view, the
export, the search index's maintenance and redelivery do, through this module only.

Storage (from the payload column on): ``deliveries.payload`` is a BLOB ``<dictionary id: 1 byte><zstd frame>`` whose
frame (magicless, with its content size, no checksum) holds :func:`pack` of the fields (their UTF-8
texts separated by the byte 0xFF). Dictionary
id 0 means no dictionary; ids 1..255 name rows of ``codec_dicts``, zstd dictionaries trained on the
archive's own payloads. A dictionary is never changed or deleted once stored, so every row stays
readable after a retrain (:func:`train` adds a new id; new rows use the newest).

The text columns of the same names stay in the table: the writer leaves them empty, rows archived
before the payload column keep their text there until :func:`collectors.archive.compaction.compact` moves it into ``payload``. The rule
for a reader (:func:`fields`): **a non-empty text column wins; otherwise the payload's field**. So an
archive half way through its compaction reads exactly as before and as after.

What a payload repeats from its row is not stored twice (schema 11 on): before compression, a base64
string of UTF-8 text in one of the request body's payload fields (:data:`collectors.bodies.PAYLOAD_FIELDS`,
sent as base64) is replaced by ``0xFD <its text> 0xFE`` when encoding that text again gives the same
string, then the row's :data:`KEY_COLUMNS` (delivery id, event id, webhook id, event type, and the
delivery time as epoch milliseconds, MoeGo's ``X-Moe-Timestamp``) wherever they occur by one byte each
(0xF8..0xFC). No byte 0xF8..0xFF ever occurs in UTF-8 text, so :meth:`Codec.decode` restores the exact
bytes given the same keys (a payload without such bytes, written before, decodes unchanged). Hence a row's key columns are never changed
without encoding its payload again (the writer does, on an update).

Header sets in a payload are stored in the export's JSON form (``json.dumps(..., ensure_ascii=False,
sort_keys=True)``), redacted (:func:`canonical_headers`), so the CSV export copies them as they are.
"""

from __future__ import annotations

import binascii
import calendar
import json
import re
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone

import zstandard as zstd

from ..redaction import DEFAULT_SECRET_HEADERS, REDACTED

__all__ = [
    "PAYLOAD_FIELDS",
    "KEY_COLUMNS",
    "KEY_SELECT",
    "SEPARATOR",
    "CODEC_DDL",
    "TRAIN_AT",
    "Codec",
    "KEY_TOKENS",
    "EXPANDED_BASE64",
    "unkeyed",
    "pack",
    "unpack",
    "canonical_headers",
    "canonical_headers_text",
    "fields",
    "train",
    "HIDDEN_COLUMNS",
    "readable",
]

#: The fields a payload holds, in its order.
PAYLOAD_FIELDS: tuple[str, ...] = (
    "request_url", "delivered_to", "request_headers", "request_body", "response_headers", "response_body",
    "request_format", "response_format",
)
#: The row's columns a payload may refer to instead of repeating them (:meth:`Codec.encode`), in its order.
KEY_COLUMNS: tuple[str, ...] = ("id", "event_id", "webhook_id", "event_type", "delivered_at")
#: :data:`KEY_COLUMNS` as a reader of a schema-13 archive selects them for :meth:`Codec.packed_many` /
#: :meth:`Codec.decode`: the delivery time as ``delivered_key`` (its stored integer; ``delivered_at`` would render
#: the text once more per row, collectors.archive.when), which gives the same epoch milliseconds.
KEY_SELECT = ", ".join(KEY_COLUMNS[:-1] + ("delivered_key",))
#: The byte between two fields of a packed payload (:func:`pack`): 0xFF, which UTF-8 text never holds.
SEPARATOR = b"\xff"
#: Schema 3's table of dictionaries.
CODEC_DDL = """
CREATE TABLE IF NOT EXISTS codec_dicts (
    id          INTEGER PRIMARY KEY CHECK (id BETWEEN 1 AND 255),
    trained_at  TEXT NOT NULL,
    samples     INTEGER NOT NULL,
    webhooks    TEXT NOT NULL,         -- JSON list of the webhooks whose payloads it was trained on
    dict        BLOB NOT NULL
)
"""
#: A dictionary is trained once the archive holds this many deliveries (rows before that use none
#: and are re-encoded with the first dictionary when it is trained).
TRAIN_AT = 2_000
#: Payloads a dictionary is trained on (the newest rows), and its size.
TRAIN_SAMPLES = 5_000
DICT_SIZE = 32_768
LEVEL = 3

_NO_DICT = 0
_lock = threading.Lock()
_dicts: dict[bytes, zstd.ZstdCompressionDict] = {}


def _dictionary(data: bytes) -> zstd.ZstdCompressionDict:
    """A shared, prepared zstd dictionary for ``data`` (prepared once per process)."""
    with _lock:
        found = _dicts.get(data)
        if found is None:
            found = zstd.ZstdCompressionDict(data)
            found.precompute_compress(level=LEVEL)
            # Build its decompression side too, here under the lock, so threads only ever read it.
            zstd.ZstdDecompressor(dict_data=found, format=zstd.FORMAT_ZSTD1_MAGICLESS).decompress(
                _compressor(found).compress(b"warm up")
            )
            if len(_dicts) > 64:
                _dicts.clear()
            _dicts[data] = found
        return found


def _compressor(dictionary: zstd.ZstdCompressionDict | None) -> zstd.ZstdCompressor:
    params = zstd.ZstdCompressionParameters.from_level(
        LEVEL, format=zstd.FORMAT_ZSTD1_MAGICLESS, write_content_size=True, write_checksum=False,
        write_dict_id=False,
    )
    return zstd.ZstdCompressor(dict_data=dictionary, compression_params=params)


_KEY_TOKENS = re.compile(rb"[\xf8-\xfc]")
# A base64 string (whole quads only: what encoding some text can give) in a body field MoeGo may send as base64
# (collectors.bodies.PAYLOAD_FIELDS): the only strings expanded.
_B64_IN_QUOTES = re.compile(rb'("(?:payload|healthCheck|appointment|onlineBooking|customer|pet)"\s*:\s*")'
                            rb'((?:[A-Za-z0-9+/]{4}){4,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)"')
_B64_EXPANDED = re.compile(rb"\xfd([^\xfe]*)\xfe")
_days: dict[str, int] = {}
_REQUEST_BODY = PAYLOAD_FIELDS.index("request_body")


def _epoch_ms(stamp: str | int | None) -> str:
    """``2026-10-31T23:17:54.998749Z`` as epoch milliseconds (``1793488674998``); ``""`` for any other text. An
    integer is the same time as ``delivered_key`` (microseconds, :data:`KEY_SELECT`) and gives the same digits."""
    if type(stamp) is int:
        return str(stamp // 1000)
    if not isinstance(stamp, str) or len(stamp) != 27 or stamp[10] != "T" or stamp[26] != "Z":
        return ""
    try:
        day = _days.get(stamp[:10])
        if day is None:
            if len(_days) > 4096:
                _days.clear()
            day = _days[stamp[:10]] = calendar.timegm((int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]), 0, 0, 0))
        seconds = day + int(stamp[11:13]) * 3600 + int(stamp[14:16]) * 60 + int(stamp[17:19])
        return str(seconds * 1000 + int(stamp[20:23]))
    except ValueError:
        return ""


def _expand_b64(match: re.Match[bytes]) -> bytes:
    text = match.group(2)
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
        raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return match.group(0)
    if binascii.b2a_base64(raw, newline=False) != text:
        return match.group(0)
    return match.group(1) + b"\xfd" + raw + b'\xfe"'


def _keyed(values: Sequence[str], keys: Sequence[str]) -> bytes:
    """:func:`pack` of ``values`` with a base64 payload of the request body expanded and the row's keys
    replaced (module docstring)."""
    parts = [v.encode("utf-8") for v in values]
    body = parts[_REQUEST_BODY]
    if b'"' in body:
        parts[_REQUEST_BODY] = _B64_IN_QUOTES.sub(_expand_b64, body)
    data = b"\xff".join(parts)
    if keys:
        k0, k1, k2, k3, k4 = keys
        if k0:
            data = data.replace(k0.encode("utf-8"), b"\xf8")
        if k1:
            data = data.replace(k1.encode("utf-8"), b"\xf9")
        if k2:
            data = data.replace(k2.encode("utf-8"), b"\xfa")
        if k3:
            data = data.replace(k3.encode("utf-8"), b"\xfb")
        ms = _epoch_ms(k4)
        if ms:
            data = data.replace(ms.encode(), b"\xfc")
    return data


def _unkeyed(data: bytes, keys: Sequence[str]) -> bytes:
    """The inverse of :func:`_keyed` for the same ``keys`` (a payload written without keys comes back as it is)."""
    if keys:
        k0, k1, k2, k3, k4 = keys
        # The reverse of _keyed's order; `in` is a byte search, far cheaper than a replace that finds nothing.
        if b"\xfc" in data:
            ms = _epoch_ms(k4)
            if not ms:
                raise ValueError("this payload refers to its row's delivery time, which is not a timestamp")
            data = data.replace(b"\xfc", ms.encode())
        if b"\xfb" in data:
            data = data.replace(b"\xfb", k3.encode("utf-8"))
        if b"\xfa" in data:
            data = data.replace(b"\xfa", k2.encode("utf-8"))
        if b"\xf9" in data:
            data = data.replace(b"\xf9", k1.encode("utf-8"))
        if b"\xf8" in data:
            data = data.replace(b"\xf8", k0.encode("utf-8"))
    elif _KEY_TOKENS.search(data):
        raise ValueError("this payload refers to its row's keys: decode it with them")
    if b"\xfd" in data:
        data = _B64_EXPANDED.sub(lambda m: binascii.b2a_base64(m.group(1), newline=False), data)
    return data


#: The bytes standing for the row's :data:`KEY_COLUMNS`, in their order (module docstring).
KEY_TOKENS = b"\xf8\xf9\xfa\xfb\xfc"
#: A base64 string of the request body stored as its text (``0xFD <text> 0xFE``; group 1: the text).
EXPANDED_BASE64 = _B64_EXPANDED
#: :func:`unkeyed` is the inverse of the encoder's key replacement (public for batch decoders).
unkeyed = _unkeyed


def pack(values: Sequence[str]) -> bytes:
    """The UTF-8 texts of ``values`` separated by the byte 0xFF, which UTF-8 text never holds."""
    return b"\xff".join(v.encode("utf-8") for v in values)


def unpack(data: bytes) -> list[str]:
    """The strings :func:`pack` packed."""
    return [part.decode("utf-8") for part in data.split(b"\xff")]


_HEADERS_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode  # json.dumps(..., ensure_ascii=False, sort_keys=True)
_json_string = json.encoder.encode_basestring  # the string form that encoder writes (ensure_ascii=False)
_REDACTED_JSON = _json_string(REDACTED)
#: Per (header names in the order given, extra secret names): the names in JSON key order, each with its JSON key
#: text (``"Name": ``) and whether its values are redacted. A webhook's deliveries repeat the same names.
_plans: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[tuple[str, str, bool], ...]] = {}
_PLANS_MAX = 4096


def _plan(names: tuple[str, ...], extra_secret: tuple[str, ...]) -> tuple[tuple[str, str, bool], ...]:
    extra = {e.strip().lower() for e in extra_secret}
    return tuple((name, _json_string(name) + ": ", name.lower() in DEFAULT_SECRET_HEADERS or name.lower() in extra)
                 for name in sorted(names))


def canonical_headers(headers: Mapping[str, Sequence[str]], extra_secret: Sequence[str] = ()) -> str:
    """A header set as a payload stores it: redacted, JSON in the export's form.

    Exactly ``json.dumps(redact_headers({str(k): [str(v) ...]}, extra_secret), ensure_ascii=False, sort_keys=True)``
    (:func:`collectors.redaction.redact_headers`). The writer calls it twice per delivery: which names are
    redacted, their order and their JSON key text are worked out once per set of names (:data:`_plans`), and
    the JSON is joined from the values' JSON strings."""
    names = tuple(headers)
    key = (names, extra_secret if type(extra_secret) is tuple else tuple(extra_secret))
    plan = _plans.get(key)
    if plan is None:
        if any(type(name) is not str for name in names):
            return _canonical_headers_slow(headers, extra_secret)  # str(name) could make two names one
        if len(_plans) >= _PLANS_MAX:
            _plans.clear()
        plan = _plans[key] = _plan(names, key[1])
    parts = []
    for name, prefix, redacted in plan:
        values = headers[name]
        if redacted:
            parts.append(prefix + "[" + ", ".join([_REDACTED_JSON] * (len(values) or 1)) + "]")
        elif len(values) == 1 and type(values[0]) is str:  # nearly every header: one text value
            parts.append(prefix + "[" + _json_string(values[0]) + "]")
        else:
            parts.append(prefix + "[" + ", ".join([_json_string(v) if type(v) is str else _json_string(str(v))
                                                   for v in values]) + "]")
    return "{" + ", ".join(parts) + "}"


def _canonical_headers_slow(headers: Mapping[str, Sequence[str]], extra_secret: Sequence[str] = ()) -> str:
    """:func:`canonical_headers` the plain way (names that are not all strings)."""
    extra = {e.strip().lower() for e in extra_secret} if extra_secret else ()
    out: dict[str, list[str]] = {}
    for name, values in headers.items():
        name = str(name)
        lower = name.lower()
        if lower in DEFAULT_SECRET_HEADERS or lower in extra:
            out[name] = [REDACTED for _ in values] or [REDACTED]
        else:
            out[name] = [v if type(v) is str else str(v) for v in values]
    return _HEADERS_JSON(out)


def canonical_headers_text(text: str, extra_secret: Sequence[str] = ()) -> str:
    """Header JSON text (any archived form) as :func:`canonical_headers`: ``{}`` when it is not a JSON object.

    This is exactly what the CSV export wrote for archived header text before the payload column.
    """
    try:
        parsed = json.loads(text or "{}")
    except json.JSONDecodeError:
        return "{}"
    if not isinstance(parsed, dict):
        return "{}"
    headers = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in parsed.items()}
    return canonical_headers(headers, extra_secret)


class Codec:
    """Encodes and decodes payloads with the dictionaries of one archive, as they were when it was made.

    Make one per operation (a page saved, an export, a read): it reads ``codec_dicts`` once. Not shared
    between threads.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._stored = {i: bytes(d) for i, d in conn.execute("SELECT id, dict FROM codec_dicts ORDER BY id")}
        self._decoders: dict[int, zstd.ZstdDecompressor] = {}
        self.dict_id = max(self._stored, default=_NO_DICT)
        self._encoder = _compressor(_dictionary(self._stored[self.dict_id]) if self.dict_id else None)

    def encode(self, values: Sequence[str], keys: Sequence[str] = ()) -> bytes:
        """A payload BLOB for the :data:`PAYLOAD_FIELDS` ``values`` of the row whose :data:`KEY_COLUMNS` are
        ``keys``, with the newest dictionary."""
        return bytes((self.dict_id,)) + self._encoder.compress(_keyed(values, keys))

    def _decoder(self, dict_id: int) -> zstd.ZstdDecompressor:
        decoder = self._decoders.get(dict_id)
        if decoder is None:
            if dict_id == _NO_DICT:
                decoder = zstd.ZstdDecompressor(format=zstd.FORMAT_ZSTD1_MAGICLESS)
            elif dict_id in self._stored:
                decoder = zstd.ZstdDecompressor(dict_data=_dictionary(self._stored[dict_id]),
                                                format=zstd.FORMAT_ZSTD1_MAGICLESS)
            else:
                raise ValueError(f"payload compressed with dictionary {dict_id}, which the archive does not hold")
            self._decoders[dict_id] = decoder
        return decoder

    def decode(self, blob: bytes, keys: Sequence[str] = ()) -> list[str]:
        """The :data:`PAYLOAD_FIELDS` values of a payload BLOB of the row whose :data:`KEY_COLUMNS` are ``keys``
        (``ValueError`` when the payload refers to keys and none are given)."""
        return unpack(_unkeyed(self._decoder(blob[0]).decompress(blob[1:]), keys))

    def decode_many(self, blobs: Sequence[bytes], keys: Sequence[Sequence[str]]) -> list[list[str]]:
        """:meth:`decode` of each blob with the keys of its row (same order)."""
        decode = self.decode
        return [decode(b, k) for b, k in zip(blobs, keys, strict=True)]

    def decompressor(self, dict_id: int) -> Callable[[bytes], bytes]:
        """The function that decompresses the zstd frame of a payload BLOB compressed with dictionary ``dict_id``
        (the BLOB after its first byte, which is ``dict_id``), its keys not restored (:func:`unkeyed` does):
        for a reader that restores a whole batch's keys at once (the export). ``ValueError`` for a dictionary the
        archive does not hold."""
        return self._decoder(dict_id).decompress

    def packed_many(self, blobs: Sequence[bytes], keys: Sequence[Sequence[str]]) -> list[bytes]:
        """Each payload BLOB decompressed and given back its row's ``keys`` (:data:`KEY_COLUMNS`, same order as
        ``blobs``), still packed: the UTF-8 bytes of its :data:`PAYLOAD_FIELDS` separated by :data:`SEPARATOR`
        (:func:`pack`), nothing decoded to text. For a reader that works on bytes (the export); :func:`unpack`
        of an item is :meth:`decode` of its blob with its keys."""
        for dict_id in {b[0] for b in blobs}:
            self._decoder(dict_id)
        decompress = {i: d.decompress for i, d in self._decoders.items()}
        return [_unkeyed(decompress[b[0]](b[1:]), k) for b, k in zip(blobs, keys, strict=True)]


def fields(codec: Codec | None, payload: bytes | None, texts: Sequence[str],
           keys: Sequence[str] = ()) -> tuple[str, ...]:
    """A row's :data:`PAYLOAD_FIELDS` from its ``payload`` and its text columns (same order): a non-empty
    text column wins, otherwise the payload's value (``""`` without a payload). ``keys``: the row's
    :data:`KEY_COLUMNS`."""
    if payload is None:
        return tuple(t or "" for t in texts)
    assert codec is not None, "a row with a payload needs a Codec"
    decoded = codec.decode(payload, keys)
    return tuple(t if t else d for t, d in zip(texts, decoded))


_TEXTS = ", ".join(PAYLOAD_FIELDS)
_KEYS = ", ".join(KEY_COLUMNS)
_HEADERS_AT = tuple(PAYLOAD_FIELDS.index(f) for f in ("request_headers", "response_headers"))


def stored_values(codec: Codec | None, payload: bytes | None, texts: Sequence[str],
                  keys: Sequence[str] = ()) -> list[str]:
    """:func:`fields` as a payload stores them: header text from a text column (written before the payload column,
    as compact JSON) in the canonical form (:func:`canonical_headers_text`)."""
    values = list(fields(codec, payload, texts, keys))
    for i in _HEADERS_AT:
        if texts[i]:
            values[i] = canonical_headers_text(values[i])
    return values


def train(conn: sqlite3.Connection, *, now: datetime | None = None) -> int | None:
    """Train a dictionary on up to :data:`TRAIN_SAMPLES` payloads and store it; returns its id.

    The samples are the newest payloads of every webhook archived, in equal shares (a dictionary
    trained on one webhook's payloads helps little with another's). ``None`` when there is nothing to
    train on or no id is left (255 dictionaries stored). Call inside a transaction. When zstd cannot
    train on these samples, the samples themselves become a raw-content dictionary, which still helps.
    """
    codec = Codec(conn)
    if codec.dict_id >= 255:
        return None
    hooks = {r[0] for r in conn.execute("SELECT id FROM webhooks UNION SELECT DISTINCT webhook_id FROM "
                                        "(SELECT webhook_id FROM deliveries ORDER BY rowid DESC LIMIT 1000)")}
    for (trained_before,) in conn.execute("SELECT webhooks FROM codec_dicts"):
        hooks.update(json.loads(trained_before))
    hooks = sorted(hooks)
    share = max(1, TRAIN_SAMPLES // max(1, len(hooks)))
    # The time index's column: delivered_key from schema 13 on (collectors.archive.when); the text before it,
    # when the compactions of older schemas train a dictionary.
    time = "delivered_key" if any(r[1] == "delivered_key" for r in conn.execute("PRAGMA table_xinfo(deliveries)")) \
        else "delivered_at"
    rows = [row for hook in hooks for row in conn.execute(
        f"SELECT {_KEYS}, payload, {_TEXTS} FROM deliveries WHERE webhook_id = ? ORDER BY {time} DESC LIMIT ?",
        (hook, share))]
    width = len(KEY_COLUMNS)
    samples = [_keyed(stored_values(codec, r[width], r[width + 1:], r[:width]), r[:width]) for r in rows]
    if not samples:
        return None
    try:
        data = zstd.train_dictionary(DICT_SIZE, samples, level=LEVEL).as_bytes()
    except zstd.ZstdError:
        data = b"".join(samples)[-DICT_SIZE:]
    trained_on = sorted({h for h in hooks if conn.execute(  # type: ignore[union-attr]
        "SELECT 1 FROM deliveries WHERE webhook_id = ? LIMIT 1", (h,)).fetchone()})
    new_id = codec.dict_id + 1
    conn.execute(
        "INSERT INTO codec_dicts (id, trained_at, samples, webhooks, dict) VALUES (?, ?, ?, ?, ?)",
        (new_id, (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), len(samples),
         json.dumps(trained_on), data),
    )
    return new_id


#: Per connection: the :class:`Codec` :func:`for_writing` made last, with the ``codec_dicts`` rows it was made from.
_writing: "weakref.WeakKeyDictionary[sqlite3.Connection, tuple[list[tuple], Codec]]" = weakref.WeakKeyDictionary()
_DICTS_SEEN = "SELECT id, trained_at, samples, webhooks, length(dict) FROM codec_dicts ORDER BY id"


def for_writing(conn: sqlite3.Connection, webhook_ids: Iterable[str] = ()) -> Codec:
    """The :class:`Codec` a writer encodes a page of ``webhook_ids``' deliveries with; trains when due.

    - No dictionary yet: once the archive holds :data:`TRAIN_AT` deliveries, the first one is trained
      and the rows encoded without one are re-encoded with it (their content is unchanged).
    - A webhook the newest dictionary was not trained on: once it has :data:`TRAIN_AT` // 2
      deliveries archived, a new dictionary is trained on every webhook's (older rows keep theirs).

    Call inside the writer's transaction, on the connection's one writing thread. Costs one small read per page
    once trained: the dictionaries' rows without their bytes. While they are the rows the last call on this
    connection saw (ids, training times, sample counts, sizes), its :class:`Codec` is used again instead of
    reading the dictionaries (only for connections :func:`collectors.archive.connect` made)."""
    seen = conn.execute(_DICTS_SEEN).fetchall()
    try:
        cached = _writing.get(conn)
    except TypeError:  # a plain sqlite3 connection: no weak reference to it, so nothing is kept for it
        cached = None
    if cached is not None and cached[0] == seen:
        codec = cached[1]
    else:
        codec = Codec(conn)
        try:
            _writing[conn] = (seen, codec)
        except TypeError:
            pass
    if codec.dict_id == _NO_DICT:
        if conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM deliveries LIMIT ?)", (TRAIN_AT,)).fetchone()[0] < TRAIN_AT:
            return codec
        if train(conn) is None:
            return codec
        fresh = Codec(conn)
        rows = conn.execute(f"SELECT rowid, payload, {_KEYS} FROM deliveries WHERE substr(payload, 1, 1) = x'00'").fetchall()
        conn.executemany("UPDATE deliveries SET payload = ? WHERE rowid = ?",
                         [(fresh.encode(codec.decode(blob, keys), keys), rowid) for rowid, blob, *keys in rows])
        return fresh
    known = set(json.loads(seen[-1][3]))
    for hook in set(webhook_ids) - known:
        enough = conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE webhook_id = ? LIMIT ?)",
                              (hook, TRAIN_AT // 2)).fetchone()[0]
        if enough >= TRAIN_AT // 2 and train(conn) is not None:
            return Codec(conn)
    return codec


def stored_row(codec: Codec, row: Mapping[str, object]) -> dict[str, object]:
    """``row`` (the writer's plain row) as written from schema 4 on: its payload fields emptied, ``payload`` set."""
    out = dict(row)
    out["payload"] = codec.encode([str(row[f]) for f in PAYLOAD_FIELDS], [str(row[k]) for k in KEY_COLUMNS])
    out.update(_EMPTY_FIELDS)
    return out


_EMPTY_FIELDS = dict.fromkeys(PAYLOAD_FIELDS, "")


#: Columns of ``deliveries`` that hold a stored form readers never see (``SELECT *`` returns them): the payload and
#: the seen times' two forms (``first_seen_at`` and ``last_seen_at`` are generated from them, schema 10 on).
HIDDEN_COLUMNS: tuple[str, ...] = ("payload", "first_seen_text", "last_seen_text", "seen_us", "last_seen_us",
                                   "delivered_text", "delivered_us", "delivered_key", "rowid")


def readable(conn: sqlite3.Connection, record: dict[str, object]) -> dict[str, object]:
    """A ``SELECT *`` row of ``deliveries`` (as a dict) as a reader sees it: the payload's fields in their
    columns, :data:`HIDDEN_COLUMNS` left out. Changes and returns ``record``."""
    payload = record.get("payload")
    texts = [record[name] for name in PAYLOAD_FIELDS]
    keys = [str(record[k]) for k in KEY_COLUMNS]
    record.update(zip(PAYLOAD_FIELDS, fields(Codec(conn) if payload else None, payload, texts, keys)))  # type: ignore[arg-type]
    for name in HIDDEN_COLUMNS:
        record.pop(name, None)
    return record


def payload_of(conn: sqlite3.Connection, delivery_id: str) -> dict[str, str] | None:
    """The :data:`PAYLOAD_FIELDS` of one archived delivery as plain text, or ``None`` when there is none."""
    row = conn.execute(f"SELECT payload, {_TEXTS}, {_KEYS} FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    if row is None:
        return None
    width = len(PAYLOAD_FIELDS)
    return dict(zip(PAYLOAD_FIELDS, fields(Codec(conn) if row[0] is not None else None, row[0], row[1:width + 1],
                                           row[width + 1:])))
