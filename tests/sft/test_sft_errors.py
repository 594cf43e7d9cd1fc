"""Bad input stops the SFT entry point before training starts, with an error that says what to fix; a run resumes
from its checkpoint at the right step."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioSFTConfig
from rl_audio.data import ManifestError
from rl_audio.sft import build_trainer, main

ROOT = Path(__file__).resolve().parents[2]
CPU_RECIPE = str(ROOT / "recipes" / "cpu" / "spotsound.yaml")
QUICK = ["--save_strategy", "no", "--freeze_audio_encoder", "true", "--activation_checkpointing", "false"]


def cfg_for(tmp_path, *extra: str, recipe: str = CPU_RECIPE) -> AudioSFTConfig:
    return parse_recipe(AudioSFTConfig, [recipe, "--output_dir", str(tmp_path / "out"), *QUICK, *extra])


def grounding(id_: str, audio: str, duration: float, **kw) -> dict:
    row = {"id": id_, "audio": audio, "duration": duration, "task": "grounding", "query": "a rising tone"}
    return {**row, "windows": [[0.5, 1.5]], **kw}


def write_manifest(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_recipe_naming_a_missing_model_path(tmp_path, default_data_args):
    recipe = tmp_path / "recipe.yaml"
    text = (
        Path(CPU_RECIPE).read_text().replace("model_name_or_path: tiny-qwen2-audio", "model_name_or_path: {missing}")
    )
    assert "{missing}" in text
    recipe.write_text(text.replace("{missing}", str(tmp_path / "no_such_model")))
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"model path '.*no_such_model' does not exist \(model_name_or_path"):
        main([str(recipe), "--output_dir", str(out), *default_data_args])
    assert not out.exists() or not any(out.iterdir())  # stopped before training wrote anything


def test_a_missing_manifest_names_the_key_and_what_builds_one(tmp_path):
    missing = tmp_path / "data" / "sta" / "train.jsonl"
    with pytest.raises(FileNotFoundError) as err:
        build_trainer(cfg_for(tmp_path, "--train_manifests", f"[{missing}]"))
    message = str(err.value)
    assert message.startswith(f"train_manifests: {missing} not found")
    assert "python -m rl_audio.data" in message and "leave train_manifests empty" in message


def test_invalid_manifest_rows_name_file_line_and_field(tmp_path, write_wav):
    write_wav("clip.wav", 3.0)
    manifest = write_manifest(
        tmp_path / "train.jsonl",
        [
            grounding("ok1", "clip.wav", 3.0),
            grounding("bad-window", "clip.wav", 3.0, windows=[[2.0, 1.0]]),
            grounding("ok2", "clip.wav", 3.0, windows=[[0.2, 0.9]]),
            {"id": "no-query", "audio": "clip.wav", "duration": 3.0, "task": "grounding"},
            "{not json",
        ],
    )
    cfg = cfg_for(tmp_path, "--train_manifests", str(manifest))
    with pytest.raises(ManifestError) as err:
        build_trainer(cfg)
    assert str(err.value).startswith(f"{manifest}:2: field 'windows'")
    assert "end < start" in str(err.value)

    trainer, _ = build_trainer(cfg_for(tmp_path, "--train_manifests", str(manifest), "--skip_invalid", "true"))
    assert sorted(trainer.train_dataset["id"]) == ["ok1", "ok2"]


def test_timestamp_grid_too_short_fails_before_training(tmp_path, write_wav):
    write_wav("long.wav", 35.0)
    write_wav("short.wav", 3.0)
    manifest = write_manifest(
        tmp_path / "train.jsonl", [grounding("short", "short.wav", 3.0), grounding("long", "long.wav", 35.0)]
    )
    recipe = str(ROOT / "recipes" / "cpu" / "timepro_sft.yaml")
    cfg = cfg_for(tmp_path, "--train_manifests", str(manifest), "--timestamp_token_max", "30", recipe=recipe)
    with pytest.raises(ValueError) as err:
        build_trainer(cfg)
    message = str(err.value)
    assert "longest audio in the data (35 s)" in message
    assert "timestamp grid ends at 30 s; raise timestamp_token_max" in message
    # with a grid long enough, the same data is fine, unless the sequence cannot fit max_length
    cfg = cfg_for(tmp_path, "--train_manifests", str(manifest), "--timestamp_token_max", "36", recipe=recipe)
    with pytest.raises(ValueError, match=r"takes 1750 tokens with timestamp mode 'tokens', more than max_length"):
        build_trainer(cfg)
    extra = ["--timestamp_token_max", "36", "--max_length", "4096"]
    trainer, _ = build_trainer(cfg_for(tmp_path, "--train_manifests", str(manifest), *extra, recipe=recipe))
    assert len(trainer.train_dataset) == 2


def test_unknown_lora_target_lists_the_real_names(tmp_path, default_data_args):
    cfg = cfg_for(tmp_path, *default_data_args, "--lora_target_modules", "[q_proj, qkv_proj]")
    with pytest.raises(ValueError) as err:
        build_trainer(cfg)
    message = str(err.value)
    assert "lora_target_modules ['qkv_proj'] do not exist in the language model" in message
    for real in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert f"'{real}'" in message


def test_no_rows_after_the_task_filter(tmp_path, default_data_args):
    with pytest.raises(ValueError, match=r"no rows to use in .* \(tasks filter: \['sed'\]\)"):
        build_trainer(cfg_for(tmp_path, *default_data_args, "--tasks", "sed"))


class StepCounter(TrainerCallback):
    def __init__(self):
        self.start_step, self.steps = None, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


@pytest.mark.slow
def test_resume_continues_at_the_checkpoint_step(tmp_path, default_data_args):
    args = [*default_data_args, "--per_device_train_batch_size", "2", "--logging_steps", "1", "--max_steps", "4"]
    args += ["--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "3", "--learning_rate", "1e-2"]
    trainer, _ = build_trainer(cfg_for(tmp_path, *args))
    trainer.train()
    out = tmp_path / "out"
    first = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    first_losses = {h["step"]: h["loss"] for h in first["log_history"] if "loss" in h}
    assert sorted(first_losses) == [1, 2, 3, 4]

    checkpoint = out / "checkpoint-2"
    trainer, _ = build_trainer(cfg_for(tmp_path, *args, "--resume_from_checkpoint", str(checkpoint)))
    counter = StepCounter()
    trainer.add_callback(counter)
    trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    assert counter.start_step == 2 and counter.steps == [3, 4]
    assert trainer.state.global_step == 4
    resumed = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    assert sorted(resumed) == [1, 2, 3, 4]  # steps 1-2 from the checkpoint's state, 3-4 trained now
    # same weights, optimizer state, schedule and data order as the uninterrupted run
    for step in (3, 4):
        assert resumed[step] == pytest.approx(first_losses[step], rel=1e-4)


def _checkpoint_with(tmp_path: Path, **spec) -> str:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir(exist_ok=True)
    defaults = {"mode": "none", "granularity": 1.0, "text_template": "timestamp: {t} seconds"}
    defaults |= {"token_stride": 0.04, "token_max": 30.0}
    (ckpt / "rl_audio.json").write_text(json.dumps({"timestamps": {**defaults, **spec}}))
    return str(ckpt)


@pytest.mark.parametrize(
    ("trained", "args", "message"),
    [
        ({"mode": "text"}, ["--timestamp_mode", "tokens"], "timestamp_mode='text' but the recipe says 'tokens'"),
        ({"mode": "tokens"}, ["--timestamp_mode", "none"], "timestamp_mode='tokens' but the recipe says 'none'"),
        (
            {"mode": "text", "granularity": 0.2},
            ["--timestamp_mode", "text", "--timestamp_granularity", "1.0"],
            "timestamp_granularity=0.2 but the recipe says 1.0",
        ),
        (
            {"mode": "tokens"},
            ["--timestamp_mode", "tokens", "--timestamp_token_stride", "0.1"],
            "timestamp_token_stride=0.04 but the recipe says 0.1",
        ),
    ],
)
def test_checkpoint_read_with_another_timestamp_layout(tmp_path, trained, args, message):
    from rl_audio.runs import check_run_info

    ckpt = _checkpoint_with(tmp_path, **trained)
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        check_run_info(cfg_for(tmp_path, *args), ckpt, training=True)
    assert "rl_audio.json" in str(err.value)


def test_checkpoint_without_timestamps_may_be_trained_with_them(tmp_path):
    """The papers' path: a model that never saw timestamps is fine-tuned with them (allowed when training only)."""
    from rl_audio.runs import check_run_info

    ckpt = _checkpoint_with(tmp_path, mode="none")
    for mode in ("text", "tokens"):
        check_run_info(cfg_for(tmp_path, "--timestamp_mode", mode), ckpt, training=True)
        with pytest.raises(ValueError, match=f"timestamp_mode='none' but the recipe says '{mode}'"):
            check_run_info(cfg_for(tmp_path, "--timestamp_mode", mode), ckpt, training=False)
    # the same layout passes; settings the mode does not use are not compared
    text = _checkpoint_with(tmp_path, mode="text", granularity=0.5, token_stride=0.1)
    check_run_info(cfg_for(tmp_path, "--timestamp_mode", "text", "--timestamp_granularity", "0.5"), text)


@pytest.mark.parametrize("part", ["all", "aligner"])
@pytest.mark.parametrize("preset", ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"])
def test_full_fine_tune_resumes_with_every_weight(tmp_path, default_data_args, preset, part):
    # transformers reloads model.safetensors with strict=False, and the saved key names differ from the in-memory
    # ones for 26 of 66 (Qwen2-Audio), 88 of 88 (Omni) and 68 of 68 (AF3) keys: those weights used to restart at init.
    # `aligner`: a partial fine-tune (TGSR's STA trains the aligner only), whose checkpoint holds every weight too.
    args = [*default_data_args, "--model_name_or_path", preset, "--use_peft", "false", "--max_steps", "4"]
    if part == "aligner":
        args += ["--trainable_modules", "[aligner]"]
    args += ["--per_device_train_batch_size", "2", "--logging_steps", "1", "--learning_rate", "1e-2"]
    args += ["--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "3"]
    trainer, _ = build_trainer(cfg_for(tmp_path / "a", *args))
    trainer.train()
    first = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    uninterrupted = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    checkpoint = tmp_path / "a" / "out" / "checkpoint-2"
    trainer, _ = build_trainer(cfg_for(tmp_path / "b", *args))
    trainer.train(resume_from_checkpoint=str(checkpoint))
    resumed = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    for step in (3, 4):
        assert resumed[step] == pytest.approx(first[step], rel=1e-5)
    after = trainer.model.state_dict()
    assert after.keys() == uninterrupted.keys()
    assert all(torch.allclose(after[k], uninterrupted[k], atol=1e-6) for k in after)


def test_a_checkpoint_that_does_not_cover_the_model_is_an_error(tmp_path):
    from safetensors.torch import save_file

    from rl_audio.models.loading import load_model
    from rl_audio.trainers.resume import CheckpointMismatchError, load_renamed_state

    model = load_model("tiny-qwen2-audio").model
    model.save_pretrained(tmp_path / "ckpt")
    assert load_renamed_state(model, str(tmp_path / "ckpt"))  # its own checkpoint loads strictly
    from safetensors.torch import load_file

    state = load_file(tmp_path / "ckpt" / "model.safetensors")
    dropped = sorted(state)[0]
    del state[dropped]
    save_file(state, tmp_path / "ckpt" / "model.safetensors")
    with pytest.raises(CheckpointMismatchError, match="missing 1"):
        load_renamed_state(model, str(tmp_path / "ckpt"))
    assert not load_renamed_state(model, str(tmp_path))  # no weights there: the caller falls back
