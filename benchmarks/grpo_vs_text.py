"""The audio GRPO step (encoder cache on and off) against TRL's own text GRPO step of the same length, and the audio
SFT step against TRL's text SFT step, in one run.

    python benchmarks/grpo_vs_text.py [--preset tiny-qwen2-audio] [--seconds 4,16] [--groups 4,8] [--steps 3]
    python benchmarks/grpo_vs_text.py --quick      # one length, one group size, one step: checks the table prints

Each configuration runs in a subprocess of its own, so that its peak memory (peak RSS on a CPU, peak allocated
CUDA memory on a GPU) is its own. The text side is TRL's stock `GRPOTrainer` / `SFTTrainer` on the same language
model (the preset's LM weights as a `Qwen2ForCausalLM`) with a text prompt of as many tokens as the audio prompt
(placeholders, timestamps, wrapper and question), no audio. Both sides use the same rewards (event F1 and mIoU),
group size, completion length, beta and seed. Parts are timed by wrapping the trainers' own methods on the
instance: generation (`_generate_single_turn`), log-prob passes (`_get_per_token_logps_and_entropies`), rewards
(`_calculate_rewards`), and the audio encoder (forward hooks on the audio tower of policy and reference). The first
step is a warm-up and is left out. Targets: the cache cuts encoder time per step at least G-fold; the
audio step costs at most 1.3x the text step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from transformers import TrainerCallback

KINDS = ("audio, cache", "audio, no cache", "text (TRL)")


class Clock(TrainerCallback):
    """Seconds per part and per step; parts are methods wrapped on the instance or module hooks."""

    def __init__(self):
        self.part = defaultdict(float)
        self.steps: list[dict] = []
        self.t0 = 0.0

    def wrap(self, obj, name: str, label: str) -> None:
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.part[label] += time.perf_counter() - t

        setattr(obj, name, timed)

    def hook(self, module: torch.nn.Module, label: str) -> None:
        start = {}
        module.register_forward_pre_hook(lambda m, a: start.__setitem__("t", time.perf_counter()))
        module.register_forward_hook(
            lambda m, a, o: self.part.__setitem__(label, self.part[label] + time.perf_counter() - start["t"])
        )

    def on_step_begin(self, args, state, control, **kw):
        self.part.clear()
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.steps.append({"step": time.perf_counter() - self.t0, **self.part})


def _timed(trainer, clock: Clock, towers=()) -> None:
    for name, label in (
        ("_generate_single_turn", "generation"),
        ("_get_per_token_logps_and_entropies", "log-prob passes"),
        ("_calculate_rewards", "rewards"),
        ("training_step", "training step"),
    ):
        if hasattr(trainer, name):
            clock.wrap(trainer, name, label)
    for tower in towers:
        clock.hook(tower, "encoder")
    trainer.add_callback(clock)


def _count_tokens(trainer, counts: list) -> None:
    inner = trainer.training_step

    def counted(model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask")
        if mask is not None:
            counts.append(int(mask.sum()))
        return inner(model, inputs, *args, **kwargs)

    trainer.training_step = counted


def _peak_mib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _data(tmp: Path, seconds: float) -> Path:
    """A train manifest of 16 clips of exactly `seconds` (the default data's generator)."""
    from rl_audio.data import build_default_dataset

    paths = build_default_dataset(
        tmp / "data", num_train=16, num_test=2, min_len=seconds, max_len=seconds, progress=False
    )
    return Path(paths["train"])


def _common(a, tmp: Path, data: Path, group: int) -> list[str]:
    return [
        "--model_name_or_path", a.preset, "--output_dir", str(tmp / "out"), "--train_manifests", f"[{data}]",
        "--tasks", "[grounding]", "--timestamp_mode", "text",
        "--max_steps", str(a.steps + 1), "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        "--disable_tqdm", "true", "--seed", "0", "--freeze_audio_encoder", "true",
        "--per_device_train_batch_size", str(group),
    ]  # fmt: skip


def _text_lm(preset: str, tmp: Path):
    """The preset's language model and LM head as a stock `Qwen2ForCausalLM`, saved with its tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rl_audio.models.loading import load_model

    lm = load_model(preset)
    text = lm.model.config.get_text_config().to_dict()
    config = Qwen2Config(**{k: v for k, v in text.items() if k not in ("model_type", "architectures")})
    causal = Qwen2ForCausalLM(config)
    causal.model.load_state_dict(lm.adapter.language_model(lm.model).state_dict())
    causal.lm_head.load_state_dict(lm.model.get_output_embeddings().state_dict())
    path = tmp / "text_lm"
    causal.save_pretrained(path)
    lm.adapter.tokenizer.save_pretrained(path)
    return lm, str(path)


def _text_of_length(tokenizer, n: int) -> str:
    """A plain-text prompt of `n` tokens (words cycled, then cut at `n` ids)."""
    words = "the of sound dog bark engine speech tone music rain door bell car horn bird alarm".split()
    ids = tokenizer(" ".join(words[i % len(words)] for i in range(2 * n)))["input_ids"][:n]
    return tokenizer.decode(ids)


def _audio_prompt_lengths(lm, cfg, rows) -> list[int]:
    from rl_audio.data import load_audio
    from rl_audio.models.prompting import PromptBuilder

    builder = PromptBuilder(lm.adapter, cfg.timestamp_spec(), cfg.system_prompt)
    enc = builder.encode_prompts([load_audio(r["audio"]) for r in rows], [r["prompt"] for r in rows])
    return [len(ids) for ids in enc.prompt_ids]


def run_grpo(a, kind: str, seconds: float, group: int) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rl_audio.cli import parse_recipe
    from rl_audio.configs import AudioGRPOConfig
    from rl_audio.grpo import build_rewards, build_trainer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = _data(tmp, seconds)
        args = _common(a, tmp, data, group) + [
            "--num_generations", str(group), "--max_completion_length", str(a.completion), "--beta", "0.04",
            "--rewards", "[eb_f1, miou]", "--cache_audio_features", "false" if kind == "audio, no cache" else "true",
        ]  # fmt: skip
        cfg = parse_recipe(AudioGRPOConfig, args)
        clock = Clock()
        if kind.startswith("audio"):
            trainer, lm = build_trainer(cfg)
            towers = [lm.adapter.audio_encoder(m) for m in (trainer.model, trainer.ref_model)]
            lengths = _audio_prompt_lengths(lm, cfg, list(trainer.train_dataset))
        else:
            from rl_audio.data.splits import load_rows
            from rl_audio.data.templates import render_question

            lm, path = _text_lm(a.preset, tmp)
            rows = [dict(r, prompt=render_question(r, cfg.answer_style)) for r in load_rows(cfg, "train")]
            lengths = _audio_prompt_lengths(lm, cfg, rows)
            rows = [dict(r, prompt=_text_of_length(lm.adapter.tokenizer, n)) for r, n in zip(rows, lengths)]
            funcs, _, _ = build_rewards(cfg)
            text_cfg = GRPOConfig(
                output_dir=str(tmp / "text_out"), num_generations=group, per_device_train_batch_size=group,
                max_completion_length=a.completion, beta=0.04, max_steps=a.steps + 1, report_to="none",
                save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, temperature=cfg.temperature, bf16=cfg.bf16,
            )  # fmt: skip
            keep = ["prompt", "windows", "task", "duration", "events", "id"]
            ds = Dataset.from_list([{k: r.get(k) for k in keep} for r in rows])
            trainer = GRPOTrainer(
                model=path, reward_funcs=funcs, args=text_cfg, train_dataset=ds, processing_class=lm.adapter.tokenizer
            )
            towers = []
        _timed(trainer, clock, towers)
        trainer.train()
        logs = [h for h in trainer.state.log_history if "completions/mean_length" in h][1:]
        completion = sum(h["completions/mean_length"] for h in logs) / max(len(logs), 1)
    return _summary(clock, {"prompt_tokens": sum(lengths) / len(lengths), "completion_tokens": completion}, group)


def run_sft(a, kind: str, seconds: float, batch: int) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from rl_audio.cli import parse_recipe
    from rl_audio.configs import AudioSFTConfig
    from rl_audio.data.splits import load_rows
    from rl_audio.data.templates import render_question, render_target
    from rl_audio.sft import build_trainer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = _data(tmp, seconds)
        cache = "false" if kind == "audio, no cache" else "true"
        cfg = parse_recipe(AudioSFTConfig, _common(a, tmp, data, batch) + ["--cache_audio_features", cache])
        clock, tokens = Clock(), []
        if kind.startswith("audio"):
            trainer, lm = build_trainer(cfg)
            towers = [lm.adapter.audio_encoder(trainer.model)]
        else:
            lm, path = _text_lm(a.preset, tmp)
            rows = [dict(r, prompt=render_question(r, cfg.answer_style)) for r in load_rows(cfg, "train")]
            lengths = _audio_prompt_lengths(lm, cfg, rows)
            tok = lm.adapter.tokenizer
            ds = Dataset.from_list(
                [
                    {"prompt": _text_of_length(tok, n), "completion": render_target(r, cfg.answer_style)}
                    for r, n in zip(rows, lengths)
                ]
            )
            text_cfg = SFTConfig(
                output_dir=str(tmp / "text_out"), per_device_train_batch_size=batch, max_steps=a.steps + 1,
                report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, max_length=None, bf16=cfg.bf16,
            )  # fmt: skip
            trainer = SFTTrainer(model=path, args=text_cfg, train_dataset=ds, processing_class=tok)
            towers = []
        _timed(trainer, clock, towers)
        _count_tokens(trainer, tokens)
        trainer.train()
    return _summary(clock, {"tokens": sum(tokens[1:]) / max(len(tokens) - 1, 1)}, batch)


def _summary(clock: Clock, extra: dict, group: int) -> dict:
    steps = clock.steps[1:]  # the first step is a warm-up
    mean = {k: sum(s.get(k, 0.0) for s in steps) / len(steps) for k in {k for s in steps for k in s}}
    return {**mean, **extra, "group": group, "peak_mib": _peak_mib()}


def _one(a, spec: dict) -> dict:
    run = run_grpo if spec["stage"] == "grpo" else run_sft
    return {**spec, **run(a, spec["kind"], spec["seconds"], spec["group"])}


def _table(results: list[dict]) -> None:
    where = "CUDA" if torch.cuda.is_available() else "CPU"
    print(f"\nGRPO step, mean of the steps after a warm-up ({where}; memory: peak of the whole run)\n")
    head = ("audio s", "G", "kind", "prompt tok", "compl tok", "step ms", "gen ms", "logp ms", "encoder ms",
            "peak MiB", "x text")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---:" if i != 2 else "---" for i in range(len(head))) + "|")
    text = {(r["seconds"], r["group"]): r for r in results if r["stage"] == "grpo" and r["kind"] == KINDS[2]}
    for r in (r for r in results if r["stage"] == "grpo"):
        base = text.get((r["seconds"], r["group"]))
        ratio = f"{r['step'] / base['step']:.2f}" if base else "-"
        cells = (f"{r['seconds']:g}", str(r["group"]), r["kind"], f"{r['prompt_tokens']:.0f}",
                 f"{r['completion_tokens']:.1f}", f"{1000 * r['step']:.0f}", f"{1000 * r.get('generation', 0):.0f}",
                 f"{1000 * r.get('log-prob passes', 0):.0f}", f"{1000 * r.get('encoder', 0):.0f}",
                 f"{r['peak_mib']:.0f}", ratio)  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print(f"\nSFT step ({where})\n")
    head = ("audio s", "batch", "kind", "tokens/step", "step ms", "encoder ms", "tokens/s", "peak MiB", "x text")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---:" if i != 2 else "---" for i in range(len(head))) + "|")
    text = {(r["seconds"], r["group"]): r for r in results if r["stage"] == "sft" and r["kind"] == KINDS[2]}
    for r in (r for r in results if r["stage"] == "sft"):
        base = text.get((r["seconds"], r["group"]))
        ratio = f"{r['step'] / base['step']:.2f}" if base else "-"
        cells = (f"{r['seconds']:g}", str(r["group"]), r["kind"], f"{r['tokens']:.0f}", f"{1000 * r['step']:.0f}",
                 f"{1000 * r.get('encoder', 0):.0f}", f"{r['tokens'] / r['step']:.0f}", f"{r['peak_mib']:.0f}",
                 ratio)  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny-qwen2-audio")
    p.add_argument("--seconds", default="4,16", help="clip lengths (the prompt lengths follow from them)")
    p.add_argument("--groups", default="4,8", help="GRPO group sizes G (SFT batch sizes: the same numbers)")
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument("--completion", type=int, default=16, help="max_completion_length")
    p.add_argument("--quick", action="store_true", help="one length, one group size, one step")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print its JSON
    a = p.parse_args()
    if a.one:
        print("RESULT " + json.dumps(_one(a, json.loads(a.one))), flush=True)
        return
    if a.quick:
        a.seconds, a.groups, a.steps, a.completion = "2", "2", 1, 4
    specs = [
        {"stage": stage, "kind": kind, "seconds": float(s), "group": int(g)}
        for stage in ("grpo", "sft")
        for s in a.seconds.split(",")
        for g in a.groups.split(",")
        for kind in KINDS
    ]
    results = []
    for spec in specs:
        cmd = [sys.executable, __file__, "--preset", a.preset, "--steps", str(a.steps),
               "--completion", str(a.completion), "--one", json.dumps(spec)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if out.returncode != 0 or line is None:
            sys.exit(f"{spec} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
        results.append(json.loads(line[len("RESULT ") :]))
        print(f"done: {spec}", file=sys.stderr, flush=True)
    _table(results)


if __name__ == "__main__":
    main()
