"""Subscription filters: every dialect, nesting, shorthand, and precise errors for invalid definitions."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

import pytest

import openconnector.filters.dialects as dialects
from openconnector.filters import FilterError, Predicate, compile_filters, validate_filters
from openconnector.filters.jsonlogic import JsonLogicRule, compile_jsonlogic

EVENT: dict[str, object] = {
    "specversion": "1.0",
    "id": "f3dce042-cd6e-4977-844d-05be8dce7cea",
    "source": "urn:nld:oin:00000001823288444000:systeem:BRP-component",
    "type": "nl.vng.zaken.zaak.created",
    "subject": "Zaak/123",
    "time": "2026-03-01T12:00:00Z",
    "sequence": 42,
    "urgent": True,
}
DATA: dict[str, object] = {"zaak": {"status": "open", "bedrag": 150}}
DIALECT_LIST = "exact, prefix, suffix, all, any, not, sql, jsonLogic"


def matches(filters: object, attributes: Mapping[str, object] = EVENT, data: object = DATA) -> bool:
    return compile_filters(filters)(attributes, data)


@pytest.mark.parametrize("filters", [None, [], {}, ()])
def test_no_filters_match_everything(filters: object) -> None:
    assert matches(filters) is True
    assert matches(filters, {}, None) is True
    assert validate_filters(filters) == []


# --------------------------------------------------------------------------------------------------
# exact / prefix / suffix

ATTRIBUTE_CASES: list[tuple[object, bool]] = [
    ([{"exact": {"type": "nl.vng.zaken.zaak.created"}}], True),
    ([{"exact": {"type": "nl.vng.zaken.zaak.deleted"}}], False),
    ([{"exact": {"type": "NL.VNG.ZAKEN.ZAAK.CREATED"}}], False),  # case-sensitive
    ([{"exact": {"type": "nl.vng.zaken.zaak.created", "subject": "Zaak/123"}}], True),
    ([{"exact": {"type": "nl.vng.zaken.zaak.created", "subject": "Zaak/124"}}], False),  # every key
    ([{"exact": {"dataref": "x"}}], False),  # missing attribute
    ([{"prefix": {"type": "nl.vng."}}], True),
    ([{"prefix": {"type": "nl.vng.", "source": "urn:nld:oin:"}}], True),
    ([{"prefix": {"type": "NL."}}], False),
    ([{"prefix": {"type": "nl.vng.zaken.zaak.created.v2"}}], False),  # longer than the value
    ([{"prefix": {"dataref": "https://"}}], False),
    ([{"suffix": {"type": ".created"}}], True),
    ([{"suffix": {"type": ".CREATED"}}], False),
    ([{"suffix": {"subject": "123", "type": ".deleted"}}], False),
    ([{"suffix": {"dataref": "x"}}], False),
    # Integer and boolean attributes compare as their canonical strings.
    ([{"exact": {"sequence": "42"}}], True),
    ([{"exact": {"sequence": 42}}], True),
    ([{"exact": {"sequence": "042"}}], False),
    ([{"prefix": {"sequence": "4"}}], True),
    ([{"suffix": {"sequence": 2}}], True),
    ([{"exact": {"urgent": "true"}}], True),
    ([{"exact": {"urgent": True}}], True),
    ([{"exact": {"urgent": "True"}}], False),
    ([{"prefix": {"urgent": "tr"}}], True),
    ([{"suffix": {"urgent": "ue"}}], True),
]


@pytest.mark.parametrize(("filters", "expected"), ATTRIBUTE_CASES)
def test_attribute_dialects(filters: object, expected: bool) -> None:
    assert matches(filters) is expected


def test_attribute_value_of_other_types_matches_its_string_form() -> None:
    attributes = {"time": datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)}
    assert matches([{"prefix": {"time": "2026-03-01T12:00"}}], attributes) is True
    assert matches([{"suffix": {"time": "Z"}}], attributes) is True


def test_null_attribute_is_missing() -> None:
    attributes = {"subject": None}
    assert matches([{"exact": {"subject": "None"}}], attributes) is False
    assert matches([{"prefix": {"subject": "N"}}], attributes) is False
    assert matches([{"suffix": {"subject": "e"}}], attributes) is False


# --------------------------------------------------------------------------------------------------
# Shorthand: a plain attribute map is {exact: map}.


def test_shorthand_map_only_as_the_whole_value() -> None:
    # issue 16: [{type: x}] used to be an exact match; a list item must be a filter object.
    for filters in (
        [{"type": "nl.vng.zaken.zaak.created"}],
        [{"any": [{"type": "nl.vng.zaken.zaak.created"}]}],
        [{"not": {"type": "nl.vng.zaken.zaak.created"}}],
    ):
        errors = validate_filters(filters)
        assert len(errors) == 1, filters
        assert 'unknown dialect "type"' in errors[0].message
        assert "{exact: {type: ...}}" in errors[0].message


def test_shorthand_map_at_top_level() -> None:
    assert matches({"type": "nl.vng.zaken.zaak.created", "sequence": 42}) is True
    assert matches({"type": "nl.vng.zaken.zaak.created", "sequence": 43}) is False
    assert matches({"type": "x"}, {}) is False


def test_single_filter_object_at_top_level() -> None:
    assert matches({"prefix": {"type": "nl.vng."}}) is True
    assert matches({"not": {"prefix": {"type": "nl.vng."}}}) is False


# --------------------------------------------------------------------------------------------------
# all / any / not and the implicit conjunction of the list.

CREATED = {"exact": {"type": "nl.vng.zaken.zaak.created"}}
DELETED = {"exact": {"type": "nl.vng.zaken.zaak.deleted"}}
BRP = {"suffix": {"source": ":BRP-component"}}

NESTING_CASES: list[tuple[object, bool]] = [
    ([CREATED, BRP], True),
    ([CREATED, DELETED], False),
    ([DELETED, CREATED], False),
    ([{"all": [CREATED, BRP]}], True),
    ([{"all": [CREATED, DELETED]}], False),
    ([{"all": [CREATED]}], True),
    ([{"any": [DELETED, CREATED]}], True),
    ([{"any": [DELETED, {"exact": {"type": "other"}}]}], False),
    ([{"any": [DELETED]}], False),
    ([{"not": DELETED}], True),
    ([{"not": CREATED}], False),
    ([{"not": {"not": CREATED}}], True),
    ([{"not": {"exact": {"dataref": "x"}}}], True),  # a missing attribute fails the inner filter
    (
        [
            {
                "all": [
                    {"any": [DELETED, {"not": DELETED}]},
                    {"not": {"any": [DELETED, {"prefix": {"type": "com."}}]}},
                ]
            }
        ],
        True,
    ),
    ([{"any": [{"all": [CREATED, DELETED]}, {"all": [BRP, {"not": CREATED}]}]}], False),
]


@pytest.mark.parametrize(("filters", "expected"), NESTING_CASES)
def test_nesting(filters: object, expected: bool) -> None:
    assert matches(filters) is expected


# --------------------------------------------------------------------------------------------------
# sql and jsonLogic inside the filter list.

SQL_CASES: list[tuple[str, bool]] = [
    ("type LIKE 'nl.vng.zaken.%' AND sequence > 40", True),
    ("type like 'nl.vng.zaken.%' and sequence > 50", False),
    ("urgent", True),
    ("urgent AND subject LIKE 'Zaak/%'", True),
    ("dataref = 'x'", False),  # missing attribute: error, no match
    ("NOT (dataref = 'x')", False),  # fail fast: the error still means no match
    ("NOT EXISTS dataref", True),
    ("sequence / 0 = 0", False),
    ("subject", False),  # a String, not a Boolean
]


@pytest.mark.parametrize(("expression", "expected"), SQL_CASES)
def test_sql(expression: str, expected: bool) -> None:
    assert matches([{"sql": expression}]) is expected


def test_cesql_alias() -> None:
    assert matches([{"cesql": "type LIKE '%.created'"}]) is True
    assert matches([{"cesql": "type LIKE '%.deleted'"}]) is False


JSONLOGIC_CASES: list[tuple[object, bool]] = [
    ({"===": [{"var": "attributes.type"}, "nl.vng.zaken.zaak.created"]}, True),
    ({">": [{"var": "data.zaak.bedrag"}, 100]}, True),
    ({"and": [{"===": [{"var": "data.zaak.status"}, "open"]}, {"var": "attributes.urgent"}]}, True),
    ({"===": [{"var": "data.zaak.status"}, "closed"]}, False),
    ({"var": "data.nothing"}, False),
    ({"/": [1, 0]}, False),
]


@pytest.mark.parametrize(("rule", "expected"), JSONLOGIC_CASES)
def test_jsonlogic(rule: object, expected: bool) -> None:
    assert matches([{"jsonLogic": rule}]) is expected


def test_every_dialect_together() -> None:
    filters = [
        {"exact": {"type": "nl.vng.zaken.zaak.created"}},
        {"prefix": {"source": "urn:nld:oin:"}},
        {"any": [{"suffix": {"subject": "/123"}}, {"sql": "sequence > 100"}]},
        {"not": {"jsonLogic": {"===": [{"var": "data.zaak.status"}, "closed"]}}},
        {"all": [{"sql": "urgent"}, {"exact": {"specversion": "1.0"}}]},
    ]
    predicate = compile_filters(filters)
    assert predicate(EVENT, DATA) is True
    assert predicate(EVENT, {"zaak": {"status": "closed"}}) is False
    assert predicate({**EVENT, "subject": "Zaak/9"}, DATA) is False
    assert predicate({**EVENT, "subject": "Zaak/9", "sequence": 101}, DATA) is True


class _CountingRule:
    def __init__(self, rule: JsonLogicRule) -> None:
        self._rule = rule
        self.calls = 0

    def matches(self, attributes: Mapping[str, object], data: object) -> bool:
        self.calls += 1
        return self._rule.matches(attributes, data)


def test_cheap_filters_run_before_expensive_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    rules: list[_CountingRule] = []

    def counting_compile(rule: object) -> _CountingRule:
        rules.append(_CountingRule(compile_jsonlogic(rule)))
        return rules[-1]

    monkeypatch.setattr(dialects, "compile_jsonlogic", counting_compile)
    predicate = compile_filters([{"jsonLogic": {"===": [1, 1]}}, {"exact": {"type": "other"}}])
    assert predicate(EVENT, DATA) is False
    assert rules[0].calls == 0  # written first, but the exact filter already decided
    assert predicate({**EVENT, "type": "other"}, DATA) is True
    assert rules[0].calls == 1


def test_predicate_is_reusable_and_pure() -> None:
    predicate: Predicate = compile_filters([{"sql": "sequence > 40"}, {"prefix": {"type": "nl."}}])
    attributes = dict(EVENT)
    for _ in range(3):
        assert predicate(attributes, DATA) is True
        assert predicate({**attributes, "sequence": 1}, DATA) is False
    assert attributes == EVENT


@pytest.mark.parametrize(
    "attributes",
    [{}, {"type": None}, {"type": 5}, {"type": b"\x00"}, {"type": ["not", "a", "scalar"]}, {"sequence": "x"}],
)
def test_predicate_never_raises(attributes: dict[str, object]) -> None:
    predicate = compile_filters(
        [
            {"any": [{"exact": {"type": "t"}}, {"prefix": {"type": "t"}}, {"suffix": {"type": "t"}}]},
            {"sql": "sequence > 1"},
            {"jsonLogic": {"===": [{"var": "attributes.type"}, "t"]}},
        ]
    )
    assert predicate(attributes, object()) is False


# --------------------------------------------------------------------------------------------------
# Invalid definitions: FilterError with a precise path.

INVALID: list[tuple[object, str]] = [
    ("type = 'x'", "filters: must be a list of filter objects, got a string"),
    (5, "filters: must be a list of filter objects, got a number"),
    (["x"], "filters[0]: must be a filter object with one dialect key, got a string"),
    ([None], "filters[0]: must be a filter object with one dialect key, got null"),
    (
        [{}],
        f"filters[0]: empty filter object; expected one dialect key ({DIALECT_LIST})",
    ),
    (
        [{"regex": {"type": "x"}}],
        f'filters[0]: unknown dialect "regex" (expected one of {DIALECT_LIST})',
    ),
    (
        [CREATED, {"Exact": {"type": "x"}}],
        f'filters[1]: unknown dialect "Exact" (expected one of {DIALECT_LIST}); did you mean "exact"?',
    ),
    (
        {"jsonlogic": {"==": [1, 1]}},
        f'filters: unknown dialect "jsonlogic" (expected one of {DIALECT_LIST}); did you mean "jsonLogic"?',
    ),
    (
        [{"exact": {"type": "x"}, "prefix": {"type": "y"}}],
        "filters[0]: exactly one dialect key allowed, got 2 (exact, prefix)",
    ),
    (
        [{"exact": {"type": "x"}, "source": "y"}],
        'filters[0]: a filter object has exactly one dialect key; unexpected "source" next to exact',
    ),
    ([{"sql": "TRUE", "cesql": "TRUE"}], "filters[0]: exactly one dialect key allowed, got 2 (sql, cesql)"),
    ([{1: "x"}], "filters[0]: keys must be strings, got a number 1"),
    ([{"exact": "type"}], "filters[0].exact: must be a map of attribute name to value, got a string"),
    ([{"exact": {}}], "filters[0].exact: must name at least one attribute"),
    ([{"prefix": {"": "x"}}], "filters[0].prefix: attribute names must be non-empty strings"),
    (
        [{"suffix": {"Type": "x"}}],
        'filters[0].suffix: invalid attribute name "Type": CloudEvents attribute names use only a-z and 0-9',
    ),
    (
        [{"exact": {"my_ext": "x"}}],
        'filters[0].exact: invalid attribute name "my_ext": CloudEvents attribute names use only a-z and 0-9',
    ),
    ([{"exact": {"type": ""}}], "filters[0].exact.type: value must not be empty"),
    ([{"prefix": {"type": None}}], "filters[0].prefix.type: value must be a string, got null"),
    ([{"exact": {"type": 1.5}}], "filters[0].exact.type: value must be a string, got a number"),
    ({"type": ""}, "filters.type: value must not be empty"),
    (
        {"Type": "x"},
        'filters: invalid attribute name "Type": CloudEvents attribute names use only a-z and 0-9',
    ),
    ([{"all": []}], "filters[0].all: must be a non-empty list of filter objects, got an empty list"),
    ([{"any": CREATED}], "filters[0].any: must be a non-empty list of filter objects, got a map"),
    (
        [{"any": [CREATED, "x"]}],
        "filters[0].any[1]: must be a filter object with one dialect key, got a string",
    ),
    ([CREATED, CREATED, {"not": [CREATED]}], "filters[2].not: must be exactly one filter object, got a list"),
    (
        [{"not": {}}],
        f"filters[0].not: empty filter object; expected one dialect key ({DIALECT_LIST})",
    ),
    (
        [{"not": {"exact": {"type": "x"}, "suffix": {"type": "y"}}}],
        "filters[0].not: exactly one dialect key allowed, got 2 (exact, suffix)",
    ),
    (
        [CREATED, {"any": [{"sql": "type = 'x' AND"}]}],
        "filters[1].any[0].sql: syntax error at column 15: unexpected end of expression",
    ),
    (
        [{"sql": "type = 'x' AND source = 'y' OR id = 'z'"}],
        "filters[0].sql: syntax error at column 29: mixing AND and OR without parentheses is ambiguous "
        "(CESQL gives them equal precedence, unlike SQL); add parentheses",
    ),
    ([{"sql": "FOO(type)"}], "filters[0].sql: error at column 1: unknown function FOO"),
    ([{"sql": ""}], "filters[0].sql: expression must not be empty"),
    ([{"sql": 5}], "filters[0].sql: must be a CESQL expression string, got a number"),
    (
        [{"sql": "sequence + 1"}],
        "filters[0].sql: expression must evaluate to a Boolean, but it evaluates to Integer",
    ),
    (
        [{"sql": "LOWER(type)"}],
        "filters[0].sql: expression must evaluate to a Boolean, but it evaluates to String",
    ),
    ([{"cesql": "type ="}], "filters[0].cesql: syntax error at column 7: unexpected end of expression"),
    (
        [{"jsonLogic": {"method": ["x", "upper"]}}],
        "filters[0].jsonLogic: invalid rule: unknown operator `method`",
    ),
    (
        [{"jsonLogic": {"and": [True, {"vr": "x"}]}}],
        "filters[0].jsonLogic: invalid rule: unknown operator `vr`; did you mean `var`? (at /and/1)",
    ),
    (
        [{"jsonLogic": '{"===": [1, 1]}'}],
        'filters[0].jsonLogic: must be a JSON Logic rule object such as {"===": [...]}, not a string '
        "(write the rule as a map, not as quoted JSON)",
    ),
    (
        [{"jsonLogic": True}],
        'filters[0].jsonLogic: must be a JSON Logic rule object such as {"===": [...]}, got a boolean',
    ),
]


@pytest.mark.parametrize(("filters", "message"), INVALID)
def test_invalid_definitions(filters: object, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        compile_filters(filters)
    assert str(raised.value) == message
    assert validate_filters(filters)[0].path == raised.value.path
    assert str(validate_filters(filters)[0]) == message


def test_custom_path_prefix() -> None:
    with pytest.raises(FilterError) as raised:
        compile_filters([{"exact": {}}], path="spec.filters")
    assert raised.value.path == "spec.filters[0].exact"
    assert raised.value.message == "must name at least one attribute"


def test_validate_reports_every_problem() -> None:
    problems = validate_filters(
        [
            {"exact": {"Type": "x", "source": ""}},
            {"sql": "type ="},
            {"any": [{"regex": {}}, {"jsonLogic": {"nope": 1}}]},
            CREATED,
        ]
    )
    assert [str(problem) for problem in problems] == [
        'filters[0].exact: invalid attribute name "Type": CloudEvents attribute names use only a-z and 0-9',
        "filters[0].exact.source: value must not be empty",
        "filters[1].sql: syntax error at column 7: unexpected end of expression",
        f'filters[2].any[0]: unknown dialect "regex" (expected one of {DIALECT_LIST})',
        "filters[2].any[1].jsonLogic: invalid rule: unknown operator `nope`; did you mean `none`?",
    ]


def test_nesting_depth_is_limited() -> None:
    nested: object = CREATED
    for _ in range(dialects.MAX_DEPTH):
        nested = {"not": nested}
    with pytest.raises(FilterError, match="nested more than"):
        compile_filters([nested])
    deepest_allowed: object = CREATED
    for _ in range(dialects.MAX_DEPTH - 1):
        deepest_allowed = {"all": [deepest_allowed]}
    assert compile_filters([deepest_allowed])(EVENT, DATA) is True
