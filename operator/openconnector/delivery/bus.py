"""The delivery bus: the one seam between intake (the gateway) and delivery.

Two implementations: :class:`~openconnector.delivery.memory.Dispatcher` (in-memory lanes, the default;
nothing to run, nothing survives the process) and
:class:`~openconnector.delivery.jetstream.JetStreamBus` (NATS JetStream; accepted means stored, and
several gateway processes share the work). The gateway only talks to this protocol.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, TypeVar

from openconnector.api.keys import ResourceKey
from openconnector.delivery.attempts import AttemptLog
from openconnector.delivery.health import SubscriptionHealth
from openconnector.delivery.outcomes import OfferResult
from openconnector.delivery.prepared import DeliverableEvent
from openconnector.delivery.target import DeliveryTarget

__all__ = ["DeliveryBus"]

E_contra = TypeVar("E_contra", bound=DeliverableEvent, contravariant=True)


class DeliveryBus(Protocol[E_contra]):
    """What the gateway needs of a bus.

    Targets: :meth:`set_target`/:meth:`update_target` (the routing-table install) are the only ways a
    subscription comes into existence; :meth:`remove_target` ends it (what is pending is drained for
    up to the deadline, the rest counted as dropped).

    Intake: :meth:`store` takes a whole fan-out plan ``[(target_key, event), …]`` and stores all of it
    or none of it. A refusal for lack of room says so in the :class:`OfferResult` (``full``,
    ``budget_needed``: call :meth:`wait_for_room`, then store again); a bus that cannot store at all
    now raises :class:`~openconnector.delivery.outcomes.BusUnavailableError` (answer 503). A store
    that waits ends by ``deadline`` (the event loop's ``time()``), raising :class:`TimeoutError` past it.
    """

    async def start(self) -> None: ...

    async def close(self, drain_deadline: float = 10.0) -> int: ...

    @property
    def closed(self) -> bool: ...

    @property
    def ready(self) -> bool:
        """Whether intake can store now (False while a durable bus is unreachable)."""
        ...

    @property
    def readiness_detail(self) -> str:
        """Why not ready (empty when ready)."""
        ...

    def set_target(self, target: DeliveryTarget) -> None: ...

    def update_target(self, key: ResourceKey, target: DeliveryTarget) -> None: ...

    async def remove_target(self, key: ResourceKey, *, drain_deadline: float = 10.0) -> int: ...

    def resume(self, key: ResourceKey) -> bool: ...

    def target_keys(self) -> list[ResourceKey]: ...

    def target(self, key: ResourceKey) -> DeliveryTarget: ...

    def health(self, key: ResourceKey) -> SubscriptionHealth: ...

    def attempts(self, key: ResourceKey) -> AttemptLog: ...

    def queue_depth(self, key: ResourceKey) -> int: ...

    async def store(
        self, plan: Sequence[tuple[ResourceKey, E_contra]], *, deadline: float | None = None
    ) -> OfferResult: ...

    async def wait_for_room(self, keys: Collection[ResourceKey], *, needed_bytes: int = 0) -> None: ...

    async def submit(self, target: DeliveryTarget | ResourceKey, event: E_contra) -> None: ...

    async def join(self, key: ResourceKey | None = None) -> None: ...
