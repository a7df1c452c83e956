"""Issue 16, operator logs: each not-ready resource once per change, with kind/namespace/name, field and
reason; Kopf's per-event success lines at DEBUG; ``--log-format json``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from openconnector.cli import build_parser
from openconnector.logformat import JsonFormatter, KopfSuccessToDebug
from openconnector.reconciler import NotReadyLog
from openconnector.resources import Resource
from openconnector.routing.compiler import compile_table
from openconnector.routing.table import RoutingTable

BAD = [{"sqll": "source LIKE 'x%'"}]


def table(filters: object, *, generation: int = 1) -> RoutingTable:
    spec: Mapping[str, Any] = {
        "eventType": "nl.a.b.c",
        "endpoint": "http://127.0.0.1:9/x",
        "filters": filters,
    }
    sub = Resource("EventSubscription", "demo", "orders", spec, generation=generation)
    return compile_table({sub.key: sub}, {}, version=generation)


def test_a_not_ready_resource_is_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.not-ready")
    seen = NotReadyLog(logger)
    with caplog.at_level(logging.INFO, logger="test.not-ready"):
        seen(table(BAD))
        seen(table(BAD))  # the same: nothing new to say
        seen(table([{"sql": "nonsense ("}], generation=2))
        seen(table([{"sql": "true"}], generation=3))
        seen(table([{"sql": "true"}], generation=3))
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert len(lines) == 3, lines
    level, first = lines[0]
    assert level == "WARNING"
    assert first.startswith("EventSubscription/demo/orders not ready: InvalidFilter: spec.filters[0]: ")
    assert 'unknown dialect "sqll"' in first
    assert lines[1][1].startswith(
        "EventSubscription/demo/orders not ready: InvalidFilter: spec.filters[0].sql"
    )
    assert lines[2] == ("INFO", "EventSubscription/demo/orders is ready again")


def test_kopf_success_lines_are_debug(caplog: pytest.LogCaptureFixture) -> None:
    kopf_objects = logging.getLogger("test.kopf-objects")  # kopf's own loggers may not propagate
    kopf_objects.addFilter(KopfSuccessToDebug())
    with caplog.at_level(logging.INFO):
        kopf_objects.info("Handler 'on_event' succeeded.")
        kopf_objects.info("Handler 'on_event' failed temporarily: x")
    assert [r.getMessage() for r in caplog.records] == ["Handler 'on_event' failed temporarily: x"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        kopf_objects.info("Handler 'on_event' succeeded.")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "Handler 'on_event' succeeded.")
    ]


def test_json_log_lines() -> None:
    record = logging.LogRecord("kopf.objects", logging.WARNING, __file__, 1, "ready %s", ("no",), None)
    record.k8s_ref = {"apiVersion": "v1", "kind": "Secret", "namespace": "demo", "name": "s", "uid": "u"}
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "kopf.objects"
    assert entry["message"] == "ready no"
    assert entry["object"] == {"kind": "Secret", "namespace": "demo", "name": "s"}
    assert entry["time"].endswith("+00:00")


def test_log_format_option() -> None:
    assert build_parser().parse_args(["--log-format", "json", "crds"]).log_format == "json"
    assert build_parser().parse_args(["crds"]).log_format == "text"


def test_help_shows_defaults_and_where_run_finds_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    # issue 16: --help showed no defaults and did not say which cluster `run` talks to.
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "$KUBECONFIG" in text
    assert "inside a pod, the ServiceAccount" in text
    assert "gateway port (webhooks, /events, API) (default: 8080)" in text
    assert "(default: 5.0)" in text  # --status-interval
    assert "separate Prometheus port (0: on --port) (default: 0)" in text
    assert "(default: None)" not in text
