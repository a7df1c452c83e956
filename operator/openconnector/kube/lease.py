"""Leases (coordination.k8s.io) for the status shards: one heartbeat per replica, one holder.

Every replica renews its own Lease ``<prefix>-replica-<pod>``; the holder of the Lease ``<prefix>``
removes the status shards of replicas whose heartbeat is gone or expired (see
``StatusWriter.collect``). Heartbeats instead of a Pod LIST: the only grant needed is on Leases in the
operator's own namespace (get, create, update, delete), no read access to Pods, and it works the same
outside Kubernetes' Pod lifecycle (a process that stopped renewing is gone, whatever its Pod says).

Expiry is judged by *observation*, as client-go's leader election does: a Lease is expired when its
resourceVersion has not changed for ``leaseDurationSeconds`` on our own monotonic clock, so replicas'
clocks need not agree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from openconnector.kube.client import ApiError, KubeClient
from openconnector.status.timefmt import rfc3339_micro

log = logging.getLogger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


class ReplicaLeases:
    """This replica's heartbeat, the holder election, and the liveness of other replicas."""

    def __init__(
        self, client: KubeClient, *, namespace: str, pod: str, prefix: str = "openconnector",
        duration: float = 15.0, clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.client = client
        self.namespace = namespace
        self.pod = pod
        self.prefix = prefix
        self.duration = duration
        self._clock = clock
        self._wall = wall
        self._own: dict[str, Any] | None = None
        self.unavailable = False
        self._last_beat: float | None = None
        self._holder_until = 0.0
        # name -> (resourceVersion, when it was first seen with it); None: first seen missing
        self._seen: dict[str, tuple[str | None, float]] = {}

    # ------------------------------------------------------------------------------ paths

    @property
    def holder_lease(self) -> str:
        return self.prefix

    def replica_lease(self, pod: str) -> str:
        return f"{self.prefix}-replica-{pod}"

    def _path(self, name: str | None = None) -> str:
        path = LEASES.format(namespace=self.namespace)
        return f"{path}/{name}" if name else path

    def _lease(self, name: str, holder: str, transitions: int = 0) -> dict[str, Any]:
        now = rfc3339_micro(self._wall())
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": max(1, round(self.duration)),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }

    # -------------------------------------------------------------------------- heartbeat

    async def heartbeat(self) -> None:
        """Create or renew this replica's Lease."""
        name = self.replica_lease(self.pod)
        if self._own is None:
            try:
                self._own = await self.client.create_object(self._path(), self._lease(name, self.pod))
            except ApiError as error:
                if error.status in (403, 404):
                    self._unavailable(error)
                    return
                if error.status != 409:
                    raise
                self._own = await self.client.get_object(self._path(name))
            self.unavailable = False
        else:
            renewed = dict(self._own)
            renewed["spec"] = {**self._own.get("spec", {}), "renewTime": rfc3339_micro(self._wall())}
            try:
                self._own = await self.client.replace_object(self._path(name), renewed)
            except ApiError as error:
                self._own = None  # 404 (removed) or 409 (stale copy): start over next round
                if error.status not in (404, 409):
                    raise
                return
        self._last_beat = self._clock()

    def _unavailable(self, error: ApiError) -> None:
        # Leases forbidden (RBAC of one's own without the Lease rule) or not served: then no replica can
        # hold the Lease either, so no shard is ever folded, and writing this replica's shard stays safe.
        if not self.unavailable:
            log.warning(
                "status Leases unavailable in namespace %s (%s): status shards are written, but shards of "
                "departed replicas are not folded into retired (grant get/create/update/delete on leases)",
                self.namespace, error,
            )  # fmt: skip
        self.unavailable = True

    def fresh(self) -> bool:
        """Whether this replica's heartbeat is current: a replica that could not renew for a whole lease
        duration may have been declared gone, and must not write its shard back."""
        if self.unavailable:
            return True
        return self._last_beat is not None and self._clock() - self._last_beat < self.duration

    # ---------------------------------------------------------------------------- holder

    async def hold(self) -> bool:
        """Acquire or renew the holder Lease; True while this replica holds it."""
        name = self.holder_lease
        try:
            lease = await self.client.get_object(self._path(name))
        except ApiError as error:
            if error.status != 404:
                raise
            try:
                await self.client.create_object(self._path(), self._lease(name, self.pod))
            except ApiError as create_error:
                if create_error.status == 409:
                    return False
                raise
            return self._held()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if holder != self.pod and holder and not self._expired(name, lease):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.pod else 1)
        renewed = {**lease, "spec": {**spec, **self._lease(name, self.pod, transitions)["spec"]}}
        if holder == self.pod:
            renewed["spec"]["acquireTime"] = spec.get("acquireTime", renewed["spec"]["acquireTime"])
        try:
            await self.client.replace_object(self._path(name), renewed)
        except ApiError as error:
            if error.status in (404, 409):  # someone else was faster
                return False
            raise
        if holder != self.pod:
            log.info("holding the status Lease %s/%s (shard clean-up)", self.namespace, name)
        return self._held()

    def _held(self) -> bool:
        self._holder_until = self._clock() + self.duration
        return True

    def holds(self) -> bool:
        return self._clock() < self._holder_until

    # -------------------------------------------------------------------------- liveness

    def _expired(self, name: str, lease: dict[str, Any]) -> bool:
        version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        now = self._clock()
        seen = self._seen.get(name)
        if seen is None or seen[0] != version:
            self._seen[name] = (version, now)
            return False
        duration = float((lease.get("spec") or {}).get("leaseDurationSeconds") or self.duration)
        return now - seen[1] >= duration

    async def alive(self, pod: str) -> bool:
        """Whether replica ``pod`` still renews its Lease. A missing Lease counts as gone once it has been
        missing for a lease duration (a replica creates its Lease before it writes a shard; a stopping
        one deletes it after its last write)."""
        if pod == self.pod:
            return True
        name = self.replica_lease(pod)
        try:
            lease = await self.client.get_object(self._path(name))
        except ApiError as error:
            if error.status != 404:
                raise
            now = self._clock()
            seen = self._seen.get(name)
            if seen is None or seen[0] is not None:
                self._seen[name] = (None, now)
                return True
            return now - seen[1] < self.duration
        return not self._expired(name, lease)

    async def forget(self, pod: str) -> None:
        """Delete the Lease of a replica whose shards are all gone (it crashed, leaving it behind)."""
        self._seen.pop(self.replica_lease(pod), None)
        try:
            await self.client.delete_object(self._path(self.replica_lease(pod)))
        except ApiError as error:
            if error.status != 404:
                raise

    async def release(self) -> None:
        """At shutdown, after the last status write: drop this replica's Lease and the holder Lease."""
        self._own = None
        self._last_beat = None
        try:
            await self.client.delete_object(self._path(self.replica_lease(self.pod)))
        except ApiError as error:
            if error.status != 404:
                raise
        if self.holds():
            self._holder_until = 0.0
            try:
                await self.client.delete_object(self._path(self.holder_lease))
            except ApiError as error:
                if error.status != 404:
                    raise
