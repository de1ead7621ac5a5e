"""When a number means nothing, say so: tiles a filter makes trivial, comparisons with unarchived time.

Pure functions (no Streamlit): :func:`rate_meaningless` and :func:`failures_meaningless` give the
reason a success rate or a failure count is fixed by the filters (``None`` when it means something);
:func:`comparable` says whether the previous period lies inside what the archive holds.
"""

from __future__ import annotations

from datetime import datetime

from collectors.archive.filters import Filters, Window

__all__ = ["rate_meaningless", "failures_meaningless", "comparable", "no_comparison_text"]


def rate_meaningless(filters: Filters) -> str | None:
    """Why the success rate of this view is fixed by its filters (0% or 100% by construction), or ``None``."""
    if filters.outcome == "failed":
        return "the Outcome filter shows failed deliveries only"
    if filters.outcome == "success":
        return "the Outcome filter shows successful deliveries only"
    ok_codes = [200 <= c <= 299 for c in filters.status_codes]
    if ok_codes and all(ok_codes):
        return "the Exact status filter shows 2xx answers only"
    if ok_codes and not any(ok_codes):
        return "the Exact status filter leaves out every 2xx answer"
    classes = set(filters.status_classes)
    if classes and classes <= {"2xx"}:
        return "the Response status filter shows 2xx answers only"
    if classes and "2xx" not in classes:
        return "the Response status filter leaves out every 2xx answer"
    return None


def failures_meaningless(filters: Filters) -> str | None:
    """Why the failure count of this view is 0 by construction, or ``None``."""
    if filters.outcome == "success":
        return "the Outcome filter shows successful deliveries only"
    if filters.status_classes and set(filters.status_classes) <= {"2xx"}:
        return "the Response status filter shows 2xx answers only"
    if filters.status_codes and all(200 <= c <= 299 for c in filters.status_codes):
        return "the Exact status filter shows 2xx answers only"
    return None


def comparable(window: Window, archive_since: datetime | None) -> bool:
    """True when the archive holds the whole previous period (it began at or before the period's start)."""
    return archive_since is not None and archive_since <= window.previous().since


def no_comparison_text(span_text: str) -> str:
    """The delta a tile shows instead of a comparison with a period the archive does not cover."""
    return f"no archive for the previous {span_text}"
