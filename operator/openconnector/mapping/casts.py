"""The casts of a Mapping (`cast: {path: "int,string"}`), mirroring OpenConnector's MappingService.

Each cast follows the PHP behaviour of `MappingService::handleCast`, with one deliberate difference: where
PHP silently turns nonsense into a value (`(int) "abc"` is 0, `(string) []` is "Array"), the cast fails
with a `CastFailure` naming the value, so a bad payload becomes a precise error instead of a wrong object.

`date` is the other divergence: PHP's `date($value)` formats the *current time* using the value as a
format string (a clock-dependent quirk nobody relies on); here it normalises a date/time value to
ISO 8601 / RFC 3339.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import html
import html.entities
import json
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

__all__ = [
    "CAST_NAMES",
    "DELETE",
    "Cast",
    "CastContext",
    "CastFailure",
    "describe_value",
    "lenient_b64decode",
    "parse_cast",
    "transliterate_ascii",
]


class CastFailure(Exception):
    """A cast could not convert its value; `message` is the user-facing text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Delete:
    """Sentinel type: the cast removed the key from the output."""

    _instance: _Delete | None = None

    def __new__(cls) -> _Delete:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETE"


DELETE: Final = _Delete()


@dataclass(frozen=True)
class CastContext:
    """What a cast may see besides its value: the output path it works on, and a lookup into the output."""

    key: str
    """The output path as written in the spec (e.g. `metadata.status`)."""
    lookup: Callable[[str], tuple[bool, object]]
    """Look up a dot path in the output being built: (found, value)."""


CastFunction = Callable[[object, CastContext], object]


@dataclass(frozen=True)
class Cast:
    """One parsed cast: `apply(value, context)` returns the new value, or `DELETE`."""

    spelling: str
    apply: CastFunction


# --------------------------------------------------------------------------- PHP compatibility helpers

# PHP 8 numeric strings: optional surrounding whitespace, a decimal number with optional exponent.
_PHP_WS = " \t\n\r\v\f"
_NUMERIC_RE: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER_RE: Final = re.compile(r"[+-]?\d+")


def describe_value(value: object, limit: int = 40) -> str:
    """A short JSON-ish rendering of a value for errors (truncated: payloads may hold personal data)."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _php_float_to_string(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}E{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def _to_php_string(value: object, target: str) -> str:
    """PHP's `(string)` conversion; arrays/objects cannot become text."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _php_float_to_string(value)
    raise CastFailure(f"cannot cast {describe_value(value)} to {target}")


def _parse_numeric(text: str) -> int | float | None:
    """The number a PHP numeric string denotes, or None when the string is not numeric."""
    stripped = text.strip(_PHP_WS)
    if _INTEGER_RE.fullmatch(stripped):
        return int(stripped)
    if _NUMERIC_RE.fullmatch(stripped):
        number = float(stripped)
        return number if math.isfinite(number) else None
    return None


def _leading_numeric(text: str) -> int | float:
    """PHP's lenient `(int)`/`(float)` on a string: the leading numeric prefix, else 0."""
    match = _NUMERIC_RE.match(text.lstrip(_PHP_WS))
    if match is None:
        return 0
    number = _parse_numeric(match.group(0))
    return 0 if number is None else number


def _php_empty(value: object) -> bool:
    """PHP's `empty()`: null, false, 0, 0.0, "", "0" and the empty array."""
    if value is None or value is False:
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == 0
    if isinstance(value, str):
        return value in ("", "0")
    if isinstance(value, list | dict):
        return len(value) == 0
    return False


def _php_loose_equals(value: object, text: str) -> bool:
    """PHP 8's `$value == $text` where `$text` is a string (the argument of a cast)."""
    if value is None:
        return text == ""
    if isinstance(value, bool):
        return value == (text not in ("", "0"))
    if isinstance(value, int | float):
        number = _parse_numeric(text)
        if number is not None:
            return float(value) == float(number)
        return _to_php_string(value, "string") == text
    if isinstance(value, str):
        left, right = _parse_numeric(value), _parse_numeric(text)
        if left is not None and right is not None:
            return float(left) == float(right)
        return value == text
    return False


def _all_leaves_empty(value: list[object] | dict[str, object]) -> bool:
    """OpenConnector's `areAllArrayKeysNull`: every (nested) leaf is PHP-empty."""
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        if isinstance(item, list | dict):
            if not _all_leaves_empty(item):
                return False
        elif not _php_empty(item):
            return False
    return True


# --------------------------------------------------------------------------- the casts


def _cast_string(value: object, _ctx: CastContext) -> object:
    return _to_php_string(value, "string")


def _truthy_php_bool(value: object) -> bool:
    # OpenConnector: (int) $value === 1 || strtolower($value) === 'true' || strtolower($value) === 'yes'.
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int | float):
        return math.isfinite(value) and int(value) == 1
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "yes"):
            return True
        return int(_leading_numeric(value)) == 1
    raise CastFailure(f"cannot cast {describe_value(value)} to boolean")


def _cast_bool(value: object, _ctx: CastContext) -> object:
    return _truthy_php_bool(value)


def _cast_nullable_bool(value: object, _ctx: CastContext) -> object:
    return None if value is None else _truthy_php_bool(value)


def _cast_int(value: object, _ctx: CastContext) -> object:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return math.trunc(value)
    if isinstance(value, str):
        number = _parse_numeric(value)
        if number is not None:
            return number if isinstance(number, int) else math.trunc(number)
    raise CastFailure(f"cannot cast {describe_value(value)} to integer")


def _cast_float(value: object, _ctx: CastContext) -> object:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str):
        number = _parse_numeric(value)
        if number is not None:
            return float(number)
    raise CastFailure(f"cannot cast {describe_value(value)} to float")


def _cast_array(value: object, _ctx: CastContext) -> object:
    if value is None:
        return []
    if isinstance(value, list | dict):
        return value
    return [value]


_DATE_ONLY_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def _format_datetime(moment: dt.datetime) -> str:
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _cast_date(value: object, _ctx: CastContext) -> object:
    failure = CastFailure(f"cannot cast {describe_value(value)} to date")
    if isinstance(value, bool) or value is None:
        raise failure
    if isinstance(value, str):
        text = value.strip()
        number = _parse_numeric(text)
        if number is None:
            if _DATE_ONLY_RE.fullmatch(text):
                try:
                    return dt.date.fromisoformat(text).isoformat()
                except ValueError:
                    raise failure from None
            try:
                return _format_datetime(dt.datetime.fromisoformat(text))
            except ValueError:
                pass
            try:
                return _format_datetime(email.utils.parsedate_to_datetime(text))
            except (TypeError, ValueError, IndexError):
                raise failure from None
        value = number
    if isinstance(value, int | float):
        try:
            return _format_datetime(dt.datetime.fromtimestamp(value, tz=dt.UTC))
        except (OverflowError, OSError, ValueError):
            raise failure from None
    raise failure


def _cast_url(value: object, _ctx: CastContext) -> object:
    # PHP urlencode: like quote_plus, but '~' is encoded too.
    return urllib.parse.quote_plus(_to_php_string(value, "url"), safe="").replace("~", "%7E")


def _decode_percent(value: object, target: str, plus_is_space: bool) -> str:
    text = _to_php_string(value, target)
    try:
        if plus_is_space:
            return urllib.parse.unquote_plus(text, errors="strict")
        return urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise CastFailure(
            f"cannot cast {describe_value(value)} to {target}: not UTF-8 once decoded"
        ) from None


def _cast_url_decode(value: object, _ctx: CastContext) -> object:
    return _decode_percent(value, "urlDecode", plus_is_space=True)


def _cast_rawurl(value: object, _ctx: CastContext) -> object:
    # PHP rawurlencode is RFC 3986: exactly Python's quote() with nothing marked safe.
    return urllib.parse.quote(_to_php_string(value, "rawurl"), safe="")


def _cast_rawurl_decode(value: object, _ctx: CastContext) -> object:
    return _decode_percent(value, "rawurlDecode", plus_is_space=False)


def _htmlentities(text: str) -> str:
    # PHP 8.1 htmlentities defaults: ENT_QUOTES | ENT_HTML401, so ' becomes &#039; and every character with
    # an HTML 4.01 named entity is named.
    parts: list[str] = []
    for char in text:
        if char == "'":
            parts.append("&#039;")
            continue
        name = html.entities.codepoint2name.get(ord(char))
        parts.append(f"&{name};" if name is not None else char)
    return "".join(parts)


def _cast_html(value: object, _ctx: CastContext) -> object:
    return _htmlentities(_to_php_string(value, "html"))


def _cast_html_decode(value: object, _ctx: CastContext) -> object:
    return html.unescape(_to_php_string(value, "htmlDecode"))


def _cast_base64(value: object, _ctx: CastContext) -> object:
    return base64.b64encode(_to_php_string(value, "base64").encode("utf-8")).decode("ascii")


_BASE64_NOISE_RE: Final = re.compile(r"[^A-Za-z0-9+/]")


def lenient_b64decode(text: str) -> bytes:
    """PHP's non-strict base64_decode: characters outside the alphabet are skipped, padding is optional."""
    cleaned = _BASE64_NOISE_RE.sub("", text)
    if len(cleaned) % 4 == 1:
        raise ValueError("truncated base64 input")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def _cast_base64_decode(value: object, _ctx: CastContext) -> object:
    try:
        return lenient_b64decode(_to_php_string(value, "base64Decode")).decode("utf-8")
    except (ValueError, binascii.Error):
        # UnicodeDecodeError is a ValueError: decoded bytes that are not text cannot live in JSON.
        raise CastFailure(
            f"cannot cast {describe_value(value)} to base64Decode: not base64 of UTF-8 text"
        ) from None


def _cast_json(value: object, _ctx: CastContext) -> object:
    # PHP json_encode defaults: compact, \uXXXX for non-ASCII, "/" escaped as "\/" (only strings hold "/").
    try:
        encoded = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
        return encoded.replace("/", "\\/")
    except (TypeError, ValueError):
        raise CastFailure(f"cannot cast {describe_value(value)} to json") from None


def _cast_json_to_array(value: object, _ctx: CastContext) -> object:
    if isinstance(value, list | dict):
        return value
    text = html.unescape(_to_php_string(value, "jsonToArray"))
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested ~1,000 deep
        raise CastFailure(f"cannot cast {describe_value(value)} to jsonToArray: not valid JSON") from None


# Letters NFKD cannot take apart, transliterated the way glibc's iconv ASCII//TRANSLIT does.
_TRANSLITERATIONS: Final[Mapping[str, str]] = {
    "ß": "ss",
    "ẞ": "SS",
    "æ": "ae",
    "Æ": "AE",
    "œ": "oe",
    "Œ": "OE",
    "ø": "o",
    "Ø": "O",
    "đ": "d",
    "Đ": "D",
    "ð": "d",
    "Ð": "D",
    "ł": "l",
    "Ł": "L",
    "þ": "th",
    "Þ": "TH",
    "ı": "i",
    "ħ": "h",
    "Ħ": "H",
    "€": "EUR",
    "‘": "'",
    "’": "'",
    "‚": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "–": "-",
    "—": "-",
    "…": "...",
    "«": "<<",
    "»": ">>",
    "\u00a0": " ",
}


def transliterate_ascii(text: str) -> str:
    """Like iconv('UTF-8', 'ASCII//TRANSLIT'): accents dropped, known letters spelled out, the rest '?'."""
    parts: list[str] = []
    for char in text:
        if ord(char) < 128:
            parts.append(char)
            continue
        replacement = _TRANSLITERATIONS.get(char)
        if replacement is not None:
            parts.append(replacement)
            continue
        decomposed = unicodedata.normalize("NFKD", char)
        ascii_part = "".join(c for c in decomposed if ord(c) < 128 and not unicodedata.combining(c))
        parts.append(ascii_part if ascii_part else "?")
    return "".join(parts)


def _cast_utf8(value: object, _ctx: CastContext) -> object:
    return transliterate_ascii(_to_php_string(value, "utf8"))


def _cast_null_string_to_null(value: object, _ctx: CastContext) -> object:
    return None if value == "null" else value


def _cast_coordinate_string_to_array(value: object, _ctx: CastContext) -> object:
    # OpenConnector: split on spaces into pairs; a single pair is returned unwrapped.
    halves = _to_php_string(value, "coordinateStringToArray").split(" ")
    points: list[list[str]] = []
    point: list[str] = []
    for half in halves:
        if len(point) > 1:
            points.append(point)
            point = []
        point.append(half)
    points.append(point)
    return points[0] if len(points) == 1 else points


def _cast_key_cant_be_value(value: object, ctx: CastContext) -> object:
    return DELETE if _php_loose_equals(value, ctx.key) else value


def _matches_emptiness_rule(value: object, argument: str) -> bool:
    # OpenConnector: $value == $arg || ($arg === '' && empty($value)) || ($arg === '' && $value === null),
    # and with an empty argument also an array whose leaves are all empty.
    if _php_loose_equals(value, argument):
        return True
    if argument == "":
        if _php_empty(value):
            return True
        if isinstance(value, list | dict) and _all_leaves_empty(value):
            return True
    return False


def _unset_if_value(argument: str) -> CastFunction:
    def apply(value: object, _ctx: CastContext) -> object:
        return DELETE if _matches_emptiness_rule(value, argument) else value

    return apply


def _set_null_if_value(argument: str) -> CastFunction:
    def apply(value: object, _ctx: CastContext) -> object:
        return None if _matches_emptiness_rule(value, argument) else value

    return apply


def _count_value(path: str) -> CastFunction:
    def apply(value: object, ctx: CastContext) -> object:
        found, counted = ctx.lookup(path)
        if found and isinstance(counted, list | dict):
            return len(counted)
        return value

    return apply


def _cast_money_string_to_int(value: object, _ctx: CastContext) -> object:
    digits = _to_php_string(value, "moneyStringToInt").replace(".", "").replace(",", "")
    number = _parse_numeric(digits)
    if not isinstance(number, int):
        raise CastFailure(f"cannot cast {describe_value(value)} to moneyStringToInt")
    return number


_CENT: Final = Decimal("0.01")


def _cast_int_to_money_string(value: object, _ctx: CastContext) -> object:
    # PHP: number_format($value / 100, 2, ',', '.'), rounding half away from zero, never "-0,00".
    number: int | float | None
    if isinstance(value, bool) or value is None:
        number = None
    elif isinstance(value, int | float):
        number = value if math.isfinite(value) else None
    elif isinstance(value, str):
        number = _parse_numeric(value)
    else:
        number = None
    if number is None:
        raise CastFailure(f"cannot cast {describe_value(value)} to intToMoneyString")
    try:
        amount = (Decimal(repr(number)) / 100).quantize(_CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise CastFailure(f"cannot cast {describe_value(value)} to intToMoneyString") from None
    if amount == 0:
        amount = abs(amount)
    whole, _, cents = f"{abs(amount):.2f}".partition(".")
    grouped = f"{int(whole):,}".replace(",", ".")
    return f"{'-' if amount < 0 else ''}{grouped},{cents}"


_SIMPLE_CASTS: Final[Mapping[str, CastFunction]] = {
    "string": _cast_string,
    "bool": _cast_bool,
    "boolean": _cast_bool,
    "?bool": _cast_nullable_bool,
    "?boolean": _cast_nullable_bool,
    "int": _cast_int,
    "integer": _cast_int,
    "float": _cast_float,
    "array": _cast_array,
    "date": _cast_date,
    "url": _cast_url,
    "urlDecode": _cast_url_decode,
    "rawurl": _cast_rawurl,
    "rawurlDecode": _cast_rawurl_decode,
    "html": _cast_html,
    "htmlDecode": _cast_html_decode,
    "base64": _cast_base64,
    "base64Decode": _cast_base64_decode,
    "json": _cast_json,
    "jsonToArray": _cast_json_to_array,
    "utf8": _cast_utf8,
    "nullStringToNull": _cast_null_string_to_null,
    "coordinateStringToArray": _cast_coordinate_string_to_array,
    "keyCantBeValue": _cast_key_cant_be_value,
    "moneyStringToInt": _cast_money_string_to_int,
    "intToMoneyString": _cast_int_to_money_string,
}

CAST_NAMES: Final[tuple[str, ...]] = (
    *_SIMPLE_CASTS,
    "unsetIfValue==X",
    "setNullIfValue==X",
    "countValue:path",
)


def parse_cast(spelling: str) -> Cast:
    """Parse one cast name (`int`, `unsetIfValue==none`, `countValue:items`); ValueError names the problem."""
    if spelling.startswith("unsetIfValue=="):
        return Cast(spelling, _unset_if_value(spelling[len("unsetIfValue==") :]))
    if spelling.startswith("setNullIfValue=="):
        return Cast(spelling, _set_null_if_value(spelling[len("setNullIfValue==") :]))
    if spelling.startswith("countValue:"):
        path = spelling[len("countValue:") :]
        if not path or any(segment == "" for segment in path.split(".")):
            raise ValueError(
                f"countValue needs a dot path to count, e.g. countValue:items (got {spelling!r})"
            )
        return Cast(spelling, _count_value(path))
    function = _SIMPLE_CASTS.get(spelling)
    if function is None:
        raise ValueError(f"unknown cast {spelling!r}; known casts: {', '.join(CAST_NAMES)}")
    return Cast(spelling, function)
