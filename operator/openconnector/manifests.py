"""Loading Kubernetes YAML manifests from files and directories (standalone mode and the validator)."""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from openconnector.api.common import API_VERSION, K8S_NAME_PATTERN
from openconnector.api.kinds import DATA_KINDS
from openconnector.resources import (
    Resource,
    SecretOrConfigMap,
    decode_secret_or_configmap,
    resource_from_object,
)

YAML_SUFFIXES = (".yaml", ".yml")
_NAME = re.compile(K8S_NAME_PATTERN)
# libyaml's safe loader when PyYAML was built with it: the same documents, about 8x faster.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Document:
    """One YAML document and where it was: ``origin`` is ``path:index`` (1-based)."""

    origin: str
    body: dict[str, Any]


@dataclass(frozen=True)
class LoadProblem:
    origin: str
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.message}"


def yaml_files(paths: Iterable[Path]) -> list[Path]:
    """Every YAML file named, or found below a named directory, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file()))
        else:
            found.append(path)
    return found


def _file_documents(path: Path) -> Iterator[Document | LoadProblem]:
    """The documents of one file, parsed one at a time; raises OSError or YAMLError."""
    for index, body in enumerate(
        yaml.load_all(path.read_text(encoding="utf-8"), Loader=_SafeLoader), start=1
    ):
        origin = f"{path}:{index}"
        if body is None:
            continue
        if not isinstance(body, dict):
            yield LoadProblem(origin, "a manifest must be a mapping")
            continue
        if body.get("kind") == "List" and isinstance(body.get("items"), list):
            for item in body["items"]:
                if isinstance(item, dict):
                    yield Document(origin, item)
            continue
        yield Document(origin, body)


def _unreadable(path: Path, error: Exception) -> LoadProblem:
    return LoadProblem(str(path), f"cannot read YAML: {error}".replace("\n", " "))


@dataclass
class LoadedManifests:
    resources: list[Resource]
    secrets: list[SecretOrConfigMap]
    problems: list[LoadProblem]

    def extend(self, other: LoadedManifests) -> None:
        self.resources += other.resources
        self.secrets += other.secrets
        self.problems += other.problems


def load_manifests(paths: Iterable[Path]) -> LoadedManifests:
    """Our resources plus the Secrets and ConfigMaps they may reference; other kinds are ignored.

    Each document becomes its resource as soon as it is parsed, so a 10,000-document file never holds
    every parsed document at once (the peak, and the heap left fragmented after it, would stay in RSS); a
    file that turns out not to be valid YAML contributes nothing but its problem."""
    loaded = LoadedManifests([], [], [])
    for path in yaml_files(paths):
        found = LoadedManifests([], [], [])
        try:
            for item in _file_documents(path):
                _load_one(found, item)
        except (OSError, yaml.YAMLError) as error:
            loaded.problems.append(_unreadable(path, error))
            continue
        loaded.extend(found)
    return loaded


def _load_one(loaded: LoadedManifests, item: Document | LoadProblem) -> None:
    if isinstance(item, LoadProblem):
        loaded.problems.append(item)
        return
    body = item.body
    resource = resource_from_object(body, origin=item.origin)
    if resource is not None:
        if body.get("apiVersion") != API_VERSION:
            message = (
                f"{resource.kind}: apiVersion {body.get('apiVersion')!r} is not served; use {API_VERSION}"
            )
            loaded.problems.append(LoadProblem(item.origin, message))
            return
        if not resource.name or not _NAME.fullmatch(resource.name) or len(resource.name) > 253:
            message = f"{resource.kind}/{resource.name}: metadata.name must be a lowercase RFC 1123 name"
            loaded.problems.append(LoadProblem(item.origin, message))
            return
        loaded.resources.append(resource)
    elif body.get("apiVersion") == "v1" and body.get("kind") in DATA_KINDS:
        try:
            decoded = decode_secret_or_configmap(body["kind"], body)
        except (binascii.Error, ValueError) as error:
            loaded.problems.append(LoadProblem(item.origin, f"Secret data is not valid base64: {error}"))
            return
        loaded.secrets.append(decoded)
    elif str(body.get("apiVersion", "")).startswith("openconnector.nl/"):
        loaded.problems.append(LoadProblem(item.origin, f"unknown kind {body.get('kind')!r}"))
