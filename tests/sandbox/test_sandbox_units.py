"""In-process checks of the sandbox's building blocks (no server): storage plans, encodings, seeding."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from sandbox.clock import NS_PER_DAY
from sandbox.errors import ApiError
from sandbox.events import Identity
from sandbox.history import seed_history
from sandbox.pagination import decode_token, encode_token
from sandbox.protojson import format_timestamp, parse_timestamp
from sandbox.store import DeliveryQuery, DeliveryStore
from sandbox.webhooks import WebhookRegistry
from sandbox.wire import signature

ANCHOR = 1_751_284_680_000_000_000  # 2025-06-30T11:58:00Z


def _seed(anchor: int) -> tuple[WebhookRegistry, DeliveryStore]:
    identity = Identity.from_seed(7)
    registry = WebhookRegistry(seed=7, company_id=identity.company_id)
    store = DeliveryStore()
    seed_history(
        seed=7,
        volume="demo",
        history_days=20,
        anchor_ns=anchor,
        registry=registry,
        store=store,
        endpoint_for=lambda spec: f"http://127.0.0.1:9/hooks/{spec.label}",
        timeout_ms=30_000,
    )
    return registry, store


def test_pages_are_served_by_an_index_without_sorting() -> None:
    registry, store = _seed(ANCHOR)
    try:
        floor = ANCHOR - 15 * NS_PER_DAY
        for query in (
            DeliveryQuery(webhook_idx=1, not_before=floor),
            DeliveryQuery(webhook_idx=1, not_before=floor, success=False),
            DeliveryQuery(webhook_idx=1, not_before=floor, event_types=(100, 101), end=ANCHOR),
        ):
            for after in (None, (ANCHOR - NS_PER_DAY, 12345)):
                plan = " ".join(store.explain(query, after))
                assert "USING COVERING INDEX ix_deliveries" in plan or "USING INDEX ix_deliveries" in plan, (
                    plan
                )
                assert "TEMP B-TREE" not in plan, plan
    finally:
        store.close()


def test_seeding_is_deterministic_for_a_seed() -> None:
    registry_a, store_a = _seed(ANCHOR)
    registry_b, store_b = _seed(ANCHOR + 5 * 3_600_000_000_000 + 60_000_000_000)  # started 5 h later
    try:
        assert [w.id for w in registry_a.all()] == [w.id for w in registry_b.all()]
        assert [w.secret_token for w in registry_a.all()] == [w.secret_token for w in registry_b.all()]
        keys_a = {r.key for r in store_a.page(DeliveryQuery(4, 0), None, 100_000)}
        keys_b = {r.key for r in store_b.page(DeliveryQuery(4, 0), None, 100_000)}
        assert len(keys_a & keys_b) >= 0.99 * len(keys_a)
    finally:
        store_a.close()
        store_b.close()


def test_timestamps_follow_go_protojson() -> None:
    assert format_timestamp(1_751_284_716_000_000_000) == "2025-06-30T11:58:36Z"
    assert format_timestamp(1_751_284_716_740_000_000) == "2025-06-30T11:58:36.740Z"
    assert format_timestamp(1_751_284_716_740_351_000) == "2025-06-30T11:58:36.740351Z"
    assert format_timestamp(1_751_284_716_740_351_808) == "2025-06-30T11:58:36.740351808Z"
    assert parse_timestamp("2025-06-30T11:58:36.740351808Z", "t") == 1_751_284_716_740_351_808
    assert parse_timestamp("2025-06-30T13:58:36.5+02:00", "t") == 1_751_284_716_500_000_000
    for bad in ("2025-02-30T00:00:00Z", "2025-06-30 11:58:36Z", "2025-06-30T24:00:00Z", 17):
        with pytest.raises(ApiError):
            parse_timestamp(bad, "t")


def test_page_tokens_are_bound_to_their_request() -> None:
    token = encode_token([ANCHOR, 42], "scope-a")
    assert decode_token(token, "scope-a", (int, int)) == [ANCHOR, 42]
    for bad_token, scope, shape in (
        (token, "scope-b", (int, int)),
        (token, "scope-a", (int, str)),
        (token[:-3], "scope-a", (int, int)),
        ("not a token", "scope-a", (int, int)),
    ):
        with pytest.raises(ApiError):
            decode_token(bad_token, scope, shape)


def test_signatures_are_base64_hmacs_of_the_concatenation() -> None:
    body = b'{"id":"a21eb4cd","type":"HEALTH_CHECK"}'
    message = b"018e5b36-e35c-7925-a9de-321ed638b682" + b"780525611260542810" + b"1751284717825" + body
    for digest in ("sha1", "sha256"):
        expected = base64.b64encode(hmac.new(b"secret", message, getattr(hashlib, digest)).digest()).decode()
        got = signature(
            "secret",
            "018e5b36-e35c-7925-a9de-321ed638b682",
            "780525611260542810",
            "1751284717825",
            body,
            digest,
        )
        assert got == expected


def test_relay_refuses_connections_while_down() -> None:
    import asyncio
    import socket

    from sandbox.relay import FlappingRelay

    async def scenario() -> list[str]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        target = await asyncio.start_server(echo, "127.0.0.1", 0)
        target_port = target.sockets[0].getsockname()[1]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        relay = FlappingRelay(sock, target_port, seed=1)
        seen = []

        async def call() -> str:
            try:
                reader, writer = await asyncio.open_connection(relay.host, relay.port)
            except ConnectionRefusedError:
                return "refused"
            writer.write(b"ping\n")
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return line.decode().strip()

        try:
            await relay.up()
            seen.append(await call())
            await relay.down()
            seen.append(await call())
            await relay.up()
            seen.append(await call())
        finally:
            await relay.down()
            target.close()
            await target.wait_closed()
        return seen

    assert asyncio.run(scenario()) == ["ping", "refused", "ping"]


def test_formats_are_content_type_enum_names_and_unspecified_is_omitted():
    from sandbox.protojson import _put
    from sandbox.synth import response_format

    assert response_format("application/json; charset=utf-8") == "CONTENT_TYPE_JSON"
    assert response_format("text/html") == "CONTENT_TYPE_UNSPECIFIED"
    out: dict = {}
    _put(out, "responseFormat", response_format("text/plain"))
    _put(out, "requestFormat", "CONTENT_TYPE_JSON")
    assert out == {"requestFormat": "CONTENT_TYPE_JSON"}
