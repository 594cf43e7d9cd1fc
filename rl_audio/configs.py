"""Typed recipe configs. The audio/timestamp/data arguments are one mixin shared by SFT, GRPO and evaluation;
the SFT and GRPO configs subclass TRL's own, so every TRL/transformers training argument is a valid recipe key."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import ClassVar

import yaml
from trl import GRPOConfig, SFTConfig

from .models.timestamps import TimestampSpec

# the TimestampSpec fields (as rl_audio.json stores them) and the recipe keys they come from
SPEC_KEYS = {
    "mode": "timestamp_mode",
    "granularity": "timestamp_granularity",
    "text_template": "timestamp_text_template",
    "token_stride": "timestamp_token_stride",
    "token_max": "timestamp_token_max",
    "token_init": "timestamp_token_init",
}

logger = logging.getLogger(__name__)


@dataclass
class AudioArguments:
    """Model, audio, timestamp and data arguments shared by every entry point."""

    model_name_or_path: str = field(
        default="tiny-qwen2-audio",
        metadata={
            "help": "Local checkpoint directory, cached hub id, or a tiny preset name (tiny-qwen2-audio, "
            "tiny-qwen2.5-omni, tiny-af3, small-qwen2-audio)."
        },
    )
    preset_seed: int = field(default=0, metadata={"help": "Seed of the random weights of a tiny preset."})
    model_dtype: str = field(default="float32", metadata={"help": "float32, bfloat16, float16 or auto."})
    attn_implementation: str | None = field(default=None, metadata={"help": "eager, sdpa or flash_attention_2."})
    freeze_audio_encoder: bool = field(default=False, metadata={"help": "Freeze the audio encoder."})
    cache_audio_features: bool = field(
        default=True,
        metadata={
            "help": "Reuse a frozen audio encoder's output per distinct window (across epochs, GRPO groups and "
            "passes, shared by policy and reference), up to the aligner, every family. Off: the encoder runs on "
            "every pass (a frozen one still without an autograd graph)."
        },
    )
    trainable_modules: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Full fine-tuning of these parts only, everything else frozen: 'aligner', "
            "'audio_encoder', 'language_model', or parameter-name substrings (TGSR Table 5 trains the aligner)."
        },
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters (PEFT) on the language model."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "Module names LoRA wraps, inside the language model only."},
    )
    timestamp_mode: str = field(default="none", metadata={"help": "none | text (SpotSound) | tokens (TimePro-RL)."})
    timestamp_granularity: float = field(default=1.0, metadata={"help": "Seconds per text timestamp (0.2, 1, 2)."})
    timestamp_text_template: str = field(
        default="timestamp: {t} seconds", metadata={"help": "Text of a timestamp in text mode; {t} is the time."}
    )
    timestamp_token_stride: float = field(default=0.04, metadata={"help": "Grid step of timestamp tokens (s)."})
    timestamp_token_max: float = field(default=30.0, metadata={"help": "Last timestamp token (s)."})
    timestamp_token_init: str = field(
        default="semantic", metadata={"help": "semantic (TimePro-RL eq. 1) or random (ablation)."}
    )
    train_manifests: list[str] = field(
        default_factory=list,
        metadata={"help": "JSONL manifests to train on. Empty: the embedded default (generated data)."},
    )
    allow_eval_split_training: bool = field(
        default=False,
        metadata={
            "help": "Train on rows converted from a benchmark's evaluation split (meta.provenance: MMAU test-mini, "
            "DESED validation/eval, MELD test, ...), with a warning. Off: such rows in train_manifests are an error "
            "naming the manifest, the line, the benchmark and the split. Evaluation always reads them."
        },
    )
    eval_manifests: list[str] = field(default_factory=list, metadata={"help": "JSONL manifests to evaluate on."})
    data_dir: str = field(
        default="outputs/data", metadata={"help": "Where the embedded default data set is generated (cached)."}
    )
    default_data_clips: int = field(default=64, metadata={"help": "Clips in the embedded default training set."})
    tasks: list[str] = field(default_factory=list, metadata={"help": "Keep only rows of these tasks (empty: all)."})
    answer_style: str = field(
        default="spotsound",
        metadata={"help": "Question/answer templates: spotsound | timepro | tgsr | tgsr_af3 (docs/data.md)."},
    )
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message."})
    skip_invalid: bool = field(
        default=False, metadata={"help": "Drop invalid manifest rows (counted and logged) instead of stopping."}
    )
    max_audio_seconds: float = field(default=600.0, metadata={"help": "Rows with longer audio are an error."})

    def timestamp_spec(self) -> TimestampSpec:
        return TimestampSpec(**{key: getattr(self, attr) for key, attr in SPEC_KEYS.items()})

    def check_choices(self) -> None:
        """Fields with a fixed set of values fail at parse time, not at the first batch (a typo such as
        ``answer_style: spotsund`` would otherwise pass loading and fail in ``trainer.train()``)."""
        from .data.manifest import TASKS
        from .data.templates import STYLES

        if self.answer_style is not None and self.answer_style not in STYLES:  # None: evaluation reads it later
            raise ValueError(f"answer_style: {self.answer_style!r} is not one of {sorted(STYLES)}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"tasks: unknown {unknown}; valid tasks: {', '.join(TASKS)}")


def _cpu_precision(cfg) -> None:
    """TRL defaults to bf16, which stops on a machine without an accelerator; fall back to float32 there."""
    import torch

    if torch.cuda.is_available():
        return
    if cfg.bf16 or cfg.fp16:
        logger.warning("no GPU: training in float32 instead of bf16/fp16")
    cfg.bf16, cfg.fp16 = False, False  # TRL turns bf16=None into True
    # DeepSpeed ZeRO on the CPU needs gloo: without it accelerate counts one process while DeepSpeed sees all of
    # them, and the batch-size check fails ("train_batch_size is not equal to micro_batch_per_gpu * ...").
    if cfg.ddp_backend is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cfg.ddp_backend = "gloo"


# Options of TRL's configs that rl_audio's trainers do not honour: (key, value that is safe, why another is refused).
# Accepting them would train something other than what the recipe says, silently, so they fail at parse time.
SFT_REFUSED: tuple[tuple[str, object, str], ...] = (
    ("packing", False, "AudioSFTTrainer batches whole rows with their audio; packed sequences would split clips"),
    ("padding_free", False, "the audio collator pads each batch; TRL's padding-free path drops the audio inputs"),
    ("loss_type", "nll", "AudioSFTTrainer computes the NLL of the target tokens itself (no DFT or other loss)"),
    ("label_smoothing_factor", 0.0, "AudioSFTTrainer computes its own loss and applies no label smoothing"),
)
GRPO_REFUSED: tuple[tuple[str, object, str], ...] = (
    ("use_vllm", False, "rl_audio does not pass audio to vLLM rollouts, so they would be generated without audio"),
    (
        "use_transformers_continuous_batching",
        False,
        "TRL's continuous-batching generation receives only the generation config, so the rollouts would be "
        "generated without audio while the log-prob passes use it",
    ),
)


def _refuse(cfg, table) -> None:
    for key, safe, why in table:
        value = getattr(cfg, key, safe)
        if value != safe:
            raise ValueError(f"{key}: {value!r} is not supported: {why}. Set {key}: {safe!r} (or leave it out).")


def _check_training_args(cfg) -> None:
    cfg.check_choices()  # a bad choice or timestamp setting is a recipe error, not a failure at the first batch
    cfg.timestamp_spec()
    if not cfg.learning_rate >= 0:
        raise ValueError(f"learning_rate must be >= 0, got {cfg.learning_rate}")
    _cpu_precision(cfg)


# Declared in each training config's own body (a mixin's field would lose to TrainingArguments' in the MRO).
# transformers 5 has no `overwrite_output_dir`; the name and meaning are those of its former example scripts.
RESUME_HELP = (
    "Unset: continue from the last complete output_dir/checkpoint-N, or start at step 0 when there is none. true: "
    "the same, but no complete checkpoint is an error. A path: that checkpoint (an error if it is missing or "
    "incomplete). false: step 0, an error if output_dir holds checkpoints. An incomplete checkpoint (a save cut "
    "short) is skipped and moved to output_dir/torn-checkpoint-N (docs/sft.md, Resuming)."
)
OVERWRITE_HELP = (
    "Start over at step 0 even if output_dir holds checkpoints: they and final/ are moved to output_dir/replaced-K "
    "(nothing is deleted). Off: a relaunch continues the run."
)


@dataclass
class AudioSFTConfig(SFTConfig, AudioArguments):
    """`trl.SFTConfig` plus the audio arguments. Rows are turned into model inputs by the audio collator, so TRL's
    text dataset preparation is skipped and every manifest column is kept for it."""

    ENTRY: ClassVar[str] = "rl_audio.sft"

    def __post_init__(self):
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
        self.remove_unused_columns = False
        _refuse(self, SFT_REFUSED)
        _check_training_args(self)
        super().__post_init__()

    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Train on this many rows of the merged training manifests (after `tasks`), drawn by `seed`; "
            "None: all rows. More than there are: all rows, with a warning."
        },
    )
    save_merged: bool = field(
        default=True,
        metadata={
            "help": "With LoRA, write the merged model (loadable by grpo/evaluate as a plain checkpoint) "
            "to output_dir/final; the adapter is kept in output_dir/final/adapter."
        },
    )
    resume_from_checkpoint: str | bool | None = field(default=None, metadata={"help": RESUME_HELP})
    overwrite_output_dir: bool = field(default=False, metadata={"help": OVERWRITE_HELP})


@dataclass
class AudioGRPOConfig(GRPOConfig, AudioArguments):
    """`trl.GRPOConfig` plus the audio arguments, the reward set and TimePro-RL's variance-gated fusion."""

    ENTRY: ClassVar[str] = "rl_audio.grpo"

    rewards: list[str] = field(
        default_factory=lambda: ["eb_f1", "miou"],
        metadata={
            "help": "Reward functions by registry name (rewards.REGISTRY) or dotted path. Weights go in "
            "reward_weights (TRL's own key)."
        },
    )
    reward_kwargs: dict = field(
        default_factory=dict,
        metadata={"help": "Per-reward settings, one block per reward name, e.g. {eb_f1: {t_collar: 0.2}}."},
    )
    fusion_main: str | None = field(
        default=None, metadata={"help": "TimePro-RL eq. 2 main reward (a name in `rewards`); None: no fusion."}
    )
    fusion_aux: str | dict | None = field(
        default=None,
        metadata={
            "help": "Auxiliary reward fused when Var(main) < eps: one name in `rewards`, or one per task, e.g. "
            "{grounding: miou, sed: miou, dac: meteor} (each group uses its rows' task)."
        },
    )
    fusion_eps: float = field(default=1e-6, metadata={"help": "Variance threshold of the fusion."})
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Train on this many rows of the merged training manifests (after `tasks`), drawn by `seed`; "
            "None: all rows. More than there are: all rows, with a warning."
        },
    )
    save_merged: bool = field(default=True, metadata={"help": "Write a merged model to output_dir/final."})
    resume_from_checkpoint: str | bool | None = field(default=None, metadata={"help": RESUME_HELP})
    overwrite_output_dir: bool = field(default=False, metadata={"help": OVERWRITE_HELP})

    def __post_init__(self):
        if isinstance(self.fusion_aux, str) and self.fusion_aux.lstrip().startswith("{"):
            self.fusion_aux = yaml.safe_load(self.fusion_aux)  # the mapping form given on the command line
        _refuse(self, GRPO_REFUSED)
        _check_training_args(self)
        super().__post_init__()
