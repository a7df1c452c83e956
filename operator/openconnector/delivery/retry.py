"""One delivery attempt and what follows it: retry delay, 410/auto-pause, dead letter or drop.

Shared by both buses. The in-memory bus's worker makes the first attempt itself (what
:meth:`Deliverer.try_once` does, settled by :meth:`~Deliverer.delivered` or
:meth:`~Deliverer.after_failure`) and loops over ``try_once`` for the retries, sleeping through the
backoff; the JetStream bus calls ``try_once`` once per redelivery and NAKs the message with the delay
it returns. Either way an event ends delivered, dead-lettered or dropped, and every attempt is recorded
in the subscription's health and attempt log and reported to the observer.

Dead-lettered events get the extensions ``ocerrordest`` (the target URL without query string),
``ocerrorcode`` (the last HTTP status; absent when there was no response) and ``ocerrordata`` (base64 of
the first 1 KiB of the last response body; absent when empty). They are built from the held request by
the injected :data:`~openconnector.delivery.prepared.Reencoder` and sent in structured mode without the
subscriber's credentials or signature.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from openconnector.api.keys import ResourceKey
from openconnector.ce import AttributeValue
from openconnector.delivery.attempts import Attempt, AttemptLog, Destination
from openconnector.delivery.health import HealthReason, SubscriptionHealth
from openconnector.delivery.outcomes import (
    DeliveryObserver,
    DropReason,
    FinalOutcome,
    NullObserver,
    PauseCallback,
)
from openconnector.delivery.policy import (
    RETRY_AFTER_STATUSES,
    DeliveryPolicy,
    Outcome,
    Rng,
    backoff_delay,
    parse_retry_after,
)
from openconnector.delivery.prepared import DeliverableEvent, Prepared, Reencoder
from openconnector.delivery.sending import ERROR_DATA_LIMIT, HttpSender, Response, clip, describe
from openconnector.delivery.signing import signature_headers
from openconnector.delivery.target import ContentMode, DeliveryTarget, redact_url
from openconnector.egress import EgressPolicy

__all__ = ["Deliverer", "DeliveryState", "retry_delay"]

logger = logging.getLogger("openconnector.delivery")

# Attempt request ids: 32 hex digits like uuid4().hex, but a random per-process prefix and a counter,
# so an attempt does not pay for 16 bytes from os.urandom and a UUID object. The prefix is the high
# 64 bits of one number: one formatting operation per id.
_REQUEST_ID_PREFIX = os.urandom(8).hex()
_REQUEST_ID_BASE = int(_REQUEST_ID_PREFIX, 16) << 64
_request_numbers = itertools.count(1)
_SUCCESS = Outcome.SUCCESS._value_  # an Attempt's outcome text for a success


def new_request_id() -> str:
    """A request id unique within the process and, by its random prefix, across processes:
    ``f"{_REQUEST_ID_PREFIX}{number:016x}"`` (the counter stays far below 2**64)."""
    return "%032x" % (_REQUEST_ID_BASE | next(_request_numbers))  # one formatting operation


class DeliveryState(Protocol):
    """What the deliverer needs of a subscription: its key, configuration, health and attempt log."""

    @property
    def key(self) -> ResourceKey: ...

    @property
    def target(self) -> DeliveryTarget: ...

    @property
    def health(self) -> SubscriptionHealth: ...

    @property
    def attempts(self) -> AttemptLog: ...


def retry_delay(
    policy: DeliveryPolicy, attempt: int, status: int | None, retry_after: str | None, now: float, rng: Rng
) -> float:
    """Seconds before retry ``attempt`` + 1: the policy's jittered backoff, or at least Retry-After
    (for 429/503, capped by ``retry_after_max``)."""
    delay = backoff_delay(policy, attempt, rng)
    if status in RETRY_AFTER_STATUSES:
        requested = parse_retry_after(retry_after, now, policy.max_retry_after)
        if requested is not None:
            delay = max(delay, requested)
    return delay


class Deliverer:
    """Attempts, retry decisions, dead letters and drops for one bus (see the module docstring).

    ``on_stop`` is called (synchronously) when a subscription stops delivering (410 or auto-pause),
    before the log line and ``on_paused``: the bus's chance to cut waits short or persist it.
    """

    @classmethod
    def over_http(
        cls,
        *,
        reencoder: Reencoder,
        observer: DeliveryObserver | None,
        on_paused: PauseCallback | None,
        ssl_context: ssl.SSLContext | None,
        connection_limit: int,
        user_agent: str,
        egress: EgressPolicy | None,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: Rng | None,
        on_stop: Callable[[DeliveryState, str, str], None],
    ) -> Deliverer:
        """The deliverer both buses use: an :class:`HttpSender` with their connection settings (names
        resolved through ``egress``) and the policy's retries."""
        sender = HttpSender(
            ssl_context=ssl_context,
            connection_limit=connection_limit,
            user_agent=user_agent,
            clock=clock,
            egress=egress,
        )
        return cls(
            sender,
            reencoder,
            observer or NullObserver(),
            on_paused=on_paused,
            clock=clock,
            sleep=sleep,
            rng=rng or random.Random(),
            on_stop=on_stop,
        )

    def __init__(
        self,
        sender: HttpSender,
        reencoder: Reencoder,
        observer: DeliveryObserver,
        *,
        on_paused: PauseCallback | None,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: Rng,
        on_stop: Callable[[DeliveryState, str, str], None] | None = None,
    ) -> None:
        self.sender = sender
        self._reencoder = reencoder
        self._observer = observer
        self._on_paused = on_paused
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._on_stop = on_stop
        self._callbacks: set[asyncio.Task[None]] = set()

    async def wait_callbacks(self, deadline: float) -> None:
        if self._callbacks:
            await asyncio.wait(set(self._callbacks), timeout=max(deadline, 0.1))

    # -------------------------------------------------------------------------------- one attempt

    async def give_up_if_paused(
        self, state: DeliveryState, prepared: Prepared, last: Response | None
    ) -> bool:
        """A paused subscription receives nothing: the event goes to the dead letter (or is dropped)."""
        pause = state.health.pause_reason
        if pause is None:
            return False
        await self.give_up(state, prepared, last, f"delivery paused ({pause[0]}): {pause[1]}")
        return True

    async def try_once(
        self,
        state: DeliveryState,
        prepared: Prepared,
        attempt: int,
        converted: dict[ContentMode, tuple[Mapping[str, str], bytes]],
    ) -> tuple[float | None, Response]:
        """Attempt ``attempt`` (1-based) of ``prepared``; returns the delay before the next attempt, or
        None when the event is finished (delivered, dead-lettered or dropped), and the response."""
        target = state.target  # read per attempt: update_target applies to the next attempt
        # The request is built here and sent from here: one coroutine less per attempt in the hot path.
        request = self.subscriber_request(target, prepared, converted)
        if isinstance(request, Response):
            response = request
        else:
            response = await self.sender.send(
                target.method, target.url, request[0], request[1], target.policy.timeout
            )
        status = response.status
        if status is not None and 200 <= status <= 299 and not response.fatal:  # Outcome.SUCCESS
            self.delivered(state, prepared, attempt, response)
            return None, response
        return await self.after_failure(state, prepared, attempt, response), response

    def delivered(self, state: DeliveryState, prepared: Prepared, attempt: int, response: Response) -> None:
        """Attempt ``attempt`` of ``prepared`` succeeded (``response`` is a 2xx): record it.

        :meth:`record_attempt` and :meth:`report_outcome` of a success, inlined (the hot path's one
        settle per delivery, two calls less): the same Attempt, log entry and observer calls."""
        status = response.status
        assert status is not None
        latency_ms = response.latency_ms
        state.health.record_success(status, latency_ms, retry=attempt > 1)
        key = state.key
        event_id = prepared.id
        entry = Attempt(
            "%032x" % (_REQUEST_ID_BASE | next(_request_numbers)),  # new_request_id(), inline
            event_id,
            attempt,
            response.started,
            status,
            latency_ms,
            None,
            _SUCCESS,
            Destination.SUBSCRIBER,
            None,
            response.headers,
            response.body_prefix,
        )
        state.attempts.append(entry)
        observer = self._observer
        try:
            observer.on_attempt(key, entry)
        except Exception:
            logger.exception("delivery observer on_attempt failed")
        try:
            observer.on_outcome(key, event_id, FinalOutcome.DELIVERED, None)
        except Exception:
            logger.exception("delivery observer on_outcome failed")

    async def after_failure(
        self, state: DeliveryState, prepared: Prepared, attempt: int, response: Response
    ) -> float | None:
        """Attempt ``attempt`` of ``prepared`` failed with ``response``: record it and return the delay
        before the next attempt, or None when the event is finished (dead-lettered or dropped)."""
        target = state.target
        is_retry = attempt > 1
        outcome = response.outcome
        message = describe(response)
        state.health.record_attempt_failure(response.status, message, retry=is_retry)
        policy = target.policy
        if outcome is Outcome.RETRYABLE and attempt <= policy.retries:
            delay = retry_delay(
                policy, attempt, response.status, response.retry_after, self._clock(), self._rng
            )
            self.record_attempt(state, prepared, attempt, response, outcome, Destination.SUBSCRIBER, delay)
            # DEBUG: during an outage this fires per attempt; health, metrics and the attempt log
            # carry the signal, and dead-letters (WARNING) and drops (ERROR) are logged anyway.
            logger.debug(
                "event %s to %s: attempt %d failed (%s); retrying in %.3fs",
                prepared.id,
                state.key,
                attempt,
                message,
                delay,
            )
            return delay
        self.record_attempt(state, prepared, attempt, response, outcome, Destination.SUBSCRIBER)
        if outcome is Outcome.GONE:
            self.pause(state, HealthReason.ENDPOINT_GONE, f"{target.redacted_url} answered 410 Gone")
        verdict = "retries exhausted" if outcome is Outcome.RETRYABLE else "not retried"
        await self.give_up(state, prepared, response, f"{verdict} after {attempt} attempt(s): {message}")
        return None

    async def attempt_subscriber(
        self,
        target: DeliveryTarget,
        prepared: Prepared,
        converted: dict[ContentMode, tuple[Mapping[str, str], bytes]],
    ) -> Response:
        """One request of ``prepared`` to ``target`` (what :meth:`try_once` sends)."""
        request = self.subscriber_request(target, prepared, converted)
        if isinstance(request, Response):
            return request
        return await self.sender.send(
            target.method, target.url, request[0], request[1], target.policy.timeout
        )

    def subscriber_request(
        self,
        target: DeliveryTarget,
        prepared: Prepared,
        converted: dict[ContentMode, tuple[Mapping[str, str], bytes]],
    ) -> tuple[Mapping[str, str], bytes] | Response:
        """The headers and body of an attempt to ``target``, or the fatal Response when the event cannot
        be re-encoded for the target's content mode. Not a copy when the target adds no headers of its
        own (the sender only reads them)."""
        mode = target.content_mode
        if mode is prepared.content_mode:
            encoded_headers, body = prepared.headers, prepared.body
        elif mode in converted:
            encoded_headers, body = converted[mode]
        else:
            # The target's content mode changed after this event was queued: convert once.
            try:
                encoded_headers, body = converted[mode] = self._reencoder(prepared, mode, {})
            except Exception as error:
                return self.sender.fatal(
                    f"re-encoding as {mode} failed: {type(error).__name__}: {clip(str(error))}"
                )
        if target._plain:  # no headers, credentials or signature of its own
            return encoded_headers, body
        signing_key = target._signing_key
        # One dict display: the target's plain headers, the encoding's, then the credentials on top.
        headers = {**target.headers, **encoded_headers, **target.auth_headers}
        if signing_key is not None:
            headers.update(signature_headers(signing_key, prepared.webhook_id, int(self._clock()), body))
        return headers, body

    # ------------------------------------------------------------------------------- giving up

    async def give_up(
        self, state: DeliveryState, prepared: Prepared, last: Response | None, why: str
    ) -> None:
        """The event failed for the subscriber: dead-letter it, or drop it with a reason."""
        target = state.target
        if state.health.record_event_failure():
            reason, message = state.health.pause_reason or (HealthReason.AUTO_PAUSED.value, "")
            self.pause_notify(state, reason, message)
        status = last.status if last is not None else None
        dead_letter = target.policy.dead_letter
        if dead_letter is None:
            self.drop(
                state, prepared, DropReason.NO_DEAD_LETTER, f"{why}; no dead-letter sink configured", status
            )
            return
        extensions: dict[str, AttributeValue] = {"ocerrordest": target.redacted_url}
        if last is not None and last.status is not None:
            extensions["ocerrorcode"] = last.status
        if last is not None and last.body_prefix:
            extensions["ocerrordata"] = base64.b64encode(last.body_prefix[:ERROR_DATA_LIMIT]).decode("ascii")
        try:
            headers, body = self._reencoder(prepared, ContentMode.STRUCTURED, extensions)
        except Exception as error:  # CloudEventError, or whatever an injected reencoder raises
            self.drop(
                state,
                prepared,
                DropReason.DEAD_LETTER_FAILED,
                f"{why}; building the dead letter failed: {type(error).__name__}: {clip(str(error))}",
                status,
            )
            return
        request_headers = dict(headers)
        request_headers.update(target.dead_letter_headers)
        failure = await self._send_dead_letter(state, prepared, dead_letter, request_headers, body)
        if failure is None:
            state.health.record_dead_lettered()
            logger.warning("event %s for %s dead-lettered: %s", prepared.id, state.key, why)
            self.report_outcome(state.key, prepared.id, FinalOutcome.DEAD_LETTERED, None)
        else:
            self.drop(
                state,
                prepared,
                DropReason.DEAD_LETTER_FAILED,
                f"{why}; dead-lettering failed: {failure}",
                status,
            )

    async def _send_dead_letter(
        self, state: DeliveryState, prepared: Prepared, url: str, headers: dict[str, str], body: bytes
    ) -> str | None:
        """POST the dead letter with bounded retries; None on success, else the last error."""
        policy = state.target.policy
        attempt = 0
        while True:
            attempt += 1
            response = await self.sender.send("POST", url, headers, body, policy.timeout)
            outcome = response.outcome
            if outcome is Outcome.SUCCESS:
                self.record_attempt(state, prepared, attempt, response, outcome, Destination.DEAD_LETTER)
                return None
            if outcome is Outcome.RETRYABLE and attempt <= policy.dead_letter_retries:
                delay = retry_delay(
                    policy, attempt, response.status, response.retry_after, self._clock(), self._rng
                )
                self.record_attempt(
                    state, prepared, attempt, response, outcome, Destination.DEAD_LETTER, delay
                )
                await self._sleep(delay)
                continue
            self.record_attempt(state, prepared, attempt, response, outcome, Destination.DEAD_LETTER)
            return f"{describe(response)} from {redact_url(url)} after {attempt} attempt(s)"

    # ------------------------------------------------------------------------- bookkeeping & hooks

    def record_attempt(
        self,
        state: DeliveryState,
        event: DeliverableEvent,
        number: int,
        response: Response,
        outcome: Outcome,
        destination: Destination,
        retry_in: float | None = None,
    ) -> None:
        # Positional: half the cost of twelve keywords (one Attempt per attempt). The order is the
        # dataclass's: request_id, event_id, attempt, time, status_code, latency_ms, error, outcome,
        # destination, retry_in, response_headers, body_excerpt.
        entry = Attempt(
            new_request_id(),
            event.id,
            number,
            response.started,
            response.status,
            response.latency_ms,
            None if outcome is Outcome.SUCCESS else describe(response),
            outcome._value_,  # ._value_, not the .value property: two calls less per attempt
            destination,
            retry_in,
            response.headers,
            response.body_prefix,
        )
        state.attempts.append(entry)
        try:
            self._observer.on_attempt(state.key, entry)
        except Exception:
            logger.exception("delivery observer on_attempt failed")

    def report_outcome(
        self, key: ResourceKey, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None:
        try:
            self._observer.on_outcome(key, event_id, outcome, reason)
        except Exception:
            logger.exception("delivery observer on_outcome failed")

    def drop(
        self,
        state: DeliveryState,
        event: DeliverableEvent,
        reason: DropReason,
        message: str,
        status: int | None = None,
    ) -> None:
        state.health.record_dropped(reason, message, status)
        logger.error("dropped event %s (%s) for %s: %s", event.id, event.type, state.key, message)
        self.report_outcome(state.key, event.id, FinalOutcome.DROPPED, reason)

    def pause(self, state: DeliveryState, reason: HealthReason, message: str) -> None:
        if state.health.pause(reason, message):
            self.pause_notify(state, reason.value, message)

    def pause_notify(self, state: DeliveryState, reason: str, message: str) -> None:
        if self._on_stop is not None:
            self._on_stop(state, reason, message)
        logger.warning("delivery to %s paused (%s): %s", state.key, reason, message)
        if self._on_paused is None:
            return
        try:
            result = self._on_paused(state.key, reason, message)
        except Exception:
            logger.exception("on_paused callback failed for %s", state.key)
            return
        if result is not None:
            task = asyncio.ensure_future(_guarded(result, state.key))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)


async def _guarded(awaitable: Awaitable[None], key: ResourceKey) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("on_paused callback failed for %s", key)
