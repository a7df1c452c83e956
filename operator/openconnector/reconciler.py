"""One reconciler for both modes: specs in a store -> compiled routing table -> installed in the gateway.

Cluster mode feeds the store from Kopf handlers, standalone mode from a watched directory; everything
after the store is shared. Bursts of changes (``kubectl apply -f`` of a directory, a GitOps sync) are
coalesced into one compile; unchanged parts are reused through the compiler's memo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from openconnector.egress import EgressPolicy
from openconnector.resources import ResourceKey, ResourceStore
from openconnector.routing.compiler import Memo, compile_table
from openconnector.routing.table import ResourceResult, RoutingTable

log = logging.getLogger(__name__)

TableListener = Callable[[RoutingTable], None]


class NotReadyLog:
    """Logs each not-ready resource once per change, naming kind/namespace/name, the field and the reason
    (and, in standalone mode, the file), and once more when it is ready again; a table that changes
    nothing about it logs nothing. In a cluster the same is in each resource's status."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._logger = logger
        self._seen: dict[ResourceKey, tuple[int, str, str]] = {}

    def __call__(self, table: RoutingTable) -> None:
        current: dict[ResourceKey, ResourceResult] = {
            key: result for key, result in table.results.items() if not result.ready
        }
        for key, result in current.items():
            said = (result.generation, result.reason, result.message)
            if self._seen.get(key) != said:
                self._seen[key] = said
                where = f" ({result.origin})" if result.origin else ""
                self._logger.warning("%s not ready%s: %s: %s", key, where, result.reason, result.message)
        for key in list(self._seen):
            if key not in current:
                del self._seen[key]
                if key in table.results:
                    self._logger.info("%s is ready again", key)


class Reconciler:
    def __init__(
        self,
        store: ResourceStore,
        install: TableListener,
        *,
        debounce_seconds: float = 0.02,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.store = store
        self.egress = egress
        self._install = install
        self._listeners: list[TableListener] = [NotReadyLog()]
        self._debounce = debounce_seconds
        self._dirty = asyncio.Event()
        self._compiled = asyncio.Condition()
        self.memo = Memo()
        self.table = RoutingTable.empty()
        self.compiled_revision = -1
        self.last_compile_seconds = 0.0

    def add_listener(self, listener: TableListener) -> None:
        self._listeners.append(listener)

    def notify(self) -> None:
        """Something in the store changed: compile soon."""
        self._dirty.set()

    def rebuild(self) -> RoutingTable:
        """Compile the store now and install the result."""
        revision = self.store.revision
        started = time.perf_counter()
        table = compile_table(
            self.store.resources, self.store.secrets, version=revision, memo=self.memo, egress=self.egress
        )
        self.last_compile_seconds = time.perf_counter() - started
        self._install(table)
        self.table = table
        self.compiled_revision = revision
        for listener in self._listeners:
            listener(table)
        not_ready = sum(1 for r in table.results.values() if not r.ready)
        log.info(
            "routing table v%d installed: %d resources (%d not ready) in %.1f ms",
            revision, len(table.results), not_ready, self.last_compile_seconds * 1000,
        )  # fmt: skip
        return table

    async def run(self) -> None:
        """Recompile whenever notified, coalescing bursts."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._debounce)
            self._dirty.clear()
            if self.store.revision != self.compiled_revision:
                try:
                    self.rebuild()
                except Exception:  # a compiler bug must not stop routing updates for good
                    log.exception("routing table compile failed; keeping the previous table")
            async with self._compiled:
                self._compiled.notify_all()

    async def wait_for_revision(self, revision: int, deadline_seconds: float = 10.0) -> None:
        """Wait until a table at least as new as ``revision`` is installed."""
        async with asyncio.timeout(deadline_seconds), self._compiled:
            await self._compiled.wait_for(lambda: self.compiled_revision >= revision)
