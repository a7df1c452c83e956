"""NL GOV profile for CloudEvents (v1.1) checks on top of the CloudEvents core rules.

`check_nlgov` only reports; the caller decides what a problem means: in the strict `nl-gov` profile
each one refuses the event (HTTP 400), in the lax `cloudevents` profile it is logged and counted.
The checks assume the event already passed the core codec (`validate_event` / `parse_http`).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping

from openconnector.ce.codec import (
    CORE_ATTRIBUTES,
    EXTENSION_NAME_SOFT_LIMIT,
    INT32_MAX,
    CloudEvent,
    Problem,
    _show,
    is_absolute_uri,
    is_json_content_type,
    keep_bounded,
)

__all__ = ["SEQUENCE_TYPE_INTEGER", "Profile", "check_nlgov", "check_source", "nlgov_conforms"]

SEQUENCE_TYPE_INTEGER = "Integer"


class Profile(enum.StrEnum):
    """Validation profile: `nl-gov` refuses profile violations, `cloudevents` only warns about them."""

    NL_GOV = "nl-gov"
    CLOUDEVENTS = "cloudevents"


# Reverse domain name notation: a top-level domain (letters, or an IDNA `xn--` label) first, then
# at least one more label. Labels beyond the domain may hold `_` (e.g. com.github.pull_request).
_TLD_RE = re.compile(r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9\-]{1,59})")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_]*[A-Za-z0-9])?")
_VERSION_RE = re.compile(r"v[0-9]+")
_SEQUENCE_RE = re.compile(r"[1-9][0-9]*")
_OIN_RE = re.compile(r"[0-9]{20}")


def _check_type(value: str) -> str | None:
    labels = value.split(".")
    hint = "e.g. nl.vng.zgw.zaken.zaak.created or nl.brp.persoon-verhuisd.v2"
    if len(labels) < 2 or _TLD_RE.fullmatch(labels[0]) is None:
        return f"must be reverse-DNS notation ({hint}), got {_show(value)}"
    for label in labels[1:]:
        if _LABEL_RE.fullmatch(label) is None:
            return f"label {_show(label)} is not a reverse-DNS label ({hint})"
    versions = [i for i, label in enumerate(labels) if _VERSION_RE.fullmatch(label)]
    if len(versions) > 1:
        return f"must carry a single version (v<N>), got {len(versions)} in {_show(value)}"
    if versions and versions[0] != len(labels) - 1:
        return f"the version {_show(labels[versions[0]])} must be the last label"
    return None


def check_source(value: str) -> str | None:
    """Why ``value`` is not an NL GOV source, or None. The profile recommends a URN in the nld namespace
    and accepts an absolute URI; a URN in another namespace (urn:uuid:…) is an absolute URI, so it is
    accepted like an https URL. Only the nld namespace has a structure to check (a 20-digit OIN).
    Event.spec.source of an nl-gov Event is checked with this same function (and a CEL mirror)."""
    if not is_absolute_uri(value):
        return (
            "must be an absolute URI, preferably a URN in the nld namespace "
            f"(urn:nld:oin:<OIN>:systeem:<name>), got {_show(value)}"
        )
    scheme, _, rest = value.partition(":")
    if scheme.lower() != "urn":
        return None
    nid, _, nss = rest.partition(":")
    if nid.lower() != "nld":
        return None
    if not nss:
        return "urn:nld: must name the organisation and system, e.g. urn:nld:oin:<OIN>:systeem:<name>"
    kind, _, after = nss.partition(":")
    if kind.lower() == "oin":
        oin = after.split(":", 1)[0]
        if _OIN_RE.fullmatch(oin) is None:
            return f"an OIN is 20 digits, got {_show(oin)}"
    return None


# Senders repeat a few types and sources: the verdicts on short values are cached (long ones are checked
# each time, so a hostile sender cannot make the cache hold megabytes).
_CACHED_VALUE_LENGTH = 256


@functools.lru_cache(maxsize=1024)
def _cached_type_verdict(value: str) -> str | None:
    return _check_type(value)


@functools.lru_cache(maxsize=1024)
def _cached_source_verdict(value: str) -> str | None:
    return check_source(value)


# (type, source, datacontenttype) -> whether check_nlgov finds nothing in them; bounded like the verdicts.
_CONFORMING: dict[tuple[object, object, object], bool] = {}
# Attribute names known to be within EXTENSION_NAME_SOFT_LIMIT: a set test of all names at once (in C).
_SHORT_NAMES: set[str] = set(CORE_ATTRIBUTES)
_CACHED_ENTRIES = 1024


def _conforming(key: tuple[object, object, object]) -> bool:
    """Whether check_nlgov finds nothing in an event's (type, source, datacontenttype), remembered for
    short values (a hostile sender cannot make the cache hold megabytes)."""
    type_, source, content_type = key
    if type(type_) is not str or type(source) is not str:
        return False
    if content_type is not None and (type(content_type) is not str or not is_json_content_type(content_type)):
        verdict = False
    else:
        short = len(type_) <= _CACHED_VALUE_LENGTH and len(source) <= _CACHED_VALUE_LENGTH
        type_detail = _cached_type_verdict(type_) if short else _check_type(type_)
        verdict = (
            type_detail is None
            and (_cached_source_verdict(source) if short else check_source(source)) is None
        )
    size = len(type_) + len(source) + (len(content_type) if type(content_type) is str else 0)
    if size <= _CACHED_VALUE_LENGTH:
        keep_bounded(_CONFORMING, key, verdict, _CACHED_ENTRIES)
    return verdict


def _sequence_conforms(attributes: Mapping[str, object]) -> bool:
    sequence = attributes.get("sequence")
    return (
        attributes.get("sequencetype") == SEQUENCE_TYPE_INTEGER
        and type(sequence) is str
        and len(sequence) <= 10  # INT32_MAX has 10 digits; also keeps int() off huge strings
        and _SEQUENCE_RE.fullmatch(sequence) is not None
        and int(sequence) <= INT32_MAX
    )


def _names_short(attributes: Mapping[str, object]) -> bool:
    for name in attributes:
        if len(name) > EXTENSION_NAME_SOFT_LIMIT:
            return False
    if len(_SHORT_NAMES) < _CACHED_ENTRIES:
        _SHORT_NAMES.update(attributes)
    return True


def nlgov_conforms(event: CloudEvent) -> bool:
    """True only when :func:`check_nlgov` finds nothing in ``event``; False when it may find something
    (it then says what). A few look-ups: most events conform, from senders repeating types and sources."""
    attributes = event.attributes
    try:
        # (Subscripts: a valid event has both; one without either is not known to conform.)
        key = (attributes["type"], attributes["source"], attributes.get("datacontenttype"))
    except KeyError:
        return False
    verdict = _CONFORMING.get(key)
    if not (verdict or (verdict is None and _conforming(key))):
        return False
    if key[2] is None and isinstance(event.data, bytes):
        return False  # binary data without a content type
    if ("sequence" in attributes or "sequencetype" in attributes) and not _sequence_conforms(attributes):
        return False
    # issuperset iterates the names into one set test each (keys() <= set takes a slower path per name)
    return _SHORT_NAMES.issuperset(attributes) or _names_short(attributes)


def check_nlgov(event: CloudEvent, *, index: int | None = None) -> list[Problem]:
    """Every NL GOV profile rule `event` breaks (empty when conformant); all problems are status 400."""
    problems: list[Problem] = []

    def add(attribute: str, detail: str) -> None:
        problems.append(Problem(attribute, f"{attribute}: {detail}", 400, index))

    attributes = event.attributes
    type_ = attributes.get("type")
    if isinstance(type_, str):
        detail = _cached_type_verdict(type_) if len(type_) <= _CACHED_VALUE_LENGTH else _check_type(type_)
        if detail is not None:
            add("type", detail)

    source = attributes.get("source")
    if isinstance(source, str):
        short = len(source) <= _CACHED_VALUE_LENGTH
        detail = _cached_source_verdict(source) if short else check_source(source)
        if detail is not None:
            add("source", detail)

    sequence = attributes.get("sequence")
    sequencetype = attributes.get("sequencetype")
    if (sequence is None) != (sequencetype is None):
        missing = "sequencetype" if sequencetype is None else "sequence"
        add(missing, "sequence and sequencetype must be given together")
    if sequencetype is not None and sequencetype != SEQUENCE_TYPE_INTEGER:
        add("sequencetype", f'must be "Integer" (case-sensitive), got {_show(sequencetype)}')
    if sequence is not None:
        if not isinstance(sequence, str):
            add("sequence", f'must be a string (e.g. "42"), got {_show(sequence)}')
        elif sequencetype == SEQUENCE_TYPE_INTEGER and (
            # INT32_MAX has 10 digits; the length check also keeps int() off huge strings.
            _SEQUENCE_RE.fullmatch(sequence) is None or len(sequence) > 10 or int(sequence) > INT32_MAX
        ):
            add(
                "sequence",
                f"must be an Integer from 1 to {INT32_MAX} without leading zeros, got {_show(sequence)}",
            )
        elif not sequence:
            add("sequence", "must be a non-empty string")

    content_type = event.datacontenttype
    if content_type is not None and not is_json_content_type(content_type):
        add("datacontenttype", f"the payload should be JSON (application/json), got {_show(content_type)}")
    elif content_type is None and event.data is not None and isinstance(event.data, bytes):
        add("datacontenttype", "the payload should be JSON; binary data without a content type is not")

    for name in attributes:
        if name not in CORE_ATTRIBUTES and len(name) > EXTENSION_NAME_SOFT_LIMIT:
            problems.append(
                Problem(
                    name,
                    f"extension name {_show(name)}: longer than {EXTENSION_NAME_SOFT_LIMIT} characters",
                    400,
                    index,
                )
            )
    return problems
