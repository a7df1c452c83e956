"""The one refusal type: what the gateway answers when it will not take a request.

Pure (no aiohttp): the consumers package raises it, and ``gateway/problems.py`` renders it as an RFC 9457
``application/problem+json`` response (:func:`openconnector.gateway.problems.refusal_problem`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class Refusal(Exception):
    """A request refused with ``status``; ``slug`` names the problem type, ``detail`` is safe to show.

    ``label`` is the machine code for counters and logs (``status.rejectedByReason``); it defaults to
    the slug. ``headers`` go with the answer (``Retry-After``, ``WWW-Authenticate``); ``errors`` and
    ``members`` become problem members.
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        label: str | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
        **members: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.label = label if label is not None else slug
        self.headers = dict(headers) if headers else None
        self.errors = tuple(errors)
        self.members = members

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.label!r}, {self.detail!r})"
