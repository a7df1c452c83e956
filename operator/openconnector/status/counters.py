"""Runtime counters of Consumers, Events and Sources, and their status fields (camelCase).

Pure: the operator patches these fields into the status subresource (one shard per replica),
standalone mode serves them at ``GET /api/v1alpha1/status``. A subscription's counters are its lane's
health (``delivery/health.py``): they are delivery logic, updated by the delivery engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openconnector.status.timefmt import rfc3339

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

    def record_received(self, now: float) -> None:
        self.received += 1
        self.last_received = now

    def record_forwarded(self) -> None:
        self.forwarded += 1

    def record_rejected(self, reason: str, status: int, message: str, now: float) -> None:
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1
        self.last_error = (now, status, message)

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
    """Counters of one Event type.

    ``received``/``refused``: events of this type accepted or refused on ``/events``. ``published``:
    events of this type published in the Event's namespace for fan-out, whatever brought them (``/events``
    or a Consumer). The status calls it ``emitted`` (and its time ``lastEmitted``): that field name is
    API and stays.
    """

    received: int = 0
    published: int = 0
    refused: int = 0
    last_published: float | None = None

    def record_published(self, now: float) -> None:
        self.published += 1
        self.last_published = now

    def seed(self, status: Mapping[str, Any]) -> None:
        self.received = int(status.get("received") or 0)
        self.published = int(status.get("emitted") or 0)
        self.refused = int(status.get("refused") or 0)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"received": self.received, "emitted": self.published, "refused": self.refused}
        if self.last_published is not None:
            out["lastEmitted"] = rfc3339(self.last_published)
        return out


@dataclass
class SourceStats:
    requests: int = 0
    failures: int = 0
    last_error: LastErrorRecord | None = None

    def seed(self, status: Mapping[str, Any]) -> None:
        self.requests = int(status.get("requests") or 0)
        self.failures = int(status.get("failures") or 0)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, "failures": self.failures}
        if self.last_error is not None:
            out["lastError"] = last_error_json(self.last_error)
        return out
