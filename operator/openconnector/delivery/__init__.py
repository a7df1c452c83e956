"""Outbound delivery: fan-out of events to subscribers with retries, backoff, dead-lettering and health.

Pure parts (no I/O): :mod:`.durations`, :mod:`.policy`, :mod:`.signing`, :mod:`.health`, :mod:`.attempts`.
The asyncio/aiohttp engine is :mod:`.engine` (:class:`Dispatcher`). The CloudEvents codec is injected,
not imported, so this package depends on nothing else in ``openconnector``.
"""

from openconnector.delivery.attempts import Attempt, AttemptLog, Destination
from openconnector.delivery.durations import parse_duration
from openconnector.delivery.engine import (
    ERROR_DATA_LIMIT,
    ContentMode,
    DeadLetterTransform,
    DeliverableEvent,
    DeliveryClosedError,
    DeliveryObserver,
    DeliveryTarget,
    Dispatcher,
    DropReason,
    Encoder,
    FinalOutcome,
    PauseCallback,
    SupportsExtensions,
    extensions_transform,
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
from openconnector.delivery.signing import decode_signing_secret, sign, signature_headers

__all__ = [
    "ERROR_DATA_LIMIT",
    "Attempt",
    "AttemptLog",
    "BackoffPolicy",
    "ContentMode",
    "DeadLetterTransform",
    "DeliverableEvent",
    "DeliveryClosedError",
    "DeliveryObserver",
    "DeliveryPolicy",
    "DeliveryTarget",
    "Destination",
    "Dispatcher",
    "DropReason",
    "Encoder",
    "FinalOutcome",
    "HealthCondition",
    "HealthConfig",
    "HealthReason",
    "Outcome",
    "PauseCallback",
    "SubscriptionHealth",
    "SupportsExtensions",
    "backoff_delay",
    "classify",
    "decode_signing_secret",
    "extensions_transform",
    "parse_duration",
    "parse_retry_after",
    "redact_url",
    "sign",
    "signature_headers",
]
