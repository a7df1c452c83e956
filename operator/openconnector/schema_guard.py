"""JSON Schema validation whose cost is linear in the instance, whatever schema a tenant writes.

An Event's schema is written by a tenant and applied, on the event loop, to what any client sends.
Two keywords of the stock jsonschema validators are not linear in the instance:

- ``pattern``, ``patternProperties`` (and ``additionalProperties`` next to it) run the tenant's regex with
  Python's backtracking engine on client strings: ``^(a+)+$`` against 30 characters takes seconds.
  Here they use RE2 (linear time, no backreferences or lookaround; patterns RE2 cannot compile are
  refused when the Event compiles, naming the pattern). ``unevaluatedProperties`` next to
  ``patternProperties`` would still reach Python's engine, so that combination is refused too.
- ``uniqueItems`` compares every pair when the items are objects or arrays (O(n²)): 100,000 objects
  never finish. Here each item is reduced to a canonical, hashable form once (O(n)), with JSON Schema's
  equality (1 == 1.0, but true != 1).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import re2
from jsonschema.exceptions import ValidationError

__all__ = ["linear_validator_class", "schema_pattern_problems"]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _OPTIONS)


def _search(pattern: str, text: str) -> bool:
    return _compiled(pattern).search(text) is not None


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    stack: list[tuple[str, Any]] = [(path, node)]
    while stack:
        where, current = stack.pop()
        if isinstance(current, dict):
            yield where, current
            stack.extend((f"{where}/{key}", value) for key, value in current.items())
        elif isinstance(current, list):
            stack.extend((f"{where}/{index}", value) for index, value in enumerate(current))


def schema_pattern_problems(schema: Any) -> list[str]:
    """Why the schema cannot be validated in linear time (patterns RE2 refuses, and the combination of
    ``unevaluatedProperties`` with ``patternProperties``); empty when it can."""
    problems = []
    for where, node in _walk(schema):
        patterns: list[str] = []
        if isinstance(node.get("pattern"), str):
            patterns.append(node["pattern"])
        if isinstance(node.get("patternProperties"), dict):
            patterns.extend(key for key in node["patternProperties"] if isinstance(key, str))
            if "unevaluatedProperties" in node:
                problems.append(
                    f"{where or '/'}: unevaluatedProperties next to patternProperties is not supported "
                    "(it would run patterns with a backtracking engine)"
                )
        for pattern in patterns:
            try:
                _compiled(pattern)
            except re2.error as error:
                reason = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else error
                problems.append(
                    f"{where or '/'}: pattern {pattern!r} is not supported ({reason}; RE2 syntax)"
                )
    return problems


def _canonical(value: Any) -> Any:
    """A hashable form with JSON Schema equality: integral floats equal ints, booleans stay apart."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return ("object", frozenset((key, _canonical(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(_canonical(item) for item in value))
    return value


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        key = _canonical(item)
        if key in seen:
            yield ValidationError(f"{_short(instance)} has non-unique elements")
            return
        seen.add(key)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{_short(instance)} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, pattern_properties: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [key for key in instance if key not in properties and not any(_search(p, key) for p in patterns)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            shown = ", ".join(map(repr, sorted(extras)[:10]))
            yield ValidationError(
                f"{shown} {verb} not match any of the regexes: {', '.join(map(repr, patterns))}"
            )
        else:
            verb = "was" if len(extras) == 1 else "were"
            shown = ", ".join(map(repr, extras[:10]))
            yield ValidationError(f"Additional properties are not allowed ({shown} {verb} unexpected)")


def _short(instance: Any, limit: int = 80) -> str:
    text = repr(instance)
    return text if len(text) <= limit else text[:limit] + "…"


@functools.cache
def linear_validator_class(cls: type[Any]) -> type[Any]:
    """``cls`` (a jsonschema validator class) with the linear keywords above."""
    keywords = {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
        "uniqueItems": _unique_items,
    }
    chosen = {k: v for k, v in keywords.items() if k in cls.VALIDATORS}
    extended: type[Any] = jsonschema.validators.extend(cls, chosen)  # type: ignore[no-untyped-call]
    return extended
