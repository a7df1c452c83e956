"""Issue 17 (hardening): an Event's JSON Schema (tenant) applied to event data (any client) costs time
linear in the data, whatever the schema: RE2 for patterns, a hashing uniqueItems."""

from __future__ import annotations

import time
from typing import Any

import jsonschema
import pytest

from openconnector.api.kinds import EVENT
from openconnector.resources import Resource
from openconnector.routing.compiler import compile_table
from openconnector.schema_guard import linear_validator_class, schema_pattern_problems

Validator = linear_validator_class(jsonschema.Draft202012Validator)


def errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return [e.message for e in Validator(schema).iter_errors(instance)]


@pytest.mark.timeout(30)
def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    schema = {"type": "string", "pattern": "^(a+)+$"}
    started = time.process_time()
    assert errors(schema, "a" * 100_000 + "!")  # Python's engine: 2^30 steps at 30 characters
    assert errors(schema, "a" * 40) == []
    assert time.process_time() - started < 10


@pytest.mark.timeout(30)
def test_catastrophic_pattern_properties_and_additional_properties_run_in_linear_time() -> None:
    schema = {
        "type": "object",
        "patternProperties": {"^(a|aa)+$": {"type": "integer"}},
        "additionalProperties": False,
    }
    started = time.process_time()
    found = errors(schema, {"a" * 5000 + "!": 1, "aaaa": "x"})
    assert any("does not match any of the regexes" in message for message in found)
    assert any("is not of type 'integer'" in message for message in found)
    assert time.process_time() - started < 10


@pytest.mark.timeout(30)
def test_unique_items_of_many_objects_is_linear() -> None:
    items = [{"n": n, "tags": [n, str(n)]} for n in range(100_000)]  # the stock check compares every pair
    started = time.process_time()
    assert errors({"uniqueItems": True}, items) == []
    assert errors({"uniqueItems": True}, [*items, {"tags": [5, "5"], "n": 5}])
    assert time.process_time() - started < 10


@pytest.mark.parametrize(
    ("items", "unique"),
    [
        ([1, 1.0], False),
        ([1, True], True),
        ([0, False], True),
        ([{"a": 1}, {"a": 1.0}], False),
        ([[1, 2], [2, 1]], True),
        ([{"a": [1]}, {"a": [True]}], True),
        (["1", 1], True),
        ([None, None], False),
    ],
)
def test_unique_items_keeps_json_schema_equality(items: list[Any], unique: bool) -> None:
    stock = jsonschema.Draft202012Validator({"uniqueItems": True}).is_valid(items)
    assert stock is unique
    assert (errors({"uniqueItems": True}, items) == []) is unique


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"pattern": "^[a-z]+-[0-9]{2,4}$"}, "zaak-123"),
        ({"pattern": "^[a-z]+-[0-9]{2,4}$"}, "zaak-1"),
        ({"properties": {"a": {}}, "additionalProperties": False}, {"a": 1, "b": 2, "c": 3}),
        ({"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": {"type": "integer"}},
         {"x-a": "s", "x-b": 1, "y": 2, "z": "q"}),
    ],
)  # fmt: skip
def test_same_verdicts_as_the_stock_validator(schema: dict[str, Any], instance: Any) -> None:
    stock = sorted(e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(instance))
    assert sorted(errors(schema, instance)) == stock


def test_patterns_re2_cannot_run_are_refused_at_compile_time() -> None:
    assert schema_pattern_problems({"properties": {"a": {"pattern": "(a)\\1"}}})
    assert schema_pattern_problems({"pattern": "(?=a)b"})
    assert schema_pattern_problems({"patternProperties": {"^a": {}}, "unevaluatedProperties": False})
    assert schema_pattern_problems({"pattern": "^[a-z]+$", "patternProperties": {"^x": {}}}) == []
    event = Resource(
        kind=EVENT.kind,
        namespace="ns",
        name="e",
        spec={
            "name": "E",
            "type": "nl.example.thing.happened",
            "source": "https://gemeente.example/s",
            "schema": {"inline": {"pattern": "(a)\\1"}},
        },
    )
    result = compile_table({event.key: event}, {}, version=1).results[event.key]
    assert (result.ready, result.reason) == (False, "InvalidSchema")
    assert result.message.startswith("spec.schema.inline: /: pattern '(a)\\\\1' is not supported")
