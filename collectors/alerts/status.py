"""The one place the alerts package reaches the archive's status read model (what ``status`` shows).

It lives in :mod:`collectors.archive.status`; should it move again, this import is the only line to change.
"""

from __future__ import annotations

from ..archive.status import ArchiveStatus, WebhookStatus, archive_status

__all__ = ["ArchiveStatus", "WebhookStatus", "archive_status"]
