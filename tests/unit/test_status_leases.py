"""The status Leases (kube/lease.py) against an in-memory Lease store: heartbeats, the holder, expiry
judged on the holder's own clock, and what happens when Leases are forbidden."""

from __future__ import annotations

import copy
from typing import Any

from openconnector.kube.client import ApiError
from openconnector.kube.lease import ReplicaLeases


class FakeLeases:
    """create/get/replace/delete with resourceVersions and 409s, as the apiserver answers them."""

    def __init__(self, *, forbidden: bool = False) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.forbidden = forbidden

    def _check(self) -> None:
        if self.forbidden:
            raise ApiError(403, "forbidden")

    def _stored(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def create_object(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        if body["metadata"]["name"] in self.objects:
            raise ApiError(409, "exists")
        return self._stored(body)

    async def get_object(self, path: str) -> dict[str, Any]:
        self._check()
        name = path.rsplit("/", 1)[1]
        if name not in self.objects:
            raise ApiError(404, "not found")
        return copy.deepcopy(self.objects[name])

    async def replace_object(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        name = path.rsplit("/", 1)[1]
        current = self.objects.get(name)
        if current is None:
            raise ApiError(404, "not found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "conflict")
        return self._stored(body)

    async def delete_object(self, path: str) -> None:
        self._check()
        if self.objects.pop(path.rsplit("/", 1)[1], None) is None:
            raise ApiError(404, "not found")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def leases(store: FakeLeases, pod: str, clock: Clock) -> ReplicaLeases:
    return ReplicaLeases(store, namespace="ops", pod=pod, duration=10.0, clock=clock)  # type: ignore[arg-type]


async def test_one_holder_at_a_time_and_a_takeover_after_the_holder_stops_renewing() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = leases(store, "a", clock), leases(store, "b", clock)
    assert await a.hold()
    assert not await b.hold()
    clock.now += 5
    assert await a.hold()  # renewed
    assert not await b.hold()  # b first sees the renewed version now
    clock.now += 9
    assert not await b.hold()  # unchanged for 9 s < 10 s
    clock.now += 2
    assert await b.hold()  # unchanged for a whole lease duration on b's clock
    assert store.objects["openconnector"]["spec"]["holderIdentity"] == "b"
    assert store.objects["openconnector"]["spec"]["leaseTransitions"] == 1
    assert not await a.hold()


async def test_a_replica_is_alive_while_it_renews_and_gone_once_it_stops_or_deletes_its_lease() -> None:
    store, clock = FakeLeases(), Clock()
    holder, other = leases(store, "a", clock), leases(store, "b", clock)
    await other.heartbeat()
    assert await holder.alive("b")
    clock.now += 8
    await other.heartbeat()
    assert await holder.alive("b")
    clock.now += 8
    assert await holder.alive("b")  # 8 s since the version changed
    clock.now += 3
    assert not await holder.alive("b")  # crashed: not renewed for a lease duration
    await other.release()  # a clean stop deletes the Lease: gone after a duration of absence
    assert await holder.alive("b")
    clock.now += 11
    assert not await holder.alive("b")
    assert await holder.alive("a")  # never itself


async def test_the_heartbeat_gates_status_writes() -> None:
    store, clock = FakeLeases(), Clock()
    replica = leases(store, "a", clock)
    assert not replica.fresh()  # no heartbeat yet: no shard may be written
    await replica.heartbeat()
    assert replica.fresh()
    clock.now += 11
    assert not replica.fresh()  # cut off for a lease duration: it may have been declared gone
    await replica.heartbeat()
    assert replica.fresh()


async def test_forbidden_leases_leave_status_writes_on_and_clean_up_off() -> None:
    store, clock = FakeLeases(forbidden=True), Clock()
    replica = leases(store, "a", clock)
    await replica.heartbeat()
    assert replica.unavailable
    assert replica.fresh()  # nobody can fold a shard, so writing one stays safe
    store.forbidden = False
    await replica.heartbeat()
    assert not replica.unavailable
