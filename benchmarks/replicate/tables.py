"""Collect each run's metrics, aggregate over seeds (mean ± std) and compare variants against seed noise."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

from plan import EB_F1_SETTINGS

import rewards
from rl_audio.data import load_manifest

# "beyond seed noise": a two-sided t-test over seeds at p < 0.05. The runs of one seed share the base model, the
# initialisation and the data order, so two variants are compared seed by seed (paired t-test on the per-seed
# differences; Welch's unpaired test is shown beside it). With fewer than two seeds nothing can be said.
ALPHA = 0.05


def read_metrics(run: Path, manifest: str | None) -> dict | None:
    """The evaluation metrics of one run, for one manifest (``per_manifest`` when several were evaluated)."""
    path = run / "eval" / "metrics.json"
    if not path.exists():
        return None
    metrics = json.loads(path.read_text())
    if manifest and "per_manifest" in metrics:
        return metrics["per_manifest"].get(manifest)
    return metrics


def grounding_event_f1(run: Path, manifest_name: str, manifest_path: str) -> float | None:
    """Mean event-based F1 over the positive grounding rows: the ``eb_f1`` reward with the settings GRPO trains on
    (a pure 0.2 s collar, plan.EB_F1_KWARGS; windows under 0.1 s earn nothing)."""
    path = run / "eval" / "predictions.jsonl"
    if not path.exists():
        return None
    rows = {r["id"]: r for r in load_manifest(manifest_path)}
    texts, picked = [], []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        row = rows.get(item["id"])
        if item.get("manifest") == manifest_name and row is not None and row["windows"]:
            texts.append(item["prediction"])
            picked.append(row)
    if not picked:
        return None
    scores = rewards.get("eb_f1", **EB_F1_SETTINGS)(
        texts,
        task=[r["task"] for r in picked],
        windows=[r["windows"] for r in picked],
        duration=[r["duration"] for r in picked],
    )
    return statistics.fmean(float(s) for s in scores)


def log_values(log: Path, key: str) -> list[float]:
    """Every value a Trainer logged for ``key`` in a run's log (``{'key': '0.5', ...}`` lines)."""
    if not log.exists():
        return []
    pattern = re.compile(rf"'{re.escape(key)}': '?([-+0-9.eE]+|nan)'?")
    return [float(v) for v in pattern.findall(log.read_text()) if v != "nan"]


def stage_seconds(run: Path, label: str) -> float | None:
    path = run / f"{label}.time.json"
    return json.loads(path.read_text())["seconds"] if path.exists() else None


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


def fmt(values: list[float | None], scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std`` (scaled; percentages by default), ``mean`` alone with one value, ``-`` with none."""
    mean, std, n = mean_std(values)
    if mean is None:
        return "-"
    if std is None:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test, or None with fewer than two values per side or no variance at all."""
    a = [v for v in a if v is not None]
    b = [v for v in b if v is not None]
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a), statistics.variance(b)
    se2 = va / len(a) + vb / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if se2 == 0:
        return 0.0 if diff != 0 else 1.0
    t = diff / math.sqrt(se2)
    df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1)) if va + vb > 0 else 1.0
    from scipy.stats import t as student_t

    return float(2 * student_t.sf(abs(t), df))


def paired_p(a: list[float | None], b: list[float | None]) -> float | None:
    """Two-sided p-value of the paired t-test on ``a[k] - b[k]`` (same seed), or None unless every seed has both."""
    if len(a) != len(b) or len(a) < 2 or any(v is None for v in [*a, *b]):
        return None
    diffs = [x - y for x, y in zip(a, b)]
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    if sd == 0:
        return 0.0 if mean != 0 else 1.0
    from scipy.stats import t as student_t

    return float(2 * student_t.sf(abs(mean / (sd / math.sqrt(len(diffs)))), len(diffs) - 1))


def verdict(a: list[float | None], b: list[float | None], claim: int) -> str:
    """Measured direction of ``mean(a) - mean(b)`` against the paper's (``claim`` +1: a > b, -1: a < b, 0: none),
    whether it lies beyond seed noise (paired t-test when every seed has both runs, else Welch's), and the per-seed
    differences. ``a`` and ``b`` are indexed by seed."""
    ma, _, _ = mean_std(a)
    mb, _, _ = mean_std(b)
    if ma is None or mb is None:
        return "not measured"
    diff = ma - mb
    welch = welch_p([v for v in a if v is not None], [v for v in b if v is not None])
    paired = paired_p(a, b)
    p = paired if paired is not None else welch
    sign = 0 if diff == 0 else (1 if diff > 0 else -1)
    direction = {1: "higher", -1: "lower", 0: "no difference"}[sign]
    if p is None:
        noise = "one seed: noise unknown"
    else:
        test = f"paired p={p:.3f}, Welch p={welch:.3f}" if paired is not None else f"Welch p={p:.3f}"
        noise = f"{'beyond' if p < ALPHA else 'within'} seed noise ({test})"
    if paired is not None and len(a) > 1:
        noise += "; per seed " + " / ".join(f"{(x - y) * 100:+.1f}" for x, y in zip(a, b))
    if sign == 0:
        return f"{diff * 100:+.1f} (no difference; {noise})"
    if claim == 0:
        agrees = "paper: no direction"
    else:
        agrees = "as the paper" if sign == claim else "opposite to the paper"
    return f"{diff * 100:+.1f} ({direction}; {agrees}; {noise})"
