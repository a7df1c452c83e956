"""The JetStream bus's rules, as pure functions: names, message ids, consumer settings, NAK delays.

Nothing here does I/O, so the rules are unit-tested without a server (``tests/unit/test_durable.py``).

* **Subjects and consumers.** One stream holds every delivery; a delivery of an event to subscription
  ``namespace/name`` is one message on ``<prefix>.d.<namespace>.<name>`` (tokens escaped, see
  :func:`escape_token`), and each subscription has one durable consumer filtered on its subject. Every
  name comes from the subscription's key through :func:`subscription_names`.
* **Message ids.** The last message a request publishes carries ``Nats-Msg-Id`` =
  :func:`request_msg_id` of the request's deliveries: (namespace, source, id, subscription) of each,
  hashed. A sender's retry of the same request within the stream's duplicate window is therefore
  recognised and stored once (ids are only unique per source, and one event reaches several
  subscriptions, hence all four parts).
* **Consumer settings** (:func:`consumer_settings`): AckWait = per-attempt timeout + margin (an attempt
  whose process died is redelivered after it), MaxDeliver = retries + 2 (the extra delivery only ever
  finishes an event whose last attempt was cut off by a crash: it is dead-lettered or dropped, never
  silently left), MaxAckPending = ``maxConcurrency`` (a bound across every gateway process).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from openconnector.api.keys import ResourceKey
from openconnector.api.kinds import EVENT_SUBSCRIPTION
from openconnector.delivery.attempts import Attempt, Destination
from openconnector.delivery.prepared import Prepared
from openconnector.delivery.target import DELIVERY_MODES, ContentMode, DeliveryTarget

__all__ = [
    "ACK_WAIT_MARGIN",
    "META_HEADER",
    "MSG_ID_HEADER",
    "ConsumerSettings",
    "SubscriptionNames",
    "attempt_from_record",
    "attempt_to_record",
    "attempts_from_record",
    "attempts_to_record",
    "consumer_name",
    "consumer_settings",
    "decode_meta",
    "delivery_subject",
    "encode_meta",
    "escape_token",
    "nak_delay",
    "request_msg_id",
    "subscription_key_from_path",
    "subscription_names",
    "suspension_fingerprint",
]

#: Seconds added to the per-attempt timeout for AckWait: time to read the answer and record it.
ACK_WAIT_MARGIN = 5.0
MSG_ID_HEADER = "Nats-Msg-Id"
#: The held request's attributes and HTTP headers (JSON, ASCII); the message body is the HTTP body.
META_HEADER = "Oc-Meta"
_SAFE = re.compile(r"[A-Za-z0-9-]")


@functools.lru_cache(maxsize=8192)  # per message and attempt, over a few subscription names
def escape_token(text: str) -> str:
    """``text`` as one NATS subject token / consumer-name part: letters, digits and ``-`` as they are,
    everything else (``.``, ``/``, ``_``, non-ASCII) as ``_`` + hex of its UTF-8 bytes. Injective."""
    out: list[str] = []
    for char in text:
        if _SAFE.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out) or "_"


class SubscriptionNames(NamedTuple):
    """What a subscription is called in NATS (see :func:`subscription_names`)."""

    #: ``namespace/name``: the subscription's part of :func:`request_msg_id`, the message log's ``key``.
    path: str
    #: ``path`` as one token: consumer-name part, suspension KV key, attempt and message-log subject token.
    token: str
    #: ``<namespace>.<name>``, each escaped: the tail of the delivery subject.
    subject_tail: str
    #: The durable consumer's name.
    consumer: str


@functools.lru_cache(maxsize=8192)  # per message and attempt, over a few subscriptions
def subscription_names(key: ResourceKey) -> SubscriptionNames:
    """The one place a subscription's :class:`ResourceKey` becomes names in NATS.

    The names are exactly those of the gateways that keyed subscriptions by ``"namespace/name"``
    strings (the kind is not part of them, a subscription's key always has the same kind): a running
    stream's subjects, consumers, suspension entries, attempt and message logs and its duplicate
    window stay valid across an upgrade. Change them only with a migration.
    """
    path = key.namespaced_name
    token = escape_token(path)
    return SubscriptionNames(
        path=path,
        token=token,
        subject_tail=f"{escape_token(key.namespace)}.{escape_token(key.name)}",
        consumer="sub_" + token,
    )


def subscription_key_from_path(path: str) -> ResourceKey:
    """The key of a subscription named by :attr:`SubscriptionNames.path` in a stored message."""
    namespace, _, name = path.partition("/")
    return ResourceKey(EVENT_SUBSCRIPTION.kind, namespace, name)


def delivery_subject(prefix: str, key: ResourceKey) -> str:
    """The subject of subscription ``key`` under ``prefix``."""
    return f"{prefix}.d.{subscription_names(key).subject_tail}"


def consumer_name(key: ResourceKey) -> str:
    """The durable consumer of subscription ``key``."""
    return subscription_names(key).consumer


def request_msg_id(deliveries: Iterable[tuple[str, str, str, str]]) -> str:
    """``Nats-Msg-Id`` of a request: SHA-256 over its (namespace, source, id, subscription) tuples.

    The order is irrelevant (sorted), so the same request recomputed from the same table gets the same
    id. Each part is length-prefixed, so no choice of strings makes two different requests collide.
    """
    chunks: list[bytes] = []
    for part in sorted(set(deliveries)):
        for text in part:
            data = text.encode("utf-8", "surrogatepass")
            chunks.append(len(data).to_bytes(4, "big"))
            chunks.append(data)
    # One digest of the joined parts: the same as one update per part, in one call.
    return "oc-" + hashlib.sha256(b"".join(chunks)).hexdigest()[:48]


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """The JetStream consumer settings a target implies (seconds; see the module docstring)."""

    ack_wait: float
    max_deliver: int
    max_ack_pending: int


def consumer_settings(target: DeliveryTarget) -> ConsumerSettings:
    policy = target.policy
    return ConsumerSettings(
        ack_wait=policy.timeout + ACK_WAIT_MARGIN,
        max_deliver=policy.retries + 2,
        max_ack_pending=target.max_concurrency,
    )


def nak_delay(delay: float) -> float:
    """The NAK delay for a retry ``delay`` seconds away: never negative, at least a millisecond (a
    NAK without delay is redelivered at once, which is not what a backoff of 0.0004 s means either)."""
    return max(delay, 0.001)


def suspension_fingerprint(target: DeliveryTarget) -> str:
    """What a suspension (410, auto-pause) is tied to: the delivery configuration, without secrets.
    A suspension stored for another configuration no longer applies (the spec changed meanwhile)."""
    policy = target.policy
    document = {
        "url": target.url,
        "method": target.method,
        "mode": target.content_mode.value,
        "policy": [policy.retries, policy.backoff_policy.value, policy.backoff_delay, policy.backoff_max],
        "timeout": policy.timeout,
        "deadLetter": policy.dead_letter,
        "health": repr(target.health),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32]


def encode_meta(prepared: Prepared) -> str:
    """The ``Oc-Meta`` header of a delivery: compact JSON in ASCII (a NATS header value)."""
    document = {
        "id": prepared.id,
        "type": prepared.type,
        "source": prepared.source,
        "mode": prepared.content_mode.value,
        "headers": dict(prepared.headers),
    }
    try:
        encoded = orjson.dumps(document)
    except TypeError:  # lone surrogates
        encoded = b""
    # The common case: the same text json.dumps writes, faster. DEL (0x7f) is ASCII but json.dumps
    # escapes it (and a raw control character does not belong in a header value): json.dumps writes it.
    if encoded and encoded.isascii() and b"\x7f" not in encoded:
        return encoded.decode("ascii")
    return json.dumps(document, separators=(",", ":"))


_DELIVERY_MODES = {mode.value: mode for mode in DELIVERY_MODES}


def decode_meta(meta: str, body: bytes) -> Prepared:
    """The held request back from a message; ValueError when the meta header is not ours."""
    try:
        try:
            document = orjson.loads(meta)
        except orjson.JSONDecodeError:
            document = json.loads(meta)  # what orjson refuses but json.dumps can write (lone surrogates)
        raw = document["headers"]
        if type(raw) is dict and all(type(value) is str for value in raw.values()):
            headers = raw  # what we write: text values (and a JSON object's names are text)
        else:
            headers = {str(k): str(v) for k, v in dict(raw).items()}
        event_id, event_type, source = str(document["id"]), str(document["type"]), str(document["source"])
        value = document["mode"]
        mode = _DELIVERY_MODES.get(value) if type(value) is str else None
        if mode is None:  # not one of ours: the general way, and its error
            mode = ContentMode(value)
            if mode not in DELIVERY_MODES:
                raise ValueError(f"no delivery is sent in {mode} mode")
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a delivery message: {type(error).__name__}") from None
    return Prepared(
        id=event_id,
        type=event_type,
        source=source,
        content_mode=mode,
        headers=headers,
        body=body,
        size=len(body),
    )


def _attempt_fields(attempt: Attempt) -> dict[str, Any]:
    return {
        "r": attempt.request_id,
        "e": attempt.event_id,
        "a": attempt.attempt,
        "t": attempt.time,
        "s": attempt.status_code,
        "l": attempt.latency_ms,
        "x": attempt.error,
        "o": attempt.outcome,
        "d": attempt.destination.value,
        "n": attempt.retry_in,
    }


def _attempt_from_fields(record: Mapping[str, Any]) -> Attempt:
    return Attempt(
        request_id=str(record["r"]),
        event_id=str(record["e"]),
        attempt=int(record["a"]),
        time=float(record["t"]),
        status_code=None if record["s"] is None else int(record["s"]),
        latency_ms=float(record["l"]),
        error=None if record["x"] is None else str(record["x"]),
        outcome=str(record["o"]),
        destination=Destination(record["d"]),
        retry_in=None if record["n"] is None else float(record["n"]),
    )


def _json_bytes(document: Any) -> bytes:
    try:
        return orjson.dumps(document)
    except TypeError:  # lone surrogates in a text (an error message): JSON escapes them
        return json.dumps(document, separators=(",", ":")).encode()


def attempt_to_record(attempt: Attempt) -> bytes:
    return _json_bytes(_attempt_fields(attempt))


def attempts_to_record(attempts: Sequence[Attempt]) -> bytes:
    """Attempts of one subscription as one message (a JSON array); one as :func:`attempt_to_record`."""
    if len(attempts) == 1:
        return attempt_to_record(attempts[0])
    return _json_bytes([_attempt_fields(attempt) for attempt in attempts])


def attempt_from_record(data: bytes) -> Attempt | None:
    """An attempt stored by :func:`attempt_to_record`; None for anything else."""
    try:
        return _attempt_from_fields(json.loads(data))
    except (KeyError, TypeError, ValueError):
        return None


def attempts_from_record(data: bytes) -> list[Attempt]:
    """The attempts of a message written by :func:`attempts_to_record` (or :func:`attempt_to_record`),
    oldest first; what is not an attempt is left out."""
    try:
        document = json.loads(data)
    except ValueError:
        return []
    found: list[Attempt] = []
    for record in document if isinstance(document, list) else [document]:
        try:
            found.append(_attempt_from_fields(record))
        except (KeyError, TypeError, ValueError):
            continue
    return found
