"""Issue 16, friction: `make help` prints the real URL in aligned columns, and `make cluster` says what it
does and how long it takes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make") or "make"


def make(*args: str) -> str:
    done = subprocess.run([MAKE, "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return done.stdout


def test_help_shows_the_real_url_in_aligned_columns() -> None:
    lines = make("help", "HOST=127.0.0.1", "PORT=9090").splitlines()
    run = next(line for line in lines if line.split()[1] == "run")
    assert "(http://127.0.0.1:9090)" in run
    assert "$(" not in "\n".join(lines).replace('"$(make -s env)"', "")
    # Every description starts in the same column.
    starts = {re.match(r"  make \S+\s+", line).end() for line in lines}  # type: ignore[union-attr]
    assert len(starts) == 1, lines


def test_cluster_announces_its_steps_and_expected_times() -> None:
    recipe = make("-n", "cluster", "VENV=.venv")
    assert "1/2" in recipe
    assert "2/2" in recipe
    assert "expected" in recipe
    assert "make -s env" in recipe
    assert "kubectl" in recipe


def test_bench_installs_and_insists_on_wrk() -> None:
    # The ratios in docs/benchmarks.md are measured with wrk; a fresh machine must not silently fall back
    # to the costlier Python load generator and publish figures that do not compare.
    recipe = make("-n", "bench", "VENV=.venv")
    assert "apt-get install -y -qq wrk" in recipe
    assert "command -v wrk" in recipe
    assert "-m bench.run --loadgen wrk" in recipe
    assert recipe.index("command -v wrk") < recipe.index("-m bench.run")
