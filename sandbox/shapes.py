"""The shapes of a webhook body, as MoeGo's two documents describe it, and which webhook gets which.

- ``guide``: the integration guide's ``{"id", "type", "timestamp", "companyId", "payload": {...}}``;
- ``oneof``: MoeGo's proto (``moego.business.event.v1.Event``), whose payload is a ``oneof``: in
  proto3 JSON the event's object sits under its field name, ``healthCheck``, ``appointment``,
  ``onlineBooking``, ``customer`` or ``pet``, as that API's message (``"id"``, camelCase names,
  fields at their default value omitted, int64 as strings);
- ``oneof-base64``: the same field holding the standard base64 of that object's JSON (the guide types
  the payload as ``bytes``, "encoded in base64"; receivers written against the real MoeGo decode it
  when it arrives as a string);
- ``mixed``: each webhook has one of the three, as an account with older and newer integrations
  would: rotated over webhooks by their creation order, starting at a seed-chosen shape, so any three
  consecutive webhooks hold all three shapes.

A webhook's shape is fixed when it is registered (:func:`resolve_shape`) and used for its seeded
history, its live traffic, tests and redeliveries alike. Signatures are over the exact bytes sent.
"""

from __future__ import annotations

import base64
import json
from typing import Any

__all__ = [
    "BODY_SHAPES",
    "WIRE_SHAPES",
    "DEFAULT_BODY_SHAPE",
    "resolve_shape",
    "oneof_field",
    "oneof_object",
    "shaped_body",
]

#: What ``--body-shape`` accepts.
BODY_SHAPES: tuple[str, ...] = ("guide", "oneof", "oneof-base64", "mixed")
#: The shapes a single webhook can have (``mixed`` picks among these).
WIRE_SHAPES: tuple[str, ...] = ("guide", "oneof", "oneof-base64")
#: The sandbox's default: see sandbox/README.md ("Body shapes") for why.
DEFAULT_BODY_SHAPE = "mixed"

_FAMILY_FIELDS = {
    "HEALTH": "healthCheck",
    "APPOINTMENT": "appointment",
    "ONLINE": "onlineBooking",
    "CUSTOMER": "customer",
    "PET": "pet",
}


def resolve_shape(body_shape: str, seed: int, idx: int) -> str:
    """The wire shape of the webhook with compact index ``idx`` (1-based) under option ``body_shape``."""
    if body_shape not in BODY_SHAPES:
        raise ValueError(f"body shape: one of {', '.join(BODY_SHAPES)}, not {body_shape!r}")
    if body_shape != "mixed":
        return body_shape
    return WIRE_SHAPES[(idx - 1 + seed) % len(WIRE_SHAPES)]


def oneof_field(event_type: str) -> str | None:
    """The ``Event.payload`` oneof field of ``event_type`` (``appointment`` for ``APPOINTMENT_*``); None if unknown."""
    return _FAMILY_FIELDS.get(event_type.partition("_")[0])


def _proto3(value: Any) -> Any:
    """``value`` with proto3 JSON's defaults left out (``""``, ``0``, ``false``, empty lists and objects)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _proto3(item)
            if item is None or item is False or item in ("", [], {}) or (type(item) is int and item == 0):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [_proto3(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # Go's protojson writes a whole double without a fraction: 65, not 65.0
    return value


def _renamed(payload: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    return {renames.get(key, key): value for key, value in payload.items()}


def oneof_object(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The API object MoeGo's proto carries for an event whose guide-shaped payload is ``payload``.

    Appointments, customers and pets are their API messages (``id`` rather than ``appointmentId``,
    ``type`` for a pet's species, ``weight`` as ``{value, unit}``); a deletion carries only
    ``{"id", "deleted": true}``. Keys the mapping does not know are kept as they are.
    """
    family, _, action = event_type.partition("_")
    if family == "APPOINTMENT":
        obj = _renamed(payload, {"appointmentId": "id"})
        if "service" in obj:
            obj["services"] = [{"name": obj.pop("service")}]
    elif family == "CUSTOMER":
        obj = _renamed(payload, {"customerId": "id", "phone": "phoneNumber"})
    elif family == "PET":
        obj = _renamed(payload, {"petId": "id", "petType": "type"})
        if "weightLbs" in obj:
            obj["weight"] = {"value": obj.pop("weightLbs"), "unit": "lb"}
    else:
        obj = dict(payload)
    if action == "DELETED" and "id" in obj:
        obj = {"id": obj["id"], "deleted": True}
    return _proto3(obj)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def shaped_body(
    envelope: dict[str, Any], event_type: str, payload: dict[str, Any], shape: str, *, as_given: bool = False
) -> dict[str, Any]:
    """The JSON object POSTed: ``envelope`` (``id``, ``type``, ``timestamp``, ``companyId``) plus the payload in ``shape``.

    ``as_given``: the payload is someone's own object (TriggerTestWebhookDelivery's ``payload``), put
    under the oneof field as it is rather than mapped by :func:`oneof_object`. An event type without a
    oneof field (unknown to the sandbox) keeps the guide's ``payload``.
    """
    field = oneof_field(event_type)
    if shape == "guide" or field is None:
        return {**envelope, "payload": payload}
    obj = payload if as_given else oneof_object(event_type, payload)
    if shape == "oneof":
        return {**envelope, field: obj}
    if shape == "oneof-base64":
        return {**envelope, field: base64.b64encode(_compact(obj).encode("utf-8")).decode("ascii")}
    raise ValueError(f"not a wire shape: {shape!r}")
