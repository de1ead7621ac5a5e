"""What a reader selects from the archive: a :class:`Filters` and the UTC :class:`Window` it covers.

Every reader of the archive shares this selection: the dashboard's queries, the export and the CSV
command. A :class:`Filters` says *what* to look at; :meth:`Filters.window` turns its time range into the
half-open UTC interval ``[since, until)`` that bounds every query. Presets are relative to "now",
which is rounded up to the next minute so that cached queries keep one key for a minute and the
window still includes everything delivered so far. :mod:`collectors.archive.where` turns it into SQL.
Its form in a URL belongs to the dashboard (:mod:`dashboard.filters`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal, Sequence

from ..models import format_timestamp

__all__ = [
    "RANGE_PRESETS",
    "RANGES",
    "OUTCOMES",
    "STATUS_CLASSES",
    "DEFAULT_RANGE",
    "MAX_SEARCH",
    "Bucket",
    "Window",
    "Filters",
    "ceil_minute",
]

#: The preset time ranges, by their URL name.
RANGE_PRESETS: dict[str, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "15d": timedelta(days=15),
    "30d": timedelta(days=30),
}
#: Every time range a user can pick: the presets, then ``custom``.
RANGES: tuple[str, ...] = (*RANGE_PRESETS, "custom")
#: The outcome filter's values: ``all`` (no filter), ``success`` or ``failed``.
OUTCOMES: tuple[str, ...] = ("all", "success", "failed")
#: Response status classes as :func:`collectors.archive.status_class` writes them.
STATUS_CLASSES: tuple[str, ...] = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")
Bucket = Literal["minute", "hour", "day"]

#: The time range when none is chosen.
DEFAULT_RANGE = "24h"
#: Longest search text kept (characters).
MAX_SEARCH = 200


def ceil_minute(moment: datetime) -> datetime:
    """``moment`` rounded up to the next whole minute (unchanged when already whole), in UTC."""
    moment = moment.astimezone(timezone.utc)
    floored = moment.replace(second=0, microsecond=0)
    return floored if floored == moment else floored + timedelta(minutes=1)


@dataclass(frozen=True)
class Window:
    """A half-open UTC interval ``[since, until)`` of delivery time."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("Window bounds must be aware datetimes")
        if self.until <= self.since:
            raise ValueError(f"empty window: {self.since} .. {self.until}")

    @property
    def span(self) -> timedelta:
        """The window's length."""
        return self.until - self.since

    def previous(self) -> "Window":
        """The window of the same length that ends where this one starts (for "change vs previous")."""
        return Window(self.since - self.span, self.since)

    @property
    def since_text(self) -> str:
        """``since`` as stored in the archive (fixed-width RFC 3339 UTC)."""
        return format_timestamp(self.since)

    @property
    def until_text(self) -> str:
        """``until`` as stored in the archive (fixed-width RFC 3339 UTC)."""
        return format_timestamp(self.until)


def _tuple(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted({v.strip() for v in values if v and v.strip()}))


@dataclass(frozen=True)
class Filters:
    """What the user looks at. Normalised on construction: lists sorted and deduplicated, search stripped.

    ``since``/``until`` are used only when ``time_range == "custom"`` (and are then required to be
    aware datetimes with ``since < until``); for a preset they are ``None``.
    """

    time_range: str = DEFAULT_RANGE
    since: datetime | None = None
    until: datetime | None = None
    webhooks: tuple[str, ...] = field(default=())
    event_types: tuple[str, ...] = field(default=())
    outcome: str = "all"
    status_classes: tuple[str, ...] = field(default=())
    search: str = ""

    def __post_init__(self) -> None:
        if self.time_range not in RANGES:
            raise ValueError(f"unknown time range {self.time_range!r}; expected one of {', '.join(RANGES)}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}; expected one of {', '.join(OUTCOMES)}")
        unknown = set(self.status_classes) - set(STATUS_CLASSES)
        if unknown:
            raise ValueError(f"unknown status class {sorted(unknown)[0]!r}")
        if self.time_range == "custom":
            if self.since is None or self.until is None:
                raise ValueError("a custom range needs since and until")
            if self.since.tzinfo is None or self.until.tzinfo is None:
                raise ValueError("custom range bounds must be aware datetimes")
            if self.since >= self.until:
                raise ValueError("a custom range must end after it starts")
            object.__setattr__(self, "since", self.since.astimezone(timezone.utc))
            object.__setattr__(self, "until", self.until.astimezone(timezone.utc))
        else:
            object.__setattr__(self, "since", None)
            object.__setattr__(self, "until", None)
        object.__setattr__(self, "webhooks", _tuple(self.webhooks))
        object.__setattr__(self, "event_types", _tuple(self.event_types))
        object.__setattr__(self, "status_classes", _tuple(self.status_classes))
        object.__setattr__(self, "search", " ".join(self.search.split())[:MAX_SEARCH])

    def window(self, now: datetime) -> Window:
        """The UTC window these filters select: a preset ends at ``now`` rounded up to the minute."""
        if self.time_range == "custom":
            assert self.since is not None and self.until is not None
            return Window(self.since, self.until)
        until = ceil_minute(now)
        return Window(until - RANGE_PRESETS[self.time_range], until)

    def with_changes(self, **changes: object) -> "Filters":
        """A copy with some fields changed (re-validated)."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(changes)
        return Filters(**values)  # type: ignore[arg-type]
