"""Issue 16: a list item of spec.filters is a filter object with exactly one dialect key.

Before, ``[{sqll: "..."}]`` or ``[{regex: "..."}]`` with a string value was read as an exact match on an
attribute named ``sqll``: `validate` said ok, the resource was Ready and nothing ever matched. The
plain-map shorthand is only the whole ``filters`` value. The CRD carries the same shape, so the
apiserver refuses such a list at apply time (checked against a real apiserver in
tests/e2e/test_cel_parity.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from openconnector.api.crdgen import crd_for
from openconnector.api.kinds import KINDS_BY_NAME
from openconnector.filters import compile_filters, validate_filters
from openconnector.resources import parse_spec
from openconnector.validate import validate_paths

SUB = {"eventType": "nl.a.b.c", "endpoint": "http://127.0.0.1:1/x"}

REFUSED: list[tuple[object, str, str]] = [
    ([{"sqll": "source LIKE 'x%'"}], "spec.filters[0]", 'unknown dialect "sqll"'),
    ([{"regex": "^urn:"}], "spec.filters[0]", 'unknown dialect "regex"'),
    ([{"subject": "x"}], "spec.filters[0]", "{exact: {subject: ...}}"),
    ([{"any": [{"sqll": "true"}]}], "spec.filters[0].any[0]", 'did you mean "sql"'),
    ([{"all": [{"not": {"type": "x"}}]}], "spec.filters[0].all[0].not", 'unknown dialect "type"'),
    ([{"sql": "true", "exact": {"a": "b"}}], "spec.filters[0]", "exactly one dialect key, got 2"),
    ([{}], "spec.filters[0]", "exactly one dialect key, got 0"),
]


@pytest.mark.parametrize(("filters", "field", "message"), REFUSED)
def test_the_models_refuse_a_list_item_that_is_not_a_filter_object(
    filters: object, field: str, message: str
) -> None:
    _, problems = parse_spec(KINDS_BY_NAME["EventSubscription"], {**SUB, "filters": filters})
    assert [p.field for p in problems] == [field]
    assert message in problems[0].message


@pytest.mark.parametrize(("filters", "field", "message"), REFUSED)
def test_the_compiler_refuses_them_too(filters: object, field: str, message: str) -> None:
    errors = validate_filters(filters, path="spec.filters")
    assert errors
    assert errors[0].path == field


def test_the_whole_value_may_still_be_the_shorthand_map() -> None:
    _, problems = parse_spec(KINDS_BY_NAME["EventSubscription"], {**SUB, "filters": {"subject": "x"}})
    assert problems == []
    assert compile_filters({"subject": "x"})({"subject": "x"}, None) is True


def test_validate_reports_a_misspelt_dialect(tmp_path: Path) -> None:
    spec = {**SUB, "filters": [{"sqll": "source LIKE 'x%'"}]}
    doc = {"apiVersion": "openconnector.nl/v1alpha1", "kind": "EventSubscription",
           "metadata": {"name": "typo"}, "spec": spec}  # fmt: skip
    (tmp_path / "sub.yaml").write_text(yaml.safe_dump(doc))
    findings, _ = validate_paths([tmp_path])
    assert [str(f).split(": ", 1)[1] for f in findings] == [
        'EventSubscription/typo: spec.filters[0]: unknown dialect "sqll" (expected one of exact, prefix, '
        'suffix, all, any, not, sql, jsonLogic); did you mean "sql"?'
    ]


def test_the_crd_gives_list_items_the_filter_object_shape() -> None:
    spec = crd_for(KINDS_BY_NAME["EventSubscription"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    filters: dict[str, Any] = spec["properties"]["spec"]["properties"]["filters"]
    assert "type" not in filters  # a list or the shorthand map
    item = filters["items"]
    assert item["maxProperties"] == item["minProperties"] == 1
    assert [v["required"] for v in item["oneOf"]] == [
        ["exact"],
        ["prefix"],
        ["suffix"],
        ["all"],
        ["any"],
        ["not"],
        ["sql"],
        ["cesql"],
        ["jsonLogic"],
    ]
    assert item["properties"]["sql"]["type"] == "string"
    # Nested filters: typed one level down, and by their keys only below that.
    nested = item["properties"]["any"]["items"]
    assert nested["oneOf"] == item["oneOf"]
    deepest = nested["properties"]["not"]
    assert deepest["oneOf"] == item["oneOf"]
    assert deepest["x-kubernetes-preserve-unknown-fields"] is True
    assert "properties" not in deepest
