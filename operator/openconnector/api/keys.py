"""Resource identity: :class:`ResourceKey`, the one name of a resource everywhere in the operator.

Pure (no imports beyond the standard library), so every layer uses it: the store, the compiler, the
routing table, both delivery buses (a subscription's key on the bus is its ``ResourceKey``), status,
metrics and the message log.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ResourceKey"]


class ResourceKey(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def namespaced_name(self) -> str:
        """``namespace/name``: how messages and the CLI show a resource whose kind is clear from context."""
        return f"{self.namespace}/{self.name}"
