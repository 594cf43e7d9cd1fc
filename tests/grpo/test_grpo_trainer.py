"""AudioGRPOTrainer on tiny presets: audio reaches generation and every log-prob pass, fusion happens after the
gather, frozen parameters stay frozen, resume continues where it stopped, bad input fails early and clearly."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioGRPOConfig
from rl_audio.data import build_default_dataset, load_audio
from rl_audio.grpo import build_trainer
from rl_audio.models.base import AudioBatch

REWARD_MODULE = """
import json, os

def spread(completions, **kwargs):
    # A reward with variance inside every group, so that advantages (and gradients) are non-zero.
    return [len(set(c)) / 10.0 for c in completions]

def record(completions, id, **kwargs):
    with open(os.environ["RL_AUDIO_TEST_RECORD"], "a") as f:
        f.write(json.dumps(id) + "\\n")
    return [0.0 for _ in completions]

def broken(completions, **kwargs):
    return [len(c) / 0 for c in completions]
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("grpo_data")
    build_default_dataset(out, num_train=4, num_test=2, min_len=3.0, max_len=4.0, progress=False)
    return out


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    (tmp_path / "grpo_test_rewards.py").write_text(textwrap.dedent(REWARD_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RL_AUDIO_TEST_RECORD", str(tmp_path / "record.jsonl"))
    return "grpo_test_rewards"


def make_cfg(tmp_path, data_dir, *overrides):
    args = [
        "--output_dir", str(tmp_path / "out"), "--data_dir", str(data_dir), "--default_data_clips", "4",
        "--tasks", "[grounding]", "--num_generations", "4", "--per_device_train_batch_size", "4",
        "--max_completion_length", "6", "--max_steps", "2", "--report_to", "none", "--logging_steps", "1",
        "--save_strategy", "no", "--seed", "0",
        *overrides,
    ]  # fmt: skip
    return parse_recipe(AudioGRPOConfig, args)


def completion_logps(model, adapter, out, audio, temperature):
    """Direct forward pass: log-prob of each completion token, computed outside the trainer."""
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    k = out["completion_ids"].shape[1]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, **adapter.model_audio_kwargs(audio)).logits
    logp = F.log_softmax(logits[:, -k - 1 : -1].float() / temperature, dim=-1)
    return logp.gather(-1, out["completion_ids"].unsqueeze(-1)).squeeze(-1)


FAST = {("tiny-qwen2-audio", "tokens"), ("tiny-af3", "text"), ("tiny-qwen2.5-omni", "none")}
GRID = [
    pytest.param(p, m, marks=() if (p, m) in FAST else pytest.mark.slow)
    for p in ("tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3")
    for m in ("none", "text", "tokens")
]


@pytest.mark.parametrize("preset,mode", GRID)
def test_audio_reaches_generation_and_logprob_passes(tmp_path, data_dir, preset, mode):
    cfg = make_cfg(tmp_path, data_dir, "--model_name_or_path", preset, "--timestamp_mode", mode, "--beta", "0.04")
    trainer, lm = build_trainer(cfg)
    row = trainer.train_dataset[0]
    seen = {}
    generate = trainer.model.generate

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return generate(*args, **kwargs)

    trainer.model.generate = spy
    out = trainer._generate_and_score_completions([row] * 4)
    # generation received the clip's features: one encoder window per prompt for a 3-4 s clip
    assert seen["input_features"].shape[0] == 4
    wav = load_audio(row["audio"])
    n_slots = (seen["input_ids"] == lm.adapter.placeholder_id).sum(dim=1)
    assert n_slots.tolist() == [sum(lm.adapter.frame_counts_for_seconds(len(wav) / 16000))] * 4

    audio = AudioBatch.from_dict(out)
    cmask = out["completion_mask"].bool()
    # reference pass inside TRL == direct forward of the reference model on the same audio and tokens
    direct = completion_logps(trainer.ref_model, lm.adapter, out, audio, trainer.temperature)
    assert torch.allclose(direct[cmask], out["ref_per_token_logps"][cmask], atol=1e-5)
    # ... and not what the model gives for silence
    silent, _ = lm.adapter.encode_audio([np.zeros_like(wav)] * 4)
    quiet = completion_logps(trainer.ref_model, lm.adapter, out, silent, trainer.temperature)
    assert (quiet[cmask] - out["ref_per_token_logps"][cmask]).abs().max() > 1e-4

    # policy pass, chunked by TRL's batch_size: each chunk gets its own slice of audio
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    trainer._audio = audio
    chunked, _, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, ids, mask, out["completion_ids"].shape[1], batch_size=1
    )
    trainer._audio = None
    policy = completion_logps(trainer.model, lm.adapter, out, audio, trainer.temperature)
    assert torch.allclose(chunked[cmask], policy[cmask], atol=1e-5)


def test_fusion_runs_on_gathered_rewards(tmp_path, data_dir, reward_module, monkeypatch):
    """Groups that span two processes fuse as on one process (TimePro-RL eq. 2 needs the whole group)."""
    import trl.trainer.grpo_trainer as trl_grpo

    cfg = make_cfg(
        tmp_path, data_dir, "--rewards", f"[{reward_module}.spread, miou]", "--fusion_main", f"{reward_module}.spread",
        "--fusion_aux", "miou", "--fusion_eps", "0.05",
    )  # fmt: skip
    trainer, _ = build_trainer(cfg)
    rows = [trainer.train_dataset[i] for i in range(2)]
    inputs = [rows[0]] * 4 + [rows[1]] * 4
    # completions chosen so group 0's main reward is constant (fused) and group 1's is not
    completions = ["aaaa", "bbbb", "cccc", "dddd", "From 0.50 seconds to 1.00 seconds.", "a", "ab", "abc"]
    prompts = [r["prompt"] for r in inputs]
    ids = [[0]] * 8

    def calculate(part, gather):
        monkeypatch.setattr(trl_grpo, "gather", gather)
        pick = lambda xs: [xs[i] for i in part]  # noqa: E731
        return trainer._calculate_rewards(pick(inputs), pick(prompts), pick(completions), pick(ids))

    single = calculate(range(8), lambda t: t)
    # Two processes: process 0 holds completions 0-5, process 1 holds 6-7, so group 1 spans both. Process 1's
    # local (ungathered) rewards, then process 0's call, whose gather appends them.
    base = super(type(trainer), trainer)._calculate_rewards
    monkeypatch.setattr(trl_grpo, "gather", lambda t: t)
    local_1 = base(inputs[6:], prompts[6:], completions[6:], ids[6:])
    two_proc = calculate(range(6), lambda t: torch.cat([t, local_1]))
    assert torch.allclose(single, two_proc, equal_nan=True)
    slot = trainer.reward_func_names.index(f"fused_{reward_module}.spread_miou")
    fused = single[:, slot]
    main = single[:, trainer.reward_func_names.index(f"{reward_module}.spread")]
    aux = single[:, trainer.reward_func_names.index("miou")]
    assert torch.allclose(fused[:4], main[:4] * aux[:4])  # group 0: Var(main) = 0 < eps -> product
    assert torch.allclose(fused[4:], main[4:])  # group 1: varied -> main reward alone
    # fusing per process instead (group 1 cut in two) gives a different answer: the test can tell
    from rewards.fusion import variance_gated

    per_proc = variance_gated(main[6:], aux[6:], 2, 0.05).rewards
    assert not torch.allclose(per_proc, fused[6:])


@pytest.mark.slow
def test_training_changes_trainable_and_keeps_frozen(tmp_path, data_dir, reward_module):
    cfg = make_cfg(
        tmp_path, data_dir, "--timestamp_mode", "tokens", "--freeze_audio_encoder", "true",
        "--rewards", f"[{reward_module}.spread]", "--learning_rate", "1e-2", "--weight_decay", "0.1",
    )  # fmt: skip
    trainer, lm = build_trainer(cfg)
    encoder_before = {n: p.detach().clone() for n, p in lm.adapter.audio_encoder(lm.model).named_parameters()}
    emb = lm.model.get_input_embeddings().weight
    ts_rows_before = emb.detach()[lm.timestamp_ids].clone()
    lm_before = {n: p.detach().clone() for n, p in lm.adapter.language_model(lm.model).named_parameters()}
    trainer.train()
    changed = [
        n for n, p in lm.adapter.language_model(lm.model).named_parameters() if not torch.equal(p, lm_before[n])
    ]
    assert changed, "no language-model parameter changed"
    for n, p in lm.adapter.audio_encoder(lm.model).named_parameters():
        assert torch.equal(p, encoder_before[n]), n
    assert torch.equal(lm.model.get_input_embeddings().weight[lm.timestamp_ids], ts_rows_before)
    assert (tmp_path / "out").exists()


@pytest.mark.slow
def test_resume_continues_at_the_step_with_the_same_data(tmp_path, data_dir, reward_module):
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                control.should_training_stop = True

    common = ("--rewards", f"[{reward_module}.spread, {reward_module}.record]", "--max_steps", "4",
              "--save_strategy", "steps", "--save_steps", "2", "--per_device_train_batch_size", "4")  # fmt: skip
    record = tmp_path / "record.jsonl"

    def ids_seen():
        lines = [json.loads(x) for x in record.read_text().splitlines()]
        record.unlink()
        return lines

    full_cfg = make_cfg(tmp_path / "a", data_dir, *common)
    full, _ = build_trainer(full_cfg)
    full.train()
    full_ids = ids_seen()
    full_log = [h for h in full.state.log_history if "loss" in h]

    cut_cfg = make_cfg(tmp_path / "b", data_dir, *common)
    cut, _ = build_trainer(cut_cfg)
    cut.add_callback(StopAt())
    cut.train()
    first_ids = ids_seen()
    resumed, _ = build_trainer(make_cfg(tmp_path / "b", data_dir, *common))
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-2"))
    second_ids = ids_seen()
    log = [h for h in resumed.state.log_history if "loss" in h]
    assert [h["step"] for h in log] == [1, 2, 3, 4]  # no gap, no repeat
    assert first_ids + second_ids == full_ids  # the same rows in the same order
    for a, b in zip(full_log, log):
        assert a["rewards/grpo_test_rewards.spread/mean"] == pytest.approx(b["rewards/grpo_test_rewards.spread/mean"])


def test_bad_input_is_refused_before_training(tmp_path, data_dir, reward_module):
    with pytest.raises(ValueError, match="valid names"):
        build_trainer(make_cfg(tmp_path, data_dir, "--rewards", "[eb_f11]"))
    with pytest.raises(ValueError, match="fusion_aux 'meteor' is not one of the configured rewards"):
        build_trainer(
            make_cfg(
                tmp_path, data_dir, "--rewards", "[eb_f1, miou]", "--fusion_main", "eb_f1", "--fusion_aux", "meteor"
            )
        )
    with pytest.raises(ValueError, match="use_vllm"):
        build_trainer(make_cfg(tmp_path, data_dir, "--use_vllm", "true"))
    with pytest.raises(ValueError, match="num_generations|divisible"):
        build_trainer(make_cfg(tmp_path, data_dir, "--num_generations", "3"))
    with pytest.raises(ValueError, match="exceeds the model's .* positions"):
        trainer, _ = build_trainer(make_cfg(tmp_path, data_dir, "--max_completion_length", "40000"))
        trainer._generate_and_score_completions([trainer.train_dataset[0]] * 4)


def test_a_raising_reward_names_itself_and_the_completion(tmp_path, data_dir, reward_module):
    from rl_audio.trainers.grpo import RewardError

    trainer, _ = build_trainer(make_cfg(tmp_path, data_dir, "--rewards", f"[{reward_module}.broken]"))
    with pytest.raises(
        RewardError, match=r"reward 'grpo_test_rewards.broken' raised .*ZeroDivisionError.* on completion 0"
    ):
        trainer.train()


@pytest.mark.slow
def test_starts_from_an_sft_lora_adapter(tmp_path, data_dir, reward_module):
    """GRPO from `final/adapter` of a LoRA SFT run: base + merged adapter, timestamp rows as trained."""
    from rl_audio.configs import AudioSFTConfig
    from rl_audio.runs import save_final
    from rl_audio.sft import build_trainer as build_sft

    sft_cfg = parse_recipe(
        AudioSFTConfig,
        ["--output_dir", str(tmp_path / "sft"), "--data_dir", str(data_dir), "--default_data_clips", "4",
         "--timestamp_mode", "tokens", "--use_peft", "true", "--max_steps", "2", "--learning_rate", "1e-2",
         "--per_device_train_batch_size", "2", "--report_to", "none", "--save_strategy", "no"],
    )  # fmt: skip
    sft, sft_lm = build_sft(sft_cfg)
    sft.train()
    final = save_final(sft, sft_lm, sft_cfg)  # final/ holds the merged model, final/adapter the LoRA adapter
    trainer, lm = build_trainer(
        make_cfg(tmp_path, data_dir, "--model_name_or_path", str(final / "adapter"), "--timestamp_mode", "tokens",
                 "--rewards", f"[{reward_module}.spread]")
    )  # fmt: skip
    from rl_audio.models.loading import load_model

    reference = load_model(str(final), timestamps=sft_cfg.timestamp_spec()).model.state_dict()
    state = lm.model.state_dict()
    assert set(state) == set(reference)
    assert all(torch.allclose(state[k], reference[k], atol=1e-6) for k in state)
    assert any(p.requires_grad for p in lm.model.parameters())
    trainer.train()


@pytest.mark.parametrize(
    "preset", ["tiny-af3", pytest.param("tiny-qwen2-audio", marks=pytest.mark.slow), "tiny-qwen2.5-omni"]
)
def test_each_clip_is_encoded_once_across_generation_and_every_logprob_pass(tmp_path, data_dir, reward_module, preset):
    """Frozen encoder: generation, the reference pass and the policy pass of all G copies of a prompt encode its
    clip once (one cache shared by policy and reference); without the cache, every pass encodes every copy."""
    runs = {}
    for cache in ("true", "false"):
        cfg = make_cfg(
            tmp_path / cache, data_dir, "--model_name_or_path", preset, "--freeze_audio_encoder", "true",
            "--beta", "0.04", "--cache_audio_features", cache,
            "--rewards", f"[{reward_module}.spread, {reward_module}.record]",
        )  # fmt: skip
        trainer, lm = build_trainer(cfg)
        work = []
        for model in (trainer.model, trainer.ref_model):
            tower = lm.adapter.audio_encoder(model)
            tower.conv1.register_forward_hook(lambda mod, args, out, w=work: w.append(args[0].shape[0]))
        trainer.train()
        record = tmp_path / "record.jsonl"
        ids = [i for line in record.read_text().splitlines() for i in json.loads(line)]
        record.unlink()
        runs[cache] = (work, ids, [h for h in trainer.state.log_history if "loss" in h])
    work, ids, log = runs["true"]
    assert len(ids) == 2 * 4 and len(work) == len(set(ids))  # one encoder run per distinct clip, over both steps
    plain_work, plain_ids, plain_log = runs["false"]
    assert plain_ids == ids and len(plain_work) >= 2 * 3  # generation, reference and policy passes, each step
    for a, b in zip(log, plain_log):  # the same training, to float tolerance
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)


def test_too_few_prompts_for_one_generation_batch_is_refused(tmp_path, data_dir, reward_module):
    # 4 grounding rows; 8 prompts x 4 generations per generation batch
    with pytest.raises(ValueError, match=r"4 training prompts, fewer than one generation batch takes \(8 = "):
        build_trainer(make_cfg(tmp_path, data_dir, "--per_device_train_batch_size", "32"))


def test_a_run_that_trained_no_step_is_not_saved(tmp_path, data_dir, reward_module):
    from rl_audio.runs import save_final

    trainer, lm = build_trainer(make_cfg(tmp_path, data_dir, "--rewards", f"[{reward_module}.spread]"))
    with pytest.raises(RuntimeError, match="without a single optimizer step"):
        save_final(trainer, lm, trainer.args)
    assert not (tmp_path / "out" / "final").exists()


def test_rewards_without_signal_warn(tmp_path, data_dir, reward_module, caplog):
    from rl_audio.trainers.grpo import NO_SIGNAL_WARN_AFTER

    steps = str(NO_SIGNAL_WARN_AFTER)
    cfg = make_cfg(tmp_path, data_dir, "--rewards", f"[{reward_module}.record]", "--max_steps", steps)  # always 0
    trainer, _ = build_trainer(cfg)
    with caplog.at_level("WARNING", logger="rl_audio.trainers.grpo"):
        trainer.train()
    assert sum("zero advantage for every completion" in r.message for r in caplog.records) == 1


def test_fused_fraction_counts_only_groups_the_main_reward_applies_to(tmp_path, data_dir, caplog):
    cfg = make_cfg(tmp_path, data_dir, "--rewards", "[eb_f1, miou]", "--fusion_main", "eb_f1", "--fusion_aux", "miou")
    trainer, _ = build_trainer(cfg)
    nan = float("nan")
    # two groups of 4: the first with no main reward at all (None -> NaN), the second tied -> fused
    main = torch.tensor([nan] * 4 + [0.5] * 4)
    aux = torch.tensor([nan] * 4 + [0.1, 0.2, 0.3, 0.4])
    rewards = torch.stack([main, aux, torch.zeros(8)], dim=1)
    trainer.model.train()
    with caplog.at_level("WARNING", logger="rl_audio.trainers.grpo"):
        trainer._apply_fusion(rewards)
    assert trainer._metrics["train"]["rewards/fusion/fused_group_frac"] == [1.0]  # 1 of the 1 group that applies
    rewards = torch.stack([torch.full((8,), nan), torch.zeros(8), torch.zeros(8)], dim=1)
    with caplog.at_level("WARNING", logger="rl_audio.trainers.grpo"):
        trainer._apply_fusion(rewards)
    assert trainer._metrics["train"]["rewards/fusion/fused_group_frac"] == [1.0]  # nothing appended
    assert any("applies to no row" in r.message for r in caplog.records)
