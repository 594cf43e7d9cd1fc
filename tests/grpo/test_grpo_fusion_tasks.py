"""Per-task auxiliary rewards of TimePro-RL's fusion (§3.2: mIoU for grounding and SED, METEOR for DAC) and the
seeded training subset (`max_train_samples`)."""

from __future__ import annotations

import logging
import textwrap

import pytest
import torch

from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioGRPOConfig, AudioSFTConfig
from rl_audio.data import build_default_dataset
from rl_audio.data.splits import load_rows
from rl_audio.grpo import build_rewards, build_trainer

REWARD_MODULE = """
def distinct(completions, **kwargs):
    return [len(set(c)) / 10.0 for c in completions]

def length(completions, **kwargs):
    return [len(c) / 10.0 for c in completions]

def short(completions, **kwargs):
    return [1.0 - len(c) / 10.0 for c in completions]
"""

# four groups of 4 (grounding, grounding, existence, existence): per task one tied group (main reward constant) and
# one varied group, for the dotted-path rewards above
COMPLETIONS = [
    "a", "bb", "ccc", "dddd",  # grounding, main 0.1 x 4: fused with `length`
    "a", "ab", "abc", "abcd",  # grounding, varied main: main alone
    "a", "bb", "ccc", "dddd",  # existence, main 0.1 x 4: fused with `short`
    "ab", "ab", "ab", "abc",  # existence, varied main: main alone
]  # fmt: skip
EXPECTED = [
    0.01, 0.02, 0.03, 0.04,
    0.1, 0.2, 0.3, 0.4,
    0.09, 0.08, 0.07, 0.06,
    0.2, 0.2, 0.2, 0.3,
]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fusion_data")
    build_default_dataset(out, num_train=3, num_test=2, min_len=3.0, max_len=4.0, progress=False)
    return out  # 3 clips: 3 grounding and 6 existence training rows


@pytest.fixture
def mod(tmp_path, monkeypatch):
    (tmp_path / "fusion_task_rewards.py").write_text(textwrap.dedent(REWARD_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "fusion_task_rewards"


def make_cfg(tmp_path, data_dir, *overrides, cls=AudioGRPOConfig):
    args = [
        "--output_dir", str(tmp_path / "out"), "--data_dir", str(data_dir), "--default_data_clips", "3",
        "--report_to", "none", "--save_strategy", "no", "--seed", "0",
        *overrides,
    ]  # fmt: skip
    if cls is AudioGRPOConfig:
        args += ["--num_generations", "4", "--per_device_train_batch_size", "4", "--max_completion_length", "6"]
    return parse_recipe(cls, args)


def per_task_cfg(tmp_path, data_dir, mod, *extra):
    return make_cfg(
        tmp_path, data_dir, "--rewards", f"[{mod}.distinct, {mod}.length, {mod}.short]",
        "--fusion_main", f"{mod}.distinct",
        "--fusion_aux", f"{{grounding: {mod}.length, existence: {mod}.short}}", *extra,
    )  # fmt: skip


def test_mapping_from_a_yaml_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "rewards: [eb_f1, miou, meteor]\nfusion_main: eb_f1\n"
        "fusion_aux: {grounding: miou, sed: miou, dac: meteor}\nmax_train_samples: 10200\n"
        f"output_dir: {tmp_path / 'out'}\nreport_to: none\n"
    )
    cfg = parse_recipe(AudioGRPOConfig, [str(recipe)])
    assert cfg.fusion_aux == {"grounding": "miou", "sed": "miou", "dac": "meteor"}
    assert cfg.max_train_samples == 10200
    funcs, weights, fusion = build_rewards(cfg)
    assert [getattr(f, "__name__", None) for f in funcs][-1] == "fused_eb_f1_by_task"
    assert weights == [0.0, 0.0, 0.0, 1.0]  # main and every aux are logged only; the fused column carries main's
    assert fusion["aux"] == cfg.fusion_aux


def mixed_manifest(tmp_path, data_dir) -> str:
    """One grounding and one dac row on the same clip, both with the event at 1.0-2.0 s."""
    import json

    from rl_audio.data import load_manifest

    clip = next(r for r in load_manifest(data_dir / "train" / "manifest.jsonl") if r["task"] == "grounding")
    common = {"audio": clip["audio"], "duration": clip["duration"]}
    rows = [
        {"id": "g", "task": "grounding", "query": "a sound", "windows": [[1.0, 2.0]], **common},
        {"id": "d", "task": "dac", "events": [{"onset": 1.0, "offset": 2.0, "label": "a dog barks"}], **common},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# TimePro-RL §3.2 on a grounding + dac batch: four groups of G = 4 (Eb-F1 main; mIoU for grounding, METEOR for dac)
MIXED = [
    ("grounding", [f'{{"query": [{s}, {e}]}}' for s, e in ((1.0, 2.0), (1.1, 2.0), (1.0, 2.1), (0.9, 2.1))]),
    ("grounding", ['{"query": [2.5, 3.0]}'] * 4),  # Eb-F1 0 everywhere: fused, and 0 x mIoU stays 0
    ("dac", ["1.00-2.00, a dog barks", "1.00-2.00, a cat meows", "1.10-2.00, rain falls", "1.00-2.00, a dog barks"]),
    ("dac", ["1.00-2.00, a dog barks", "2.50-3.00, a dog barks", "1.00-2.00, rain falls", "2.50-3.00, rain falls"]),
]
# By hand. Group 0: every window within the 0.2 s collar (Eb-F1 1), fused = IoU with [1, 2]. Group 1: Eb-F1 0.
# Group 2: timing right everywhere (Eb-F1 1), fused = METEOR of "a dog barks": exact 1 - 0.5 (1/3)^3 = 53/54;
# "a cat meows" one match of three, F 1/3, penalty 0.5 -> 1/6; "rain falls" no match -> 0 (mIoU would give
# 1, 1, 0.9, 1). Group 3: Eb-F1 1, 0, 1, 0 varies -> Eb-F1 alone.
MIXED_EXPECTED = [1.0, 0.9, 1 / 1.1, 1 / 1.2, 0.0, 0.0, 0.0, 0.0, 53 / 54, 1 / 6, 0.0, 53 / 54, 1.0, 0.0, 1.0, 0.0]


def test_per_task_fusion_on_a_mixed_batch_by_hand_and_over_two_processes(tmp_path, data_dir, monkeypatch):
    import trl.trainer.grpo_trainer as trl_grpo

    cfg = make_cfg(
        tmp_path, data_dir, "--train_manifests", f"[{mixed_manifest(tmp_path, data_dir)}]",
        "--tasks", "[grounding, dac]", "--rewards", "[eb_f1, miou, meteor]", "--fusion_main", "eb_f1",
        "--fusion_aux", "{grounding: miou, dac: meteor}",
    )  # fmt: skip
    trainer, _ = build_trainer(cfg)
    rows = {r["task"]: r for r in trainer.train_dataset}
    inputs = [rows[task] for task, group in MIXED for _ in group]
    completions = [c for _, group in MIXED for c in group]
    prompts = [r["prompt"] for r in inputs]
    ids = [[0]] * len(inputs)
    names = trainer.reward_func_names
    assert names == ["eb_f1", "miou", "meteor", "fused_eb_f1_by_task"]

    def calculate(part, gather, gather_object):
        monkeypatch.setattr(trl_grpo, "gather", gather)
        monkeypatch.setattr(trl_grpo, "gather_object", gather_object)
        pick = lambda xs: [xs[i] for i in part]  # noqa: E731
        return trainer._calculate_rewards(pick(inputs), pick(prompts), pick(completions), pick(ids))

    trainer.model.train()
    single = calculate(range(16), lambda t: t, lambda xs: xs)
    assert torch.allclose(single[:, 3], torch.tensor(MIXED_EXPECTED, dtype=single.dtype), atol=1e-6)
    assert torch.isnan(single[:8, 2]).all()  # METEOR does not apply to grounding rows (None)
    metrics = trainer._metrics["train"]
    assert metrics["rewards/fusion/fused_group_frac"] == [0.75]
    assert metrics["rewards/fusion/fused_group_frac/grounding"] == [1.0]
    assert metrics["rewards/fusion/fused_group_frac/dac"] == [0.5]
    # Two processes: process 0 holds rows 0-9, process 1 rows 10-15, so the tied dac group (rows 8-11) spans both.
    # Process 1's local rewards and tasks are what the gathers append to process 0's.
    base = super(type(trainer), trainer)._calculate_rewards
    monkeypatch.setattr(trl_grpo, "gather", lambda t: t)
    local_1 = base(inputs[10:], prompts[10:], completions[10:], ids[10:])
    tasks_1 = [x["task"] for x in inputs[10:]]
    two_proc = calculate(range(10), lambda t: torch.cat([t, local_1]), lambda xs: xs + tasks_1)
    assert torch.allclose(single, two_proc, equal_nan=True)
    with pytest.raises(ValueError, match="mixes tasks"):  # tasks out of step with the rewards' groups
        trainer._apply_fusion(single.clone(), ["grounding"] * 7 + ["dac"] * 9)


def test_single_aux_path_unchanged(tmp_path, data_dir, mod):
    cfg = make_cfg(
        tmp_path, data_dir, "--rewards", f"[{mod}.distinct, {mod}.length]", "--fusion_main", f"{mod}.distinct",
        "--fusion_aux", f"{mod}.length", "--tasks", "[grounding, existence]",
    )  # fmt: skip
    trainer, _ = build_trainer(cfg)
    main = torch.tensor([len(set(c)) / 10 for c in COMPLETIONS])
    aux = torch.tensor([len(c) / 10 for c in COMPLETIONS])
    rewards = torch.stack([main, aux, torch.zeros(16)], dim=1)
    out = trainer._apply_fusion(rewards.clone())[:, 2]
    expected = EXPECTED[:8] + [0.01, 0.02, 0.03, 0.04] + EXPECTED[12:]  # `length` for the existence group too
    assert torch.allclose(out, torch.tensor(expected), atol=1e-6)


def test_per_task_build_errors(tmp_path, data_dir, mod):
    with pytest.raises(ValueError, match=r"fusion_aux\[dac\] 'meteor' is not one of the configured rewards"):
        build_rewards(make_cfg(tmp_path, data_dir, "--rewards", "[eb_f1, miou]", "--fusion_main", "eb_f1",
                               "--fusion_aux", "{grounding: miou, dac: meteor}"))  # fmt: skip
    with pytest.raises(ValueError, match=r"no auxiliary reward for the training task\(s\) \['existence'\]"):
        build_rewards(per_task_cfg(tmp_path, data_dir, mod, "--tasks", "[grounding, existence]",
                                   "--fusion_aux", f"{{grounding: {mod}.length}}"))  # fmt: skip
    with pytest.raises(ValueError, match="unknown task"):
        build_rewards(per_task_cfg(tmp_path, data_dir, mod, "--fusion_aux", f"{{grounds: {mod}.length}}"))
    # a registered reward that does not score a mapped task (it would return None there, read as 0)
    with pytest.raises(ValueError, match=r"fusion_aux\[grounding\] 'meteor' does not apply to task 'grounding'"):
        build_rewards(make_cfg(tmp_path, data_dir, "--rewards", "[eb_f1, miou, meteor]", "--fusion_main", "eb_f1",
                               "--fusion_aux", "{grounding: meteor, dac: meteor}"))  # fmt: skip
    with pytest.raises(ValueError, match=r"fusion_main 'meteor' does not apply to task 'grounding'"):
        build_rewards(make_cfg(tmp_path, data_dir, "--rewards", "[meteor, miou]", "--fusion_main", "meteor",
                               "--fusion_aux", "{grounding: miou}"))  # fmt: skip
    # no `tasks` filter: the tasks of the loaded training rows are checked (before any model loads)
    with pytest.raises(ValueError, match=r"fusion_aux \{'grounding': .*\['existence'\]"):
        build_trainer(per_task_cfg(tmp_path, data_dir, mod, "--fusion_aux", f"{{grounding: {mod}.length}}"))


@pytest.mark.parametrize("cls", [AudioGRPOConfig, AudioSFTConfig])
def test_max_train_samples_is_a_seeded_subset(tmp_path, data_dir, cls, caplog):
    def ids(*args):
        return load_rows(make_cfg(tmp_path, data_dir, *args, cls=cls), "train")["id"]

    everything = ids()
    assert len(everything) == 9
    first = ids("--max_train_samples", "4")
    assert len(first) == 4 and set(first) <= set(everything)
    assert ids("--max_train_samples", "4") == first  # same seed, same rows
    assert ids("--max_train_samples", "4", "--seed", "1") != first
    with caplog.at_level(logging.WARNING, logger="rl_audio.runs"):
        assert ids("--max_train_samples", "50") == everything
    assert any("max_train_samples=50 but only 9 training rows" in r.message for r in caplog.records)
    assert len(load_rows(make_cfg(tmp_path, data_dir, "--max_train_samples", "1", cls=cls), "eval")) > 1


def test_the_timepro_recipe_is_the_papers_mixed_task_stage(tmp_path):
    """recipes/timepro.yaml: TimePro-RL §3.2's one GRPO stage over AG, SED (DESED) and DAC."""
    cfg = parse_recipe(AudioGRPOConfig, ["recipes/timepro.yaml", "--output_dir", str(tmp_path)])
    assert cfg.tasks == ["grounding", "sed", "dac"]
    assert cfg.max_train_samples == 10200 and cfg.num_train_epochs == 1
    assert cfg.num_generations == 4 and cfg.learning_rate == 1e-6 and cfg.fusion_eps == 1e-6
    assert cfg.fusion_main == "eb_f1" and cfg.fusion_aux == {"grounding": "miou", "sed": "miou", "dac": "meteor"}
    assert any("desed" in m for m in cfg.train_manifests)
    _, weights, fusion = build_rewards(cfg)  # the mapping covers `tasks` and each reward applies to its task
    assert fusion["aux"] == cfg.fusion_aux and weights[-1] == 1.0
    for name in ("timepro_grounding", "timepro_sed", "timepro_dac"):  # the single-task variants
        one = parse_recipe(AudioGRPOConfig, [f"recipes/{name}.yaml", "--output_dir", str(tmp_path)])
        assert len(one.tasks) == 1 and isinstance(one.fusion_aux, str)
        build_rewards(one)
    sft = parse_recipe(AudioSFTConfig, ["recipes/timepro_sft.yaml", "--output_dir", str(tmp_path)])
    sed = parse_recipe(AudioGRPOConfig, ["recipes/timepro_sed.yaml", "--output_dir", str(tmp_path)])
    desed = "data/desed/sed_train.jsonl"
    assert desed in sft.train_manifests and sed.train_manifests == [desed]
    assert not any("ftar/sed" in m for m in sft.train_manifests + cfg.train_manifests)
