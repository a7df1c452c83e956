"""CESQL v1: the vendored conformance kit (TCK), the spec's examples, and this engine's own rules."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from openconnector.filters.cesql import (
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING,
    CesqlCompileError,
    CesqlType,
    ErrorKind,
    compile_cesql,
)

TCK_DIR = Path(__file__).parent / "data" / "cesql_tck"
DEFAULT_EVENT: dict[str, object] = {"specversion": "1.0", "id": "id", "source": "source", "type": "type"}

# TCK cases whose expectation contradicts CESQL v1.0.0: (expected result, expected error, reason).
TCK_OVERRIDES: dict[tuple[str, str], tuple[object, str | None, str]] = {
    ("context_attributes_access.yaml", "Absent optional attribute"): (
        False,
        "missingAttribute",
        "v1.0.0 section 3.2: addressing an absent attribute is a MissingAttributeError (the kit predates v1)",
    ),
}


def _load_tck() -> list[Any]:
    cases = []
    for path in sorted(TCK_DIR.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        # Typed values for results and events, raw strings for expressions (YAML would read `TRUE` as a bool).
        typed = yaml.safe_load(text)["tests"]
        raw = yaml.load(text, Loader=yaml.BaseLoader)["tests"]
        for test, raw_test in zip(typed, raw, strict=True):
            cases.append(
                pytest.param(path.name, test, raw_test["expression"], id=f"{path.stem}: {test['name']}")
            )
    return cases


TCK_CASES = _load_tck()


def _as_attribute(value: object) -> object:
    # YAML reads unquoted timestamps as datetimes; the gateway hands CESQL the string form.
    return value.isoformat() if isinstance(value, datetime.datetime) else value


def test_tck_is_vendored() -> None:
    assert len(TCK_CASES) == 239


@pytest.mark.parametrize(("file", "case", "expression"), TCK_CASES)
def test_tck(file: str, case: dict[str, Any], expression: str) -> None:
    expected_result = _as_attribute(case.get("result"))
    expected_error = case.get("error")
    override = TCK_OVERRIDES.get((file, case["name"]))
    if override is not None:
        expected_result, expected_error, _reason = override
    event = dict(case.get("event") or DEFAULT_EVENT)
    event.update(case.get("eventOverrides") or {})
    attributes = {name: _as_attribute(value) for name, value in event.items()}

    if expected_error in (ErrorKind.PARSE, ErrorKind.MISSING_FUNCTION):
        # Parse errors and unknown functions are found at compile time (spec 3.3 recommends it).
        with pytest.raises(CesqlCompileError) as raised:
            compile_cesql(expression)
        assert raised.value.kind == expected_error
        return
    compiled = compile_cesql(expression)
    value, error = compiled.evaluate(attributes)

    if expected_error is None:
        assert error is None
        assert type(value) is type(expected_result)
        assert value == expected_result
    else:
        assert error is not None
        assert error.kind == expected_error
        # Fail-fast mode: the value is the zero value of the expression's type, never a filter match.
        assert value in (False, 0, "")
        assert compiled.matches(attributes) is False


# --------------------------------------------------------------------------------------------------
# Spec section 5 examples, as used in filters.

SPEC_EXAMPLES = [
    ("EXISTS subject", {"subject": "x"}, True),
    ("EXISTS subject", {}, False),
    ("firstname = 'Francesco'", {"firstname": "Francesco"}, True),
    ("firstname = 'Francesco' OR subject = 'Francesco'", {"firstname": "Doug", "subject": "Francesco"}, True),
    (
        "(firstname = 'Francesco' AND lastname = 'Guardiani') OR subject = 'Francesco Guardiani'",
        {"firstname": "Francesco", "lastname": "Guardiani", "subject": "x"},
        True,
    ),
    ("sequence = 10", {"sequence": "10"}, True),
    ("sequence = 10", {"sequence": 10}, True),
    ("hop < ttl", {"hop": "5", "ttl": "10"}, True),
    ("hop < ttl", {"hop": 10, "ttl": 5}, False),
    ("int(hop) < int(ttl) and int(hop) < 1000", {"hop": "5", "ttl": "10"}, True),
    ("INT(hop) < INT(ttl) AND INT(hop) < 1000", {"hop": "5", "ttl": "10"}, True),
    ('TRUE = "true" AND FALSE = "false"', {}, True),
    ('TRUE = "TRUE" OR FALSE = "FALSE"', {}, False),
]


@pytest.mark.parametrize(("expression", "attributes", "expected"), SPEC_EXAMPLES)
def test_spec_examples(expression: str, attributes: dict[str, object], expected: bool) -> None:
    assert compile_cesql(expression).matches(attributes) is expected


# --------------------------------------------------------------------------------------------------
# Areas without a vendored TCK file: IN, EXISTS, case sensitivity, parse errors.

EVENT: dict[str, object] = {
    "specversion": "1.0",
    "id": "A234-1234",
    "source": "urn:nld:oin:00000001823288444000:systeem:BRP",
    "type": "nl.vng.zaken.zaak.created",
    "subject": "Zaak",
    "sequence": "42",
    "count": 7,
    "flag": True,
}

EVALUATIONS: list[tuple[str, object, str | None]] = [
    # IN: the set elements are cast to the type of the left operand.
    ("type IN ('a', 'nl.vng.zaken.zaak.created')", True, None),
    ("type NOT IN ('a', 'b')", True, None),
    ("type IN ('NL.VNG.ZAKEN.ZAAK.CREATED')", False, None),
    ("count IN (1, 7)", True, None),
    ("count IN ('7')", True, None),
    ("sequence IN (42)", True, None),
    ("sequence IN (42, 'x')", True, None),
    ("count IN ('x', 7)", False, "cast"),
    ("flag IN ('TRUE')", True, None),
    ("flag IN (1)", True, None),
    ("count IN (subject, 7)", False, "cast"),
    ("count IN (count)", True, None),
    ("type IN (subject, type)", True, None),
    ("missing IN ('a')", False, "missingAttribute"),
    ("5 IN (1 + 4)", True, None),
    # EXISTS
    ("EXISTS id", True, None),
    ("EXISTS dataref", False, None),
    ("NOT EXISTS dataref", True, None),
    # Case: keywords and functions are case-insensitive, values and LIKE are case-sensitive.
    ("type like 'nl.vng.%' and not (subject = 'zaak')", True, None),
    ("Type Like 'NL.%'", False, None),
    ("lower(subject) = 'zaak' aNd UpPeR(subject) = 'ZAAK'", True, None),
    ("SUBJECT = 'Zaak'", True, None),
    ("subject = 'zaak'", False, None),
    ("subject <> 'zaak'", True, None),
    # Implicit casts.
    ("sequence + 1 = 43", True, None),
    ("sequence > count", True, None),
    ("flag = 'true'", True, None),
    ("flag = 1", True, None),  # Boolean -> Integer is 1
    ("flag AND count", True, None),
    ("count = '7'", True, None),
    ("subject + 1 = 2", False, "cast"),
    ("-sequence = -42", True, None),
    ("IS_INT(sequence) AND NOT IS_INT(subject) AND IS_BOOL('False') AND NOT IS_BOOL('yes')", True, None),
    ("IS_BOOL(2) AND IS_INT(TRUE)", True, None),  # v1 casts Integer <-> Boolean
    ("STRING(count) = '7' AND BOOL('true') AND INT('-12') = -12", True, None),
    ("INT('+12') = 12 AND INT(' 12') = 12", False, "cast"),
    ("INT('2147483648') = 0", False, "cast"),
    ("INT('١٢') = 12", False, "cast"),
    # Arithmetic: truncated division, 32-bit range.
    ("-7 / 2 = -3 AND -7 % 2 = -1 AND 7 % -2 = 1", True, None),
    ("2147483647 + 1 > 0", False, "math"),
    ("-2147483648 - 1 < 0", False, "math"),
    ("-2147483648 / -1 > 0", False, "math"),
    ("65536 * 65536 > 0", False, "math"),
    ("-(-2147483648) > 0", False, "math"),
    ("-2147483648 < 0", True, None),
    ("+5 = 5", True, None),
    # Evaluation order: XOR evaluates both sides; AND/OR short-circuit.
    ("FALSE XOR (1 / 0 = 0)", False, "math"),
    ("FALSE AND missing", False, None),
    ("TRUE OR missing", True, None),
    ("TRUE XOR TRUE XOR TRUE", True, None),
    # Functions.
    ("LENGTH('zaak\u00e9') = 5", True, None),
    ("TRIM('\u3000 x\t\n') = 'x' AND TRIM('\x1fx') = '\x1fx'", True, None),
    ("CONCAT_WS('-', subject, count, flag) = 'Zaak-7-true'", True, None),
    ("RIGHT('abc', 0) = '' AND LEFT('abc', 0) = ''", True, None),
    ("SUBSTRING('abc', 1, -1) = ''", False, "functionEvaluation"),
    ("ABS(-5) = 5", True, None),
]


@pytest.mark.parametrize(("expression", "expected", "error_kind"), EVALUATIONS)
def test_evaluation(expression: str, expected: object, error_kind: str | None) -> None:
    compiled = compile_cesql(expression)
    value, error = compiled.evaluate(EVENT)
    assert value == expected
    assert (error.kind if error else None) == error_kind
    assert compiled.matches(EVENT) is (expected is True and error_kind is None)


LIKE_CASES = [
    ("abc", "abc", True),
    ("abc", "ABC", False),
    ("", "", True),
    ("", "%", True),
    ("a", "", False),
    ("abc", "%", True),
    ("abc", "%%", True),
    ("abc", "a%", True),
    ("abc", "%c", True),
    ("abc", "%b%", True),
    ("abc", "_b_", True),
    ("abc", "__", False),
    ("abc", "a%%c", True),
    ("ab", "a%b%", True),
    ("aXbXc", "a%b%c", True),
    ("abab", "%ab%ab", True),
    ("aab", "%ab%ab", False),
    ("a.c", "a.c", True),
    ("abc", "a.c", False),
    ("a*c", "a*c", True),
    ("a(c", "a(c", True),
    ("a\nc", "a_c", True),
    ("50%", "50\\%", True),
    ("500", "50\\%", False),
    ("a_c", "a\\_c", True),
    ("abc", "a\\_c", False),
    ("a\\c", "a\\c", True),
    ("a\\%", "a\\\\%", True),
    ("zaak.aangemaakt.v2", "%.v_", True),
    ("ü", "_", True),
]


@pytest.mark.parametrize(("text", "pattern", "expected"), LIKE_CASES)
def test_like(text: str, pattern: str, expected: bool) -> None:
    expression = compile_cesql(f"value LIKE '{pattern}'")
    assert expression.evaluate({"value": text}) == (expected, None)
    assert compile_cesql(f"value NOT LIKE '{pattern}'").matches({"value": text}) is not expected


def _like_reference(text: str, pattern: str) -> bool:
    """LIKE via a regular expression: fine as a reference for short inputs."""
    parts = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\" and position + 1 < len(pattern) and pattern[position + 1] in "%_":
            parts.append(re.escape(pattern[position + 1]))
            position += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        position += 1
    return re.fullmatch("".join(parts), text, re.DOTALL) is not None


@given(st.text(alphabet="ab%_\\", max_size=8), st.text(alphabet="ab%_\\", max_size=10))
def test_like_agrees_with_regex_reference(pattern: str, text: str) -> None:
    # An odd run of trailing backslashes would escape the closing quote of the literal.
    assume((len(pattern) - len(pattern.rstrip("\\"))) % 2 == 0)
    expression = compile_cesql(f"value LIKE '{pattern}'")
    assert expression.matches({"value": text}) is _like_reference(text, pattern)


def test_like_has_no_catastrophic_backtracking() -> None:
    expression = compile_cesql("value LIKE '%a%a%a%a%a%a%a%a%a%a%a%a%b'")
    assert expression.matches({"value": "a" * 60_000}) is False
    assert expression.matches({"value": "a" * 60_000 + "b"}) is True


def test_string_literal_escapes() -> None:
    assert compile_cesql("'it\\'s'").evaluate({}) == ("it's", None)
    assert compile_cesql('"say \\"hi\\""').evaluate({}) == ('say "hi"', None)
    assert compile_cesql("'\"'").evaluate({}) == ('"', None)
    assert compile_cesql("'a\\nb'").evaluate({}) == ("a\\nb", None)  # no C escapes
    assert compile_cesql("''").evaluate({}) == ("", None)


def test_attribute_values_of_other_types_are_strings() -> None:
    expression = compile_cesql("time LIKE '2026-%' AND payload = 'AQI='")
    attributes = {
        "time": datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC),
        "payload": b"\x01\x02",
    }
    assert expression.matches(attributes) is True
    assert compile_cesql("time").evaluate(attributes) == ("2026-03-01T12:00:00Z", None)


def test_null_attribute_is_missing() -> None:
    value, error = compile_cesql("subject = 'x'").evaluate({"subject": None})
    assert value is False
    assert error is not None
    assert error.kind is ErrorKind.MISSING_ATTRIBUTE
    assert compile_cesql("EXISTS subject").matches({"subject": None}) is False


def test_identifiers_are_read_in_lower_case() -> None:
    assert compile_cesql("MyExt = 'x'").matches({"myext": "x"}) is True


@pytest.mark.parametrize(
    ("expression", "result_type"),
    [
        ("subject", CesqlType.ANY),
        ("1 + 1", CesqlType.INTEGER),
        ("CONCAT('a')", CesqlType.STRING),
        ("a = b", CesqlType.BOOLEAN),
        ("IS_INT(a)", CesqlType.BOOLEAN),
        ("-a", CesqlType.INTEGER),
    ],
)
def test_result_type(expression: str, result_type: CesqlType) -> None:
    assert compile_cesql(expression).result_type is result_type


def test_only_boolean_true_matches() -> None:
    assert compile_cesql("flag").matches({"flag": True}) is True
    assert compile_cesql("flag").matches({"flag": "true"}) is False  # a String, not a Boolean
    assert compile_cesql("flag").matches({"flag": 1}) is False
    assert compile_cesql("1 + 1").matches({}) is False
    assert compile_cesql("'true'").matches({}) is False


def test_errors_yield_zero_value_of_result_type() -> None:
    assert compile_cesql("missing + 1").evaluate({})[0] == 0
    assert compile_cesql("CONCAT(missing)").evaluate({})[0] == ""
    assert compile_cesql("missing").evaluate({})[0] is False


def test_compiled_expression_is_reusable_across_events() -> None:
    expression = compile_cesql("type LIKE 'nl.%' AND sequence > 3")
    assert expression.matches({"type": "nl.x", "sequence": "4"}) is True
    assert expression.matches({"type": "nl.x", "sequence": "3"}) is False
    assert expression.matches({"type": "com.x", "sequence": "9"}) is False
    assert expression.matches({"type": "nl.x"}) is False


# --------------------------------------------------------------------------------------------------
# Compile errors, with columns.

COMPILE_ERRORS: list[tuple[str, int, str, ErrorKind]] = [
    ("", 1, "empty expression", ErrorKind.PARSE),
    ("   ", 1, "empty expression", ErrorKind.PARSE),
    ("type = ", 8, "unexpected end of expression", ErrorKind.PARSE),
    ("type == 'a'", 7, "unexpected '='", ErrorKind.PARSE),
    ("type = 'a", 8, "unterminated string literal", ErrorKind.PARSE),
    ("type = \"a'", 8, "unterminated string literal", ErrorKind.PARSE),
    (
        "subject LIKE type",
        14,
        "the LIKE pattern must be a string literal, got attribute name 'type'",
        ErrorKind.PARSE,
    ),
    ("subject LIKE 5", 14, "the LIKE pattern must be a string literal", ErrorKind.PARSE),
    ("a IN ()", 7, "unexpected ')'", ErrorKind.PARSE),
    ("a IN 'x'", 6, "expected '(' to open the IN set", ErrorKind.PARSE),
    ("a IN ('x'", 10, "expected ')' to close the IN set", ErrorKind.PARSE),
    ("(a = 'b'", 9, "expected ')' to close the parenthesis opened at column 1", ErrorKind.PARSE),
    ("a = 'b')", 8, "unexpected ')'", ErrorKind.PARSE),
    ("a = 'b' c", 9, "unexpected attribute name 'c'", ErrorKind.PARSE),
    ("a.b = 'c'", 2, "unexpected character '.'", ErrorKind.PARSE),
    ("a = 'b' && c", 9, "unexpected character '&'", ErrorKind.PARSE),
    ("my_ext = 'x'", 1, "invalid attribute name 'my_ext'", ErrorKind.PARSE),
    ("2147483648 > 0", 1, "integer literal 2147483648 is outside the 32-bit signed range", ErrorKind.PARSE),
    ("-2147483649 < 0", 1, "outside the 32-bit signed range", ErrorKind.PARSE),
    ("EXISTS 'a'", 8, "EXISTS needs an attribute name", ErrorKind.PARSE),
    ("EXISTS LOWER(a)", 8, "EXISTS needs an attribute name", ErrorKind.PARSE),
    ("a NOT b", 3, "after an operand NOT must be followed by LIKE or IN", ErrorKind.PARSE),
    ("+a", 1, "unexpected '+'", ErrorKind.PARSE),
    ("LOWER('a'", 10, "expected ')' to close the arguments of LOWER", ErrorKind.PARSE),
    ("a = 1 AND b = 2 OR c = 3", 17, "mixing AND and OR without parentheses is ambiguous", ErrorKind.PARSE),
    ("a OR b XOR c", 8, "mixing OR and XOR", ErrorKind.PARSE),
    ("NOT type = 'a'", 10, "ambiguous NOT: it binds tighter than =", ErrorKind.PARSE),
    ("NOT type LIKE 'a%'", 10, "write x NOT LIKE pattern", ErrorKind.PARSE),
    ("NOT type IN ('a')", 10, "write x NOT IN (...)", ErrorKind.PARSE),
    ("NOT type NOT LIKE 'a%'", 10, "ambiguous NOT", ErrorKind.PARSE),
    ("FOO(a)", 1, "unknown function FOO", ErrorKind.MISSING_FUNCTION),
    ("a = my_func(1)", 5, "unknown function MY_FUNC", ErrorKind.MISSING_FUNCTION),
    ("LOWER()", 1, "function LOWER takes 1 argument(s), got 0", ErrorKind.MISSING_FUNCTION),
    ("SUBSTRING('a')", 1, "function SUBSTRING takes 2 or 3 argument(s), got 1", ErrorKind.MISSING_FUNCTION),
    ("CONCAT_WS()", 1, "function CONCAT_WS takes 1 or more argument(s), got 0", ErrorKind.MISSING_FUNCTION),
    ("f1(a)", 1, "invalid function name 'f1'", ErrorKind.PARSE),
]


@pytest.mark.parametrize(("expression", "column", "message", "kind"), COMPILE_ERRORS)
def test_compile_errors(expression: str, column: int, message: str, kind: ErrorKind) -> None:
    with pytest.raises(CesqlCompileError) as raised:
        compile_cesql(expression)
    assert raised.value.kind is kind
    assert raised.value.column == column
    assert message in raised.value.detail
    label = "syntax error" if kind is ErrorKind.PARSE else "error"
    assert str(raised.value).startswith(f"{label} at column {column}: ")


@pytest.mark.parametrize(
    "expression",
    [
        "(a = 1 AND b = 2) OR c = 3",
        "a = 1 AND (b = 2 OR c = 3)",
        "a AND b AND c AND d",
        "(NOT type) = TRUE",
        "NOT (type = 'a')",
        "type NOT LIKE 'a%' AND NOT EXISTS subject",
        "a = NOT b",
    ],
)
def test_unambiguous_forms_compile(expression: str) -> None:
    compile_cesql(expression)


def test_precedence_follows_the_spec() -> None:
    # Multiplicative before additive before comparison; unary minus before everything binary.
    assert compile_cesql("2 + 3 * 4 = 14").matches({}) is True
    assert compile_cesql("-2 * -3 = 6").matches({}) is True
    # LIKE binds tighter than IN and than '=': (x LIKE 'a%') = TRUE
    assert compile_cesql("x LIKE 'a%' = TRUE").matches({"x": "abc"}) is True
    # IN binds tighter than '+': 1 + (2 IN (2)) casts TRUE to 1.
    assert compile_cesql("1 + 2 IN (2) = 2").matches({}) is True


def test_nesting_limits() -> None:
    compile_cesql("(" * (MAX_NESTING - 1) + "TRUE" + ")" * (MAX_NESTING - 1))
    with pytest.raises(CesqlCompileError, match="nested more than"):
        compile_cesql("(" * (MAX_NESTING + 1) + "TRUE" + ")" * (MAX_NESTING + 1))
    with pytest.raises(CesqlCompileError, match="nested more than"):
        compile_cesql(" + ".join(["1"] * (MAX_NESTING + 2)) + " > 0")
    with pytest.raises(CesqlCompileError, match="nested more than"):
        compile_cesql("NOT " * (MAX_NESTING + 1) + "TRUE")
    # A chain of one logical operator is flat, however long.
    long_chain = " AND ".join(f"a{index} = 'x'" for index in range(500))
    assert compile_cesql(long_chain).matches({f"a{index}": "x" for index in range(500)}) is True


def test_expression_length_limit() -> None:
    with pytest.raises(CesqlCompileError, match="longer than"):
        compile_cesql("'" + "x" * MAX_EXPRESSION_LENGTH + "' = 'x'")
