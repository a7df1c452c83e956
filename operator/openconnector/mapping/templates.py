"""The template language of Mapping values: a sandboxed, size-bounded Jinja2.

OpenConnector renders mapping values with Twig. We use Jinja2's `ImmutableSandboxedEnvironment`, which
refuses access to Python internals (`''.__class__`, `__globals__`, …) and mutation of lists and dicts.
On top of that sandbox this module bounds what one render may cost, because a Mapping is written by a
cluster tenant and runs inside the shared gateway:

- compile-time refusals: `macro`, `call`, `include`, `import`, `extends`, `block` and `recursive` loops
  (a mapping value needs none of them, and they are the routes to unbounded recursion);
- at most `MAX_LOOP_ITERATIONS` loop iterations per render (all loops together);
- strings, bytes and lists built with `~`, `+`, `*` and the padding filters/methods stay under
  `MAX_STRING_LENGTH`, integers under `MAX_INT_BITS`; padding methods of bytes are refused like those of
  strings, and `sum` adds numbers only (`sum(start=[])` over lists is quadratic);
- a cost budget shared by every render of one mapping application (see :class:`RenderBudget`): each
  operation, call, filter, attribute access and loop step is charged, plus the size of what it reads or
  builds, and the CPU time of the rendering thread is checked at each charge. So the cost of a request is
  bounded, not only the number of iterations: 100,000 iterations of heavy work are refused;
- the rendered text is at most `MAX_RENDERED_LENGTH` characters, counted while it streams.

Choices: autoescape is off (the output is JSON, not HTML); undefined variables raise
(`StrictUndefined`; use `{{ x | default('') }}` or `{% if x is defined %}` for optional fields);
`None` renders as an empty string (as Twig does), booleans as `true`/`false` and lists/objects as compact
JSON (Twig would print "Array"). Extras from OpenConnector: the filters `b64enc`, `b64dec`,
`json_decode`, `slugify` and the global `generateUuid()`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import functools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import do_format, do_indent, sync_do_join, sync_do_slice
from jinja2.filters import sync_do_sum as do_sum_sync
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg

from openconnector.mapping.casts import lenient_b64decode, transliterate_ascii

__all__ = [
    "MAX_INT_BITS",
    "MAX_LOOP_ITERATIONS",
    "MAX_RENDERED_LENGTH",
    "MAX_RENDER_COST",
    "MAX_STRING_LENGTH",
    "CompiledTemplate",
    "RenderBudget",
    "TemplateBudgetError",
    "TemplateCompileError",
    "TemplateRenderError",
    "compile_template",
    "looks_like_template",
    "render_budget",
]

MAX_LOOP_ITERATIONS: Final = 100_000
MAX_STRING_LENGTH: Final = 1_000_000
MAX_RENDERED_LENGTH: Final = 1_000_000
MAX_INT_BITS: Final = 4_096
_MAX_WIDTH: Final = 10_000

_TEMPLATE_MARKERS: Final = ("{{", "{%", "{#")

# Tags that a one-expression mapping value never needs and that open unbounded recursion or file access.
_REFUSED_NODES: Final[Mapping[type[nodes.Node], str]] = {
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from … import",
    nodes.Extends: "extends",
    nodes.Block: "block",
}

_SEQUENCES: Final = (str, bytes, bytearray, list, tuple)

# str and bytes methods that can inflate a small value into a huge one (same-name filters are guarded).
_REFUSED_STR_METHODS: Final = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join", "translate", "maketrans", "format",
     "format_map"}
)  # fmt: skip

_PRINTF_FLAGS: Final = frozenset("-+ #0")
_MAX_WIDTH_DIGITS: Final = len(str(10_000))


class TemplateCompileError(Exception):
    """The template does not parse, or uses a refused construct."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemplateRenderError(Exception):
    """Rendering failed (undefined variable, refused by the sandbox, a filter error, a limit)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemplateBudgetError(TemplateRenderError):
    """The render ran out of its cost or CPU budget."""


def looks_like_template(text: str) -> bool:
    """True when the string contains Jinja syntax; anything else is a literal."""
    return any(marker in text for marker in _TEMPLATE_MARKERS)


# --------------------------------------------------------------------------- limits


# One operation costs as much as copying this many characters (roughly, in CPython time).
OPERATION_COST: Final = 100
# Per mapping application (one request): ~200,000 operations or ~20 MB of strings built or read.
MAX_RENDER_COST: Final = 20_000_000
# CPU seconds of the rendering thread per mapping application.
MAX_RENDER_CPU_SECONDS: Final = 1.0


class RenderBudgetExceeded(SecurityError):
    """The render's cost or CPU budget ran out."""


class RenderBudget:
    """Cost and CPU-time budget of one mapping application; shared by every template it renders.

    The sandbox calls :meth:`charge` from every operation it intercepts, so a runaway stops at the next
    operation after the budget ends (each single operation is bounded by the size limits).
    """

    __slots__ = ("cost", "deadline", "limit", "loop_iterations")

    def __init__(self, limit: int = MAX_RENDER_COST, cpu_seconds: float = MAX_RENDER_CPU_SECONDS) -> None:
        self.cost = 0
        self.limit = limit
        self.loop_iterations = 0
        self.deadline = time.thread_time() + cpu_seconds

    def charge(self, units: int) -> None:
        self.cost += units
        if self.cost > self.limit:
            raise RenderBudgetExceeded(f"the render cost budget ({self.limit} units) is exhausted")
        if time.thread_time() > self.deadline:
            raise RenderBudgetExceeded("the render CPU time budget is exhausted")


_BUDGET: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar(
    "mapping_template_budget", default=None
)


@contextlib.contextmanager
def render_budget(budget: RenderBudget | None = None) -> Iterator[RenderBudget]:
    """Renders inside share one budget (a new one unless given); used per mapping application."""
    active = budget if budget is not None else RenderBudget()
    token = _BUDGET.set(active)
    try:
        yield active
    finally:
        _BUDGET.reset(token)


def _charge(units: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(units)


def _size(value: object) -> int:
    if isinstance(value, str | bytes | bytearray | list | tuple | dict):
        return len(value)
    return 1


def _check_length(length: int, what: str) -> None:
    if length > MAX_STRING_LENGTH:
        raise SecurityError(f"{what} would be {length} long, more than the limit of {MAX_STRING_LENGTH}")


def _check_width(width: object, what: str) -> None:
    if isinstance(width, int) and width > _MAX_WIDTH:
        raise SecurityError(f"{what} width {width} is more than the limit of {_MAX_WIDTH}")


def _check_printf(fmt: str) -> None:
    r"""Refuse `*` and over-wide widths/precisions in a %-format string.

    A single left-to-right scan, as CPython parses it (mapping keys may nest parentheses): a regex with
    a `\([^)]*\)` key group rescans to the end after every `%(`, quadratic on `%(%(%(…` — and the
    format string can be input data (`{{ value % 1 }}`).
    """
    length = len(fmt)
    position = fmt.find("%")
    while 0 <= position < length - 1:
        position += 1
        if fmt[position] == "(":
            depth = 1
            position += 1
            while position < length and depth:
                depth += {"(": 1, ")": -1}.get(fmt[position], 0)
                position += 1
        while position < length and fmt[position] in _PRINTF_FLAGS:
            position += 1
        for part in ("width", "precision"):
            if part == "precision":
                if position >= length or fmt[position] != ".":
                    break
                position += 1
            if position < length and fmt[position] == "*":
                raise SecurityError("'*' widths are not allowed in format strings")
            digits_end = position
            while digits_end < length and fmt[digits_end].isdigit():
                digits_end += 1
            if digits_end - position > _MAX_WIDTH_DIGITS:
                raise SecurityError(f"format {part} is more than the limit of {_MAX_WIDTH}")
            if digits_end > position:
                _check_width(int(fmt[position:digits_end]), "format")
            position = digits_end
        position = fmt.find("%", position + (position < length and fmt[position] == "%"))


def _loop_budget(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET.get()
    for item in iterable:
        if budget is not None:
            budget.loop_iterations += 1
            if budget.loop_iterations > MAX_LOOP_ITERATIONS:
                raise SecurityError(f"more than {MAX_LOOP_ITERATIONS} loop iterations in one render")
            budget.charge(OPERATION_COST)
        yield item


_LOOP_BUDGET_FILTER: Final = "__mapping_loop_budget__"


class _GuardedCodeGenerator(CodeGenerator):
    """Routes `~` concatenation through the environment, so its result size is checked."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.guarded_concat((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


def _finalize(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return value


# --------------------------------------------------------------------------- extra and guarded filters


def _b64enc(value: object) -> str:
    return base64.b64encode(str(value).encode("utf-8")).decode("ascii")


def _b64dec(value: object) -> str:
    try:
        return lenient_b64decode(str(value)).decode("utf-8")
    except (ValueError, binascii.Error):
        raise ValueError("b64dec: the value is not base64 of UTF-8 text") from None


def _json_decode(value: object) -> object:
    if isinstance(value, dict | list):
        return value
    try:
        return json.loads(str(value))
    except ValueError:
        raise ValueError("json_decode: the value is not valid JSON") from None


_SLUG_SEPARATORS_RE: Final = re.compile(r"[^a-z0-9]+")


def _slugify(value: object) -> str:
    ascii_text = transliterate_ascii(str(value)).replace("?", " ").lower()
    return _SLUG_SEPARATORS_RE.sub("-", ascii_text).strip("-")


def _generate_uuid() -> str:
    return str(uuid.uuid4())


def _guarded_center(value: object, width: int = 80) -> str:
    _check_width(width, "center")
    return str(value).center(width)


def _guarded_indent(value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    if isinstance(width, str):
        _check_width(len(width), "indent")
    else:
        _check_width(width, "indent")
    text = str(value)
    indent_length = len(width) if isinstance(width, str) else width
    _check_length(len(text) + (text.count("\n") + 1) * max(indent_length, 0), "indent result")
    return do_indent(value, width, first, blank)


def _guarded_format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value))
    return do_format(value, *args, **kwargs)


def _guarded_batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> list[list[Any]]:
    if not isinstance(linecount, int) or linecount < 1:
        raise ValueError("batch: the batch size must be a positive integer")
    _check_width(linecount, "batch")
    items = list(value)
    batches = [items[start : start + linecount] for start in range(0, len(items), linecount)]
    if batches and fill_with is not None:
        batches[-1] = batches[-1] + [fill_with] * (linecount - len(batches[-1]))
    return batches


def _guarded_slice(value: Iterable[Any], slices: int, fill_with: Any = None) -> list[list[Any]]:
    _check_width(slices, "slice")
    return list(sync_do_slice(list(value), slices, fill_with))


def _guarded_replace(value: object, old: object, new: object, count: int | None = None) -> str:
    text, old_text, new_text = str(value), str(old), str(new)
    occurrences = text.count(old_text) if count is None or count < 0 else min(count, text.count(old_text))
    _check_length(len(text) + occurrences * max(0, len(new_text) - len(old_text)), "replace result")
    return text.replace(old_text, new_text, -1 if count is None else count)


@jinja2.pass_eval_context
def _guarded_join(
    eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: str | int | None = None
) -> str:
    items = list(value)
    _check_length(len(str(d)) * max(0, len(items) - 1), "join result")
    return sync_do_join(eval_ctx, items, d, attribute)


class _MappingTemplateEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox plus the size limits described in the module docstring."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str | bytes | bytearray) and attr in _REFUSED_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        # str.format/format_map are refused outright (is_safe_attribute), not wrapped: widths could inflate.
        return None

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, _SEQUENCES) and isinstance(times, int):
                    _check_length(len(sequence) * max(times, 0), "repetition result")
            if (
                _is_int(left)
                and _is_int(right)
                and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS
            ):
                raise SecurityError(f"integer product would exceed {MAX_INT_BITS} bits")
        elif operator == "**":
            if (
                _is_int(left)
                and _is_int(right)
                and right > 0
                and abs(left).bit_length() * right > MAX_INT_BITS
            ):
                raise SecurityError(f"integer power would exceed {MAX_INT_BITS} bits")
        elif operator == "+":
            if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
                _check_length(len(left) + len(right), "concatenation result")
        elif operator == "%" and isinstance(left, str | bytes | bytearray):
            _check_printf(left.decode("latin-1") if isinstance(left, bytes | bytearray) else left)
        _charge(OPERATION_COST)
        result = super().call_binop(context, operator, left, right)
        _charge(_size(result))
        return result

    def call_unop(self, context: Context, operator: str, arg: Any) -> Any:
        _charge(OPERATION_COST)
        return super().call_unop(context, operator, arg)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _charge(OPERATION_COST)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _charge(OPERATION_COST)
        return super().getitem(obj, argument)

    def call(
        __self,
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _charge(OPERATION_COST + sum(_size(a) for a in args))
        result = super().call(__context, __obj, *args, **kwargs)
        _charge(_size(result))
        return result

    def guarded_concat(self, parts: Iterable[Any]) -> str:
        # Values join the way they print in {{ }}: null as "", booleans as true/false, arrays as JSON.
        texts = [str(_finalize(part)) for part in parts]
        total = sum(len(text) for text in texts)
        _check_length(total, "concatenation result")
        _charge(OPERATION_COST + total)
        return "".join(texts)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _build_environment() -> _MappingTemplateEnvironment:
    environment = _MappingTemplateEnvironment(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        auto_reload=False,
        cache_size=0,
    )
    # lipsum() produces text of a caller-chosen size; nothing a mapping needs.
    environment.globals.pop("lipsum", None)
    environment.globals["generateUuid"] = _generate_uuid
    environment.filters.update(
        {
            "b64enc": _b64enc,
            "b64dec": _b64dec,
            "json_decode": _json_decode,
            "slugify": _slugify,
            "center": _guarded_center,
            "indent": _guarded_indent,
            "format": _guarded_format,
            "batch": _guarded_batch,
            "slice": _guarded_slice,
            "replace": _guarded_replace,
            "join": _guarded_join,
            "sum": _guarded_sum,
            _LOOP_BUDGET_FILTER: _loop_budget,
        }
    )
    for name, function in list(environment.filters.items()):
        if name != _LOOP_BUDGET_FILTER:
            environment.filters[name] = _charged_filter(function)
    return environment


def _guarded_sum(iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0) -> Any:
    # Python's sum(start=[]) concatenates lists one by one: quadratic, in one uninterruptible call.
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise SecurityError("sum: start must be a number")
    return do_sum_sync(_ENVIRONMENT, iterable, attribute, start)


def _charged_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, charging the render budget for its input and its result."""
    value_position = 1 if _PassArg.from_obj(function) is not None else 0

    @functools.wraps(function)
    def charged(*args: Any, **kwargs: Any) -> Any:
        value = args[value_position] if len(args) > value_position else None
        _charge(OPERATION_COST + _size(value))
        result = function(*args, **kwargs)
        _charge(_size(result))
        return result

    return charged


_ENVIRONMENT: Final = _build_environment()


class CompiledTemplate:
    """One compiled mapping template; `render` is safe to call concurrently."""

    __slots__ = ("_template", "source")

    def __init__(self, source: str, template: jinja2.Template) -> None:
        self.source = source
        self._template = template

    def render(self, context: Mapping[str, object]) -> str:
        """Render with `context` as the variables; raises TemplateRenderError with a user-facing message."""
        # Inside a mapping application the budget is shared by all its renders; alone, a render has its own.
        budget_token = _BUDGET.set(_BUDGET.get() or RenderBudget())
        pieces: list[str] = []
        length = 0
        try:
            for piece in self._template.generate(dict(context)):
                length += len(piece)
                if length > MAX_RENDERED_LENGTH:
                    raise TemplateRenderError(f"the rendered text exceeds {MAX_RENDERED_LENGTH} characters")
                pieces.append(piece)
                _charge(len(piece))
        except TemplateRenderError:
            raise
        except jinja2.UndefinedError as error:
            raise TemplateRenderError(f"{error.message or error}") from None
        except RenderBudgetExceeded as error:
            raise TemplateBudgetError(str(error)) from None
        except SecurityError as error:
            raise TemplateRenderError(f"refused by the sandbox: {error}") from None
        except RecursionError:
            raise TemplateRenderError("the template recursed too deeply") from None
        except Exception as error:  # any filter/operator error is a property of the template or its input
            raise TemplateRenderError(f"{type(error).__name__}: {error}") from None
        finally:
            _BUDGET.reset(budget_token)
        return "".join(pieces)

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.source!r})"


def compile_template(source: str) -> CompiledTemplate:
    """Parse and compile once; raises TemplateCompileError with the line and reason."""
    try:
        tree = _ENVIRONMENT.parse(source)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateCompileError(f"template syntax error on line {error.lineno}: {error.message}") from None
    for node_type, tag in _REFUSED_NODES.items():
        for found in tree.find_all(node_type):
            raise TemplateCompileError(f"'{tag}' is not allowed in mapping templates (line {found.lineno})")
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            raise TemplateCompileError(
                f"recursive loops are not allowed in mapping templates (line {loop.lineno})"
            )
        loop.iter = nodes.Filter(loop.iter, _LOOP_BUDGET_FILTER, [], [], None, None, lineno=loop.lineno)
    try:
        template = _ENVIRONMENT.from_string(tree)
    except jinja2.TemplateSyntaxError as error:  # e.g. an unknown filter is a compile-time error in Jinja
        raise TemplateCompileError(f"template error on line {error.lineno}: {error.message}") from None
    return CompiledTemplate(source, template)
