"""The request-limit flags refuse an out-of-range value with a usage error (exit 2) naming the flag,
not a traceback from RequestLimits when the gateway starts (session 12's docs audit)."""

from __future__ import annotations

import argparse

import pytest

from openconnector.gateway.limits import MAX_ALLOWED_DEPTH, RequestLimits, add_limit_flags, limits_from_args


def parser() -> argparse.ArgumentParser:
    built = argparse.ArgumentParser(prog="serve")
    add_limit_flags(built)
    return built


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--max-json-depth", "0"], "argument --max-json-depth: must be 1..250, got 0"),
        (
            ["--max-json-depth", str(MAX_ALLOWED_DEPTH + 1)],
            "argument --max-json-depth: must be 1..250, got 251",
        ),
        (["--max-json-depth", "deep"], "argument --max-json-depth: not an integer: 'deep'"),
        (["--header-timeout", "0"], "argument --header-timeout: must be a positive number of seconds, got 0"),
        (["--body-timeout", "-1"], "argument --body-timeout: must be a positive number of seconds, got -1"),
        (
            ["--keepalive-timeout", "nan"],
            "argument --keepalive-timeout: must be a positive number of seconds",
        ),
        (
            ["--keepalive-timeout", "inf"],
            "argument --keepalive-timeout: must be a positive number of seconds",
        ),
        (["--max-connections", "0"], "argument --max-connections: must be at least 1, got 0"),
    ],
)
def test_an_out_of_range_limit_is_a_usage_error(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_limits_at_the_ends_of_their_ranges_are_taken() -> None:
    argv = [
        "--max-json-depth",
        "1",
        "--header-timeout",
        "0.5",
        "--body-timeout",
        "1e3",
        "--max-connections",
        "1",
    ]
    limits = limits_from_args(parser().parse_args(argv))
    assert limits == RequestLimits(
        max_json_depth=1, header_timeout=0.5, body_timeout=1000.0, max_connections=1
    )
    deepest = limits_from_args(parser().parse_args(["--max-json-depth", str(MAX_ALLOWED_DEPTH)]))
    assert deepest.max_json_depth == MAX_ALLOWED_DEPTH
