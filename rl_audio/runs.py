"""What every entry point shares: logging, the checkpoint's run info (`rl_audio.json`), the final save and the model
card. Data splits live in `rl_audio.data.splits`, model loading and LoRA in `rl_audio.models.loading` and
`rl_audio.models.training`."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import transformers

from .configs import SPEC_KEYS, AudioArguments
from .models.loading import LoadedModel, load_model_for

logger = logging.getLogger("rl_audio")

RUN_INFO = "rl_audio.json"


def setup_logging(main_process: bool = True) -> None:
    level = logging.INFO if main_process else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("rl_audio").setLevel(level)
    transformers.utils.logging.set_verbosity_warning()


# the fields that change what the model reads, per mode (token_init only matters when the tokens are created)
_LAYOUT_KEYS = {"none": (), "text": ("granularity", "text_template"), "tokens": ("token_stride", "token_max")}


def check_run_info(cfg: AudioArguments, path: str, *, training: bool = False) -> None:
    """A checkpoint written by rl_audio records its timestamp layout; reading it with another layout is an error.

    The mode and the fields that shape the prompt (text: granularity and template; tokens: grid) must match. One
    change is allowed when training: a checkpoint trained without timestamps may be fine-tuned with text or token
    timestamps, as the papers fine-tune base models that have never seen them.
    """
    info_path = Path(path) / RUN_INFO
    if not info_path.exists():
        return
    trained = json.loads(info_path.read_text()).get("timestamps") or {}
    mode = trained.get("mode")
    if not mode:
        return
    if training and mode == "none" and cfg.timestamp_mode != "none":
        logger.info("%s was trained without timestamps; this run adds %s timestamps", path, cfg.timestamp_mode)
        return
    now = cfg.timestamp_spec().__dict__
    for key in ("mode", *_LAYOUT_KEYS.get(mode, ())):
        if key in trained and trained[key] != now[key]:
            raise ValueError(
                f"{path} was trained with {SPEC_KEYS[key]}={trained[key]!r} but the recipe says {now[key]!r}; "
                f"use the setting the checkpoint was trained with ({info_path})"
            )


def save_final(trainer, lm: LoadedModel, cfg, extra_info: dict | None = None) -> Path:
    """Write `output_dir/final`: a plain checkpoint (merged weights with LoRA) that grpo and evaluate load directly,
    its tokenizer and feature extractor, and `rl_audio.json` (timestamp spec, base model, answer style)."""
    if trainer.state.global_step == 0:
        raise RuntimeError(
            f"training finished without a single optimizer step (max_steps {cfg.max_steps}, "
            f"{len(trainer.train_dataset) if trainer.train_dataset is not None else 0} training rows): "
            "nothing is saved as a trained model"
        )
    final = Path(cfg.output_dir) / "final"
    is_peft = hasattr(trainer.model, "peft_config")
    target = final / "adapter" if is_peft else final
    trainer.save_model(str(target))
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        if is_peft and getattr(cfg, "save_merged", True):
            _merge_adapter(cfg, target, final)
        lm.adapter.tokenizer.save_pretrained(final)
        lm.adapter.feature_extractor.save_pretrained(final)
        spec = cfg.timestamp_spec()
        info = {
            "family": lm.adapter.family,
            "base_model": cfg.model_name_or_path,
            "answer_style": cfg.answer_style,
            "system_prompt": cfg.system_prompt,
            "timestamps": spec.__dict__,
            "lora_adapter": "adapter" if is_peft else None,
            **(extra_info or {}),
        }
        (final / RUN_INFO).write_text(json.dumps(info, indent=2))
        (final / "README.md").write_text(model_card(cfg, info, trainer.state))
        # the run's logged metrics, per step (losses, rewards), for whoever compares runs later
        (final / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
        logger.info("saved %s", final)
    trainer.accelerator.wait_for_everyone()
    return final


PAPERS = {
    "spotsound": "SpotSound (arXiv:2604.13023): text timestamps, negative queries, temporal-grounding metrics",
    "timepro": "TimePro-RL (arXiv:2604.13715): timestamp tokens, event-F1 GRPO with variance-gated fusion",
    "tgsr": '"Listen First, Then Answer" / TGSR (arXiv:2603.19468): timestamp alignment, compaction and audiology',
}


def _timestamp_text(spec) -> str:
    if spec.mode == "tokens":
        return f"timestamp tokens inside the audio sequence every {spec.token_stride:g} s (TimePro-RL §2.1)"
    if spec.mode == "text":
        return f'"timestamp: t seconds" text every {spec.granularity:g} s between audio chunks (SpotSound §2.2)'
    return "none (audio tokens only)"


def model_card(cfg, info: dict, state=None) -> str:
    """The checkpoint's README.md: base model, stage, recipe, data tasks, timestamp layout, rewards, the last logged
    metrics, how to load and evaluate it, and the papers whose methods it follows (TRL's own card names none of
    these)."""
    stage = str(info.get("stage", "checkpoint")).upper()
    spec = cfg.timestamp_spec()
    base = str(info.get("base_model") or cfg.model_name_or_path)
    hub_base = base if re.fullmatch(r"[\w.-]+/[\w.-]+", base) and not Path(base).exists() else None
    rows = [
        ("base model", f"`{base}` ({info.get('family', '?')} family)"),
        ("stage", stage),
        ("recipe", f"`{cfg.recipe_path}`" if getattr(cfg, "recipe_path", None) else "(command-line settings only)"),
    ]
    overrides = getattr(cfg, "recipe_overrides", None)
    if overrides:
        rows.append(("overrides", ", ".join(f"`{k}={v}`" for k, v in overrides.items())))
    rows += [
        ("tasks", ", ".join(getattr(cfg, "tasks", None) or ["(all in the manifests)"])),
        ("answer style", str(info.get("answer_style"))),
        ("timestamps", _timestamp_text(spec)),
        ("audio encoder", "frozen" if getattr(cfg, "freeze_audio_encoder", False) else "trained"),
        ("LoRA", f"r {cfg.lora_r}, alpha {cfg.lora_alpha}" if info.get("lora_adapter") else "no (full weights)"),
    ]
    if info.get("rewards"):
        weights = getattr(cfg, "reward_weights", None) or [1.0] * len(info["rewards"])
        rewards = ", ".join(f"`{n}` x {w:g}" for n, w in zip(info["rewards"], weights))
        if getattr(cfg, "fusion_main", None):
            aux = cfg.fusion_aux
            if isinstance(aux, dict):
                aux = "the task's auxiliary reward (" + ", ".join(f"{t}: `{n}`" for t, n in aux.items()) + ")"
            else:
                aux = f"`{aux}`"
            rewards += (f"; in groups where `{cfg.fusion_main}` has no variance, `{cfg.fusion_main}` x {aux}"
                        " (TimePro-RL eq. 2)")  # fmt: skip
        rows.append(("rewards", rewards))
    if state is not None:
        rows.append(("steps", str(state.global_step)))
        last = {}
        for entry in state.log_history:
            last.update({k: v for k, v in entry.items() if isinstance(v, (int, float)) and k not in ("step", "epoch")})
        shown = [
            k for k in ("loss", "train_loss", "reward", "mean_token_accuracy", "frac_reward_zero_std") if k in last
        ]
        if shown:
            rows.append(("last logged", ", ".join(f"{k} {last[k]:.4g}" for k in shown)))
    styles = {str(info.get("answer_style")), spec.mode}
    papers = [text for key, text in PAPERS.items() if key in styles or key in str(getattr(cfg, "recipe_path", ""))]
    header = ["---", "library_name: transformers", *([f"base_model: {hub_base}"] if hub_base else []),
              "tags:", "- rl_audio", "- trl", f"- {stage.lower()}", "- audio-language-model", "- temporal-grounding",
              "---", ""]  # fmt: skip
    lines = [*header, f"# {Path(cfg.output_dir).name}", "",
             f"{stage} checkpoint of `{base}`, trained with rl_audio on Hugging Face TRL.", "",
             "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], "",
             "## Use", "", "It loads like its base model: `rl_audio.json` records the timestamp layout and answer style that",
             "prompts must follow, and `python -m rl_audio.evaluate --model_name_or_path <this folder>` scores it.",
             "Continue with GRPO by setting `model_name_or_path` to this folder.", ""]  # fmt: skip
    if papers:
        lines += ["## Methods", "", *[f"- {text}" for text in papers], ""]
    if info.get("family"):
        from .trainers.card import stock_loading_section

        lines += stock_loading_section(
            info["family"], spec.mode, bool(info.get("lora_adapter")), base, spec.token_stride
        )
    return "\n".join(lines)


def write_checkpoint_card(trainer, stage: str) -> None:
    """Write :func:`model_card` to ``output_dir/README.md``, where TRL's trainers write their own card with every
    checkpoint (its text names none of the base model, recipe, timestamps or rewards)."""
    if not trainer.is_world_process_zero():
        return
    from .models.families import adapter_for_model_type

    cfg = trainer.args
    family = adapter_for_model_type(trainer.accelerator.unwrap_model(trainer.model).config.model_type).family
    info = {"stage": stage, "base_model": cfg.model_name_or_path, "answer_style": cfg.answer_style, "family": family,
            "rewards": list(getattr(cfg, "rewards", None) or []), "lora_adapter": getattr(cfg, "use_peft", False)}  # fmt: skip
    os.makedirs(cfg.output_dir, exist_ok=True)
    (Path(cfg.output_dir) / "README.md").write_text(model_card(cfg, info, trainer.state))


def _merge_adapter(cfg, adapter_dir: Path, final: Path) -> None:
    """Reload the base model (same timestamp tokens, same deterministic init), apply the adapter, merge, save."""
    from peft import PeftModel

    base = load_model_for(cfg)
    merged = PeftModel.from_pretrained(base.model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(final)
