"""Untrusted text inside Streamlit's Markdown: shown as the characters it is, never as Markdown.

Streamlit renders Markdown (GitHub-flavoured, plus its own ``:color[...]``, ``:material/...:`` and ``$``
math) in ``st.markdown``, ``st.caption``, ``st.info``/``warning``/``success``/``error``, ``st.toast``,
``st.subheader``, expander and widget labels. A value from a URL or from MoeGo (an id, a body, an
error, a header, an endpoint URL) placed there could draw a link, fetch an outside image or fake a
message. :func:`md` escapes every ASCII punctuation character with a backslash (CommonMark's escape:
each such character then stands for itself), which also breaks autolinks (``www.x``, ``https://x``,
``a@b``), and folds line breaks into spaces so a value cannot open a block of its own. Static text of
ours stays Markdown; only the interpolated value goes through :func:`md`, or :func:`code` for an id or
a URL (a code span: nothing inside it is Markdown, and its fence is longer than any run of backticks
in the value, so the value cannot close it).
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote

__all__ = ["md", "code", "link_param"]

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
#: A value longer than this is cut for display (the archive and exports keep it whole).
MAX_SHOWN = 2_000


def md(value: object) -> str:
    """``value`` as text that Markdown shows literally (one line, at most :data:`MAX_SHOWN` characters)."""
    return _PUNCTUATION.sub(r"\\\1", _flat(value))


def _flat(value: object) -> str:
    text = _BREAKS.sub(" ", str(value))
    return text[:MAX_SHOWN] + "…" if len(text) > MAX_SHOWN else text


def code(value: object) -> str:
    """``value`` as a Markdown code span (monospace, shown literally; one line, at most :data:`MAX_SHOWN` characters)."""
    text = _flat(value)
    runs = [len(r) for r in re.findall("`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    if text.startswith("`") or text.endswith("`") or not text.strip():
        text = f" {text} "
    return f"{fence}{text}{fence}"


def link_param(value: object) -> str:
    """``value`` percent-encoded for a query parameter of a link of ours (``deliveries?delivery=...``)."""
    return quote(str(value), safe="")
