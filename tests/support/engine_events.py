"""A minimal event and encoder for tests that drive the delivery engine (``Dispatcher``) directly, without
the CloudEvents codec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from openconnector.delivery import ContentMode


@dataclass(frozen=True)
class Event:
    id: str
    type: str = "nl.vng.zgw.zaken.zaak.created"
    source: str = "urn:example:test"


def encode(event: Event, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    """JSON carrying the event's id, the same in every content mode."""
    return {"Content-Type": "application/json"}, b'{"id": "%s"}' % event.id.encode()
