"""The test's side of the Kubernetes API: kmock set up as an apiserver for our CRDs, a small kubectl
that changes objects over real HTTP (so the operator's watches see them), and views of what the operator
sent back (status patches and core/v1 Events from kmock's request log).

kmock stores objects as plain dicts and merges every PATCH into them. :class:`Apiserver` adds the few
apiserver behaviours the operator depends on: uid, creationTimestamp and generation on create,
generateName, a generation bump when the spec changes, and the status subresource's split (a PATCH of
``/status`` changes only ``.status``; a PATCH of the object never changes ``.status``).
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kmock
import yaml
from aiohttp import web

from openconnector.api.common import GROUP, VERSION

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
NAMESPACE = "zaken"  # not "default": proves the operator keeps namespaces apart and does not assume one
#: The bearer token the tests read the gateway's API with (see Apiserver._review).
READER_TOKEN = "reader-token"
OPERATOR_COMPONENT = "openconnector-operator"  # source.component of the operator's core/v1 Events


class Apiserver(kmock.KubernetesEmulator):
    """kmock's emulator with the apiserver semantics listed in the module docstring."""

    async def _handle(self, request: kmock.Request) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            review = self._review(request.resource.plural, request.data)
            if review is not None:
                return web.json_response(review, status=201)
            if request.action == kmock.action.CREATE:
                self._on_create(request.data)
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._on_patch(request, request.data)
        return await super()._handle(request)

    @staticmethod
    def _review(plural: str | None, body: dict[str, Any]) -> dict[str, Any] | None:
        """TokenReview and SubjectAccessReview, as the gateway's API asks them: the token ``reader`` is
        the user ``reader`` and may get and list everything; any other token is not authenticated."""
        spec = body.get("spec") or {}
        if plural == "tokenreviews":
            if spec.get("token") != READER_TOKEN:
                return {**body, "status": {"authenticated": False}}
            return {**body, "status": {"authenticated": True, "user": {"username": "reader", "groups": []}}}
        if plural == "subjectaccessreviews":
            verb = (spec.get("resourceAttributes") or {}).get("verb")
            allowed = spec.get("user") == "reader" and verb in ("get", "list")
            return {**body, "status": {"allowed": allowed}}
        return None

    @staticmethod
    def _on_create(body: dict[str, Any]) -> None:
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        if "spec" in body:
            meta.setdefault("generation", 1)

    def _on_patch(self, request: kmock.Request, patch: dict[str, Any]) -> None:
        resource, name = request.resource, request.name
        if resource is None or name is None:
            return
        key = (resource, request.namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return  # kmock answers 404 itself
        current = self.objects[key].raw
        if request.subresource == "status":
            for field_name in [f for f in patch if f != "status"]:
                del patch[field_name]
            return
        if self._has_status_subresource(resource):
            patch.pop("status", None)
        if "spec" in patch:
            merged = copy.deepcopy(current)
            kmock_patch = kmock.Object(merged)
            kmock_patch.patch({"spec": patch["spec"]})
            if kmock_patch.raw.get("spec") != current.get("spec"):
                generation = int((current.get("metadata") or {}).get("generation") or 1)
                patch.setdefault("metadata", {})["generation"] = generation + 1

    def _has_status_subresource(self, resource: kmock.resource) -> bool:
        return resource in self.resources and "status" in self.resources[resource].subresources


def crd_resources() -> dict[str, tuple[str, kmock.ResourceInfo]]:
    """kind -> (group/version/plural, discovery info), read from the CRDs we ship (crds/*.yaml)."""
    found: dict[str, tuple[str, kmock.ResourceInfo]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            info = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular"),
                namespaced=spec["scope"] == "Namespaced",
                shortnames=names.get("shortNames", []),
                categories=names.get("categories", []),
                verbs=["create", "delete", "get", "list", "patch", "update", "watch"],
                subresources=list(version.get("subresources") or {}),
            )
            found[names["kind"]] = (f"{spec['group']}/{version['name']}/{names['plural']}", info)
    return found


CRDS = crd_resources()
WATCHED = [kmock.resource(ref) for ref, _ in CRDS.values()] + [
    kmock.resource("", "v1", "secrets"),
    kmock.resource("", "v1", "configmaps"),
]


def install_crds(emulator: kmock.KubernetesEmulator) -> None:
    """Core resources (namespaces, events, secrets, ...) plus our five CRDs, for discovery."""
    emulator.resources.load_bundled()
    for reference, info in CRDS.values():
        emulator.resources[reference] = info


def watching(emulator: kmock.KubernetesEmulator) -> bool:
    """Whether a watch stream is open for every resource the operator follows.

    kmock replays existing objects to a new watch and then streams changes from the moment the stream
    subscribed to its change bus; a change made before that moment would be missed by the operator, so
    tests start changing things only once every stream is subscribed. (kmock has no public view of this.)
    """
    return all(emulator._buses[resource].consumer_count > 0 for resource in WATCHED)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class KubeError(AssertionError):
    pass


class Kubectl:
    """Creates, patches and deletes objects through kmock's HTTP API, as ``kubectl`` would."""

    def __init__(self, emulator: kmock.KubernetesEmulator, namespace: str = NAMESPACE) -> None:
        self.emulator = emulator
        self.namespace = namespace

    # ------------------------------------------------------------------------------- paths

    @staticmethod
    def reference(kind: str) -> str:
        if kind == "Secret":
            return "v1/secrets"
        if kind == "ConfigMap":
            return "v1/configmaps"
        return CRDS[kind][0]

    def collection_path(self, kind: str, namespace: str | None = None) -> str:
        ns = namespace or self.namespace
        if kind in ("Secret", "ConfigMap"):
            return f"/api/v1/namespaces/{ns}/{self.reference(kind).split('/')[1]}"
        return f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{self.reference(kind).rsplit('/', 1)[1]}"

    def object_path(self, kind: str, name: str, namespace: str | None = None) -> str:
        return f"{self.collection_path(kind, namespace)}/{name}"

    # ----------------------------------------------------------------------------- changes

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        async with self.emulator.request(method, path, json=body) as response:
            answer: dict[str, Any] = await response.json(content_type=None)
            if response.status >= 400:
                raise KubeError(f"{method} {path}: HTTP {response.status}: {answer.get('message')}")
            return answer

    def manifest(
        self,
        kind: str,
        name: str,
        spec: Mapping[str, Any],
        *,
        namespace: str | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace or self.namespace},
            "spec": dict(spec),
        }
        if status is not None:
            body["status"] = dict(status)
        return body

    async def create(
        self, kind: str, name: str, spec: Mapping[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        body = self.manifest(kind, name, spec, namespace=namespace)
        return await self._call("POST", self.collection_path(kind, namespace), body)

    def preload(
        self,
        kind: str,
        name: str,
        spec: Mapping[str, Any],
        *,
        status: Mapping[str, Any] | None = None,
        namespace: str | None = None,
    ) -> None:
        """Store an object directly (no watch event): for what exists before the operator starts."""
        ns = namespace or self.namespace
        body = self.manifest(kind, name, spec, namespace=ns, status=status)
        Apiserver._on_create(body)
        self.emulator.objects[self.reference(kind), ns, name] = body

    def vanish(self, kind: str, name: str, *, namespace: str | None = None) -> None:
        """Remove an object from storage without a DELETED watch event: a deletion the operator's watch
        missed (it happened while the watch was away, e.g. across a relist after "410 Gone")."""
        del self.emulator.objects[self.reference(kind), namespace or self.namespace, name]

    async def patch_spec(
        self, kind: str, name: str, spec: Mapping[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        """A merge patch of the spec (None removes a key), as ``kubectl patch --type merge``."""
        return await self._call("PATCH", self.object_path(kind, name, namespace), {"spec": dict(spec)})

    async def delete(self, kind: str, name: str, *, namespace: str | None = None) -> None:
        await self._call("DELETE", self.object_path(kind, name, namespace))

    async def create_secret(
        self, name: str, data: Mapping[str, str], *, namespace: str | None = None
    ) -> dict[str, Any]:
        """A Secret as the apiserver stores it: ``data`` base64-encoded (stringData is folded in)."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace or self.namespace},
            "data": {key: b64(value) for key, value in data.items()},
        }
        return await self._call("POST", self.collection_path("Secret", namespace), body)

    async def patch_secret(
        self, name: str, data: Mapping[str, str], *, namespace: str | None = None
    ) -> dict[str, Any]:
        body = {"data": {key: b64(value) for key, value in data.items()}}
        return await self._call("PATCH", self.object_path("Secret", name, namespace), body)

    async def create_configmap(
        self, name: str, data: Mapping[str, str], *, namespace: str | None = None
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace or self.namespace},
            "data": dict(data),
        }
        return await self._call("POST", self.collection_path("ConfigMap", namespace), body)

    async def patch_configmap(
        self, name: str, data: Mapping[str, str], *, namespace: str | None = None
    ) -> dict[str, Any]:
        return await self._call("PATCH", self.object_path("ConfigMap", name, namespace), {"data": dict(data)})

    # ---------------------------------------------------------------------------- readings

    def requests(self) -> list[kmock.Request]:
        """Every request kmock received so far, oldest first (iterating kmock yields its request log)."""
        return list(self.emulator)

    def stored(self, kind: str, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        """The object as kmock holds it now (after every patch the operator sent)."""
        found: dict[str, Any] = self.emulator.objects[
            self.reference(kind), namespace or self.namespace, name
        ].raw
        return found

    def status(self, kind: str, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        status: dict[str, Any] = self.stored(kind, name, namespace=namespace).get("status") or {}
        return status

    def status_patches(self, kind: str, name: str, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """Bodies of the PATCHes of ``/status`` the operator sent for one object, oldest first."""
        path = self.object_path(kind, name, namespace) + "/status"
        return [
            request.data
            for request in self.requests()
            if request.method == kmock.method.PATCH and request.url.path == path
        ]

    def core_events(
        self, *, name: str | None = None, kind: str | None = None, type_: str | None = None
    ) -> list[dict[str, Any]]:
        """core/v1 Events the operator POSTed (not Kopf's own), optionally about one object."""
        found = []
        for request in self.requests():
            if request.method != kmock.method.POST or not request.url.path.endswith("/events"):
                continue
            if not request.url.path.startswith("/api/v1/"):
                continue
            body = request.data
            if not isinstance(body, dict) or body.get("source", {}).get("component") != OPERATOR_COMPONENT:
                continue
            involved = body.get("involvedObject", {})
            if name is not None and involved.get("name") != name:
                continue
            if kind is not None and involved.get("kind") != kind:
                continue
            if type_ is not None and body.get("type") != type_:
                continue
            found.append(body)
        return found


def condition(status: Mapping[str, Any], type_: str) -> dict[str, Any]:
    """One condition of a status; fails the test if it is missing."""
    conditions: Iterable[dict[str, Any]] = status.get("conditions") or []
    for item in conditions:
        if item.get("type") == type_:
            return item
    raise AssertionError(f"no {type_} condition in {dict(status)!r}")


def ready_reason(status: Mapping[str, Any]) -> str | None:
    """The Ready condition's reason, or None while there is none."""
    for item in status.get("conditions") or []:
        if item.get("type") == "Ready":
            return str(item.get("reason"))
    return None
