"""The Mapping engine: OpenConnector's execution order, compile-time checks, and the template sandbox."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import openconnector.mapping.engine as engine_module
from openconnector.mapping import MappingError, compile_mapping, parse_path, validate_mapping


def render(template: str, payload: object | None = None) -> object:
    output = compile_mapping({"mapping": {"v": template}}).apply({} if payload is None else payload)
    assert isinstance(output, dict)
    return output["v"]


def render_error(template: str, payload: object | None = None) -> MappingError:
    mapping = compile_mapping({"mapping": {"v": template}})
    with pytest.raises(MappingError) as caught:
        mapping.apply({} if payload is None else payload)
    assert caught.value.path == "mapping.v"
    return caught.value


# --------------------------------------------------------------------------- the reference example


def test_reference_example_from_openconnector_reproduces_exactly() -> None:
    spec = json.loads(
        '{"passThrough":true,"mapping":{"metadata.status":"status","label":"{{ name|upper }} ({{ status }})",'
        '"kanaal":"zaken"},"unset":["status"],"cast":{"price":"integer","id":"int"}}'
    )
    payload = json.loads('{"id":"123","name":"doggie","status":"available","price":"12"}')
    expected = (
        '{"id":123,"name":"doggie","price":12,"metadata":{"status":"available"},'
        '"label":"DOGGIE (available)","kanaal":"zaken"}'
    )

    output = compile_mapping(spec, name="petstore").apply(payload)

    assert output == json.loads(expected)
    assert json.dumps(output, separators=(",", ":")) == expected  # key order too
    assert payload == {"id": "123", "name": "doggie", "status": "available", "price": "12"}  # untouched


# --------------------------------------------------------------------------- step by step


def test_without_pass_through_only_mapped_keys_appear() -> None:
    mapping = compile_mapping({"mapping": {"name": "name"}})
    assert mapping.apply({"name": "doggie", "other": 1}) == {"name": "doggie"}
    assert mapping.pass_through is False


def test_dot_path_copy_keeps_the_type() -> None:
    payload = {"n": 12, "f": 1.5, "b": False, "z": None, "o": {"x": [1, {"y": "deep"}]}, "l": [1, 2]}
    mapping = compile_mapping(
        {
            "mapping": {
                "n": "n",
                "f": "f",
                "b": "b",
                "z": "z",
                "obj": "o",
                "deep": "o.x.1.y",
                "first": "l.0",
                "out.of.range": "l.5",
            }
        }
    )
    assert mapping.apply(payload) == {
        "n": 12,
        "f": 1.5,
        "b": False,
        "z": None,  # an existing path holding null is copied, not rendered
        "obj": {"x": [1, {"y": "deep"}]},
        "deep": "deep",
        "first": 1,
        "out": {"of": {"range": "l.5"}},  # not a path in the input: a literal string
    }


def test_copied_values_do_not_alias_the_input() -> None:
    mapping = compile_mapping({"mapping": {"copy": "o", "copy.added": "{{ 'x' }}"}})
    payload: dict[str, Any] = {"o": {"a": 1}}
    assert mapping.apply(payload) == {"copy": {"a": 1, "added": "x"}}
    assert payload == {"o": {"a": 1}}


def test_list_and_object_values_are_set_literally_and_never_shared_between_calls() -> None:
    mapping = compile_mapping(
        {
            "mapping": {
                "tags": ["a", "{{ b }}"],
                "meta": {"k": "v"},
                "n": 5,
                "t": True,
                "nil": None,
                "meta.x": "y",
            }
        }
    )
    first = mapping.apply({})
    assert first == {"tags": ["a", "{{ b }}"], "meta": {"k": "v", "x": "y"}, "n": 5, "t": True, "nil": None}
    assert mapping.apply({}) == first  # the write into meta.x did not leak into the compiled literal


def test_plain_string_without_template_syntax_is_a_literal() -> None:
    assert render("zaken") == "zaken"
    assert render("nl.vng.zgw.zaken.zaak.created") == "nl.vng.zgw.zaken.zaak.created"


def test_a_string_that_is_an_input_path_copies_before_templating() -> None:
    # OpenConnector checks `has($value)` first, so even template-looking keys resolve as paths.
    assert render("{{ a }}", {"{{ a }}": "key", "a": "var"}) == "key"


def test_template_renders_with_the_input_as_context() -> None:
    payload = {"zaak": {"id": "abc", "status": "open"}, "n": 3}
    assert render("{{ zaak.id }}-{{ n + 1 }}", payload) == "abc-4"
    assert render("{% if zaak.status == 'open' %}yes{% else %}no{% endif %}", payload) == "yes"


def test_unset_removes_paths_and_ignores_missing_ones() -> None:
    mapping = compile_mapping({"passThrough": True, "unset": ["a.b", "missing", "missing.deep", "l.0"]})
    assert mapping.apply({"a": {"b": 1, "c": 2}, "l": ["x", "y"]}) == {"a": {"c": 2}, "l": ["y"]}


def test_unset_runs_after_mapping_so_a_renamed_field_can_drop_its_source() -> None:
    mapping = compile_mapping({"passThrough": True, "mapping": {"title": "name"}, "unset": ["name"]})
    assert mapping.apply({"name": "x", "id": 1}) == {"id": 1, "title": "x"}


def test_cast_runs_after_unset() -> None:
    mapping = compile_mapping({"mapping": {"price": "p"}, "unset": ["price"], "cast": {"price": "int"}})
    assert mapping.apply({"p": "not a number"}) == {}


def test_hash_key_alone_returns_the_root_value() -> None:
    assert compile_mapping({"mapping": {"#": "items"}}).apply({"items": [1, 2]}) == [1, 2]
    assert compile_mapping({"mapping": {"#": "{{ name }}"}}).apply({"name": "x"}) == "x"
    assert compile_mapping({"mapping": {"#.id": "id"}}).apply({"id": 7}) == {"id": 7}
    assert compile_mapping({"mapping": {"#": "n"}, "cast": {"#": "int"}}).apply({"n": "5"}) == 5


def test_hash_key_next_to_other_keys_is_an_ordinary_key() -> None:
    output = compile_mapping({"mapping": {"#": "a", "b": "b"}}).apply({"a": 1, "b": 2})
    assert output == {"#": 1, "b": 2}


def test_list_input_is_mapped_item_by_item() -> None:
    mapping = compile_mapping({"mapping": {"id": "id", "label": "{{ name|title }}"}, "cast": {"id": "int"}})
    assert mapping.apply([{"id": "1", "name": "a b"}, {"id": "2", "name": "c"}]) == [
        {"id": 1, "label": "A B"},
        {"id": 2, "label": "C"},
    ]


def test_list_mode_error_names_the_item() -> None:
    mapping = compile_mapping({"passThrough": True, "cast": {"id": "int"}})
    with pytest.raises(MappingError) as caught:
        mapping.apply([{"id": "1"}, {"id": "x"}])
    assert caught.value.path == "cast.id"
    assert caught.value.message == 'list item 1: cannot cast "x" to integer'


def test_scalar_payloads_and_items_are_seen_as_value() -> None:
    mapping = compile_mapping({"mapping": {"v": "value", "t": "{{ value * 2 }}"}})
    assert mapping.apply(21) == {"v": 21, "t": "42"}
    assert mapping.apply(["a", 2]) == [{"v": "a", "t": "aa"}, {"v": 2, "t": "4"}]


def test_escaped_dots_address_keys_that_contain_dots() -> None:
    mapping = compile_mapping({"mapping": {"out&#46;key": "in&#46;key", "nested.x": "a&#46;b.c"}})
    assert mapping.apply({"in.key": 1, "a.b": {"c": 2}}) == {"out.key": 1, "nested": {"x": 2}}
    assert parse_path("a&#46;b.c") == ("a.b", "c")


def test_setting_through_a_scalar_replaces_it_like_php_dot() -> None:
    mapping = compile_mapping({"passThrough": True, "mapping": {"a.b": "{{ 'x' }}", "e.k": "{{ 'y' }}"}})
    assert mapping.apply({"a": "scalar", "e": []}) == {"a": {"b": "x"}, "e": {"k": "y"}}


def test_setting_a_list_element_and_appending() -> None:
    mapping = compile_mapping({"passThrough": True, "mapping": {"l.0": "{{ 'A' }}", "l.2": "{{ 'C' }}"}})
    assert mapping.apply({"l": ["a", "b"]}) == {"l": ["A", "b", "C"]}


def test_setting_a_name_inside_a_non_empty_list_is_a_runtime_error() -> None:
    mapping = compile_mapping({"passThrough": True, "mapping": {"l.name": "{{ 'x' }}"}})
    with pytest.raises(MappingError) as caught:
        mapping.apply({"l": [1]})
    assert caught.value.path == "mapping.l.name"
    assert "cannot set 'name' in a list of 1 items" in caught.value.message


def test_pass_through_copy_is_deep() -> None:
    mapping = compile_mapping({"passThrough": True, "mapping": {"o.added": "{{ 1 }}"}, "unset": ["l.0"]})
    payload: dict[str, Any] = {"o": {"a": 1}, "l": [1, 2]}
    mapping.apply(payload)
    assert payload == {"o": {"a": 1}, "l": [1, 2]}


def test_mapping_error_carries_the_mapping_name() -> None:
    mapping = compile_mapping({"passThrough": True, "cast": {"price": "int"}}, name="petstore")
    with pytest.raises(MappingError) as caught:
        mapping.apply({"price": "abc"})
    assert str(caught.value) == 'cast.price: cannot cast "abc" to integer'
    assert caught.value.mapping == "petstore"


# --------------------------------------------------------------------------- compile-time validation


def test_template_syntax_error_is_a_compile_error_at_the_mapping_key() -> None:
    with pytest.raises(MappingError) as caught:
        compile_mapping({"mapping": {"label": "{{ name|upper }"}})
    assert caught.value.path == "mapping.label"
    assert caught.value.message.startswith("template syntax error on line 1:")


def test_unknown_filter_is_a_compile_error() -> None:
    with pytest.raises(MappingError) as caught:
        compile_mapping({"mapping": {"label": "{{ name|nosuchfilter }}"}})
    assert caught.value.path == "mapping.label"
    assert "nosuchfilter" in caught.value.message


def test_templates_compile_once_not_per_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    mapping = compile_mapping({"mapping": {"label": "{{ name|upper }}"}})

    def refuse(source: str) -> None:
        raise AssertionError(f"template compiled during apply: {source}")

    monkeypatch.setattr(engine_module, "compile_template", refuse)
    assert mapping.apply({"name": "a"}) == {"label": "A"}
    assert mapping.apply({"name": "b"}) == {"label": "B"}


def test_validate_mapping_reports_every_problem() -> None:
    errors = validate_mapping(
        {
            "passThrough": "yes",
            "mapping": {"label": "{{ x", "": "a", "bad..path": "a", "lit": {1: "x"}},
            "unset": ["ok", 5, "a..b"],
            "cast": {"price": "integr", "id": "int,nope", "ok": "int", "n": 5},
        }
    )
    assert [error.path for error in errors] == [
        "passThrough",
        "mapping.label",
        "mapping.",
        "mapping.bad..path",
        "mapping.lit",
        "unset[1]",
        "unset[2]",
        "cast.price",
        "cast.id",
        "cast.n",
    ]
    assert all(isinstance(error.message, str) and error.message for error in errors)


def test_validate_mapping_is_empty_for_a_good_spec() -> None:
    assert (
        validate_mapping({"mapping": {"a": "b"}, "unset": [], "cast": {"a": "int"}, "passThrough": False})
        == []
    )
    assert validate_mapping({}) == []


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ([], "spec"),
        ({"mapping": ["a"]}, "mapping"),
        ({"unset": "a"}, "unset"),
        ({"cast": ["int"]}, "cast"),
        ({"mapping": {"a": float("nan")}}, "mapping.a"),
        ({"mapping": {"a": {"b": object()}}}, "mapping.a"),
    ],
)
def test_malformed_spec_shapes_name_the_field(spec: Any, path: str) -> None:
    with pytest.raises(MappingError) as caught:
        compile_mapping(spec)
    assert caught.value.path == path


# --------------------------------------------------------------------------- template language


def test_openconnector_template_extras() -> None:
    assert render("{{ s|b64enc }}", {"s": "Hello, World!"}) == "SGVsbG8sIFdvcmxkIQ=="
    assert render("{{ s|b64dec }}", {"s": "SGVsbG8sIFdvcmxkIQ=="}) == "Hello, World!"
    assert render("{{ (s|json_decode).a.b }}", {"s": '{"a": {"b": 7}}'}) == "7"
    assert (
        render("{{ s|slugify }}", {"s": "  Zaak: Bouwvergunning Straße #12!"})
        == "zaak-bouwvergunning-strasse-12"
    )
    generated = render("{{ generateUuid() }}")
    assert isinstance(generated, str)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", generated)
    assert render("{{ generateUuid() }}") != generated


def test_filter_errors_are_runtime_mapping_errors() -> None:
    error = render_error("{{ s|json_decode }}", {"s": "{broken"})
    assert error.message == "template error: ValueError: json_decode: the value is not valid JSON"
    assert "b64dec" in render_error("{{ s|b64dec }}", {"s": "/w=="}).message


def test_rendering_of_non_text_values() -> None:
    payload = {"none": None, "yes": True, "no": False, "l": [1, "a"], "o": {"k": "é"}, "f": 1.5}
    assert render("{{ none }}|{{ yes }}|{{ no }}|{{ l }}|{{ o }}|{{ f }}", payload) == (
        '|true|false|[1,"a"]|{"k":"é"}|1.5'
    )


def test_concatenation_renders_values_like_output() -> None:
    payload = {"none": None, "yes": True, "l": [1]}
    assert render("{{ 'a' ~ none ~ yes ~ l ~ 1 }}", payload) == "atrue[1]1"


def test_autoescape_is_off() -> None:
    assert render("{{ s }}", {"s": "<b>&\"'</b>"}) == "<b>&\"'</b>"


def test_undefined_variables_fail_loudly_and_default_rescues_them() -> None:
    error = render_error("{{ missing }}")
    assert error.message == "template error: 'missing' is undefined"
    assert render("{{ missing|default('fallback') }}") == "fallback"
    assert render("{% if missing is defined %}x{% else %}y{% endif %}") == "y"


SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ s.__class__ }}",
    "{{ s['__class__'] }}",
    "{{ s|attr('__class__') }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ generateUuid.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__self__ }}",
    "{{ (1).__class__.__base__.__subclasses__() }}",
    "{{ d.items.__self__ }}",
    "{{ l.pop() }}",
    "{{ l.append(1) }}",
    "{{ d.update({'a': 1}) }}",
    "{{ d.clear() }}",
    "{{ '{0.__class__}'.format(s) }}",
    "{{ s.format_map(d) }}",
]


@pytest.mark.parametrize("template", SANDBOX_ESCAPES)
def test_sandbox_refuses_internals_and_mutation(template: str) -> None:
    payload = {"s": "text", "l": [1, 2], "d": {"k": "v"}}
    error = render_error(template, payload)
    assert error.message.startswith("template error:")
    assert any(word in error.message for word in ("unsafe", "refused", "undefined", "no attribute"))
    assert payload == {"s": "text", "l": [1, 2], "d": {"k": "v"}}


def test_lipsum_is_not_available() -> None:
    assert "undefined" in render_error("{{ lipsum(1000000) }}").message


RESOURCE_BOMBS = [
    "{{ 'a' * 10000000 }}",
    "{{ [1] * 10000000 }}",
    "{{ 9 ** 99999 }}",
    "{{ 10 ** 2000 * 10 ** 2000 * 10 ** 2000 }}",
    "{{ '%99999999d' % 1 }}",
    "{{ '%*d' % (99999999, 1) }}",
    "{{ '%99999999d'|format(1) }}",
    "{{ s|center(99999999) }}",
    "{{ s|indent(99999999) }}",
    "{{ [1]|batch(99999999, 0)|list }}",
    "{{ [1]|slice(99999999)|list }}",
    "{{ ('x' * 900000)|replace('x', 'yy') }}",
    "{{ range(100000)|join('x' * 100) }}",
    "{{ s.ljust(99999999) }}",
    "{{ s.zfill(99999999) }}",
    "{{ s.replace('', 'x') }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(s='x' * 1000) %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set ns = namespace(s='x' * 1000) %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}",
]


@pytest.mark.parametrize("template", RESOURCE_BOMBS)
def test_templates_cannot_exhaust_memory_or_cpu(template: str) -> None:
    error = render_error(template, {"s": "x"})
    assert error.message.startswith("template error:")


@pytest.mark.parametrize(
    ("template", "tag"),
    [
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "macro"),
        ("{% include 'x' %}", "include"),
        ("{% import 'x' as y %}", "import"),
        ("{% from 'x' import y %}", "from … import"),
        ("{% extends 'x' %}", "extends"),
        ("{% block b %}{% endblock %}", "block"),
        ("{% call f() %}{% endcall %}", "call"),
    ],
)
def test_recursion_and_file_tags_are_refused_at_compile_time(template: str, tag: str) -> None:
    with pytest.raises(MappingError) as caught:
        compile_mapping({"mapping": {"v": template}})
    assert caught.value.path == "mapping.v"
    assert caught.value.message == f"'{tag}' is not allowed in mapping templates (line 1)"


def test_recursive_loops_are_refused_at_compile_time() -> None:
    with pytest.raises(MappingError, match="recursive loops are not allowed"):
        compile_mapping({"mapping": {"v": "{% for x in l recursive %}{{ loop(x) }}{% endfor %}"}})


def test_ordinary_templates_stay_well_inside_the_limits() -> None:
    payload = {"items": [{"n": i} for i in range(1000)], "s": "abc"}
    assert render("{{ items|map(attribute='n')|sum }}", payload) == str(sum(range(1000)))
    assert render("{% for i in items %}{{ i.n }},{% endfor %}", payload) == "".join(
        f"{i}," for i in range(1000)
    )
    assert render("{{ s * 3 }}{{ '%05d' % 42 }}{{ s|center(7) }}{{ [1,2]|join('-') }}", payload) == (
        "abcabcabc00042  abc  1-2"
    )
    assert render("{{ s|replace('b', 'BB') ~ '!' }}", payload) == "aBBc!"
