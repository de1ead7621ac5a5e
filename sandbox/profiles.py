"""Health profiles: how a receiving endpoint behaves, shared by seeded history and the live receiver.

A profile gives the latency spread of successful answers, the chance that a FIRST attempt fails,
the chance that a retry succeeds, and the mix of failures (HTTP statuses, ``"timeout"``,
``"refused"``). Seeded history simulates attempts with it; the built-in receiver answers with it.

Error messages are the ones MoeGo's Go dispatcher logs:

- ``context deadline exceeded (Client.Timeout exceeded while awaiting headers)``
- ``dial tcp 127.0.0.1:9: connect: connection refused``
- ``unexpected status 503``
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

__all__ = [
    "Profile",
    "PROFILES",
    "Outcome",
    "TIMEOUT_ERROR",
    "refused_error",
    "status_error",
    "canned_response",
]

TIMEOUT_ERROR = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"

#: A failure kind: an HTTP status, or "timeout", or "refused" (nothing listens on the port).
FailureKind = int | str


def refused_error(host_port: str) -> str:
    """The log message of a refused TCP connection to ``host:port``."""
    return f"dial tcp {host_port}: connect: connection refused"


def status_error(status: int) -> str:
    """The log message of a non-2xx answer."""
    return f"unexpected status {status}"


@dataclass(frozen=True)
class Outcome:
    """The final state of a delivery log entry after automatic retries."""

    status: int  # 0 when no HTTP answer arrived
    success: bool
    retry_count: int
    error: str
    duration_ms: int


@dataclass(frozen=True)
class Profile:
    """How one kind of receiving endpoint behaves."""

    name: str
    description: str
    latency_median_ms: float
    latency_sigma: float
    first_failure_rate: float
    retry_success_rate: float
    failures: tuple[tuple[FailureKind, float], ...]
    success_status: int = 200

    def latency_ms(self, rng: random.Random) -> int:
        """A lognormal latency around the profile's median, capped at 25 s."""
        return min(
            25_000, max(1, int(rng.lognormvariate(math.log(self.latency_median_ms), self.latency_sigma)))
        )

    def pick_failure(self, rng: random.Random, *, live: bool = False) -> FailureKind:
        """One failure kind from the mix; ``live`` leaves out "refused" (the relay makes those)."""
        kinds = [(k, w) for k, w in self.failures if not (live and k == "refused")]
        total = sum(w for _, w in kinds)
        x = rng.random() * total
        for kind, weight in kinds:
            x -= weight
            if x < 0:
                return kind
        return kinds[-1][0]

    def expected_pushes(self, *, retryable: tuple[int, ...], max_retries: int) -> float:
        """The mean number of POSTs a delivery makes (first attempt and automatic retries) in
        :meth:`simulate`: ``1 + p * q * (1 - a**m) / (1 - a)`` with ``p`` the first-failure rate,
        ``q`` the share of retryable failures, ``a = q * (1 - retry success rate)``, ``m`` max retries.
        """
        total = sum(w for _, w in self.failures)
        q = sum(w for k, w in self.failures if k in ("timeout", "refused") or k in retryable) / total
        a = q * (1 - self.retry_success_rate)
        retries = q * max_retries if a >= 1 else q * (1 - a**max_retries) / (1 - a)
        return 1 + self.first_failure_rate * retries

    def simulate(
        self,
        rng: random.Random,
        *,
        timeout_ms: int,
        host_port: str,
        retryable: tuple[int, ...],
        max_retries: int,
        first_failure_rate: float | None = None,
    ) -> Outcome:
        """The final outcome of one delivery: a first attempt, then retries while retryable."""
        rate = self.first_failure_rate if first_failure_rate is None else first_failure_rate
        if rng.random() >= rate:
            return Outcome(self.success_status, True, 0, "", self.latency_ms(rng))
        retries = 0
        while True:
            kind = self.pick_failure(rng)
            if kind == "timeout":
                status, error, duration = 0, TIMEOUT_ERROR, timeout_ms + rng.randrange(0, 40)
            elif kind == "refused":
                status, error, duration = 0, refused_error(host_port), rng.randrange(0, 3)
            else:
                status, error, duration = int(kind), status_error(int(kind)), self.latency_ms(rng)
            can_retry = kind in ("timeout", "refused") or status in retryable
            if not can_retry or retries >= max_retries:
                return Outcome(status, False, retries, error, duration)
            retries += 1
            if rng.random() < self.retry_success_rate:
                return Outcome(self.success_status, True, retries, "", self.latency_ms(rng))


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="healthy",
            description="~99.5% 2xx, ~120 ms median",
            latency_median_ms=120,
            latency_sigma=0.45,
            first_failure_rate=0.006,
            retry_success_rate=0.8,
            failures=((503, 0.3), (502, 0.15), ("timeout", 0.15), (500, 0.15), (400, 0.25)),
        ),
        Profile(
            name="flaky",
            description="~8% first attempts fail (5xx, timeouts), mostly recovered by retries",
            latency_median_ms=260,
            latency_sigma=0.7,
            first_failure_rate=0.08,
            retry_success_rate=0.7,
            failures=((500, 0.3), (502, 0.25), (503, 0.3), ("timeout", 0.15)),
            success_status=202,
        ),
        Profile(
            name="failing",
            description="failing hard: timeouts, 5xx, some 4xx, connection refused; retries exhausted",
            latency_median_ms=900,
            latency_sigma=0.8,
            first_failure_rate=0.6,
            retry_success_rate=0.12,
            failures=(
                ("timeout", 0.3),
                (500, 0.1),
                (502, 0.08),
                (503, 0.14),
                (400, 0.06),
                (401, 0.04),
                (404, 0.05),
                (410, 0.05),
                ("refused", 0.18),
            ),
        ),
        Profile(
            name="slow",
            description="healthy but slow: ~900 ms median, a long tail, a few timeouts",
            latency_median_ms=900,
            latency_sigma=0.6,
            first_failure_rate=0.01,
            retry_success_rate=0.9,
            failures=(("timeout", 0.7), (504, 0.3)),
        ),
    )
}

_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    408: "Request Timeout",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def canned_response(status: int) -> tuple[str, bytes]:
    """The content type and body a sandbox receiver answers ``status`` with."""
    if 200 <= status < 300:
        body = {"received": True} if status == 200 else {"status": "accepted"}
        return "application/json", json.dumps(body, separators=(",", ":")).encode()
    if status in (502, 504):
        return "text/html", f"<html><body><h1>{status} {_REASONS[status]}</h1></body></html>\n".encode()
    if status == 401:
        return "application/json", b'{"error":"invalid signature"}'
    reason = _REASONS.get(status, "Error")
    return "application/json", json.dumps({"error": reason.lower().replace(" ", "_")}).encode()
