"""A full-volume-like archive: the sandbox's seeded full-volume history, written as the collector writes it.

:func:`moego_deliveries` runs the sandbox's own generator in process (no HTTP): the ten webhooks of
``--volume full`` with their seeded days of history, each entry materialized exactly as
``ListWebhookDeliveries`` serves it (bodies in each webhook's shape, signed header sets, the
receiver's answers) and parsed with :meth:`collectors.models.WebhookDelivery.from_json`. The order is
the collector's: webhook by webhook, each day oldest first, each day's entries newest first in pages.

:func:`build_moego_archive` writes them through :mod:`collectors.archive.writer` (so rollups, redaction
and the search index are as in production) and caches the file under ``bench/.cache/``; a rerun with
the same arguments reuses it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from collectors import archive
from collectors.archive import writer
from collectors.models import Webhook, WebhookDelivery
from sandbox.clock import NS_PER_DAY
from sandbox.events import Identity
from sandbox.history import seed_history
from sandbox.protojson import delivery_json, webhook_json
from sandbox.store import DeliveryQuery, DeliveryStore
from sandbox.synth import materialize
from sandbox.webhooks import WebhookRegistry

__all__ = ["CACHE", "moego_deliveries", "build_moego_archive"]

#: Where large benchmark archives are kept between runs (ignored by git).
CACHE = Path(__file__).resolve().parent / ".cache"
#: The anchor of the generated history (its newest moment), fixed so reruns build the same archive.
ANCHOR = datetime(2026, 11, 1, tzinfo=timezone.utc)
_PAGE = 500


def moego_deliveries(*, days: int, seed: int = 7) -> tuple[list[Webhook], Iterator[list[WebhookDelivery]]]:
    """The full-volume webhooks and their last ``days`` days of entries, as pages in the collector's order."""
    anchor_ns = int(ANCHOR.timestamp()) * 10**9
    identity = Identity.from_seed(seed)
    registry = WebhookRegistry(seed=seed, company_id=identity.company_id, body_shape="mixed")
    store = DeliveryStore()
    hooks = seed_history(
        seed=seed, volume="full", history_days=days, anchor_ns=anchor_ns, registry=registry, store=store,
        endpoint_for=lambda spec: f"https://hooks.partner.example/moego/{spec.label}", timeout_ms=30_000,
    )
    webhooks = [Webhook.from_json(webhook_json(h)) for h in hooks]

    def pages() -> Iterator[list[WebhookDelivery]]:
        for hook in hooks:
            for day in reversed(range(days)):
                start = anchor_ns - (day + 1) * NS_PER_DAY
                query = DeliveryQuery(webhook_idx=hook.idx, not_before=0, start=start, end=start + NS_PER_DAY)
                after = None
                while rows := store.page(query, after, _PAGE):
                    after = (rows[-1].delivered_at, rows[-1].key)
                    yield [WebhookDelivery.from_json(delivery_json(materialize(r, hook, identity))) for r in rows]
        store.close()

    return webhooks, pages()


def build_moego_archive(days: int = 3, *, path: Path | None = None, refresh: bool = False,
                        schema2: bool = False) -> Path:
    """An archive of the full-volume sandbox's last ``days`` days (about 82,000 entries a day), cached.

    Returns its path (``bench/.cache/moego-full-<days>d[-schema2].db`` unless ``path`` is given). Built
    once; a later call returns the cached file unless ``refresh``. ``schema2`` writes it as schema 2's
    writer did (every field as text: :func:`tests.archive.legacy.legacy_archive`), the archive an
    upgrade starts from.
    """
    path = path or CACHE / f"moego-full-{days}d{'-schema2' if schema2 else ''}.db"
    if path.exists() and not refresh:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    webhooks, pages = moego_deliveries(days=days)
    if schema2:
        from tests.archive.legacy import legacy_archive

        legacy_archive(partial, [d for page in pages for d in page], seen_at=ANCHOR, webhooks=webhooks)
        shutil.move(partial, path)
        return path
    db = archive.connect(partial)
    archive.ensure_db_shape(db)
    with archive.transaction(db):
        writer.save_webhooks(db, webhooks, seen_at=ANCHOR)
    for page in pages:
        with archive.transaction(db):
            writer.save_deliveries(db, page, seen_at=ANCHOR)
    db.execute("ANALYZE")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    shutil.move(partial, path)
    return path
