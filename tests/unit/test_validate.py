"""`openconnector validate`: one precise message per problem, exit code, and examples/ passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from openconnector.cli import main
from openconnector.validate import validate_paths

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "fixtures" / "invalid" / "broken.yaml"


def test_examples_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "examples")]) == 0
    assert capsys.readouterr().out == ""


def test_broken_fixtures_give_one_precise_message_each(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(BROKEN)]) == 1
    lines = capsys.readouterr().out.splitlines()
    expected_prefixes = [
        f"{BROKEN}:1: EventSubscription/unknown-dialect: spec.filters[0]: unknown dialect",
        f"{BROKEN}:2: EventSubscription/bad-sql: spec.filters[0].sql:",
        f"{BROKEN}:3: EventSubscription/bad-status: spec.status: 'running' is not allowed",
        f"{BROKEN}:4: EventSubscription/bad-method: spec.method: 'DELETE' is not allowed",
        f"{BROKEN}:5: Consumer/bad-target-type: spec.targetType: 'db' is not allowed",
        f"{BROKEN}:6: Consumer/missing-mapping: spec.mappingId: Mapping 'does-not-exist' not found",
    ]
    assert len(lines) == len(expected_prefixes), lines
    for line, prefix in zip(lines, expected_prefixes, strict=True):
        assert line.startswith(prefix), (line, prefix)


def test_sql_message_says_where(capsys: pytest.CaptureFixture[str]) -> None:
    findings, _ = validate_paths([BROKEN])
    sql = next(f for f in findings if f.subject == "EventSubscription/bad-sql")
    assert "column" in sql.message.lower()


def test_unreadable_yaml_and_unknown_kind(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("kind: [unclosed\n")
    (tmp_path / "b.yaml").write_text(
        "apiVersion: openconnector.nl/v1alpha1\nkind: Webhook\nmetadata: {name: x}\n"
    )
    findings, checked = validate_paths([tmp_path])
    assert checked == 0
    assert [str(f).split(": ", 1)[1].split(":")[0] for f in findings] == [
        "cannot read YAML",
        "unknown kind 'Webhook'",
    ]


def test_duplicate_names_are_reported(tmp_path: Path) -> None:
    doc = (
        "apiVersion: openconnector.nl/v1alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {mapping: {a: b}}\n"
    )
    (tmp_path / "m.yaml").write_text(doc + "---\n" + doc)
    findings, _ = validate_paths([tmp_path])
    assert [(f.field, f.message.split(" of ")[0]) for f in findings] == [("metadata.name", "duplicate")]


def test_missing_path_is_exit_2(tmp_path: Path) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 2


def test_types_are_strict_as_on_the_apiserver(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "apiVersion: openconnector.nl/v1alpha1\nkind: EventSubscription\nmetadata: {name: s}\n"
        "spec: {eventType: nl.a.b.c, endpoint: 'http://127.0.0.1:1/x', delivery: {retries: '3'}}\n"
        "---\n"
        "apiVersion: openconnector.nl/v1alpha1\nkind: Event\nmetadata: {name: e}\n"
        "spec: {type: nl.a.b.c, source: 'urn:nld:x', isEnabled: 'false'}\n"
    )
    findings, _ = validate_paths([tmp_path])
    assert [(f.field, f.message) for f in findings] == [
        ("spec.delivery.retries", "Input should be a valid integer"),
        ("spec.isEnabled", "Input should be a valid boolean"),
    ]


def test_unserved_versions_and_bad_names_are_reported(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(
        "apiVersion: openconnector.nl/v9\nkind: Mapping\nmetadata: {name: m}\nspec: {}\n"
        "---\n"
        "apiVersion: openconnector.nl/v1alpha1\nkind: Mapping\nmetadata: {name: Bad_Name}\nspec: {}\n"
    )
    findings, checked = validate_paths([tmp_path])
    assert checked == 0
    assert [f.message for f in findings] == [
        "Mapping: apiVersion 'openconnector.nl/v9' is not served; use openconnector.nl/v1alpha1",
        "Mapping/Bad_Name: metadata.name must be a lowercase RFC 1123 name",
    ]
