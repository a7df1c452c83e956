"""A small async Kubernetes API client for what Kopf does not do for us: the initial LIST, status
patches and Kubernetes Events. It uses the credentials of the same login as Kopf (``kopf.ConnectionInfo``)
and logs in again once when the apiserver answers 401 (an exec plugin's token expired).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import orjson

from openconnector.api.common import GROUP, VERSION
from openconnector.status.timefmt import rfc3339_micro

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _now() -> str:
    return rfc3339_micro(time.time())


def pod_name() -> str:
    """This replica's identity: ``$POD_NAME`` (the chart sets it from the downward API), else the host."""
    return os.environ.get("POD_NAME") or socket.gethostname()


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_namespace() -> str:
    """Where this replica's Leases live: ``$POD_NAMESPACE``, else the ServiceAccount's, else default."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


Login = Callable[[], "kopf.ConnectionInfo | None"]


def _session(info: kopf.ConnectionInfo) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers=dict(info.as_http_headers()),
        connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=20),
        timeout=aiohttp.ClientTimeout(total=30),
    )  # basic auth, if any, is in as_http_headers() (Kopf deprecated as_aiohttp_basic_auth)


class KubeClient:
    def __init__(
        self, info: kopf.ConnectionInfo, *, field_manager: str = "openconnector-operator",
        login: Login | None = None, pod: str | None = None,
    ) -> None:  # fmt: skip
        self.pod_name = pod or pod_name()
        self._server = info.server.rstrip("/")
        self._session = _session(info)
        self._login = login
        self._field_manager = field_manager
        self.patches = 0  # status PATCHes sent (the benchmark counts them)
        self.conflicts = 0  # status PATCHes refused with 409 (a resourceVersion precondition failed)
        self.events_posted = 0

    async def close(self) -> None:
        await self._session.close()

    @staticmethod
    def custom_path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
        path = f"/apis/{GROUP}/{VERSION}"
        if namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{plural}"
        if name:
            path += f"/{name}"
        return path

    @staticmethod
    def core_path(plural: str, namespace: str | None = None) -> str:
        return f"/api/v1/namespaces/{namespace}/{plural}" if namespace else f"/api/v1/{plural}"

    async def _relogin(self) -> bool:
        """New credentials after a 401; the login may run an exec plugin, so not on the event loop."""
        if self._login is None:
            return False
        info = await asyncio.to_thread(self._login)
        if info is None:
            return False
        old, self._session = self._session, _session(info)
        self._server = info.server.rstrip("/")
        await old.close()
        log.info("logged in again after the apiserver answered 401")
        return True

    async def _request(
        self, method: str, path: str, *, body: Any = None, content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        try:
            return await self._request_once(method, path, body, content_type, params)
        except ApiError as error:
            if error.status != 401 or not await self._relogin():
                raise
            return await self._request_once(method, path, body, content_type, params)

    async def _request_once(
        self, method: str, path: str, body: Any, content_type: str, params: Mapping[str, str] | None
    ) -> Any:
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self._session.request(
            method, self._server + path, data=data, headers=headers, params=params
        ) as response:
            raw = await response.read()
            if response.status >= 400:
                try:
                    message = str(orjson.loads(raw).get("message", raw[:200]))
                except (orjson.JSONDecodeError, AttributeError):
                    message = raw[:200].decode(errors="replace")
                raise ApiError(response.status, message)
            return orjson.loads(raw) if raw else None

    async def create(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        """POST ``body`` (TokenReview, SubjectAccessReview): the status and the answer, never raising
        for an error status."""
        try:
            return 201, await self._request("POST", path, body=body)
        except ApiError as error:
            return error.status, {}

    async def list_items(self, path: str) -> list[dict[str, Any]]:
        """Every object at a collection path (follows continue tokens)."""
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "500"}
        while True:
            page = await self._request("GET", path, params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any], *,
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:  # fmt: skip
        """JSON merge patch of ``.status``; returns the object as stored. With ``resource_version`` the
        patch only applies to that version (the apiserver answers 409 otherwise)."""
        path = self.custom_path(plural, namespace, name) + "/status"
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        self.patches += 1
        try:
            stored = await self._request(
                "PATCH",
                path,
                body=body,
                content_type="application/merge-patch+json",
                params={"fieldManager": self._field_manager},
            )
        except ApiError as error:
            if error.status == 409:
                self.conflicts += 1
            raise
        return stored if isinstance(stored, dict) else None

    # Generic object calls (the Leases of the status shards).

    async def get_object(self, path: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._request("GET", path)
        return found

    async def create_object(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._request(
            "POST", path, body=body, params={"fieldManager": self._field_manager}
        )
        return created

    async def replace_object(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        replaced: dict[str, Any] = await self._request(
            "PUT", path, body=body, params={"fieldManager": self._field_manager}
        )
        return replaced

    async def delete_object(self, path: str) -> None:
        await self._request("DELETE", path)

    async def post_event(
        self, *, kind: str, namespace: str, name: str, uid: str, type_: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event on the object (what ``kubectl describe`` and ``get events`` show)."""
        now = _now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": kind,
                "name": name,
                "namespace": namespace,
                "uid": uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "openconnector-operator"},
            "reportingComponent": "openconnector.nl/operator",
            "reportingInstance": self.pod_name,
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "count": 1,
        }
        await self._request("POST", self.core_path("events", namespace), body=body)
        self.events_posted += 1
