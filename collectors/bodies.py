"""Read a logged webhook body of any shape MoeGo sends, for display and search (never to rewrite it).

MoeGo documents two shapes of the event it POSTs (see the contract, "What is delivered"):

- the integration guide's ``{"id", "type", "timestamp", "companyId", "payload": {...}}``, where the
  guide types ``payload`` as bytes "encoded in base64";
- its proto's (``moego.business.event.v1.Event``): the payload is a ``oneof``, so the event's object
  sits under ``healthCheck``, ``appointment``, ``onlineBooking``, ``customer`` or ``pet``.

Either field may hold the object itself or a string: the base64 of the object's JSON.
:func:`decode_body` returns the body with every such string replaced by the object it encodes,
says which fields were decoded, and adds a one-line note; :func:`index_text` is the text the
archive's full-text index holds for a request body (the body as logged, plus any decoded payload).

Contract: every input is untrusted. Nothing here raises on any string: a field that claims base64
but is not, or decodes to bytes that are not a JSON object, stays exactly as received, with a note
saying so. The work is bounded: bodies over :data:`MAX_DECODE_CHARS` are not parsed, JSON nested
deeper than :data:`MAX_DEPTH` is not taken apart, only the top-level payload fields are decoded, and
a decoded payload is never decoded again.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PAYLOAD_FIELDS",
    "MAX_DECODE_CHARS",
    "MAX_DEPTH",
    "DecodedBody",
    "decode_body",
    "index_text",
]

#: Top-level fields that carry an event's payload: the guide's, then the proto's oneof fields.
PAYLOAD_FIELDS: tuple[str, ...] = ("payload", "healthCheck", "appointment", "onlineBooking", "customer", "pet")
#: Bodies longer than this (in characters) are shown and indexed as received, never parsed.
MAX_DECODE_CHARS = 1_000_000
#: JSON nested deeper than this is not decoded (it is shown as received).
MAX_DEPTH = 64

_B64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")
# A payload field holding a string: the only bodies worth parsing for the search index.
_STRING_PAYLOAD = re.compile(r'"(?:%s)"\s*:\s*"' % "|".join(PAYLOAD_FIELDS))


@dataclass(frozen=True)
class DecodedBody:
    """A body as read: ``value`` is its JSON (base64 payloads replaced by their objects), or None when it
    is not JSON (or too large or deep to parse); ``decoded`` names the fields decoded from base64, in
    body order; ``note`` is one line for a reader ("" when there is nothing to say);
    ``decoded_texts`` holds the JSON text of each decoded payload and ``encoded`` the base64 string it came
    from, both in ``decoded`` order (for the search index).
    """

    value: Any
    is_json: bool
    decoded: tuple[str, ...] = ()
    note: str = ""
    decoded_texts: tuple[str, ...] = ()
    encoded: tuple[str, ...] = ()


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests containers deeper than ``limit`` (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _parse_json(text: str) -> tuple[Any, str]:
    """``(value, "")`` for JSON text, or ``(None, why)`` when it is not JSON or too deep."""
    try:
        value = json.loads(text)
    except RecursionError:
        return None, f"nested deeper than {MAX_DEPTH} levels"
    except ValueError:
        return None, "not JSON"
    if _depth_exceeds(value, MAX_DEPTH):
        return None, f"nested deeper than {MAX_DEPTH} levels"
    return value, ""


def _b64_bytes(text: str) -> bytes | None:
    """The bytes of a proto3 JSON ``bytes`` string (standard or URL-safe, padding optional), or None."""
    if not text or len(text) % 4 == 1 or not _B64.fullmatch(text):
        return None
    core = text.rstrip("=")
    if "=" in core:
        return None
    try:
        return base64.b64decode(core.replace("-", "+").replace("_", "/") + "=" * (-len(core) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _decode_field(name: str, text: str) -> tuple[Any, str, str]:
    """``(object, its JSON text, "")`` when ``text`` is base64 of a JSON object, else ``(None, "", why)``."""
    raw = _b64_bytes(text)
    if raw is None:
        return None, "", f"`{name}` is a string but not base64"
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "", f"`{name}` is base64 of {len(raw):,} bytes that are not UTF-8 text"
    value, why = _parse_json(decoded)
    if why:
        return None, "", f"`{name}` is base64 of {len(raw):,} bytes of text that is {why}"
    if not isinstance(value, dict):
        return None, "", f"`{name}` is base64 of JSON that is not an object"
    return value, decoded, ""


def decode_body(text: str, *, is_base64: bool = False) -> DecodedBody:
    """Read a logged body (``is_base64``: the archive holds it as base64 because it is not UTF-8).

    Returns the parsed JSON with each top-level payload field that is a base64 string replaced by the
    object it encodes; fields that cannot be decoded stay as received and the note says why. Never raises.
    """
    if is_base64:
        return DecodedBody(None, False, note="Not UTF-8 text: shown as base64.")
    if not text:
        return DecodedBody(None, False, note="Empty body.")
    if len(text) > MAX_DECODE_CHARS:
        return DecodedBody(None, False, note=f"Longer than {MAX_DECODE_CHARS:,} characters: shown as received.")
    value, why = _parse_json(text)
    if why:
        note = "" if why == "not JSON" else f"JSON {why}: shown as received."
        return DecodedBody(None, False, note=note)
    if not isinstance(value, dict):
        return DecodedBody(value, True)
    decoded: list[str] = []
    texts: list[str] = []
    encoded: list[str] = []
    problems: list[str] = []
    out = value
    for name in PAYLOAD_FIELDS:
        field = value.get(name)
        if not isinstance(field, str):
            continue
        obj, obj_text, problem = _decode_field(name, field)
        if problem:
            problems.append(problem)
            continue
        if out is value:
            out = dict(value)
        out[name] = obj
        decoded.append(name)
        texts.append(obj_text)
        encoded.append(field)
    notes = []
    if decoded:
        fields = ", ".join(f"`{name}`" for name in decoded)
        notes.append(f"{fields} decoded from base64 for reading; the raw body is kept exactly as logged.")
    if problems:
        notes.append("; ".join(problems) + ": shown as received.")
    return DecodedBody(out, True, tuple(decoded), " ".join(notes), tuple(texts), tuple(encoded))


def index_text(text: str, *, is_base64: bool = False) -> str:
    """The text the full-text index holds for a request body: the body as logged, with each payload decoded
    from base64 in place of its base64 string (so a word inside such a payload is found, and the index
    does not fill up with base64 fragments nobody searches for).

    A body with no base64 payload is indexed exactly as logged (only bodies with a string in a payload
    field are parsed at all, which keeps the writer's cost for every other body to one regex search).
    Where a base64 string does not appear literally in the text (an encoder that escaped its ``/``), the
    decoded payload is appended on a new line instead.
    """
    if is_base64 or not _STRING_PAYLOAD.search(text):
        return text
    decoded = decode_body(text)
    for encoded, plain in zip(decoded.encoded, decoded.decoded_texts):
        if f'"{encoded}"' in text:
            text = text.replace(f'"{encoded}"', plain, 1)
        else:
            text = f"{text}\n{plain}"
    return text
