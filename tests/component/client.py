"""A tiny HTTP client for component tests: one call, the whole answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy


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
