"""The whole pipeline on the embedded default: data -> SFT -> GRPO -> evaluation of both checkpoints.

    python -m rl_audio.pipeline [--out outputs/pipeline] [--sft_recipe ...] [--grpo_recipe ...] [--force] [--plan]

Each stage runs the same command a user would (`python -m rl_audio.sft RECIPE ...`, `python -m rl_audio.grpo ...`,
`python -m rl_audio.evaluate ...`) in a subprocess, on a tiny preset and generated audio, so it runs on a CPU in
minutes. A stage whose output already exists is skipped (rerun after an interruption to continue); `--force`
reruns everything. At the end a table compares the untrained model, the SFT checkpoint and the GRPO checkpoint on
the held-out split, and the GRPO training reward of its first and last quarter of steps.

`--quick` shrinks every stage (a few steps) to check that the pipeline runs end to end; its numbers mean nothing.
`--plan` prints the stages' commands and runs nothing.

It runs from a source checkout and from an installed package alike: the default recipes (`recipes/cpu/...`) are
read from the checkout's `recipes/` folder or, when there is none, from the copy the wheel ships in
`rl_audio/recipes/`; outputs go under `--out`, relative to the working directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger("rl_audio.pipeline")

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent  # the source checkout's root, when rl_audio runs from one
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


def recipe_path(path: str) -> Path:
    """The recipe a `--*_recipe` option names. The path itself wins (absolute, or relative to the working
    directory: a user's own recipe); else a shipped name such as `recipes/cpu/pipeline_sft.yaml` is looked up in the
    source checkout and then in the installed package, which carries `recipes/` as `rl_audio/recipes/`."""
    given = Path(path)
    if given.is_file():
        return given.resolve()
    candidates = [ROOT / given] if (ROOT / "pyproject.toml").is_file() else []
    if given.parts[:1] == ("recipes",):
        candidates.append(PACKAGE.joinpath("recipes", *given.parts[1:]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in [Path.cwd() / given, *candidates])
    raise FileNotFoundError(
        f"recipe {path!r} not found (tried {tried}): give the path of a recipe YAML, or a shipped name such as "
        "recipes/cpu/pipeline_sft.yaml"
    )


def _child_env() -> dict[str, str]:
    """The stages' environment: from a source checkout they import the checkout's rl_audio, whatever the working
    directory; an installed package is found by the stages as it was found here (same interpreter, same env)."""
    if not (ROOT / "pyproject.toml").is_file():
        return dict(os.environ)
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def _run(stage: str, args: list[str], plan: bool = False) -> float:
    cmd = [sys.executable, "-m", *args]
    if plan:
        print(f"{stage}: {' '.join(cmd)}")
        return 0.0
    logger.info("%s: %s", stage, " ".join(cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True, env=_child_env())
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


def column_trends(log_history: list[dict]) -> dict[str, dict[str, float]]:
    """`reward_trend` of each reward column as TRL logs it before the weighting (`rewards/<name>/mean`), the fused
    column left out: with TimePro-RL's fusion the final reward of a group whose event F1 is 1 for every completion
    becomes event F1 x mIoU < 1, so the final reward can fall as the policy gets better; the main reward cannot."""
    names = sorted({k for row in log_history for k in row if k.startswith("rewards/") and k.endswith("/mean")})
    out = {}
    for key in names:
        column = key[len("rewards/") : -len("/mean")]
        if "/" in column or column.startswith("fused_"):
            continue
        trend = reward_trend(log_history, key)
        if trend is not None:
            out[column] = trend
    return out


def _evaluate(name: str, model: str, out: Path, data: list[str], extra: list[str], times: dict) -> dict:
    eval_dir = out / f"eval_{name}"
    times[f"eval_{name}"] = _run(
        f"evaluate {name}",
        ["rl_audio.evaluate", "--model_name_or_path", model, "--output_dir", str(eval_dir), "--overwrite", "true",
         *data, "--tasks", "[grounding, existence]", *extra],
    )  # fmt: skip
    return json.loads((eval_dir / "metrics.json").read_text())


def _recipe(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def _untrained_args(recipe: dict) -> list[str]:
    """Evaluation settings of the untrained model: the SFT recipe's model, timestamps and answer style."""
    keys = ("timestamp_mode", "timestamp_granularity", "answer_style", "preset_seed")
    return [arg for k in keys if k in recipe for arg in (f"--{k}", str(recipe[k]))]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rl_audio.pipeline", description=__doc__.split("\n\n")[0])

    def add(name: str, **kwargs) -> None:  # underscores as in the training CLIs; the hyphen spelling still works
        p.add_argument(*dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"]), **kwargs)

    add("out", default="outputs/pipeline", help="Output folder (relative to the working directory).")
    shipped = "a path, or a shipped recipes/... name (from the checkout or the installed package)"
    add("sft_recipe", default="recipes/cpu/pipeline_sft.yaml", help=f"SFT recipe (stage 1): {shipped}.")
    add("grpo_recipe", default="recipes/cpu/pipeline_grpo.yaml", help=f"GRPO recipe (stage 2): {shipped}.")
    add("sft_steps", type=int, default=None, help="Override the SFT recipe's max_steps.")
    add("grpo_steps", type=int, default=None, help="Override the GRPO recipe's max_steps.")
    add("clips", type=int, default=None, help="Training clips of the generated data (default: recipe's).")
    add("quick", action="store_true", help="A few steps per stage: checks the plumbing only.")
    add("force", action="store_true", help="Rerun stages whose outputs exist.")
    add("plan", action="store_true", help="Print each stage's command (recipes resolved) and run nothing.")
    a = p.parse_args(argv)
    if a.quick:
        a.sft_steps, a.grpo_steps = a.sft_steps or QUICK["sft_steps"], a.grpo_steps or QUICK["grpo_steps"]
        a.clips = a.clips or QUICK["clips"]
    try:
        a.sft_recipe, a.grpo_recipe = recipe_path(a.sft_recipe), recipe_path(a.grpo_recipe)
    except FileNotFoundError as err:
        p.error(str(err))
    a.out = Path(a.out).resolve()
    return a


def _train(a: argparse.Namespace, data: list[str], times: dict) -> None:
    """SFT, then GRPO from the SFT checkpoint; a stage whose final checkpoint exists is skipped unless --force."""
    sft_final, grpo_final = a.out / "sft" / "final", a.out / "grpo" / "final"
    # a stage's relaunch continues from its last checkpoint; --force starts it over (the old run is moved aside)
    fresh = ["--overwrite_output_dir", "true"] if a.force else []
    if a.force or not (sft_final / "rl_audio.json").exists():
        extra = [*fresh, *(["--max_steps", str(a.sft_steps)] if a.sft_steps else [])]
        sft = ["rl_audio.sft", str(a.sft_recipe), "--output_dir", str(a.out / "sft"), *data, *extra]
        times["sft"] = _run("sft", sft, a.plan)
    if a.force or not (grpo_final / "rl_audio.json").exists():
        extra = [*fresh, *(["--max_steps", str(a.grpo_steps)] if a.grpo_steps else [])]
        grpo = ["rl_audio.grpo", str(a.grpo_recipe), "--model_name_or_path", str(sft_final), "--output_dir",
                str(a.out / "grpo"), *data, *extra]  # fmt: skip
        times["grpo"] = _run("grpo", grpo, a.plan)


def main(argv: list[str] | None = None) -> None:
    a = _parse(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    out = a.out
    # One data set for every stage: the same folder and the same size (the SFT recipe's unless --clips is given),
    # passed to evaluation too, whose own default size differs.
    from .configs import AudioArguments

    sft_recipe = _recipe(a.sft_recipe)
    clips = a.clips or sft_recipe.get("default_data_clips") or AudioArguments.default_data_clips
    data = ["--data_dir", str(out / "data"), "--default_data_clips", str(clips)]
    times = {}
    _train(a, data, times)
    if a.plan:
        print(f"then: evaluate the untrained model and both checkpoints into {out}/eval_*, summary in {out}")
        return
    sft_final, grpo_final = out / "sft" / "final", out / "grpo" / "final"
    base = json.loads((sft_final / "rl_audio.json").read_text())["base_model"]
    results = {"untrained": _evaluate("untrained", base, out, data, _untrained_args(sft_recipe), times)}
    for name, ckpt in (("sft", sft_final), ("grpo", grpo_final)):
        results[name] = _evaluate(name, str(ckpt), out, data, [], times)
    _report(out, results, grpo_final, times)


def _report(out: Path, results: dict, grpo_final: Path, times: dict) -> None:
    """The summary table, the GRPO reward trend and the stage times: printed and written to out/summary.*."""
    table = summary_table(results)
    history = grpo_final / "log_history.json"
    log = json.loads(history.read_text()) if history.exists() else []
    trend, columns = reward_trend(log), column_trends(log)
    trend_line = (
        f"GRPO training reward: {trend['first']:.3f} (first quarter of {trend['steps']} logged steps) -> "
        f"{trend['last']:.3f} (last quarter)"
        if trend
        else "GRPO training reward: not logged"
    )
    if columns:
        trend_line += "; per reward before fusion: " + ", ".join(
            f"{name} {t['first']:.3f} -> {t['last']:.3f}" for name, t in columns.items()
        )
    summary = {"metrics": results, "grpo_reward": trend, "grpo_reward_columns": columns, "times": times}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(
        f"# Pipeline summary\n\n{table}\n\n{trend_line}\n\nStage times (s): {json.dumps(times)}\n"
    )
    print(f"\n{table}\n\n{trend_line}\nStage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print(f"Reports: {out}/eval_*/report.md; summary: {out / 'summary.md'}")


if __name__ == "__main__":
    main(sys.argv[1:])
