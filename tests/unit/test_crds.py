"""The CRDs in crds/ are generated from the models, structural, and documented field by field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from openconnector.api.crdgen import render_all
from openconnector.api.kinds import ALL_KINDS

ROOT = Path(__file__).resolve().parents[2]
CRDS = {name: yaml.safe_load(text) for name, text in render_all().items()}
PRESERVE = "x-kubernetes-preserve-unknown-fields"


def test_crds_directory_is_not_stale() -> None:
    on_disk = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert on_disk == render_all(), "crds/ is stale: run `make crds` and commit the result"


def test_chart_carries_the_same_crds() -> None:
    chart_crds = ROOT / "charts" / "openconnector-operator" / "crds"
    assert {p.name: p.read_text() for p in chart_crds.glob("*.yaml")} == render_all()


def structural_violations(node: dict[str, Any], path: str) -> list[str]:
    """The apiextensions.k8s.io/v1 structural-schema rules that a generator could break."""
    found = []
    for key in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const"):
        # A oneOf of "required" lists only checks which keys are present; that stays structural.
        key_check = key == "oneOf" and all(set(v) == {"required"} for v in node.get(key, ()))
        if key in node and not key_check:
            found.append(f"{path}: {key} is not allowed here")
    if "type" not in node and not node.get(PRESERVE) and not node.get("x-kubernetes-int-or-string"):
        found.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        found.append(f"{path}: properties and additionalProperties together")
    if node.get("additionalProperties") is False:
        found.append(f"{path}: additionalProperties: false")
    if path != "root" and not path.endswith(".metadata") and not node.get("description"):
        found.append(f"{path}: no description")
    if node.get(PRESERVE) and "default" in node:
        found.append(f"{path}: default under preserve-unknown-fields")
    for name, sub in (node.get("properties") or {}).items():
        found += structural_violations(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += structural_violations(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), dict):
        found += structural_violations(node["additionalProperties"], f"{path}{{*}}")
    return found


@pytest.mark.parametrize("name", sorted(CRDS))
def test_schema_is_structural_and_described(name: str) -> None:
    schema = CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert structural_violations(schema, "root") == []


def test_checker_catches_a_violation() -> None:
    bad = {"type": "object", "description": "x", "properties": {"a": {"anyOf": [{"type": "string"}]}}}
    assert structural_violations(bad, "root") == [
        "root.a: anyOf is not allowed here",
        "root.a: no type",
        "root.a: no description",
    ]


def _columns(kind: str) -> list[str]:
    crd = next(c for c in CRDS.values() if c["spec"]["names"]["kind"] == kind)
    version = crd["spec"]["versions"][0]
    return [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]


def test_printer_columns_match_the_brief() -> None:
    # issue 16: HEALTHY by default (an unhealthy subscription showed as "Active True"), and REASON.
    assert _columns("EventSubscription") == [
        "EVENT-TYPE", "STATUS", "READY", "HEALTHY", "REASON", "DELIVERED", "FAILED", "LAST-DELIVERY", "AGE",
    ]  # fmt: skip
    assert _columns("Consumer") == ["ENDPOINT", "TARGET", "READY", "REASON", "RECEIVED", "AGE"]
    assert _columns("Event")[:2] == ["TYPE", "ENABLED"]
    assert {"EMITTED", "AGE"} <= set(_columns("Event"))


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_every_kind_is_namespaced_with_status_category_and_short_names(kind: Any) -> None:
    crd = CRDS[f"openconnector.nl_{kind.plural}.yaml"]
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["categories"] == ["openconnector"]
    assert crd["spec"]["names"]["shortNames"]
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_seed_field_names_are_verbatim() -> None:
    def spec_fields(kind: str) -> set[str]:
        crd = next(c for c in CRDS.values() if c["spec"]["names"]["kind"] == kind)
        return set(
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        )

    assert {"name", "slug", "type", "source", "schema", "isEnabled"} <= spec_fields("Event")
    assert {"eventType", "endpoint", "method", "status", "filters"} <= spec_fields("EventSubscription")
    assert {"name", "endpoint", "mappingId", "targetType", "targetId", "isEnabled"} <= spec_fields("Consumer")
    assert {"mapping", "unset", "cast", "passThrough"} <= spec_fields("Mapping")
    assert {"location", "type", "headers", "auth", "timeout"} <= spec_fields("Source")


def test_defaults_enums_and_free_form_fields() -> None:
    crd = CRDS["openconnector.nl_eventsubscriptions.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["method"]["default"] == "POST"
    assert spec["method"]["enum"] == ["POST", "PUT", "PATCH"]
    assert spec["status"]["default"] == "active"
    assert spec["status"]["enum"] == ["active", "paused"]
    assert spec["filters"][PRESERVE] is True
    assert spec["delivery"]["default"] == {}
    assert spec["delivery"]["properties"]["backoffPolicy"]["enum"] == ["exponential", "linear"]


def test_crd_reference_doc_is_not_stale() -> None:
    from openconnector.api.crdgen import reference_markdown

    assert (ROOT / "docs" / "crd-reference.md").read_text() == reference_markdown(), "run `make crds`"
