"""How deliveries end and what intake answers: shared by both buses (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeAlias

from openconnector.api.keys import ResourceKey
from openconnector.delivery.attempts import Attempt

__all__ = [
    "BusUnavailableError",
    "DeliveryClosedError",
    "DeliveryObserver",
    "DropReason",
    "EventTooLargeError",
    "FinalOutcome",
    "NullObserver",
    "OfferResult",
    "PauseCallback",
]

#: ``(target_key, reason, message)``: the target stopped delivering (410 or auto-pause). May be async.
PauseCallback: TypeAlias = Callable[[ResourceKey, str, str], Awaitable[None] | None]


class FinalOutcome(StrEnum):
    DELIVERED = "delivered"
    DEAD_LETTERED = "deadLettered"
    DROPPED = "dropped"


class DropReason(StrEnum):
    NO_DEAD_LETTER = "noDeadLetterSink"
    DEAD_LETTER_FAILED = "deadLetterFailed"
    QUEUE_FULL = "queueFull"
    TOO_LARGE = "tooLarge"
    UNKNOWN_TARGET = "unknownTarget"
    ENCODING_FAILED = "encodingFailed"
    SHUTDOWN = "shutdown"
    REMOVED = "removed"
    MAX_DELIVERIES = "maxDeliveries"  # JetStream gave up redelivering (the last attempt's process died)
    INTERNAL = "internalError"


class DeliveryClosedError(RuntimeError):
    """Intake after ``close()``, or ``submit`` to a target that is not installed (or was removed)."""


class EventTooLargeError(ValueError):
    """``submit`` of an event that can never fit its lane's ``queue_bytes`` or the dispatcher's budget."""


@dataclass(slots=True)
class OfferResult:
    """What :meth:`Dispatcher.offer` did: everything queued (``accepted``) or nothing.

    * ``queued``: deliveries queued (0 unless accepted).
    * ``skipped``: keys of the plan without an installed lane (never installed, removed, or being
      removed); nothing is queued for them, accepted or not.
    * ``dropped``: keys whose event could not be encoded; counted as dropped (``encodingFailed``) in
      that lane when the offer was accepted, so the caller need not retry for them.
    * ``full``: keys whose lane lacked room now (events or bytes); wait for room and offer again.
    * ``budget_needed``: bytes of the dispatcher's budget the plan needs, when the budget lacked room
      (else 0); wait for room and offer again.
    * ``too_large``: keys whose part of the plan can never fit (more events than ``queue_size`` or more
      bytes than ``queue_bytes``), or every key when the plan exceeds ``max_queued_bytes``: answer 413,
      don't wait.
    * ``detail``: one human-readable sentence on why not (empty when accepted); no secrets in it. Built
      from ``describe`` when read (a string, or a function of the figures at refusal time): a sender
      refused while it waits for room never pays for formatting it.

    Read-only by convention (not frozen: two are built per waiting sender, and a frozen dataclass costs
    a microsecond more each).
    """

    accepted: bool
    queued: int = 0
    skipped: list[ResourceKey] = field(default_factory=list)
    dropped: list[ResourceKey] = field(default_factory=list)
    full: list[ResourceKey] = field(default_factory=list)
    budget_needed: int = 0
    too_large: list[ResourceKey] = field(default_factory=list)
    describe: str | Callable[[], str] = field(default="", repr=False, compare=False)

    @property
    def detail(self) -> str:
        describe = self.describe
        return describe if isinstance(describe, str) else describe()


class DeliveryObserver(Protocol):
    """Metrics hooks (the gateway exports Prometheus from these). Called inline: keep them cheap."""

    def on_attempt(self, target_key: ResourceKey, attempt: Attempt) -> None: ...

    def on_outcome(
        self, target_key: ResourceKey, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None: ...


class BusUnavailableError(RuntimeError):
    """The durable bus could not store a request now (unreachable, stream full, publish timed out).

    ``retry_after`` is the suggested wait in seconds. Nothing of the request will be delivered.
    """

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class NullObserver:
    def on_attempt(self, target_key: ResourceKey, attempt: Attempt) -> None:
        pass

    def on_outcome(
        self, target_key: ResourceKey, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None:
        pass
