"""Seeded delivery history: the demo and full webhook sets and their past deliveries.

Deterministic for a seed: the same webhooks (ids, secrets, subscriptions) and the same log entries
(ids, event seeds, outcomes) every run. Timestamps are placed relative to an anchor, the sandbox
start time rounded down to the minute, so they move with the start time; the daily rhythm
(business hours in US Pacific time, UTC-7, are busiest) follows the real clock.

Only the retention window (15 days) is generated: anything older would vanish at once anyway.

History respects the push limits (:mod:`sandbox.limits`): it is walked oldest first through the
runtime's push limiter, each entry costing its first attempt plus its retries (a redelivery by hand
costs one), and what the limiter refuses is held back, as live traffic would be. So no window of
24 h (in particular no generated day) holds more than the daily limit of pushes, hence of entries,
and the sandbox starts with the last day's pushes counted.

Demo set (``volume="demo"``): 5 webhooks, ~320 deliveries per webhook per day (far below the limits).
Full set (``volume="full"``): 10 webhooks whose demand exceeds 10,000 a day, so each day holds
(just under) 10,000 pushes per webhook: ~10,000 entries for healthy webhooks, fewer for those
whose retries use part of the budget (about 1.3 million rows in all).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from sandbox.clock import NS_PER_DAY, NS_PER_MS, NS_PER_SECOND
from sandbox.events import EVENT_CODES
from sandbox.limits import PER_DAY, PushLimiter
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
    "DEMAND",
    "Demand",
    "history_rows",
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
_delivered_at = itemgetter(5)

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


class Demand(NamedTuple):
    """How many deliveries a day a seeded webhook is asked to make, before push limits.

    A day draws ``mean * uniform(low, high)`` candidates. With ``pushes``, ``mean`` counts pushes,
    not deliveries: it is divided by the pushes a delivery of the webhook's profile makes on average
    (first attempt and retries), so a failing webhook, whose retries use up its budget, asks for
    fewer deliveries instead of drawing twice as many as it may send.
    """

    mean: float
    low: float
    high: float
    pushes: bool = False


#: Demo: a few hundred deliveries a day, far below the limits. Full: a little more than the 10,000
#: pushes a day a webhook may make, so the limiter holds back the excess and every day lands at
#: (or just under) the limit.
DEMAND: dict[str, Demand] = {
    "demo": Demand(320, 0.85, 1.15),
    "full": Demand(PER_DAY, 1.03, 1.15, pushes=True),
}


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


def _day_rows(
    webhook: WebhookRecord,
    profile: Profile,
    rng: random.Random,
    *,
    n: int,
    window_start: int,
    anchor_tod: int,
    quiet_from: int,
    timeout_ms: int,
    redeliveries: dict[int, tuple],
) -> list[tuple]:
    """``n`` candidate rows (``store.COMPACT_COLUMNS`` order) of one day, in draw order.

    A failed row that someone redelivered by hand later has its redelivery in ``redeliveries``
    (by the row's key); it is logged only if the row itself is.
    """
    codes, cum = _type_picker(webhook.event_types)
    policy = webhook.retry_policy
    target = host_port(webhook.endpoint_url)
    # Bound methods and float draws (``random() * span`` rather than ``randrange``, ``exp(gauss)``
    # rather than ``lognormvariate``): this loop runs 1.6 million times at full volume.
    getrandbits, randrange, random_, gauss = rng.getrandbits, rng.randrange, rng.random, rng.gauss
    exp = math.exp
    simulate = profile.simulate
    fail_rate, median, sigma = profile.first_failure_rate, profile.latency_median_ms, profile.latency_sigma
    success_status = profile.success_status
    log_median = math.log(median)
    idx = webhook.idx
    rows: list[tuple] = []
    append = rows.append
    hours = rng.choices(range(24), cum_weights=_HOURLY_CUM, k=n)
    types = rng.choices(codes, cum_weights=cum, k=n)
    for hour, code in zip(hours, types, strict=True):
        offset = (hour * _HOUR_NS + int(random_() * _HOUR_NS) - anchor_tod) % NS_PER_DAY
        at = window_start + offset
        event_seed = getrandbits(62)
        event_at = at - (1 + int(random_() * 899)) * NS_PER_MS
        if random_() >= fail_rate:  # the common case, inlined for speed
            duration = min(25_000, max(1, int(exp(gauss(log_median, sigma)))))
            key = getrandbits(MAX_KEY_BITS)
            append((key, idx, code, event_seed, event_at, at, duration, success_status, 1, 0, None))
            continue
        outcome = simulate(
            rng,
            timeout_ms=timeout_ms,
            host_port=target,
            retryable=policy.retryable_http_codes,
            max_retries=policy.max_retries,
            first_failure_rate=1.0,
        )
        key = getrandbits(MAX_KEY_BITS)
        append(
            (
                key,
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
        )
        if not outcome.success and random_() < 0.35:
            # Someone pressed "redeliver" later: a new entry for the same event.
            # Random draws happen whether or not the entry falls before the anchor, so that ids
            # never depend on the start time.
            again = at + randrange(5 * 60, 8 * 3600) * NS_PER_SECOND
            retry = simulate(rng, timeout_ms=timeout_ms, host_port=target, retryable=(), max_retries=0)
            again_key = getrandbits(MAX_KEY_BITS)
            if again < quiet_from:
                redeliveries[key] = (
                    again_key,
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
    return rows


def history_rows(
    webhook: WebhookRecord,
    profile: Profile,
    *,
    seed_key: str,
    anchor_ns: int,
    days: int,
    quiet_days: int,
    demand: Demand,
    timeout_ms: int,
    admit: Callable[[int, int], bool],
) -> Iterator[tuple]:
    """Compact rows of one webhook's history over the ``days`` days before ``anchor_ns``, oldest first.

    Day ``d`` (0 = the 24 h before the anchor) draws its candidate deliveries (:class:`Demand`)
    from ``random.Random(f"{seed_key}:{d}")``, so ids depend on neither the start time nor the
    number of days. Candidates are then walked in time order and each must
    pass ``admit(delivered_at_ns, pushes)`` (pushes: the first attempt plus its retries; a redelivery
    by hand is one push): that is the webhook's push limiter, so the history never holds more than
    the per-minute and per-day limits allow, in any window. A candidate refused is held back, as
    live traffic is: it is not logged (nor is its redelivery).
    """
    mean, low, high, in_pushes = demand
    if in_pushes:
        policy = webhook.retry_policy
        retryable, max_retries = policy.retryable_http_codes, policy.max_retries
        mean /= profile.expected_pushes(retryable=retryable, max_retries=max_retries)
    anchor_tod = (anchor_ns + _LOCAL_OFFSET_NS) % NS_PER_DAY
    quiet_from = anchor_ns - quiet_days * NS_PER_DAY  # nothing is delivered after this
    later: list[tuple[int, int, tuple]] = []  # redeliveries to come: (delivered_at, key, row)
    redeliveries: dict[int, tuple] = {}
    for day in reversed(range(days)):  # oldest first
        rng = random.Random(f"{seed_key}:{day}")
        n = int(mean * rng.uniform(low, high))
        if day < quiet_days:
            continue
        rows = _day_rows(
            webhook,
            profile,
            rng,
            n=n,
            window_start=anchor_ns - (day + 1) * NS_PER_DAY,
            anchor_tod=anchor_tod,
            quiet_from=quiet_from,
            timeout_ms=timeout_ms,
            redeliveries=redeliveries,
        )
        rows.sort(key=_delivered_at)
        for row in rows:
            at = row[5]
            while later and later[0][0] <= at:
                again = heapq.heappop(later)[2]
                if admit(again[5], 1):
                    yield again
            if admit(at, 1 + row[9]):
                yield row
                if not row[8] and redeliveries:
                    again = redeliveries.pop(row[0], None)
                    if again is not None:
                        heapq.heappush(later, (again[5], again[0], again))
        redeliveries.clear()
    while later:
        again = heapq.heappop(later)[2]
        if admit(again[5], 1):
            yield again


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
    limiter: PushLimiter | None = None,
) -> list[WebhookRecord]:
    """Create the seeded webhooks in ``registry`` and load their history into ``store``.

    The history goes through ``limiter`` (a fresh one with MoeGo's limits when None), which is left
    holding the seeded pushes of the last minute and day: the sandbox starts with them counted.
    """
    if volume not in DEMAND:
        raise ValueError(f"volume: 'demo' or 'full', not {volume!r}")
    if limiter is None:
        limiter = PushLimiter()
    specs = DEMO_SPECS if volume == "demo" else FULL_SPECS
    days = max(0, min(history_days, RETENTION_DAYS))
    webhooks = []
    for i, spec in enumerate(specs):
        created = anchor_ns - (history_days + 3 + i) * NS_PER_DAY
        created -= created % NS_PER_SECOND
        webhooks.append(registry.add(_webhook(spec, seed, registry, endpoint_for(spec), created)))

    def all_rows() -> Iterator[tuple]:
        for spec, webhook in zip(specs, webhooks, strict=True):
            yield from history_rows(
                webhook,
                PROFILES[spec.profile],
                seed_key=f"{seed}:history:{spec.label}",
                anchor_ns=anchor_ns,
                days=days,
                quiet_days=spec.quiet_days,
                demand=DEMAND[volume],
                timeout_ms=timeout_ms,
                admit=limiter.of(webhook.id).try_add,
            )

    # Rows come in (webhook, deliveredAt) order, the order of the paging indexes: keeping them while
    # inserting only appends at their ends, cheaper in time and memory than sorting them afterwards.
    store.ensure_indexes()
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
