"""The read-ahead thread's fast paths give exactly what the general ones give (collectors.models)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from collectors.models import MalformedMessage, parse_timestamp


def test_utc_timestamps_parse_as_the_same_instant_with_any_offset_form() -> None:
    """MoeGo's ``...Z`` form takes a shorter road; the same instant written with ``+00:00`` (the general road) or
    another offset parses to the same aware UTC time, its fraction cut (never rounded) to microseconds."""
    rng = random.Random(5)
    start = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for _ in range(5_000):
        at = start + timedelta(seconds=rng.randrange(0, 4_000_000_000))
        digits = rng.choice(["", *(str(rng.randrange(10 ** n)).zfill(n) for n in range(1, 10))])
        fraction = f".{digits}" if digits else ""
        zulu = at.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
        general = at.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "+00:00"
        shifted = (at + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S") + fraction + "+05:30"
        got = parse_timestamp(zulu)
        assert got == parse_timestamp(general) == parse_timestamp(shifted), zulu
        assert got.tzinfo is timezone.utc and got.utcoffset() == timedelta(0)
        assert got.microsecond == int((digits or "0").ljust(6, "0")[:6])


@pytest.mark.parametrize("bad", ["2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-30T24:00:00Z",
                                 "2026-11-30T23:59:60Z", "0000-01-01T00:00:00Z", "2026-11-30T00:00:00.1234567891Z",
                                 "2026-11-30T00:00:00.Z", "20261130T000000Z", "2026-W48-1T00:00:00Z",
                                 "2026-11-30T00:00Z", "2026-11-30T00:00:00+0000Z"])
def test_impossible_or_other_forms_of_utc_times_are_malformed(bad: str) -> None:
    with pytest.raises(MalformedMessage):
        parse_timestamp(bad)
