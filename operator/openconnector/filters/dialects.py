"""EventSubscription filters (CloudEvents Subscriptions API dialects), compiled once into one predicate.

A subscription's ``filters`` is a list of filter objects, all of which must match; an empty list or ``None``
matches every event. Each filter object has exactly one dialect key:

- ``exact``, ``prefix``, ``suffix``: a map of attribute name -> value. Every named attribute must be present
  and equal / start with / end with the value, case-sensitively. Values are strings; an integer or boolean
  written without quotes (YAML ``sequence: 5``) is compared as its CloudEvents canonical string (``"5"``,
  ``"true"``), and so are integer/boolean attribute values. Empty names or values are invalid.
- ``all`` / ``any``: a non-empty list of nested filter objects; ``not``: exactly one nested filter object.
- ``sql``: a CESQL v1 expression (see `openconnector.filters.cesql`); ``cesql`` is accepted as an alias, the
  key Knative uses. The expression must be Boolean-valued.
- ``jsonLogic``: a JSON Logic rule object over ``{"attributes": {...}, "data": ...}`` (see
  `openconnector.filters.jsonlogic`); a truthy result matches.

A plain map whose keys are attribute names (``{type: nl.vng.zaken.zaak.created}``) as the whole ``filters``
value is shorthand for ``[{exact: map}]``: OpenConnector's "attribute matching". Only the whole value: an
element of the list (or of ``all``/``any``, or the value of ``not``) must be a filter object with exactly one
dialect key, so a misspelt dialect (``[{sqll: "..."}]``) is an error rather than an exact match on an
attribute that no event has. A shorthand map whose value is itself a map or list is taken as a misspelt
dialect and rejected too.

Compilation validates everything and reports problems as `FilterError` with the path of the offending
field (``filters[1].any[0].sql: syntax error at column 7: ...``). The compiled `Predicate` is pure, never
raises, and evaluates cheap dialects before expensive ones inside each conjunction and disjunction.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from openconnector.filters.cesql import CesqlCompileError, CesqlType, attribute_value, compile_cesql
from openconnector.filters.jsonlogic import JsonLogicError, compile_jsonlogic

__all__ = [
    "DIALECTS",
    "MAX_DEPTH",
    "FilterError",
    "Predicate",
    "compile_filters",
    "unknown_dialect_message",
    "validate_filters",
]

#: Event attributes (``str | int | bool`` values) and event data -> does the event match?
Predicate: TypeAlias = Callable[[Mapping[str, object], object], bool]

#: The dialect keys, in documentation order.
DIALECTS: Final = ("exact", "prefix", "suffix", "all", "any", "not", "sql", "jsonLogic")
_ALIASES: Final = {"cesql": "sql"}
#: Deepest nesting of ``all``/``any``/``not`` accepted.
MAX_DEPTH: Final = 32

_ATTRIBUTE_NAME: Final = re.compile(r"[a-z0-9]+")
_EXPECTED_DIALECTS: Final = ", ".join(DIALECTS)
# Relative evaluation costs, used to run cheap predicates first.
_MATCH_COST: Final = 1
_SQL_COST: Final = 20
_JSONLOGIC_COST: Final = 100


class FilterError(ValueError):
    """An invalid filter definition; ``path`` names the offending field, e.g. ``filters[0].exact``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def compile_filters(filters: object, *, path: str = "filters") -> Predicate:
    """Compile a subscription's ``filters`` into one predicate; raises the first `FilterError` found."""
    return _Compiler(collect=False).top_level(filters, path).predicate


def validate_filters(filters: object, *, path: str = "filters") -> list[FilterError]:
    """Every problem in ``filters`` (empty when valid), for offline validation and status messages."""
    compiler = _Compiler(collect=True)
    compiler.top_level(filters, path)
    return compiler.errors


# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    predicate: Predicate
    cost: int


def _match_all(attributes: Mapping[str, object], data: object) -> bool:
    return True


def _match_none(attributes: Mapping[str, object], data: object) -> bool:
    return False


_MATCH_ALL: Final = _Node(_match_all, 0)
_INVALID: Final = _Node(_match_none, 0)


class _Compiler:
    def __init__(self, *, collect: bool) -> None:
        self._collect = collect
        self.errors: list[FilterError] = []

    def _fail(self, path: str, message: str) -> _Node:
        error = FilterError(path, message)
        if not self._collect:
            raise error
        self.errors.append(error)
        return _INVALID

    def top_level(self, filters: object, path: str) -> _Node:
        if filters is None:
            return _MATCH_ALL
        if isinstance(filters, Mapping):
            # A lone filter object or an attribute map instead of a list; {} matches everything like [].
            return self.filter_object(filters, path, depth=1, shorthand=True) if filters else _MATCH_ALL
        if isinstance(filters, list | tuple):
            nodes = [
                self.filter_object(item, f"{path}[{index}]", depth=1) for index, item in enumerate(filters)
            ]
            return _conjunction(nodes)
        return self._fail(path, f"must be a list of filter objects, got {_type_name(filters)}")

    def filter_object(self, value: object, path: str, *, depth: int, shorthand: bool = False) -> _Node:
        if not isinstance(value, Mapping):
            return self._fail(path, f"must be a filter object with one dialect key, got {_type_name(value)}")
        if depth > MAX_DEPTH:
            return self._fail(path, f"filters are nested more than {MAX_DEPTH} levels deep")
        if not value:
            return self._fail(path, f"empty filter object; expected one dialect key ({_EXPECTED_DIALECTS})")
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                return self._fail(path, f"keys must be strings, got {_type_name(key)} {key!r}")
        dialect_keys = [key for key in keys if key in DIALECTS or key in _ALIASES]
        if len(dialect_keys) > 1:
            return self._fail(
                path, f"exactly one dialect key allowed, got {len(dialect_keys)} ({', '.join(dialect_keys)})"
            )
        if dialect_keys:
            (key,) = dialect_keys
            others = [other for other in keys if other != key]
            if others:
                listed = ", ".join(f'"{other}"' for other in others)
                return self._fail(
                    path, f"a filter object has exactly one dialect key; unexpected {listed} next to {key}"
                )
            return self.dialect(_ALIASES.get(key, key), value[key], f"{path}.{key}", depth)
        for key in keys:
            if not shorthand or isinstance(value[key], Mapping | list | tuple):
                return self._fail(path, unknown_dialect_message(key, value[key]))
        # Shorthand: a plain attribute map means {exact: map}.
        return self.attribute_match("exact", value, path)

    def dialect(self, dialect: str, value: object, path: str, depth: int) -> _Node:
        if dialect in ("exact", "prefix", "suffix"):
            return self.attribute_match(dialect, value, path)
        if dialect in ("all", "any"):
            return self.combination(dialect, value, path, depth)
        if dialect == "not":
            if not isinstance(value, Mapping):
                return self._fail(path, f"must be exactly one filter object, got {_type_name(value)}")
            inner = self.filter_object(value, path, depth=depth + 1)
            return _Node(_negation(inner.predicate), inner.cost)
        if dialect == "sql":
            return self.sql(value, path)
        return self.jsonlogic(value, path)

    def combination(self, dialect: str, value: object, path: str, depth: int) -> _Node:
        if not isinstance(value, list | tuple) or not value:
            shown = "an empty list" if isinstance(value, list | tuple) else _type_name(value)
            return self._fail(path, f"must be a non-empty list of filter objects, got {shown}")
        nodes = [
            self.filter_object(item, f"{path}[{index}]", depth=depth + 1) for index, item in enumerate(value)
        ]
        return _conjunction(nodes) if dialect == "all" else _disjunction(nodes)

    def attribute_match(self, dialect: str, value: object, path: str) -> _Node:
        if not isinstance(value, Mapping):
            return self._fail(path, f"must be a map of attribute name to value, got {_type_name(value)}")
        if not value:
            return self._fail(path, "must name at least one attribute")
        pairs: list[tuple[str, str]] = []
        valid = True
        for name, expected in value.items():
            if not isinstance(name, str) or not name:
                self._fail(path, "attribute names must be non-empty strings")
                valid = False
                continue
            if not _ATTRIBUTE_NAME.fullmatch(name):
                self._fail(
                    path, f'invalid attribute name "{name}": CloudEvents attribute names use only a-z and 0-9'
                )
                valid = False
                continue
            text = _canonical(expected)
            if text is None:
                self._fail(f"{path}.{name}", f"value must be a string, got {_type_name(expected)}")
                valid = False
            elif not text:
                self._fail(f"{path}.{name}", "value must not be empty")
                valid = False
            else:
                pairs.append((name, text))
        if not valid:
            return _INVALID
        return _Node(_attribute_predicate(dialect, pairs), _MATCH_COST * len(pairs))

    def sql(self, value: object, path: str) -> _Node:
        if not isinstance(value, str):
            return self._fail(path, f"must be a CESQL expression string, got {_type_name(value)}")
        if not value.strip():
            return self._fail(path, "expression must not be empty")
        try:
            expression = compile_cesql(value)
        except CesqlCompileError as error:
            return self._fail(path, str(error))
        if expression.result_type in (CesqlType.INTEGER, CesqlType.STRING):
            return self._fail(
                path,
                f"expression must evaluate to a Boolean, but it evaluates to {expression.result_type.value}",
            )
        matches = expression.matches

        def sql_predicate(attributes: Mapping[str, object], data: object) -> bool:
            return matches(attributes)

        return _Node(sql_predicate, _SQL_COST)

    def jsonlogic(self, value: object, path: str) -> _Node:
        if isinstance(value, str):
            return self._fail(
                path,
                'must be a JSON Logic rule object such as {"===": [...]}, not a string '
                "(write the rule as a map, not as quoted JSON)",
            )
        if not isinstance(value, Mapping):
            return self._fail(
                path, f'must be a JSON Logic rule object such as {{"===": [...]}}, got {_type_name(value)}'
            )
        try:
            rule = compile_jsonlogic(value)
        except JsonLogicError as error:
            return self._fail(path, f"invalid rule: {error}")
        return _Node(rule.matches, _JSONLOGIC_COST)


# --------------------------------------------------------------------------------------------------
# Predicate builders. Closures over tuples: no per-call allocation beyond what the dialect needs.


def _conjunction(nodes: Sequence[_Node]) -> _Node:
    if not nodes:
        return _MATCH_ALL
    ordered = sorted(nodes, key=lambda node: node.cost)  # stable: equal costs keep their written order
    cost = sum(node.cost for node in ordered)
    if len(ordered) == 1:
        return ordered[0]
    if len(ordered) == 2:
        first, second = ordered[0].predicate, ordered[1].predicate
        return _Node(lambda attributes, data: first(attributes, data) and second(attributes, data), cost)
    predicates = tuple(node.predicate for node in ordered)

    def conjunction(attributes: Mapping[str, object], data: object) -> bool:
        for predicate in predicates:  # noqa: SIM110 - a loop, not all(): no generator per event
            if not predicate(attributes, data):
                return False
        return True

    return _Node(conjunction, cost)


def _disjunction(nodes: Sequence[_Node]) -> _Node:
    ordered = sorted(nodes, key=lambda node: node.cost)
    cost = sum(node.cost for node in ordered)
    if len(ordered) == 1:
        return ordered[0]
    predicates = tuple(node.predicate for node in ordered)

    def disjunction(attributes: Mapping[str, object], data: object) -> bool:
        for predicate in predicates:  # noqa: SIM110 - a loop, not any(): no generator per event
            if predicate(attributes, data):
                return True
        return False

    return _Node(disjunction, cost)


def _negation(predicate: Predicate) -> Predicate:
    return lambda attributes, data: not predicate(attributes, data)


def _attribute_text(value: object) -> str | None:
    """An attribute value as its CloudEvents canonical string; None when absent."""
    if value is None:
        return None
    normalized = attribute_value(value)
    if normalized.__class__ is bool:
        return "true" if normalized else "false"
    return str(normalized)


def _attribute_predicate(dialect: str, pairs: list[tuple[str, str]]) -> Predicate:
    checks = tuple(pairs)
    # One loop per dialect, with the common case (a str attribute value) inlined: this is the hot path.
    if dialect == "exact":

        def exact(attributes: Mapping[str, object], data: object) -> bool:
            for name, expected in checks:
                value = attributes.get(name)
                if value.__class__ is not str:
                    value = _attribute_text(value)
                if value != expected:
                    return False
            return True

        return exact
    if dialect == "prefix":

        def prefix(attributes: Mapping[str, object], data: object) -> bool:
            for name, expected in checks:
                value = attributes.get(name)
                if value.__class__ is not str:
                    value = _attribute_text(value)
                    if value is None:
                        return False
                if not value.startswith(expected):
                    return False
            return True

        return prefix

    def suffix(attributes: Mapping[str, object], data: object) -> bool:
        for name, expected in checks:
            value = attributes.get(name)
            if value.__class__ is not str:
                value = _attribute_text(value)
                if value is None:
                    return False
            if not value.endswith(expected):
                return False
        return True

    return suffix


def _canonical(value: object) -> str | None:
    """A filter value as a string: str as is, bool as "true"/"false", int in decimal; None otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def unknown_dialect_message(key: str, value: object) -> str:
    """Why a key of a filter object is refused: the nearest dialect name if it looks misspelt, else how
    an attribute match is written there."""
    hint = _hint(key)
    if not hint and not isinstance(value, Mapping | list | tuple):
        hint = f"; match the attribute with {{exact: {{{key}: ...}}}}"
    return f'unknown dialect "{key}" (expected one of {_EXPECTED_DIALECTS}){hint}'


def _hint(key: str) -> str:
    candidates = {name.lower(): name for name in (*DIALECTS, *_ALIASES)}
    close = difflib.get_close_matches(key.lower(), list(candidates), n=1, cutoff=0.75)
    return f'; did you mean "{candidates[close[0]]}"?' if close else ""
