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

Header sets in a payload are stored in the export's JSON form (``json.dumps(..., ensure_ascii=False,
sort_keys=True)``), redacted (:func:`canonical_headers`), so the CSV export copies them as they are.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

import zstandard as zstd

from ..redaction import redact_headers

__all__ = [
    "PAYLOAD_FIELDS",
    "SEPARATOR",
    "CODEC_DDL",
    "TRAIN_AT",
    "Codec",
    "pack",
    "unpack",
    "canonical_headers",
    "canonical_headers_text",
    "fields",
    "train",
]

#: The fields a payload holds, in its order.
PAYLOAD_FIELDS: tuple[str, ...] = (
    "request_url", "delivered_to", "request_headers", "request_body", "response_headers", "response_body",
    "request_format", "response_format",
)
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


def pack(values: Sequence[str]) -> bytes:
    """The UTF-8 texts of ``values`` separated by the byte 0xFF, which UTF-8 text never holds."""
    return b"\xff".join(v.encode("utf-8") for v in values)


def unpack(data: bytes) -> list[str]:
    """The strings :func:`pack` packed."""
    return [part.decode("utf-8") for part in data.split(b"\xff")]


def canonical_headers(headers: Mapping[str, Sequence[str]], extra_secret: Sequence[str] = ()) -> str:
    """A header set as a payload stores it: redacted, JSON in the export's form."""
    return json.dumps(redact_headers({str(k): [str(v) for v in vs] for k, vs in headers.items()}, extra_secret),
                      ensure_ascii=False, sort_keys=True)


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

    def encode(self, values: Sequence[str]) -> bytes:
        """A payload BLOB for the :data:`PAYLOAD_FIELDS` ``values``, with the newest dictionary."""
        return bytes((self.dict_id,)) + self._encoder.compress(pack(values))

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

    def decode(self, blob: bytes) -> list[str]:
        """The :data:`PAYLOAD_FIELDS` values of a payload BLOB."""
        return unpack(self._decoder(blob[0]).decompress(blob[1:]))

    def decode_many(self, blobs: Sequence[bytes]) -> list[list[str]]:
        """:meth:`decode` of each blob."""
        decode = self.decode
        return [decode(b) for b in blobs]

    def packed_many(self, blobs: Sequence[bytes]) -> list[bytes]:
        """Each payload BLOB decompressed, still packed: the UTF-8 bytes of its :data:`PAYLOAD_FIELDS` separated
        by :data:`SEPARATOR` (:func:`pack`), nothing decoded to text. For a reader that works on bytes (the
        export); :func:`unpack` of an item is :meth:`decode` of its blob."""
        for dict_id in {b[0] for b in blobs}:
            self._decoder(dict_id)
        decompress = {i: d.decompress for i, d in self._decoders.items()}
        return [decompress[b[0]](b[1:]) for b in blobs]


def fields(codec: Codec | None, payload: bytes | None, texts: Sequence[str]) -> tuple[str, ...]:
    """A row's :data:`PAYLOAD_FIELDS` from its ``payload`` and its text columns (same order): a non-empty
    text column wins, otherwise the payload's value (``""`` without a payload)."""
    if payload is None:
        return tuple(t or "" for t in texts)
    assert codec is not None, "a row with a payload needs a Codec"
    decoded = codec.decode(payload)
    return tuple(t if t else d for t, d in zip(texts, decoded))


_TEXTS = ", ".join(PAYLOAD_FIELDS)
_HEADERS_AT = tuple(PAYLOAD_FIELDS.index(f) for f in ("request_headers", "response_headers"))


def stored_values(codec: Codec | None, payload: bytes | None, texts: Sequence[str]) -> list[str]:
    """:func:`fields` as a payload stores them: header text from a text column (written before the payload column,
    as compact JSON) in the canonical form (:func:`canonical_headers_text`)."""
    values = list(fields(codec, payload, texts))
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
    rows = [row for hook in hooks for row in conn.execute(
        f"SELECT payload, {_TEXTS} FROM deliveries WHERE webhook_id = ? ORDER BY delivered_at DESC LIMIT ?",
        (hook, share))]
    samples = [pack(stored_values(codec, r[0], r[1:])) for r in rows]
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


def for_writing(conn: sqlite3.Connection, webhook_ids: Iterable[str] = ()) -> Codec:
    """The :class:`Codec` a writer encodes a page of ``webhook_ids``' deliveries with; trains when due.

    - No dictionary yet: once the archive holds :data:`TRAIN_AT` deliveries, the first one is trained
      and the rows encoded without one are re-encoded with it (their content is unchanged).
    - A webhook the newest dictionary was not trained on: once it has :data:`TRAIN_AT` // 2
      deliveries archived, a new dictionary is trained on every webhook's (older rows keep theirs).

    Call inside the writer's transaction. Costs one small read per page once trained.
    """
    codec = Codec(conn)
    if codec.dict_id == _NO_DICT:
        if conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM deliveries LIMIT ?)", (TRAIN_AT,)).fetchone()[0] < TRAIN_AT:
            return codec
        if train(conn) is None:
            return codec
        fresh = Codec(conn)
        rows = conn.execute("SELECT rowid, payload FROM deliveries WHERE substr(payload, 1, 1) = x'00'").fetchall()
        conn.executemany("UPDATE deliveries SET payload = ? WHERE rowid = ?",
                         [(fresh.encode(codec.decode(blob)), rowid) for rowid, blob in rows])
        return fresh
    known = set(json.loads(conn.execute("SELECT webhooks FROM codec_dicts WHERE id = ?", (codec.dict_id,)).fetchone()[0]))
    for hook in set(webhook_ids) - known:
        enough = conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE webhook_id = ? LIMIT ?)",
                              (hook, TRAIN_AT // 2)).fetchone()[0]
        if enough >= TRAIN_AT // 2 and train(conn) is not None:
            return Codec(conn)
    return codec


def stored_row(codec: Codec, row: Mapping[str, object]) -> dict[str, object]:
    """``row`` (the writer's plain row) as written from schema 4 on: its payload fields emptied, ``payload`` set."""
    out = dict(row)
    out["payload"] = codec.encode([str(row[f]) for f in PAYLOAD_FIELDS])
    for name in PAYLOAD_FIELDS:
        out[name] = ""
    return out


def payload_of(conn: sqlite3.Connection, delivery_id: str) -> dict[str, str] | None:
    """The :data:`PAYLOAD_FIELDS` of one archived delivery as plain text, or ``None`` when there is none."""
    row = conn.execute(f"SELECT payload, {_TEXTS} FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    if row is None:
        return None
    return dict(zip(PAYLOAD_FIELDS, fields(Codec(conn) if row[0] is not None else None, row[0], row[1:])))
