"""Events: the type table, the sandbox's identity (client and company ids) and event payloads.

An event is what MoeGo tells a webhook about; every delivery carries one event, and a redelivery
carries the same event again. Seeded events are synthesized from a single integer seed, so a
delivery log row needs to store only that seed to reproduce its body byte for byte.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from typing import Any

from sandbox.protojson import format_timestamp
from sandbox.shapes import shaped_body

__all__ = ["EVENT_CODES", "EVENT_NAMES", "Identity", "Event", "seeded_event", "new_event", "payload_for"]

#: Event type names and their enum numbers, as the contract lists them.
EVENT_CODES: dict[str, int] = {
    "HEALTH_CHECK": 1,
    "APPOINTMENT_CREATED": 100,
    "APPOINTMENT_UPDATED": 101,
    "APPOINTMENT_FINISHED": 102,
    "APPOINTMENT_CANCELED": 103,
    "APPOINTMENT_DELETED": 104,
    "CUSTOMER_CREATED": 300,
    "CUSTOMER_UPDATED": 301,
    "CUSTOMER_DELETED": 302,
    "CUSTOMER_COMPLIANCE_CHANGED": 303,
    "PET_CREATED": 400,
    "PET_UPDATED": 401,
    "PET_DELETED": 402,
}
EVENT_NAMES: dict[int, str] = {code: name for name, code in EVENT_CODES.items()}


@dataclass(frozen=True)
class Identity:
    """Who the sandbox is to its webhooks: the API client id and the (encoded) company id."""

    client_id: str
    company_id: str

    @classmethod
    def from_seed(cls, seed: int) -> Identity:
        """The same identity for the same seed."""
        digest = hashlib.sha256(f"moego-sandbox:{seed}".encode()).hexdigest()
        client = f"018e{digest[0:4]}-{digest[4:8]}-7{digest[8:11]}-a{digest[11:14]}-{digest[14:26]}"
        return cls(client_id=client, company_id=f"cmp_{digest[26:38]}")


@dataclass(frozen=True)
class Event:
    """One event: the JSON body's ``id``, ``type``, ``timestamp`` (ns), ``companyId`` and ``payload``."""

    id: str
    type: str
    timestamp_ns: int
    company_id: str
    payload: dict[str, Any]
    #: True for a payload someone supplied (a test event): sent as given, never mapped to an API object.
    as_given: bool = False

    def body(self, shape: str = "guide") -> dict[str, Any]:
        """The JSON object POSTed to the webhook's endpoint, in body ``shape`` (:mod:`sandbox.shapes`)."""
        envelope = {
            "id": self.id,
            "type": self.type,
            "timestamp": format_timestamp(self.timestamp_ns),
            "companyId": self.company_id,
        }
        return shaped_body(envelope, self.type, self.payload, shape, as_given=self.as_given)


_FIRST = ["Olivia", "Liam", "Emma", "Noah", "Ava", "Mia", "Lucas", "Sofia", "Ethan", "Chloe", "Maya", "Leo"]
_LAST = ["Garcia", "Smith", "Nguyen", "Johnson", "Brown", "Lee", "Martinez", "Patel", "Kim", "Davis"]
_PETS = ["Biscuit", "Luna", "Max", "Bella", "Charlie", "Daisy", "Milo", "Coco", "Rocky", "Nala", "Pepper"]
_BREEDS = {
    "DOG": ["Golden Retriever", "Poodle", "French Bulldog", "Labrador", "Shih Tzu", "Goldendoodle"],
    "CAT": ["Maine Coon", "Siamese", "Ragdoll", "Domestic Shorthair"],
}
_SERVICES = ["Full Groom", "Bath & Brush", "Nail Trim", "Puppy Cut", "De-shedding", "Teeth Cleaning"]


def _num_id(rng: random.Random) -> str:
    return str(rng.randrange(10_000_000, 99_999_999))


def payload_for(event_type: str, rng: random.Random, at_ns: int) -> dict[str, Any]:
    """A small, realistic payload for ``event_type``; deterministic for a given ``rng`` state."""
    if event_type == "HEALTH_CHECK":
        return {"validation": "hello world"}
    family, _, action = event_type.partition("_")
    if family == "APPOINTMENT":
        payload: dict[str, Any] = {"appointmentId": _num_id(rng), "customerId": _num_id(rng)}
        if action == "DELETED":
            return payload
        start_ns = at_ns + rng.randrange(1, 21) * 86_400_000_000_000 // 2
        start_ns -= start_ns % (900 * 1_000_000_000)
        payload.update(
            {
                "businessId": str(rng.randrange(100, 999)),
                "petIds": [_num_id(rng) for _ in range(rng.choice((1, 1, 1, 2)))],
                "service": rng.choice(_SERVICES),
                "startTime": format_timestamp(start_ns),
                "status": {
                    "CREATED": "UNCONFIRMED",
                    "UPDATED": rng.choice(("CONFIRMED", "UNCONFIRMED", "CHECKED_IN")),
                    "FINISHED": "FINISHED",
                    "CANCELED": "CANCELED",
                }.get(action, "CONFIRMED"),
            }
        )
        return payload
    if family == "CUSTOMER":
        payload = {"customerId": _num_id(rng)}
        if action == "DELETED":
            return payload
        if action == "COMPLIANCE":
            payload["compliance"] = {
                "vaccinations": rng.choice(("UP_TO_DATE", "EXPIRING_SOON", "EXPIRED")),
                "agreementSigned": rng.random() < 0.8,
            }
            return payload
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        payload.update(
            {
                "firstName": first,
                "lastName": last,
                "email": f"{first.lower()}.{last.lower()}{rng.randrange(1, 99)}@example.com",
                "phone": f"+1555{rng.randrange(1_000_000, 9_999_999)}",
            }
        )
        return payload
    if family == "PET":
        payload = {"petId": _num_id(rng), "customerId": _num_id(rng)}
        if action == "DELETED":
            return payload
        kind = "DOG" if rng.random() < 0.8 else "CAT"
        payload.update(
            {
                "name": rng.choice(_PETS),
                "petType": kind,
                "breed": rng.choice(_BREEDS[kind]),
                "weightLbs": round(rng.uniform(6, 80), 1) if kind == "DOG" else round(rng.uniform(6, 18), 1),
            }
        )
        return payload
    return {}


def _uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def seeded_event(seed: int, event_type: str, at_ns: int, company_id: str) -> Event:
    """The event a seeded log row stands for: same ``seed``, same event, byte for byte."""
    rng = random.Random(seed)
    return Event(_uuid4(rng), event_type, at_ns, company_id, payload_for(event_type, rng, at_ns))


def new_event(
    rng: random.Random, event_type: str, at_ns: int, company_id: str, payload: dict[str, Any] | None = None
) -> Event:
    """A fresh event (live traffic, tests); ``payload`` defaults to a synthesized one (a given one is sent as given)."""
    event_id = _uuid4(rng)
    return Event(
        event_id,
        event_type,
        at_ns,
        company_id,
        payload if payload is not None else payload_for(event_type, rng, at_ns),
        as_given=payload is not None,
    )
