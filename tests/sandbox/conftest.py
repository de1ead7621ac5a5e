"""Helpers for the sandbox's own tests: an API client, a webhook factory, independent decoders."""

from __future__ import annotations

import base64
import calendar
import itertools
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import SandboxHandle

_counter = itertools.count(1)
_TS = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")


def ts_ns(text: str) -> int:
    """An RFC 3339 UTC timestamp as nanoseconds (independent of the sandbox's own code)."""
    m = _TS.match(text)
    assert m, f"not an RFC 3339 UTC timestamp: {text!r}"
    y, mo, d, h, mi, s, frac = m.groups()
    seconds = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    return seconds * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def rfc3339(ns: int) -> str:
    """Nanoseconds as an RFC 3339 UTC timestamp with 9 fractional digits."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def b64decode(text: str) -> bytes:
    """Strict standard base64."""
    return base64.b64decode(text, validate=True)


def list_all(
    api: httpx.Client, webhook_id: str, *, page_size: int = 500, filter: dict | None = None
) -> list[dict[str, Any]]:
    """Every delivery of a webhook, following nextPageToken."""
    out: list[dict[str, Any]] = []
    token = ""
    while True:
        body: dict[str, Any] = {"pagination": {"pageSize": page_size}, "webhookId": webhook_id}
        if token:
            body["pagination"]["pageToken"] = token
        if filter is not None:
            body["filter"] = filter
        r = api.post("/v1/webhook/deliveries:list", json=body)
        assert r.status_code == 200, r.text
        data = r.json()
        out.extend(data.get("deliveries", []))
        token = data.get("nextPageToken", "")
        if not token:
            return out


def seeded(api: httpx.Client, label: str) -> dict[str, Any]:
    """The seeded webhook whose endpoint ends with ``/hooks/<label>``."""
    r = api.post("/v1/webhooks:list", json={"pagination": {"pageSize": 100}})
    for webhook in r.json()["webhooks"]:
        if webhook["endpointUrl"].endswith(f"/hooks/{label}"):
            return webhook
    raise AssertionError(f"no seeded webhook {label}")


@pytest.fixture
def api(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """An authenticated client on the session sandbox."""
    with sandbox.client() as client:
        yield client


@pytest.fixture
def make_webhook(sandbox: SandboxHandle, api: httpx.Client) -> Iterator[Callable[..., dict[str, Any]]]:
    """Create webhooks on the session sandbox pointing at receiver paths; deleted after the test."""
    created: list[str] = []

    def make(path: str = "ok", **fields: Any) -> dict[str, Any]:
        body = {
            "endpointUrl": f"{sandbox.receiver_url}/hooks/{path}?n={next(_counter)}",
            "eventTypes": ["HEALTH_CHECK", "APPOINTMENT_CREATED", "CUSTOMER_UPDATED"],
            "isActive": True,
            **fields,
        }
        r = api.post("/v1/webhooks", json=body)
        assert r.status_code == 200, r.text
        created.append(r.json()["id"])
        return r.json()

    yield make
    for webhook_id in created:
        api.delete(f"/v1/webhooks/{webhook_id}")
