"""Duration strings used by delivery specs, parsed to seconds.

Two spellings are accepted, so that both Knative users and Go/Kubernetes users feel at home:

* ISO-8601 durations as in Knative's delivery spec: ``PT0.2S``, ``PT5M``, ``PT1H30M``, ``P1D``, ``P1W``,
  ``P1DT12H``. Designators are upper case. Only the last (smallest) component may carry a fraction
  (``PT1.5M`` is fine, ``PT1.5M30S`` is not), as ISO-8601 says. Years and months are refused because
  they have no fixed length.
* Go-style durations as in ``time.ParseDuration``: ``200ms``, ``5s``, ``1m``, ``1h30m``, ``1.5h``; units
  ``ns``, ``us`` (or ``µs``), ``ms``, ``s``, ``m``, ``h``. A bare ``0`` is allowed, like Go.

A plain number (int or float, e.g. from YAML) is taken as seconds. A numeric *string* without a unit
(``"5"``) is refused: it is ambiguous (seconds? milliseconds?). Negative durations are refused.
"""

from __future__ import annotations

import math
import re

__all__ = ["MAX_DURATION_LENGTH", "parse_duration"]

MAX_DURATION_LENGTH = 64

_NUMBER = r"\d+(?:[.,]\d+)?"
_ISO = re.compile(
    rf"P(?:(?P<Y>{_NUMBER})Y)?(?:(?P<MO>{_NUMBER})M)?(?:(?P<W>{_NUMBER})W)?(?:(?P<D>{_NUMBER})D)?"
    rf"(?P<T>T(?:(?P<H>{_NUMBER})H)?(?:(?P<MI>{_NUMBER})M)?(?:(?P<S>{_NUMBER})S)?)?"
)
# Order matters for the error message about fractions: largest to smallest component.
_ISO_SECONDS = {"Y": None, "MO": None, "W": 604800.0, "D": 86400.0, "H": 3600.0, "MI": 60.0, "S": 1.0}

_GO_PART = re.compile(r"(?P<num>\d+(?:\.\d*)?|\.\d+)(?P<unit>ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, *, field: str = "duration") -> float:
    """Return the duration in seconds; raise ValueError naming ``field`` when it is not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a duration such as 'PT0.2S' or '200ms', got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{field}: must be a finite, non-negative number of seconds, got {value!r}")
        return seconds
    if not isinstance(value, str):
        raise ValueError(
            f"{field}: expected a duration string such as 'PT0.2S' or '200ms', got {type(value).__name__}"
        )
    text = value.strip()
    if len(text) > MAX_DURATION_LENGTH:  # bounds the regex work on tenant input, whatever the pattern
        raise ValueError(f"{field}: longer than {MAX_DURATION_LENGTH} characters")
    if not text:
        raise ValueError(f"{field}: empty duration; use e.g. 'PT0.2S' or '200ms'")
    if text.startswith("-"):
        raise ValueError(f"{field}: negative durations are not allowed, got {value!r}")
    if text[0] in "Pp":
        return _parse_iso(text, value, field)
    return _parse_go(text, value, field)


def _parse_iso(text: str, original: str, field: str) -> float:
    if text[0] == "p" or any(c in "tymwdhs" for c in text[1:]):
        raise ValueError(f"{field}: ISO-8601 designators must be upper case (e.g. 'PT5M'), got {original!r}")
    match = _ISO.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{field}: {original!r} is not an ISO-8601 duration (expected e.g. 'PT0.2S', 'PT5M', 'P1DT2H')"
        )
    if match.group("T") == "T":
        raise ValueError(f"{field}: {original!r} has a 'T' with no hours, minutes or seconds after it")
    present = [name for name in _ISO_SECONDS if match.group(name) is not None]
    if not present:
        raise ValueError(f"{field}: {original!r} has no components (expected e.g. 'PT0.2S' or 'P1D')")
    if match.group("Y") is not None or match.group("MO") is not None:
        raise ValueError(
            f"{field}: {original!r} uses years or months, which have no fixed length; "
            "use days (D) or weeks (W)"
        )
    total = 0.0
    for index, name in enumerate(present):
        raw = match.group(name).replace(",", ".")
        if "." in raw and index != len(present) - 1:
            raise ValueError(f"{field}: in {original!r} only the smallest component may have a fraction")
        unit = _ISO_SECONDS[name]
        assert unit is not None  # years and months were refused above
        total += float(raw) * unit
    return total


def _parse_go(text: str, original: str, field: str) -> float:
    if text == "0":
        return 0.0
    position = 0
    total = 0.0
    while position < len(text):
        match = _GO_PART.match(text, position)
        if match is None:
            rest = text[position:]
            if re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", rest):
                hint = "missing unit" if position == 0 else f"missing unit after {rest!r}"
                raise ValueError(
                    f"{field}: {original!r}: {hint}; write e.g. '{rest}s' or an ISO-8601 duration 'PT{rest}S'"
                )
            raise ValueError(
                f"{field}: {original!r} is not a duration (expected ISO-8601 like 'PT0.2S' or Go-style like "
                f"'200ms', '5s', '1m', '1h30m'; units ns, us, ms, s, m, h)"
            )
        total += float(match.group("num")) * _GO_UNITS[match.group("unit")]
        position = match.end()
    return total
