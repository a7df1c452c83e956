"""CloudEvents SQL Expression Language (CESQL) v1.0.0, compiled once into a tree of Python closures.

No maintained CESQL library exists for Python, so this module implements the specification
(cloudevents/spec ``cesql/spec.md``) with a hand-written tokenizer and a precedence-climbing parser.
Expressions are parsed and type-checked once; evaluation is a tree of closures (never ``eval``/``exec``).

Semantics, per the spec:

- Keywords (``AND``, ``OR``, ``XOR``, ``NOT``, ``LIKE``, ``EXISTS``, ``IN``, ``TRUE``, ``FALSE``) and function
  names are case-insensitive. Attribute identifiers are CloudEvents attribute names (``[a-z0-9]+``); like the
  CloudEvents Go SDK, an identifier written with upper-case letters is read in lower case.
- Literals: 32-bit signed integers (an optional ``+``/``-`` sign is part of the literal), ``TRUE``/``FALSE``,
  and strings quoted with ``'`` or ``"``. Inside a string, ``\\'`` (resp. ``\\"``) is the quote character; any
  other backslash is kept as written, so ``'a\\_b'`` holds the three characters ``a\\_b`` (LIKE escapes).
- Values are Boolean, Integer or String. Attribute values that are not one of these are represented as
  Strings. Implicit casts follow spec section 3.7: String->Integer accepts ``[+-]?[0-9]+`` within 32 bits,
  String->Boolean accepts ``true``/``false`` in any case, Integer->Boolean is ``x != 0``.
- ``=``/``!=``/``<>`` cast the left operand to the type of the right one; ``IN`` casts the set elements to
  the type of the left operand; ``LIKE`` casts its left operand to a String and its pattern must be a string
  literal (``%`` any run, ``_`` one character, ``\\%``/``\\_`` literal; case-sensitive).
- Precedence, tightest first: function calls; unary ``NOT`` and ``-``; ``LIKE``; ``EXISTS``; ``IN``;
  ``* / %``; ``+ -``; comparisons; ``AND``/``OR``/``XOR`` (one level, left to right). ``AND``/``OR``
  short-circuit.
- Errors (missing attribute, division by zero, failed cast, bad function argument, 32-bit overflow) follow the
  spec's *fail fast* mode (section 4.1), which the spec recommends for filtering: evaluation stops, the
  result is the zero value of the expression's type, and the error is reported. A filter passes only when the
  expression returns Boolean ``TRUE`` without error.

Two stricter-than-spec compile-time checks prevent expressions whose meaning surprises SQL users (and differs
between CESQL implementations):

- mixing ``AND``, ``OR`` and ``XOR`` at one parenthesis level is rejected; CESQL gives them equal precedence
  (``a OR b AND c`` means ``(a OR b) AND c``, unlike SQL), so the author must add parentheses;
- ``NOT x = y``, ``NOT x LIKE p`` and ``NOT x IN (...)`` are rejected; ``NOT`` binds tighter than these
  operators, so they mean ``(NOT x) = y``. Write ``NOT (x = y)``, ``x NOT LIKE p`` or ``x NOT IN (...)``.

Integer arithmetic that leaves the 32-bit range is a math error (the spec leaves overflow undefined).
"""

from __future__ import annotations

import base64
import datetime
import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias, TypeVar, cast

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_NESTING",
    "CesqlCompileError",
    "CesqlEvaluationError",
    "CesqlExpression",
    "CesqlType",
    "ErrorKind",
    "Value",
    "attribute_value",
    "compile_cesql",
]

Value: TypeAlias = bool | int | str
Attributes: TypeAlias = Mapping[str, object]
_Evaluator: TypeAlias = Callable[[Attributes], Value]
_IntegerEvaluator: TypeAlias = Callable[[Attributes], int]

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
#: Longest accepted expression, in characters; a filter is a routing predicate, not a program.
MAX_EXPRESSION_LENGTH: Final = 8192
#: Deepest accepted nesting of operators/parentheses (chains of one logical operator count once).
MAX_NESTING: Final = 64


class CesqlType(enum.Enum):
    BOOLEAN = "Boolean"
    INTEGER = "Integer"
    STRING = "String"
    #: Statically unknown: the value of an attribute, only known at evaluation time.
    ANY = "Any"


class ErrorKind(enum.StrEnum):
    """The CESQL error types of spec section 3.3, spelled as in the CESQL TCK."""

    PARSE = "parse"
    MATH = "math"
    CAST = "cast"
    MISSING_ATTRIBUTE = "missingAttribute"
    MISSING_FUNCTION = "missingFunction"
    FUNCTION_EVALUATION = "functionEvaluation"


class CesqlCompileError(ValueError):
    """An expression that cannot be compiled: a syntax error or a call to an unknown function."""

    def __init__(self, kind: ErrorKind, column: int, detail: str) -> None:
        super().__init__(kind, column, detail)
        self.kind = kind
        #: 1-based character position in the expression.
        self.column = column
        self.detail = detail

    def __str__(self) -> str:
        label = "syntax error" if self.kind is ErrorKind.PARSE else "error"
        return f"{label} at column {self.column}: {self.detail}"


class CesqlEvaluationError(Exception):
    """An error raised while evaluating an expression (fail-fast mode)."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


_ZERO: Final[dict[CesqlType, Value]] = {
    CesqlType.BOOLEAN: False,
    CesqlType.INTEGER: 0,
    CesqlType.STRING: "",
    CesqlType.ANY: False,  # spec 3.2: an undeterminable return type is assumed Boolean
}


@dataclass(frozen=True, slots=True)
class CesqlExpression:
    """A compiled CESQL expression. Thread-safe and reusable; evaluation never raises."""

    source: str
    #: Static type of the result; ``ANY`` for a bare attribute reference.
    result_type: CesqlType
    _evaluate: _Evaluator = field(repr=False)

    def evaluate(self, attributes: Attributes) -> tuple[Value, CesqlEvaluationError | None]:
        """Evaluate against event attributes: the value and the error, if any (then the value is zero)."""
        try:
            return self._evaluate(attributes), None
        except CesqlEvaluationError as error:
            return _ZERO[self.result_type], error

    def matches(self, attributes: Attributes) -> bool:
        """The filter verdict: True only for a Boolean TRUE result without error."""
        try:
            return self._evaluate(attributes) is True
        except CesqlEvaluationError:
            return False


def compile_cesql(source: str) -> CesqlExpression:
    """Parse, type-check and compile ``source``; raises `CesqlCompileError` with a 1-based column."""
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise CesqlCompileError(
            ErrorKind.PARSE,
            MAX_EXPRESSION_LENGTH + 1,
            f"expression longer than {MAX_EXPRESSION_LENGTH} characters",
        )
    tokens = _tokenize(source)
    tree = _Parser(tokens).parse()
    compiled = _compile(tree)
    return CesqlExpression(source, compiled.type, compiled.fn)


# --------------------------------------------------------------------------------------------------
# Tokens

_KEYWORDS: Final = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "EXISTS", "IN", "TRUE", "FALSE"})
_WORD: Final = re.compile(r"[A-Za-z0-9_]+")
_DIGITS: Final = re.compile(r"[0-9]+")
_IDENTIFIER: Final = re.compile(r"[A-Za-z0-9]+")
_FUNCTION_NAME: Final = re.compile(r"[A-Za-z][A-Za-z_]*")
_WHITESPACE: Final = frozenset(" \t\r\n")
_TWO_CHAR_OPERATORS: Final = frozenset({"!=", "<>", "<=", ">="})
_ONE_CHAR_OPERATORS: Final = frozenset("=<>+-*/%(),")


class _Tok(enum.Enum):
    INTEGER = "integer"
    STRING = "string"
    IDENTIFIER = "attribute name"
    FUNCTION = "function name"
    KEYWORD = "keyword"
    OPERATOR = "operator"
    END = "end of expression"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Tok
    #: Keywords and function names upper-cased, identifiers lower-cased, operators as written.
    text: str
    column: int
    integer: int = 0
    string: str = ""

    def describe(self) -> str:
        if self.kind is _Tok.END:
            return "end of expression"
        if self.kind is _Tok.STRING:
            return f"string literal {_quote(self.string)}"
        if self.kind is _Tok.INTEGER:
            return f"integer {self.text}"
        if self.kind is _Tok.IDENTIFIER:
            return f"attribute name {self.text!r}"
        return repr(self.text)


def _quote(text: str, limit: int = 30) -> str:
    shown = text if len(text) <= limit else text[: limit - 3] + "..."
    return repr(shown)


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    length = len(source)
    while position < length:
        char = source[position]
        column = position + 1
        if char in _WHITESPACE:
            position += 1
            continue
        if char == "'" or char == '"':
            text, position = _read_string(source, position)
            tokens.append(_Token(_Tok.STRING, char, column, string=text))
            continue
        word = _WORD.match(source, position)
        if word is not None:
            tokens.append(_classify_word(source, word.group(), word.end(), column))
            position = word.end()
            continue
        pair = source[position : position + 2]
        if pair in _TWO_CHAR_OPERATORS:
            tokens.append(_Token(_Tok.OPERATOR, pair, column))
            position += 2
            continue
        if char in _ONE_CHAR_OPERATORS:
            tokens.append(_Token(_Tok.OPERATOR, char, column))
            position += 1
            continue
        raise CesqlCompileError(ErrorKind.PARSE, column, f"unexpected character {char!r}")
    tokens.append(_Token(_Tok.END, "", length + 1))
    return tokens


def _read_string(source: str, start: int) -> tuple[str, int]:
    quote = source[start]
    parts: list[str] = []
    position = start + 1
    length = len(source)
    while position < length:
        char = source[position]
        if char == "\\" and position + 1 < length:
            following = source[position + 1]
            # Only the escaped delimiter is unescaped; other backslashes stay for LIKE (\% and \_).
            parts.append(following if following == quote else char + following)
            position += 2
        elif char == quote:
            return "".join(parts), position + 1
        else:
            parts.append(char)
            position += 1
    raise CesqlCompileError(ErrorKind.PARSE, start + 1, "unterminated string literal")


def _classify_word(source: str, word: str, end: int, column: int) -> _Token:
    if _DIGITS.fullmatch(word):
        return _Token(_Tok.INTEGER, word, column, integer=int(word))
    upper = word.upper()
    if upper in _KEYWORDS:
        return _Token(_Tok.KEYWORD, upper, column)
    following = end
    while following < len(source) and source[following] in _WHITESPACE:
        following += 1
    if following < len(source) and source[following] == "(":
        if not _FUNCTION_NAME.fullmatch(word):
            raise CesqlCompileError(
                ErrorKind.PARSE, column, f"invalid function name {word!r}: use letters and underscores"
            )
        return _Token(_Tok.FUNCTION, upper, column)
    if not _IDENTIFIER.fullmatch(word):
        raise CesqlCompileError(
            ErrorKind.PARSE,
            column,
            f"invalid attribute name {word!r}: CloudEvents attribute names use only a-z and 0-9",
        )
    return _Token(_Tok.IDENTIFIER, word.lower(), column)


# --------------------------------------------------------------------------------------------------
# Syntax tree


@dataclass(slots=True)
class _Node:
    column: int
    #: Written inside parentheses; disables the ambiguity checks.
    parenthesized: bool = field(default=False, kw_only=True)
    #: Height of the subtree, bounded by MAX_NESTING so compilation and evaluation never recurse deeply.
    height: int = field(default=1, kw_only=True)


@dataclass(slots=True)
class _Literal(_Node):
    value: Value


@dataclass(slots=True)
class _Attribute(_Node):
    name: str


@dataclass(slots=True)
class _Exists(_Node):
    name: str


@dataclass(slots=True)
class _Not(_Node):
    operand: _Node


@dataclass(slots=True)
class _Negate(_Node):
    operand: _Node


@dataclass(slots=True)
class _Binary(_Node):
    operator: str
    left: _Node
    right: _Node


@dataclass(slots=True)
class _Logical(_Node):
    operator: str
    operands: list[_Node]


@dataclass(slots=True)
class _Like(_Node):
    operand: _Node
    pattern: str
    negated: bool


@dataclass(slots=True)
class _In(_Node):
    operand: _Node
    elements: list[_Node]
    negated: bool


@dataclass(slots=True)
class _Call(_Node):
    name: str
    arguments: list[_Node]


# --------------------------------------------------------------------------------------------------
# Parser: precedence climbing. Binding powers, loosest first.

_LOGICAL_POWER: Final = 10
_COMPARISON_POWER: Final = 20
_ADDITIVE_POWER: Final = 30
_MULTIPLICATIVE_POWER: Final = 40
_IN_POWER: Final = 50
_LIKE_POWER: Final = 60
_UNARY_POWER: Final = 70

_COMPARISON_OPERATORS: Final = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
_BINARY_POWER: Final = {
    **dict.fromkeys(_COMPARISON_OPERATORS, _COMPARISON_POWER),
    "+": _ADDITIVE_POWER,
    "-": _ADDITIVE_POWER,
    "*": _MULTIPLICATIVE_POWER,
    "/": _MULTIPLICATIVE_POWER,
    "%": _MULTIPLICATIVE_POWER,
}
_LOGICAL_OPERATORS: Final = frozenset({"AND", "OR", "XOR"})


_NodeT = TypeVar("_NodeT", bound=_Node)


class _Parser:
    def __init__(self, tokens: Sequence[_Token]) -> None:
        self._tokens = tokens
        self._index = 0
        self._depth = 0

    def parse(self) -> _Node:
        if self._peek().kind is _Tok.END:
            raise CesqlCompileError(ErrorKind.PARSE, 1, "empty expression")
        node = self._expression(0)
        token = self._peek()
        if token.kind is not _Tok.END:
            raise self._unexpected(token)
        return node

    def _peek(self, offset: int = 0) -> _Token:
        return self._tokens[min(self._index + offset, len(self._tokens) - 1)]

    def _next(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind is not _Tok.END:
            self._index += 1
        return token

    def _expect_operator(self, text: str, context: str) -> _Token:
        token = self._next()
        if token.kind is not _Tok.OPERATOR or token.text != text:
            raise CesqlCompileError(
                ErrorKind.PARSE, token.column, f"expected {text!r} {context}, got {token.describe()}"
            )
        return token

    @staticmethod
    def _unexpected(token: _Token) -> CesqlCompileError:
        return CesqlCompileError(ErrorKind.PARSE, token.column, f"unexpected {token.describe()}")

    def _expression(self, min_power: int) -> _Node:
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise CesqlCompileError(
                ErrorKind.PARSE, self._peek().column, f"expression nested more than {MAX_NESTING} levels deep"
            )
        left = self._prefix()
        while True:
            token = self._peek()
            power, operator = self._infix_power(token)
            if power <= min_power:
                break
            self._next()
            left = self._infix(left, token, operator, power)
        self._depth -= 1
        return left

    def _infix_power(self, token: _Token) -> tuple[int, str]:
        if token.kind is _Tok.OPERATOR and token.text in _BINARY_POWER:
            return _BINARY_POWER[token.text], token.text
        if token.kind is _Tok.KEYWORD:
            if token.text in _LOGICAL_OPERATORS:
                return _LOGICAL_POWER, token.text
            if token.text == "LIKE":
                return _LIKE_POWER, "LIKE"
            if token.text == "IN":
                return _IN_POWER, "IN"
            if token.text == "NOT":
                following = self._peek(1)
                if following.kind is _Tok.KEYWORD and following.text == "LIKE":
                    return _LIKE_POWER, "NOT LIKE"
                if following.kind is _Tok.KEYWORD and following.text == "IN":
                    return _IN_POWER, "NOT IN"
                raise CesqlCompileError(
                    ErrorKind.PARSE,
                    token.column,
                    "unexpected 'NOT': after an operand NOT must be followed by LIKE or IN",
                )
        return 0, ""

    def _infix(self, left: _Node, token: _Token, operator: str, power: int) -> _Node:
        column = token.column
        if operator in _LOGICAL_OPERATORS:
            right = self._expression(power)
            if isinstance(left, _Logical) and not left.parenthesized:
                if left.operator != operator:
                    raise CesqlCompileError(
                        ErrorKind.PARSE,
                        column,
                        f"mixing {left.operator} and {operator} without parentheses is ambiguous "
                        f"(CESQL gives them equal precedence, unlike SQL); add parentheses",
                    )
                left.operands.append(right)
                return self._sized(left, right, base=left.height - 1)
            return self._sized(_Logical(column, operator, [left, right]), left, right)
        if operator in _COMPARISON_OPERATORS or operator.endswith(("LIKE", "IN")):
            self._check_not_operand(left, operator, column)
        if operator in ("LIKE", "NOT LIKE"):
            if operator == "NOT LIKE":
                self._next()
            pattern = self._next()
            if pattern.kind is not _Tok.STRING:
                raise CesqlCompileError(
                    ErrorKind.PARSE,
                    pattern.column,
                    f"the LIKE pattern must be a string literal, got {pattern.describe()}",
                )
            return self._sized(_Like(column, left, pattern.string, operator == "NOT LIKE"), left)
        if operator in ("IN", "NOT IN"):
            if operator == "NOT IN":
                self._next()
            self._expect_operator("(", "to open the IN set")
            elements = [self._expression(0)]
            while self._peek().kind is _Tok.OPERATOR and self._peek().text == ",":
                self._next()
                elements.append(self._expression(0))
            self._expect_operator(")", "to close the IN set")
            return self._sized(_In(column, left, elements, operator == "NOT IN"), left, *elements)
        right = self._expression(power)
        return self._sized(_Binary(column, operator, left, right), left, right)

    @staticmethod
    def _sized(node: _NodeT, *children: _Node, base: int = 0) -> _NodeT:
        """Record the subtree height of a new node and enforce MAX_NESTING (left-deep chains grow here)."""
        node.height = 1 + max(base, max((child.height for child in children), default=0))
        if node.height > MAX_NESTING:
            raise CesqlCompileError(
                ErrorKind.PARSE, node.column, f"expression nested more than {MAX_NESTING} levels deep"
            )
        return node

    @staticmethod
    def _check_not_operand(left: _Node, operator: str, column: int) -> None:
        if isinstance(left, _Not) and not left.parenthesized:
            suggestion = {
                "LIKE": "x NOT LIKE pattern",
                "NOT LIKE": "NOT (x NOT LIKE pattern)",
                "IN": "x NOT IN (...)",
                "NOT IN": "NOT (x NOT IN (...))",
            }.get(operator, f"NOT (x {operator} y)")
            raise CesqlCompileError(
                ErrorKind.PARSE,
                column,
                f"ambiguous NOT: it binds tighter than {operator}, so this reads (NOT x) {operator} ...; "
                f"write {suggestion}, or (NOT x) {operator} ... if that is meant",
            )

    def _prefix(self) -> _Node:
        token = self._next()
        kind = token.kind
        if kind is _Tok.INTEGER:
            return _Literal(token.column, _integer_literal(token.integer, token.column))
        if kind is _Tok.STRING:
            return _Literal(token.column, token.string)
        if kind is _Tok.IDENTIFIER:
            return _Attribute(token.column, token.text)
        if kind is _Tok.FUNCTION:
            return self._call(token)
        if kind is _Tok.KEYWORD:
            if token.text in ("TRUE", "FALSE"):
                return _Literal(token.column, token.text == "TRUE")
            if token.text == "NOT":
                operand = self._expression(_UNARY_POWER)
                return self._sized(_Not(token.column, operand), operand)
            if token.text == "EXISTS":
                name = self._next()
                if name.kind is not _Tok.IDENTIFIER:
                    raise CesqlCompileError(
                        ErrorKind.PARSE, name.column, f"EXISTS needs an attribute name, got {name.describe()}"
                    )
                return _Exists(token.column, name.text)
        if kind is _Tok.OPERATOR:
            if token.text == "(":
                node = self._expression(0)
                self._expect_operator(")", f"to close the parenthesis opened at column {token.column}")
                node.parenthesized = True
                return node
            if token.text in ("-", "+"):
                number = self._peek()
                if number.kind is _Tok.INTEGER:
                    # A sign directly before digits is part of the integer literal (spec 2.2), which
                    # is what makes -2147483648 a valid literal.
                    self._next()
                    value = -number.integer if token.text == "-" else number.integer
                    return _Literal(token.column, _integer_literal(value, token.column))
                if token.text == "-":
                    operand = self._expression(_UNARY_POWER)
                    return self._sized(_Negate(token.column, operand), operand)
        raise self._unexpected(token)

    def _call(self, name: _Token) -> _Call:
        self._expect_operator("(", f"after function {name.text}")
        arguments: list[_Node] = []
        if self._peek().kind is _Tok.OPERATOR and self._peek().text == ")":
            self._next()
            return self._sized(_Call(name.column, name.text, arguments))
        arguments.append(self._expression(0))
        while self._peek().kind is _Tok.OPERATOR and self._peek().text == ",":
            self._next()
            arguments.append(self._expression(0))
        self._expect_operator(")", f"to close the arguments of {name.text}")
        return self._sized(_Call(name.column, name.text, arguments), *arguments)


def _integer_literal(value: int, column: int) -> int:
    if not INT32_MIN <= value <= INT32_MAX:
        raise CesqlCompileError(
            ErrorKind.PARSE, column, f"integer literal {value} is outside the 32-bit signed range"
        )
    return value


# --------------------------------------------------------------------------------------------------
# Runtime helpers: casts (spec 3.7) and attribute access.

_INTEGER_TEXT: Final = re.compile(r"[+-]?[0-9]+")
_MISSING: Final = object()


def _cast_error(value: Value, target: str) -> CesqlEvaluationError:
    return CesqlEvaluationError(ErrorKind.CAST, f"cannot cast {_describe_value(value)} to {target}")


def _describe_value(value: Value) -> str:
    if value.__class__ is str:
        return f"String {_quote(str(value))}"
    if value.__class__ is bool:
        return f"Boolean {'TRUE' if value else 'FALSE'}"
    return f"Integer {value}"


def _to_integer(value: Value) -> int:
    cls = value.__class__
    if cls is int:
        return value  # type: ignore[return-value]
    if cls is bool:
        return 1 if value else 0
    text = str(value)
    if _INTEGER_TEXT.fullmatch(text):
        number = int(text)
        if INT32_MIN <= number <= INT32_MAX:
            return number
    raise _cast_error(value, "Integer")


def _to_boolean(value: Value) -> bool:
    cls = value.__class__
    if cls is bool:
        return value  # type: ignore[return-value]
    if cls is int:
        return value != 0
    lowered = str(value).lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise _cast_error(value, "Boolean")


def _to_string(value: Value) -> str:
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[return-value]
    if cls is bool:
        return "true" if value else "false"
    return str(value)


def _can_cast(caster: Callable[[Value], Value], value: Value) -> bool:
    try:
        caster(value)
    except CesqlEvaluationError:
        return False
    return True


_CASTERS: Final[dict[CesqlType, Callable[[Value], Value]]] = {
    CesqlType.BOOLEAN: _to_boolean,
    CesqlType.INTEGER: _to_integer,
    CesqlType.STRING: _to_string,
}
_CASTER_FOR_CLASS: Final[dict[type, Callable[[Value], Value]]] = {
    bool: _to_boolean,
    int: _to_integer,
    str: _to_string,
}
_PRIMITIVE_CLASSES: Final = frozenset({bool, int, str})


def attribute_value(value: object) -> Value:
    """An attribute value as a CESQL value: non-primitive values are represented as a String (spec 3.2)."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def _static_type(value: Value) -> CesqlType:
    if value.__class__ is bool:
        return CesqlType.BOOLEAN
    if value.__class__ is int:
        return CesqlType.INTEGER
    return CesqlType.STRING


def _check_int32(value: int, operation: str) -> int:
    if INT32_MIN <= value <= INT32_MAX:
        return value
    raise CesqlEvaluationError(ErrorKind.MATH, f"{operation} overflows the 32-bit integer range")


# --------------------------------------------------------------------------------------------------
# Compiler: syntax tree -> closures with static types.


@dataclass(frozen=True, slots=True)
class _Compiled:
    fn: _Evaluator
    type: CesqlType
    #: Set for literals, so casts of constants happen once, at compile time.
    constant: Value | None = None


def _compile(node: _Node) -> _Compiled:
    if isinstance(node, _Literal):
        return _constant(node.value)
    if isinstance(node, _Attribute):
        return _compile_attribute(node.name)
    if isinstance(node, _Exists):
        return _compile_exists(node.name)
    if isinstance(node, _Not):
        operand = _cast(_compile(node.operand), CesqlType.BOOLEAN)
        return _Compiled(lambda attributes: not operand(attributes), CesqlType.BOOLEAN)
    if isinstance(node, _Negate):
        return _compile_negate(cast(_IntegerEvaluator, _cast(_compile(node.operand), CesqlType.INTEGER)))
    if isinstance(node, _Logical):
        return _compile_logical(node.operator, [_compile(operand) for operand in node.operands])
    if isinstance(node, _Binary):
        return _compile_binary(node.operator, _compile(node.left), _compile(node.right))
    if isinstance(node, _Like):
        return _compile_like(_cast(_compile(node.operand), CesqlType.STRING), node.pattern, node.negated)
    if isinstance(node, _In):
        return _compile_in(
            _compile(node.operand), [_compile(element) for element in node.elements], node.negated
        )
    if isinstance(node, _Call):
        return _compile_call(node)
    raise AssertionError(f"unhandled syntax node {node!r}")  # pragma: no cover


def _constant(value: Value) -> _Compiled:
    return _Compiled(lambda _attributes: value, _static_type(value), value)


def _cast(compiled: _Compiled, target: CesqlType) -> _Evaluator:
    """An evaluator of ``compiled`` converted to ``target`` (spec 3.7 implicit cast)."""
    if compiled.type is target:
        return compiled.fn
    caster = _CASTERS[target]
    if compiled.constant is not None:
        try:
            converted = caster(compiled.constant)
        except CesqlEvaluationError:
            pass  # keep the error for evaluation time, where the spec reports it
        else:
            return lambda _attributes: converted
    inner = compiled.fn
    return lambda attributes: caster(inner(attributes))


def _compile_attribute(name: str) -> _Compiled:
    def attribute(attributes: Attributes) -> Value:
        value = attributes.get(name, _MISSING)
        if value.__class__ in _PRIMITIVE_CLASSES:
            return value  # type: ignore[return-value]
        if value is _MISSING or value is None:
            raise CesqlEvaluationError(ErrorKind.MISSING_ATTRIBUTE, f"attribute {name!r} is not present")
        return attribute_value(value)

    return _Compiled(attribute, CesqlType.ANY)


def _compile_exists(name: str) -> _Compiled:
    return _Compiled(lambda attributes: attributes.get(name) is not None, CesqlType.BOOLEAN)


def _compile_negate(operand: _IntegerEvaluator) -> _Compiled:
    def negate(attributes: Attributes) -> Value:
        return _check_int32(-operand(attributes), "negation")

    return _Compiled(negate, CesqlType.INTEGER)


def _compile_logical(operator: str, operands: list[_Compiled]) -> _Compiled:
    evaluators = tuple(_cast(operand, CesqlType.BOOLEAN) for operand in operands)
    if operator == "AND":

        def conjunction(attributes: Attributes) -> Value:
            # A plain loop, not all(): no generator object per evaluation on the hot path.
            for evaluate in evaluators:  # noqa: SIM110
                if not evaluate(attributes):
                    return False
            return True

        return _Compiled(conjunction, CesqlType.BOOLEAN)
    if operator == "OR":

        def disjunction(attributes: Attributes) -> Value:
            for evaluate in evaluators:  # noqa: SIM110
                if evaluate(attributes):
                    return True
            return False

        return _Compiled(disjunction, CesqlType.BOOLEAN)

    def exclusive(attributes: Attributes) -> Value:
        result = False
        for evaluate in evaluators:  # XOR never short-circuits
            result = result is not evaluate(attributes)
        return result

    return _Compiled(exclusive, CesqlType.BOOLEAN)


def _compile_binary(operator: str, left: _Compiled, right: _Compiled) -> _Compiled:
    if operator in ("=", "!=", "<>"):
        return _compile_equality(left, right, negated=operator != "=")
    # After a cast to Integer an evaluator returns an int; the cast() only informs the type checker.
    left_integer = cast(_IntegerEvaluator, _cast(left, CesqlType.INTEGER))
    right_integer = cast(_IntegerEvaluator, _cast(right, CesqlType.INTEGER))
    if operator in _COMPARISON_OPERATORS:
        return _Compiled(_integer_comparison(operator, left_integer, right_integer), CesqlType.BOOLEAN)
    return _Compiled(_arithmetic(operator, left_integer, right_integer), CesqlType.INTEGER)


def _compile_equality(left: _Compiled, right: _Compiled, *, negated: bool) -> _Compiled:
    if right.type is not CesqlType.ANY:
        # '=' is ambiguous: the right operand's type picks the definition, the left is cast to it.
        left_cast = _cast(left, right.type)
        if right.constant is not None:
            expected = right.constant

            def equals_constant(attributes: Attributes) -> Value:
                return (left_cast(attributes) == expected) is not negated

            return _Compiled(equals_constant, CesqlType.BOOLEAN)
        right_fn = right.fn

        def equals_typed(attributes: Attributes) -> Value:
            value = left_cast(attributes)
            return (value == right_fn(attributes)) is not negated

        return _Compiled(equals_typed, CesqlType.BOOLEAN)
    left_fn = left.fn
    right_dynamic = right.fn

    def equals_dynamic(attributes: Attributes) -> Value:
        value = left_fn(attributes)
        other = right_dynamic(attributes)
        return (_CASTER_FOR_CLASS[other.__class__](value) == other) is not negated

    return _Compiled(equals_dynamic, CesqlType.BOOLEAN)


def _integer_comparison(operator: str, left: _IntegerEvaluator, right: _IntegerEvaluator) -> _Evaluator:
    if operator == "<":
        return lambda attributes: left(attributes) < right(attributes)
    if operator == "<=":
        return lambda attributes: left(attributes) <= right(attributes)
    if operator == ">":
        return lambda attributes: left(attributes) > right(attributes)
    return lambda attributes: left(attributes) >= right(attributes)


def _arithmetic(operator: str, left: _IntegerEvaluator, right: _IntegerEvaluator) -> _Evaluator:
    if operator == "+":
        return lambda attributes: _check_int32(left(attributes) + right(attributes), "addition")
    if operator == "-":
        return lambda attributes: _check_int32(left(attributes) - right(attributes), "subtraction")
    if operator == "*":
        return lambda attributes: _check_int32(left(attributes) * right(attributes), "multiplication")

    def divide(attributes: Attributes) -> Value:
        dividend = left(attributes)
        divisor = right(attributes)
        if divisor == 0:
            raise CesqlEvaluationError(ErrorKind.MATH, "division by zero")
        # Truncated division (spec 3.4.2): the quotient rounds toward zero, the remainder takes
        # the dividend's sign; Python's // and % floor instead.
        if operator == "/":
            quotient = abs(dividend) // abs(divisor)
            return _check_int32(quotient if (dividend < 0) == (divisor < 0) else -quotient, "division")
        remainder = abs(dividend) % abs(divisor)
        return -remainder if dividend < 0 else remainder

    return divide


# LIKE ---------------------------------------------------------------------------------------------


def _compile_like(operand: _Evaluator, pattern: str, negated: bool) -> _Compiled:
    matcher = _like_matcher(pattern)

    def like(attributes: Attributes) -> Value:
        return matcher(operand(attributes)) is not negated  # type: ignore[arg-type]

    return _Compiled(like, CesqlType.BOOLEAN)


def _like_matcher(pattern: str) -> Callable[[str], bool]:
    """Compile a LIKE pattern into a matcher without backtracking regexes.

    The pattern is split at unescaped ``%`` into fixed-length segments (literals and ``_``). Matching the
    first segment at the start, the last at the end and the middle ones leftmost-first in between is exact
    for such patterns and never backtracks across segments, unlike a ``.*``-based regular expression.
    Literal segments are found with ``str.find`` (linear); a segment holding ``_`` is searched by a regex
    of ``.`` and literals, which costs up to text length × segment width, so that product is capped
    (`LIKE_MAX_COST`) and a larger one is an evaluation error rather than a stall of the event loop.
    """
    segments: list[list[str | None]] = [[]]  # None stands for '_' (any one character)
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\" and position + 1 < len(pattern) and pattern[position + 1] in "%_":
            segments[-1].append(pattern[position + 1])
            position += 2
            continue
        if char == "%":
            segments.append([])
        elif char == "_":
            segments[-1].append(None)
        else:
            segments[-1].append(char)
        position += 1
    compiled = [_compile_segment(segment) for segment in segments]
    widths = [len(segment) for segment in segments]
    wildcard_width = sum(width for width, c in zip(widths, compiled, strict=True) if not isinstance(c, str))
    if wildcard_width:
        return _cost_capped(_segments_matcher(compiled, widths), wildcard_width)
    return _segments_matcher(compiled, widths)


# Characters × pattern positions one LIKE may compare (~10 ms of regex work): 1 MiB of text against a
# segment of 16 `_`-holding positions still passes.
LIKE_MAX_COST: Final = 1 << 24


def _cost_capped(matcher: Callable[[str], bool], wildcard_width: int) -> Callable[[str], bool]:
    def capped(text: str) -> bool:
        if len(text) * wildcard_width > LIKE_MAX_COST:
            raise CesqlEvaluationError(
                ErrorKind.FUNCTION_EVALUATION,
                f"LIKE: a {len(text)}-character value against {wildcard_width} '_' positions is too costly",
            )
        return matcher(text)

    return capped


def _segments_matcher(compiled: list[str | re.Pattern[str]], widths: list[int]) -> Callable[[str], bool]:
    if len(compiled) == 1:
        only = compiled[0]
        if isinstance(only, str):
            return lambda text: text == only
        return lambda text: only.fullmatch(text) is not None

    first, last = compiled[0], compiled[-1]
    first_width, last_width = widths[0], widths[-1]
    middle = list(zip(compiled[1:-1], widths[1:-1], strict=True))

    def match(text: str) -> bool:
        end = len(text) - last_width
        if end < first_width:
            return False
        if not _segment_at(first, text, 0) or not _segment_at(last, text, end):
            return False
        position = first_width
        for segment, width in middle:
            if width == 0:
                continue
            found = _segment_search(segment, text, position, end)
            if found < 0:
                return False
            position = found + width
        return True

    return match


def _compile_segment(segment: list[str | None]) -> str | re.Pattern[str]:
    if all(char is not None for char in segment):
        return "".join(char for char in segment if char is not None)
    return re.compile("".join("." if char is None else re.escape(char) for char in segment), re.DOTALL)


def _segment_at(segment: str | re.Pattern[str], text: str, position: int) -> bool:
    if isinstance(segment, str):
        return text.startswith(segment, position)
    return segment.match(text, position) is not None


def _segment_search(segment: str | re.Pattern[str], text: str, start: int, end: int) -> int:
    if isinstance(segment, str):
        return text.find(segment, start, end)
    found = segment.search(text, start, end)
    return -1 if found is None else found.start()


# IN -----------------------------------------------------------------------------------------------


def _compile_in(operand: _Compiled, elements: list[_Compiled], negated: bool) -> _Compiled:
    left = operand.fn
    constants = [element.constant for element in elements]
    if all(constant is not None for constant in constants):
        tables = {cls: _membership_table(constants, caster) for cls, caster in _CASTER_FOR_CLASS.items()}

        def member_of_constants(attributes: Attributes) -> Value:
            value = left(attributes)
            members, failure = tables[value.__class__]
            if value in members:
                return not negated
            if failure is not None:
                raise CesqlEvaluationError(ErrorKind.CAST, failure)
            return negated

        return _Compiled(member_of_constants, CesqlType.BOOLEAN)

    evaluators = tuple(element.fn for element in elements)

    def member(attributes: Attributes) -> Value:
        value = left(attributes)
        caster = _CASTER_FOR_CLASS[value.__class__]
        for evaluate in evaluators:
            if caster(evaluate(attributes)) == value:
                return not negated
        return negated

    return _Compiled(member, CesqlType.BOOLEAN)


def _membership_table(
    constants: Sequence[Value | None], caster: Callable[[Value], Value]
) -> tuple[frozenset[Value], str | None]:
    """The set elements cast to one type, up to the first that fails to cast (elements are tried in order)."""
    members: set[Value] = set()
    for constant in constants:
        assert constant is not None
        try:
            members.add(caster(constant))
        except CesqlEvaluationError as error:
            return frozenset(members), error.detail
    return frozenset(members), None


# Functions ----------------------------------------------------------------------------------------

_UNICODE_WHITESPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _function_error(detail: str) -> CesqlEvaluationError:
    return CesqlEvaluationError(ErrorKind.FUNCTION_EVALUATION, detail)


def _abs(value: Value) -> Value:
    number = int(value)
    if number == INT32_MIN:
        raise CesqlEvaluationError(ErrorKind.MATH, "ABS(-2147483648) overflows the 32-bit integer range")
    return abs(number)


def _left(text: Value, count: Value) -> Value:
    text, count = str(text), int(count)
    if count < 0:
        raise _function_error(f"LEFT length must not be negative, got {count}")
    return text[:count]


def _right(text: Value, count: Value) -> Value:
    text, count = str(text), int(count)
    if count < 0:
        raise _function_error(f"RIGHT length must not be negative, got {count}")
    return text[len(text) - count :] if count < len(text) else text


def _substring(text: Value, position: Value, length: Value | None = None) -> Value:
    text, position = str(text), int(position)
    if length is not None and int(length) < 0:
        raise _function_error(f"SUBSTRING length must not be negative, got {length}")
    if position == 0:
        return ""
    if position > len(text) or position < -len(text):
        raise _function_error(f"SUBSTRING position {position} is outside a string of length {len(text)}")
    start = position - 1 if position > 0 else len(text) + position
    return text[start:] if length is None else text[start : start + int(length)]


def _concat_ws(delimiter: Value, *parts: Value) -> Value:
    return str(delimiter).join(str(part) for part in parts)


@dataclass(frozen=True, slots=True)
class _Function:
    parameters: tuple[CesqlType, ...]
    result: CesqlType
    implementation: Callable[..., Value]
    #: Type of the arguments after the fixed ``parameters``, for variadic functions.
    variadic: CesqlType | None = None


_S, _I, _B, _A = CesqlType.STRING, CesqlType.INTEGER, CesqlType.BOOLEAN, CesqlType.ANY

_FUNCTIONS: Final[dict[str, tuple[_Function, ...]]] = {
    "ABS": (_Function((_I,), _I, _abs),),
    "LENGTH": (_Function((_S,), _I, lambda text: len(str(text))),),
    "CONCAT": (_Function((), _S, lambda *parts: "".join(str(part) for part in parts), variadic=_S),),
    "CONCAT_WS": (_Function((_S,), _S, _concat_ws, variadic=_S),),
    "LOWER": (_Function((_S,), _S, lambda text: str(text).lower()),),
    "UPPER": (_Function((_S,), _S, lambda text: str(text).upper()),),
    "TRIM": (_Function((_S,), _S, lambda text: str(text).strip(_UNICODE_WHITESPACE)),),
    "LEFT": (_Function((_S, _I), _S, _left),),
    "RIGHT": (_Function((_S, _I), _S, _right),),
    "SUBSTRING": (_Function((_S, _I), _S, _substring), _Function((_S, _I, _I), _S, _substring)),
    # Casting functions of the CESQL TCK and the CloudEvents SDKs.
    "INT": (_Function((_A,), _I, _to_integer),),
    "BOOL": (_Function((_A,), _B, _to_boolean),),
    "STRING": (_Function((_A,), _S, _to_string),),
    "IS_INT": (_Function((_A,), _B, lambda value: _can_cast(_to_integer, value)),),
    "IS_BOOL": (_Function((_A,), _B, lambda value: _can_cast(_to_boolean, value)),),
}


def _resolve_function(call: _Call) -> _Function:
    overloads = _FUNCTIONS.get(call.name)
    if overloads is None:
        raise CesqlCompileError(ErrorKind.MISSING_FUNCTION, call.column, f"unknown function {call.name}")
    arity = len(call.arguments)
    for overload in overloads:
        fixed = len(overload.parameters)
        if arity == fixed or (overload.variadic is not None and arity > fixed):
            return overload
    expected = " or ".join(
        f"{len(overload.parameters)}{' or more' if overload.variadic is not None else ''}"
        for overload in overloads
    )
    raise CesqlCompileError(
        ErrorKind.MISSING_FUNCTION,
        call.column,
        f"function {call.name} takes {expected} argument(s), got {arity}",
    )


def _compile_call(call: _Call) -> _Compiled:
    function = _resolve_function(call)
    arguments: list[_Evaluator] = []
    for index, argument in enumerate(call.arguments):
        target = function.parameters[index] if index < len(function.parameters) else function.variadic
        compiled = _compile(argument)
        arguments.append(compiled.fn if target is None or target is _A else _cast(compiled, target))
    implementation = function.implementation
    if len(arguments) == 1:
        (only,) = arguments
        return _Compiled(lambda attributes: implementation(only(attributes)), function.result)
    if len(arguments) == 2:
        first, second = arguments
        return _Compiled(
            lambda attributes: implementation(first(attributes), second(attributes)), function.result
        )
    evaluators = tuple(arguments)
    return _Compiled(
        lambda attributes: implementation(*[evaluate(attributes) for evaluate in evaluators]), function.result
    )
