"""The Markdown report: one table per task, unparseable answers, per-manifest results, figures and the config.

Scores print as percentages with one decimal, as the papers print them; counts and ``regions_explored`` (a mean
count) print as they are. ``metrics.json`` holds the same values as fractions.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import yaml

from .metrics import TASK_ORDER

_COUNTS = {"n", "n_positive", "n_negative", "pairs", "tp", "fp", "fn", "tn", "n_ref", "n_est", "unpaired_existence"}
_PLAIN = {"regions_explored"}
_TITLES = {
    "grounding": "Grounding (SpotSound §4.1; R1@θ and mIoU over positive queries)",
    "existence": "Existence (SpotSound §4.2)",
    "two_stage": "Two-stage joint F1 (SpotSound §4.3)",
    "cascaded": "Cascaded inference: presence, then grounding only after a yes (SpotSound §2.1, App. C.1)",
    "sed": "Sound event detection (event-based F1, TimePro-RL §3.1)",
    "dac": "Dense audio captioning (METEOR and event-based F1, TimePro-RL §3.1)",
    "sta": "Timestamp alignment (TGSR Table 1)",
    "qa": "Multiple-choice QA (accuracy)",
    "behaviour": "Reasoning behaviour (TGSR Table 3)",
}


def fmt(key: str, value) -> str:
    """A value as the report prints it: a score in percent, a count as is.

    >>> fmt("mIoU", 0.4567), fmt("n", 12), fmt("regions_explored", 1.25), fmt("eb_f1_macro", None)
    ('45.7', '12', '1.25', '-')
    """
    if value is None:
        return "-"
    if key in _COUNTS or key.startswith("n_") or isinstance(value, bool):
        return str(value)
    if key in _PLAIN:
        return f"{value:.2f}"
    if isinstance(value, (int, float)):
        return f"{100 * value:.1f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _task_section(task: str, values: dict) -> list[str]:
    lines = [f"### {_TITLES.get(task, task)}", ""]
    scalars = [[k, fmt(k, v)] for k, v in values.items() if not isinstance(v, dict)]
    lines += _table(["metric", "value"], scalars)
    if task == "sed" and values.get("per_class"):
        lines += ["", "Per class (event-based F1):", ""]
        lines += _table(["class", "F1"], [[c, fmt("f1", v)] for c, v in values["per_class"].items()])
    if task == "qa":
        for key, groups in values.get("by", {}).items():
            lines += ["", f"By `{key}`:", ""]
            lines += _table(
                [key, "n", "accuracy"], [[g, str(v["n"]), fmt("acc", v["accuracy"])] for g, v in groups.items()]
            )
    return lines + [""]


def _results(metrics: dict) -> list[str]:
    lines = []
    for task in TASK_ORDER:
        if task in metrics:
            lines += _task_section(task, metrics[task])
    return lines


# The main number of each task, for one-line summaries.
HEADLINE = {
    "grounding": "mIoU",
    "existence": "accuracy",
    "two_stage": "f1",
    "cascaded": "mIoU",
    "sed": "eb_f1",
    "dac": "meteor",
    "sta": "mIoU",
    "qa": "accuracy",
}


def _headline(metrics: dict) -> list[str]:
    """One line per manifest with the main number of each task."""
    keys = HEADLINE
    header = ["manifest", "rows"] + [f"{t} {k}" for t, k in keys.items()]
    rows = []
    for name, values in metrics["per_manifest"].items():
        cells = [fmt(k, values.get(t, {}).get(k)) if t in values else "-" for t, k in keys.items()]
        rows.append([name, str(values["rows"]), *cells])
    return _table(header, rows)


def render_report(metrics: dict, cfg, manifests: list[str], figures: list[Path], output_dir: Path) -> str:
    """The report text; figure links are relative to ``output_dir``."""
    lines = [
        "# Evaluation report",
        "",
        f"- model: `{cfg.model_name_or_path}`",
        f"- timestamps: `{cfg.timestamp_mode}`, answer style: `{cfg.answer_style}`",
        f"- manifests: {', '.join(f'`{m}`' for m in manifests)}",
        f"- rows: {metrics['rows']} ({', '.join(f'{t}: {n}' for t, n in metrics['tasks'].items())})",
        f"- decoding: {'sampling' if cfg.do_sample else 'greedy'}, max_new_tokens {cfg.max_new_tokens}",
        f"- written: {datetime.datetime.now().isoformat(timespec='seconds')}",
        "",
        "Scores are percentages (metrics.json holds fractions); unparseable answers count as misses.",
        "",
        "## Unparseable answers",
        "",
    ]
    lines += _table(
        ["task", "rows", "unparseable"],
        [[t, str(metrics["tasks"][t]), str(n)] for t, n in metrics["unparseable"].items()],
    )
    lines += ["", "## Results", ""] + _results(metrics)
    if "per_manifest" in metrics:
        lines += ["## Per manifest", ""] + _headline(metrics) + [""]
        for name, values in metrics["per_manifest"].items():
            lines += [f"## {name}", ""] + _results(values)
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{f.stem}]({f.relative_to(output_dir).as_posix()})" for f in figures]
        lines += [""]
    config = yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=True, allow_unicode=True)
    lines += ["## Configuration", "", "```yaml", config.rstrip(), "```", ""]
    return "\n".join(lines)
