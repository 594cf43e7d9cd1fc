"""What the study runs: settings, the SFT variants of each row, and each run as a chain of entry-point commands.

Every stage is the command a user would type (``python -m rl_audio.sft|grpo|evaluate --key value ...``), run as a
subprocess with one thread (``OMP_NUM_THREADS=1``), its output in its own folder:

    OUT/runs/<variant>/seed<k>/{sft,grpo}/   the training run (``final/`` when finished, ``checkpoint-N`` before)
    OUT/runs/<variant>/seed<k>/eval/         ``rl_audio.evaluate`` output (``metrics.json``, ``predictions.jsonl``)
    OUT/runs/<variant>/seed<k>/<stage>.log   the subprocess's output; ``<stage>.time.json`` its wall time

A stage whose result exists is skipped, and an interrupted training run continues from its last checkpoint, so
rerunning the study command after an interruption finishes it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from niah import NiahSpec

logger = logging.getLogger("replicate.plan")

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Variant:
    """One SFT configuration: entry-point overrides, training and evaluation manifests (subset names)."""

    name: str
    label: str
    args: tuple[str, ...]
    train: str = "grounding"
    evals: tuple[str, ...] = ("val/grounding", "test/grounding", "shifted/grounding")
    tasks: tuple[str, ...] = ("grounding",)


TEXT = ("--timestamp_mode", "text", "--timestamp_granularity")
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("none", "no timestamps", ("--timestamp_mode", "none")),
        Variant("text1", "text interleave, 1 s", (*TEXT, "1.0")),
        Variant("tokens_sem", "timestamp tokens, semantic init", ("--timestamp_mode", "tokens")),
        Variant(
            "tokens_rand",
            "timestamp tokens, random init",
            ("--timestamp_mode", "tokens", "--timestamp_token_init", "random"),
        ),
        Variant("text0.2", "text interleave, 0.2 s", (*TEXT, "0.2")),
        Variant("text2", "text interleave, 2 s", (*TEXT, "2.0")),
        Variant(
            "neg",
            "text 1 s, with negatives",
            (*TEXT, "1.0"),
            train="with_negatives",
            evals=("test/with_negatives",),
            tasks=("grounding", "existence"),
        ),
        Variant(
            "noneg",
            "text 1 s, without negatives",
            (*TEXT, "1.0"),
            train="without_negatives",
            evals=("test/with_negatives",),
            tasks=("grounding", "existence"),
        ),
    )
}
ROWS: dict[int, tuple[str, ...]] = {
    1: ("none", "text1", "tokens_sem", "tokens_rand"),
    2: ("none", "text1", "tokens_sem", "tokens_rand"),  # the candidates for "the best SFT checkpoint"
    3: ("neg", "noneg"),
    4: ("text0.2", "text1", "text2"),
}
# TimePro-RL §3.1's 0.2 s boundary tolerance as a pure collar (recipes/timepro.yaml); windows under 0.1 s earn
# nothing (the rewards' default, docs/rewards.md "Degenerate windows").
EB_F1_SETTINGS = {"t_collar": 0.2, "percentage_of_length": 0.0}  # tables.py scores test answers with the same
EB_F1_KWARGS = ("--reward_kwargs", json.dumps({"eb_f1": EB_F1_SETTINGS}))
GRPO_RUNS = {
    "grpo_ebf1": ("GRPO, event F1 alone", ("--rewards", "[eb_f1]", "--reward_weights", "[1.0]", *EB_F1_KWARGS)),
    "grpo_fused": (
        "GRPO, variance-gated event F1 x mIoU",
        ("--rewards", "[eb_f1, miou]", "--reward_weights", "[1.0, 1.0]", "--fusion_main", "eb_f1",
         "--fusion_aux", "miou", "--fusion_eps", "1.0e-6", *EB_F1_KWARGS),
    ),
}  # fmt: skip


@dataclass
class Settings:
    """Everything that sizes the study (the full study's defaults; ``quick_mode()`` shrinks them)."""

    preset: str = "mini-qwen2-audio"
    seeds: tuple[int, ...] = (0, 1, 2)
    data: NiahSpec = field(default_factory=NiahSpec)
    batch: int = 8
    base_steps: int = 600  # the base model: no timestamps, long events (README.md, "Base model"; 1,000 before the
    # pretrained-encoder preset, which learns the long events faster)
    base_lr: float = 2e-3
    sft_steps: int = 300
    sft_lr: float = 1e-3
    warmup: int = 30
    neg_steps: int = 300  # row 3 (grounding and existence rows)
    grpo_steps: int = 100
    grpo_lr: float = 3e-4  # chosen on the training reward of 80-step probes (1e-4: flat; README.md)
    grpo_prompts: int = 4  # prompts per step; each gets num_generations completions
    num_generations: int = 4
    grpo_temperature: float = 1.0
    grpo_beta: float = 0.04
    max_completion_length: int = 24
    eval_batch: int = 16
    freeze_encoder: bool | None = None  # None: frozen for presets with a pretrained encoder (the papers freeze)
    only: tuple[str, ...] = ()  # run only these SFT variants of the chosen rows (empty: all of them)
    quick: bool = False

    def __post_init__(self):
        if self.freeze_encoder is None:
            from rl_audio.models.presets import PRESETS

            spec = PRESETS.get(self.preset)
            self.freeze_encoder = bool(spec is not None and spec.pretrained_encoder)

    def selected(self, variants) -> tuple[str, ...]:
        """The given SFT variants that this study runs (all of them unless ``only`` names some)."""
        return tuple(v for v in variants if not self.only or v in self.only)

    def candidates(self) -> tuple[str, ...]:
        """Row 2's candidate starting points: row 1's variants that this study runs."""
        return self.selected(ROWS[2])

    @classmethod
    def quick_mode(cls, seeds: tuple[int, ...] = (0,)) -> Settings:
        return cls(
            preset="tiny-qwen2.5-omni",
            seeds=seeds,
            data=NiahSpec(train=8, val=4, test=4, base=8),
            base_steps=4,
            sft_steps=6,
            neg_steps=6,
            warmup=0,
            grpo_steps=2,
            eval_batch=8,
            quick=True,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Stage:
    """One subprocess: a command, the folder it writes, and the file whose presence means it has finished."""

    label: str
    cmd: list[str] | Callable[[], None]  # a subprocess, or an in-process step (copying a checkpoint)
    run_dir: Path
    done: Path

    def log(self) -> Path:
        return self.run_dir / f"{self.label}.log"

    def timing(self) -> Path:
        return self.run_dir / f"{self.label}.time.json"


@dataclass
class Job:
    """A chain of stages (train, then evaluate) that waits for ``deps``; ``stages`` is built when it starts."""

    name: str
    stages: Callable[[], list[Stage]]
    deps: tuple[str, ...] = ()
    cost: float = 1.0  # relative cost: the most expensive ready job starts first


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip


def _latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
    return checkpoints[-1] if checkpoints else None


def run_stage(stage: Stage) -> float | None:
    """Run one stage unless it is done; returns the wall time of this call (None when skipped)."""
    if stage.done.exists():
        return None
    stage.run_dir.mkdir(parents=True, exist_ok=True)
    if callable(stage.cmd):
        stage.cmd()
        return None
    cmd = list(stage.cmd)
    if stage.label in ("sft", "grpo"):
        checkpoint = _latest_checkpoint(stage.run_dir / stage.label)
        if checkpoint is not None:
            cmd += ["--resume_from_checkpoint", str(checkpoint)]
    t0 = time.time()
    with open(stage.log(), "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        result = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT)
    seconds = time.time() - t0
    if result.returncode != 0 or not stage.done.exists():
        raise RuntimeError(f"{stage.label} failed (exit {result.returncode}); see {stage.log()}")
    previous = json.loads(stage.timing().read_text())["seconds"] if stage.timing().exists() else 0.0
    stage.timing().write_text(json.dumps({"seconds": previous + seconds, "finished": time.strftime("%F %T")}))
    return seconds


def run_jobs(jobs: list[Job], workers: int) -> dict[str, str]:
    """Run the jobs on ``workers`` threads, each job's stages in order; returns ``{job: error}`` for failures.

    A job starts when all its dependencies have succeeded; the costliest ready job goes first. A job whose
    dependency failed fails too (it is reported, the others go on).
    """
    pending = sorted(jobs, key=lambda j: -j.cost)
    succeeded: set[str] = set()
    failed: dict[str, str] = {}
    cond = threading.Condition()
    running = 0

    def take() -> Job | None:
        nonlocal running
        with cond:
            while True:
                for job in list(pending):
                    bad = [d for d in job.deps if d in failed]
                    if bad:
                        pending.remove(job)
                        failed[job.name] = f"dependency {bad[0]} failed"
                        cond.notify_all()
                    elif all(d in succeeded for d in job.deps):
                        pending.remove(job)
                        running += 1
                        return job
                if not pending or (running == 0 and not any(all(d in succeeded for d in j.deps) for j in pending)):
                    return None
                cond.wait()

    def worker() -> None:
        nonlocal running
        while (job := take()) is not None:
            error = None
            try:
                for stage in job.stages():
                    seconds = run_stage(stage)
                    if seconds is not None:
                        logger.info("%s: %s took %.0f s", job.name, stage.label, seconds)
            except Exception as err:  # a failed run is reported in the results; the other runs go on
                error = str(err)
                logger.error("%s: %s", job.name, error)
            with cond:
                running -= 1
                (failed.__setitem__(job.name, error) if error else succeeded.add(job.name))
                cond.notify_all()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for job in pending:
        failed.setdefault(job.name, "not run (dependencies unmet)")
    return failed


def python_m(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
