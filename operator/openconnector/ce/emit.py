"""Building outbound NL GOV CloudEvents."""

from __future__ import annotations

import functools
import time
import uuid
from datetime import UTC, datetime

from openconnector.ce.codec import (
    INT32_MAX,
    JSON_CONTENT_TYPE,
    SPECVERSION,
    AttributeValue,
    CloudEvent,
    CloudEventError,
    Problem,
    validate_event,
)
from openconnector.ce.nlgov import SEQUENCE_TYPE_INTEGER

__all__ = ["SequenceCounter", "build_event", "format_time"]


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z` and millisecond precision, e.g. 2024-06-15T10:30:00.123Z."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the event time must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=4)
def _second_prefix(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _now_rfc3339() -> str:
    """The current time as :func:`format_time` writes it; the seconds part is formatted once a second."""
    now = time.time()
    second = int(now)
    return f"{_second_prefix(second)}.{int((now - second) * 1000):03d}Z"


def build_event(
    *,
    type: str,
    source: str,
    data: object,
    dataschema: str | None = None,
    subject: str | None = None,
    dataref: str | None = None,
    event_id: str | None = None,
    sequence: int | None = None,
    now: datetime | None = None,
    validate: bool = True,
) -> CloudEvent:
    """A new event with a JSON payload, valid per CloudEvents 1.0.2 (raises CloudEventError if not).

    `event_id` is the persistent id of the data when there is one (NL GOV); otherwise a UUID4 is
    drawn. `time` is when the event is recorded (`now`, default the current time). `data=None`
    sends no data. With `sequence`, `sequencetype` is "Integer". The result passes `check_nlgov`
    whenever `type` and `source` follow the profile. `validate=False` skips the attribute checks for
    callers whose attributes were validated already (the gateway's compiled Events).
    """
    attributes: dict[str, AttributeValue] = {
        "specversion": SPECVERSION,
        "id": event_id if event_id is not None else str(uuid.uuid4()),
        "source": source,
        "type": type,
        "time": format_time(now) if now is not None else _now_rfc3339(),
        "datacontenttype": JSON_CONTENT_TYPE,
    }
    if dataschema is not None:
        attributes["dataschema"] = dataschema
    if subject is not None:
        attributes["subject"] = subject
    if dataref is not None:
        attributes["dataref"] = dataref
    problems: list[Problem] = []
    if sequence is not None:
        if isinstance(sequence, bool) or not 1 <= sequence <= INT32_MAX:
            problems.append(Problem("sequence", f"sequence: must be from 1 to {INT32_MAX}, got {sequence!r}"))
        attributes["sequence"] = str(sequence)
        attributes["sequencetype"] = SEQUENCE_TYPE_INTEGER
    event = CloudEvent(attributes, data)
    if validate:
        problems.extend(validate_event(event))
    if problems:
        raise CloudEventError(problems)
    return event


class SequenceCounter:
    """Per-key `sequencetype: Integer` counter: 1, 2, … 2^31-1, then 1 again.

    Not persistent; seed it from stored state with `start` (key → last value handed out).
    """

    __slots__ = ("_last",)

    def __init__(self, start: dict[str, int] | None = None) -> None:
        self._last: dict[str, int] = {}
        for key, value in (start or {}).items():
            if not 0 <= value <= INT32_MAX:
                raise ValueError(f"sequence for {key!r} must be from 0 to {INT32_MAX}, got {value}")
            self._last[key] = value

    def next(self, key: str) -> int:
        value = self._last.get(key, 0) + 1
        if value > INT32_MAX:
            value = 1
        self._last[key] = value
        return value

    def current(self, key: str) -> int:
        """The last value handed out for `key` (0 before the first)."""
        return self._last.get(key, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._last)
