"""Status aggregation: compile results and runtime counters -> the status body of each resource.

Pure: the operator patches these bodies into the status subresource, standalone mode serves them at
``GET /api/v1alpha1/status``. Conditions keep their ``lastTransitionTime`` until their status flips.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openconnector.delivery.health import rfc3339
from openconnector.resources import ResourceKey
from openconnector.routing.table import ResourceResult

# metav1.Condition allows 32768 characters of message.
MESSAGE_LIMIT = 32768

LastErrorRecord = tuple[float, int | None, str]  # (time, HTTP status or None, message)


def last_error_json(record: LastErrorRecord) -> dict[str, Any]:
    when, code, message = record
    error: dict[str, Any] = {"time": rfc3339(when), "message": message}
    if code is not None:
        error["statusCode"] = code
    return error


@dataclass
class ConsumerStats:
    """Ingress counters of one Consumer."""

    received: int = 0
    forwarded: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    last_received: float | None = None
    last_error: LastErrorRecord | None = None
    version: int = 0

    def record_received(self, now: float) -> None:
        self.received += 1
        self.last_received = now
        self.version += 1

    def record_forwarded(self) -> None:
        self.forwarded += 1
        self.version += 1

    def record_rejected(self, reason: str, status: int, message: str, now: float) -> None:
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1
        self.last_error = (now, status, message)
        self.version += 1

    def seed(self, status: Mapping[str, Any]) -> None:
        """Continue from the counters a previous process wrote (restart without double counting)."""
        self.received = int(status.get("received") or 0)
        self.forwarded = int(status.get("forwarded") or 0)
        self.rejected_by_reason = {str(k): int(v) for k, v in (status.get("rejectedByReason") or {}).items()}

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "received": self.received,
            "forwarded": self.forwarded,
            "rejected": sum(self.rejected_by_reason.values()),
            "rejectedByReason": dict(sorted(self.rejected_by_reason.items())),
        }
        if self.last_received is not None:
            out["lastReceived"] = rfc3339(self.last_received)
        if self.last_error is not None:
            out["lastError"] = last_error_json(self.last_error)
        return out


@dataclass
class EventStats:
    """Counters of one Event type."""

    received: int = 0
    emitted: int = 0
    refused: int = 0
    last_emitted: float | None = None
    version: int = 0

    def seed(self, status: Mapping[str, Any]) -> None:
        self.received = int(status.get("received") or 0)
        self.emitted = int(status.get("emitted") or 0)
        self.refused = int(status.get("refused") or 0)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"received": self.received, "emitted": self.emitted, "refused": self.refused}
        if self.last_emitted is not None:
            out["lastEmitted"] = rfc3339(self.last_emitted)
        return out


@dataclass
class SourceStats:
    requests: int = 0
    failures: int = 0
    last_error: LastErrorRecord | None = None
    version: int = 0

    def seed(self, status: Mapping[str, Any]) -> None:
        self.requests = int(status.get("requests") or 0)
        self.failures = int(status.get("failures") or 0)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, "failures": self.failures}
        if self.last_error is not None:
            out["lastError"] = last_error_json(self.last_error)
        return out


class ConditionBook:
    """Remembers conditions so that lastTransitionTime only moves when the status flips."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[tuple[ResourceKey, str], tuple[str, str]] = {}

    def condition(
        self, key: ResourceKey, type_: str, status: str, reason: str, message: str, generation: int
    ) -> dict[str, Any]:
        previous = self._seen.get((key, type_))
        if previous is None or previous[0] != status:
            previous = (status, rfc3339(self._clock()))
            self._seen[(key, type_)] = previous
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message[:MESSAGE_LIMIT],
            "lastTransitionTime": previous[1],
            "observedGeneration": generation,
        }

    def seed(self, key: ResourceKey, conditions: list[Mapping[str, Any]]) -> None:
        for cond in conditions:
            if "type" in cond and "status" in cond and "lastTransitionTime" in cond:
                self._seen[(key, str(cond["type"]))] = (str(cond["status"]), str(cond["lastTransitionTime"]))

    def forget(self, key: ResourceKey) -> None:
        for entry in [k for k in self._seen if k[0] == key]:
            del self._seen[entry]


def ready_condition(book: ConditionBook, result: ResourceResult) -> dict[str, Any]:
    return book.condition(
        result.key,
        "Ready",
        "True" if result.ready else "False",
        result.reason,
        result.message,
        result.generation,
    )
