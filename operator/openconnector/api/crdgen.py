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

from openconnector.api import models
from openconnector.api.common import CATEGORY, GROUP, VERSION
from openconnector.api.kinds import ALL_KINDS, Kind
from openconnector.api.models import ITEMS_MODEL_KEY

PRESERVE_KEY = "x-kubernetes-preserve-unknown-fields"
# A model that refers to itself (Filter) is unrolled this many levels; below that, a free-form object
# that keeps the model's own key checks (minProperties, maxProperties, oneOf of required keys).
UNROLL_DEPTH = 2
# JSON Schema keywords that carry over unchanged into the structural schema.
_KEPT = {
    "type", "description", "default", "enum", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "required",
    "x-kubernetes-validations", "nullable", "example", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "minProperties", "maxProperties",
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


def _key_checks(node: dict[str, Any]) -> dict[str, Any]:
    """An object's checks on which keys it has: they stay structural without typing the values."""
    out: dict[str, Any] = {k: node[k] for k in ("minProperties", "maxProperties") if k in node}
    one_of = node.get("oneOf")
    if one_of and all(set(variant) == {"required"} for variant in one_of):
        out["oneOf"] = one_of
    return out


def _items_model_schema(name: str, defs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = getattr(models, name).model_json_schema(
        by_alias=True, mode="validation", ref_template="#/$defs/{model}"
    )
    return raw, {**defs, **raw.pop("$defs", {})}


def _structural(
    node: dict[str, Any], defs: dict[str, Any], path: str, *, in_status: bool, unrolled: tuple[str, ...] = ()
) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if unrolled.count(name) >= UNROLL_DEPTH:
            target = _resolve(node, defs)
            return {
                "description": target["description"],
                "type": "object",
                PRESERVE_KEY: True,
                **_key_checks(target),
            }
        unrolled = (*unrolled, name)
    node = _resolve(node, defs)

    if node.get(PRESERVE_KEY):
        out: dict[str, Any] = {"description": node["description"], PRESERVE_KEY: True}
        # Typed as an object when every variant is one (CEL rules can then see the field); a value
        # that may be a list or a map (filters) stays untyped, which structural schemas allow here.
        variants = [v for v in node.get("anyOf", [node]) if v != {"type": "null"}]
        if all(v.get("type") == "object" or "additionalProperties" in v for v in variants):
            out["type"] = "object"
        if ITEMS_MODEL_KEY in node:
            # Only a list value has items, so a map value (the filters shorthand) stays free-form.
            item, item_defs = _items_model_schema(node[ITEMS_MODEL_KEY], defs)
            out["items"] = _structural(item, item_defs, f"{path}[*]", in_status=in_status, unrolled=unrolled)
        return out

    # Optional[X] arrives as anyOf [X, null]: the optionality is expressed by "required" instead.
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v != {"type": "null"}]
        if len(variants) != 1:
            raise SchemaError(f"{path}: a union of several types is not structural; mark it free-form")
        # The variant's $ref (if any) is resolved by the recursive call, which counts self-references.
        merged = {**variants[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        return _structural(merged, defs, path, in_status=in_status, unrolled=unrolled)

    if "const" in node:
        node = {**node, "enum": [node["const"]]}

    out = {k: v for k, v in node.items() if k in _KEPT}
    out.update(_key_checks(node))
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
                name: _structural(sub, defs, f"{path}.{name}", in_status=in_status, unrolled=unrolled)
                for name, sub in props.items()
            }
        elif isinstance(node.get("additionalProperties"), dict):
            value_schema = _resolve(node["additionalProperties"], defs)
            value_schema.setdefault("description", f"Value of an entry of {path.rsplit('.', 1)[-1]}.")
            out["additionalProperties"] = _structural(
                value_schema, defs, f"{path}[*]", in_status=in_status, unrolled=unrolled
            )
        if not out.get("required"):
            out.pop("required", None)
    elif kind == "array":
        item = dict(node["items"])
        if "$ref" not in item:
            item.setdefault("description", f"An entry of {path.rsplit('.', 1)[-1]}.")
        out["items"] = _structural(item, defs, f"{path}[*]", in_status=in_status, unrolled=unrolled)
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


def _rows(
    schema: dict[str, Any], prefix: str, required: set[str], seen: frozenset[object] = frozenset()
) -> list[str]:
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
        # A free-form field can still describe the items of its list form (filters).
        listed = kind.startswith("[]") or "items" in node
        child = node.get("items") if listed else node
        # A model that contains itself (Filter) is listed once.
        fields = frozenset(child.get("properties") or ()) if isinstance(child, dict) else frozenset()
        if isinstance(child, dict) and fields and fields not in seen:
            inner = seen | {fields}
            rows.extend(_rows(child, path + ("[]" if listed else ""), set(child.get("required", [])), inner))
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
