"""``openconnector validate``: check manifests offline, with the same models and compiler as the gateway."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from openconnector.manifests import load_manifests
from openconnector.resources import ResourceKey
from openconnector.routing.compiler import compile_table, problems_of


@dataclass(frozen=True)
class Finding:
    origin: str  # file:document
    subject: str  # Kind/name, or "" for a file-level problem
    field: str
    message: str

    def __str__(self) -> str:
        parts = [self.origin]
        if self.subject:
            parts.append(self.subject)
        if self.field:
            parts.append(self.field)
        return ": ".join([*parts, self.message])


def validate_paths(paths: Iterable[Path]) -> tuple[list[Finding], int]:
    """All findings, and the number of openconnector resources checked."""
    loaded = load_manifests(paths)
    findings = [Finding(p.origin, "", "", p.message) for p in loaded.problems]
    seen: dict[ResourceKey, str] = {}
    for res in loaded.resources:
        if res.key in seen:
            findings.append(
                Finding(
                    res.origin, f"{res.kind}/{res.name}", "metadata.name", f"duplicate of {seen[res.key]}"
                )
            )
        seen.setdefault(res.key, res.origin)
    table = compile_table({r.key: r for r in loaded.resources}, {s.key: s for s in loaded.secrets}, version=1)
    for result, problem in problems_of(table):
        findings.append(
            Finding(result.origin, f"{result.key.kind}/{result.key.name}", problem.field, problem.message)
        )
    findings.sort(key=lambda f: _origin_order(f.origin))
    return findings, len(loaded.resources)


def _origin_order(origin: str) -> tuple[str, int]:
    path, _, index = origin.rpartition(":")
    return (path, int(index)) if index.isdigit() else (origin, 0)
