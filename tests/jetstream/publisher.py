"""A steady-rate CloudEvents publisher that counts only what the gateway accepted (2xx).

Event ``i`` is due at ``start + i / rate`` (open loop: a slow answer does not slow the schedule). A
refusal (503) or a connection error is retried with the same CloudEvent id, on the next gateway in the
list, after ``Retry-After`` (capped) — what a well-behaved sender does; the id lets the bus store a
retried event once. An event counts as accepted only when some attempt got a 2xx. Every 503 is checked
for the promised form (Retry-After, problem+json); any other non-2xx answer is recorded as unexpected.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import orjson

from tests.jetstream.gatewayproc import EVENT_TYPE, SOURCE

PROBLEM_JSON = "application/problem+json"


def event_headers(event_id: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": SOURCE,
        "ce-type": EVENT_TYPE,
        "Content-Type": "application/json",
    }


@dataclass
class PublishReport:
    sent: int = 0
    accepted: set[str] = field(default_factory=set)
    not_accepted: set[str] = field(default_factory=set)
    attempts: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    statuses_by_target: dict[str, Counter[int]] = field(default_factory=dict)
    connection_errors: int = 0
    refusal_times: list[float] = field(default_factory=list)
    refusals_503: list[tuple[float, str]] = field(default_factory=list)  # (time, target)
    malformed_refusals: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    began: float = 0.0
    ended: float = 0.0

    @property
    def refused_window_s(self) -> float:
        """Seconds from the first refused attempt (503 or no connection) to the last one."""
        if not self.refusal_times:
            return 0.0
        return max(self.refusal_times) - min(self.refusal_times)


class Publisher:
    def __init__(
        self,
        targets: Sequence[str],
        *,
        retry: bool = True,
        give_up_after: float = 30.0,
        retry_after_cap: float = 1.0,
        concurrency: int = 128,
    ) -> None:
        self.targets = list(targets)
        self.retry = retry
        self.give_up_after = give_up_after
        self.retry_after_cap = retry_after_cap
        self.report = PublishReport()
        self._limit = asyncio.Semaphore(concurrency)
        self._next_target = 0
        self.progress = 0  # events whose publishing finished (accepted or given up)

    async def run(self, count: int, rate: float, prefix: str = "evt") -> PublishReport:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self.report.began = began = time.monotonic()
            tasks = []
            for i in range(count):
                delay = began + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._publish(session, f"{prefix}-{i:06d}")))
                self.report.sent += 1
            await asyncio.gather(*tasks)
        self.report.ended = time.monotonic()
        return self.report

    def _target(self) -> str:
        target = self.targets[self._next_target % len(self.targets)]
        self._next_target += 1
        return target

    async def _publish(self, session: aiohttp.ClientSession, event_id: str) -> None:
        async with self._limit:
            deadline = time.monotonic() + self.give_up_after
            body = orjson.dumps({"n": event_id})
            while True:
                wait = await self._attempt(session, self._target(), event_id, body)
                if wait is None:
                    self.report.accepted.add(event_id)
                    break
                if not self.retry or time.monotonic() + wait > deadline:
                    self.report.not_accepted.add(event_id)
                    break
                await asyncio.sleep(wait)
            self.progress += 1

    async def _attempt(
        self, session: aiohttp.ClientSession, target: str, event_id: str, body: bytes
    ) -> float | None:
        """One POST; None when accepted, else the seconds to wait before the next attempt."""
        self.report.attempts += 1
        try:
            async with session.post(f"{target}/events", data=body, headers=event_headers(event_id)) as reply:
                text = await reply.read()
                status = reply.status
                retry_after = reply.headers.get("Retry-After", "")
                content_type = reply.headers.get("Content-Type", "")
        except (aiohttp.ClientError, OSError, TimeoutError):
            # No answer: the event may or may not be stored; the sender cannot know, so it is not
            # accepted (yet) and is sent again with the same id.
            self.report.connection_errors += 1
            self.report.refusal_times.append(time.monotonic())
            return 0.2
        self.report.statuses[status] += 1
        self.report.statuses_by_target.setdefault(target, Counter())[status] += 1
        if 200 <= status < 300:
            return None
        if status == 503:
            self.report.refusal_times.append(time.monotonic())
            self.report.refusals_503.append((time.monotonic(), target))
            if not retry_after.isdigit() or not content_type.startswith(PROBLEM_JSON):
                self.report.malformed_refusals.append(
                    f"{event_id}: Retry-After={retry_after!r} Content-Type={content_type!r} {text[:200]!r}"
                )
            seconds = float(retry_after) if retry_after.isdigit() else 1.0
            return min(seconds, self.retry_after_cap)
        self.report.unexpected.append(f"{event_id}: {status} {text[:300]!r}")
        return 0.5
