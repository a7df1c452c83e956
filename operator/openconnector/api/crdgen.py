"""Generate CustomResourceDefinitions from the pydantic models.

Pydantic emits JSON Schema (draft 2020-12, with $defs, anyOf for optionals, titles). Kubernetes wants a
*structural* OpenAPI v3 schema: every node typed, no $ref, no anyOf/oneOf carrying types, no
additionalProperties next to properties. This module does that translation and nothing else.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from openconnector.api.common import CATEGORY, GROUP, VERSION
from openconnector.api.kinds import ALL_KINDS, Kind

PRESERVE_KEY = "x-kubernetes-preserve-unknown-fields"
# JSON Schema keywords that carry over unchanged into the structural schema.
_KEPT = {
    "type", "description", "default", "enum", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "required",
    "x-kubernetes-validations", "nullable", "example", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}  # fmt: skip
# Formats the apiserver understands; others are dropped rather than silently ignored by it.
_FORMATS = {"date-time", "int32", "int64", "byte", "date"}


class SchemaError(ValueError):
    """The model cannot be expressed as a structural schema."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Replace a $ref by its target, keeping sibling keys (description, default) of the referring node."""
    if "$ref" not in node:
        return node
    name = node["$ref"].rsplit("/", 1)[-1]
    merged: dict[str, Any] = copy.deepcopy(defs[name])
    for key, value in node.items():
        if key != "$ref":
            merged[key] = value
    return merged


def _structural(node: dict[str, Any], defs: dict[str, Any], path: str, *, in_status: bool) -> dict[str, Any]:
    node = _resolve(node, defs)

    if node.get(PRESERVE_KEY):
        out: dict[str, Any] = {"description": node["description"], PRESERVE_KEY: True}
        # Typed as an object when every variant is one (CEL rules can then see the field); a value
        # that may be a list or a map (filters) stays untyped, which structural schemas allow here.
        variants = [v for v in node.get("anyOf", [node]) if v != {"type": "null"}]
        if all(v.get("type") == "object" or "additionalProperties" in v for v in variants):
            out["type"] = "object"
        return out

    # Optional[X] arrives as anyOf [X, null]: the optionality is expressed by "required" instead.
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v != {"type": "null"}]
        if len(variants) != 1:
            raise SchemaError(f"{path}: a union of several types is not structural; mark it free-form")
        merged = _resolve(variants[0], defs)
        merged = {**merged, **{k: v for k, v in node.items() if k != "anyOf"}}
        return _structural(merged, defs, path, in_status=in_status)

    if "const" in node:
        node = {**node, "enum": [node["const"]]}

    out = {k: v for k, v in node.items() if k in _KEPT}
    if node.get("format") in _FORMATS:
        out["format"] = node["format"]
    if "default" in out and (out["default"] is None or in_status):
        del out["default"]
    if "description" not in out:
        raise SchemaError(f"{path}: every field needs a description (kubectl explain shows it)")

    kind = node.get("type")
    if kind is None:
        raise SchemaError(f"{path}: no type; structural schemas need one on every node")
    if kind == "object":
        props = node.get("properties")
        if props:
            out["properties"] = {
                name: _structural(sub, defs, f"{path}.{name}", in_status=in_status)
                for name, sub in props.items()
            }
        elif isinstance(node.get("additionalProperties"), dict):
            value_schema = _resolve(node["additionalProperties"], defs)
            value_schema.setdefault("description", f"Value of an entry of {path.rsplit('.', 1)[-1]}.")
            out["additionalProperties"] = _structural(value_schema, defs, f"{path}[*]", in_status=in_status)
        if not out.get("required"):
            out.pop("required", None)
    elif kind == "array":
        item = _resolve(node["items"], defs)
        item.setdefault("description", f"An entry of {path.rsplit('.', 1)[-1]}.")
        out["items"] = _structural(item, defs, f"{path}[*]", in_status=in_status)
    return out


_ORDER = ("description", "type", "format")


def _tidy(node: dict[str, Any]) -> dict[str, Any]:
    """Description and type first, so the YAML reads like the CRDs people write by hand."""
    head = {k: node[k] for k in _ORDER if k in node}
    tail = {k: node[k] for k in node if k not in head}
    for key in ("properties",):
        if key in tail:
            tail[key] = {n: _tidy(v) for n, v in tail[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(tail.get(key), dict):
            tail[key] = _tidy(tail[key])
    return {**head, **tail}


def model_schema(model: type[Any], *, path: str, in_status: bool) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    defs = raw.pop("$defs", {})
    return _tidy(_structural(raw, defs, path, in_status=in_status))


def crd_for(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = model_schema(kind.spec, path="spec", in_status=False)
    status_schema = model_schema(kind.status, path="status", in_status=True)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "openconnector-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.as_crd() for c in kind.columns],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "APIVersion: openconnector.nl/v1alpha1.",
                                },
                                "kind": {"type": "string", "description": f"Kind: {kind.kind}."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }


def crd_filename(kind: Kind) -> str:
    return f"{GROUP}_{kind.plural}.yaml"


HEADER = "# Generated by `openconnector crds` from operator/openconnector/api/models.py. Do not edit.\n"


def render(kind: Kind) -> str:
    return HEADER + yaml.safe_dump(crd_for(kind), sort_keys=False, width=100, allow_unicode=True)


def render_all() -> dict[str, str]:
    """File name -> YAML text for every kind."""
    return {crd_filename(k): render(k) for k in ALL_KINDS}


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        target = directory / name
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


# ------------------------------------------------------------------------------ reference docs


def _rows(schema: dict[str, Any], prefix: str, required: set[str]) -> list[str]:
    rows = []
    for name, node in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}"
        kind = node.get("type", "any")
        if kind == "array":
            kind = f"[]{node['items'].get('type', 'any')}"
        elif node.get(PRESERVE_KEY):
            kind = "free-form"
        notes = []
        if "enum" in node:
            notes.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
        if "default" in node:
            notes.append(f"default `{json.dumps(node['default'])}`")
        if "pattern" in node:
            notes.append(f"pattern `{node['pattern']}`")
        for key, label in (("minimum", "min"), ("maximum", "max"), ("maxLength", "max length")):
            if key in node:
                notes.append(f"{label} {node[key]}")
        if name in required:
            notes.append("**required**")
        description = " ".join(node.get("description", "").split()).replace("|", "\\|")
        extra = f" ({'; '.join(notes)})" if notes else ""
        rows.append(f"| `{path}` | {kind} | {description}{extra} |")
        child = node.get("items") if kind.startswith("[]") else node
        if isinstance(child, dict) and child.get("properties"):
            rows.extend(
                _rows(child, path + ("[]" if kind.startswith("[]") else ""), set(child.get("required", [])))
            )
    return rows


def reference_markdown() -> str:
    """docs/crd-reference.md: every field of every kind, from the same schemas as the CRDs."""
    lines = [
        "# CRD reference",
        "",
        "Generated by `make crds` from `operator/openconnector/api/models.py`; do not edit by hand.",
        f"API group `{GROUP}`, version `{VERSION}`. Every kind is namespaced, has the status subresource and",
        f"belongs to the category `{CATEGORY}` (`kubectl get {CATEGORY}` lists them all).",
        "",
    ]
    for kind in ALL_KINDS:
        crd = crd_for(kind)
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        names = crd["spec"]["names"]
        lines += [
            f"## {kind.kind}",
            "",
            " ".join(kind.description.split()),
            "",
            f"Plural `{names['plural']}`, short names {', '.join(f'`{s}`' for s in names['shortNames'])}.",
            "",
            "Columns of `kubectl get`: "
            + ", ".join(c["name"].upper() for c in version["additionalPrinterColumns"]),
            "",
        ]
        for part in ("spec", "status"):
            node = schema["properties"][part]
            lines += [f"### {kind.kind} `.{part}`", "", "| field | type | description |", "|---|---|---|"]
            lines += _rows(node, part, set(node.get("required", [])))
            for rule in node.get("x-kubernetes-validations", []):
                lines.append(f"| (rule) | CEL | `{rule['rule']}`: {rule['message']} |")
            lines.append("")
    return "\n".join(lines)
