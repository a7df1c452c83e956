"""The Consumer's target: the request to a Source (or a register's objects API) and what its answer means.

Pure: the HTTP call itself is the gateway's (``gateway/webhooks.py``); this module says what to send and
turns the answer into the stored object or a :class:`~openconnector.refusal.Refusal` (502: the sender
retries, nothing is emitted for a request that was not stored).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import orjson

from openconnector.refusal import Refusal

__all__ = [
    "MAX_ANSWER_BYTES",
    "TargetCall",
    "object_id",
    "target_answer",
    "target_call",
    "target_unreachable",
    "unreachable_reason",
]

MAX_ANSWER_BYTES = 1024 * 1024
"""At most this much of a target's answer is read (the stored object, for register targets)."""


class _SourceLocation(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def timeout(self) -> float: ...


class _Source(Protocol):
    @property
    def target(self) -> _SourceLocation: ...
    @property
    def register(self) -> str: ...


@dataclass(frozen=True)
class TargetCall:
    """One POST to a Source."""

    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout: float


def target_call(source: _Source, target_type: str | None, schema: str | None, payload: Any) -> TargetCall:
    """The request that stores ``payload``: the Source's location, or for ``register/schema`` the
    OpenRegister objects API ``<location>/objects/<register>/<schema>``."""
    url = source.target.url
    if target_type == "register/schema":
        url = f"{url}/objects/{quote(source.register, safe='')}/{quote(schema or '', safe='')}"
    headers = {"Content-Type": "application/json", **source.target.headers}
    return TargetCall(url, orjson.dumps(payload), headers, source.target.timeout)


def unreachable_reason(error: BaseException) -> str:
    """What the status records for a target that did not answer (never the error's text: it may hold
    the URL's credentials)."""
    return f"{type(error).__name__}: target unreachable"


def target_unreachable(reason: str) -> Refusal:
    return Refusal(502, "target-unreachable", f"the target did not answer ({reason})", targetStatus=None)


def target_answer(status: int, raw: bytes) -> Any:
    """The decoded JSON answer of a 2xx (None when empty or not JSON); a Refusal otherwise."""
    if not 200 <= status < 300:
        raise Refusal(502, "target-failed", f"the target answered HTTP {status}", targetStatus=status)
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def object_id(stored: Any, fallback: Any) -> str | None:
    """The stored object's id in a register's answer (``id``, ``uuid`` or ``@self.id``), else in the
    payload sent."""
    for candidate in (stored, fallback):
        if isinstance(candidate, dict):
            for key in ("id", "uuid"):
                if isinstance(candidate.get(key), str | int):
                    return str(candidate[key])
            meta = candidate.get("@self")
            if isinstance(meta, dict) and isinstance(meta.get("id"), str | int):
                return str(meta["id"])
    return None
