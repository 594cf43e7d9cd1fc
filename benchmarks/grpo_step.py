"""Where a GRPO step's time goes, for a tiny preset on the CPU.

    python benchmarks/grpo_step.py [--preset tiny-qwen2-audio] [--steps 6] [--timestamp-mode text]

Times the real `AudioGRPOTrainer` (no copy of any step logic) by wrapping its methods on the instance:
generation (`_generate_single_turn`), rewards (`_calculate_rewards`: event F1 + mIoU + variance-gated fusion),
log-prob passes (`_get_per_token_logps_and_entropies`: reference/old-policy passes and the policy forward of the
loss), the optimizer step (callback hooks around it); "other" is the rest of the step (backward, audio features,
bookkeeping). The first step (warm-up) is left out. Target: rewards under 5% of the step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict

from transformers import TrainerCallback

from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioGRPOConfig
from rl_audio.grpo import build_trainer


class Clock:
    def __init__(self):
        self.totals = defaultdict(float)
        self.step_marks: list[dict] = []

    def wrap(self, obj, name: str, label: str) -> None:
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.totals[label] += time.perf_counter() - t0

        setattr(obj, name, timed)


class StepTimer(TrainerCallback):
    def __init__(self, clock: Clock):
        self.clock, self.t_step, self.t_opt = clock, 0.0, 0.0

    def on_step_begin(self, args, state, control, **kw):
        self.t_step = time.perf_counter()
        self.clock.totals.clear()

    def on_pre_optimizer_step(self, args, state, control, **kw):
        self.t_opt = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kw):
        self.clock.totals["optimizer step"] += time.perf_counter() - self.t_opt

    def on_step_end(self, args, state, control, **kw):
        self.clock.step_marks.append({"total": time.perf_counter() - self.t_step, **self.clock.totals})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny-qwen2-audio")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--timestamp-mode", default="text")
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--max-completion-length", type=int, default=16)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_recipe(
            AudioGRPOConfig,
            [
                "--model_name_or_path", a.preset, "--output_dir", f"{tmp}/out", "--data_dir", f"{tmp}/data",
                "--default_data_clips", "16", "--tasks", "[grounding]", "--timestamp_mode", a.timestamp_mode,
                "--rewards", "[eb_f1, miou]", "--fusion_main", "eb_f1", "--fusion_aux", "miou",
                "--num_generations", str(a.num_generations), "--per_device_train_batch_size", str(a.num_generations),
                "--max_completion_length", str(a.max_completion_length), "--max_steps", str(a.steps + 1),
                "--beta", "0.04", "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
                "--disable_tqdm", "true",
            ],
        )  # fmt: skip
        trainer, _ = build_trainer(cfg)
        clock = Clock()
        clock.wrap(trainer, "_generate_single_turn", "generation")
        clock.wrap(trainer, "_calculate_rewards", "rewards (eb_f1 + miou + fusion)")
        clock.wrap(trainer, "_get_per_token_logps_and_entropies", "log-prob passes")
        trainer.add_callback(StepTimer(clock))
        trainer.train()
    steps = clock.step_marks[1:]  # drop the warm-up step
    parts = ["generation", "rewards (eb_f1 + miou + fusion)", "log-prob passes", "optimizer step"]
    total = sum(s["total"] for s in steps) / len(steps)
    print(f"\nGRPO step on {a.preset}, timestamps={a.timestamp_mode}, G={a.num_generations}, "
          f"max_completion_length={a.max_completion_length}, mean over {len(steps)} steps (CPU)\n")  # fmt: skip
    print(f"| {'part':34s} | {'ms/step':>9s} | {'share':>7s} |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 9}|")
    accounted = 0.0
    for name in parts:
        ms = 1000 * sum(s.get(name, 0.0) for s in steps) / len(steps)
        accounted += ms
        print(f"| {name:34s} | {ms:9.1f} | {ms / (10 * total):6.1f}% |")
    other = 1000 * total - accounted
    print(f"| {'other (backward, features, logs)':34s} | {other:9.1f} | {other / (10 * total):6.1f}% |")
    print(f"| {'total':34s} | {1000 * total:9.1f} | {100.0:6.1f}% |")


if __name__ == "__main__":
    main()
