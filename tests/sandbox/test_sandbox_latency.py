"""``--latency MS``: every API answer comes after the round trip a caller of MoeGo over the internet waits, and
calls made at once wait side by side (so a collector's concurrency can be measured against it)."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sandbox.server import SandboxError, SandboxOptions
from tests.conftest import REPO, running_sandbox

LATENCY_S = 1.0
CALLS = 8


def test_every_answer_waits_the_latency_and_calls_made_at_once_wait_together() -> None:
    with running_sandbox("--history-days", "1", "--latency", str(LATENCY_S * 1000)) as sandbox:
        def list_webhooks(_: int) -> tuple[int, float]:
            began = time.monotonic()
            answer = httpx.post(f"{sandbox.base_url}/v1/webhooks:list", json={"pagination": {"pageSize": 10}}, headers=sandbox.auth_headers,
                                timeout=60)
            return answer.status_code, time.monotonic() - began

        status, took = list_webhooks(0)
        assert status == 200 and took >= LATENCY_S  # the answer came after the round trip
        unauthorized = httpx.post(f"{sandbox.base_url}/v1/webhooks:list", json={"pagination": {"pageSize": 10}}, timeout=60)
        assert unauthorized.status_code == 401  # errors wait too: MoeGo's are as far away

        began = time.monotonic()
        with ThreadPoolExecutor(CALLS) as pool:
            results = list(pool.map(list_webhooks, range(CALLS)))
        together = time.monotonic() - began
    assert all(status == 200 and took >= LATENCY_S for status, took in results)
    # One after another they would take CALLS x the latency at least; at once they overlap.
    assert together < CALLS * LATENCY_S


def test_a_latency_out_of_range_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "sandbox", "--latency", "-5", "--port", "0", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == "sandbox: latency must be between 0 and 10,000 ms, not -5"
    with pytest.raises(SandboxError, match=r"^latency must be between 0 and 10,000 ms, not 20000$"):
        SandboxOptions(latency_ms=20000).validate()
