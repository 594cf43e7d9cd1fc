"""The GRPO/SFT side-by-side benchmark's quick mode runs end to end and prints both tables, with a number in every
cell (benchmarks/grpo_vs_text.py). Speed targets are the benchmark's business, not a timed test's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_grpo_vs_text_quick_prints_both_tables(subprocess_env):
    cmd = [sys.executable, "benchmarks/grpo_vs_text.py", "--quick"]
    result = subprocess.run(cmd, cwd=ROOT, env=subprocess_env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert "GRPO step" in out and "SFT step" in out
    for kind in ("audio, cache", "audio, no cache", "text (TRL)"):
        rows = re.findall(rf"(?m)^\| 2 \| 2 \| {re.escape(kind)} \|(.+)\|$", out)
        assert len(rows) == 2, kind  # one GRPO row and one SFT row
        for row in rows:
            cells = [c.strip() for c in row.split("|")]
            assert all(re.fullmatch(r"[0-9.]+", c) for c in cells), row
