"""A tiny HTTP client for tests: one call, the whole answer; and the problem+json check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from openconnector.gateway.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def json(self) -> Any:
        return orjson.loads(self.body)


async def call(
    method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> Answer:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=dict(headers or {})) as response,
    ):
        return Answer(response.status, response.headers, await response.read())


async def post(url: str, body: bytes, headers: Mapping[str, str] | None = None) -> Answer:
    return await call("POST", url, body=body, headers=headers)


def assert_problem(answer: Answer, status: int, slug: str) -> dict[str, Any]:
    """The answer is an RFC 9457 problem of this status and type; returns its body."""
    assert answer.status == status, answer.body
    assert answer.content_type == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = answer.json()
    assert body["type"] == PROBLEM_BASE + slug
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert "Traceback" not in answer.body.decode()
    return body
