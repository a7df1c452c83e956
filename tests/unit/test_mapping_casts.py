"""Every Mapping cast, through the engine (compile, apply), against OpenConnector's PHP semantics."""

from __future__ import annotations

import pytest

from openconnector.mapping import CAST_NAMES, MappingError, compile_mapping

MISSING = object()


def cast(value: object, spec: str | list[str], **extra: object) -> object:
    """Apply `cast: {v: spec}` to {v: value, **extra} and return v (MISSING when the cast removed it)."""
    mapping = compile_mapping({"passThrough": True, "cast": {"v": spec}})
    output = mapping.apply({"v": value, **extra})
    assert isinstance(output, dict)
    return output.get("v", MISSING)


# (cast spelling, input, expected output). Every name in CAST_NAMES has at least one row (checked below).
CONVERSIONS: list[tuple[str, object, object]] = [
    # string: PHP (string)
    ("string", 12, "12"),
    ("string", 1.5, "1.5"),
    ("string", 2.0, "2"),
    ("string", 1e25, "1.0E+25"),
    ("string", True, "1"),
    ("string", False, ""),
    ("string", None, ""),
    ("string", "x", "x"),
    # bool/boolean: (int)$v === 1 || 'true' || 'yes', case-insensitive
    ("bool", "true", True),
    ("bool", "YES", True),
    ("bool", "1", True),
    ("bool", 1, True),
    ("bool", "1.9", True),
    ("bool", True, True),
    ("bool", "0", False),
    ("bool", "false", False),
    ("bool", "no", False),
    ("bool", "on", False),
    ("bool", 2, False),
    ("bool", None, False),
    ("boolean", "Yes", True),
    ("boolean", "nee", False),
    # ?bool/?boolean: null stays null
    ("?bool", None, None),
    ("?bool", "true", True),
    ("?bool", "x", False),
    ("?boolean", None, None),
    ("?boolean", 1, True),
    # int/integer
    ("int", "12", 12),
    ("int", " 12 ", 12),
    ("int", "12.9", 12),
    ("int", "-3.7", -3),
    ("int", "1e3", 1000),
    ("int", 12.9, 12),
    ("int", True, 1),
    ("int", 7, 7),
    ("integer", "+42", 42),
    ("integer", "12345678901234567890", 12345678901234567890),
    # float
    ("float", "1.5", 1.5),
    ("float", ".5", 0.5),
    ("float", "2", 2.0),
    ("float", 3, 3.0),
    ("float", False, 0.0),
    # array: (array)
    ("array", None, []),
    ("array", "a", ["a"]),
    ("array", 5, [5]),
    ("array", [1], [1]),
    ("array", {"a": 1}, {"a": 1}),
    # date: normalised ISO 8601 / RFC 3339 (documented divergence from PHP's date())
    ("date", "2024-06-15", "2024-06-15"),
    ("date", "2024-06-15T10:30:00Z", "2024-06-15T10:30:00Z"),
    ("date", "2024-06-15T12:30:00+02:00", "2024-06-15T12:30:00+02:00"),
    ("date", "2024-06-15T10:30:00.250+00:00", "2024-06-15T10:30:00.250000Z"),
    ("date", 1718447400, "2024-06-15T10:30:00Z"),
    ("date", "1718447400", "2024-06-15T10:30:00Z"),
    ("date", "Sat, 15 Jun 2024 10:30:00 GMT", "2024-06-15T10:30:00Z"),
    # url: PHP urlencode (space as +, ~ encoded)
    ("url", "a b&c=d/é~", "a+b%26c%3Dd%2F%C3%A9%7E"),
    ("url", 12, "12"),
    ("urlDecode", "a+b%26c%3D%C3%A9", "a b&c=é"),
    # rawurl: RFC 3986 (space as %20, ~ kept)
    ("rawurl", "a b&c/é~", "a%20b%26c%2F%C3%A9~"),
    ("rawurlDecode", "a+b%20c", "a+b c"),
    # html: PHP 8.1 htmlentities (ENT_QUOTES | ENT_HTML401)
    (
        "html",
        "<a href='x'>Café & \"co\"</a>",
        "&lt;a href=&#039;x&#039;&gt;Caf&eacute; &amp; &quot;co&quot;&lt;/a&gt;",
    ),
    ("htmlDecode", "&lt;p&gt;Caf&eacute; &amp; co&#039;s&lt;/p&gt;", "<p>Café & co's</p>"),
    # base64
    ("base64", "Hello, World!", "SGVsbG8sIFdvcmxkIQ=="),
    ("base64", "é", "w6k="),
    ("base64Decode", "SGVsbG8sIFdvcmxkIQ==", "Hello, World!"),
    ("base64Decode", "SGVsbG8sIFdvcmxkIQ", "Hello, World!"),  # PHP accepts missing padding
    ("base64Decode", "SGVs bG8=", "Hello"),  # and skips characters outside the alphabet
    # json: PHP json_encode defaults (compact, \uXXXX, escaped slashes)
    (
        "json",
        {"a": "x/y", "b": "é", "c": [1, 2.5, None, True]},
        '{"a":"x\\/y","b":"\\u00e9","c":[1,2.5,null,true]}',
    ),
    ("json", "plain", '"plain"'),
    # jsonToArray: arrays stay, strings are HTML-entity-decoded then parsed
    ("jsonToArray", '{"a":1,"b":[true]}', {"a": 1, "b": [True]}),
    ("jsonToArray", "{&quot;a&quot;:&quot;x&quot;}", {"a": "x"}),
    ("jsonToArray", [1, 2], [1, 2]),
    ("jsonToArray", {"k": "v"}, {"k": "v"}),
    # utf8: iconv ASCII//TRANSLIT
    ("utf8", "Crème brûlée, Straße Æ €5 漢", "Creme brulee, Strasse AE EUR5 ?"),
    # nullStringToNull
    ("nullStringToNull", "null", None),
    ("nullStringToNull", "NULL", "NULL"),
    ("nullStringToNull", "", ""),
    # coordinateStringToArray (in OpenConnector's code, though not in its documented list)
    ("coordinateStringToArray", "52.1 4.3", ["52.1", "4.3"]),
    ("coordinateStringToArray", "1 2 3 4", [["1", "2"], ["3", "4"]]),
    ("coordinateStringToArray", "1 2 3", [["1", "2"], ["3"]]),
    # moneyStringToInt: strip . and , then (int)
    ("moneyStringToInt", "1.234,56", 123456),
    ("moneyStringToInt", "12,50", 1250),
    ("moneyStringToInt", "12", 12),
    ("moneyStringToInt", 1250, 1250),
    # intToMoneyString: number_format($v / 100, 2, ',', '.')
    ("intToMoneyString", 123456, "1.234,56"),
    ("intToMoneyString", 5, "0,05"),
    ("intToMoneyString", -123456, "-1.234,56"),
    ("intToMoneyString", "1250", "12,50"),
    ("intToMoneyString", 0, "0,00"),
    ("intToMoneyString", 100000000, "1.000.000,00"),
    ("intToMoneyString", 0.5, "0,01"),  # 0.005 rounds half away from zero
    ("intToMoneyString", -0.4, "0,00"),  # PHP 8 never returns "-0"
]


@pytest.mark.parametrize(("spelling", "value", "expected"), CONVERSIONS)
def test_cast_converts_like_openconnector(spelling: str, value: object, expected: object) -> None:
    result = cast(value, spelling)
    assert result == expected
    assert type(result) is type(expected)


FAILURES: list[tuple[str, object, str]] = [
    ("int", "abc", 'cannot cast "abc" to integer'),
    ("int", "12abc", 'cannot cast "12abc" to integer'),
    ("int", "1_000", 'cannot cast "1_000" to integer'),
    ("int", None, "cannot cast null to integer"),
    ("int", [1], "cannot cast [1] to integer"),
    ("integer", "", 'cannot cast "" to integer'),
    ("float", "abc", 'cannot cast "abc" to float'),
    ("float", "nan", 'cannot cast "nan" to float'),
    ("float", None, "cannot cast null to float"),
    ("string", [1, 2], "cannot cast [1, 2] to string"),
    ("bool", {"a": 1}, 'cannot cast {"a": 1} to boolean'),
    ("date", "garbage", 'cannot cast "garbage" to date'),
    ("date", "2024-13-01", 'cannot cast "2024-13-01" to date'),
    ("date", True, "cannot cast true to date"),
    ("urlDecode", "%C0%A0", 'cannot cast "%C0%A0" to urlDecode: not UTF-8 once decoded'),
    ("rawurlDecode", "%FF", 'cannot cast "%FF" to rawurlDecode: not UTF-8 once decoded'),
    ("base64Decode", "/w==", 'cannot cast "/w==" to base64Decode: not base64 of UTF-8 text'),
    ("base64Decode", "abcde", 'cannot cast "abcde" to base64Decode: not base64 of UTF-8 text'),
    ("jsonToArray", "not json", 'cannot cast "not json" to jsonToArray: not valid JSON'),
    ("moneyStringToInt", "€ 12,50", 'cannot cast "€ 12,50" to moneyStringToInt'),
    ("intToMoneyString", "abc", 'cannot cast "abc" to intToMoneyString'),
    ("intToMoneyString", None, "cannot cast null to intToMoneyString"),
    ("html", {"a": 1}, 'cannot cast {"a": 1} to html'),
]


@pytest.mark.parametrize(("spelling", "value", "message"), FAILURES)
def test_cast_that_php_would_silently_mangle_fails_with_the_path(
    spelling: str, value: object, message: str
) -> None:
    mapping = compile_mapping({"passThrough": True, "cast": {"price": spelling}})
    with pytest.raises(MappingError) as caught:
        mapping.apply({"price": value})
    assert caught.value.path == "cast.price"
    assert caught.value.message == message
    assert str(caught.value) == f"cast.price: {message}"


def test_failure_message_truncates_long_values() -> None:
    with pytest.raises(MappingError) as caught:
        cast("x" * 500, "int")
    assert len(caught.value.message) < 80
    assert caught.value.message.endswith("… to integer")


# --------------------------------------------------------------------------- casts with arguments and effects


def test_key_cant_be_value_removes_a_key_whose_value_is_its_own_name() -> None:
    assert cast("v", "keyCantBeValue") is MISSING
    assert cast("w", "keyCantBeValue") == "w"
    mapping = compile_mapping({"passThrough": True, "cast": {"a.b": "keyCantBeValue"}})
    assert mapping.apply({"a": {"b": "a.b", "c": 1}}) == {"a": {"c": 1}}


@pytest.mark.parametrize(
    ("value", "removed"),
    [("none", True), ("some", False), ("NONE", False), (None, False), ("", False)],
)
def test_unset_if_value_compares_with_the_argument(value: object, removed: bool) -> None:
    assert (cast(value, "unsetIfValue==none") is MISSING) is removed


@pytest.mark.parametrize(
    ("value", "removed"),
    [
        ("", True),
        ("0", True),  # PHP empty()
        (0, True),
        (None, True),
        ([], True),
        ({}, True),
        ({"a": None, "b": "", "c": [0]}, True),  # all leaves empty (areAllArrayKeysNull)
        ("x", False),
        ({"a": 1}, False),
        (False, True),
    ],
)
def test_unset_if_value_with_empty_argument_removes_empty_values(value: object, removed: bool) -> None:
    assert (cast(value, "unsetIfValue==") is MISSING) is removed


def test_unset_if_value_uses_php_loose_numeric_equality() -> None:
    assert cast(5, "unsetIfValue==5") is MISSING
    assert cast("5.0", "unsetIfValue==5") is MISSING
    assert cast("5x", "unsetIfValue==5") == "5x"
    assert cast(True, "unsetIfValue==yes") is MISSING  # true == "yes" (non-empty string is truthy)


def test_set_null_if_value_keeps_the_key_with_null() -> None:
    mapping = compile_mapping({"passThrough": True, "cast": {"v": "setNullIfValue==-"}})
    assert mapping.apply({"v": "-"}) == {"v": None}
    assert mapping.apply({"v": "x"}) == {"v": "x"}
    assert cast({"a": None}, "setNullIfValue==") is None
    assert cast("0", "setNullIfValue==") is None
    assert cast("a", "setNullIfValue==") == "a"


def test_count_value_counts_another_output_path() -> None:
    assert cast("x", "countValue:items", items=[1, 2, 3]) == 3
    assert cast("x", "countValue:meta", meta={"a": 1, "b": 2}) == 2
    assert cast("x", "countValue:missing") == "x"  # PHP leaves the value alone
    assert cast("x", "countValue:items", items="abc") == "x"  # not countable
    nested = compile_mapping({"passThrough": True, "cast": {"total": "countValue:data.rows"}})
    assert nested.apply({"total": 0, "data": {"rows": [1, 2]}}) == {"total": 2, "data": {"rows": [1, 2]}}


def test_count_value_sees_the_result_of_an_earlier_cast_in_the_chain() -> None:
    # Casts are written back one by one, as PHP does: "array" makes v countable for "countValue:v".
    assert cast("single", "array,countValue:v") == 1


def test_casts_chain_left_to_right_and_tolerate_spaces() -> None:
    assert cast("12.7", "float, int , string") == "12"
    assert cast("12", ["int", "string"]) == "12"


def test_list_form_allows_a_comma_inside_an_argument() -> None:
    assert cast("a,b", ["unsetIfValue==a,b"]) is MISSING
    with pytest.raises(MappingError, match="unknown cast 'b'"):
        cast("a,b", "unsetIfValue==a,b")  # the string form splits on every comma, as OpenConnector does


def test_a_cast_after_a_removal_is_not_applied() -> None:
    assert cast("none", "unsetIfValue==none,int") is MISSING


def test_cast_on_a_path_missing_from_the_output_is_skipped() -> None:
    mapping = compile_mapping({"cast": {"absent": "int", "a.b": "int"}, "mapping": {"x": "x"}})
    assert mapping.apply({"x": "abc"}) == {"x": "abc"}


def test_cast_reaches_into_lists_by_index() -> None:
    mapping = compile_mapping({"passThrough": True, "cast": {"rows.1.n": "int"}})
    assert mapping.apply({"rows": [{"n": "1"}, {"n": "2"}]}) == {"rows": [{"n": "1"}, {"n": 2}]}


# --------------------------------------------------------------------------- compile-time checks


def test_unknown_cast_is_a_compile_error_naming_the_path() -> None:
    with pytest.raises(MappingError) as caught:
        compile_mapping({"cast": {"price": "integr"}})
    assert caught.value.path == "cast.price"
    assert "unknown cast 'integr'" in caught.value.message
    assert "integer" in caught.value.message  # lists the known names


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("countValue:", "countValue needs a dot path"),
        ("countValue:a..b", "countValue needs a dot path"),
        ("int,,string", "empty cast name"),
        ("", "empty cast name"),
        ("Int", "unknown cast 'Int'"),  # names are case-sensitive, as PHP's switch
    ],
)
def test_malformed_cast_specs_are_compile_errors(spec: str, fragment: str) -> None:
    with pytest.raises(MappingError) as caught:
        compile_mapping({"cast": {"price": spec}})
    assert caught.value.path == "cast.price"
    assert fragment in caught.value.message


def test_every_cast_name_is_exercised_by_these_tests() -> None:
    tested = {spelling for spelling, _, _ in CONVERSIONS} | {"keyCantBeValue"}
    tested |= {"unsetIfValue==X", "setNullIfValue==X", "countValue:path"}  # tests above
    assert set(CAST_NAMES) <= tested, set(CAST_NAMES) - tested
