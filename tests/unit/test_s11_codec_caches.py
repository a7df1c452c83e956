"""The codec's per-name caches answer what the uncached checks answer, and stay bounded.

- ``_VALUE_CHECKS_OF``: attribute names in order -> the value checks the names beyond the required ones
  need (None for a name that is not an attribute name), read by ``_printable_strings_pass``.
- ``_CE_ATTRIBUTE_OF``, read by subscript in the binary header pass: a name not kept (too long) is worked
  out again each time, with the same answer.
"""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

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
