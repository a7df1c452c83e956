"""Outbound delivery: fan-out of events to subscribers with retries, backoff, dead-lettering and health.

Pure parts (no I/O): :mod:`.durations`, :mod:`.policy`, :mod:`.signing`, :mod:`.health`, :mod:`.attempts`.
The asyncio/aiohttp engine is :mod:`.engine` (:class:`Dispatcher`). The event encoder is injected; the
default reencoder (dead letters, content-mode changes) uses :mod:`openconnector.ce`, the only other
part of ``openconnector`` this package imports.
"""

from openconnector.delivery.attempts import Attempt, AttemptLog, Destination
from openconnector.delivery.durations import parse_duration
from openconnector.delivery.engine import (
    DEFAULT_IDLE_LANE_SECONDS,
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_QUEUE_BYTES,
    ERROR_DATA_LIMIT,
    ContentMode,
    DeliverableEvent,
    DeliveryClosedError,
    DeliveryObserver,
    DeliveryTarget,
    Dispatcher,
    DropReason,
    Encoder,
    EventTooLargeError,
    FinalOutcome,
    OfferResult,
    PauseCallback,
    Prepared,
    Reencoder,
    cloudevents_reencoder,
    prepare,
    redact_url,
)
from openconnector.delivery.health import HealthCondition, HealthConfig, HealthReason, SubscriptionHealth
from openconnector.delivery.policy import (
    BackoffPolicy,
    DeliveryPolicy,
    Outcome,
    backoff_delay,
    classify,
    parse_retry_after,
)
from openconnector.delivery.signing import decode_signing_secret, sign, signature_headers, webhook_message_id

__all__ = [
    "DEFAULT_IDLE_LANE_SECONDS",
    "DEFAULT_MAX_QUEUED_BYTES",
    "DEFAULT_QUEUE_BYTES",
    "ERROR_DATA_LIMIT",
    "Attempt",
    "AttemptLog",
    "BackoffPolicy",
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
