"""The sandbox's own records of webhooks and deliveries (independent of ``collectors.models``).

The double and the product's client must be free to disagree, so that tests catch the client's
mistakes: nothing here is shared with ``collectors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Headers", "RetryPolicyRecord", "WebhookRecord", "DeliveryRecord", "DEFAULT_RETRY_POLICY"]

#: HTTP headers as MoeGo models them, ``map<string, HeaderValues{values}>``, flattened to lists.
Headers = dict[str, list[str]]


@dataclass(frozen=True)
class RetryPolicyRecord:
    """How failed deliveries of a webhook are retried: ``initial_interval_ms * backoff_factor**n``."""

    max_retries: int = 3
    initial_interval_ms: int = 2000
    backoff_factor: int = 2
    retryable_http_codes: tuple[int, ...] = (408, 429, 500, 502, 503, 504)

    def delay_ms(self, retry_number: int) -> int:
        """The wait before retry ``retry_number`` (1-based)."""
        return int(self.initial_interval_ms * self.backoff_factor ** (retry_number - 1))


#: The policy of every webhook that does not set its own: 3 retries after 2 s, 4 s and 8 s.
DEFAULT_RETRY_POLICY = RetryPolicyRecord()


@dataclass
class WebhookRecord:
    """A webhook as the sandbox holds it; ``label``, ``profile`` and ``body_shape`` are sandbox-only annotations."""

    id: str
    idx: int
    endpoint_url: str
    event_types: list[str]
    created_ns: int
    updated_ns: int
    secret_token: str = ""
    content_type: str = "CONTENT_TYPE_JSON"
    retry_policy: RetryPolicyRecord = DEFAULT_RETRY_POLICY
    is_active: bool = True
    verify_ssl: bool = False
    headers: Headers = field(default_factory=dict)
    organizations: list[tuple[str, str]] = field(default_factory=list)
    label: str = ""
    profile: str = ""
    body_shape: str = "guide"  # sandbox-only: the shape of its bodies (sandbox.shapes), set when registered


@dataclass
class DeliveryRecord:
    """One delivery log entry with every field of the API's WebhookDelivery filled in."""

    id: str
    webhook_id: str
    event_type: str
    event_id: str
    request_url: str
    delivered_to: str
    request_headers: Headers
    request_body: bytes
    response_status: int
    response_headers: Headers
    response_body: bytes
    delivered_at_ns: int
    duration_ms: int
    success: bool
    error: str
    retry_count: int
    request_format: str
    response_format: str
