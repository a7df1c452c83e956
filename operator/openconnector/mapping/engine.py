"""The Mapping engine: OpenConnector's MappingService semantics, compiled once, applied per payload.

Order of execution (mirrors `MappingService::executeMapping`):

1. `passThrough`: the output starts as a copy of the input, else empty.
2. `mapping` (output dot path -> value), in spec order:
   - a string naming an existing dot path in the input copies that value, type kept;
   - a list or object (or any non-string JSON value) is set literally;
   - any other string is a template rendered with the input as context (a string without template syntax
     is therefore a literal).
3. `unset`: each listed dot path is removed (missing paths are ignored).
4. `cast` (output path -> "name,name" or a list of names), applied left to right to existing paths.
5. If the only output key is `#`, its value is the result (root mapping).

List mode: a list payload is mapped item by item. A payload (or list item) that is not an object is seen
as `{"value": <payload>}`, as OpenConnector does for list items.

Dot paths: segments split on `.`; `&#46;` inside a segment stands for a literal dot (OpenConnector's
escape), and a canonical decimal segment (`0`, `12`) indexes a list. Setting a path creates missing
objects and, like PHP's Dot, replaces a scalar in the way by an object.

Divergences from OpenConnector, on purpose: unknown casts are compile errors (PHP ignores them); casts
that PHP would turn into garbage fail with a MappingError; `#` returns the root value itself (PHP wraps a
scalar root in a list because its function must return an array).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from openconnector.mapping.casts import DELETE, Cast, CastContext, CastFailure, parse_cast
from openconnector.mapping.templates import (
    CompiledTemplate,
    TemplateBudgetError,
    TemplateCompileError,
    TemplateRenderError,
    compile_template,
    looks_like_template,
)

__all__ = [
    "ROOT_KEY",
    "CompiledMapping",
    "MappingError",
    "compile_mapping",
    "parse_path",
    "validate_mapping",
]

ROOT_KEY: Final = "#"
_DOT_ESCAPE: Final = "&#46;"
_LIST_INDEX_RE: Final = re.compile(r"0|[1-9][0-9]*")

Path = tuple[str, ...]
_Problem = Callable[[str, str], None]


class MappingError(Exception):
    """A problem in a Mapping or in applying it; `path` names the field (`cast.price`, `mapping.label`)."""

    def __init__(self, path: str, message: str, *, mapping: str = "", budget: bool = False) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        self.mapping = mapping
        # True when a render ran out of its cost or CPU budget (the Mapping, not the input, is at fault).
        self.budget = budget

    def __repr__(self) -> str:
        return f"MappingError({self.path!r}, {self.message!r})"


def parse_path(text: str) -> Path:
    """Split a dot path into segments; ValueError on an empty path or empty segment."""
    if text == "":
        raise ValueError("the path is empty")
    segments = tuple(segment.replace(_DOT_ESCAPE, ".") for segment in text.split("."))
    if any(segment == "" for segment in segments):
        raise ValueError(f"the path {text!r} has an empty segment")
    return segments


# --------------------------------------------------------------------------- dot-path operations


class _PathConflict(Exception):
    pass


def _list_index(segment: str) -> int | None:
    return int(segment) if _LIST_INDEX_RE.fullmatch(segment) else None


def _lookup(root: object, path: Path) -> tuple[bool, object]:
    node = root
    for segment in path:
        if isinstance(node, dict):
            if segment not in node:
                return False, None
            node = node[segment]
        elif isinstance(node, list):
            index = _list_index(segment)
            if index is None or index >= len(node):
                return False, None
            node = node[index]
        else:
            return False, None
    return True, node


def _put(container: dict[str, object] | list[object], segment: str, value: object) -> None:
    if isinstance(container, dict):
        container[segment] = value
        return
    index = _list_index(segment)
    if index is None or index > len(container):
        raise _PathConflict(f"cannot set {segment!r} in a list of {len(container)} items")
    if index == len(container):
        container.append(value)
    else:
        container[index] = value


def _assign(root: dict[str, object], path: Path, value: object) -> None:
    node: dict[str, object] | list[object] = root
    for position, segment in enumerate(path[:-1]):
        found, child = _lookup(node, (segment,))
        next_is_index = _list_index(path[position + 1]) is not None
        # An empty JSON array is where PHP sees an empty (assoc) array, so it may become an object.
        usable = isinstance(child, dict) or (isinstance(child, list) and (len(child) > 0 or next_is_index))
        if not found or not usable:
            # PHP's Dot replaces whatever is in the way (null, a scalar) by an empty array.
            child = {}
            _put(node, segment, child)
        assert isinstance(child, dict | list)
        node = child
    _put(node, path[-1], value)


def _delete(root: dict[str, object], path: Path) -> bool:
    found, parent = _lookup(root, path[:-1])
    if not found:
        return False
    last = path[-1]
    if isinstance(parent, dict):
        if last in parent:
            del parent[last]
            return True
        return False
    if isinstance(parent, list):
        index = _list_index(last)
        if index is not None and index < len(parent):
            # Later indices shift down (PHP would leave a gap and turn the list into a map).
            del parent[index]
            return True
    return False


def _clone(value: object) -> object:
    """Deep copy of a JSON value (lists/objects), so outputs never alias the input or the spec."""
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clone(item) for item in value]
    return value


def _json_problem(value: object) -> str | None:
    """Why a literal is not a JSON value, or None when it is one."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "a literal number must be finite"
    if isinstance(value, list | tuple):
        for item in value:
            problem = _json_problem(item)
            if problem is not None:
                return problem
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"object keys must be strings, got {key!r}"
            problem = _json_problem(item)
            if problem is not None:
                return problem
        return None
    return f"a literal must be a JSON value, got {type(value).__name__}"


# --------------------------------------------------------------------------- compiled pieces


@dataclass(frozen=True)
class _Rule:
    key: str
    target: Path
    source: Path | None
    """The dot path the value may name in the input (strings only)."""
    template: CompiledTemplate | None
    literal: object


@dataclass(frozen=True)
class _CastRule:
    key: str
    target: Path
    casts: tuple[Cast, ...]


class CompiledMapping:
    """A validated, compiled Mapping. `apply` is pure and safe to call concurrently."""

    __slots__ = ("_casts", "_rules", "_unset", "name", "pass_through")

    def __init__(
        self,
        *,
        name: str,
        pass_through: bool,
        rules: tuple[_Rule, ...],
        unset: tuple[Path, ...],
        casts: tuple[_CastRule, ...],
    ) -> None:
        self.name = name
        self.pass_through = pass_through
        self._rules = rules
        self._unset = unset
        self._casts = casts

    def __repr__(self) -> str:
        return f"CompiledMapping(name={self.name!r}, rules={len(self._rules)}, casts={len(self._casts)})"

    def apply(self, payload: object) -> object:
        """Map one payload (a list payload item by item); raises MappingError naming the spec field."""
        if isinstance(payload, list):
            results: list[object] = []
            for index, item in enumerate(payload):
                try:
                    results.append(self._apply_one(item))
                except MappingError as error:
                    message = f"list item {index}: {error.message}"
                    raise MappingError(error.path, message, mapping=self.name, budget=error.budget) from None
            return results
        return self._apply_one(payload)

    def _error(self, path: str, message: str) -> MappingError:
        return MappingError(path, message, mapping=self.name)

    def _apply_one(self, item: object) -> object:
        source: dict[str, object] = item if isinstance(item, dict) else {"value": item}
        output: dict[str, object] = {}
        if self.pass_through:
            output = {key: _clone(value) for key, value in source.items()}

        for rule in self._rules:
            value: object
            found, copied = (False, None) if rule.source is None else _lookup(source, rule.source)
            if found:
                value = _clone(copied)
            elif rule.template is not None:
                try:
                    value = rule.template.render(source)
                except TemplateBudgetError as error:
                    raise MappingError(
                        f"mapping.{rule.key}", error.message, mapping=self.name, budget=True
                    ) from None
                except TemplateRenderError as error:
                    raise self._error(f"mapping.{rule.key}", f"template error: {error.message}") from None
            else:
                value = _clone(rule.literal)
            try:
                _assign(output, rule.target, value)
            except _PathConflict as error:
                raise self._error(f"mapping.{rule.key}", str(error)) from None

        for path in self._unset:
            _delete(output, path)

        for cast_rule in self._casts:
            self._cast(output, cast_rule)

        if len(output) == 1 and ROOT_KEY in output:
            return output[ROOT_KEY]
        return output

    def _cast(self, output: dict[str, object], rule: _CastRule) -> None:
        found, value = _lookup(output, rule.target)
        if not found:
            return

        def lookup(path_text: str) -> tuple[bool, object]:
            return _lookup(output, parse_path(path_text))

        context = CastContext(key=rule.key, lookup=lookup)
        for cast in rule.casts:
            try:
                value = cast.apply(value, context)
            except CastFailure as error:
                raise self._error(f"cast.{rule.key}", error.message) from None
            if value is DELETE:
                _delete(output, rule.target)
                return
            # Written back after every cast, as PHP does, so countValue can see an earlier cast's result.
            _assign(output, rule.target, value)


# --------------------------------------------------------------------------- compilation


def _compile(spec: object, name: str) -> tuple[CompiledMapping | None, list[MappingError]]:
    errors: list[MappingError] = []

    def problem(path: str, message: str) -> None:
        errors.append(MappingError(path, message, mapping=name))

    if not isinstance(spec, Mapping):
        problem("spec", f"a Mapping spec must be an object, got {type(spec).__name__}")
        return None, errors

    pass_through = spec.get("passThrough")
    if pass_through is None:
        pass_through = False
    elif not isinstance(pass_through, bool):
        problem("passThrough", f"must be true or false, got {pass_through!r}")
        pass_through = False

    rules = _compile_rules(spec.get("mapping"), problem)
    unset = _compile_unset(spec.get("unset"), problem)
    casts = _compile_casts(spec.get("cast"), problem)

    if errors:
        return None, errors
    return CompiledMapping(
        name=name, pass_through=pass_through, rules=rules, unset=unset, casts=casts
    ), errors


def _compile_rules(raw: object, problem: _Problem) -> tuple[_Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problem("mapping", f"must be an object of output path -> value, got {type(raw).__name__}")
        return ()
    rules: list[_Rule] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            problem("mapping", f"keys must be strings, got {key!r}")
            continue
        field = f"mapping.{key}"
        try:
            target = parse_path(key)
        except ValueError as error:
            problem(field, str(error))
            continue
        if isinstance(value, str):
            source: Path | None
            try:
                source = parse_path(value)
            except ValueError:
                source = None
            template = None
            if looks_like_template(value):
                try:
                    template = compile_template(value)
                except TemplateCompileError as error:
                    problem(field, error.message)
                    continue
            rules.append(_Rule(key, target, source, template, value))
            continue
        json_problem = _json_problem(value)
        if json_problem is not None:
            problem(field, json_problem)
            continue
        rules.append(_Rule(key, target, None, None, _clone(value)))
    return tuple(rules)


def _compile_unset(raw: object, problem: _Problem) -> tuple[Path, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        problem("unset", f"must be a list of dot paths, got {type(raw).__name__}")
        return ()
    paths: list[Path] = []
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            problem(f"unset[{index}]", f"must be a dot path string, got {item!r}")
            continue
        try:
            paths.append(parse_path(item))
        except ValueError as error:
            problem(f"unset[{index}]", str(error))
    return tuple(paths)


def _compile_casts(raw: object, problem: _Problem) -> tuple[_CastRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problem("cast", f"must be an object of output path -> cast names, got {type(raw).__name__}")
        return ()
    rules: list[_CastRule] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            problem("cast", f"keys must be strings, got {key!r}")
            continue
        field = f"cast.{key}"
        try:
            target = parse_path(key)
        except ValueError as error:
            problem(field, str(error))
            continue
        spellings: list[str]
        if isinstance(value, str):
            # Comma-separated, as OpenConnector; whitespace around names is forgiven. Use the list form for an
            # unsetIfValue==/setNullIfValue== argument that contains a comma or surrounding spaces.
            spellings = [piece.strip() for piece in value.split(",")]
        elif isinstance(value, Sequence) and all(isinstance(piece, str) for piece in value):
            spellings = list(value)
        else:
            problem(field, f"must be a cast name, comma-separated names or a list of names, got {value!r}")
            continue
        if not spellings:
            problem(field, "no cast given")
            continue
        casts: list[Cast] = []
        for spelling in spellings:
            if spelling == "":
                problem(field, "empty cast name")
                continue
            try:
                casts.append(parse_cast(spelling))
            except ValueError as error:
                problem(field, str(error))
        if len(casts) != len(spellings):
            continue
        rules.append(_CastRule(key, target, tuple(casts)))
    return tuple(rules)


def compile_mapping(spec: Mapping[str, object], *, name: str = "") -> CompiledMapping:
    """Validate and compile a Mapping spec; raises the first MappingError (use validate_mapping for all)."""
    compiled, errors = _compile(spec, name)
    if errors:
        raise errors[0]
    assert compiled is not None  # _compile returns a mapping exactly when there are no errors
    return compiled


def validate_mapping(spec: object, *, name: str = "") -> list[MappingError]:
    """Every problem in a Mapping spec (empty when it compiles), for the offline validator and CR status."""
    return _compile(spec, name)[1]
