"""JSON Logic filter dialect on datalogic-py (``datalogic-py==5.9.0``, a Rust core).

Engine choice. Both maintained Python engines were run against the official suite from jsonlogic.com
(``tests/unit/data/jsonlogic/tests.json``, 278 cases):

- ``datalogic-py`` 5.9.0 passes 278/278 once a string rule is handed over as JSON text (its API reads a Python
  ``str`` as JSON), which `compile_jsonlogic` always does. It compiles a rule once, reports unknown operators
  and wrong argument counts before evaluation (``Engine.check``), bounds the work of one evaluation
  (``ops_budget``) and evaluates in about 0.5 µs for a typical rule;
- ``panzi-json-logic`` 1.0.1 passes 277/278 (``reduce`` with a ``var`` initial value yields NaN),
  interprets the raw rule on every call (about 10x slower), validates nothing up front, treats
  ``{"===": [true, 1]}`` as true (Python ``True == 1``) and ships a ``log`` operator that prints to stdout.

Safety. The engine is built with ``families=[]``: only the JSON Logic core operators exist (``==``, ``===``,
``!=``, ``!==``, ``<``, ``<=``, ``>``, ``>=``, ``!``, ``!!``, ``and``, ``or``, ``if``/``?:``, ``+ - * / %``,
``min``, ``max``, ``cat``, ``substr``, ``in``, ``merge``, ``var``, ``missing``, ``missing_some``, ``map``,
``filter``, ``reduce``, ``all``, ``some``, ``none``). No custom operator is registered, so nothing can call
Python code (there is no ``method`` operator), and the extension families (``now``, ``try``/``throw``, string
and date helpers) are unknown operators, rejected at compile time. One evaluation may charge at most
`OPS_BUDGET` engine operations, so a ``map`` over a large payload cannot stall the gateway.

Semantics. The rule sees ``{"attributes": {...}, "data": ...}``: CloudEvents attributes (``str``/``int``/
``bool``; other values, such as a ``datetime``, in their CloudEvents string form) and the event data as
decoded JSON (a string for text payloads; binary data is not visible and reads as ``null``). The event
matches when the result is truthy: falsy are ``false``, ``null``, ``0``, ``""``, ``[]`` and, in this
engine, also ``{}`` (JavaScript would call ``{}`` truthy); ``"0"`` is truthy. Any evaluation error (data
that is not JSON, NaN arithmetic, the operation budget exceeded) means no match.

Loose equality. ``==`` and ``!=`` coerce like JavaScript for numbers, numeric strings, booleans and null
(``{"==": [1, "1"]}``, ``{"==": [null, 0]}`` and ``{"==": [true, 1]}`` are true), but where JavaScript would
coerce a non-numeric string or an array to a number (``{"==": ["", 0]}``, ``{"==": [[1], "1"]}``) this engine
raises an error, which here means no match. Use strict ``===``/``!==`` in filters, e.g.
``{"===": [{"var": "attributes.type"}, "nl.vng.zaken.zaak.created"]}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

import datalogic_py

from openconnector.filters.cesql import attribute_value

__all__ = ["ENGINE", "OPS_BUDGET", "JsonLogicError", "JsonLogicRule", "compile_jsonlogic"]

#: The engine and version, for status messages and the offline validator.
ENGINE: Final = f"datalogic-py {datalogic_py.__version__}"
#: Upper bound on the engine operations of one evaluation (one node dispatched or one item iterated each).
OPS_BUDGET: Final = 100_000

_ENGINE: Final = datalogic_py.Engine(families=[], config={"ops_budget": OPS_BUDGET})
_BINARY: Final = (bytes, bytearray, memoryview)
_JSON_SCALARS: Final = frozenset({str, int, bool, float})
# Errors a payload can provoke at evaluation; all of them mean "no match", never a crash of the gateway.
_EVALUATION_ERRORS: Final = (
    datalogic_py.DataLogicError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
)


class JsonLogicError(ValueError):
    """A rule that cannot be compiled; ``pointer`` is an RFC 6901 JSON Pointer into the rule."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(pointer, message)
        self.pointer = pointer
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (at {self.pointer})" if self.pointer else self.message


class JsonLogicRule:
    """A compiled JSON Logic rule. Thread-safe; evaluation releases the GIL."""

    __slots__ = ("_rule", "source")

    def __init__(self, source: object, rule: datalogic_py.Rule) -> None:
        self.source = source
        self._rule = rule

    def evaluate(self, data: object) -> object:
        """The rule's result for ``data``; raises ``datalogic_py.DataLogicError`` on evaluation errors."""
        return self._rule.evaluate(data)

    def matches(self, attributes: Mapping[str, object], data: object) -> bool:
        """The filter verdict for one event: a truthy result without error."""
        if isinstance(data, _BINARY):
            data = None
        context = {"attributes": attributes if type(attributes) is dict else dict(attributes), "data": data}
        try:
            result = self._rule.evaluate(context)
        except datalogic_py.ParseError:
            # A value the engine cannot take (a datetime or bytes attribute): retry once with attributes
            # in their CloudEvents string form. Only then, so the common case pays nothing.
            context["attributes"] = {name: _json_attribute(value) for name, value in attributes.items()}
            try:
                result = self._rule.evaluate(context)
            except _EVALUATION_ERRORS:
                return False
        except _EVALUATION_ERRORS:
            return False
        if result.__class__ is float and result != result:  # NaN is falsy in JSON Logic
            return False
        # Python truthiness equals the engine's: false, null, 0, "", [] and {} are falsy; "0" is truthy.
        return bool(result)


def _json_attribute(value: object) -> object:
    if value is None or value.__class__ in _JSON_SCALARS:
        return value
    return attribute_value(value)


def compile_jsonlogic(rule: object) -> JsonLogicRule:
    """Validate and compile a rule (any JSON value); raises `JsonLogicError` locating the problem."""
    try:
        # The engine reads a Python str as JSON text, so every rule is handed over as JSON.
        text = json.dumps(rule, allow_nan=False, ensure_ascii=False, default=_mapping_as_dict)
    except RecursionError:
        raise JsonLogicError("", "rule is nested too deeply") from None
    except (TypeError, ValueError) as error:
        raise JsonLogicError("", f"rule is not JSON: {error}") from None
    try:
        problems = [problem for problem in _ENGINE.check(text) if problem["severity"] == "error"]
        if problems:
            first = problems[0]
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise JsonLogicError(first["pointer"], first["message"] + more)
        compiled = _ENGINE.compile(text)
    except datalogic_py.DataLogicError as error:
        raise JsonLogicError("", str(error)) from None
    facts = compiled.facts()
    if facts["custom_operators"] or not facts["deterministic"]:  # pragma: no cover - excluded by families=[]
        raise JsonLogicError("", "rule uses operators that are not pure JSON Logic")
    return JsonLogicRule(rule, compiled)


def _mapping_as_dict(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")
