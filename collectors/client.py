"""A client for MoeGo's Webhook API that speaks its contract exactly (MoeGo's own
definitions: ``moego/business/webhook/v1/webhook_service.proto`` and its OpenAPI file).

One :class:`httpx.Client` is built by :func:`make_http_client` (base URL, ``Authorization: Basic``,
timeouts always set, transport injectable for tests); :class:`MoeGoClient` wraps it with one method
per RPC. Nothing above this module sees an httpx exception: they are converted here.

Exceptions::

    MoeGoError                      every failure below; str() is one line: what happened, what to do
    ├── ApiError                    MoeGo answered with a gRPC status (code_name, code, http_status, message)
    │   ├── InvalidArgument         400  INVALID_ARGUMENT
    │   ├── Unauthenticated         401  UNAUTHENTICATED   (missing or wrong API key)
    │   ├── PermissionDenied        403  PERMISSION_DENIED
    │   ├── NotFound                404  NOT_FOUND
    │   ├── AlreadyExists           409  ALREADY_EXISTS
    │   ├── ResourceExhausted       429  RESOURCE_EXHAUSTED (rate or quota limit; retry_after when sent)
    │   ├── Internal                500  INTERNAL
    │   └── Unavailable             503  UNAVAILABLE
    ├── TransportError              no answer: cannot connect, timed out, connection broken
    │   └── DeadlineExceeded        the call did not end within its deadline (retries and waits included)
    │       └── PassBudgetExhausted the deadline was the end of the pass's budget
    ├── MalformedResponse           an answer that is not the JSON the contract promises, or too large
    └── NoWebhooksListed            ListWebhooks is empty while the archive tracks webhooks (a wrong key?)

Retries: 429, 502, 503, 504 and timeouts are retried with bounded exponential backoff and full
jitter, honouring ``Retry-After``; other statuses are not. Calls that send a webhook (redeliver,
test) or create one are retried only on 429 and 503, never after a timeout, 502 or 504, since the
first attempt may have gone through. With a :attr:`MoeGoClient.pacer` (a collect pass's, shared by its
workers), a 429 closes a gate for every call of the pass instead (:mod:`collectors.pacing`).

Bounds no server can stretch:

- **Deadline.** Every call ends within ``deadline_s`` (``MOEGO_DEADLINE``, default 120 s), retries
  and backoff included, and never after ``pass_deadline`` (the end of a collect pass's budget).
  The default transport clamps every socket operation (connect, each read, each write) to the time
  left, so neither a host that never answers nor one that sends a byte every few seconds keeps a
  call alive past it. A wait for a retry that would end past the deadline is not started.
- **Size.** An answer is read as a stream and refused past :data:`MAX_ANSWER_BYTES` (a declared
  ``Content-Length`` beyond it is refused before reading); error answers are read up to
  :data:`MAX_ERROR_BYTES` only. JSON nested too deep for the parser is a malformed answer.
- **Secrets.** Every error message built here goes through
  :func:`collectors.redaction.scrub_secrets` with the client's API key, so an error that echoes the
  ``Authorization`` header or the key never carries it further.

Every answer's ``Date`` header is kept in :attr:`MoeGoClient.server_time`, for measuring the clock
skew between this host and MoeGo (see :mod:`collectors.skew`).
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterator, Mapping, Sequence

import httpcore
import httpx

from . import __version__
from .config import ConfigError, Settings
from .pacing import GateClosedPastDeadline, Pacer
from .models import MalformedMessage, RetryPolicy, Webhook, WebhookDelivery, format_timestamp
from .redaction import scrub_secrets
from .validate import PageGuard

__all__ = [
    "MoeGoError", "ApiError", "InvalidArgument", "Unauthenticated", "PermissionDenied", "NotFound",
    "AlreadyExists", "ResourceExhausted", "Internal", "Unavailable", "TransportError", "DeadlineExceeded",
    "PassBudgetExhausted", "MalformedResponse", "RetryConfig", "DeliveryPage", "RawDeliveryPage", "ServerTime", "MoeGoClient",
    "make_http_client", "make_client", "MAX_ANSWER_BYTES", "MAX_ERROR_BYTES", "DEFAULT_DEADLINE_S",
]

#: The most bytes of one answer read. A full ListWebhookDeliveries page is 500 entries; an entry is
#: about 1 KiB of fields and headers plus its request body and its response body, which MoeGo cuts at
#: 4 KiB (5.5 KiB as base64): 500 x ~16 KiB is about 8 MiB. 32 MiB leaves four times that.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
#: The most bytes of an error answer read: its one-line message is all that is used.
MAX_ERROR_BYTES = 64 * 1024
#: The default total deadline of one call, retries and waits included (``MOEGO_DEADLINE``).
DEFAULT_DEADLINE_S = 120.0


class MoeGoError(Exception):
    """Any failure talking to MoeGo; its message is one line saying what happened and what to do."""


class ApiError(MoeGoError):
    """MoeGo answered with an error status."""

    code_name = "UNKNOWN"

    def __init__(self, message: str, *, code: int, code_name: str, http_status: int, rpc: str,
                 retry_after: float | None = None) -> None:
        self.message = message
        self.code = code
        self.code_name = code_name
        self.http_status = http_status
        self.rpc = rpc
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        return f"MoeGo refused {self.rpc} ({self.code_name}, HTTP {self.http_status}): {self.message or 'no message'}"


class InvalidArgument(ApiError):
    """The request had a value MoeGo does not accept."""


class Unauthenticated(ApiError):
    """The API key is missing or wrong."""

    def _describe(self) -> str:
        return (f"MoeGo rejected the API key (UNAUTHENTICATED, HTTP {self.http_status}): "
                "check MOEGO_API_KEY or --api-key")


class PermissionDenied(ApiError):
    """The API key is valid but lacks the rights for this call."""

    def _describe(self) -> str:
        return (f"the API key may not call {self.rpc} (PERMISSION_DENIED): "
                "use a key with webhook rights in MoeGo's developer settings")


class NotFound(ApiError):
    """The webhook or delivery does not exist (any more)."""


class AlreadyExists(ApiError):
    """A webhook with this endpoint URL already exists."""


class ResourceExhausted(ApiError):
    """A rate or quota limit was reached."""

    def _describe(self) -> str:
        wait = f"; MoeGo asks to wait {self.retry_after:g}s" if self.retry_after else ""
        return (f"MoeGo is limiting {self.rpc} (RESOURCE_EXHAUSTED: {self.message or 'limit reached'}){wait}: "
                "try again later")


class Internal(ApiError):
    """MoeGo failed internally."""


class Unavailable(ApiError):
    """MoeGo is temporarily unavailable."""

    def _describe(self) -> str:
        return f"MoeGo is unavailable for {self.rpc} (HTTP {self.http_status}): {self.message or 'try again later'}"


class TransportError(MoeGoError):
    """No usable answer came back: the host could not be reached, or it did not answer in time."""


class DeadlineExceeded(TransportError):
    """The call did not finish within its total deadline."""


class PassBudgetExhausted(DeadlineExceeded):
    """The call was cut at the end of the collect pass's time budget."""


class MalformedResponse(MoeGoError):
    """MoeGo answered, but not with the JSON the contract describes (or more of it than any page can hold)."""


class NoWebhooksListed(MoeGoError):
    """MoeGo lists no webhook for this key although the archive tracks some: most likely the wrong key."""


_CODES: dict[int, tuple[str, type[ApiError]]] = {
    1: ("CANCELLED", ApiError),
    2: ("UNKNOWN", ApiError),
    3: ("INVALID_ARGUMENT", InvalidArgument),
    4: ("DEADLINE_EXCEEDED", ApiError),
    5: ("NOT_FOUND", NotFound),
    6: ("ALREADY_EXISTS", AlreadyExists),
    7: ("PERMISSION_DENIED", PermissionDenied),
    8: ("RESOURCE_EXHAUSTED", ResourceExhausted),
    13: ("INTERNAL", Internal),
    14: ("UNAVAILABLE", Unavailable),
    9: ("FAILED_PRECONDITION", ApiError),
    10: ("ABORTED", ApiError),
    11: ("OUT_OF_RANGE", ApiError),
    12: ("UNIMPLEMENTED", ApiError),
    15: ("DATA_LOSS", ApiError),
    16: ("UNAUTHENTICATED", Unauthenticated),
}
_HTTP_TO_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 501: 12, 502: 14, 503: 14, 504: 4}
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
# For calls that send a webhook, only answers that say the request was not acted on are retried:
# a 502/504 from a gateway may come after MoeGo already sent the event.
_RETRYABLE_STATUS_NOT_IDEMPOTENT = frozenset({429, 503})


@dataclass(frozen=True)
class RetryConfig:
    """How hard to try: attempts in all, and the exponential backoff between them (seconds)."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0


@dataclass(frozen=True)
class ServerTime:
    """MoeGo's clock as its last answer's ``Date`` header told it, and when (``time.monotonic()``) it arrived."""

    date: datetime
    received: float


@dataclass(frozen=True)
class DeliveryPage:
    """One page of ListWebhookDeliveries: its entries, the token that fetched it and the next one."""

    deliveries: list[WebhookDelivery]
    page_token: str
    next_page_token: str


@dataclass(frozen=True)
class RawDeliveryPage:
    """One page of ListWebhookDeliveries as MoeGo sent it: the envelope checked (a list of entries, a string
    token), the entries still decoded JSON. :meth:`parsed` checks and converts them."""

    items: list[Any]
    page_token: str
    next_page_token: str

    def parsed(self) -> DeliveryPage:
        """The page with its entries parsed; :class:`MalformedResponse` (naming the RPC) if one is malformed."""
        rpc = "ListWebhookDeliveries"
        return DeliveryPage(deliveries=[MoeGoClient._parse(rpc, WebhookDelivery.from_json, i) for i in self.items],
                            page_token=self.page_token, next_page_token=self.next_page_token)


def make_http_client(
    base_url: str,
    api_key: str,
    *,
    timeout_s: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The one ``httpx.Client`` for MoeGo: base URL, Basic auth with the key, JSON, timeouts set.

    Without a ``transport`` it goes through the proxies the environment names (:func:`proxy_mounts`), every
    connection bound by the running call's deadline.
    """
    token = base64.b64encode(api_key.encode()).decode("ascii")
    mounts = None if transport is not None else proxy_mounts()
    try:
        return httpx.Client(
            base_url=base_url,
            headers={
                "Authorization": f"Basic {token}",
                "Accept": "application/json",
                "User-Agent": f"moego-monitor/{__version__}",
            },
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport or deadline_transport(),
            mounts=mounts,
            follow_redirects=False,
        )
    except (httpx.InvalidURL, ValueError) as exc:
        shown = base_url.split("@", 1)[-1][:200]
        raise ConfigError(f"MoeGo base URL is not a valid URL: {shown!r} ({exc})") from None


def make_client(settings: Settings, *, transport: httpx.BaseTransport | None = None,
                retry: RetryConfig | None = None) -> "MoeGoClient":
    """A :class:`MoeGoClient` for the configured MoeGo (raises ``ConfigError`` without an API key)."""
    http = make_http_client(settings.base_url, settings.require_api_key(), timeout_s=settings.timeout_s,
                            transport=transport)
    return MoeGoClient(http, retry=retry or RetryConfig(), deadline_s=settings.deadline_s)


# -- the deadline at the socket ---------------------------------------------------------------------

#: The ``time.monotonic()`` by which the call running in this context must end (``None``: no deadline).
_CALL_END: ContextVar[float | None] = ContextVar("moego_call_end", default=None)


def _expired(end: float) -> bool:
    """True when the deadline ``end`` has passed (within the 50 ms a socket timeout may fire early)."""
    return time.monotonic() >= end - 0.05


def _clamp(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` shortened to what is left of the running call's deadline; ``expired`` when nothing is."""
    end = _CALL_END.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise expired("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the running call's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                     _clamp(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend, with every connection made by :class:`_DeadlineStream`."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_tcp(host, port, _clamp(timeout, httpcore.ConnectTimeout),
                                                       local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:  # pragma: no cover - not used
        return _DeadlineStream(self._inner.connect_unix_socket(path, _clamp(timeout, httpcore.ConnectTimeout),
                                                               socket_options))

    def sleep(self, seconds: float) -> None:  # pragma: no cover - used by httpcore's retries, which we do not enable
        self._inner.sleep(seconds)


def deadline_transport(proxy: str | None = None) -> httpx.HTTPTransport:
    """httpx's own transport, whose sockets honour the running call's deadline (see the module docstring);
    through the HTTP(S) proxy at ``proxy`` when given (the connection to the proxy is bounded alike).

    httpx does not take a network backend, so the pool's is wrapped in place: ``_pool`` and
    ``_network_backend`` are the one reach into private attributes, checked here and covered by
    the deadline tests against real loopback servers.
    """
    transport = httpx.HTTPTransport(proxy=proxy)
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.ConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx/httpcore version cannot take the deadline backend: pin httpx 0.27-0.28")
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return transport


#: Hosts never reached through a proxy: this machine (the sandbox), whatever ``NO_PROXY`` says.
_NEVER_PROXIED = ("all://127.0.0.1", "all://localhost", "all://[::1]")


def proxy_mounts() -> dict[str, httpx.BaseTransport | None]:
    """Transports for the proxies the environment names, as curl and httpx read them (``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), each a :func:`deadline_transport`; empty when none is set.

    Passing our own transport turns httpx's reading of the environment off, so it is done here, with httpx's
    own parser (``httpx._utils.get_environment_proxies``, checked like ``_pool`` above). Raises
    ``ConfigError`` in one line for a proxy that cannot be used (the URL is not shown: it may carry a password).
    """
    from httpx import _utils

    read = getattr(_utils, "get_environment_proxies", None)
    if read is None:
        raise RuntimeError("this httpx version cannot read proxies from the environment: pin httpx 0.27-0.28")
    mounts: dict[str, httpx.BaseTransport | None] = {}
    for pattern, url in read().items():
        if url is None:
            mounts[pattern] = None
            continue
        try:
            mounts[pattern] = deadline_transport(proxy=url)
        except (httpx.InvalidURL, ValueError, ImportError):
            variable = pattern.split("://", 1)[0].upper() + "_PROXY"
            raise ConfigError(f"the proxy in {variable} cannot be used: only http:// and https:// proxy URLs are "
                              f"supported; set {variable} to http://host:port, or unset it") from None
    if mounts:
        mounts.update({pattern: None for pattern in _NEVER_PROXIED})
    return mounts


def _interval(start: datetime | None, end: datetime | None) -> dict[str, str] | None:
    out = {}
    if start is not None:
        out["startTime"] = format_timestamp(start)
    if end is not None:
        out["endTime"] = format_timestamp(end)
    return out or None


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if seconds == seconds else None  # NaN is no hint
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _server_date(headers: httpx.Headers) -> datetime | None:
    """The ``Date`` header as an aware UTC datetime, or ``None`` when absent or not an HTTP date."""
    value = headers.get("Date")
    if not value or len(value) > 64:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(timezone.utc)


def _secrets_of(authorization: str) -> tuple[str, ...]:
    """The API key behind an ``Authorization: Basic`` value (and the value itself), for scrubbing."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic" or not token:
        return ()
    try:
        return (base64.b64decode(token, validate=True).decode("utf-8"), token)
    except (binascii.Error, ValueError):
        return (token,)


class _Answer:
    """An answer read in full within the bounds: status, headers and at most the allowed bytes."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: httpx.Headers, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content


@dataclass
class MoeGoClient:
    """One method per WebhookService RPC. Use as a context manager, or call :meth:`close`."""

    http: httpx.Client
    retry: RetryConfig = field(default_factory=RetryConfig)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    #: The most one call may take, retries and waits included.
    deadline_s: float = DEFAULT_DEADLINE_S
    #: ``time.monotonic()`` by which every call must end, whatever is left of ``deadline_s`` (a pass's budget).
    pass_deadline: float | None = None
    #: The most bytes of one (successful) answer read.
    max_answer_bytes: int = MAX_ANSWER_BYTES
    #: MoeGo's clock from the last answer's ``Date`` header (``None`` before one with a valid header).
    server_time: ServerTime | None = field(default=None, init=False)
    #: The pace shared by the workers of a collect pass (:mod:`collectors.pacing`): with one, a 429 pauses every
    #: call made through this client, not only the one that got it. ``None``: each call backs off on its own.
    pacer: Pacer | None = None

    def __post_init__(self) -> None:
        self._secrets = _secrets_of(self.http.headers.get("Authorization", ""))

    def scrub(self, text: str) -> str:
        """``text`` without this client's API key in any form (see :func:`collectors.redaction.scrub_secrets`)."""
        return scrub_secrets(text, self._secrets)

    def __enter__(self) -> "MoeGoClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self.http.close()

    # -- transport -------------------------------------------------------------------------------

    def _call(self, rpc: str, method: str, path: str, *, body: Any = None,
              params: Mapping[str, str] | None = None, idempotent: bool = True) -> dict[str, Any]:
        """Send one RPC, retrying what is safe to retry, all within the deadline; the decoded JSON object."""
        where = _public_url(self.http.base_url)
        end = time.monotonic() + self.deadline_s
        by_budget = self.pass_deadline is not None and self.pass_deadline <= end
        if by_budget:
            end = self.pass_deadline  # type: ignore[assignment]
        if _expired(end):
            raise self._late(rpc, where, by_budget)
        token = _CALL_END.set(end)
        answer: _Answer | None = None
        try:
            for attempt in range(1, self.retry.attempts + 1):
                last = attempt == self.retry.attempts
                pacer = self.pacer
                if pacer is not None:
                    try:
                        pacer.acquire(end, self.sleep)
                    except GateClosedPastDeadline:
                        if attempt > 1 and answer is not None:
                            raise self._error(rpc, answer) from None  # say what MoeGo said
                        raise ResourceExhausted(
                            "another call of this pass was told to wait past this call's deadline",
                            code=8, code_name="RESOURCE_EXHAUSTED", http_status=429, rpc=rpc) from None
                answered = False
                try:
                    answer = self._exchange(rpc, method, path, body, params, end, by_budget)
                    answered = answer.status_code < 400
                except httpx.TimeoutException as exc:
                    if _expired(end):
                        raise self._late(rpc, where, by_budget) from None
                    delay = self._backoff(attempt)
                    if idempotent and not last and time.monotonic() + delay < end:
                        self.sleep(delay)
                        continue
                    raise TransportError(self.scrub(
                        f"MoeGo at {where} did not answer {rpc} within {self.http.timeout.read}s: "
                        "try again, or raise --timeout"
                    )) from exc
                except httpx.TransportError as exc:
                    if _expired(end):
                        raise self._late(rpc, where, by_budget) from None
                    raise TransportError(self.scrub(
                        f"cannot reach MoeGo at {where} for {rpc} ({type(exc).__name__}: {exc}): "
                        "check MOEGO_BASE_URL and the network"
                    )) from exc
                finally:
                    if pacer is not None:
                        pacer.release(ok=answered)
                if answer.status_code == 429 and pacer is not None:
                    # Everyone pauses (Retry-After, else a jittered backoff), and fewer call at once.
                    pause = pacer.limited(_retry_after(answer.headers))
                    if last or pause > self.retry.max_retry_after or time.monotonic() + pause >= end:
                        raise self._error(rpc, answer)
                    continue  # the next attempt waits at the gate
                retryable = _RETRYABLE_STATUS if idempotent else _RETRYABLE_STATUS_NOT_IDEMPOTENT
                if answer.status_code in retryable and not last:
                    hinted = _retry_after(answer.headers)
                    if hinted is not None and hinted > self.retry.max_retry_after:
                        raise self._error(rpc, answer)
                    delay = hinted if hinted is not None else self._backoff(attempt)
                    if time.monotonic() + delay >= end:
                        raise self._error(rpc, answer)  # waiting would outlast the deadline: say what MoeGo said
                    self.sleep(delay)
                    continue
                if answer.status_code >= 400:
                    raise self._error(rpc, answer)
                return self._decode(rpc, answer)
            raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises
        finally:
            _CALL_END.reset(token)

    def _late(self, rpc: str, where: str, by_budget: bool) -> DeadlineExceeded:
        if by_budget:
            return PassBudgetExhausted(
                f"the collect pass used up its time budget (--budget, MOEGO_PASS_BUDGET) during {rpc}: "
                "the next pass resumes where this one stopped"
            )
        return DeadlineExceeded(self.scrub(
            f"MoeGo at {where} did not finish answering {rpc} within the {self.deadline_s:g}s deadline "
            "(--deadline, MOEGO_DEADLINE): try again; if it persists, check MOEGO_BASE_URL and the network"
        ))

    def _exchange(self, rpc: str, method: str, path: str, body: Any, params: Mapping[str, str] | None,
                  end: float, by_budget: bool) -> _Answer:
        """One HTTP exchange, its answer read as a stream within the size limit and the deadline."""
        where = _public_url(self.http.base_url)
        with self.http.stream(method, path, json=body, params=params) as response:
            date = _server_date(response.headers)
            if date is not None:
                self.server_time = ServerTime(date, time.monotonic())
            failed = response.status_code >= 400
            limit = MAX_ERROR_BYTES if failed else self.max_answer_bytes
            declared = response.headers.get("Content-Length", "")
            if not failed and declared.isdigit() and int(declared) > limit:
                raise self._too_large(rpc, limit)
            content = bytearray()
            for chunk in response.iter_bytes():
                content += chunk
                if len(content) > limit:
                    if failed:
                        del content[limit:]
                        break
                    raise self._too_large(rpc, limit)
                if _expired(end):
                    raise self._late(rpc, where, by_budget)
            return _Answer(response.status_code, response.headers, bytes(content))

    @staticmethod
    def _too_large(rpc: str, limit: int) -> MalformedResponse:
        return MalformedResponse(
            f"MoeGo's answer to {rpc} is larger than {limit / 1048576:g} MiB, more than any page the API can hold "
            "(500 entries, bodies cut at 4 KiB): nothing of it was used; check MOEGO_BASE_URL points at MoeGo's API"
        )

    def _backoff(self, attempt: int) -> float:
        """Full jitter: a random delay up to base * 2^(attempt-1), capped."""
        return self.rng.uniform(0, min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1)))

    @staticmethod
    def _decode(rpc: str, answer: _Answer) -> dict[str, Any]:
        try:
            data = json.loads(answer.content)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            why = "JSON nested too deep" if isinstance(exc, RecursionError) else "something that is not JSON"
            raise MalformedResponse(
                f"MoeGo answered {rpc} with {why} (HTTP {answer.status_code}): "
                "try again; if it persists, check MOEGO_BASE_URL points at MoeGo's API"
            ) from None
        if not isinstance(data, dict):
            raise MalformedResponse(f"MoeGo answered {rpc} with JSON that is not an object: try again")
        return data

    def _error(self, rpc: str, answer: _Answer) -> ApiError:
        code, message = _HTTP_TO_CODE.get(answer.status_code, 2), ""
        try:
            data = json.loads(answer.content)
            if isinstance(data, dict):
                if isinstance(data.get("code"), int) and not isinstance(data.get("code"), bool):
                    code = data["code"]
                message = str(data.get("message") or "")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            message = answer.content[:400].decode("utf-8", "replace")
        message = " ".join(self.scrub(message).split())[:300]
        name, cls = _CODES.get(code, ("UNKNOWN", ApiError))
        return cls(message, code=code, code_name=name, http_status=answer.status_code, rpc=rpc,
                   retry_after=_retry_after(answer.headers))

    @staticmethod
    def _parse(rpc: str, parse: Callable[[Any], Any], value: Any) -> Any:
        try:
            return parse(value)
        except MalformedMessage as exc:
            raise MalformedResponse(f"MoeGo's answer to {rpc} is malformed ({exc}): try again; report it if it persists") from exc

    @staticmethod
    def _list(rpc: str, data: Mapping[str, Any], key: str) -> list[Any]:
        items = data.get(key) or []
        if not isinstance(items, list):
            raise MalformedResponse(f"MoeGo's answer to {rpc} is malformed ({key} is not a list): try again")
        token = data.get("nextPageToken") or ""
        if not isinstance(token, str):
            raise MalformedResponse(f"MoeGo's answer to {rpc} is malformed (nextPageToken is not a string): try again")
        return items

    # -- webhooks --------------------------------------------------------------------------------

    def list_webhooks(self, *, page_size: int = 500, is_active: bool | None = None,
                      event_types: Sequence[str] | None = None) -> Iterator[Webhook]:
        """Every webhook of the account, following ``nextPageToken`` to the last page."""
        filt: dict[str, Any] = {}
        if is_active is not None:
            filt["isActive"] = is_active
        if event_types:
            filt["eventTypes"] = list(event_types)
        token = ""
        guard = PageGuard.for_webhooks(page_size)
        while True:
            body: dict[str, Any] = {"pagination": {"pageSize": page_size}}
            if token:
                body["pagination"]["pageToken"] = token
            if filt:
                body["filter"] = filt
            data = self._call("ListWebhooks", "POST", "/v1/webhooks:list", body=body)
            items = self._list("ListWebhooks", data, "webhooks")
            token = data.get("nextPageToken") or ""
            problem = guard.add(len(items), token)
            if problem:
                raise MalformedResponse(f"MoeGo's answer to ListWebhooks breaks the contract: {problem}: try again; "
                                        "report it to MoeGo if it persists")
            for item in items:
                yield self._parse("ListWebhooks", Webhook.from_json, item)
            if not token:
                return

    def get_webhook(self, webhook_id: str) -> Webhook:
        """GetWebhook."""
        return self._parse("GetWebhook", Webhook.from_json,
                           self._call("GetWebhook", "GET", f"/v1/webhooks/{_seg(webhook_id)}"))

    def create_webhook(self, endpoint_url: str, event_types: Sequence[str], *, secret_token: str | None = None,
                       is_active: bool | None = None, verify_ssl: bool | None = None,
                       headers: Mapping[str, Sequence[str]] | None = None,
                       retry_policy: RetryPolicy | None = None, content_type: str | None = None) -> Webhook:
        """CreateWebhook (not retried after a timeout)."""
        body = _webhook_body(endpoint_url, event_types, secret_token, is_active, verify_ssl, headers,
                             retry_policy, content_type)
        return self._parse("CreateWebhook", Webhook.from_json,
                           self._call("CreateWebhook", "POST", "/v1/webhooks", body=body, idempotent=False))

    def update_webhook(self, webhook_id: str, endpoint_url: str, event_types: Sequence[str], *,
                       secret_token: str | None = None, is_active: bool | None = None,
                       verify_ssl: bool | None = None, headers: Mapping[str, Sequence[str]] | None = None,
                       retry_policy: RetryPolicy | None = None, content_type: str | None = None) -> Webhook:
        """UpdateWebhook (a full replacement of the fields given; endpoint URL and event types required)."""
        body = _webhook_body(endpoint_url, event_types, secret_token, is_active, verify_ssl, headers,
                             retry_policy, content_type)
        body["id"] = webhook_id
        return self._parse("UpdateWebhook", Webhook.from_json,
                           self._call("UpdateWebhook", "PUT", f"/v1/webhooks/{_seg(webhook_id)}", body=body))

    def delete_webhook(self, webhook_id: str) -> None:
        """DeleteWebhook."""
        self._call("DeleteWebhook", "DELETE", f"/v1/webhooks/{_seg(webhook_id)}")

    # -- deliveries ------------------------------------------------------------------------------

    def iter_delivery_pages(self, webhook_id: str, *, page_size: int = 500,
                            event_types: Sequence[str] | None = None, success: bool | None = None,
                            start: datetime | None = None, end: datetime | None = None,
                            page_token: str = "") -> Iterator[DeliveryPage]:
        """ListWebhookDeliveries page by page, from ``page_token`` (or the first page) to the last.

        ``start`` is inclusive and ``end`` exclusive (MoeGo's ``deliveryTime`` interval).
        """
        for raw in self.iter_raw_delivery_pages(webhook_id, page_size=page_size, event_types=event_types,
                                                success=success, start=start, end=end, page_token=page_token):
            yield raw.parsed()

    def iter_raw_delivery_pages(self, webhook_id: str, *, page_size: int = 500,
                                event_types: Sequence[str] | None = None, success: bool | None = None,
                                start: datetime | None = None, end: datetime | None = None,
                                page_token: str = "") -> Iterator[RawDeliveryPage]:
        """:meth:`iter_delivery_pages` without parsing the entries (:meth:`RawDeliveryPage.parsed` does), so that a
        thread reading ahead (:class:`collectors.prefetch.Prefetched`) can request the next page while the caller
        parses this one. The envelope is checked here: a page that is not a list of entries, or that repeats its
        token, raises."""
        filt: dict[str, Any] = {}
        if event_types:
            filt["eventTypes"] = list(event_types)
        if success is not None:
            filt["success"] = success
        interval = _interval(start, end)
        if interval:
            filt["deliveryTime"] = interval
        token = page_token
        while True:
            body: dict[str, Any] = {"pagination": {"pageSize": page_size}, "webhookId": webhook_id}
            if token:
                body["pagination"]["pageToken"] = token
            if filt:
                body["filter"] = filt
            data = self._call("ListWebhookDeliveries", "POST", "/v1/webhook/deliveries:list", body=body)
            items = self._list("ListWebhookDeliveries", data, "deliveries")
            next_token = data.get("nextPageToken") or ""
            if next_token and next_token == token:
                raise MalformedResponse("MoeGo answered ListWebhookDeliveries with the same page token again "
                                        "(the listing would never end): try again; report it if it persists")
            yield RawDeliveryPage(items=items, page_token=token, next_page_token=next_token)
            if not next_token:
                return
            token = next_token

    def list_deliveries(self, webhook_id: str, **filters: Any) -> Iterator[WebhookDelivery]:
        """Every delivery of a webhook matching the filters of :meth:`iter_delivery_pages`."""
        for page in self.iter_delivery_pages(webhook_id, **filters):
            yield from page.deliveries

    def get_delivery(self, delivery_id: str) -> WebhookDelivery:
        """GetWebhookDelivery."""
        return self._parse("GetWebhookDelivery", WebhookDelivery.from_json,
                           self._call("GetWebhookDelivery", "GET", f"/v1/webhook/deliveries/{_seg(delivery_id)}"))

    def redeliver(self, delivery_id: str, webhook_id: str) -> WebhookDelivery:
        """RedeliverWebhookDelivery: MoeGo sends the event again; returns the new attempt's log entry."""
        data = self._call("RedeliverWebhookDelivery", "POST",
                          f"/v1/webhooks/deliveries/{_seg(delivery_id)}/redeliver",
                          params={"webhookId": webhook_id}, idempotent=False)
        return self._parse("RedeliverWebhookDelivery", WebhookDelivery.from_json, data)

    def trigger_test(self, webhook_id: str, event_type: str | None = None,
                     payload: bytes | None = None) -> WebhookDelivery:
        """TriggerTestWebhookDelivery: send a test event (``payload`` raw bytes, sent base64)."""
        body: dict[str, Any] = {}
        if event_type:
            body["eventType"] = event_type
        if payload:
            body["payload"] = base64.b64encode(payload).decode("ascii")
        data = self._call("TriggerTestWebhookDelivery", "POST", f"/v1/webhooks/{_seg(webhook_id)}/test",
                          body=body, idempotent=False)
        return self._parse("TriggerTestWebhookDelivery", WebhookDelivery.from_json, data)


def _public_url(url: httpx.URL) -> str:
    """The base URL as it may be printed: any ``user:password@`` removed."""
    return str(url.copy_with(userinfo=b"")).rstrip("/")


def _seg(value: str) -> str:
    """A path segment, percent-encoded so an id can never change the path."""
    from urllib.parse import quote

    return quote(value, safe="")


def _webhook_body(endpoint_url: str, event_types: Sequence[str], secret_token: str | None, is_active: bool | None,
                  verify_ssl: bool | None, headers: Mapping[str, Sequence[str]] | None,
                  retry_policy: RetryPolicy | None, content_type: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"endpointUrl": endpoint_url, "eventTypes": list(event_types)}
    if secret_token is not None:
        body["secretToken"] = secret_token
    if is_active is not None:
        body["isActive"] = is_active
    if verify_ssl is not None:
        body["verifySsl"] = verify_ssl
    if headers:
        body["headers"] = {name: {"values": list(values)} for name, values in headers.items()}
    if retry_policy is not None:
        body["retryPolicy"] = retry_policy.to_json()
    if content_type:
        body["contentType"] = content_type
    return body
