"""Resources as the reconciler sees them, whatever they came from (the apiserver or YAML files).

Cluster mode and standalone mode differ only in what fills a :class:`ResourceStore`.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from openconnector.api.common import GROUP

# ResourceKey is re-exported: the store's callers found it here before it moved to api/keys.py.
from openconnector.api.keys import ResourceKey as ResourceKey
from openconnector.api.kinds import CONFIG_MAP, KINDS_BY_NAME, SECRET, Kind

NO_ANNOTATIONS: Mapping[str, str] = types.MappingProxyType({})
# Strings up to this length in a stored spec are interned: thousands of subscriptions repeat the same keys,
# event types and modes, and the YAML and JSON parsers make a new string object for each occurrence.
_INTERN_UP_TO = 256


def compact_spec(value: Any) -> Any:
    """A spec as the store keeps it: the same values, with dict keys and short strings interned."""
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= _INTERN_UP_TO else value
    if isinstance(value, dict):
        return {compact_spec(k): compact_spec(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact_spec(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Resource:
    """One openconnector.nl object: identity plus its raw spec (validated later, per kind)."""

    kind: str
    namespace: str
    name: str
    spec: Mapping[str, Any]
    generation: int = 1
    uid: str = ""
    # Where it came from, for messages: "examples/zgw.yaml:3" in standalone mode, "" in a cluster.
    origin: str = ""
    annotations: Mapping[str, str] = field(default_factory=lambda: NO_ANNOTATIONS)
    # metadata.creationTimestamp (standalone: when the store first held it); the older one wins a conflict.
    created: str = ""
    # Built once: the store, the routing table, its results and routes then share one key object.
    key: ResourceKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", ResourceKey(self.kind, self.namespace, self.name))


@dataclass(frozen=True)
class SecretOrConfigMap:
    """A Secret or ConfigMap: decoded bytes per key."""

    namespace: str
    name: str
    data: Mapping[str, bytes]
    kind: str = SECRET

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class FieldProblem:
    """A problem with one field of one resource. ``field`` is a path such as spec.filters[0].sql."""

    field: str
    message: str
    reason: str = "InvalidSpec"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def _loc_to_path(loc: tuple[int | str, ...], root: str) -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or part.startswith(("function-", "list[", "dict[")):
            # pydantic's union member tags carry no information for the user
            continue
        else:
            path += f".{part}"
    return path


# "targetId: ...", "auth.secretRef: ..." or, relative to a list, "[0].any[1]: ...".
_FIELD_PREFIX = re.compile(
    r"^((?:\[\d+\]|[A-Za-z][A-Za-z0-9]*)(?:\.[A-Za-z][A-Za-z0-9]*|\[\d+\])*): (.*)$", re.S
)


def validation_problems(error: ValidationError, root: str = "spec") -> list[FieldProblem]:
    """Turn pydantic's errors into field-named problems. Model validators prefix their message with a
    field name ("targetId: ...") so that it lands on the right path."""
    problems = []
    for item in error.errors(include_url=False):
        path = _loc_to_path(tuple(item["loc"]), root)
        message = str(item["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
            prefixed = _FIELD_PREFIX.match(message)
            if prefixed:
                relative = prefixed.group(1)
                path += relative if relative.startswith("[") else f".{relative}"
                message = prefixed.group(2)
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required field missing"
        elif item["type"] == "literal_error":
            message = f"{item.get('input')!r} is not allowed; {message[0].lower()}{message[1:]}"
        # The filters' shape is checked by the model, their values by the compiler: one reason for both.
        reason = "InvalidFilter" if path.startswith("spec.filters") else "InvalidSpec"
        problems.append(FieldProblem(path, message, reason))
    return problems


def parse_spec(kind: Kind, spec: Mapping[str, Any]) -> tuple[BaseModel | None, list[FieldProblem]]:
    """Validate a raw spec with the kind's model."""
    try:
        # Strict: "3" is not an integer and "false" is not a boolean, as the apiserver says too.
        return kind.spec.model_validate(dict(spec), strict=True), []
    except ValidationError as error:
        return None, validation_problems(error)


def decode_secret_or_configmap(kind: str, doc: Mapping[str, Any]) -> SecretOrConfigMap:
    """A Secret or ConfigMap object (``kind`` says which; LIST items carry no kind), decoded."""
    return _decode_secret(doc) if kind == SECRET else _decode_configmap(doc)


def _decode_secret(doc: Mapping[str, Any]) -> SecretOrConfigMap:
    """A Secret manifest's ``data`` (base64) and ``stringData`` (plain), as Kubernetes merges them."""
    meta = doc.get("metadata") or {}
    decoded: dict[str, bytes] = {}
    for key, value in (doc.get("data") or {}).items():
        decoded[str(key)] = base64.b64decode(str(value), validate=True)
    for key, value in (doc.get("stringData") or {}).items():
        decoded[str(key)] = str(value).encode()
    return SecretOrConfigMap(str(meta.get("namespace") or "default"), str(meta.get("name", "")), decoded)


def _decode_configmap(doc: Mapping[str, Any]) -> SecretOrConfigMap:
    meta = doc.get("metadata") or {}
    decoded = {str(k): str(v).encode() for k, v in (doc.get("data") or {}).items()}
    return SecretOrConfigMap(
        str(meta.get("namespace") or "default"), str(meta.get("name", "")), decoded, CONFIG_MAP
    )


def resource_from_object(obj: Mapping[str, Any], origin: str = "") -> Resource | None:
    """A Resource from an object dict (apiserver body or YAML document); None if not one of ours."""
    api_version = str(obj.get("apiVersion", ""))
    if api_version.split("/", 1)[0] != GROUP or obj.get("kind") not in KINDS_BY_NAME:
        return None
    meta = obj.get("metadata") or {}
    spec = obj.get("spec")
    return Resource(
        kind=str(obj["kind"]),
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name", "")),
        spec=compact_spec(spec) if isinstance(spec, Mapping) else {},
        generation=int(meta.get("generation") or 1),
        uid=str(meta.get("uid", "")),
        origin=origin,
        annotations=dict(meta["annotations"]) if meta.get("annotations") else NO_ANNOTATIONS,
        created=str(meta.get("creationTimestamp") or ""),
    )


class ResourceStore:
    """The desired state: every resource and Secret the reconciler knows, with a change counter."""

    def __init__(self) -> None:
        self.resources: dict[ResourceKey, Resource] = {}
        self.secrets: dict[ResourceKey, SecretOrConfigMap] = {}
        self.revision = 0

    def apply(self, item: Resource | SecretOrConfigMap) -> bool:
        """Store an object; returns whether anything changed."""
        target: dict[ResourceKey, Any] = self.resources if isinstance(item, Resource) else self.secrets
        if target.get(item.key) == item:
            return False
        target[item.key] = item
        self.revision += 1
        return True

    def delete(self, key: ResourceKey) -> bool:
        removed = self.resources.pop(key, None) or self.secrets.pop(key, None)
        if removed is not None:
            self.revision += 1
        return removed is not None

    def replace_all(self, items: Iterable[Resource | SecretOrConfigMap]) -> bool:
        """Make the store hold exactly ``items`` (a directory rescan); returns whether anything changed.

        Files carry no metadata, so the store keeps two fields as the apiserver would:
        - generation: a resource whose spec changed gets its stored generation + 1. observedGeneration
          then moves, and a subscription suspended by 410 or autoPauseAfter resumes when its spec changes.
        - creationTimestamp: the time the store first held the resource, so that in a conflict (two
          Consumers on one endpoint) the one already there keeps it, as in a cluster. Resources first
          read in the same scan tie, and name order decides."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        resources = {i.key: self._as_stored(i, now) for i in items if isinstance(i, Resource)}
        secrets = {i.key: i for i in items if isinstance(i, SecretOrConfigMap)}
        if resources == self.resources and secrets == self.secrets:
            return False
        self.resources, self.secrets = resources, secrets
        self.revision += 1
        return True

    def _as_stored(self, resource: Resource, now: str) -> Resource:
        stored = self.resources.get(resource.key)
        if stored is None:
            return resource if resource.created else dataclasses.replace(resource, created=now)
        generation = stored.generation + 1 if stored.spec != resource.spec else stored.generation
        return dataclasses.replace(
            resource, generation=generation, created=resource.created or stored.created
        )
