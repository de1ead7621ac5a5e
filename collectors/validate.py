"""Check MoeGo's answers against the contract before anything of them is saved. Pure: no I/O, no clock.

Each check returns ``None`` when the answer is what the contract allows, or one line saying what
is wrong; the caller turns that into an error and saves nothing of the page.

- :func:`check_page`: one ``ListWebhookDeliveries`` page. Refused: more entries than the
  ``pageSize`` asked, an entry dated outside the requested ``deliveryTime`` interval
  ``[start, end)``, an entry whose ``webhookId`` is another webhook than the one asked, or one whose
  id the archive already holds under another webhook (delivery ids are unique across webhooks).
- :class:`PageGuard`: the pages of one listing (a chunk of deliveries, or the webhook list).
  Refused: a ``nextPageToken`` seen before in the same listing (the listing would never end);
  more pages than the entries received could fill (``pages > 2 x full pages + 5``: a server sending
  short or empty pages without end); more entries, or pages, than MoeGo's limits let the listing
  hold (see :func:`max_entries`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from .models import WebhookDelivery, format_timestamp

__all__ = [
    "PUSHES_PER_MINUTE", "PUSHES_PER_DAY", "MAX_WEBHOOKS", "LIMIT_MARGIN", "SHORT_PAGES",
    "max_entries", "check_page", "PageGuard",
]

#: MoeGo's push limits per webhook (contract, "Limits"); a log entry is at least one push.
PUSHES_PER_MINUTE = 100
PUSHES_PER_DAY = 10_000
#: MoeGo's limit of webhooks per client.
MAX_WEBHOOKS = 10
#: How far past MoeGo's limits an answer may go before it is refused (limits change; an answer beyond this is not MoeGo).
LIMIT_MARGIN = 2
#: Pages a listing may send beyond twice what its entries fill (short pages are allowed, endless ones are not).
SHORT_PAGES = 5


def max_entries(span: timedelta) -> int:
    """The most delivery entries one webhook's listing of ``span`` may hold: the push limits, times the margin.

    Per minute or per (calendar) day, whichever is smaller; a span touches at most ``days + 1``
    calendar days.
    """
    seconds = max(0.0, span.total_seconds())
    by_minute = PUSHES_PER_MINUTE * (math.ceil(seconds / 60) + 1)
    by_day = PUSHES_PER_DAY * (math.ceil(seconds / 86400) + 1)
    return LIMIT_MARGIN * min(by_minute, by_day)


def _show(value: str) -> str:
    """A server-sent value as it may appear in a one-line message: quoted, at most 60 characters."""
    return repr(value if len(value) <= 60 else value[:57] + "...")


def check_page(deliveries: Sequence[WebhookDelivery], *, webhook_id: str, start: datetime, end: datetime,
               page_size: int, archived_under: Mapping[str, str] | None = None) -> str | None:
    """``None`` when the page may be saved, else what breaks the contract (one line).

    ``deliveries`` are the parsed page, each with ``delivered_at`` set; ``[start, end)`` and
    ``page_size`` are what the request asked; ``archived_under`` maps ids of this page already in
    the archive to the webhook they are archived under.
    """
    if len(deliveries) > page_size:
        return f"{len(deliveries):,} entries on one page when at most {page_size} were asked"
    archived_under = archived_under or {}
    for delivery in deliveries:
        if delivery.webhook_id and delivery.webhook_id != webhook_id:
            return (f"delivery {_show(delivery.id)} is listed for webhook {_show(webhook_id)} "
                    f"but says it belongs to {_show(delivery.webhook_id)}")
        owner = archived_under.get(delivery.id)
        if owner is not None and owner != webhook_id:
            return (f"delivery {_show(delivery.id)} is listed for webhook {_show(webhook_id)} "
                    f"but is archived under {_show(owner)}")
        at = delivery.delivered_at
        if at is not None and not start <= at < end:
            return (f"delivery {_show(delivery.id)} is dated {format_timestamp(at)}, outside the requested "
                    f"[{format_timestamp(start)}, {format_timestamp(end)})")
    return None


@dataclass
class PageGuard:
    """Watches the pages of one listing; :meth:`add` after each page says when the listing breaks the contract."""

    page_size: int
    max_entries: int
    pages: int = 0
    entries: int = 0
    tokens: set[str] = field(default_factory=set)

    @classmethod
    def for_span(cls, span: timedelta, page_size: int, *, start_token: str = "") -> "PageGuard":
        """A guard for one webhook's deliveries over ``span`` (a chunk), read from ``start_token``."""
        guard = cls(page_size=max(1, page_size), max_entries=max_entries(span))
        if start_token:
            guard.tokens.add(start_token)
        return guard

    @classmethod
    def for_webhooks(cls, page_size: int) -> "PageGuard":
        """A guard for ListWebhooks: at most :data:`MAX_WEBHOOKS` webhooks, with the margin."""
        return cls(page_size=max(1, page_size), max_entries=LIMIT_MARGIN * MAX_WEBHOOKS)

    @property
    def max_pages(self) -> int:
        """The most pages the listing may have: its most entries in full pages, plus the short-page allowance."""
        return math.ceil(self.max_entries / self.page_size) + SHORT_PAGES

    def add(self, count: int, next_token: str) -> str | None:
        """Count a page of ``count`` entries that ended with ``next_token`` (empty on the last page)."""
        self.pages += 1
        self.entries += count
        if count > self.page_size:
            return f"{count:,} entries on one page when at most {self.page_size} were asked"
        if self.entries > self.max_entries:
            return (f"{self.entries:,} entries in one listing, more than MoeGo's limits allow "
                    f"({self.max_entries:,} with a margin)")
        if not next_token:
            return None
        if next_token in self.tokens:
            return f"page token {_show(next_token)} came back a second time (the listing would never end)"
        self.tokens.add(next_token)
        full = math.ceil(self.entries / self.page_size)
        if self.pages > 2 * full + SHORT_PAGES:
            return (f"{self.pages} pages for {self.entries:,} entries of page size {self.page_size}, and still "
                    "another page token (the listing would never end)")
        if self.pages >= self.max_pages:
            return f"{self.pages} pages and still another page token, more than MoeGo's limits allow"
        return None
