"""A relaunch continues from the last complete checkpoint in output_dir; a torn checkpoint (a save cut short) is
skipped and moved aside; `resume_from_checkpoint: true`, a path, `false` and `overwrite_output_dir` do what
docs/sft.md (Resuming) says, and a setting that cannot work fails before the model loads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import TrainerCallback

from rl_audio import grpo, sft
from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioGRPOConfig, AudioSFTConfig
from rl_audio.trainers.resume import ResumeError, checkpoint_problem, plan_resume, resume_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SFT_RECIPE = str(ROOT / "recipes" / "cpu" / "spotsound.yaml")  # LoRA: checkpoints hold adapter_model.safetensors
GRPO_RECIPE = str(ROOT / "recipes" / "cpu" / "grpo_timepro.yaml")


def make_checkpoint(out: Path, step: int, weights: str = "model.safetensors") -> Path:
    """A checkpoint folder as transformers leaves it after a finished save (the files resuming reads)."""
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if weights == "sharded":
        save_file({"a": torch.zeros(4)}, folder / "model-00001-of-00002.safetensors")
        save_file({"b": torch.ones(4)}, folder / "model-00002-of-00002.safetensors")
        index = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    elif weights == "deepspeed":
        (folder / f"global_step{step}").mkdir()
        (folder / f"global_step{step}" / "mp_rank_00_model_states.pt").write_bytes(b"x")
    else:
        save_file({"w": torch.arange(16.0)}, folder / weights)
    (folder / "optimizer.pt").write_bytes(b"x")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


@pytest.mark.parametrize("weights", ["model.safetensors", "adapter_model.safetensors", "sharded", "deepspeed"])
def test_a_finished_save_is_complete(tmp_path, weights):
    assert checkpoint_problem(make_checkpoint(tmp_path, 3, weights)) is None


def _no_state(f: Path):
    (f / "trainer_state.json").unlink()


def _half_state(f: Path):
    (f / "trainer_state.json").write_text('{"global_step": 3, "log_hi')


def _no_weights(f: Path):
    (f / "model.safetensors").unlink()


def _cut_weights(f: Path):
    data = (f / "model.safetensors").read_bytes()
    (f / "model.safetensors").write_bytes(data[: len(data) - 10])


def _missing_shard(f: Path):
    (f / "model-00002-of-00002.safetensors").unlink()


@pytest.mark.parametrize(
    ("tear", "weights", "message"),
    [
        (_no_state, "model.safetensors", "trainer_state.json is missing"),
        (_half_state, "model.safetensors", "trainer_state.json cannot be read"),
        (_no_weights, "model.safetensors", "no model weights"),
        (_cut_weights, "model.safetensors", "model.safetensors is cut short"),
        (_missing_shard, "sharded", "shard model-00002-of-00002.safetensors is missing"),
    ],
)
def test_a_torn_checkpoint_is_recognised(tmp_path, tear, weights, message):
    folder = make_checkpoint(tmp_path, 3, weights)
    tear(folder)
    assert message in checkpoint_problem(folder)


def test_unset_resumes_from_the_last_checkpoint(tmp_path):
    for step in (1, 2, 10):  # by step, not by name: checkpoint-10 sorts before checkpoint-2 as text
        make_checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-x").mkdir()  # not transformers' name: ignored
    plan = plan_resume(tmp_path)
    assert plan.checkpoint == str(tmp_path / "checkpoint-10") and plan.moves == []
    assert plan_resume(tmp_path, "true").checkpoint == plan_resume(tmp_path, True).checkpoint == plan.checkpoint


def test_nothing_to_resume_starts_at_step_0(tmp_path):
    assert plan_resume(tmp_path / "new").checkpoint is None
    assert plan_resume(tmp_path / "new", False).checkpoint is None


def test_torn_checkpoints_are_skipped_and_moved_aside(tmp_path, caplog):
    make_checkpoint(tmp_path, 1)
    _no_state(make_checkpoint(tmp_path, 2))
    _half_state(make_checkpoint(tmp_path, 3))
    (tmp_path / "torn-checkpoint-3").mkdir()  # left by an earlier relaunch: not written over
    args = parse_recipe(AudioSFTConfig, [SFT_RECIPE, "--output_dir", str(tmp_path)])
    with caplog.at_level(logging.INFO, logger="rl_audio"):
        assert resume_checkpoint(args) == str(tmp_path / "checkpoint-1")
    log = caplog.text
    assert f"skipping {tmp_path / 'checkpoint-3'}: not a complete checkpoint, trainer_state.json cannot be read" in log
    assert f"skipping {tmp_path / 'checkpoint-2'}: not a complete checkpoint, trainer_state.json is missing" in log
    assert f"resuming from {tmp_path / 'checkpoint-1'}, the last complete checkpoint" in log
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-1", "torn-checkpoint-2", "torn-checkpoint-3", "torn-checkpoint-3.1"
    ]  # fmt: skip
    assert (tmp_path / "torn-checkpoint-3.1" / "model.safetensors").exists()


def test_only_torn_checkpoints_start_at_step_0(tmp_path):
    _no_weights(make_checkpoint(tmp_path, 2))
    plan = plan_resume(tmp_path)
    assert plan.checkpoint is None and plan.moves == [(tmp_path / "checkpoint-2", tmp_path / "torn-checkpoint-2")]
    assert any("no complete checkpoint" in message for _, message in plan.notes)


def test_true_without_a_complete_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ResumeError, match="resume_from_checkpoint: true, but .* holds no complete checkpoint$"):
        plan_resume(tmp_path, True)
    _no_state(make_checkpoint(tmp_path, 2))
    with pytest.raises(ResumeError, match=r"no complete checkpoint \(1 incomplete: checkpoint-2\)"):
        plan_resume(tmp_path, "True")
    assert (tmp_path / "checkpoint-2").exists()  # an error moves nothing


def test_a_path_is_used_as_given(tmp_path):
    other = make_checkpoint(tmp_path / "other", 5)
    make_checkpoint(tmp_path / "out", 7)
    plan = plan_resume(tmp_path / "out", str(other))
    assert plan.checkpoint == str(other) and plan.moves == []


def test_a_torn_or_missing_path_is_an_error_naming_it(tmp_path):
    torn = make_checkpoint(tmp_path, 4)
    _no_state(torn)
    with pytest.raises(ResumeError, match=f"{torn} is not a complete checkpoint: trainer_state.json is missing"):
        plan_resume(tmp_path, str(torn))
    missing = tmp_path / "checkpoint-9"
    with pytest.raises(ResumeError, match=f"{missing} is not a complete checkpoint: no such folder"):
        plan_resume(tmp_path, str(missing))


def test_an_earlier_checkpoint_of_the_run_warns_about_later_ones(tmp_path):
    first = make_checkpoint(tmp_path, 1)
    make_checkpoint(tmp_path, 2)
    plan = plan_resume(tmp_path, str(first))
    assert plan.checkpoint == str(first)
    assert any("later checkpoints (checkpoint-2)" in message for level, message in plan.notes if level >= 30)


def test_false_refuses_to_mix_with_existing_checkpoints(tmp_path):
    make_checkpoint(tmp_path, 2)
    with pytest.raises(ResumeError, match="holds checkpoint-2: a new run would mix its checkpoints with them"):
        plan_resume(tmp_path, "false")


def test_overwrite_output_dir_moves_the_old_run_aside(tmp_path, caplog):
    make_checkpoint(tmp_path, 1)
    _no_state(make_checkpoint(tmp_path, 2))
    (tmp_path / "final").mkdir()
    (tmp_path / "replaced-1").mkdir()
    args = parse_recipe(AudioSFTConfig, [SFT_RECIPE, "--output_dir", str(tmp_path), "--overwrite_output_dir", "true"])
    with caplog.at_level(logging.INFO, logger="rl_audio"):
        assert resume_checkpoint(args) is None
    assert "starting over at step 0; moving checkpoint-1, checkpoint-2, final to" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replaced-1", "replaced-2"]
    assert sorted(p.name for p in (tmp_path / "replaced-2").iterdir()) == ["checkpoint-1", "checkpoint-2", "final"]


def test_overwrite_and_resume_together_is_an_error(tmp_path):
    with pytest.raises(ResumeError, match="set one of them"):
        plan_resume(tmp_path, "true", overwrite_output_dir=True)


@pytest.mark.parametrize("cls, recipe", [(AudioSFTConfig, SFT_RECIPE), (AudioGRPOConfig, GRPO_RECIPE)])
def test_recipe_values(tmp_path, cls, recipe):
    def parsed(*extra):
        return parse_recipe(cls, [recipe, *extra]).resume_from_checkpoint

    assert parsed() is None
    assert parsed("--resume_from_checkpoint", "true") is True and parsed("--resume_from_checkpoint", "True") is True
    assert parsed("--resume_from_checkpoint", "false") is False
    assert parsed("--resume_from_checkpoint", "out/checkpoint-2") == "out/checkpoint-2"
    yaml_recipe = tmp_path / "r.yaml"
    yaml_recipe.write_text(Path(recipe).read_text() + "\nresume_from_checkpoint: true\n")
    assert parse_recipe(cls, [str(yaml_recipe)]).resume_from_checkpoint is True  # a YAML boolean, not a path


@pytest.mark.parametrize("entry, recipe", [(sft, SFT_RECIPE), (grpo, GRPO_RECIPE)])
def test_entry_points_fail_before_loading_the_model(tmp_path, monkeypatch, entry, recipe):
    def no_build(cfg):
        raise AssertionError("the model was loaded before the resume setting was checked")

    monkeypatch.setattr(entry, "build_trainer", no_build)
    with pytest.raises(ResumeError, match="holds no complete checkpoint"):
        entry.main([recipe, "--output_dir", str(tmp_path / "out"), "--resume_from_checkpoint", "true"])


class Watch(TrainerCallback):
    """The step training starts from, the steps it trains, and the checkpoints present when it starts."""

    def __init__(self, out: Path):
        self.out, self.start_step, self.steps, self.present = out, None, [], []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step
        self.present = sorted(p.name for p in self.out.iterdir() if p.name.startswith("checkpoint-"))

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def launch(monkeypatch, out: Path, default_data_args, *extra: str) -> Watch:
    """`rl_audio.sft.main` as a relaunch would run it, watched by a :class:`Watch`."""
    watch, build = Watch(out), sft.build_trainer

    def watched(cfg):
        trainer, lm = build(cfg)
        trainer.add_callback(watch)
        return trainer, lm

    monkeypatch.setattr(sft, "build_trainer", watched)
    args = [SFT_RECIPE, "--output_dir", str(out), *default_data_args, "--per_device_train_batch_size", "2"]
    sft.main([*args, "--logging_steps", "1", "--save_steps", "1", "--warmup_steps", "0", *extra])
    return watch


def _state(folder: Path) -> dict:
    return json.loads((folder / "trainer_state.json").read_text())


@pytest.mark.slow
def test_a_relaunch_continues_the_run(tmp_path, monkeypatch, default_data_args, caplog):
    out = tmp_path / "out"
    first = launch(monkeypatch, out, default_data_args, "--max_steps", "2")  # the recipe keeps 1 checkpoint
    assert first.steps == [1, 2] and sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    losses = {h["step"]: h["loss"] for h in _state(out / "checkpoint-2")["log_history"] if "loss" in h}

    with caplog.at_level(logging.INFO, logger="rl_audio"):
        again = launch(monkeypatch, out, default_data_args, "--max_steps", "4")  # no resume argument
    assert f"resuming from {out / 'checkpoint-2'}, the last complete checkpoint" in caplog.text
    assert again.present == ["checkpoint-2"]  # still there when training starts: save_total_limit ran no earlier
    assert again.start_step == 2 and again.steps == [3, 4]
    state = _state(out / "checkpoint-4")
    assert state["global_step"] == 4
    logged = {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}
    assert sorted(logged) == [1, 2, 3, 4] and all(logged[s] == losses[s] for s in (1, 2))
    assert json.loads((out / "final" / "log_history.json").read_text())[-1]["step"] == 4

    done = launch(monkeypatch, out, default_data_args, "--max_steps", "4")  # a finished run, launched again
    assert done.start_step == 4 and done.steps == []  # transformers alone would train a step 5
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]


@pytest.mark.slow
def test_a_relaunch_skips_a_torn_checkpoint(tmp_path, monkeypatch, default_data_args, caplog):
    out = tmp_path / "out"
    launch(monkeypatch, out, default_data_args, "--max_steps", "2", "--save_total_limit", "3")
    (out / "checkpoint-2" / "trainer_state.json").unlink()  # as a process killed during the save leaves it

    with caplog.at_level(logging.INFO, logger="rl_audio"):
        again = launch(monkeypatch, out, default_data_args, "--max_steps", "3", "--save_total_limit", "3")
    assert f"skipping {out / 'checkpoint-2'}: not a complete checkpoint, trainer_state.json is missing" in caplog.text
    assert f"resuming from {out / 'checkpoint-1'}, the last complete checkpoint" in caplog.text
    assert again.start_step == 1 and again.steps == [2, 3]
    assert (out / "torn-checkpoint-2").is_dir() and checkpoint_problem(out / "checkpoint-2") is None
    assert _state(out / "checkpoint-3")["global_step"] == 3
