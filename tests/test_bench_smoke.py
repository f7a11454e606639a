"""The benchmark suite runs end to end in smoke mode; its figures are not judged here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.suite import FIGURES

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_quick_bench_writes_a_row_for_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "BENCH.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = output.read_text(encoding="utf-8")
    missing = [name for f in FIGURES for name in f.row_names if f"| {name} |" not in table]
    assert missing == [], table
