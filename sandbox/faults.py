"""Fault injection for the MoeGo API (sandbox-only, set through ``POST /_sandbox/faults``).

Two kinds of rule, consumed in the order they were added:

- ``{"status": 429|500|503, "count": N, "retryAfter": S?, "paths": "/v1/..."?}``: the next N API
  calls whose path starts with ``paths`` (any API path if absent) answer that error, with the gRPC
  error body (RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE) and ``Retry-After: S`` when given;
- ``{"malformed": N, "kind": "invalid_json"|"wrong_types"?, "paths": ...?}``: the next N list calls
  (``:list`` endpoints) answer 200 with a body that is not valid JSON (default) or whose fields
  have the wrong JSON types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.errors import ApiError, Code

__all__ = ["FaultInjector", "FaultSpecError", "MALFORMED_KINDS"]

MALFORMED_KINDS = ("invalid_json", "wrong_types")
_STATUS_CODES = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    429: Code.RESOURCE_EXHAUSTED,
    500: Code.INTERNAL,
    503: Code.UNAVAILABLE,
}


class FaultSpecError(ValueError):
    """A fault rule that cannot be understood."""


@dataclass
class _Rule:
    remaining: int
    paths: str
    status: int = 0
    retry_after: int | None = None
    malformed: str = ""

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"remaining": self.remaining, "paths": self.paths}
        if self.malformed:
            out["malformed"] = self.malformed
        else:
            out["status"] = self.status
            if self.retry_after is not None:
                out["retryAfter"] = self.retry_after
        return out


def _count(spec: Mapping[str, Any], key: str) -> int:
    value = spec.get(key, 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FaultSpecError(f"{key}: expected a positive integer")
    return value


class FaultInjector:
    """Pending fault rules."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []

    def add(self, spec: Mapping[str, Any]) -> None:
        """Add one rule from its JSON form (see the module docstring); FaultSpecError if invalid."""
        paths = spec.get("paths") or ""
        if not isinstance(paths, str):
            raise FaultSpecError("paths: expected a path prefix string")
        if "malformed" in spec:
            kind = spec.get("kind", "invalid_json")
            if kind not in MALFORMED_KINDS:
                raise FaultSpecError(f"kind: one of {', '.join(MALFORMED_KINDS)}")
            self._rules.append(_Rule(remaining=_count(spec, "malformed"), paths=paths, malformed=kind))
            return
        status = spec.get("status")
        if status not in _STATUS_CODES:
            raise FaultSpecError(f"status: one of {sorted(_STATUS_CODES)}")
        retry_after = spec.get("retryAfter")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0
        ):
            raise FaultSpecError("retryAfter: expected whole seconds >= 0")
        self._rules.append(
            _Rule(remaining=_count(spec, "count"), paths=paths, status=status, retry_after=retry_after)
        )

    def clear(self) -> None:
        """Drop every pending rule."""
        self._rules.clear()

    def pending(self) -> list[dict[str, Any]]:
        """The pending rules, as JSON."""
        return [r.describe() for r in self._rules]

    def _take(self, path: str, *, malformed: bool) -> _Rule | None:
        for rule in self._rules:
            if bool(rule.malformed) == malformed and path.startswith(rule.paths):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
                return rule
        return None

    def take_error(self, path: str) -> ApiError | None:
        """Consume the first error rule matching ``path``, as the error to answer with."""
        rule = self._take(path, malformed=False)
        if rule is None:
            return None
        return ApiError(
            _STATUS_CODES[rule.status], f"injected fault: HTTP {rule.status}", retry_after=rule.retry_after
        )

    def take_malformed(self, path: str) -> str | None:
        """Consume the first malformed-body rule matching ``path`` (a list call): its kind."""
        rule = self._take(path, malformed=True)
        return rule.malformed if rule else None
