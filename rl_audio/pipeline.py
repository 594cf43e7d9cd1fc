"""The whole pipeline on the embedded default: data -> SFT -> GRPO -> evaluation of both checkpoints.

    python -m rl_audio.pipeline [--out outputs/pipeline] [--sft-recipe ...] [--grpo-recipe ...] [--force]

Each stage runs the same command a user would (`python -m rl_audio.sft RECIPE ...`, `python -m rl_audio.grpo ...`,
`python -m rl_audio.evaluate ...`) in a subprocess, on a tiny preset and generated audio, so it runs on a CPU in
minutes. A stage whose output already exists is skipped (rerun after an interruption to continue); `--force`
reruns everything. At the end a table compares the SFT and GRPO checkpoints on the held-out split.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger("rl_audio.pipeline")

ROOT = Path(__file__).resolve().parents[1]
SUMMARY_KEYS = (
    ("grounding", "mIoU"),
    ("grounding", "R1@0.5"),
    ("existence", "accuracy_positive"),
    ("existence", "accuracy_negative"),
    ("two_stage", "f1"),
)


def _run(stage: str, args: list[str]) -> float:
    cmd = [sys.executable, "-m", *args]
    logger.info("%s: %s", stage, " ".join(cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.time() - t0


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)):
            flat[f"{prefix}{k}"] = v
    return flat


def summary_table(results: dict[str, dict]) -> str:
    flats = {name: _flatten(m) for name, m in results.items()}
    keys = sorted({k for f in flats.values() for k in f if any(part in k for _, part in SUMMARY_KEYS)})
    lines = ["| metric | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for k in keys:
        cells = [f"{flats[name][k]:.3f}" if k in flats[name] else "-" for name in results]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/pipeline", help="Output folder (relative to the repository root).")
    p.add_argument("--sft-recipe", default="recipes/cpu/pipeline_sft.yaml")
    p.add_argument("--grpo-recipe", default="recipes/cpu/grpo_timepro.yaml")
    p.add_argument("--sft-steps", type=int, default=None, help="Override the SFT recipe's max_steps.")
    p.add_argument("--grpo-steps", type=int, default=None, help="Override the GRPO recipe's max_steps.")
    p.add_argument("--force", action="store_true", help="Rerun stages whose outputs exist.")
    a = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    out = Path(a.out)
    data = ["--data_dir", str(out / "data"), "--default_data_clips", "64"]  # one data set for every stage
    sft_final, grpo_final = out / "sft" / "final", out / "grpo" / "final"
    times = {}
    if a.force or not (sft_final / "rl_audio.json").exists():
        extra = ["--max_steps", str(a.sft_steps)] if a.sft_steps else []
        times["sft"] = _run("sft", ["rl_audio.sft", a.sft_recipe, "--output_dir", str(out / "sft"), *data, *extra])
    if a.force or not (grpo_final / "rl_audio.json").exists():
        extra = ["--max_steps", str(a.grpo_steps)] if a.grpo_steps else []
        times["grpo"] = _run(
            "grpo",
            ["rl_audio.grpo", a.grpo_recipe, "--model_name_or_path", str(sft_final), "--output_dir",
             str(out / "grpo"), *data, *extra],
        )  # fmt: skip
    results = {}
    for name, ckpt in (("sft", sft_final), ("grpo", grpo_final)):
        eval_dir = out / f"eval_{name}"
        times[f"eval_{name}"] = _run(
            f"evaluate {name}",
            ["rl_audio.evaluate", "--model_name_or_path", str(ckpt), "--output_dir", str(eval_dir), *data,
             "--tasks", "[grounding, existence]"],
        )  # fmt: skip
        results[name] = json.loads((eval_dir / "metrics.json").read_text())
    table = summary_table(results)
    (out / "summary.md").write_text(f"# Pipeline summary\n\n{table}\n\nStage times (s): {json.dumps(times)}\n")
    print(f"\n{table}\n\nStage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print(
        f"Reports: {out / 'eval_sft' / 'report.md'}, {out / 'eval_grpo' / 'report.md'}; summary: {out / 'summary.md'}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
