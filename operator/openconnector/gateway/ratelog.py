"""Logging that a client cannot turn into a flood: at most one line per key per interval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """Logs the first message of each key, then at most one per ``interval`` seconds, saying how many
    were suppressed in between. Keys are few and fixed (a reason, an event type), never client text."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(
        self, level: int, key: str, message: str, *args: object, exc_info: BaseException | None = None
    ) -> bool:
        """Log now or count as suppressed; returns whether a line was written."""
        now = self._clock()
        if now < self._next.get(key, float("-inf")):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._next) >= self._max_keys and key not in self._next:
            self._next.clear()
            self._suppressed.clear()
        self._next[key] = now + self._interval
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += " (%d similar suppressed)"
            args = (*args, suppressed)
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True

    def info(self, key: str, message: str, *args: object) -> bool:
        return self.log(logging.INFO, key, message, *args)

    def warning(self, key: str, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)

    def error(self, key: str, message: str, *args: object, exc_info: BaseException | None = None) -> bool:
        return self.log(logging.ERROR, key, message, *args, exc_info=exc_info)
