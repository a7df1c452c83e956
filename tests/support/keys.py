"""Subscription keys as tests write them."""

from __future__ import annotations

from openconnector.api.keys import ResourceKey
from openconnector.api.kinds import EVENT_SUBSCRIPTION


def sub_key(path: str) -> ResourceKey:
    """The delivery-bus key of the EventSubscription ``namespace/name``."""
    namespace, _, name = path.partition("/")
    return ResourceKey(EVENT_SUBSCRIPTION.kind, namespace, name)
