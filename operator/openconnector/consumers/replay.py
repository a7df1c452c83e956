"""Replay refusal for signed webhooks: a store of recently accepted message ids, behind a small interface.

:class:`ReplayStore` is what the gateway needs (async, so a shared store such as a key-value bucket can
stand behind it); :class:`ReplayGuard` is the in-process store. Only verified messages are remembered:
unsigned requests must not be able to block real ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
from typing import Protocol

from openconnector.consumers.verifiers import STANDARD_WEBHOOKS_CHALLENGE, AuthFailure, AuthOutcome

__all__ = ["ReplayGuard", "ReplayStore", "TieredReplayStore", "admit"]


class ReplayStore(Protocol):
    async def remember(self, key: str, *, now: float, ttl: float) -> bool:
        """Remember ``key`` for ``ttl`` seconds; False when it was remembered already and has not expired."""

    async def forget(self, key: str) -> None:
        """Forget ``key`` (its message was not accepted, so the sender's retry must get through)."""


class ReplayGuard:
    """A bounded in-memory set of recently seen keys, each with an expiry; pure (the clock is passed in).

    Not thread-safe (the gateway is one asyncio loop). Keys are stored as SHA-256 digests, so a sender's
    long ids cost 32 bytes each. When full, expired keys go first, then the ones closest to expiry; the
    bound trades complete replay protection under a flood for bounded memory.
    """

    def __init__(self, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    async def remember(self, key: str, *, now: float, ttl: float) -> bool:
        return self.first_seen(key, now=now, ttl=ttl)

    async def forget(self, key: str) -> None:
        self.release(key)

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()

    def first_seen(self, key: str, *, now: float, ttl: float) -> bool:
        """Remember `key` for `ttl` seconds; False when it was already remembered and not yet expired."""
        digest = self._digest(key)
        self._purge(now)
        expiry = self._expiry.get(digest)
        if expiry is not None and expiry > now:
            return False
        while len(self._expiry) >= self._max_entries:
            self._evict_one()
        self._expiry[digest] = now + ttl
        heapq.heappush(self._heap, (now + ttl, digest))
        return True

    def release(self, key: str) -> None:
        """Forget `key` (its message was not accepted, so a retry must get through)."""
        self._expiry.pop(self._digest(key), None)

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            self._drop(*heapq.heappop(self._heap))

    def _evict_one(self) -> None:
        while self._heap:
            expiry, digest = heapq.heappop(self._heap)
            if self._drop(expiry, digest):
                return
        self._expiry.clear()  # unreachable while heap and dict agree; keeps the loop finite regardless

    def _drop(self, expiry: float, digest: bytes) -> bool:
        # The heap may hold entries for keys released or re-remembered since; only drop the live one.
        if self._expiry.get(digest) == expiry:
            del self._expiry[digest]
            return True
        return False


class TieredReplayStore:
    """The process's own :class:`ReplayGuard` first, then a store shared by every process (the JetStream
    bus's KV bucket), so a replay is refused by any replica and after a restart, and a replay this process
    saw itself costs no round trip."""

    def __init__(self, local: ReplayGuard, shared: ReplayStore) -> None:
        self.local = local
        self.shared = shared

    async def remember(self, key: str, *, now: float, ttl: float) -> bool:
        if not await self.local.remember(key, now=now, ttl=ttl):
            return False
        try:
            fresh = await self.shared.remember(key, now=now, ttl=ttl)
        except BaseException:
            await self.local.forget(key)  # not accepted: the sender's retry must get through
            raise
        return fresh

    async def forget(self, key: str) -> None:
        await self.local.forget(key)
        await self.shared.forget(key)


async def admit(store: ReplayStore, outcome: AuthOutcome, *, scope: str, now: float) -> AuthOutcome:
    """Refuse a verified message whose id was accepted within its window; remember it otherwise.

    ``scope`` (the Consumer) namespaces ids in a store shared between Consumers. The returned outcome
    names the ``replay_key`` to :meth:`ReplayStore.forget` when the message is not accepted after all.
    """
    if outcome.replay_ttl is None or outcome.message_id is None:
        return outcome
    key = f"{scope}\x00{outcome.message_id}"
    if not await store.remember(key, now=now, ttl=outcome.replay_ttl):
        raise AuthFailure(
            401,
            "replayed",
            "this message was already received",
            www_authenticate=STANDARD_WEBHOOKS_CHALLENGE,
        )
    return dataclasses.replace(outcome, replay_key=key)
