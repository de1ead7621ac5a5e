"""Presentation helpers: bodies, headers, statuses and the export command a view maps to."""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timezone

from collectors.archive.filters import Filters
from dashboard.present import MAX_BODY_CHARS, export_command_line, header_rows, pretty_body, status_text

UTC = timezone.utc


def test_json_bodies_are_pretty_printed() -> None:
    body = pretty_body('{"b":1,"a":{"x":[1,2]},"name":"Zoë"}', False)
    assert body.language == "json" and body.note == "JSON, pretty-printed."
    assert body.text == json.dumps({"b": 1, "a": {"x": [1, 2]}, "name": "Zoë"}, indent=2, ensure_ascii=False)


def test_other_bodies_are_shown_as_they_are() -> None:
    assert pretty_body("upstream error", False).text == "upstream error"
    assert pretty_body("upstream error", False).language is None
    assert pretty_body("", False).note == "Empty body."
    binary = pretty_body("AAEC", True)
    assert binary.text == "AAEC" and "base64" in binary.note


def test_huge_bodies_are_cut_for_display() -> None:
    body = pretty_body("x" * (MAX_BODY_CHARS + 10), False)
    assert len(body.text) == MAX_BODY_CHARS and body.note.startswith("Cut to the first")


def test_header_rows_redact_again() -> None:
    rows = header_rows({"authorization": ["Bearer abc"], "X-Internal-Token": ["t"], "Accept": ["a", "b"]},
                       secret_headers=("x-internal-token",))
    assert rows.values.tolist() == [["Accept", "a"], ["Accept", "b"], ["authorization", "[redacted]"],
                                    ["X-Internal-Token", "[redacted]"]]


def test_status_text() -> None:
    assert status_text(0) == "no response" and status_text(503) == "HTTP 503"


def test_export_command_line_matches_the_view() -> None:
    f = Filters(time_range="custom", since=datetime(2026, 11, 1, tzinfo=UTC), until=datetime(2026, 11, 2, 6, tzinfo=UTC),
                webhooks=("wh 1", "wh_2"), outcome="failed")
    args = shlex.split(export_command_line(f, f.window(datetime.now(UTC))))
    assert args == ["moego-monitor", "export", "--since", "2026-11-01T00:00:00Z", "--until", "2026-11-02T06:00:00Z",
                    "--webhook", "wh 1", "--webhook", "wh_2", "--status", "failed", "--out", "deliveries.csv"]
    one_class = Filters(status_classes=("5xx",))
    assert "--status 5xx" in export_command_line(one_class, one_class.window(datetime.now(UTC)))
