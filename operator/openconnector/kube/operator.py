"""Cluster mode: Kopf handlers feed the shared reconciler; status and Kubernetes Events flow back.

Three roles: the informer (:class:`OperatorCore`: watch events, the initial LIST and resyncs into the
``ResourceStore``), the status writer (``kube/status_writer.py``) and the Event poster
(:class:`EventPoster`). Handlers are thin: each watch event becomes one store change and a
``notify()``. The routing table, status bodies and health decisions are computed by the same code as in
standalone mode.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kopf
import kubernetes.config.kube_config
import orjson

from openconnector.api.common import GROUP, VERSION
from openconnector.api.kinds import ALL_KINDS, KINDS_BY_NAME
from openconnector.gateway.core import Gateway
from openconnector.kube.client import KubeClient, pod_name
from openconnector.kube.status_writer import StatusPolicy, StatusWriter
from openconnector.reconciler import Reconciler
from openconnector.resources import (
    ResourceKey,
    decode_secret_or_configmap,
    resource_from_object,
)
from openconnector.routing.table import RoutingTable
from openconnector.status.conditions import MESSAGE_LIMIT

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = GROUP


class EventPoster:
    """Kubernetes Events (``kubectl describe``) for notices; advisory, never in the way of routing."""

    def __init__(self, uid_of: Callable[[ResourceKey], str | None]) -> None:
        self.client: KubeClient | None = None
        self._uid_of = uid_of
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def pending(self) -> int:
        """Events decided on and not yet answered by the apiserver."""
        return len(self._tasks)

    def notice(self, key: ResourceKey, type_: str, reason: str, message: str) -> None:
        if self.client is None:
            return
        uid = self._uid_of(key)
        if uid is None:
            return
        task = asyncio.get_running_loop().create_task(self._post(key, uid, type_, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, key: ResourceKey, uid: str, type_: str, reason: str, message: str) -> None:
        assert self.client is not None
        try:
            await self.client.post_event(
                kind=key.kind, namespace=key.namespace, name=key.name, uid=uid,
                type_=type_, reason=reason, message=message,
            )  # fmt: skip
        except Exception as error:  # an Event is advisory; never let it break routing
            log.warning("Kubernetes Event for %s not posted: %s", key, error)


class OperatorCore:
    """The informer: watch events, the initial LIST and resyncs feed the store; it owns the status
    writer (``writer``) and the Event poster (``events``) and wires them to the gateway."""

    def __init__(
        self,
        gateway: Gateway,
        reconciler: Reconciler,
        *,
        namespaces: Sequence[str] = (),
        status_policy: StatusPolicy | None = None,
        pod: str | None = None,
    ) -> None:
        self.gateway = gateway
        self.reconciler = reconciler
        self.namespaces = tuple(namespaces)
        self.writer = StatusWriter(gateway, pod=pod or pod_name(), policy=status_policy)
        self.events = EventPoster(self._uid_of)
        self._client: KubeClient | None = None
        self._last_ready: dict[ResourceKey, tuple[bool, str]] = {}
        self._touched: dict[ResourceKey, float] = {}
        gateway.add_notice_sink(self.notice)
        reconciler.add_listener(self.on_table)

    @property
    def client(self) -> KubeClient | None:
        return self._client

    @client.setter
    def client(self, client: KubeClient | None) -> None:
        self._client = self.writer.client = self.events.client = client

    def _uid_of(self, key: ResourceKey) -> str | None:
        resource = self.reconciler.store.resources.get(key)
        return None if resource is None else resource.uid

    # --------------------------------------------------------------------------- watch events

    def on_object(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event of any kind we follow (our five, Secrets, ConfigMaps)."""
        kind = str(body.get("kind"))
        meta = body.get("metadata") or {}
        key = ResourceKey(kind, str(meta.get("namespace") or "default"), str(meta.get("name", "")))
        self._touched[key] = time.monotonic()
        if event_type == "DELETED":
            self._remove(key)
            return
        changed = False
        if kind in KINDS_BY_NAME:
            resource = resource_from_object(body)
            if resource is None:
                return
            known = self.reconciler.store.resources.get(key)
            if known is not None and known.uid and resource.uid and known.uid != resource.uid:
                # Deleted and re-created under the same name (e.g. kubectl replace --force): a new object.
                self._remove(key)
                known = None
            if known is None:
                self._seed(key, body.get("status") or {})
            self.writer.observe(key, body)
            changed = self.reconciler.store.apply(resource)
        elif kind in ("Secret", "ConfigMap"):
            decoded = decode_secret_or_configmap(kind, body)
            changed = self.reconciler.store.apply(decoded)
            # Every Secret in the cluster passes by; only those a resource references need a recompile.
            changed = changed and key in self.reconciler.table.referenced
        if changed:
            self.reconciler.notify()

    def _remove(self, key: ResourceKey) -> None:
        if self.reconciler.store.delete(key):
            self.writer.forget(key)
            self._last_ready.pop(key, None)
            # _touched keeps the key as a tombstone: a LIST already under way must not bring it back.
            self.gateway.forget(key)
            self.reconciler.notify()

    def _seed(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        if status:
            self.writer.seed(key, status)
            for cond in status.get("conditions") or []:
                if cond.get("type") == "Ready":
                    # What the previous process already announced is not announced again.
                    self._last_ready[key] = (cond.get("status") == "True", str(cond.get("message", "")))

    async def _list_all(self) -> list[dict[str, Any]]:
        assert self.client is not None
        items: list[dict[str, Any]] = []
        scopes: Sequence[str | None] = self.namespaces or (None,)
        for namespace in scopes:
            for kind in ALL_KINDS:
                for item in await self.client.list_items(KubeClient.custom_path(kind.plural, namespace)):
                    item.setdefault("kind", kind.kind)
                    item.setdefault("apiVersion", f"{GROUP}/{VERSION}")
                    items.append(item)
            for plural, kind_name in (("secrets", "Secret"), ("configmaps", "ConfigMap")):
                for item in await self.client.list_items(KubeClient.core_path(plural, namespace)):
                    item.setdefault("kind", kind_name)
                    items.append(item)
        return items

    async def initial_sync(self) -> None:
        """LIST everything once, so that the first routing table is complete (then: ready)."""
        for item in await self._list_all():
            self.on_object("ADDED", item)
        self.reconciler.rebuild()

    async def resync(self) -> int:
        """LIST everything and drop what no longer exists; returns how many objects were dropped.

        A watch never reports objects deleted while it was away (between our LIST and Kopf's start, or
        across a relist after "410 Gone"), so a periodic LIST is the informer's safety net. An object the
        watch touched after this LIST began is left alone: the LIST may predate it.
        """
        started = time.monotonic()
        listed: set[ResourceKey] = set()
        for item in await self._list_all():
            meta = item.get("metadata") or {}
            key = ResourceKey(
                str(item["kind"]), str(meta.get("namespace") or "default"), str(meta.get("name"))
            )
            listed.add(key)
            known = self.reconciler.store.resources.get(key) or self.reconciler.store.secrets.get(key)
            if known is None and self._touched.get(key, 0.0) < started:
                self.on_object("ADDED", item)
        store = self.reconciler.store
        gone = [
            k
            for k in [*store.resources, *store.secrets]
            if k not in listed and self._touched.get(k, 0.0) < started
        ]
        for key in gone:
            log.info("%s no longer exists (missed by the watch): removed", key)
            self._remove(key)
        # Tombstones older than this LIST have done their job.
        present = {*store.resources, *store.secrets}
        for key in [k for k, at in self._touched.items() if at < started and k not in present]:
            del self._touched[key]
        return len(gone)

    async def resync_loop(self, interval: float = 60.0, first: float = 5.0) -> None:
        await asyncio.sleep(first)  # once soon after start-up: covers the gap before Kopf's watch began
        while True:
            try:
                await self.resync()
            except Exception:  # the apiserver may be away: the next round tries again
                log.exception("resync failed")
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------------------ status

    def on_table(self, table: RoutingTable) -> None:
        """After each compile: Warning Events for resources that just failed, Normal when they recover."""
        for key, result in table.results.items():
            before = self._last_ready.get(key)
            # Compared as stored in the condition (truncated), so a restart recognises it.
            message = result.message[:MESSAGE_LIMIT]
            self._last_ready[key] = (result.ready, message)
            if not result.ready and (before is None or before != (False, message)):
                self.notice(key, "Warning", result.reason, result.message)
            elif result.ready and before is not None and not before[0]:
                self.notice(key, "Normal", "Compiled", "the resource compiled and is routed")
        self.writer.wake.set()

    async def flush_status(self, *, final: bool = False) -> int:
        return await self.writer.flush(final=final)

    def notice(self, key: ResourceKey, type_: str, reason: str, message: str) -> None:
        self.events.notice(key, type_, reason, message)


def build_registry(
    core: OperatorCore, *, loop: asyncio.AbstractEventLoop | None = None
) -> kopf.OperatorRegistry:
    """Kopf handlers on a registry of their own (no global state: tests build several).

    ``loop`` is the loop that owns ``core`` when Kopf runs in a thread of its own: watch events are
    handed over to it. The handler is async because Kopf runs sync handlers in a thread pool, and the
    store and reconciler are not thread-safe.
    """
    registry = kopf.OperatorRegistry()

    async def on_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        event = own_copy(body)
        if loop is None or loop is asyncio.get_running_loop():
            core.on_object(type, event)
        else:
            loop.call_soon_threadsafe(core.on_object, type, event)

    for kind in ALL_KINDS:
        kopf.on.event(GROUP, VERSION, kind.plural, registry=registry)(on_event)
    kopf.on.event("", "v1", "secrets", registry=registry)(on_event)
    kopf.on.event("", "v1", "configmaps", registry=registry)(on_event)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return login_info(**kwargs)

    @kopf.on.probe(id="gateway", registry=registry, errors=kopf.ErrorsMode.PERMANENT)
    async def gateway_loop_responds(**_: Any) -> str:
        # Kopf's liveness endpoint runs in Kopf's thread: this round trip makes it fail (and the pod
        # restart) when the gateway's loop, where requests and deliveries run, is stuck.
        if loop is not None and loop is not asyncio.get_running_loop():
            probe = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop)
            await asyncio.wait_for(asyncio.wrap_future(probe), timeout=2.0)
        return "ok"

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_settings(settings)

    return registry


def own_copy(body: Mapping[str, Any]) -> dict[str, Any]:
    """A private copy of a watched object for the store, without ``metadata.managedFields`` (nothing here
    reads them, and every status write of every replica adds to them): an orjson round trip, a tenth of
    the time of ``copy.deepcopy`` (Kopf's bodies are plain JSON values)."""
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return orjson.loads(orjson.dumps({**body, "metadata": metadata}))  # type: ignore[no-any-return]


def login_info(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the ServiceAccount; elsewhere: $KUBECONFIG, read by the official ``kubernetes`` client
    as kubectl reads it, so exec plugins (EKS, GKE, AKS/kubelogin) and OIDC users work too (Kopf's own
    kubeconfig reader knows only tokens and certificates). It runs again when the apiserver answers 401,
    which re-runs an exec plugin for a fresh token."""
    # The client reads $KUBECONFIG once, when it is imported; read it now, as kubectl would.
    kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION = os.environ.get(
        "KUBECONFIG", "~/.kube/config"
    )
    try:
        return kopf.login_via_client(**kwargs)
    except kopf.LoginError:
        return None


def configure_settings(settings: kopf.OperatorSettings) -> None:
    # Our own annotation prefix, so .status holds only our fields and nothing says "zalando".
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=ANNOTATION_PREFIX)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
