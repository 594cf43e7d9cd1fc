"""The replication study's quick mode runs end to end and writes every table (benchmarks/replicate).

Only the pipeline is checked: quick mode trains for a few steps, so its numbers mean nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# the first cell of each row of the four tables; each row must carry a measured number in its second cell
TABLE_ROWS = {
    "## Row 1.": ["no timestamps", "text interleave, 1 s", "timestamp tokens, semantic init",
                  "timestamp tokens, random init"],
    "## Row 2.": ["GRPO, event F1 alone", "GRPO, variance-gated event F1 x mIoU"],
    "## Row 3.": ["text 1 s, with negatives", "text 1 s, without negatives"],
    "## Row 4.": ["text interleave, 0.2 s", "text interleave, 1 s", "text interleave, 2 s"],
}  # fmt: skip


@pytest.mark.slow
def test_quick_study_writes_every_table(tmp_path, subprocess_env):
    out = tmp_path / "study"
    cmd = [sys.executable, "benchmarks/replicate/run.py", "--quick", "--out", str(out), "--jobs", "2"]
    result = subprocess.run(cmd, cwd=ROOT, env=subprocess_env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    text = (out / "results.md").read_text()
    assert "QUICK MODE" in text
    sections = re.split(r"(?m)^(?=## )", text)
    for heading, labels in TABLE_ROWS.items():
        section = next((s for s in sections if s.startswith(heading)), None)
        assert section is not None, f"{heading} missing from results.md"
        for label in labels:
            row = re.search(rf"(?m)^\| {re.escape(label)} \| ([^|]+) \|", section)
            assert row is not None, f"{heading}: no table row {label!r}"
            assert re.fullmatch(r"\s*-?\d+(\.\d+)?( ± \d+(\.\d+)?)?\s*", row.group(1)), (heading, label, row.group(0))
    # the results can be rendered again from the finished runs, without training
    (out / "results.md").unlink()
    again = subprocess.run([*cmd, "--report-only"], cwd=ROOT, env=subprocess_env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-4000:]
    assert (out / "results.md").read_text() == text
