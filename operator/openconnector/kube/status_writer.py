"""The status writer: this replica's status shard, PATCHed into each resource's status subresource.

Each replica writes only ``status.replicas.<pod>`` plus the top level recomputed from the shards it
read on the watch (``status/shards.py``), with a JSON merge patch that names no other replica's shard.
The holder of the status Lease (``kube/lease.py``) folds the shards of departed replicas into
``status.retired`` and repairs a top level that a race left stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from openconnector.api.kinds import KINDS_BY_NAME
from openconnector.gateway.core import Gateway
from openconnector.kube.client import ApiError, KubeClient
from openconnector.resources import ResourceKey
from openconnector.status import shards
from openconnector.status.conditions import ConditionBook

log = logging.getLogger(__name__)

PATCH_CONCURRENCY = 8


@dataclass(frozen=True)
class StatusPolicy:
    """When a status body may be written: at most once per ``interval`` per resource, except that a
    new generation (a spec change: Ready and observedGeneration) is written at once."""

    interval: float = 5.0

    def due(self, *, body: Mapping[str, Any], written: Mapping[str, Any] | None, last_write: float,
            now: float) -> bool:  # fmt: skip
        if written is not None and dict(body) == dict(written):
            return False
        if written is None or body.get("observedGeneration") != written.get("observedGeneration"):
            return True
        if _conditions(body) != _conditions(written):
            return now - last_write >= min(self.interval, 1.0)
        return now - last_write >= self.interval


def merge_patch_removing(written: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` as a JSON merge patch over ``written``: keys that are gone, at any depth, become null."""
    patch = dict(body)
    for key, old in written.items():
        if key not in body:
            patch[key] = None
        elif isinstance(old, Mapping) and isinstance(body[key], Mapping):
            patch[key] = merge_patch_removing(old, body[key])
    return patch


def _conditions(body: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (c.get("type", ""), c.get("status", ""), c.get("reason", "")) for c in body.get("conditions") or []
    ]


def own_part(status: Mapping[str, Any], pod: str) -> dict[str, Any]:
    """The keys of a stored status this replica writes: never ``retired`` nor another replica's shard
    (so a merge patch computed against it can never null them)."""
    mine = {k: v for k, v in status.items() if k not in ("replicas", "retired")}
    own = shards.shards_of(status).get(pod)
    if own is not None:
        mine["replicas"] = {pod: dict(own)}
    return mine


def _newer(version: str, than: str) -> bool:
    # resourceVersions are opaque; etcd's are integers, so compare them as such when they are.
    if version.isdigit() and than.isdigit():
        return int(version) >= int(than)
    return True


@dataclass
class Observed:
    """The stored status of one resource, as last seen on the watch or in a PATCH answer."""

    status: Mapping[str, Any]
    resource_version: str


class StatusWriter:
    def __init__(
        self, gateway: Gateway, *, pod: str, policy: StatusPolicy | None = None,
        fresh: Callable[[], bool] = lambda: True,
    ) -> None:  # fmt: skip
        self.gateway = gateway
        self.pod = pod
        self.policy = policy or StatusPolicy()
        self.client: KubeClient | None = None
        # False while this replica's heartbeat is not current: it may have been declared gone.
        self.fresh = fresh
        self.conditions = ConditionBook(gateway.clock)
        self._written: dict[ResourceKey, Mapping[str, Any]] = {}
        self._last_write: dict[ResourceKey, float] = {}
        self._observed: dict[ResourceKey, Observed] = {}
        self.wake = asyncio.Event()

    # --------------------------------------------------------------------- what is stored

    def observe(self, key: ResourceKey, obj: Mapping[str, Any]) -> None:
        """The stored object (a watch event or a PATCH answer); older versions are ignored."""
        if not shards.is_sharded(key.kind) and key.kind not in KINDS_BY_NAME:
            return
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        known = self._observed.get(key)
        if known is not None and not _newer(version, known.resource_version):
            return
        self._observed[key] = Observed(dict(obj.get("status") or {}), version)

    def seed(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        """Continue from the stored status: conditions, and this replica's own shard (a restart)."""
        if not status:
            return
        self.gateway.seed_status(key, shards.own_seed(key.kind, self.pod, status))
        self.conditions.seed(key, list(status.get("conditions") or []))
        self._written[key] = own_part(status, self.pod)
        self._last_write[key] = time.monotonic()

    def forget(self, key: ResourceKey) -> None:
        self._written.pop(key, None)
        self._last_write.pop(key, None)
        self._observed.pop(key, None)
        self.conditions.forget(key)

    # ------------------------------------------------------------------------------ bodies

    def body(self, key: ResourceKey) -> tuple[dict[str, Any], str | None] | None:
        """What this replica writes for ``key``, and the resourceVersion it must apply to (only when it
        stores a pre-shard status's counts as ``retired``); None if the gateway does not know it."""
        own = self.gateway.status_body(key)
        if own is None:
            return None
        observed = self._observed.get(key)
        stored: Mapping[str, Any] = observed.status if observed is not None else {}
        body, healthy = shards.sharded_body(key.kind, self.pod, own, stored)
        if healthy is not None:
            generation = int(body.get("observedGeneration") or 0)
            merged = self.conditions.condition(key, shards.HEALTHY, *healthy, generation)
            body["conditions"] = [
                merged if c.get("type") == shards.HEALTHY else c for c in body.get("conditions") or []
            ]
        precondition = observed.resource_version if observed is not None and "retired" in body else None
        return body, precondition

    # ------------------------------------------------------------------------------ writes

    async def flush(self, *, final: bool = False) -> int:
        """Write every status body that is due; returns how many PATCHes were applied.

        ``final`` (at shutdown) writes every body that differs from the last one written, interval or
        not: counts since the last write would otherwise be lost.
        """
        client = self.client
        if client is None or not self.fresh():
            return 0
        self.gateway.tick()
        now = time.monotonic()
        due: list[tuple[ResourceKey, dict[str, Any], str | None]] = []
        for key in list(self.gateway.table.results):
            built = self.body(key)
            if built is None:
                continue
            body, precondition = built
            written = self._written.get(key)
            if final:
                if written is not None and dict(body) == dict(written):
                    continue
            elif not self.policy.due(
                body=body, written=written, last_write=self._last_write.get(key, 0.0), now=now
            ):
                continue
            due.append((key, body, precondition))
        # A few PATCHes in flight: one at a time cannot keep up with thousands of resources.
        limit = asyncio.Semaphore(PATCH_CONCURRENCY)

        async def write(key: ResourceKey, body: dict[str, Any], precondition: str | None) -> bool:
            # A merge patch leaves absent keys alone: clear what this replica wrote before and is gone
            # now (an old url, a lastError that no longer applies), never another replica's keys.
            patch = merge_patch_removing(own_part(self._written.get(key) or {}, self.pod), body)
            async with limit:
                try:
                    stored = await client.patch_status(
                        KINDS_BY_NAME[key.kind].plural, key.namespace, key.name, patch,
                        resource_version=precondition,
                    )  # fmt: skip
                except ApiError as error:
                    # 404: deleted meanwhile, the DELETED event follows; 409: the next watch event
                    # brings the newer status to compute from.
                    if error.status not in (404, 409):
                        log.warning("status of %s not written: %s", key, error)
                    return False
            if stored is not None:
                self.observe(key, stored)
            self._written[key] = own_part(body, self.pod)
            self._last_write[key] = now
            return True

        results = await asyncio.gather(*(write(*item) for item in due))
        return sum(results)

    async def loop(self, tick: float = 0.5) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=tick)
            self.wake.clear()
            try:
                await self.flush()
            except Exception:  # the apiserver may be briefly away; try again next tick
                log.exception("status flush failed")
            await asyncio.sleep(tick)

    # ------------------------------------------------------------------ the Lease holder

    def replicas_seen(self) -> set[str]:
        return {name for observed in self._observed.values() for name in shards.shards_of(observed.status)}

    async def collect(self, alive: Callable[[str], Awaitable[bool]]) -> set[str]:
        """The Lease holder's round: fold the shards of departed replicas into ``retired`` and repair
        stale top-level sums. Returns the departed replicas no shard names any more."""
        client = self.client
        if client is None:
            return set()
        others = self.replicas_seen() - {self.pod}
        gone = {name for name in sorted(others) if not await alive(name)}
        for key, observed in list(self._observed.items()):
            if not shards.is_sharded(key.kind):
                continue
            patch = shards.retire(key.kind, observed.status, gone)
            if patch is None and not shards.consistent(key.kind, observed.status):
                patch = shards.repair(key.kind, observed.status)
            if patch is None:
                continue
            try:
                stored = await client.patch_status(
                    KINDS_BY_NAME[key.kind].plural, key.namespace, key.name, patch,
                    resource_version=observed.resource_version,
                )  # fmt: skip
            except ApiError as error:
                if error.status not in (404, 409):  # 409: changed meanwhile, next round
                    log.warning("shards of %s not collected: %s", key, error)
                continue
            if stored is not None:
                self.observe(key, stored)
            if gone & shards.shards_of(observed.status).keys():
                log.info("%s: folded the status of departed replicas %s into retired", key,
                         ", ".join(sorted(gone & shards.shards_of(observed.status).keys())))  # fmt: skip
        return gone - self.replicas_seen()
