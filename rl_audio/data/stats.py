"""Summary statistics of a manifest, as printed by the CLI.

``negatives`` counts the negative queries (existence rows with ``exists`` false, SpotSound §3.1);
``absent_grounding`` the grounding rows without windows, a form the schema loads but no builder here writes.

``window_coverage`` is SpotSound's (arXiv:2604.13023, Table 2) window-to-audio ratio: the mean, over rows with
windows, of total window length divided by clip duration. Short needles in long hay give small values.

>>> rows = [{"audio": "a.wav", "duration": 10.0, "task": "grounding", "windows": [[1.0, 2.0]]},
...         {"audio": "a.wav", "duration": 10.0, "task": "existence", "windows": []}]
>>> s = summarize(rows)
>>> s["rows"], s["clips"], s["tasks"], s["window_coverage"]
(2, 1, {'existence': 1, 'grounding': 1}, 0.1)
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def summarize(rows: list[dict], skipped: Counter | dict | None = None) -> dict:
    """Rows, per-task counts, distinct clips, clip duration stats, window coverage and skipped rows by reason."""
    durations = np.array(list({r["audio"]: r["duration"] for r in rows}.values()), dtype=float)
    coverage = [sum(e - s for s, e in r["windows"]) / r["duration"] for r in rows if r.get("windows")]
    summary = {
        "rows": len(rows),
        "clips": int(durations.size),
        "tasks": dict(sorted(Counter(r["task"] for r in rows).items())),
        "duration_s": {
            "total": round(float(durations.sum()), 2),
            "mean": round(float(durations.mean()), 2) if durations.size else 0.0,
            "min": round(float(durations.min()), 2) if durations.size else 0.0,
            "max": round(float(durations.max()), 2) if durations.size else 0.0,
        },
        "window_coverage": round(float(np.mean(coverage)), 4) if coverage else None,
        "negatives": sum(r["task"] == "existence" and r.get("exists") is False for r in rows),
        "absent_grounding": sum(r["task"] == "grounding" and not r.get("windows") for r in rows),
    }
    if skipped:
        summary["skipped"] = dict(sorted(Counter(skipped).items()))
    return summary


def format_summary(summary: dict) -> str:
    """Human-readable multi-line version of :func:`summarize`."""
    d = summary["duration_s"]
    lines = [
        f"rows: {summary['rows']}  clips: {summary['clips']}",
        "per task: " + (", ".join(f"{t}={n}" for t, n in summary["tasks"].items()) or "none"),
        f"clip duration (s): total {d['total']}, mean {d['mean']}, min {d['min']}, max {d['max']}",
        f"window coverage (mean window length / duration): {summary['window_coverage']}",
        f"negative queries (existence, exists false): {summary['negatives']}",
    ]
    if summary.get("absent_grounding"):
        lines.append(
            f"grounding rows without windows: {summary['absent_grounding']} (absent events: scored as negatives by "
            "evaluation, but no training target; ask them as existence rows)"
        )
    skipped = summary.get("skipped")
    lines.append("skipped: " + (", ".join(f"{k}={n}" for k, n in skipped.items()) if skipped else "none"))
    return "\n".join(lines)
