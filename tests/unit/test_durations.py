"""Duration parsing: ISO-8601 like Knative's delivery spec, Go-style like time.ParseDuration."""

from __future__ import annotations

import pytest

from openconnector.delivery.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT0.2S", 0.2),
        ("PT5M", 300.0),
        ("PT1H30M", 5400.0),
        ("P1D", 86400.0),
        ("P1W", 604800.0),
        ("P1DT12H", 129600.0),
        ("PT1.5M", 90.0),
        ("PT0,5S", 0.5),
        ("PT30S", 30.0),
        ("PT1H0M0S", 3600.0),
        ("PT0S", 0.0),
    ],
)
def test_iso_8601_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("200ms", 0.2),
        ("5s", 5.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("1m30.5s", 90.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("1000000ns", 0.001),
        (".5s", 0.5),
        ("0", 0.0),
        ("  5s  ", 5.0),
    ],
)
def test_go_style_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "seconds"), [(5, 5.0), (0.25, 0.25), (0, 0.0)])
def test_plain_numbers_are_seconds(value: float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("P1Y", "years or months"),
        ("P2M", "years or months"),
        ("P", "has no components"),
        ("PT", "'T' with no hours"),
        ("P1DT", "'T' with no hours"),
        ("PT1.5M30S", "only the smallest component may have a fraction"),
        ("pt5m", "upper case"),
        ("PT5m", "upper case"),
        ("PT5X", "not an ISO-8601 duration"),
        ("P5S", "not an ISO-8601 duration"),  # seconds need the T
        ("PT1S1M", "not an ISO-8601 duration"),  # wrong order
        ("5", "missing unit"),
        ("1m30", "missing unit after '30'"),
        ("5 s", "not a duration"),
        ("5M", "not a duration"),  # Go units are case-sensitive
        ("5d", "not a duration"),
        ("-5s", "negative durations are not allowed"),
        ("", "empty duration"),
        (-1, "non-negative"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        (True, "boolean"),
        (None, "got NoneType"),
        (["5s"], "got list"),
    ],
)
def test_invalid_durations_name_the_field_and_the_problem(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=r"^spec\.delivery\.timeout: ") as caught:
        parse_duration(value, field="spec.delivery.timeout")
    assert message in str(caught.value)
