"""Specs and CloudEvents the operator tests use (NL GOV conformant)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

ZAAK_CREATED = "nl.vng.zgw.zaken.zaak.created"
ZAAK_UPDATED = "nl.vng.zgw.zaken.zaak.updated"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:openconnector"


def event_spec(type_: str = ZAAK_CREATED) -> dict[str, Any]:
    return {"name": "Zaak", "type": type_, "source": SOURCE}


def subscription_spec(endpoint: str, type_: str = ZAAK_CREATED, **extra: Any) -> dict[str, Any]:
    """Delivers at once, without retries, so a test never waits on a backoff."""
    return {
        "eventType": type_,
        "endpoint": endpoint,
        "delivery": {"retries": 0, "timeout": "PT5S"},
        **extra,
    }


def cloud_event(type_: str = ZAAK_CREATED, data: Any = None, *, id_: str | None = None) -> bytes:
    """A structured-mode CloudEvent (NL GOV profile)."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": id_ or str(uuid.uuid4()),
            "type": type_,
            "source": SOURCE,
            "datacontenttype": "application/json",
            "data": data if data is not None else {"zaak": "Z-1"},
        }
    )
