"""An Event's counters: ``published`` counts every event of the type published for fan-out, and the
status still calls it ``emitted`` (the status field is API)."""

from __future__ import annotations

from openconnector.status.counters import EventStats


def test_published_events_are_the_status_field_emitted() -> None:
    stats = EventStats()
    stats.received += 1  # accepted on /events, then published
    stats.record_published(0.0)
    stats.record_published(1.5)  # emitted by a Consumer: published, not received
    assert stats.snapshot() == {
        "received": 1,
        "emitted": 2,
        "refused": 0,
        "lastEmitted": "1970-01-01T00:00:01Z",
    }


def test_a_restart_continues_from_the_status_field_emitted() -> None:
    stats = EventStats()
    stats.seed({"received": 3, "emitted": 7, "refused": 1, "lastEmitted": "2026-01-01T00:00:00Z"})
    assert (stats.received, stats.published, stats.refused) == (3, 7, 1)
    assert "lastEmitted" not in stats.snapshot()  # the time is this process's own
