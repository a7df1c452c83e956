"""An event encoded once per content mode (:class:`Prepared`): what both buses hold and send.

Pure: the encoder is injected; the default reencoder uses the CloudEvents codec. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, TypeVar

from openconnector.ce import AttributeValue, parse_http, to_binary, to_structured
from openconnector.delivery.signing import webhook_message_id
from openconnector.delivery.target import ContentMode

__all__ = [
    "DeliverableEvent",
    "E",
    "Encoder",
    "Prepared",
    "Reencoder",
    "cloudevents_reencoder",
    "prepare",
    "prepare_once",
    "prepare_or_reason",
]

# Memory around a held request beyond its raw bytes (measured with tracemalloc on CPython 3.11): the
# Prepared, its header dict, the job and queue slot; and per header the two str objects and dict slot.
_ITEM_OVERHEAD = 512
_HEADER_OVERHEAD = 112


class DeliverableEvent(Protocol):
    """What the engine needs of an event: id and source (``webhook-id``, attempt log), type (logs)."""

    @property
    def id(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def source(self) -> str: ...


E = TypeVar("E", bound=DeliverableEvent)

#: ``(event, mode) -> (headers, body)``: the CloudEvents codec, injected (Content-Type included).
Encoder: TypeAlias = Callable[[E, ContentMode], tuple[Mapping[str, str], bytes]]


@dataclass(slots=True)
class Prepared:
    """One event encoded for one content mode: what a lane holds instead of the event.

    ``headers`` and ``body`` are the encoder's output, sent as they are on every attempt (the engine adds
    the target's headers, credentials and signature per attempt). ``size`` is the memory accounted for it
    (see :func:`prepare`). Shared by every lane and attempt of a fan-out, so treat it as read-only (not
    frozen: a frozen dataclass costs a microsecond more per event to build).
    """

    id: str
    type: str
    source: str
    content_mode: ContentMode
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    size: int
    _webhook_id: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def webhook_id(self) -> str:
        """``webhook-id`` of signed deliveries (source and id hashed), derived on first use: most
        subscriptions are not signed."""
        webhook_id = self._webhook_id
        if webhook_id is None:
            webhook_id = self._webhook_id = webhook_message_id(self.source, self.id)
        return webhook_id


def prepare(event: E, mode: ContentMode, encoder: Encoder[E]) -> Prepared:
    """Encode ``event`` in ``mode`` with ``encoder``; exceptions of the encoder propagate.

    ``size`` = body + header names and values + id, type and source, plus a fixed overhead per request
    and per header for the Python objects around them.
    """
    encoded_headers, body = encoder(event, mode)
    # The encoder's own dict is kept (it made a new one); any other mapping is copied.
    headers = encoded_headers if type(encoded_headers) is dict else dict(encoded_headers)
    body = bytes(body)  # the same object when it is bytes already
    event_id, event_type, source = event.id, event.type, event.source
    size = _ITEM_OVERHEAD + len(body) + len(event_id) + len(event_type) + len(source)
    # One loop over the items: cheaper than two sums over maps (0.15 vs 0.35 us for structured's one header).
    for name, value in headers.items():
        size += len(name) + len(value) + _HEADER_OVERHEAD
    if type(mode) is not ContentMode:
        mode = ContentMode(mode)
    return Prepared(event_id, event_type, source, mode, headers, body, size)


#: ``(prepared, mode, extensions) -> (headers, body)``: the held request re-encoded in ``mode`` with
#: extension attributes added (dead letters: structured with ``ocerror*``; content-mode changes).
Reencoder: TypeAlias = Callable[
    [Prepared, ContentMode, Mapping[str, AttributeValue]], tuple[Mapping[str, str], bytes]
]


def cloudevents_reencoder(
    prepared: Prepared, mode: ContentMode, extensions: Mapping[str, AttributeValue]
) -> tuple[Mapping[str, str], bytes]:
    """The default :data:`Reencoder`: parse the held request with the strict CloudEvents codec, set
    ``extensions`` and encode in ``mode``. Raises ValueError when the held request is not one event."""
    events = parse_http("POST", prepared.headers, prepared.body).events
    if len(events) != 1:
        raise ValueError(f"the held request carries {len(events)} events, expected 1")
    event = events[0].with_attributes(**extensions) if extensions else events[0]
    return to_binary(event) if mode is ContentMode.BINARY else to_structured(event)


_MESSAGE_LIMIT = 300


def clip(text: str) -> str:
    """An error text bounded for status, logs and attempt records."""
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def prepare_or_reason(event: E, mode: ContentMode, encoder: Encoder[E]) -> Prepared | str:
    """``event`` prepared for ``mode``, or the reason its encoding failed (the delivery is dropped with
    it, never retried)."""
    try:
        return prepare(event, mode, encoder)
    except Exception as error:
        return f"encoding failed: {type(error).__name__}: {clip(str(error))}"


def prepare_once(
    cache: dict[tuple[int, ContentMode], Prepared | str], event: E, mode: ContentMode, encoder: Encoder[E]
) -> Prepared | str:
    """:func:`prepare_or_reason` once per request (``cache`` lives as long as the request)."""
    slot = (id(event), mode)
    prepared = cache.get(slot)
    if prepared is None:
        prepared = cache[slot] = prepare_or_reason(event, mode, encoder)
    return prepared
