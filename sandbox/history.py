"""Seeded delivery history: the demo and full webhook sets and their past deliveries.

Deterministic for a seed: the same webhooks (ids, secrets, subscriptions) and the same log entries
(ids, event seeds, outcomes) every run. Timestamps are placed relative to an anchor, the sandbox
start time rounded down to the minute, so they move with the start time; the daily rhythm
(business hours in US Pacific time, UTC-7, are busiest) follows the real clock.

Only the retention window (15 days) is generated: anything older would vanish at once anyway.

Demo set (``volume="demo"``): 5 webhooks, ~320 deliveries per webhook per day.
Full set (``volume="full"``): 10 webhooks, 10,000 per webhook per day (about 1.5 million rows).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sandbox.clock import NS_PER_DAY, NS_PER_MS, NS_PER_SECOND
from sandbox.events import EVENT_CODES
from sandbox.model import DEFAULT_RETRY_POLICY, WebhookRecord
from sandbox.profiles import PROFILES, Profile
from sandbox.store import MAX_KEY_BITS, DeliveryStore
from sandbox.synth import host_port
from sandbox.webhooks import WebhookRegistry

__all__ = [
    "RETENTION_DAYS",
    "WebhookSpec",
    "DEMO_SPECS",
    "FULL_SPECS",
    "EVENT_WEIGHTS",
    "seed_history",
    "synthetic_rows",
]

RETENTION_DAYS = 15
_HOUR_NS = 3600 * NS_PER_SECOND
_LOCAL_OFFSET_NS = -7 * _HOUR_NS  # US Pacific (daylight time)
#: Relative traffic per local hour of the day.
_HOURLY = (
    0.15,
    0.12,
    0.1,
    0.1,
    0.12,
    0.2,
    0.45,
    1.0,
    2.2,
    2.5,
    2.6,
    2.4,
    2.0,
    2.4,
    2.5,
    2.3,
    2.0,
    1.6,
    1.0,
    0.7,
    0.5,
    0.35,
    0.25,
    0.2,
)
_HOURLY_CUM = list(itertools.accumulate(_HOURLY))

#: How common each event type is, relative to the others.
EVENT_WEIGHTS: dict[str, float] = {
    "HEALTH_CHECK": 0.15,
    "APPOINTMENT_CREATED": 10,
    "APPOINTMENT_UPDATED": 8,
    "APPOINTMENT_FINISHED": 7,
    "APPOINTMENT_CANCELED": 2,
    "APPOINTMENT_DELETED": 0.5,
    "CUSTOMER_CREATED": 3,
    "CUSTOMER_UPDATED": 4,
    "CUSTOMER_DELETED": 0.3,
    "CUSTOMER_COMPLIANCE_CHANGED": 1,
    "PET_CREATED": 2,
    "PET_UPDATED": 2.5,
    "PET_DELETED": 0.2,
}
_APPOINTMENTS = (
    "APPOINTMENT_CREATED",
    "APPOINTMENT_UPDATED",
    "APPOINTMENT_FINISHED",
    "APPOINTMENT_CANCELED",
    "APPOINTMENT_DELETED",
)
_CUSTOMERS = ("CUSTOMER_CREATED", "CUSTOMER_UPDATED", "CUSTOMER_DELETED", "CUSTOMER_COMPLIANCE_CHANGED")
_PETS = ("PET_CREATED", "PET_UPDATED", "PET_DELETED")


@dataclass(frozen=True)
class WebhookSpec:
    """A seeded webhook: its name (the receiver path), health profile and configuration."""

    label: str
    profile: str
    event_types: tuple[str, ...]
    secret: bool = True
    bearer_header: bool = False
    active: bool = True
    quiet_days: int = 0  # no deliveries in the most recent N days
    relay: bool = False  # endpoint behind the flapping port (connection refused at times)


DEMO_SPECS: tuple[WebhookSpec, ...] = (
    WebhookSpec("orders-sync", "healthy", ("HEALTH_CHECK", *_APPOINTMENTS), bearer_header=True),
    WebhookSpec("crm-bridge", "flaky", ("HEALTH_CHECK", *_CUSTOMERS)),
    WebhookSpec(
        "legacy-erp",
        "failing",
        ("APPOINTMENT_CREATED", "APPOINTMENT_FINISHED", "CUSTOMER_CREATED", "CUSTOMER_UPDATED"),
        relay=True,
    ),
    WebhookSpec("pet-profile-feed", "healthy", ("HEALTH_CHECK", *_PETS, "CUSTOMER_UPDATED"), secret=False),
    WebhookSpec("analytics-archive", "healthy", tuple(EVENT_CODES), active=False, quiet_days=5),
)
FULL_SPECS: tuple[WebhookSpec, ...] = DEMO_SPECS + (
    WebhookSpec("grooming-calendar", "healthy", _APPOINTMENTS),
    WebhookSpec("billing-ledger", "flaky", ("APPOINTMENT_FINISHED", "APPOINTMENT_CANCELED", *_CUSTOMERS)),
    WebhookSpec(
        "sms-notifier", "slow", ("APPOINTMENT_CREATED", "APPOINTMENT_UPDATED", "APPOINTMENT_CANCELED")
    ),
    WebhookSpec("loyalty-points", "healthy", ("APPOINTMENT_FINISHED", *_CUSTOMERS)),
    WebhookSpec("vet-records-sync", "flaky", (*_PETS, "CUSTOMER_COMPLIANCE_CHANGED")),
)
_DAILY = {"demo": 320, "full": 10_000}


def _token(seed: int, label: str, purpose: str, length: int) -> str:
    return hashlib.sha256(f"{seed}:{label}:{purpose}".encode()).hexdigest()[:length]


def _webhook(
    spec: WebhookSpec, seed: int, registry: WebhookRegistry, url: str, created_ns: int
) -> WebhookRecord:
    headers = {}
    if spec.bearer_header:
        headers["Authorization"] = [f"Bearer demo-partner-token-{_token(seed, spec.label, 'bearer', 20)}"]
    return WebhookRecord(
        id=registry.new_id(),
        idx=0,
        endpoint_url=url,
        event_types=list(spec.event_types),
        created_ns=created_ns,
        updated_ns=created_ns + 3 * _HOUR_NS + 17 * NS_PER_SECOND,
        secret_token=f"whsec_{_token(seed, spec.label, 'secret', 32)}" if spec.secret else "",
        retry_policy=DEFAULT_RETRY_POLICY,
        is_active=spec.active,
        verify_ssl=False,
        headers=headers,
        organizations=registry.default_organizations(),
        label=spec.label,
        profile=spec.profile,
    )


def _type_picker(event_types: list[str]) -> tuple[list[int], list[float]]:
    codes = [EVENT_CODES[t] for t in event_types]
    return codes, list(itertools.accumulate(EVENT_WEIGHTS.get(t, 1.0) for t in event_types))


def _rows_for(
    webhook: WebhookRecord,
    profile: Profile,
    rng: random.Random,
    *,
    anchor_ns: int,
    days: int,
    quiet_days: int,
    daily: int,
    timeout_ms: int,
) -> Iterator[tuple]:
    """Compact rows (``store.COMPACT_COLUMNS`` order) of one webhook's history."""
    codes, cum = _type_picker(webhook.event_types)
    policy = webhook.retry_policy
    target = host_port(webhook.endpoint_url)
    anchor_tod = (anchor_ns + _LOCAL_OFFSET_NS) % NS_PER_DAY
    getrandbits, randrange, random_ = rng.getrandbits, rng.randrange, rng.random
    simulate = profile.simulate
    fail_rate, median, sigma = profile.first_failure_rate, profile.latency_median_ms, profile.latency_sigma
    success_status = profile.success_status
    log_median = math.log(median)
    lognorm = rng.lognormvariate
    idx = webhook.idx
    quiet_from = anchor_ns - quiet_days * NS_PER_DAY  # nothing is delivered after this
    for day in range(days):
        n = int(daily * rng.uniform(0.85, 1.15))
        if day < quiet_days:
            continue
        window_start = anchor_ns - (day + 1) * NS_PER_DAY
        hours = rng.choices(range(24), cum_weights=_HOURLY_CUM, k=n)
        types = rng.choices(codes, cum_weights=cum, k=n)
        for hour, code in zip(hours, types, strict=True):
            offset = (hour * _HOUR_NS + randrange(_HOUR_NS) - anchor_tod) % NS_PER_DAY
            at = window_start + offset
            event_seed = getrandbits(62)
            event_at = at - randrange(1, 900) * NS_PER_MS
            if random_() >= fail_rate:  # the common case, inlined for speed
                duration = min(25_000, max(1, int(lognorm(log_median, sigma))))
                yield (
                    getrandbits(MAX_KEY_BITS),
                    idx,
                    code,
                    event_seed,
                    event_at,
                    at,
                    duration,
                    success_status,
                    1,
                    0,
                    None,
                )
                continue
            outcome = simulate(
                rng,
                timeout_ms=timeout_ms,
                host_port=target,
                retryable=policy.retryable_http_codes,
                max_retries=policy.max_retries,
                first_failure_rate=1.0,
            )
            yield (
                getrandbits(MAX_KEY_BITS),
                idx,
                code,
                event_seed,
                event_at,
                at,
                outcome.duration_ms,
                outcome.status,
                int(outcome.success),
                outcome.retry_count,
                outcome.error or None,
            )
            if not outcome.success and random_() < 0.35:
                # Someone pressed "redeliver" later: a new entry for the same event.
                # Random draws happen whether or not the entry falls before the anchor, so that ids
                # never depend on the start time.
                again = at + randrange(5 * 60, 8 * 3600) * NS_PER_SECOND
                retry = simulate(rng, timeout_ms=timeout_ms, host_port=target, retryable=(), max_retries=0)
                key = getrandbits(MAX_KEY_BITS)
                if again < quiet_from:
                    yield (
                        key,
                        idx,
                        code,
                        event_seed,
                        event_at,
                        again,
                        retry.duration_ms,
                        retry.status,
                        int(retry.success),
                        0,
                        retry.error or None,
                    )


def seed_history(
    *,
    seed: int,
    volume: str,
    history_days: int,
    anchor_ns: int,
    registry: WebhookRegistry,
    store: DeliveryStore,
    endpoint_for: Callable[[WebhookSpec], str],
    timeout_ms: int,
) -> list[WebhookRecord]:
    """Create the seeded webhooks in ``registry`` and load their history into ``store``."""
    if volume not in _DAILY:
        raise ValueError(f"volume: 'demo' or 'full', not {volume!r}")
    specs = DEMO_SPECS if volume == "demo" else FULL_SPECS
    days = max(0, min(history_days, RETENTION_DAYS))
    webhooks = []
    for i, spec in enumerate(specs):
        created = anchor_ns - (history_days + 3 + i) * NS_PER_DAY
        created -= created % NS_PER_SECOND
        webhooks.append(registry.add(_webhook(spec, seed, registry, endpoint_for(spec), created)))

    def all_rows() -> Iterator[tuple]:
        for spec, webhook in zip(specs, webhooks, strict=True):
            rng = random.Random(f"{seed}:history:{spec.label}")
            yield from _rows_for(
                webhook,
                PROFILES[spec.profile],
                rng,
                anchor_ns=anchor_ns,
                days=days,
                quiet_days=spec.quiet_days,
                daily=_DAILY[volume],
                timeout_ms=timeout_ms,
            )

    store.bulk_load(all_rows())
    return webhooks


def synthetic_rows(
    webhook: WebhookRecord,
    rng: random.Random,
    *,
    count: int,
    fail_rate: float,
    start_ns: int,
    end_ns: int,
    timeout_ms: int,
    event_type: str | None = None,
) -> Iterator[tuple]:
    """``count`` compact rows for ``webhook`` spread over ``[start_ns, end_ns]`` (``/_sandbox/generate``).

    A failed row is a delivery whose retries were exhausted (a "failing"-profile failure).
    """
    profile = PROFILES["failing"]
    codes, cum = _type_picker([event_type] if event_type else webhook.event_types)
    policy = webhook.retry_policy
    target = host_port(webhook.endpoint_url)
    span = max(0, end_ns - start_ns)
    for _ in range(count):
        at = start_ns + (rng.randrange(span + 1) if span else 0)
        code = rng.choices(codes, cum_weights=cum)[0]
        if rng.random() < fail_rate:
            outcome = profile.simulate(
                rng,
                timeout_ms=timeout_ms,
                host_port=target,
                retryable=policy.retryable_http_codes,
                max_retries=policy.max_retries,
                first_failure_rate=1.0,
            )
            status, success, retries, error, duration = (
                outcome.status,
                False,
                outcome.retry_count,
                outcome.error,
                outcome.duration_ms,
            )
            if outcome.success:  # a retry recovered: make it fail for real
                status, error = 503, "unexpected status 503"
        else:
            status, success, retries, error, duration = 200, True, 0, "", PROFILES["healthy"].latency_ms(rng)
        yield (
            rng.getrandbits(MAX_KEY_BITS),
            webhook.idx,
            code,
            rng.getrandbits(62),
            at - rng.randrange(1, 900) * NS_PER_MS,
            at,
            duration,
            status,
            int(success),
            retries,
            error or None,
        )
