"""Strict CloudEvents 1.0.2 codec for the HTTP protocol binding and the JSON event format.

Input parsing is our own code: the `cloudevents` SDK invents missing ids and times, accepts 0.3,
lets `ce-datacontenttype` override Content-Type and decodes invalid UTF-8 escapes. Output is our own
small serializer too: it keeps `time` as the original RFC 3339 string and encodes header values
exactly as the binding prescribes, with no SDK object model in the hot path.

Every parse reports *all* problems it finds, each naming the attribute as the sender wrote it
(`ce-id` in binary mode, `id` in a JSON body, `content-type` for the binary datacontenttype).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import enum
import functools
import ipaddress
import json
import re
import sys
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar, cast
from urllib.parse import quote, unquote_to_bytes

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "BATCH_CONTENT_TYPE",
    "CORE_ATTRIBUTES",
    "EXTENSION_NAME_SOFT_LIMIT",
    "INT32_MAX",
    "INT32_MIN",
    "STRUCTURED_CONTENT_TYPE",
    "AttributeValue",
    "CloudEvent",
    "CloudEventError",
    "ContentMode",
    "ParseResult",
    "Problem",
    "decode_header_value",
    "encode_header_value",
    "is_absolute_uri",
    "is_json_content_type",
    "is_rfc3339",
    "is_uri_reference",
    "parse_http",
    "parse_structured",
    "to_batch",
    "to_binary",
    "to_structured",
    "validate_event",
]

AttributeValue = str | int | bool

SPECVERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# CloudEvents says extension names SHOULD NOT exceed 20 characters; the codec accepts longer
# names (only MUSTs refuse here) and `check_nlgov` reports them, so strict mode can refuse.
EXTENSION_NAME_SOFT_LIMIT = 20

REQUIRED_ATTRIBUTES = ("id", "source", "specversion", "type")
OPTIONAL_ATTRIBUTES = ("datacontenttype", "dataschema", "subject", "time")
CORE_ATTRIBUTES = frozenset(REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES)

STATUS_BAD_REQUEST = 400
STATUS_METHOD_NOT_ALLOWED = 405
STATUS_UNSUPPORTED_MEDIA_TYPE = 415


class ContentMode(enum.StrEnum):
    """How the event travelled in the HTTP message."""

    BINARY = "binary"
    STRUCTURED = "structured"
    BATCH = "batch"


_K = TypeVar("_K")
_V = TypeVar("_V")


def keep_bounded(cache: dict[_K, _V], key: _K, value: _V, entries: int) -> _V:
    """``value``, kept in ``cache`` under ``key``; a cache holding ``entries`` is emptied first (what
    senders repeat stays cheap, and a sender who varies everything cannot make it grow)."""
    if len(cache) >= entries:
        cache.clear()
    cache[key] = value
    return value


# The modes as module constants: an attribute of an Enum class goes through its metaclass's __getattr__ hook.
_BINARY: Final = ContentMode.BINARY
_STRUCTURED: Final = ContentMode.STRUCTURED
_BATCH: Final = ContentMode.BATCH


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One CloudEvent: context attributes plus data.

    `attributes` holds every context attribute, required, optional and extensions, by its
    CloudEvents name; `time` stays the original RFC 3339 string. `data` is `None` (no data),
    `bytes` (binary data: `data_base64`, or a binary-mode body whose content type is not JSON), or
    the decoded JSON value (a `str` when a non-JSON datacontenttype travelled as a JSON string).
    `data_null` marks an explicit JSON null (`"data": null`, or a binary JSON body `null`): `data` is
    then `None` too, but the event is sent on with `"data": null`, since the JSON format tells an
    explicit null from an absent member. Instances are treated as immutable; do not mutate `attributes`.
    """

    attributes: dict[str, AttributeValue]
    data: object | None = None
    data_null: bool = False

    @property
    def id(self) -> str:
        value = self.attributes["id"]  # inline, not _as_str: read several times per delivery
        return value if type(value) is str else str(value)

    @property
    def type(self) -> str:
        value = self.attributes["type"]  # inline, not _as_str: read several times per delivery
        return value if type(value) is str else str(value)

    @property
    def source(self) -> str:
        value = self.attributes["source"]  # inline, not _as_str: read several times per delivery
        return value if type(value) is str else str(value)

    @property
    def specversion(self) -> str:
        value = self.attributes["specversion"]  # inline, not _as_str: read several times per delivery
        return value if type(value) is str else str(value)

    @property
    def subject(self) -> str | None:
        value = self.attributes.get("subject")
        return value if value is None or type(value) is str else str(value)

    @property
    def time(self) -> str | None:
        value = self.attributes.get("time")
        return value if value is None or type(value) is str else str(value)

    @property
    def datacontenttype(self) -> str | None:
        value = self.attributes.get("datacontenttype")
        return value if value is None or type(value) is str else str(value)

    @property
    def dataschema(self) -> str | None:
        value = self.attributes.get("dataschema")
        return value if value is None or type(value) is str else str(value)

    @property
    def extensions(self) -> dict[str, AttributeValue]:
        return {k: v for k, v in self.attributes.items() if k not in CORE_ATTRIBUTES}

    def get(self, name: str) -> AttributeValue | None:
        return self.attributes.get(name)

    def with_attributes(self, **changes: AttributeValue | None) -> CloudEvent:
        """A copy with attributes set (or removed, for `None`); data is shared."""
        attributes = dict(self.attributes)
        for name, value in changes.items():
            if value is None:
                attributes.pop(name, None)
            else:
                attributes[name] = value
        return CloudEvent(attributes, self.data, self.data_null)


# CloudEvent(attributes, data, data_null) without the frozen dataclass's __init__ (an object.__setattr__ call
# per field through a global look-up): the slots' own setters, for the parsers' one event per request.
_new_cloud_event = object.__new__
_set_attributes = vars(CloudEvent)["attributes"].__set__
_set_data = vars(CloudEvent)["data"].__set__
_set_data_null = vars(CloudEvent)["data_null"].__set__


def _cloud_event(attributes: dict[str, AttributeValue], data: object | None, data_null: bool) -> CloudEvent:
    """``CloudEvent(attributes, data, data_null)``, built faster (same fields, same object)."""
    event: CloudEvent = _new_cloud_event(CloudEvent)
    _set_attributes(event, attributes)
    _set_data(event, data)
    _set_data_null(event, data_null)
    return event


def _as_str(value: AttributeValue) -> str:
    return value if isinstance(value, str) else str(value)


def _opt_str(value: AttributeValue | None) -> str | None:
    return value if value is None or isinstance(value, str) else str(value)


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason an event (or a request) is not acceptable.

    `detail` is the complete human message, starting with the attribute as the sender wrote it,
    e.g. `ce-id: required attribute missing`. `index` is the position in a batch, else None.
    `status` is the HTTP status this problem alone would earn (400, 405 or 415).
    """

    attribute: str | None
    detail: str
    status: int = STATUS_BAD_REQUEST
    index: int | None = None

    def __str__(self) -> str:
        return self.detail if self.index is None else f"event[{self.index}]: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "attribute": self.attribute,
            "detail": self.detail,
            "status": self.status,
        }


# A hostile batch of 1 MiB of `{}` holds ~350,000 invalid events: checking stops after this many problems,
# so neither the work nor the answer grows with the batch.
MAX_PROBLEMS: Final = 100


class CloudEventError(ValueError):
    """The request or event is not a valid CloudEvent; `problems` lists every reason found."""

    def __init__(self, problems: Iterable[Problem], *, complete: bool | None = None) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        # False when checking stopped early (MAX_PROBLEMS): there may be more than those listed.
        self.complete = len(self.problems) < MAX_PROBLEMS if complete is None else complete
        listed = "; ".join(str(p) for p in self.problems[:MAX_PROBLEMS])
        super().__init__(listed or "invalid CloudEvent")

    @property
    def status(self) -> int:
        """The HTTP status for the whole request: 415 beats 405 beats 400."""
        statuses = {p.status for p in self.problems}
        for status in (STATUS_UNSUPPORTED_MEDIA_TYPE, STATUS_METHOD_NOT_ALLOWED):
            if status in statuses:
                return status
        return max(statuses, default=STATUS_BAD_REQUEST)


@dataclass(frozen=True, slots=True)
class ParseResult:
    mode: ContentMode
    events: tuple[CloudEvent, ...] = field(default_factory=tuple)


_set_mode = vars(ParseResult)["mode"].__set__
_set_events = vars(ParseResult)["events"].__set__


def _parse_result(mode: ContentMode, events: tuple[CloudEvent, ...]) -> ParseResult:
    """``ParseResult(mode, events)``, built as :func:`_cloud_event` builds an event."""
    result: ParseResult = _new_cloud_event(ParseResult)
    _set_mode(result, mode)
    _set_events(result, events)
    return result


# --- value grammars -----------------------------------------------------------------------------

_NAME_RE = re.compile(r"[a-z0-9]+")

# CloudEvents String: no C0/C1 controls, no noncharacters, no unpaired surrogates.
_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
)
_BAD_STRING_CHAR_RE = re.compile(f"[\x00-\x1f\x7f-\x9f\ud800-\udfff{_NONCHARACTERS}]")

# RFC 3339 date-time in two parts: the date and time of day, 19 characters in fixed places
# (YYYY-MM-DDTHH:MM:SS), and what follows (fraction, then Z or an offset). Field ranges in the pattern;
# only days 29-31 need a calendar look-up afterwards.
_RFC3339_HEAD_RE = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)"
)
_RFC3339_HEAD_LENGTH: Final = 19
_RFC3339_TAIL_RE = re.compile(r"(?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# RFC 9110 §5.6.2 tchar and §5.6.4 quoted-string (qdtext / quoted-pair), as character sets.
_TCHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_OWS: Final = " \t"


def _is_qdtext(char: str) -> bool:
    code = ord(char)
    return char == "\t" or (0x20 <= code <= 0x7E and char not in '"\\') or 0x80 <= code <= 0xFF


def _is_quoted_pair_char(char: str) -> bool:
    code = ord(char)
    return char == "\t" or 0x20 <= code <= 0x7E or 0x80 <= code <= 0xFF


def _token_end(text: str, position: int) -> int:
    end = position
    while end < len(text) and text[end] in _TCHARS:
        end += 1
    return end


def _quoted_end(text: str, position: int) -> int:
    """The index after the quoted-string starting at ``position``, or -1 when it is malformed."""
    index = position + 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return index + 1
        if char == "\\":
            if index + 1 >= len(text) or not _is_quoted_pair_char(text[index + 1]):
                return -1
            index += 2
        elif _is_qdtext(char):
            index += 1
        else:
            return -1
    return -1


def parse_media_type(value: str) -> tuple[str, dict[str, str]] | None:
    """RFC 9110 §8.3.1 media type: ``type "/" subtype *( OWS ";" OWS [ parameter ] )``, or None.

    A single left-to-right scan (a regex with nested optional whitespace backtracks exponentially on
    ``a/b;   ;   ;…@``). Returns the lower-cased essence and the parameters (names lower-cased, quoted
    values unescaped; a repeated name keeps its first value).
    """
    slash = _token_end(value, 0)
    if slash == 0 or slash >= len(value) or value[slash] != "/":
        return None
    end = _token_end(value, slash + 1)
    if end == slash + 1:
        return None
    essence = value[:end].lower()
    params: dict[str, str] = {}
    position = end
    length = len(value)
    while position < length:
        while position < length and value[position] in _OWS:
            position += 1
        if position == length or value[position] != ";":
            return None
        position += 1
        while position < length and value[position] in _OWS:
            position += 1
        if position == length or value[position] == ";":
            continue  # an empty parameter is allowed
        name_end = _token_end(value, position)
        if name_end == position or name_end >= length or value[name_end] != "=":
            return None
        name = value[position:name_end].lower()
        start = name_end + 1
        if start < length and value[start] == '"':
            value_end = _quoted_end(value, start)
            if value_end < 0:
                return None
            parameter = _unquote_string(value[start:value_end])
        else:
            value_end = _token_end(value, start)
            if value_end == start:
                return None
            parameter = value[start:value_end]
        params.setdefault(name, parameter)
        position = value_end
    return essence, params


# RFC 3986: split per Appendix B, then check each component against its ABNF.
_U = r"A-Za-z0-9\-._~"
_S = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_URI_SPLIT_RE = re.compile(r"(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.DOTALL)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_PATH_RE = re.compile(rf"(?:[{_U}{_S}:@/]|{_PCT})*")
_QUERY_RE = re.compile(rf"(?:[{_U}{_S}:@/?]|{_PCT})*")
_AUTHORITY_RE = re.compile(rf"(?:(?:[{_U}{_S}:]|{_PCT})*@)?(\[[^\]]*\]|(?:[{_U}{_S}]|{_PCT})*)(?::[0-9]*)?")
_IPVFUTURE_RE = re.compile(rf"[vV][0-9A-Fa-f]+\.[{_U}{_S}:]+")


@functools.lru_cache(maxsize=4096)
def is_uri_reference(value: str) -> bool:
    """RFC 3986 §4.1 URI-reference (ASCII only; IRIs must be percent-encoded).

    Cached: sources and schemas repeat across events from the same producer.
    """
    match = _URI_SPLIT_RE.fullmatch(value)
    if match is None:  # pragma: no cover - the split pattern matches every string
        return False
    scheme, authority, path, query, fragment = match.groups()
    if scheme is not None and _SCHEME_RE.fullmatch(scheme) is None:
        return False
    if authority is not None:
        auth = _AUTHORITY_RE.fullmatch(authority)
        if auth is None:
            return False
        host = auth.group(1)
        if host.startswith("[") and not _is_ip_literal(host[1:-1]):
            return False
    elif scheme is None and path.startswith(":"):
        return False  # relative-path: the first segment must not hold a colon
    if _PATH_RE.fullmatch(path) is None:
        return False
    if query is not None and _QUERY_RE.fullmatch(query) is None:
        return False
    return fragment is None or _QUERY_RE.fullmatch(fragment) is not None


@functools.lru_cache(maxsize=1024)
def is_absolute_uri(value: str) -> bool:
    """RFC 3986 §4.3 absolute-URI: a scheme and no fragment (the CloudEvents `URI` type)."""
    match = _URI_SPLIT_RE.fullmatch(value)
    return (
        match is not None
        and match.group(1) is not None
        and match.group(5) is None
        and is_uri_reference(value)
    )


def _is_ip_literal(inner: str) -> bool:
    if _IPVFUTURE_RE.fullmatch(inner):
        return True
    if "%" in inner:  # zone ids are not part of RFC 3986
        return False
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        return False
    return True


# Verdicts on the two parts of a date-time, kept: events of a sender share the date and time of day within
# a second, and the few fraction-and-offset texts of one precision (at most _CACHED_TAIL_LENGTH characters
# kept), so most events cost two look-ups instead of a match. Bounded: emptied when full.
_RFC3339_HEADS: dict[str, bool] = {}
_RFC3339_TAILS: dict[str, bool] = {}
_CACHED_DATE_TIME_PARTS: Final = 4096
_CACHED_TAIL_LENGTH: Final = 16


def is_rfc3339(value: str) -> bool:
    """RFC 3339 §5.6 date-time, with calendar checks (leap years; second 60 for leap seconds)."""
    head = value[:_RFC3339_HEAD_LENGTH]
    verdict = _RFC3339_HEADS.get(head)
    if verdict is None:
        verdict = _rfc3339_head(head)
    if not verdict:
        return False
    tail = value[_RFC3339_HEAD_LENGTH:]
    verdict = _RFC3339_TAILS.get(tail)
    if verdict is None:
        verdict = _RFC3339_TAIL_RE.fullmatch(tail) is not None
        if len(tail) <= _CACHED_TAIL_LENGTH:
            keep_bounded(_RFC3339_TAILS, tail, verdict, _CACHED_DATE_TIME_PARTS)
    return verdict


def _rfc3339_head(head: str) -> bool:
    """Whether ``head`` (a value's first 19 characters) is an RFC 3339 date and time of day (kept)."""
    verdict = _RFC3339_HEAD_RE.fullmatch(head) is not None and _day_in_month(head)
    return keep_bounded(_RFC3339_HEADS, head, verdict, _CACHED_DATE_TIME_PARTS)


def _day_in_month(date: str) -> bool:
    # The pattern fixes the date's places (YYYY-MM-DD): two digits compare as text as they do as numbers.
    if date[8:10] <= "28":
        return True
    day, year, month = int(date[8:10]), int(date[:4]), int(date[5:7])
    if month == 2 and calendar.isleap(year):
        return day <= 29
    return day <= _DAYS_IN_MONTH[month]


def is_media_type(value: str) -> bool:
    """RFC 2046 / RFC 9110 media type with optional parameters."""
    return _media_type(value) is not None


_CACHED_MEDIA_TYPE_LENGTH = 256


@functools.lru_cache(maxsize=1024)
def _cached_media_type(value: str) -> tuple[str, dict[str, str]] | None:
    return parse_media_type(value)


def _media_type(value: str) -> tuple[str, dict[str, str]] | None:
    """:func:`parse_media_type`, cached for short values: senders repeat the same few Content-Types, and
    the scan is per character. The parameters dict is shared: read it, never change it."""
    if len(value) <= _CACHED_MEDIA_TYPE_LENGTH:
        return _cached_media_type(value)
    return parse_media_type(value)


def _essence(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


# Content-Type value as sent -> _content_type_facts(value). Senders repeat the same few: one dict look-up
# per request instead of a strip, an essence, a media-type parse and a JSON check. Values up to
# _CACHED_MEDIA_TYPE_LENGTH only, and emptied when full, so it stays small whatever is sent.
_CONTENT_TYPES: dict[str, tuple[str, str, bool, bool, bool]] = {}
_CACHED_CONTENT_TYPES: Final = 256


def _content_type_facts(raw: str) -> tuple[str, str, bool, bool, bool]:
    """``raw`` (a Content-Type value) stripped; its essence (lower-case); whether binary mode's plain path
    takes it as datacontenttype as it is (printable ASCII and a media type); whether it is JSON (also of
    ``raw`` itself: the JSON check strips); whether its charset, if any, is UTF-8 (the JSON formats')."""
    content_type = raw.strip()
    facts = (
        content_type,
        _essence(content_type) if content_type else "",
        content_type.isascii() and content_type.isprintable() and _media_type(content_type) is not None,
        is_json_content_type(content_type),
        _bad_format_charset(content_type) is None,
    )
    if len(raw) <= _CACHED_MEDIA_TYPE_LENGTH:
        keep_bounded(_CONTENT_TYPES, raw, facts, _CACHED_CONTENT_TYPES)
    return facts


def is_json_content_type(content_type: str | None) -> bool:
    """True for application/json, text/json and any `+json` structured syntax suffix."""
    if content_type is None:
        return False
    if len(content_type) <= _CACHED_MEDIA_TYPE_LENGTH:
        return _cached_is_json(content_type)  # senders repeat the same few Content-Types
    return _is_json_essence(_essence(content_type))


@functools.lru_cache(maxsize=256)
def _cached_is_json(content_type: str) -> bool:
    return _is_json_essence(_essence(content_type))


def _is_json_essence(essence: str) -> bool:
    return essence == JSON_CONTENT_TYPE or essence.endswith("+json") or essence == "text/json"


def _media_parameters(content_type: str) -> dict[str, str]:
    parsed = _media_type(content_type)
    if parsed is not None:
        return parsed[1]
    # Not a valid media type (only the essence was checked by the caller): read name=value pairs leniently.
    params: dict[str, str] = {}
    for part in content_type.split(";")[1:]:
        name, equals, raw = part.strip().partition("=")
        if equals:
            params.setdefault(name.strip().lower(), raw.strip().strip('"'))
    return params


def _bad_string_char(value: str) -> str | None:
    """The first character a CloudEvents String must not hold, or None."""
    if value.isascii() and value.isprintable():
        return None  # fast path: printable ASCII is always fine
    bad = _BAD_STRING_CHAR_RE.search(value)
    return None if bad is None else bad.group()


def _show(value: object, limit: int = 80) -> str:
    """A value safe to echo in a message: JSON-quoted, ASCII-escaped, truncated."""
    text = value if isinstance(value, str) else repr(value)
    suffix = "…" if len(text) > limit else ""
    return json.dumps(text[:limit]) + suffix


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --- HTTP header values -------------------------------------------------------------------------

# Everything in U+0021..U+007E except `"` and `%` stays literal; the rest is UTF-8 percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_HEADER_NEEDS_ENCODING_RE = re.compile(r"[^\x21\x23\x24\x26-\x7e]")
_BAD_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_QUOTED_STRING_RE = re.compile(r'"((?:[\t !#-\[\]-~\x80-\U0010ffff]|\\[\t -~\x80-\U0010ffff])*)"', re.DOTALL)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)


def encode_header_value(value: AttributeValue) -> str:
    """Canonical string form of an attribute value, percent-encoded for an HTTP header."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if _HEADER_NEEDS_ENCODING_RE.search(value) is None:
        return value
    return quote(value, safe=_HEADER_SAFE, encoding="utf-8", errors="strict")


def _unquote_string(raw: str) -> str:
    return _QUOTED_PAIR_RE.sub(r"\1", raw[1:-1])


def decode_header_value(raw: str) -> str:
    """Quoted-string unescape, then one round of percent-decoding; raises ValueError if malformed."""
    value = raw
    if value.startswith('"'):
        match = _QUOTED_STRING_RE.fullmatch(value)
        if match is None:
            raise ValueError("malformed quoted-string")
        value = _QUOTED_PAIR_RE.sub(r"\1", match.group(1))
    if "%" not in value:
        return value
    if _BAD_PERCENT_RE.search(value):
        raise ValueError("malformed percent-encoding (a % must be followed by two hex digits)")
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeError:
        raise ValueError("percent-encoded bytes are not valid UTF-8") from None


# --- attribute validation -----------------------------------------------------------------------

Label = Callable[[str], str]


def _plain_label(name: str) -> str:
    return name


def _binary_label(name: str) -> str:
    return "content-type" if name == "datacontenttype" else "ce-" + name


def _check_attributes(
    attributes: Mapping[str, object],
    label: Label,
    index: int | None,
    problems: list[Problem],
    skip: Container[str] = (),
) -> None:
    """Append a Problem for every CloudEvents core rule the attributes break.

    `skip` names attributes already reported by the caller (e.g. an undecodable header), so they
    are neither checked again nor reported as missing.
    """

    if not skip and _attributes_pass(attributes):
        return  # the common case: nothing to report, found in one cheaper pass

    def add(name: str, detail: str) -> None:
        problems.append(Problem(label(name), f"{label(name)}: {detail}", STATUS_BAD_REQUEST, index))

    for name in REQUIRED_ATTRIBUTES:
        if name not in attributes and name not in skip:
            add(name, "required attribute missing")

    for name, value in attributes.items():
        if len(problems) >= MAX_PROBLEMS:
            return  # 100,000 bad extension attributes must not cost 100,000 problems
        if name in skip:
            continue
        if name not in CORE_ATTRIBUTES and _NAME_RE.fullmatch(name) is None:
            problems.append(
                Problem(label(name), f"extension name {_show(name)}: only [a-z0-9] allowed", index=index)
            )
            continue
        if name == "data":
            problems.append(Problem(label(name), 'extension name "data": reserved', index=index))
            continue
        if isinstance(value, str):
            # printable ASCII is always fine: _bad_string_char's fast path, inline (one call less each)
            bad = None if value.isascii() and value.isprintable() else _bad_string_char(value)
            if bad is not None:
                add(name, f"forbidden character U+{ord(bad):04X} (control, noncharacter or surrogate)")
                continue
            checker = _VALUE_CHECKS.get(name)
            if checker is _check_non_empty:  # id, type, subject: inline, the most common check
                if not value:
                    add(name, "must be a non-empty string")
            elif checker is not None:
                detail = checker(value)
                if detail is not None:
                    add(name, detail)
        elif name in CORE_ATTRIBUTES:
            add(name, f"must be a string, got {_json_type(value)}")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not INT32_MIN <= value <= INT32_MAX:
                add(name, f"integer {value} outside the signed 32-bit range")
        elif isinstance(value, float):
            add(name, f"{value!r} is not an integer (the Integer type holds whole numbers)")
        else:
            add(name, f"must be a string, integer or boolean, got {_json_type(value)}")


def _attributes_pass(attributes: Mapping[str, object]) -> bool:
    """True only when :func:`_check_attributes` (without ``skip``) reports nothing for ``attributes``;
    False when it may report something (it then runs in full and says what). One pass with no labels,
    no problem list and no per-attribute bookkeeping: most events are valid."""
    # source is checked non-empty here, so _VALUE_PASSES can take it to is_uri_reference directly
    if not ("id" in attributes and attributes.get("source") and "type" in attributes):
        return False
    if attributes.get("specversion") != SPECVERSION:
        return False
    for name, value in attributes.items():
        kind = type(value)
        if kind is str:
            if not (value.isascii() and value.isprintable()):  # type: ignore[attr-defined]
                return False  # maybe a forbidden character: the full check looks
            passes = _VALUE_PASSES.get(name)
            if passes is None:
                if _NAME_RE.fullmatch(name) is None or name == "data":
                    return False
            elif not passes(value):  # type: ignore[arg-type]
                return False
        elif kind is bool or kind is int:
            if name in CORE_ATTRIBUTES or _NAME_RE.fullmatch(name) is None or name == "data":
                return False
            if kind is int and not INT32_MIN <= value <= INT32_MAX:  # type: ignore[operator]
                return False
        else:
            return False  # other types are refused (or subclasses): the full check words it
    return True


# What _printable_strings_pass checks before its loop (datacontenttype: its caller).
_CHECKED_FIRST: Final = frozenset({"id", "source", "specversion", "type", "datacontenttype"})

# Attribute names in order -> the value checks the others need, (name, check) each; None when a name is
# not a valid attribute name. A sender repeats the same names (the same str objects, from the header-name
# cache or orjson's key cache), so this is one tuple and one look-up instead of a loop over every name.
# Bounded like the other caches: only name sets up to _CACHED_NAME_SET_LENGTH characters, emptied when full.
_VALUE_CHECKS_OF: dict[tuple[str, ...], tuple[tuple[str, Callable[[str], object]], ...] | None] = {}
_CACHED_NAME_SETS: Final = 256
_CACHED_NAME_SET_LENGTH: Final = 512


def _value_checks_of(names: tuple[str, ...]) -> tuple[tuple[str, Callable[[str], object]], ...] | None:
    checks: list[tuple[str, Callable[[str], object]]] = []
    verdict: tuple[tuple[str, Callable[[str], object]], ...] | None = None
    for name in names:
        if name in _CHECKED_FIRST:
            continue
        passes = _VALUE_PASSES.get(name)
        if passes is not None:
            checks.append((name, passes))
        elif _NAME_RE.fullmatch(name) is None or name == "data":
            break
    else:
        verdict = tuple(checks)
    if sum(map(len, names)) <= _CACHED_NAME_SET_LENGTH:
        keep_bounded(_VALUE_CHECKS_OF, names, verdict, _CACHED_NAME_SETS)
    return verdict


def _printable_strings_pass(attributes: Mapping[str, str]) -> bool:
    """:func:`_attributes_pass` for attributes whose values are all strings of printable ASCII and whose
    ``datacontenttype``, if any, is known to be a media type (binary mode's headers, checked together by
    the caller): the required attributes without a loop, then only the others' value checks."""
    try:
        source = attributes["source"]
        # id and type must be non-empty as well as present
        if not (attributes["id"] and attributes["type"] and source):
            return False
        if attributes["specversion"] != SPECVERSION:
            return False
    except KeyError:
        return False
    if not is_uri_reference(source):
        return False
    names = tuple(attributes)
    try:
        checks = _VALUE_CHECKS_OF[names]
    except KeyError:
        checks = _value_checks_of(names)
    if checks is None:
        return False  # a name that is not an attribute name
    for name, passes in checks:  # noqa: SIM110 - a loop, not all(): no generator per event
        if not passes(attributes[name]):
            return False
    return True


def _check_specversion(value: str) -> str | None:
    if value == SPECVERSION:
        return None
    if not value:
        return "must be a non-empty string"
    return f'unsupported specversion {_show(value)}; only "1.0" is accepted'


def _check_non_empty(value: str) -> str | None:
    return None if value else "must be a non-empty string"


def _check_source(value: str) -> str | None:
    if not value:
        return "must be a non-empty string"
    return None if is_uri_reference(value) else f"must be a URI-reference (RFC 3986), got {_show(value)}"


def _check_dataschema(value: str) -> str | None:
    if is_absolute_uri(value):
        return None
    return f"must be an absolute URI (RFC 3986 §4.3: a scheme, no fragment), got {_show(value)}"


def _check_time(value: str) -> str | None:
    if is_rfc3339(value):
        return None
    return f"must be an RFC 3339 timestamp like 2024-06-15T10:30:00Z, got {_show(value)}"


def _check_datacontenttype(value: str) -> str | None:
    if is_media_type(value):
        return None
    return f"must be a media type (RFC 2046) like application/json, got {_show(value)}"


def _check_dataref(value: str) -> str | None:
    if value and is_uri_reference(value):
        return None
    return f"must be a non-empty URI-reference (RFC 3986), got {_show(value)}"


_VALUE_CHECKS: dict[str, Callable[[str], str | None]] = {
    "specversion": _check_specversion,
    "id": _check_non_empty,
    "type": _check_non_empty,
    "subject": _check_non_empty,
    "source": _check_source,
    "dataschema": _check_dataschema,
    "time": _check_time,
    "datacontenttype": _check_datacontenttype,
    # documented CloudEvents extension (and NL GOV attribute) with a defined type
    "dataref": _check_dataref,
}


# _VALUE_CHECKS as predicates (truthy: the check finds nothing), each a single call, mostly into C or a
# cache: the one-pass check's view. source: for a non-empty value (the one-pass check tests that first).
_VALUE_PASSES: dict[str, Callable[[str], object]] = {
    "specversion": SPECVERSION.__eq__,
    "id": bool,
    "type": bool,
    "subject": bool,
    "source": is_uri_reference,
    "dataschema": is_absolute_uri,
    "time": is_rfc3339,
    "datacontenttype": _media_type,
    "dataref": lambda value: _check_dataref(value) is None,
}


def _check_data_shape(event: CloudEvent, label: Label, index: int | None, problems: list[Problem]) -> None:
    data = event.data
    if data is None or isinstance(data, bytes | str):
        return
    content_type = event.datacontenttype
    if content_type is not None and not is_json_content_type(content_type):
        problems.append(
            Problem(
                "data",
                f"data: must be a string or bytes when datacontenttype {_show(content_type)} is not JSON, "
                f"got {_json_type(data)}",
                index=index,
            )
        )


def validate_event(event: CloudEvent, *, index: int | None = None) -> list[Problem]:
    """Every CloudEvents 1.0.2 core rule `event` breaks (empty list when valid)."""
    problems: list[Problem] = []
    _check_attributes(event.attributes, _plain_label, index, problems)
    _check_data_shape(event, _plain_label, index, problems)
    return problems


# --- parsing ------------------------------------------------------------------------------------


def parse_http(method: str, headers: Mapping[str, str], body: bytes) -> ParseResult:
    """Decode an HTTP request into CloudEvents, strictly; raises CloudEventError listing every problem.

    `headers` may be any mapping (case-insensitive or not) or multidict; duplicates are seen
    through `items()`. The mode follows Content-Type: application/cloudevents+json is structured,
    application/cloudevents-batch+json is batch, another application/cloudevents* format is 415,
    anything else is binary.
    """
    if method != "POST" and method.upper() != "POST":  # (aiohttp's method is upper-case already)
        raise CloudEventError(
            [
                Problem(
                    "method",
                    f"method: CloudEvents are delivered with POST, got {_show(method)}",
                    STATUS_METHOD_NOT_ALLOWED,
                )
            ]
        )
    content_types: list[str]
    ce_headers: list[tuple[str, str]] | None = None
    if isinstance(headers, _MULTIDICTS):
        # aiohttp's headers: a C look-up finds every Content-Type (multidict matches names by str.lower,
        # as the loop below does); the ce- headers are collected only for binary mode, which needs them.
        content_types = headers.getall("content-type", [])
    else:
        content_types, ce_headers = _content_type_and_ce_headers(headers)

    if len(content_types) > 1:
        raise CloudEventError([Problem("content-type", "content-type: header present more than once")])
    content_type: str | None = None
    essence = ""
    utf8 = True
    if content_types:
        raw_content_type = content_types[0]
        facts = _CONTENT_TYPES.get(raw_content_type) or _content_type_facts(raw_content_type)
        content_type, essence, utf8 = facts[0], facts[1], facts[4]

    if essence.startswith("application/cloudevents"):
        assert content_type is not None
        if essence == "application/cloudevents+json":
            if not utf8:
                _check_format_charset(content_type)
            return _parse_result(_STRUCTURED, (parse_structured(body),))
        if essence == "application/cloudevents-batch+json":
            if not utf8:
                _check_format_charset(content_type)
            return _parse_result(_BATCH, _parse_batch(body))
        raise CloudEventError(
            [
                Problem(
                    "content-type",
                    f"content-type: unsupported event format {_show(essence)}; "
                    "use application/cloudevents+json, application/cloudevents-batch+json or binary mode",
                    STATUS_UNSUPPORTED_MEDIA_TYPE,
                )
            ]
        )
    if ce_headers is None:
        event = _plain_binary_of_headers(content_type, headers, body)
        if event is not None:
            return _parse_result(_BINARY, (event,))
        # Only "c" and "C" lower-case to a string starting with "c": the other names need no lower().
        ce_headers = [
            (lower, value)
            for key, value in headers.items()
            if key[:1] in _C_OR_UPPER_C and (lower := key.lower())[:3] == "ce-"
        ]
    return _parse_result(_BINARY, (_parse_binary(content_type, ce_headers, body),))


_C_OR_UPPER_C: Final = frozenset("cC")
_MULTIDICTS: Final = (CIMultiDictProxy, CIMultiDict)

# Header name as sent -> the attribute a ``ce-`` header carries (its lower-cased name after "ce-"), or None
# for any other header. Senders repeat the same few names: one dict look-up each instead of a lower() and
# two slices. Names up to _CACHED_NAME_LENGTH only, and emptied when full, so it stays small whatever is sent.
_CE_ATTRIBUTE_OF: dict[str, str | None] = {}
_CACHED_NAME_LENGTH: Final = 64
_CACHED_NAMES: Final = 1024


def _ce_attribute_of(name: str) -> str | None:
    lower = name.lower()
    # Interned: the attribute names the code spells ("type", "source", ...) are then the same str objects,
    # so every look-up of them in an event's attributes, and of the event's names in the NL GOV name set,
    # matches by identity instead of comparing characters.
    attribute = sys.intern(lower[3:]) if lower[:3] == "ce-" else None
    if len(name) <= _CACHED_NAME_LENGTH:
        keep_bounded(_CE_ATTRIBUTE_OF, name, attribute, _CACHED_NAMES)
    return attribute


def _plain_binary_of_headers(
    content_type: str | None, headers: Mapping[str, str], body: bytes
) -> CloudEvent | None:
    """:func:`_parse_plain_binary` reading the ``ce-`` headers straight from ``headers`` (one pass, no list
    of them): exactly its event, or None when in doubt."""
    attributes: dict[str, AttributeValue] = {}
    found = 0
    attribute_of = _CE_ATTRIBUTE_OF
    for key, raw in headers.items():
        # A subscript, not .get: no call per header. KeyError only for a name not seen yet (or too long
        # to be kept), once per name.
        try:
            attribute = attribute_of[key]
        except KeyError:
            attribute = _ce_attribute_of(key)
        if attribute is not None:
            attributes[attribute] = raw
            found += 1
    if len(attributes) != found:
        return None  # a repeated header
    return _plain_binary_event(content_type, attributes, body)


def _content_type_and_ce_headers(headers: Mapping[str, str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Every Content-Type value, and every ``ce-`` header with its name lower-cased, in order."""
    content_types: list[str] = []
    ce_headers: list[tuple[str, str]] = []
    for key, value in headers.items():
        lower = key.lower()
        if lower[:3] == "ce-":  # most headers of a binary-mode request: tested first
            ce_headers.append((lower, value))
        elif lower == "content-type":
            content_types.append(value)
    return content_types, ce_headers


def _bad_format_charset(content_type: str) -> str | None:
    """The charset of ``content_type`` when it is not UTF-8 (the JSON event formats'), else None."""
    charset = _media_parameters(content_type).get("charset")
    return None if charset is None or charset.lower() == "utf-8" else charset


def _check_format_charset(content_type: str) -> None:
    charset = _bad_format_charset(content_type)
    if charset is not None:
        raise CloudEventError(
            [
                Problem(
                    "content-type",
                    f"content-type: the JSON event format is UTF-8, got charset {_show(charset)}",
                    STATUS_UNSUPPORTED_MEDIA_TYPE,
                )
            ]
        )


def _parse_binary(content_type: str | None, ce_headers: list[tuple[str, str]], body: bytes) -> CloudEvent:
    event = _parse_plain_binary(content_type, ce_headers, body)
    return event if event is not None else _parse_binary_checked(content_type, ce_headers, body)


def _parse_plain_binary(
    content_type: str | None, ce_headers: list[tuple[str, str]], body: bytes
) -> CloudEvent | None:
    """The common case in one pass: every ``ce-`` header plain (nothing to decode) and given once, every
    attribute valid, the body decodable. Returns exactly the event :func:`_parse_binary_checked` returns,
    or None when in doubt, and that function then finds (and reports) what is wrong."""
    attributes: dict[str, AttributeValue] = {header[3:]: raw for header, raw in ce_headers}
    if len(attributes) != len(ce_headers):
        return None  # a repeated header
    return _plain_binary_event(content_type, attributes, body)


def _plain_binary_event(
    content_type: str | None, attributes: dict[str, AttributeValue], body: bytes
) -> CloudEvent | None:
    """The rest of :func:`_parse_plain_binary`, from the ``ce-`` headers' values (given once each, so far
    undecoded: a value to decode, and a value with a quote anywhere, leaves the plain path)."""
    if "datacontenttype" in attributes:
        return None  # ce-datacontenttype (refused in binary mode)
    # Every value at once: a quoted-string or percent-encoding to decode, or a character a String must not
    # hold (printable ASCII is always allowed), sends the event to the full check. One join and three
    # scans over a few hundred characters cost less than a slice, two scans and two calls per header.
    values = "".join(attributes.values())  # type: ignore[arg-type]
    if '"' in values or "%" in values or not (values.isascii() and values.isprintable()):
        return None
    json_body = False
    if content_type:
        facts = _CONTENT_TYPES.get(content_type) or _content_type_facts(content_type)
        if not facts[2] or facts[0] != content_type:  # (parse_http passes it stripped: the same str)
            return None
        attributes["datacontenttype"] = content_type
        json_body = facts[3]
    if not _printable_strings_pass(attributes):  # type: ignore[arg-type]
        return None
    if not body:
        return _cloud_event(attributes, None, False)
    if not json_body:
        return _cloud_event(attributes, body if isinstance(body, bytes) else bytes(body), False)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return _cloud_event(attributes, data, data is None)


def _parse_binary_checked(
    content_type: str | None, ce_headers: list[tuple[str, str]], body: bytes
) -> CloudEvent:
    problems: list[Problem] = []
    attributes: dict[str, AttributeValue] = {}
    undecodable: set[str] = set()
    for header, raw in ce_headers:
        name = header[3:]
        if name == "datacontenttype":
            problems.append(
                Problem(
                    header,
                    f"{header}: must not be present in binary mode; Content-Type carries datacontenttype",
                )
            )
            continue
        if name in attributes or name in undecodable:
            problems.append(Problem(header, f"{header}: header present more than once"))
            continue
        if '"' not in raw[:1] and "%" not in raw:
            attributes[name] = raw  # nothing to decode (decode_header_value's answer, without the call)
            continue
        try:
            attributes[name] = decode_header_value(raw)
        except ValueError as exc:
            problems.append(Problem(header, f"{header}: {exc}"))
            undecodable.add(name)
    if content_type:
        attributes["datacontenttype"] = content_type
    _check_attributes(attributes, _binary_label, None, problems, undecodable)

    data: object | None = None
    data_null = False
    if body:
        if is_json_content_type(content_type):
            try:
                data = orjson.loads(body)
                data_null = data is None
            except orjson.JSONDecodeError as exc:
                problems.append(Problem("data", f"data: the body is not valid JSON ({exc})"))
        else:
            data = body if isinstance(body, bytes) else bytes(body)
    if problems:
        raise CloudEventError(problems)
    return CloudEvent(attributes, data, data_null)


def _load_json(body: bytes) -> object:
    if not body:
        raise CloudEventError([Problem(None, "body: empty; a JSON CloudEvent is required")])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CloudEventError([Problem(None, f"body: not valid JSON ({exc})")]) from None


def parse_structured(body: bytes) -> CloudEvent:
    """One event in the JSON event format (the body of a structured-mode request)."""
    document = _load_json(body)
    problems: list[Problem] = []
    event = _event_from_json(document, None, problems)
    if problems or event is None:
        raise CloudEventError(problems)
    return event


def _parse_batch(body: bytes) -> tuple[CloudEvent, ...]:
    document = _load_json(body)
    if not isinstance(document, list):
        raise CloudEventError(
            [Problem(None, f"body: a batch must be a JSON array, got {_json_type(document)}")]
        )
    problems: list[Problem] = []
    events: list[CloudEvent] = []
    versions: set[str] = set()
    for index, item in enumerate(document):
        if len(problems) >= MAX_PROBLEMS:
            raise CloudEventError(problems, complete=False)
        event = _event_from_json(item, index, problems)
        if event is not None:
            events.append(event)
        if isinstance(item, dict) and isinstance(item.get("specversion"), str):
            versions.add(item["specversion"])
    if len(versions) > 1:
        problems.append(
            Problem(
                "specversion",
                "specversion: a batch must use one specversion, got "
                + ", ".join(sorted(map(_show, versions))),
            )
        )
    if problems:
        raise CloudEventError(problems)
    return tuple(events)


def _event_from_json(document: object, index: int | None, problems: list[Problem]) -> CloudEvent | None:
    """Build an event from a decoded JSON object; appends problems and returns None when invalid."""
    if type(document) is dict:
        event = _plain_event_from_json(document)
        if event is not None:
            return event
    return _checked_event_from_json(document, index, problems)


def _checked_event_from_json(
    document: object, index: int | None, problems: list[Problem]
) -> CloudEvent | None:
    """:func:`_event_from_json` attribute by attribute, finding every problem."""
    if not isinstance(document, dict):
        problems.append(
            Problem(None, f"event: must be a JSON object, got {_json_type(document)}", index=index)
        )
        return None
    before = len(problems)
    attributes: dict[str, object] = {}
    data: object | None = None
    data_member: object | None = None
    base64_member: object | None = None
    data_null = False
    for name, value in document.items():
        if value is None:
            data_null = data_null or name == "data"  # an explicit null is data; kept through delivery
            continue  # JSON null means unset for attributes
        if name == "data":
            data_member = value
        elif name == "data_base64":
            base64_member = value
        elif isinstance(value, float) and value.is_integer() and name not in CORE_ATTRIBUTES:
            attributes[name] = int(value)  # 5.0 is the JSON number 5
        else:
            attributes[name] = value  # types are checked with the values below

    if data_member is not None and base64_member is not None:
        problems.append(Problem("data", 'data: "data" and "data_base64" are mutually exclusive', index=index))
    elif base64_member is not None:
        if not isinstance(base64_member, str):
            problems.append(
                Problem(
                    "data_base64",
                    f"data_base64: must be a base64 string, got {_json_type(base64_member)}",
                    index=index,
                )
            )
        else:
            try:
                data = base64.b64decode(base64_member, validate=True)
            except (binascii.Error, ValueError):
                problems.append(
                    Problem("data_base64", "data_base64: not valid base64 (RFC 4648)", index=index)
                )
    elif data_member is not None:
        content_type = attributes.get("datacontenttype")
        if content_type is None:
            # an absent datacontenttype with JSON data means application/json; make it explicit
            # so a later binary-mode hop sends the right Content-Type
            attributes["datacontenttype"] = JSON_CONTENT_TYPE
        elif (
            isinstance(content_type, str)
            and not is_json_content_type(content_type)
            and not isinstance(data_member, str)
        ):
            problems.append(
                Problem(
                    "data",
                    f"data: must be a JSON string when datacontenttype {_show(content_type)} is not JSON, "
                    f"got {_json_type(data_member)}",
                    index=index,
                )
            )
        data = data_member  # a JSON string stays a string: never parsed a second time

    _check_attributes(attributes, _plain_label, index, problems)
    if len(problems) > before:
        return None
    # every value passed _check_attributes, so each is a str, int or bool
    return CloudEvent(cast("dict[str, AttributeValue]", attributes), data, data_null and data is None)


def _plain_event_from_json(document: dict[str, object]) -> CloudEvent | None:
    """The common case of :func:`_event_from_json` (no nulls, no data_base64, no floats, every attribute
    valid) with the attributes copied at once instead of one by one: exactly its event, or None when in
    doubt (that function then decides, and says what is wrong)."""
    if "data_base64" in document:
        return None
    attributes = dict(document)
    data = attributes.pop("data", None)
    if data is not None:
        content_type = attributes.get("datacontenttype")
        if content_type is None:
            if "datacontenttype" in attributes:
                return None  # a null datacontenttype: _event_from_json drops it and appends the default
            attributes["datacontenttype"] = JSON_CONTENT_TYPE  # as _event_from_json makes it explicit
        elif type(data) is not str and not (
            type(content_type) is str
            and (_CONTENT_TYPES.get(content_type) or _content_type_facts(content_type))[3]  # JSON
        ):
            return None  # maybe non-JSON data under a non-JSON content type
    elif "data" in document:
        return None  # an explicit null
    # Every value a string (most events): their characters checked together, as binary mode's header
    # values are (one join and two scans instead of a type test and two calls per value), the content type
    # by its cached facts, then _printable_strings_pass. A null, a number or a boolean makes the join raise
    # TypeError: then _attributes_pass, value by value (a null or a float fails it).
    try:
        values = "".join(attributes.values())  # type: ignore[arg-type]
    except TypeError:
        if not _attributes_pass(attributes):
            return None
    else:
        if not (values.isascii() and values.isprintable()):
            return None
        content_type = cast("str | None", attributes.get("datacontenttype"))  # (every value is a str)
        if content_type is not None:
            facts = _CONTENT_TYPES.get(content_type) or _content_type_facts(content_type)
            if not facts[2] or facts[0] != content_type:  # a media type as it is
                return None
        if not _printable_strings_pass(attributes):  # type: ignore[arg-type]
            return None
    return _cloud_event(attributes, data, False)  # type: ignore[arg-type]


# --- serialising --------------------------------------------------------------------------------


def _data_is_json(event: CloudEvent) -> bool:
    content_type = event.datacontenttype
    return content_type is None or is_json_content_type(content_type)


def _json_member(event: CloudEvent) -> dict[str, object]:
    document: dict[str, object] = dict(event.attributes)
    data = event.data
    if data is None:
        if event.data_null:
            document["data"] = None
        return document
    if isinstance(data, bytes | bytearray | memoryview):
        document["data_base64"] = base64.b64encode(data).decode("ascii")
    elif _data_is_json(event) or isinstance(data, str):
        document["data"] = data
    else:
        raise ValueError(
            f"data of type {type(data).__name__} cannot be sent with non-JSON datacontenttype "
            f"{_show(event.datacontenttype)}; use str or bytes"
        )
    return document


def to_structured(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Structured mode: (headers, body) with the event in the JSON event format."""
    data, attributes = event.data, event.attributes
    # The common case (JSON data, as webhooks and emitted events carry) in one dict display: the same
    # document as _json_member's, which handles everything else.
    if data is not None and not isinstance(data, bytes | bytearray | memoryview):
        content_type = attributes.get("datacontenttype")
        if content_type is None or content_type == JSON_CONTENT_TYPE:
            return {"Content-Type": STRUCTURED_CONTENT_TYPE}, orjson.dumps({**attributes, "data": data})
    return {"Content-Type": STRUCTURED_CONTENT_TYPE}, orjson.dumps(_json_member(event))


def to_batch(events: Iterable[CloudEvent]) -> tuple[dict[str, str], bytes]:
    """Batch mode: (headers, body) with a JSON array of events (may be empty)."""
    return {"Content-Type": BATCH_CONTENT_TYPE}, orjson.dumps([_json_member(e) for e in events])


def to_binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Binary mode: (headers, body); attributes as percent-encoded `ce-` headers, data as the body."""
    headers: dict[str, str] = {}
    content_type: str | None = None
    for name, value in event.attributes.items():
        if name == "datacontenttype":
            content_type = _as_str(value)
        else:
            headers["ce-" + name] = encode_header_value(value)
    data = event.data
    body: bytes
    if data is None and event.data_null and (content_type is None or is_json_content_type(content_type)):
        body = b"null"
        content_type = content_type or JSON_CONTENT_TYPE
    elif data is None:
        body = b""
    elif isinstance(data, bytes | bytearray | memoryview):
        body = bytes(data)
    elif content_type is None or is_json_content_type(content_type):
        body = orjson.dumps(data)
        if content_type is None:
            content_type = JSON_CONTENT_TYPE
    elif isinstance(data, str):
        body = data.encode("utf-8")
    else:
        raise ValueError(
            f"data of type {type(data).__name__} cannot be sent with non-JSON datacontenttype "
            f"{_show(content_type)}; use str or bytes"
        )
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers, body
