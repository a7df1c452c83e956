"""The codec's per-name caches answer what the uncached checks answer, and stay bounded.

- ``_VALUE_CHECKS_OF``: attribute names in order -> the value checks the names beyond the required ones
  need (None for a name that is not an attribute name), read by ``_printable_strings_pass``.
- ``_CE_ATTRIBUTE_OF``, read by subscript in the binary header pass: a name not kept (too long) is worked
  out again each time, with the same answer.
- ``_RFC3339_HEADS`` / ``_RFC3339_TAILS``: ``is_rfc3339`` keeps its verdict on a value's date and time of
  day (its first 19 characters) and on what follows; together they answer as the whole pattern and the
  calendar check (the reference of tests/unit/test_s5_ingress_codec.py).
"""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from tests.unit.test_s5_ingress_codec import _reference_rfc3339

from openconnector.ce import codec

REQUIRED = {"id": "e-1", "source": "urn:x:y", "specversion": "1.0", "type": "nl.x.y"}


def _twice_as_the_one_pass_check(attributes: dict[str, str]) -> bool:
    """``_printable_strings_pass`` on a cache miss and then a hit, each as ``_attributes_pass`` says."""
    expected = codec._attributes_pass(attributes)
    assert codec._printable_strings_pass(attributes) == expected  # worked out (and kept)
    assert codec._printable_strings_pass(attributes) == expected  # read back
    return expected


def test_a_kept_verdict_on_the_names_gives_the_one_pass_checks_answer() -> None:
    codec._VALUE_CHECKS_OF.clear()
    assert _twice_as_the_one_pass_check({**REQUIRED, "time": "2026-11-28T12:00:00Z", "subject": "z"})
    # Same names, other values: the kept checks run on the new values.
    assert not _twice_as_the_one_pass_check({**REQUIRED, "time": "2026-02-30T12:00:00Z", "subject": "z"})
    assert not _twice_as_the_one_pass_check({**REQUIRED, "time": "2026-11-28T12:00:00Z", "subject": ""})
    assert not _twice_as_the_one_pass_check({**REQUIRED, "dataschema": "not absolute"})
    # Names that are not attribute names are refused, kept or not.
    for bad in ("Upper", "with-dash", "data", ""):
        assert not _twice_as_the_one_pass_check({**REQUIRED, bad: "x"})
    assert _twice_as_the_one_pass_check({**REQUIRED, "traceparent": "00-x"})


def test_the_name_cache_stays_bounded_and_keeps_no_long_name_sets() -> None:
    codec._VALUE_CHECKS_OF.clear()
    for number in range(3 * codec._CACHED_NAME_SETS):
        assert _twice_as_the_one_pass_check({**REQUIRED, f"x{number}": "v"})
        assert len(codec._VALUE_CHECKS_OF) <= codec._CACHED_NAME_SETS
    codec._VALUE_CHECKS_OF.clear()
    long_name = "x" * codec._CACHED_NAME_SET_LENGTH
    assert _twice_as_the_one_pass_check({**REQUIRED, long_name: "v"})
    assert codec._VALUE_CHECKS_OF == {}


def test_a_header_name_too_long_to_keep_is_read_again_with_the_same_answer() -> None:
    codec._CE_ATTRIBUTE_OF.clear()
    long_name = "ce-" + "a" * codec._CACHED_NAME_LENGTH
    pairs = [("Host", "x"), *(("ce-" + k, v) for k, v in REQUIRED.items()), (long_name, "long")]
    headers = CIMultiDictProxy(CIMultiDict(pairs))
    for _ in range(2):
        event = codec._plain_binary_of_headers(None, headers, b"")
        assert event is not None
        assert event.attributes == {**REQUIRED, long_name[3:]: "long"}
    assert long_name not in codec._CE_ATTRIBUTE_OF
    assert codec._CE_ATTRIBUTE_OF["Host"] is None


# --- RFC 3339: verdicts kept per date-and-time-of-day and per what follows ---------------------------

_TIME_CHARACTERS = "0123456789-:TtZz+.5 x٣"
_TAILS = ["Z", "z", ".000Z", ".1+01:00", "-23:59", "+24:00", "", ".Z", "Z ", ".٣Z", "+01:60", "+01:00 "]


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(_TIME_CHARACTERS, max_size=40),
        st.builds(
            "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}".format,
            st.integers(0, 9999),
            st.integers(0, 13),
            st.integers(0, 32),
            st.sampled_from("Tt x"),
            st.integers(0, 25),
            st.integers(0, 61),
            st.integers(0, 61),
            st.sampled_from(_TAILS),
        ),
    )
)
def test_kept_date_time_verdicts_answer_as_the_whole_pattern(value: str) -> None:
    expected = _reference_rfc3339(value)
    assert codec.is_rfc3339(value) == expected  # worked out (and kept)
    assert codec.is_rfc3339(value) == expected  # read back


def test_the_date_time_caches_stay_bounded_and_keep_no_long_tails() -> None:
    codec._RFC3339_HEADS.clear()
    codec._RFC3339_TAILS.clear()
    for second in range(2 * codec._CACHED_DATE_TIME_PARTS):
        minutes, seconds = divmod(second, 60)
        hours, minutes = divmod(minutes, 60)
        assert codec.is_rfc3339(f"2026-11-28T{hours:02d}:{minutes:02d}:{seconds:02d}.{second}Z")
        assert len(codec._RFC3339_HEADS) <= codec._CACHED_DATE_TIME_PARTS
        assert len(codec._RFC3339_TAILS) <= codec._CACHED_DATE_TIME_PARTS
    codec._RFC3339_TAILS.clear()
    long_tail = "." + "1" * codec._CACHED_TAIL_LENGTH + "Z"
    assert codec.is_rfc3339("2026-11-28T12:00:00" + long_tail)
    assert long_tail not in codec._RFC3339_TAILS


def test_binary_attribute_names_are_the_interned_names() -> None:
    # An event's names are then the very str objects the code looks up ("type", "source", ...).
    codec._CE_ATTRIBUTE_OF.clear()
    headers = CIMultiDictProxy(
        CIMultiDict([("Ce-Subject", "zaak-17"), *(("ce-" + k, v) for k, v in REQUIRED.items())])
    )
    event = codec._plain_binary_of_headers(None, headers, b"")
    assert event is not None
    assert all(name is sys.intern(name) for name in event.attributes)
