"""The study's jobs: SFT variants per seed, GRPO from the best SFT variant, evaluations; and their time estimate."""

from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

from plan import GRPO_RUNS, ROWS, VARIANTS, Job, Settings, Stage, python_m

# Seconds per optimizer step with one thread on this project's 2-core CPU (AMD EPYC), two runs side by side,
# 5-6 s clips, batch 8 (README.md, "Calibration"); `--dry-run` estimates the study's wall time from them.
# Measured: base, none, text1, tokens, grpo; estimated from the sequence length: text0.2, text2, neg, noneg.
STEP_SECONDS = {
    "study-omni-xs": {"base": 0.55, "none": 0.57, "text1": 0.63, "text2": 0.6, "text0.2": 1.0, "tokens_sem": 0.78,
                      "tokens_rand": 0.78, "neg": 0.63, "noneg": 0.63, "grpo": 2.35},
    # Estimated before the study from the pipeline's cached step (0.4 s with 2 threads) and first-epoch encoding;
    # the study's own per-run times are in docs/results.md.
    "mini-qwen2-audio": {"base": 0.8, "none": 0.75, "text1": 0.8, "text2": 0.78, "text0.2": 1.1, "tokens_sem": 0.9,
                         "tokens_rand": 0.9, "neg": 0.8, "noneg": 0.8, "grpo": 2.5},
    "tiny-qwen2.5-omni": {"default": 0.3, "grpo": 1.0},
}  # fmt: skip
EVAL_SECONDS_PER_ROW = {"study-omni-xs": 0.03, "mini-qwen2-audio": 0.06, "tiny-qwen2.5-omni": 0.03}
STARTUP_SECONDS = 12.0  # importing torch/transformers/trl and loading the model, per subprocess


@dataclass
class Layout:
    out: Path
    data: dict[str, dict[str, str]]
    models: dict[int, str]  # seed -> checkpoint dir

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.out / "runs" / variant / f"seed{seed}"

    def base_model(self, seed: int) -> Path:
        return self.run_dir("base", seed) / "model"

    def manifest(self, key: str) -> str:
        split, subset = key.split("/")
        return self.data[split][subset]


def variants_for(rows: list[int], s: Settings) -> list[str]:
    """The SFT variants of ``rows`` that the study runs, each once, in row order."""
    return list(dict.fromkeys(v for row in rows for v in s.selected(ROWS[row])))


def _yaml_list(items) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"


def _sft_cmd(s: Settings, model: str, args, train: str, tasks, out: Path, steps: int, lr: float, seed: int):
    saving = ["--save_steps", str(max(50, steps // 4)), "--save_total_limit", "1"]
    return python_m(
        "rl_audio.sft",
        "--model_name_or_path", model, *args, "--train_manifests", _yaml_list([train]), "--tasks", _yaml_list(tasks),
        "--output_dir", str(out), "--max_steps", str(steps), "--per_device_train_batch_size", str(s.batch),
        "--learning_rate", str(lr), "--lr_scheduler_type", "cosine", "--warmup_steps", str(s.warmup),
        "--weight_decay", "0.0", "--logging_steps", "10", *(["--save_strategy", "no"] if s.quick else saving),
        "--report_to", "none", "--bf16", "false", "--seed", str(seed), "--data_seed", str(seed),
        "--freeze_audio_encoder", str(s.freeze_encoder).lower(),
    )  # fmt: skip


def base_stages(layout: Layout, s: Settings, seed: int) -> list[Stage]:
    """The base model: the preset trained without timestamps on long events (a stand-in for a pretrained audio LM),
    exported as a plain checkpoint (without rl_audio.json, like a base model from a hub), then evaluated zero-shot."""
    run, model = layout.run_dir("base", seed), layout.base_model(seed)
    sft = _sft_cmd(s, layout.models[seed], ("--timestamp_mode", "none"), layout.manifest("base/grounding"),
                   ("grounding",), run / "sft", s.base_steps, s.base_lr, seed)  # fmt: skip

    def export() -> None:
        tmp = model.with_name(model.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(run / "sft" / "final", tmp, ignore=shutil.ignore_patterns("rl_audio.json", "adapter"))
        tmp.rename(model)

    evals = ("val/grounding", "test/grounding", "shifted/grounding")
    return [
        Stage("sft", sft, run, run / "sft" / "final" / "rl_audio.json"),
        Stage("export", export, run, model),
        eval_stage(layout, s, run, model, evals, ("grounding",)),
    ]


def sft_stages(layout: Layout, s: Settings, variant: str, seed: int) -> list[Stage]:
    v, run = VARIANTS[variant], layout.run_dir(variant, seed)
    steps = s.neg_steps if v.train != "grounding" else s.sft_steps
    train = layout.manifest(f"train/{v.train}")
    sft = _sft_cmd(s, str(layout.base_model(seed)), v.args, train, v.tasks, run / "sft", steps, s.sft_lr, seed)
    return [
        Stage("sft", sft, run, run / "sft" / "final" / "rl_audio.json"),
        eval_stage(layout, s, run, run / "sft" / "final", v.evals, v.tasks),
    ]


def eval_stage(layout: Layout, s: Settings, run: Path, checkpoint: Path, evals, tasks) -> Stage:
    cmd = python_m(
        "rl_audio.evaluate",
        "--model_name_or_path", str(checkpoint), "--output_dir", str(run / "eval"),
        "--eval_manifests", _yaml_list(layout.manifest(k) for k in evals), "--tasks", _yaml_list(tasks),
        "--batch_size", str(s.eval_batch), "--max_new_tokens", "32", "--num_plot_examples", "0",
    )  # fmt: skip
    return Stage("eval", cmd, run, run / "eval" / "metrics.json")


def best_sft_variant(layout: Layout, seeds, candidates) -> tuple[str, dict[str, float]]:
    """Row 2's starting point: the row-1 variant with the highest validation mIoU, averaged over seeds."""
    scores = {}
    for variant in candidates:
        values = [val_miou(layout.run_dir(variant, seed)) for seed in seeds]
        values = [v for v in values if v is not None]
        if values:
            scores[variant] = statistics.fmean(values)
    if not scores:
        raise RuntimeError(f"no validation metrics for any of {candidates}")
    return max(scores, key=lambda k: scores[k]), scores


def val_miou(run: Path) -> float | None:
    path = run / "eval" / "metrics.json"
    if not path.exists():
        return None
    per = json.loads(path.read_text()).get("per_manifest", {})
    return per.get("val/grounding", {}).get("grounding", {}).get("mIoU")


def grpo_stages(layout: Layout, s: Settings, name: str, seed: int, selection: dict) -> list[Stage]:
    best = best_sft_variant(layout, s.seeds, s.candidates())
    selection.update(variant=best[0], val_mIoU=best[1])
    v, run = VARIANTS[best[0]], layout.run_dir(name, seed)
    start = layout.run_dir(best[0], seed) / "sft" / "final"
    saving = ["--save_strategy", "no"] if s.quick else ["--save_steps", str(max(10, s.grpo_steps // 3))]
    grpo = python_m(
        "rl_audio.grpo",
        "--model_name_or_path", str(start), *v.args, *GRPO_RUNS[name][1],
        "--train_manifests", _yaml_list([layout.manifest("train/grounding")]), "--tasks", "[grounding]",
        "--output_dir", str(run / "grpo"), "--max_steps", str(s.grpo_steps),
        "--per_device_train_batch_size", str(s.grpo_prompts * s.num_generations),
        "--num_generations", str(s.num_generations), "--learning_rate", str(s.grpo_lr),
        "--max_completion_length", str(s.max_completion_length), "--temperature", str(s.grpo_temperature),
        "--beta", str(s.grpo_beta), "--logging_steps", "1", *saving, "--save_total_limit", "1",
        "--report_to", "none", "--bf16", "false", "--seed", str(seed),
        "--freeze_audio_encoder", str(s.freeze_encoder).lower(),
    )  # fmt: skip
    evals = ("test/grounding", "shifted/grounding")
    return [
        Stage("grpo", grpo, run, run / "grpo" / "final" / "rl_audio.json"),
        eval_stage(layout, s, run, run / "grpo" / "final", evals, ("grounding",)),
    ]


def build_jobs(layout: Layout, s: Settings, rows: list[int], selection: dict) -> list[Job]:
    jobs = [
        Job(f"base/seed{seed}", lambda seed=seed: base_stages(layout, s, seed), cost=estimate_base(s))
        for seed in s.seeds
    ]
    for variant in variants_for(rows, s):
        for seed in s.seeds:
            jobs.append(
                Job(
                    f"{variant}/seed{seed}",
                    lambda variant=variant, seed=seed: sft_stages(layout, s, variant, seed),
                    deps=(f"base/seed{seed}",),
                    cost=estimate_sft(s, variant),
                )
            )
    if 2 in rows:
        deps = tuple(f"{v}/seed{seed}" for v in s.candidates() for seed in s.seeds)
        for name in GRPO_RUNS:
            for seed in s.seeds:
                jobs.append(
                    Job(
                        f"{name}/seed{seed}",
                        lambda name=name, seed=seed: grpo_stages(layout, s, name, seed, selection),
                        deps=deps,
                        cost=estimate_grpo(s),
                    )
                )
    return jobs


def _step_seconds(s: Settings, key: str) -> float:
    table = STEP_SECONDS.get(s.preset, STEP_SECONDS["study-omni-xs"])
    return table.get(key, table.get("default", 1.0))


def _eval_rows(s: Settings, variant: str) -> int:
    d = s.data
    if VARIANTS[variant].train == "grounding":
        return d.val + 2 * d.test
    return 4 * d.test


def estimate_sft(s: Settings, variant: str) -> float:
    steps = s.neg_steps if VARIANTS[variant].train != "grounding" else s.sft_steps
    per_row = EVAL_SECONDS_PER_ROW.get(s.preset, 0.25)
    return 2 * STARTUP_SECONDS + steps * _step_seconds(s, variant) + _eval_rows(s, variant) * per_row


def estimate_base(s: Settings) -> float:
    per_row = EVAL_SECONDS_PER_ROW.get(s.preset, 0.25)
    return 2 * STARTUP_SECONDS + s.base_steps * _step_seconds(s, "base") + (s.data.val + 2 * s.data.test) * per_row


def estimate_grpo(s: Settings) -> float:
    per_row = EVAL_SECONDS_PER_ROW.get(s.preset, 0.25)
    return 2 * STARTUP_SECONDS + s.grpo_steps * _step_seconds(s, "grpo") + 2 * s.data.test * per_row


def estimate_wall(jobs: list[Job], workers: int) -> float:
    """Makespan of the jobs on ``workers`` lanes, costliest ready job first (as ``run_jobs`` schedules them)."""
    lanes = [0.0] * max(1, workers)
    finish: dict[str, float] = {}
    pending = sorted(jobs, key=lambda j: -j.cost)
    while pending:
        lane = min(range(len(lanes)), key=lambda i: lanes[i])
        ready = [j for j in pending if all(d in finish for d in j.deps)]
        job = ready[0]
        start = max([lanes[lane], *(finish[d] for d in job.deps)])
        lanes[lane] = finish[job.name] = start + job.cost
        pending.remove(job)
    return max(lanes)
