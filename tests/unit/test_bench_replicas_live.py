"""bench/replicas.py reads when each subscription went live from a replica's log, outside the process."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from bench.replicas import TableLog, live_times


def test_the_kth_written_subscription_is_live_at_the_first_install_routing_k_of_them() -> None:
    installs = [(100, 1), (200, 3), (300, 3), (400, 5)]  # (when, resources routed); 1 was there before
    ordered = ["a", "b", "c", "d"]
    assert live_times(installs, 1, ordered) == {"a": 200, "b": 200, "c": 400, "d": 400}
    assert live_times([(100, 1), (200, 2)], 1, ordered) == {"a": 200}  # the rest never went live


def test_installs_are_read_from_the_json_log_as_they_are_written(tmp_path: Path) -> None:
    log = tmp_path / "replica.log"
    at = datetime.datetime(2026, 1, 1, 12, 0, 0, 250_000, tzinfo=datetime.UTC)

    def line(message: str, logger: str = "openconnector.reconciler") -> str:
        entry = {"time": at.isoformat(timespec="milliseconds"), "level": "INFO", "logger": logger}
        return json.dumps({**entry, "message": message}) + "\n"

    log.write_text(line("routing table v3 installed: 5 resources (1 not ready) in 2.0 ms"))
    table = TableLog(log)
    assert table.routed() == 4  # not-ready resources route nothing
    with log.open("a") as out:
        out.write(line("something else entirely", "kopf"))
        out.write(
            '{"time": "2026-01-01T12:00:00.300+00:00", "message": "routing table v4 inst'
        )  # half a line
    assert len(table.poll()) == 1
    with log.open("a") as out:
        out.write('alled: 7 resources (0 not ready) in 1.0 ms"}\n')
    (first, _), (second, routed) = table.poll()
    assert routed == 7
    assert second - first == 50_000_000  # ms timestamps, one clock
