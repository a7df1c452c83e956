"""After start-up the gateway process freezes what start-up made and collects the youngest generation
less often (docs/operations.md, "The garbage collector")."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from bench.servers import BASELINE_YOUNG_GC_THRESHOLD

from openconnector.runtime import YOUNG_GC_THRESHOLD, settle_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_gc_freezes_start_up_and_raises_only_the_youngest_threshold() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    settle_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, 10, 10)
    assert YOUNG_GC_THRESHOLD == 5000  # the figure docs/operations.md states


def test_the_bench_baselines_collect_as_the_gateway_does() -> None:
    """bench/servers.py's bare aiohttp baselines use the gateway's setting, so that it is not counted as
    the gateway's gain over them."""
    assert BASELINE_YOUNG_GC_THRESHOLD == YOUNG_GC_THRESHOLD
