"""Where the search words are in a body: the lines that hold them, each word marked, safe as Markdown.

:func:`matching_lines` is pure: the lines of a (pretty-printed) body holding any of the search words
(case-insensitive), cut to a readable excerpt. :func:`marked` turns an excerpt into Markdown where
everything is literal text except the highlight around each match (the body is untrusted: it is
escaped character by character, never interpreted).
"""

from __future__ import annotations

import re

__all__ = ["MAX_LINES", "search_words", "matching_lines", "marked"]

#: At most this many matching lines are listed per body.
MAX_LINES = 5
_EXCERPT = 160
_SPECIALS = set("\\`*_{}[]()<>#+-.!|~$:=")


def search_words(search: str) -> list[str]:
    """The words of the search box worth marking (the search itself matches whole ids too)."""
    return [w for w in dict.fromkeys(search.split()) if len(w) >= 2][:10]


def _pattern(words: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.IGNORECASE)


def matching_lines(text: str, words: list[str], *, limit: int = MAX_LINES) -> list[tuple[int, str]]:
    """``(line number, excerpt)`` of the first ``limit`` lines of ``text`` holding a word, each cut around its first match."""
    if not words or not text:
        return []
    pattern = _pattern(words)
    found: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        match = pattern.search(line)
        if match is None:
            continue
        start = max(0, match.start() - _EXCERPT // 2)
        excerpt = line[start:start + _EXCERPT]
        found.append((number, ("…" if start else "") + excerpt + ("…" if start + _EXCERPT < len(line) else "")))
        if len(found) >= limit:
            break
    return found


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _SPECIALS else c for c in text)


def marked(excerpt: str, words: list[str]) -> str:
    """``excerpt`` as Markdown: literal text, each match of ``words`` on an orange background."""
    pattern = _pattern(words)
    out, last = [], 0
    for match in pattern.finditer(excerpt):
        out.append(_escape(excerpt[last:match.start()]))
        out.append(f":orange-background[{_escape(match.group(0))}]")
        last = match.end()
    out.append(_escape(excerpt[last:]))
    return "".join(out)
