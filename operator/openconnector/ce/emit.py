"""Building outbound NL GOV CloudEvents."""

from __future__ import annotations

import functools
import os
import threading
import time
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

__all__ = ["SequenceCounter", "build_checked_event", "build_event", "format_time", "new_event_id"]

# Random UUIDs (version 4) for event ids, as uuid.uuid4() draws them (os.urandom), but 16 bytes at a time
# from a pool refilled every 256 ids: one system call per 256 events instead of one each, and no UUID
# object per event. The pool is private to a process (emptied in a forked child) and to a lock.
_POOL_BYTES = 16 * 256
_pool = b""
_offset = _POOL_BYTES
_pool_lock = threading.Lock()
# The variant nibble of RFC 9562 (binary 10xx) from any hex digit, keeping its two random bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _empty_pool() -> None:
    global _pool, _offset
    _pool, _offset = b"", _POOL_BYTES


os.register_at_fork(after_in_child=_empty_pool)


def new_event_id() -> str:
    """A random (version 4) UUID in its canonical text form, like ``str(uuid.uuid4())``."""
    global _pool, _offset
    with _pool_lock:
        if _offset >= _POOL_BYTES:
            _pool, _offset = os.urandom(_POOL_BYTES), 0
        h = _pool[_offset : _offset + 16].hex()
        _offset += 16
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


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
        "id": event_id if event_id is not None else new_event_id(),
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


def build_checked_event(
    type: str, source: str, data: object, dataschema: str | None, sequence: int
) -> CloudEvent:
    """``build_event(type=, source=, data=, dataschema=, sequence=, validate=False)``, the same event
    (attributes in the same order) without its keyword handling and problem list: the gateway builds one
    per emitted event from a compiled Event, whose attributes were checked when it compiled."""
    if isinstance(sequence, bool) or not 1 <= sequence <= INT32_MAX:  # refused as build_event refuses it
        return build_event(type=type, source=source, data=data, dataschema=dataschema, sequence=sequence)
    attributes: dict[str, AttributeValue] = {
        "specversion": SPECVERSION,
        "id": new_event_id(),
        "source": source,
        "type": type,
        "time": _now_rfc3339(),
        "datacontenttype": JSON_CONTENT_TYPE,
    }
    if dataschema is not None:
        attributes["dataschema"] = dataschema
    attributes["sequence"] = str(sequence)
    attributes["sequencetype"] = SEQUENCE_TYPE_INTEGER
    return CloudEvent(attributes, data)


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
