"""Conditions: the condition book keeps ``lastTransitionTime`` until a condition's status flips."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from openconnector.resources import ResourceKey
from openconnector.routing.table import ResourceResult
from openconnector.status.timefmt import rfc3339

# metav1.Condition allows 32768 characters of message.
MESSAGE_LIMIT = 32768


class ConditionBook:
    """Remembers conditions so that lastTransitionTime only moves when the status flips."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[tuple[ResourceKey, str], tuple[str, str]] = {}

    def condition(
        self, key: ResourceKey, type_: str, status: str, reason: str, message: str, generation: int
    ) -> dict[str, Any]:
        previous = self._seen.get((key, type_))
        if previous is None or previous[0] != status:
            previous = (status, rfc3339(self._clock()))
            self._seen[(key, type_)] = previous
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message[:MESSAGE_LIMIT],
            "lastTransitionTime": previous[1],
            "observedGeneration": generation,
        }

    def seed(self, key: ResourceKey, conditions: list[Mapping[str, Any]]) -> None:
        for cond in conditions:
            if "type" in cond and "status" in cond and "lastTransitionTime" in cond:
                self._seen[(key, str(cond["type"]))] = (str(cond["status"]), str(cond["lastTransitionTime"]))

    def forget(self, key: ResourceKey) -> None:
        for entry in [k for k in self._seen if k[0] == key]:
            del self._seen[entry]


def ready_condition(book: ConditionBook, result: ResourceResult) -> dict[str, Any]:
    return book.condition(
        result.key,
        "Ready",
        "True" if result.ready else "False",
        result.reason,
        result.message,
        result.generation,
    )
