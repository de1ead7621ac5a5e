"""Send queued incident messages through Apprise, one channel at a time, recording every outcome.

:func:`deliver_pending` sends each ``pending`` or ``failed`` row of ``incident_notifications`` to its
channel, claiming it first (``sending``) so that two processes never send the same message. A channel that fails (DNS, refused, a 500, a timeout) does not stop the others: its row
becomes ``failed`` with one line saying why (the channel's URL is never part of it), the failure is
added to the incident's history, and the next pass tries again, up to :data:`MAX_ATTEMPTS` times
(then ``abandoned``). A row whose channel is no longer configured is ``abandoned`` at once.

Every message is scrubbed of the secrets the caller names (the API key) before it leaves, on top
of being built only from redacted archive data (:func:`collectors.alerts.incidents.message_for`).
Apprise's own timeouts bound each send (``cto``/``rto`` URL parameters; :data:`DEFAULT_TIMEOUTS`
are added to a URL that sets none).
"""

from __future__ import annotations

import logging
import sqlite3
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlparse

from .. import archive
from ..models import format_timestamp
from ..redaction import REDACTED
from ..archive.runs import one_line
from .config import AlertsConfig, Channel
from .incidents import ENGINE, add_event

__all__ = ["load_apprise", "MAX_ATTEMPTS", "DEFAULT_TIMEOUTS", "SendReport", "scrub", "send", "deliver_pending", "send_test"]

#: A message is tried at this many passes before it is given up (``abandoned``).
MAX_ATTEMPTS = 10
#: A message claimed for sending (``sending``) longer ago than this was left by a process that died: send it again.
CLAIM_TIMEOUT = timedelta(minutes=10)
#: Connect and read timeouts (seconds) for a channel URL that sets none.
DEFAULT_TIMEOUTS = {"cto": "5", "rto": "10"}
_TYPES = {"opened": "failure", "reminder": "warning", "resolved": "success", "test": "info"}


def load_apprise() -> Any:
    """The ``apprise`` module, imported on first use (it is slow to load), without its import-time warnings.

    Apprise's plugins import the standard library's ``imghdr`` (on first use, not at import), which
    warns of its removal in Python 3.13: it is imported here once, quietly, so later imports are silent.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)
        try:
            import imghdr  # noqa: F401
        except ImportError:  # Python 3.13+: Apprise installs its own stand-in
            pass
        import apprise
    # Apprise logs URL parts (tokens) as it parses and sends: its records must not reach any log. They
    # are kept off the root logger; send() still reads them through Apprise's own log callback.
    quiet = logging.getLogger("apprise")
    if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
        quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return apprise


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (4 characters or more) replaced by ``[redacted]``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _with_timeouts(url: str) -> str:
    try:
        parsed = urlparse(url)
        query = dict(parse_qsl(parsed.query, keep_blank_values=True))
    except ValueError:
        return url
    missing = {k: v for k, v in DEFAULT_TIMEOUTS.items() if k not in query}
    if not missing:
        return url
    return parsed._replace(query=urlencode({**query, **missing})).geturl()


def _url_parts(url: str) -> list[str]:
    """Pieces of a channel URL that may be secret, to keep out of error lines."""
    parts = [url]
    try:
        parsed = urlparse(url)
        parts += [parsed.password or "", parsed.username or "", parsed.netloc]
        parts += [p for p in parsed.path.split("/") if len(p) >= 6]
        parts += [v for _, v in parse_qsl(parsed.query) if len(v) >= 6]
    except ValueError:
        pass
    return parts


def send(channel: Channel, title: str, body: str, kind: str, *, secrets: Sequence[str] = ()) -> str | None:
    """Send one message to ``channel``; None when it was accepted, else one line saying why not (no URL in it)."""
    apprise = load_apprise()
    hidden = [*secrets, *_url_parts(channel.url)]
    notifier = apprise.Apprise()
    if not notifier.add(_with_timeouts(channel.url)):
        return f"Apprise cannot send to {channel.shown}"
    entries: list[str] = []
    try:
        ok = notifier.notify(
            body=scrub(body, secrets), title=scrub(title, secrets), notify_type=_TYPES.get(kind, "info"),
            body_format=apprise.NotifyFormat.TEXT,
            log_callback=lambda entry, _plugin: entries.append(str(entry.message)), log_level=logging.WARNING,
        )
    except Exception as exc:  # a plugin that raises must not stop the other channels or the pass
        return one_line(scrub(f"{channel.shown}: {type(exc).__name__}: {exc}", hidden))
    if ok:
        return None
    reason = entries[-1] if entries else "the channel did not accept the message"
    return one_line(scrub(f"{channel.shown}: {reason}", hidden))


@dataclass
class SendReport:
    """How many queued messages were sent, failed (to retry) and given up, with one line per failure."""

    sent: int = 0
    failed: int = 0
    abandoned: int = 0
    errors: list[str] = field(default_factory=list)


def deliver_pending(conn: sqlite3.Connection, config: AlertsConfig, now: datetime, *,
                    secrets: Sequence[str] = ()) -> SendReport:
    """Send every pending or failed message (see the module docstring); never raises for a channel's failure."""
    report = SendReport()
    stamp, stale = format_timestamp(now), format_timestamp(now - CLAIM_TIMEOUT)
    rows = conn.execute(
        "SELECT id, incident_id, channel, kind, title, body, attempts FROM incident_notifications "
        "WHERE status IN ('pending', 'failed') OR (status = 'sending' AND last_attempt_at < ?) ORDER BY id LIMIT 500",
        (stale,),
    ).fetchall()
    for notification_id, incident_id, channel_name, kind, title, body, attempts in rows:
        channel = config.channel(channel_name)
        with archive.transaction(conn):  # claim it: a second process (alerts check beside schedule) skips it
            claimed = conn.execute(
                "UPDATE incident_notifications SET status = 'sending', last_attempt_at = ? WHERE id = ? "
                "AND (status IN ('pending', 'failed') OR (status = 'sending' AND last_attempt_at < ?))",
                (stamp, notification_id, stale)).rowcount
        if not claimed:
            continue
        if channel is None:
            with archive.transaction(conn):
                conn.execute("UPDATE incident_notifications SET status = 'abandoned', error = ? WHERE id = ?",
                             (f"no channel named {channel_name!r} is configured any more", notification_id))
            report.abandoned += 1
            continue
        error = send(channel, title, body, kind, secrets=secrets)
        attempts += 1
        with archive.transaction(conn):
            if error is None:
                conn.execute("UPDATE incident_notifications SET status = 'sent', attempts = ?, last_attempt_at = ?, "
                             "error = NULL WHERE id = ?", (attempts, stamp, notification_id))
                add_event(conn, incident_id, "notified", ENGINE, now, f"{kind} message sent to {channel_name}")
                report.sent += 1
                continue
            status = "abandoned" if attempts >= MAX_ATTEMPTS else "failed"
            conn.execute("UPDATE incident_notifications SET status = ?, attempts = ?, last_attempt_at = ?, error = ? "
                         "WHERE id = ?", (status, attempts, stamp, error, notification_id))
            retry = "given up" if status == "abandoned" else "retried at the next pass"
            add_event(conn, incident_id, "notify_failed", ENGINE, now,
                      f"{kind} message to {channel_name} failed (attempt {attempts}, {retry}): {error}")
        report.failed += status == "failed"
        report.abandoned += status == "abandoned"
        report.errors.append(f"{channel_name}: {error}")
    return report


def send_test(config: AlertsConfig, *, secrets: Sequence[str] = ()) -> list[tuple[Channel, str | None]]:
    """Send a test message to every channel; each with None (accepted) or why it failed."""
    title = "[moego-monitor] Test message"
    body = "A test from 'moego-monitor alerts test': this channel receives moego-monitor's incident messages."
    return [(channel, send(channel, title, body, "test", secrets=secrets)) for channel in config.channels]
