"""The message-log benchmark runs end to end at the tiny size and writes well-formed results (no timing
asserted)."""

from __future__ import annotations

from pathlib import Path

from tests.component.test_bench_smoke import _goals_ok, _run


async def test_messages(tmp_path: Path) -> None:
    result = await _run("messages", tmp_path)
    assert result["count"] == 1_000
    assert result["paging"]["pages"] == 10
    assert result["memory"]["bytes_per_message"] > 0
    _goals_ok(result)
