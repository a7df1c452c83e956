"""Outbound delivery: fan-out of events to subscribers with retries, backoff, dead-lettering and health.

Pure parts (no I/O): :mod:`.durations`, :mod:`.policy`, :mod:`.signing`, :mod:`.health`, :mod:`.attempts`,
:mod:`.target` (a subscription's delivery configuration), :mod:`.prepared` (an event encoded per
content mode), :mod:`.outcomes` (how deliveries end, what intake answers) and :mod:`.durable` (the
JetStream naming and configuration rules). The bus seam is :mod:`.bus` (:class:`DeliveryBus`); its two
implementations are :mod:`.memory` (:class:`Dispatcher`, the default) and :mod:`.jetstream`. Both send
with :mod:`.sending` (aiohttp) and decide retries and dead letters with :mod:`.retry`. The aiohttp-based
modules are imported on first use of their names, so importing the pure parts (as ``routing/`` does)
never loads aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from openconnector.delivery.attempts import Attempt, AttemptLog, Destination
from openconnector.delivery.durations import parse_duration
from openconnector.delivery.health import HealthCondition, HealthConfig, HealthReason, SubscriptionHealth
from openconnector.delivery.outcomes import (
    BusUnavailableError,
    DeliveryClosedError,
    DeliveryObserver,
    DropReason,
    EventTooLargeError,
    FinalOutcome,
    OfferResult,
    PauseCallback,
)
from openconnector.delivery.policy import (
    BackoffPolicy,
    DeliveryPolicy,
    Outcome,
    backoff_delay,
    classify,
    parse_retry_after,
)
from openconnector.delivery.prepared import (
    DeliverableEvent,
    Encoder,
    Prepared,
    Reencoder,
    cloudevents_reencoder,
    prepare,
)
from openconnector.delivery.signing import decode_signing_secret, sign, signature_headers, webhook_message_id
from openconnector.delivery.target import DEFAULT_QUEUE_BYTES, ContentMode, DeliveryTarget, redact_url

if TYPE_CHECKING:
    from openconnector.delivery.memory import DEFAULT_IDLE_LANE_SECONDS, DEFAULT_MAX_QUEUED_BYTES, Dispatcher
    from openconnector.delivery.sending import ERROR_DATA_LIMIT

_LAZY = {
    "DEFAULT_IDLE_LANE_SECONDS": "openconnector.delivery.memory",
    "DEFAULT_MAX_QUEUED_BYTES": "openconnector.delivery.memory",
    "Dispatcher": "openconnector.delivery.memory",
    "ERROR_DATA_LIMIT": "openconnector.delivery.sending",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_IDLE_LANE_SECONDS",
    "DEFAULT_MAX_QUEUED_BYTES",
    "DEFAULT_QUEUE_BYTES",
    "ERROR_DATA_LIMIT",
    "Attempt",
    "AttemptLog",
    "BackoffPolicy",
    "BusUnavailableError",
    "ContentMode",
    "DeliverableEvent",
    "DeliveryClosedError",
    "DeliveryObserver",
    "DeliveryPolicy",
    "DeliveryTarget",
    "Destination",
    "Dispatcher",
    "DropReason",
    "Encoder",
    "EventTooLargeError",
    "FinalOutcome",
    "HealthCondition",
    "HealthConfig",
    "HealthReason",
    "OfferResult",
    "Outcome",
    "PauseCallback",
    "Prepared",
    "Reencoder",
    "SubscriptionHealth",
    "backoff_delay",
    "classify",
    "cloudevents_reencoder",
    "decode_signing_secret",
    "parse_duration",
    "parse_retry_after",
    "prepare",
    "redact_url",
    "sign",
    "signature_headers",
    "webhook_message_id",
]
