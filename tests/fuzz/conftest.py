"""Fuzz tier: a real gateway process on loopback, hit by Hypothesis-generated hostile requests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.harness import FuzzGateway, start_fuzz_gateway


@pytest.fixture(scope="session")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzGateway]:
    gateway = start_fuzz_gateway(tmp_path_factory.mktemp("fuzz"))
    try:
        yield gateway
    finally:
        gateway.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.fuzz.harness import SUMMARY

    if SUMMARY:
        terminalreporter.write_sep("-", "fuzz tier")
        for line in SUMMARY:
            terminalreporter.write_line(line)
