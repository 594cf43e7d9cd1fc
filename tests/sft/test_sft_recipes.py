"""Every recipe parses strictly; misspelled keys are errors that name the file and the right key; the command line
wins over the recipe; the paper recipes carry the papers' hyperparameters.

Which config a recipe is for: a recipe with a top-level `rewards:` key is a GRPO recipe (AudioGRPOConfig). Without
one, the file name decides: names containing `sft`, and `sta.yaml` / `spotsound*.yaml`, are SFT recipes
(AudioSFTConfig); names starting with `grpo`, `tgsr` or `timepro` (other than `timepro_sft`) are GRPO recipes. A
recipe that fits neither rule fails the test, so that a new recipe is never silently left unchecked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rl_audio.cli import RecipeError, parse_recipe
from rl_audio.configs import AudioGRPOConfig, AudioSFTConfig

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml")) + sorted((ROOT / "recipes" / "cpu").glob("*.yaml"))
SFT_NAMES = {"sta", "spotsound", "spotsound_af3"}
GRPO_PREFIXES = ("grpo", "tgsr", "timepro")


def config_class(path: Path):
    if "rewards" in (yaml.safe_load(path.read_text()) or {}):
        return AudioGRPOConfig
    stem = path.stem
    if "sft" in stem or stem in SFT_NAMES:
        return AudioSFTConfig
    if stem.startswith(GRPO_PREFIXES):
        return AudioGRPOConfig
    raise AssertionError(f"{path}: cannot tell SFT from GRPO; add `rewards:` or name it *sft*.yaml")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_recipes_exist():
    names = {rel(p) for p in RECIPES}
    expected = {"recipes/sta.yaml", "recipes/spotsound.yaml", "recipes/spotsound_af3.yaml", "recipes/timepro_sft.yaml"}
    expected |= {f"recipes/cpu/{n}.yaml" for n in ("sta", "spotsound", "timepro_sft")}
    assert expected <= names


@pytest.mark.parametrize("path", RECIPES, ids=rel)
def test_recipe_parses_strictly(path, tmp_path):
    cls = config_class(path)
    cfg = parse_recipe(cls, [str(path), "--output_dir", str(tmp_path)])
    assert isinstance(cfg, cls)
    text = path.read_text()
    assert text.startswith("#"), f"{rel(path)}: a recipe starts with a comment header citing its source"
    keys = yaml.safe_load(text)
    assert "model_name_or_path" in keys and "output_dir" in keys
    if path.parent.name == "cpu":
        assert keys["model_name_or_path"].startswith(("tiny-", "small-", "mini-", "outputs/pipeline/")), (
            "CPU recipes run on small presets (or the pipeline's own SFT output)"
        )
        assert keys.get("bf16") is False and keys.get("report_to") == "none"
    cfg.timestamp_spec()  # the timestamp settings are consistent


# The papers' numbers, checked so that an edit cannot drift away from them unnoticed.
PAPER = {
    "recipes/spotsound.yaml": {  # SpotSound §2.2, §4, Table 8
        "model_name_or_path": "Qwen/Qwen2-Audio-7B-Instruct",
        "timestamp_mode": "text",
        "timestamp_granularity": 1.0,
        "timestamp_text_template": "timestamp: {t} seconds",
        "use_peft": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "learning_rate": 1e-4,
        "num_train_epochs": 1,
        "warmup_steps": 1000,
        "freeze_audio_encoder": True,
        "tasks": ["grounding", "existence"],
        "answer_style": "spotsound",
    },
    "recipes/timepro_sft.yaml": {  # TimePro-RL §2.1, §3.2
        "model_name_or_path": "Qwen/Qwen2.5-Omni-7B",
        "timestamp_mode": "tokens",
        "timestamp_token_stride": 0.04,
        "timestamp_token_max": 30.0,
        "timestamp_token_init": "semantic",
        "use_peft": True,
        "lora_r": 8,
        "lora_alpha": 32,
        "learning_rate": 1e-5,
        "num_train_epochs": 3,
        "answer_style": "timepro",
    },
    "recipes/sta.yaml": {  # TGSR §3.1, Table 5
        "model_name_or_path": "Qwen/Qwen2.5-Omni-7B",
        "trainable_modules": ["aligner"],
        "use_peft": False,
        "learning_rate": 2e-5,
        "warmup_steps": 0.03,
        "num_train_epochs": 1,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 8,
        "tasks": ["sta"],
        "timestamp_mode": "none",
        "answer_style": "tgsr",  # App. B.1.1, the Qwen2.5-Omni template
    },
}
PAPER["recipes/spotsound_af3.yaml"] = {  # SpotSound-A: §2.2 backbone, §4.1 settings for all experiments, Table 8
    **PAPER["recipes/spotsound.yaml"],
    "model_name_or_path": "nvidia/audio-flamingo-3-hf",
    "max_audio_seconds": 600.0,  # Audio Flamingo 3: at most 20 windows of 30 s
}


@pytest.mark.parametrize("recipe", sorted(PAPER))
def test_paper_recipes_carry_the_papers_settings(recipe, tmp_path):
    cfg = parse_recipe(AudioSFTConfig, [str(ROOT / recipe), "--output_dir", str(tmp_path)])
    for key, value in PAPER[recipe].items():
        assert getattr(cfg, key) == value, f"{recipe}: {key}"
    assert cfg.optim.startswith("adamw")
    assert yaml.safe_load((ROOT / recipe).read_text())["bf16"] is True  # the GPU recipes train in bf16
    assert cfg.max_length is None or cfg.max_length >= 2048  # 30 s of audio alone is 750+ tokens


def test_spotsound_af3_is_the_spotsound_recipe_on_audio_flamingo_3():
    qwen = yaml.safe_load((ROOT / "recipes" / "spotsound.yaml").read_text())
    af3 = yaml.safe_load((ROOT / "recipes" / "spotsound_af3.yaml").read_text())
    changed = {k for k in qwen.keys() | af3.keys() if qwen.get(k) != af3.get(k)}
    assert changed == {"model_name_or_path", "max_audio_seconds", "output_dir"}


PAPER_RECIPES = ["recipes/tgsr.yaml", "recipes/sta.yaml", "recipes/spotsound.yaml", "recipes/spotsound_af3.yaml"]


@pytest.mark.parametrize("recipe", PAPER_RECIPES)
def test_paper_recipe_headers_name_what_the_paper_does_not_give(recipe):
    header = (ROOT / recipe).read_text().split("\nmodel_name_or_path:")[0]
    assert "From the paper:" in header or "recipes/spotsound.yaml's" in header, recipe
    assert "Our choices" in header or "our choices" in header, recipe
    assert "docs/papers.md" in header


def test_tgsr_recipe_carries_the_papers_settings(tmp_path):
    from rl_audio.data.templates import TGSR_REASONING_INSTRUCTION

    cfg = parse_recipe(AudioGRPOConfig, [str(ROOT / "recipes" / "tgsr.yaml"), "--output_dir", str(tmp_path)])
    table_6 = {
        "use_peft": True,
        "learning_rate": 5e-6,
        "warmup_steps": 0.03,
        "num_train_epochs": 1,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 4,
        "num_generations": 8,
        "temperature": 0.7,
        "top_p": 0.9,
        "beta": 0.04,
        "epsilon": 0.2,
    }
    for key, value in table_6.items():
        assert getattr(cfg, key) == value, key
    assert cfg.system_prompt == TGSR_REASONING_INSTRUCTION  # App. B.1.3, as printed
    assert cfg.rewards == ["answer_correctness", "timestamp_compaction"] and cfg.reward_weights == [1.0, 1.0]  # eq. 3
    compaction = cfg.reward_kwargs["timestamp_compaction"]
    assert (compaction["k_ref"], compaction["c_max"], compaction["c_min"]) == (1, 0.5, 0.1)  # §3.2
    assert cfg.scale_rewards == "group"  # eq. 5: (R_i - mean) / std over the group


def test_cpu_variants_keep_the_structure_of_their_paper_recipe(tmp_path):
    for name in ("sta", "spotsound", "timepro_sft"):
        big = parse_recipe(AudioSFTConfig, [str(ROOT / f"recipes/{name}.yaml"), "--output_dir", str(tmp_path)])
        small = parse_recipe(AudioSFTConfig, [str(ROOT / f"recipes/cpu/{name}.yaml"), "--output_dir", str(tmp_path)])
        for key in ("timestamp_mode", "use_peft", "lora_r", "lora_alpha", "trainable_modules", "answer_style"):
            assert getattr(small, key) == getattr(big, key), f"cpu/{name}: {key}"
        if big.timestamp_mode == "tokens":
            assert small.timestamp_token_stride == big.timestamp_token_stride


def test_misspelled_key_names_file_and_suggests(tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("model_name_or_path: tiny-af3\nlearning_rat: 1.0e-4\n")
    with pytest.raises(RecipeError) as err:
        parse_recipe(AudioSFTConfig, [str(recipe)])
    message = str(err.value)
    assert str(recipe) in message and "unknown key 'learning_rat'" in message
    assert "Did you mean 'learning_rate'" in message
    recipe.write_text("timestamp_mod: text\n")
    with pytest.raises(RecipeError, match="Did you mean 'timestamp_mode'"):
        parse_recipe(AudioSFTConfig, [str(recipe)])
    # on the command line too
    with pytest.raises(RecipeError, match="command line: unknown key 'lora_rank'"):
        parse_recipe(AudioSFTConfig, ["--lora_rank", "8"])


def test_a_key_given_twice_is_an_error(tmp_path):
    recipe = tmp_path / "twice.yaml"
    recipe.write_text("learning_rate: 1.0e-4\nlora_r: 8\nlearning_rate: 2.0e-4\n")
    with pytest.raises(
        RecipeError, match=r"twice.yaml: not valid YAML: key 'learning_rate' appears twice(.|\n)*line 3"
    ):
        parse_recipe(AudioSFTConfig, [str(recipe)])


def test_command_line_overrides_the_recipe(tmp_path):
    recipe = ROOT / "recipes" / "cpu" / "spotsound.yaml"
    base = parse_recipe(AudioSFTConfig, [str(recipe), "--output_dir", str(tmp_path)])
    assert base.learning_rate == 1e-3 and base.max_steps == 40 and base.tasks == ["grounding", "existence"]
    cfg = parse_recipe(
        AudioSFTConfig,
        [
            str(recipe),
            "--output_dir",
            str(tmp_path),
            "--learning_rate",
            "5e-4",
            "--max_steps=3",
            "--tasks",
            "existence",
        ],
    )
    assert cfg.learning_rate == 5e-4 and cfg.max_steps == 3 and cfg.tasks == ["existence"]
    assert cfg.output_dir == str(tmp_path)


def test_bad_values_and_missing_recipe(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        parse_recipe(AudioSFTConfig, [str(tmp_path / "nope.yaml")])
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("lora_r: eight\n")
    with pytest.raises(RecipeError, match="key 'lora_r': cannot read 'eight'"):
        parse_recipe(AudioSFTConfig, [str(recipe)])
    recipe.write_text("timestamp_mode: frames\n")
    with pytest.raises(RecipeError, match="timestamp mode 'frames' is not one of"):
        parse_recipe(AudioSFTConfig, [str(recipe), "--output_dir", str(tmp_path)])
    with pytest.raises(RecipeError, match="timestamp mode 'frames' is not one of"):
        parse_recipe(AudioGRPOConfig, [str(recipe), "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3", "multi_node.example"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ROOT / "accelerate_configs" / f"{name}.yaml"))
    assert cfg.mixed_precision == "bf16" and cfg.num_processes >= 8
    if name == "ddp":
        assert cfg.distributed_type == "MULTI_GPU" and not cfg.deepspeed_config
        return
    ds = cfg.deepspeed_config
    assert cfg.distributed_type == "DEEPSPEED"
    assert ds["offload_optimizer_device"] == ds["offload_param_device"] == "none"
    assert ds["zero_stage"] == (2 if name == "zero2" else 3)
    if ds["zero_stage"] == 3:
        # whole weights per process at load (timestamp tokens are added then); one gathered checkpoint at save
        assert ds["zero3_init_flag"] is False and ds["zero3_save_16bit_model"] is True
    if name == "multi_node.example":
        assert cfg.num_machines > 1 and cfg.num_processes % cfg.num_machines == 0


@pytest.mark.parametrize(
    ("cls", "key", "value", "reason"),
    [
        (AudioGRPOConfig, "use_transformers_continuous_batching", "true", "generated without audio"),
        (AudioGRPOConfig, "use_vllm", "true", "generated without audio"),
        (AudioSFTConfig, "packing", "true", "split clips"),
        (AudioSFTConfig, "padding_free", "true", "drops the audio"),
        (AudioSFTConfig, "loss_type", "dft", "no DFT"),
        (AudioSFTConfig, "label_smoothing_factor", "0.1", "no label smoothing"),
    ],
)
def test_options_that_would_train_wrong_are_refused_at_parse_time(tmp_path, cls, key, value, reason):
    argv = ["--output_dir", str(tmp_path), "--bf16", "false", f"--{key}", value]
    with pytest.raises(RecipeError, match=rf"{key}: .* is not supported: .*{reason}.*Set {key}: "):
        parse_recipe(cls, argv)
    parse_recipe(cls, argv[:-2])  # the same recipe without the option parses


@pytest.mark.parametrize("path", RECIPES, ids=rel)
def test_recipe_reports_only_to_installed_backends(path):
    # transformers fails after the model is loaded when a report_to backend is missing; none is a dependency
    import importlib.util

    report_to = (yaml.safe_load(path.read_text()) or {}).get("report_to", "none")
    backends = [report_to] if isinstance(report_to, str) else list(report_to)
    missing = [b for b in backends if b not in ("none", "all") and importlib.util.find_spec(b) is None]
    assert not missing, f"{rel(path)}: report_to {missing} is not installed by rl_audio's dependencies"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("answer_style", "spotsund", "answer_style: 'spotsund' is not one of"),
        ("tasks", "[grounding, groundng]", r"tasks: unknown \['groundng'\]"),
    ],
)
@pytest.mark.parametrize("cls", [AudioSFTConfig, AudioGRPOConfig], ids=lambda c: c.__name__)
def test_a_typo_in_a_choice_fails_at_parse_time(tmp_path, cls, key, value, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe(cls, ["--output_dir", str(tmp_path), "--bf16", "false", f"--{key}", value])


@pytest.mark.parametrize("recipe", ["recipes/tgsr.yaml", "recipes/cpu/grpo_tgsr.yaml"])
def test_tgsr_averages_the_loss_per_trajectory_as_eq_6_does(tmp_path, recipe):
    cfg = parse_recipe(AudioGRPOConfig, [str(ROOT / recipe), "--output_dir", str(tmp_path)])
    assert cfg.loss_type == "grpo"  # TGSR eq. 6: 1/G sum_i 1/|tau_i| sum_t; TRL's default dapo is token-level


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_steps: [1, 2]", r"key 'max_steps': \[1, 2\] is a list"),
        ("max_steps: {a: 1}", r"key 'max_steps': \{'a': 1\} is a mapping"),
        ("max_steps: null", r"key 'max_steps': None is null"),
        ("max_steps: 2.7", r"key 'max_steps': 2.7 is not a whole number"),
        ("max_steps: true", r"key 'max_steps': True is a boolean"),
        ("learning_rate: .nan", r"key 'learning_rate': nan is not finite"),
        ("learning_rate: -1.0", r"learning_rate must be >= 0"),
        ("1: 2", r"unknown key 1\."),
    ],
)
def test_recipe_values_are_type_checked_while_parsing(tmp_path, line, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"# test\nmodel_name_or_path: tiny-qwen2-audio\nbf16: false\n{line}\n")
    with pytest.raises(RecipeError, match=message):
        parse_recipe(AudioSFTConfig, [str(recipe), "--output_dir", str(tmp_path / "out")])


def test_an_empty_recipe_is_an_error(tmp_path):
    recipe = tmp_path / "empty.yaml"
    recipe.write_text("# nothing\n")
    with pytest.raises(RecipeError, match="empty.yaml: the recipe is empty"):
        parse_recipe(AudioGRPOConfig, [str(recipe)])


def test_entry_points_print_a_recipe_error_as_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    recipe = tmp_path / "bad.yaml"
    recipe.write_text("# test\nmodel_name_or_path: tiny-qwen2-audio\nmax_steps: [1, 2]\n")
    for module in ("rl_audio.sft", "rl_audio.grpo"):
        proc = subprocess.run(
            [sys.executable, "-m", module, str(recipe), "--output_dir", str(tmp_path / "out")],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in proc.stderr
        assert "key 'max_steps': [1, 2] is a list" in proc.stderr
