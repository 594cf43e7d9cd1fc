"""A real-size Qwen2-Audio-7B (random weights, bf16) through a few GRPO steps under ZeRO-2 and ZeRO-3 on one GPU.

    python benchmarks/gpu_grpo_7b.py                 # on a GPU machine: about 6-8 minutes, prints a table
    python benchmarks/gpu_grpo_7b.py --tiny          # the same code path on a CPU, the geometry scaled down

What it does, with nothing of its own in the training path:
1. builds a checkpoint from `benchmarks/configs/qwen2_audio_7b.json` (Qwen2-Audio-7B's real geometry: 32-layer
   Whisper-large encoder, 32-layer 4096-wide Qwen2 LM, 156,032 embedding rows; 8.4 B parameters) with random bf16
   weights, initialised on the GPU, and an offline tokenizer (`rl_audio.models.tokenizer`; the ids differ from the
   real tokenizer's, the shapes do not);
2. writes 20-30 s clips of the embedded default data;
3. for ZeRO-2 and ZeRO-3 (`accelerate_configs/zero2.yaml`, `zero3.yaml`, one process), runs
   `recipes/timepro_grounding.yaml` (LoRA r 8, G = 4, 64 completion tokens, beta 0.04, timestamp tokens, frozen
   encoder) for a warm-up step and `--steps` timed steps through `rl_audio.grpo.build_trainer`, and records seconds
   per step, tokens per second (prompt + completion tokens of the step, from TRL's `num_tokens`) and peak allocated
   CUDA memory.
Not part of the test suite. `--keep DIR` keeps the checkpoint for a second run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "configs" / "qwen2_audio_7b.json"
# --tiny: the same structure at a size a CPU runs in a minute
TINY = {"audio_config": {"encoder_layers": 2, "d_model": 64, "encoder_attention_heads": 4, "encoder_ffn_dim": 128},
        "text_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 2048}}  # fmt: skip


def build_checkpoint(out: Path, tiny: bool) -> Path:
    import torch
    from transformers import Qwen2AudioConfig, Qwen2AudioProcessor, WhisperFeatureExtractor

    from rl_audio.models.families import Qwen2AudioTimestampModel
    from rl_audio.models.presets import _QWEN_SPECIALS, _template
    from rl_audio.models.tokenizer import build_tokenizer

    geometry = json.loads(CONFIG.read_text())
    if tiny:
        for part, values in TINY.items():
            geometry[part].update(values)
    tok = build_tokenizer(_QWEN_SPECIALS, vocab_size=400)
    tok.chat_template = _template("Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n")
    fe = WhisperFeatureExtractor(feature_size=128, chunk_length=30)
    cfg = Qwen2AudioConfig(
        audio_config=geometry["audio_config"],
        text_config=geometry["text_config"],
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2AudioTimestampModel(cfg).to(dtype)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=tok.chat_template).save_pretrained(out)
    del model
    print(f"checkpoint: {n / 1e9:.2f} B parameters, {dtype}, built and saved in {time.perf_counter() - t0:.0f} s")
    return out


def worker(a) -> None:
    """One training run (inside `accelerate launch`): prints a RESULT line."""
    import torch
    from transformers import TrainerCallback

    from rl_audio.cli import parse_recipe
    from rl_audio.configs import AudioGRPOConfig
    from rl_audio.grpo import build_trainer

    gpu = torch.cuda.is_available()
    args = [
        str(ROOT / "recipes" / "timepro_grounding.yaml"), "--model_name_or_path", a.checkpoint, "--train_manifests", f"[{a.data}]", "--output_dir", a.out,
        "--max_steps", str(a.steps + 1), "--gradient_accumulation_steps", "1", "--logging_steps", "1",
        "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
        "--timestamp_token_max", "30.0",
    ]  # fmt: skip
    if not gpu:
        args += ["--model_dtype", "float32", "--bf16", "false"]
    cfg = parse_recipe(AudioGRPOConfig, args)
    trainer, _ = build_trainer(cfg)
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if gpu:
                torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t0)

    trainer.add_callback(Timer())
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    per_step = [b - a for a, b in zip(tokens, tokens[1:])]  # the timed steps (after the warm-up)
    step_s = sum(times[1:]) / max(len(times) - 1, 1)
    result = {
        "step_s": step_s,
        "tokens_per_step": sum(per_step) / max(len(per_step), 1),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if gpu else float("nan"),
    }
    if trainer.accelerator.is_main_process:
        print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="scaled-down geometry, for a CPU")
    p.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    p.add_argument("--stages", default="zero2,zero3")
    p.add_argument("--keep", help="build (or reuse) the checkpoint in this folder")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a)
        return
    import torch

    from rl_audio.data import build_default_dataset

    gpu = torch.cuda.is_available()
    if not gpu and not a.tiny:
        sys.exit("no GPU: the real-size run needs one (about 40 GB); --tiny runs the same path on a CPU")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = Path(a.keep) if a.keep else tmp / "ckpt"
        if not (ckpt / "config.json").exists():
            build_checkpoint(ckpt, a.tiny)
        paths = build_default_dataset(
            tmp / "data", num_train=16, num_test=2, min_len=20.0, max_len=30.0, progress=False
        )
        data = paths["train"]
        rows = []
        for stage in a.stages.split(","):
            launch = ["accelerate", "launch", "--config_file", str(ROOT / "accelerate_configs" / f"{stage}.yaml")]
            launch += ["--num_processes", "1"] if gpu else ["--num_processes", "2", "--mixed_precision", "no"]
            cmd = launch + [__file__, "--worker", "--checkpoint", str(ckpt), "--data", str(data),
                            "--out", str(tmp / stage), "--steps", str(a.steps)]  # fmt: skip
            t0 = time.perf_counter()
            run = subprocess.run(
                cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"}
            )
            line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT ")), None)
            if run.returncode != 0 or line is None:
                sys.exit(f"{stage} failed (exit {run.returncode}):\n{run.stderr[-4000:]}")
            rows.append({"stage": stage, "wall_s": time.perf_counter() - t0, **json.loads(line[len("RESULT ") :])})
    device = torch.cuda.get_device_name() if gpu else "CPU (--tiny)"
    print(f"\nQwen2-Audio-7B geometry{' (scaled down)' if a.tiny else ''}, recipes/timepro_grounding.yaml, {device}\n")
    print("| stage | s/step | tokens/step | tokens/s | peak GiB | launch wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['stage']} | {r['step_s']:.2f} | {r['tokens_per_step']:.0f} | "
              f"{r['tokens_per_step'] / r['step_s']:.0f} | {r['peak_gib']:.1f} | {r['wall_s']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
