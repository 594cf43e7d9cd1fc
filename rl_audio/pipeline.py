"""The whole pipeline on the embedded default: data -> SFT -> GRPO -> evaluation of both checkpoints.

    python -m rl_audio.pipeline [--out outputs/pipeline] [--sft-recipe ...] [--grpo-recipe ...] [--force]

Each stage runs the same command a user would (`python -m rl_audio.sft RECIPE ...`, `python -m rl_audio.grpo ...`,
`python -m rl_audio.evaluate ...`) in a subprocess, on a tiny preset and generated audio, so it runs on a CPU in
minutes. A stage whose output already exists is skipped (rerun after an interruption to continue); `--force`
reruns everything. At the end a table compares the untrained model, the SFT checkpoint and the GRPO checkpoint on
the held-out split, and the GRPO training reward of its first and last quarter of steps.

`--quick` shrinks every stage (a few steps) to check that the pipeline runs end to end; its numbers mean nothing.
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
    ("cascaded", "mIoU"),
    ("cascaded", "R1@0.5"),
)
QUICK = {"sft_steps": 4, "grpo_steps": 2, "clips": 8}


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


def reward_trend(log_history: list[dict], key: str = "reward") -> dict[str, float] | None:
    """Mean of `key` over the first and the last quarter of the logged steps (at least one step each)."""
    values = [row[key] for row in log_history if key in row and isinstance(row[key], (int, float))]
    if not values:
        return None
    q = max(1, len(values) // 4)
    return {"first": sum(values[:q]) / q, "last": sum(values[-q:]) / q, "steps": len(values)}


def _evaluate(name: str, model: str, out: Path, data: list[str], extra: list[str], times: dict) -> dict:
    eval_dir = out / f"eval_{name}"
    times[f"eval_{name}"] = _run(
        f"evaluate {name}",
        ["rl_audio.evaluate", "--model_name_or_path", model, "--output_dir", str(eval_dir), "--overwrite", "true",
         *data, "--tasks", "[grounding, existence]", *extra],
    )  # fmt: skip
    return json.loads((eval_dir / "metrics.json").read_text())


def _recipe(path: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / path).read_text()) or {}


def _untrained_args(recipe: dict) -> list[str]:
    """Evaluation settings of the untrained model: the SFT recipe's model, timestamps and answer style."""
    keys = ("timestamp_mode", "timestamp_granularity", "answer_style", "preset_seed")
    return [arg for k in keys if k in recipe for arg in (f"--{k}", str(recipe[k]))]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/pipeline", help="Output folder (relative to the repository root).")
    p.add_argument("--sft-recipe", default="recipes/cpu/pipeline_sft.yaml", help="SFT recipe (stage 1).")
    p.add_argument("--grpo-recipe", default="recipes/cpu/pipeline_grpo.yaml", help="GRPO recipe (stage 2).")
    p.add_argument("--sft-steps", type=int, default=None, help="Override the SFT recipe's max_steps.")
    p.add_argument("--grpo-steps", type=int, default=None, help="Override the GRPO recipe's max_steps.")
    p.add_argument("--clips", type=int, default=None, help="Training clips of the generated data (default: recipe's).")
    p.add_argument("--quick", action="store_true", help="A few steps per stage: checks the plumbing only.")
    p.add_argument("--force", action="store_true", help="Rerun stages whose outputs exist.")
    a = p.parse_args(argv)
    if a.quick:
        a.sft_steps, a.grpo_steps = a.sft_steps or QUICK["sft_steps"], a.grpo_steps or QUICK["grpo_steps"]
        a.clips = a.clips or QUICK["clips"]
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    out = Path(a.out)
    # One data set for every stage: the same folder and the same size (the SFT recipe's unless --clips is given),
    # passed to evaluation too, whose own default size differs.
    from .configs import AudioArguments

    sft_recipe = _recipe(a.sft_recipe)
    clips = a.clips or sft_recipe.get("default_data_clips") or AudioArguments.default_data_clips
    data = ["--data_dir", str(out / "data"), "--default_data_clips", str(clips)]
    sft_final, grpo_final = out / "sft" / "final", out / "grpo" / "final"
    times = {}
    # a stage's relaunch continues from its last checkpoint; --force starts it over (the old run is moved aside)
    fresh = ["--overwrite_output_dir", "true"] if a.force else []
    if a.force or not (sft_final / "rl_audio.json").exists():
        extra = [*fresh, *(["--max_steps", str(a.sft_steps)] if a.sft_steps else [])]
        times["sft"] = _run("sft", ["rl_audio.sft", a.sft_recipe, "--output_dir", str(out / "sft"), *data, *extra])
    if a.force or not (grpo_final / "rl_audio.json").exists():
        extra = [*fresh, *(["--max_steps", str(a.grpo_steps)] if a.grpo_steps else [])]
        times["grpo"] = _run(
            "grpo",
            ["rl_audio.grpo", a.grpo_recipe, "--model_name_or_path", str(sft_final), "--output_dir",
             str(out / "grpo"), *data, *extra],
        )  # fmt: skip
    base = json.loads((sft_final / "rl_audio.json").read_text())["base_model"]
    results = {"untrained": _evaluate("untrained", base, out, data, _untrained_args(sft_recipe), times)}
    for name, ckpt in (("sft", sft_final), ("grpo", grpo_final)):
        results[name] = _evaluate(name, str(ckpt), out, data, [], times)
    table = summary_table(results)
    history = grpo_final / "log_history.json"
    trend = reward_trend(json.loads(history.read_text())) if history.exists() else None
    trend_line = (
        f"GRPO training reward: {trend['first']:.3f} (first quarter of {trend['steps']} logged steps) -> "
        f"{trend['last']:.3f} (last quarter)"
        if trend
        else "GRPO training reward: not logged"
    )
    (out / "summary.json").write_text(json.dumps({"metrics": results, "grpo_reward": trend, "times": times}, indent=2))
    (out / "summary.md").write_text(
        f"# Pipeline summary\n\n{table}\n\n{trend_line}\n\nStage times (s): {json.dumps(times)}\n"
    )
    print(f"\n{table}\n\n{trend_line}\nStage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print(f"Reports: {out}/eval_*/report.md; summary: {out / 'summary.md'}")


if __name__ == "__main__":
    main(sys.argv[1:])
