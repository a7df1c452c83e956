"""Bounds on what one client may make the gateway do: one place for every ingress limit and its default.

Each field is a flag of ``serve`` and ``run`` and a chart value (docs/operations.md, "Security model").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# orjson refuses to write more than 255 levels, and an event adds one (the structured-mode envelope) or
# two (a batch) around its data; the dead-letter copy adds none. 250 keeps every accepted body encodable.
ORJSON_MAX_DEPTH: Final = 255
MAX_ALLOWED_DEPTH: Final = ORJSON_MAX_DEPTH - 5


@dataclass(frozen=True)
class RequestLimits:
    """Per-request and per-connection bounds of the HTTP server."""

    # Nesting of any JSON the gateway accepts (event data, webhook bodies, mapped objects); deeper input
    # is refused before anything is accepted, so the delivery engine can always encode what it queued.
    max_json_depth: int = 64
    # Seconds a connection may take to send a complete request head (request line and headers).
    header_timeout: float = 10.0
    # Seconds a request body may take to arrive once the head is in.
    body_timeout: float = 30.0
    # Seconds an idle keep-alive connection stays open between requests.
    keepalive_timeout: float = 15.0
    # Open client connections at once; one more is answered 503 problem+json and closed.
    max_connections: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.max_json_depth <= MAX_ALLOWED_DEPTH:
            raise ValueError(f"max_json_depth must be between 1 and {MAX_ALLOWED_DEPTH}")
        if min(self.header_timeout, self.body_timeout, self.keepalive_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
