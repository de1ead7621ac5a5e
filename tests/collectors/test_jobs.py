"""Bulk redelivery jobs (collectors.jobs): counted by outcome, estimated from the endpoint, cancellable,
and resumed after a crash without sending any entry twice. MoeGo is the scripted fake of test_actions."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import httpx
import pytest

from collectors import archive, bulk, jobs, redelivery
from collectors.client import MoeGoClient, RetryConfig, make_http_client
from collectors.config import Settings
from collectors.models import format_timestamp
from tests.seed import ALPHA, BETA, NOW

from .test_actions import FakeMoeGo, FakeTime, audit, client, db, error, fake_time, moego  # noqa: F401 (fixtures)


def candidates(n: int, hook: str = ALPHA) -> list[redelivery.Candidate]:
    at = format_timestamp(NOW - timedelta(hours=1))
    return [redelivery.Candidate(f"{hook}_{i:03d}", hook, f"evt_{hook}_{i}", at) for i in range(n)]


def failing_attempt(moego: FakeMoeGo, delivery_id: str) -> httpx.Response:
    """MoeGo sends the redelivery, and the endpoint refuses the connection again."""
    body = moego.attempt(f"re_{delivery_id}", ALPHA)
    del body["success"], body["responseStatus"]
    body["error"] = "dial tcp 127.0.0.1:9: connect: connection refused"
    return httpx.Response(200, json=body)


@pytest.fixture
def settings(seeded) -> Settings:
    return Settings(api_key="key", base_url="https://openapi.example", db_path=seeded.path)


def test_bulk_summary_counts_new_attempts_that_failed_as_failures(client, db, moego, fake_time) -> None:
    plan = bulk.BulkPlan(tuple(candidates(3)), ())
    moego.answers[f"{ALPHA}_001"] = [failing_attempt(moego, f"{ALPHA}_001")]
    result = bulk.bulk_redeliver(client, db, plan, batch_id="b1", sleep=fake_time.sleep, clock=fake_time.now)
    # MoeGo accepted all three calls; one new attempt failed at the endpoint: that is a failure, not a "sent".
    assert result.summary == "2 succeeded, 1 failed, 0 skipped"
    assert jobs.job_counts(db, "b1").summary == result.summary  # the audit says the same


def test_a_job_counts_outcomes_from_its_audit_rows_and_ends_done(settings, client, moego, db) -> None:
    plan = bulk.BulkPlan(tuple(candidates(4)), ((candidates(1, BETA)[0], "its event later succeeded"),))
    moego.answers[f"{ALPHA}_002"] = [failing_attempt(moego, f"{ALPHA}_002")]
    job_id = jobs.submit_bulk(settings.db_path, plan, requested_by="alice", estimate_s=5.0)
    assert not moego.calls  # submitting sends nothing
    [job] = jobs.work_pending(settings, owner="w1", client=client)
    assert (job.id, job.state, job.total) == (job_id, "done", 5)
    assert job.counts.summary == "3 succeeded, 1 failed, 1 skipped"
    rows = [r for r in audit(db) if r["batch_id"] == job_id]
    assert len(rows) == 5 and {r["requested_by"] for r in rows} == {"alice"}
    assert jobs.active_jobs(db) == [] and jobs.work_pending(settings, owner="w1", client=client) == []


def test_a_job_resumes_after_a_crash_without_sending_any_entry_twice(settings, client, moego, db) -> None:
    plan = bulk.BulkPlan(tuple(candidates(6)), ())
    job_id = jobs.submit_bulk(settings.db_path, plan, requested_by="dashboard")
    # A worker died mid-run: it had sent entry 0 and was waiting for MoeGo's answer on entry 1.
    sent, in_flight = plan.to_send[0], plan.to_send[1]
    with archive.transaction(db):
        redelivery.insert_audit(db, sent, now=NOW, outcome="sent", error=None, requested_by="dashboard", batch_id=job_id)
        db.execute("UPDATE redeliveries SET new_success = 1, new_delivery_id = 're_0' WHERE delivery_id = ?",
                   (sent.delivery_id,))
        redelivery.insert_audit(db, in_flight, now=NOW, outcome="failed", error=redelivery.IN_FLIGHT,
                                requested_by="dashboard", batch_id=job_id)
        db.execute("UPDATE bulk_jobs SET state = 'running', started_at = ?, lease_owner = 'dead', lease_until = ? "
                   "WHERE id = ?", (format_timestamp(NOW), format_timestamp(NOW), job_id))
    [job] = jobs.work_pending(settings, owner="w2", client=client)
    assert [d for _, d, _ in moego.calls] == [c.delivery_id for c in plan.to_send[2:]]
    per_entry = Counter(r["delivery_id"] for r in audit(db) if r["batch_id"] == job_id)
    assert set(per_entry.values()) == {1} and len(per_entry) == 6
    assert job.state == "done" and job.counts.summary == "5 succeeded, 1 failed, 0 skipped"
    [left] = [r for r in audit(db) if r["delivery_id"] == in_flight.delivery_id]
    assert left["error"] == jobs.INTERRUPTED


def test_a_live_workers_job_is_not_taken_over(settings, client, moego, db) -> None:
    job_id = jobs.submit_bulk(settings.db_path, bulk.BulkPlan(tuple(candidates(2)), ()), requested_by="dashboard")
    lease = jobs.lease_for(settings)
    assert lease > timedelta(seconds=2 * settings.timeout_s)  # outlasts a call waiting on a slow endpoint
    assert jobs.claim_job(db, "w1", NOW, lease=lease) == job_id
    assert jobs.claim_job(db, "w2", NOW + lease - timedelta(seconds=1), lease=lease) is None  # w1's lease holds
    assert jobs.claim_job(db, "w2", NOW + lease + timedelta(seconds=1), lease=lease) == job_id  # w1 went quiet


def test_cancel_stops_a_job_before_its_next_entry(settings, client, moego, db) -> None:
    job_id = jobs.submit_bulk(settings.db_path, bulk.BulkPlan(tuple(candidates(5)), ()), requested_by="dashboard")
    jobs.request_cancel(settings.db_path, job_id)
    [job] = jobs.work_pending(settings, owner="w1", client=client)
    assert job.state == "cancelled" and not moego.calls
    assert job.counts.summary == "0 succeeded, 0 failed, 5 skipped"


def test_the_estimate_waits_for_the_endpoint_bounded_by_its_timeout() -> None:
    plan = bulk.BulkPlan(tuple(candidates(10)), ())
    # Ten calls to an endpoint that takes 5 s: at least 50 s, though the rate alone would allow it at once.
    assert 50 <= jobs.estimate_seconds(plan, {ALPHA: 5_000}) < 55
    # An endpoint timing out after 60 s is cut off at MoeGo's 30 s, and at the client's timeout if shorter.
    assert 300 <= jobs.estimate_seconds(plan, {ALPHA: 60_000}) < 305
    assert 100 <= jobs.estimate_seconds(plan, {ALPHA: 60_000}, timeout_s=10) < 105
    # 250 quick calls to one webhook: the rate of 90 a minute makes it at least two minutes.
    assert jobs.estimate_seconds(bulk.BulkPlan(tuple(candidates(250)), ()), {ALPHA: 10}) >= 120


def test_recent_durations_prefer_the_failures(db) -> None:
    durations = jobs.recent_durations_ms(db, [ALPHA, BETA], NOW)
    # wh_alpha's failures in the last 24 h took 30 s, 120 ms, 35 ms, 2.4 s, and dlv_r1/r2 100 ms each.
    assert durations[ALPHA] == pytest.approx((30_000 + 120 + 35 + 2_400 + 100 + 100) / 6)
    assert durations[BETA] == 250


def test_a_worker_that_stalled_and_lost_its_job_leaves_the_rest_to_the_new_holder(settings, moego, db,
                                                                                   fake_time) -> None:
    plan = bulk.BulkPlan(tuple(candidates(5)), ())
    job_id = jobs.submit_bulk(settings.db_path, plan, requested_by="dashboard")
    first, second = plan.to_send[0], plan.to_send[1]

    def w1_stalls_while_w2_takes_over(request: httpx.Request) -> httpx.Response:
        answer = moego(request)
        if request.url.path.endswith(f"/deliveries/{first.delivery_id}/redeliver"):
            # w1 stalled past its lease during this call: w2 claimed the job and already sent the next entry.
            with archive.transaction(db):
                db.execute("UPDATE bulk_jobs SET lease_owner = 'w2', lease_until = ? WHERE id = ?",
                           (format_timestamp(NOW + timedelta(hours=1)), job_id))
                redelivery.insert_audit(db, second, now=NOW, outcome="sent", error=None, requested_by="dashboard",
                                        batch_id=job_id)
                db.execute("UPDATE redeliveries SET new_success = 1, new_delivery_id = 're_w2' WHERE delivery_id = ?",
                           (second.delivery_id,))
        return answer

    http = make_http_client("https://openapi.example", "key", transport=httpx.MockTransport(w1_stalls_while_w2_takes_over))
    with MoeGoClient(http, retry=RetryConfig(attempts=1), sleep=fake_time.sleep) as w1_client:
        assert jobs.claim_job(db, "w1", NOW) == job_id
        left_by_w1 = jobs.work_job(settings, job_id, owner="w1", client=w1_client)
    assert left_by_w1 is not None and left_by_w1.active  # w1 stopped without ending w2's job
    rows = Counter(r["delivery_id"] for r in audit(db) if r["batch_id"] == job_id)
    assert rows == {first.delivery_id: 1, second.delivery_id: 1}  # w1 wrote no "skipped" row for w2's entries

    http = make_http_client("https://openapi.example", "key", transport=httpx.MockTransport(moego))
    with MoeGoClient(http, retry=RetryConfig(attempts=1), sleep=fake_time.sleep) as w2_client:
        [job] = jobs.work_pending(settings, owner="w2", client=w2_client)
    assert job.state == "done" and job.counts.summary == "5 succeeded, 0 failed, 0 skipped"
    per_entry = Counter(r["delivery_id"] for r in audit(db) if r["batch_id"] == job_id)
    assert per_entry == {c.delivery_id: 1 for c in plan.to_send}  # one row per entry, none doubled
    assert [d for _, d, _ in moego.calls] == [first.delivery_id] + [c.delivery_id for c in plan.to_send[2:]]


def test_a_handed_over_batch_closes_only_the_rows_its_worker_holds(client, db, moego, fake_time) -> None:
    plan = bulk.BulkPlan(tuple(candidates(3)), ())
    waiting = plan.to_send[0]
    moego.answers[waiting.delivery_id] = [error(429, 8, "too many pushes", **{"Retry-After": "7"})]
    result = bulk.bulk_redeliver(client, db, plan, batch_id="b1", sleep=fake_time.sleep, clock=fake_time.now,
                                 cancelled=lambda: len(moego.calls) >= 1, handed_over=lambda: True)
    # The entry waiting out its 429 has this worker's row: closed as not retried. The two never sent get no
    # row here: the worker now holding the batch sends them and writes theirs.
    [row] = [r for r in audit(db) if r["batch_id"] == "b1"]
    assert (row["delivery_id"], row["outcome"], row["error"]) == (waiting.delivery_id, "skipped", bulk.HANDED_OVER)
    assert [r.candidate.delivery_id for r in result.results] == [waiting.delivery_id]
