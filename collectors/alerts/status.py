"""The one place the alerts package reaches the archive's status read model (what ``status`` shows).

When the read model moves (``collectors.archive.status`` after the package restructuring), this
import is the only line to change.
"""

from __future__ import annotations

from ..runs import ArchiveStatus, WebhookStatus, archive_status

__all__ = ["ArchiveStatus", "WebhookStatus", "archive_status"]
