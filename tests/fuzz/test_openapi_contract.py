"""The gateway answers as its OpenAPI document says.

Schemathesis (its CLI, as a user would run it) reads ``/api/v1alpha1/openapi.json`` from a running gateway,
generates requests for every documented operation (examples, coverage and fuzzing phases, a fixed seed)
and checks every answer: no 5xx, a documented status, content type, headers and response schema, invalid
input refused, valid input accepted, authentication enforced. Exceptions are in ``schemathesis.toml`` with
their reasons.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.harness import FuzzGateway, start_fuzz_gateway

CONFIG = Path(__file__).with_name("schemathesis.toml")
API_TOKEN = "contract-api-token-0123456789"
SEED = 20261206


@pytest.fixture(scope="module")
def contract_gateway(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch
) -> Iterator[FuzzGateway]:
    monkeypatch_module.setenv("OPENCONNECTOR_API_TOKEN", API_TOKEN)  # the gateway process inherits it
    gateway = start_fuzz_gateway(tmp_path_factory.mktemp("contract"))
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_operation_answers_as_its_openapi_document_says(
    contract_gateway: FuzzGateway, tmp_path: Path
) -> None:
    schemathesis = Path(sys.executable).with_name("st")
    url = f"http://127.0.0.1:{contract_gateway.port}"
    run = subprocess.run(
        [str(schemathesis), "--no-color", "--config-file", str(CONFIG),
         "run", f"{url}/api/v1alpha1/openapi.json", "--url", url,
         "--header", f"Authorization: Bearer {API_TOKEN}",
         "--phases", "examples,coverage,fuzzing", "--seed", str(SEED), "--workers", "1"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache stays out of the repo
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "18/18" in report, report  # every documented operation was exercised
    assert "Tested: 18" in report, report
