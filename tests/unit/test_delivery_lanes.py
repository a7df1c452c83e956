"""Installed lanes are cheap until used, and refusals are cheap until read (pure: no event loop)."""

from __future__ import annotations

import gc
import math
import tracemalloc
from collections.abc import Mapping

import pytest
from tests.support.engine_events import Event
from tests.support.keys import sub_key

from openconnector.delivery import ContentMode, DeliveryTarget, Dispatcher, OfferResult


def encode(event: Event, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    return {"Content-Type": "application/json"}, b"{}"


def test_installing_a_target_costs_a_few_hundred_bytes_not_a_queue() -> None:
    count = 2000
    engine: Dispatcher[Event] = Dispatcher(encode)
    targets = [
        DeliveryTarget(key=sub_key(f"ns/sub-{n}"), url=f"http://127.0.0.1:9/{n}") for n in range(count)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for sub in targets:
            engine.set_target(sub)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # A lane with its queue, events and logs allocated up front took over 6 KiB.
    assert growth / count < 1024
    assert not any(engine.lane_active(sub.key) for sub in targets)
    assert all(engine.queue_depth(sub.key) == 0 for sub in targets)
    assert engine.health(sub_key("ns/sub-7")).condition.reason == "NoDeliveries"


@pytest.mark.parametrize("value", [-1, math.nan, math.inf, True, "30"])
def test_idle_lane_seconds_must_be_a_finite_non_negative_number(value: object) -> None:
    with pytest.raises(ValueError, match=r"^idle_lane_seconds: "):
        Dispatcher(encode, idle_lane_seconds=value)  # type: ignore[arg-type]


def test_an_offer_refusal_formats_its_detail_only_when_read() -> None:
    calls: list[int] = []

    def describe() -> str:
        calls.append(1)
        return "the queue of ns/a is full"

    refused = OfferResult(False, full=[sub_key("ns/a")], describe=describe)
    assert calls == []
    assert refused.detail == "the queue of ns/a is full"
    assert calls == [1]
    assert OfferResult(False, describe="plain").detail == "plain"
    assert OfferResult(True, queued=1).detail == ""
    assert "describe" not in repr(refused)
