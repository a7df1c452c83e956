"""bench.instructions: reading callgrind's dumps and building the command (the run itself needs valgrind and
half a minute per server, so it is a tool, not a test; what it reads and runs is checked here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.instructions import _last_dump, callgrind_total, under_callgrind

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 15132
cmd:  python -m openconnector.cli serve
part: 1

desc: I1 cache:
positions: line
events: Ir
summary: 668271409

fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
16 3

totals: 668271409
"""


def test_reads_the_total_instruction_count() -> None:
    assert callgrind_total(DUMP) == 668_271_409


def test_prefers_totals_and_falls_back_to_summary() -> None:
    assert callgrind_total("summary: 12\ntotals: 34\n") == 34
    assert callgrind_total("events: Ir\nsummary: 12\n") == 12


def test_refuses_what_is_not_a_dump() -> None:
    with pytest.raises(ValueError, match="not a callgrind dump"):
        callgrind_total("events: Ir\nfn=(1) main\n16 3\n")


def test_counting_starts_off_and_writes_where_asked(tmp_path: Path) -> None:
    out = tmp_path / "cg.out"
    command = under_callgrind(["python", "-m", "bench.servers", "accept"], out)
    assert command[:3] == ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    assert f"--callgrind-out-file={out}" in command
    assert command[-4:] == ["python", "-m", "bench.servers", "accept"]


def test_takes_the_last_dump(tmp_path: Path) -> None:
    out = tmp_path / "cg.out"
    assert _last_dump(out) is None
    (tmp_path / "cg.out.1").write_text("totals: 1\n")
    (tmp_path / "cg.out.2").write_text("totals: 2\n")
    (tmp_path / "other.out.3").write_text("totals: 3\n")
    dumped = _last_dump(out)
    assert dumped is not None
    assert callgrind_total(dumped) == 2
    (tmp_path / "cg.out.10").write_text("totals: 10\n")  # by number, not as text
    dumped = _last_dump(out)
    assert dumped is not None
    assert callgrind_total(dumped) == 10
