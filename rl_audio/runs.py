"""What every entry point shares: logging, data, model preparation (LoRA / trainable parts) and the final save."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path

import torch
import transformers

from .configs import SPEC_KEYS, AudioArguments
from .models.loading import LoadedModel, load_model

logger = logging.getLogger("rl_audio")

RUN_INFO = "rl_audio.json"


def setup_logging(main_process: bool = True) -> None:
    level = logging.INFO if main_process else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("rl_audio").setLevel(level)
    transformers.utils.logging.set_verbosity_warning()


def manifests_for(cfg: AudioArguments, split: str) -> list[str]:
    """The recipe's manifests for `split` ('train' or 'eval'); the embedded default data set when none are given."""
    given = cfg.train_manifests if split == "train" else cfg.eval_manifests
    if given:
        key = "train_manifests" if split == "train" else "eval_manifests"
        missing = [str(p) for p in given if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"{key}: {', '.join(missing)} not found (relative paths are read from {os.getcwd()}). Build a "
                "manifest with `python -m rl_audio.data {synth,sta,negatives,validate,default} --help` or a "
                f"converter (`python -m rl_audio.converters --help`; docs/data.md), or set {key} to yours; leave "
                f"{key} empty to use the embedded default data."
            )
        return list(given)
    from .data import build_default_dataset

    # One process builds the files, the others wait and then reuse them (concurrent writers of the same wav files
    # fail). Global main first, then each node's main: right for a data_dir shared by all nodes or local to each.
    first = getattr(cfg, "main_process_first", None)
    with first(local=False) if first else contextlib.nullcontext(), first() if first else contextlib.nullcontext():
        paths = build_default_dataset(
            cfg.data_dir, num_train=cfg.default_data_clips, num_test=max(8, cfg.default_data_clips // 4)
        )
    return [str(paths["train" if split == "train" else "test"])]


def load_rows(cfg: AudioArguments, split: str):
    """A `datasets.Dataset` of manifest rows (paths, not audio), filtered to `cfg.tasks`.

    Training rows converted from a benchmark's evaluation split are refused (a warning with
    `allow_eval_split_training`); evaluation rows are not checked (rl_audio.data.provenance)."""
    from .data import manifest_to_dataset

    paths = manifests_for(cfg, split)
    guard = "allow" if split != "train" else "warn" if cfg.allow_eval_split_training else "refuse"
    ds = manifest_to_dataset(paths, skip_invalid=cfg.skip_invalid, eval_splits=guard)
    if cfg.tasks:
        ds = ds.filter(lambda r: r["task"] in cfg.tasks)
    too_long = [r["id"] for r in ds if r["duration"] > cfg.max_audio_seconds]
    if too_long:
        raise ValueError(
            f"{len(too_long)} rows are longer than max_audio_seconds={cfg.max_audio_seconds}: {too_long[:5]}"
        )
    if len(ds) == 0:
        raise ValueError(f"no rows to use in {paths} (tasks filter: {cfg.tasks or 'none'})")
    limit = getattr(cfg, "max_train_samples", None) if split == "train" else None
    if limit is not None:
        ds = subset_rows(ds, limit, getattr(cfg, "seed", 0))
    logger.info("%s: %d rows from %s", split, len(ds), ", ".join(paths))
    return ds


def subset_rows(ds, limit: int, seed: int):
    """`limit` rows of `ds` drawn without replacement by `seed` (the same rows for the same seed and data), kept
    in manifest order; all rows, with a warning, when `ds` has no more than `limit`."""
    import numpy as np

    if limit < 1:
        raise ValueError(f"max_train_samples must be >= 1, got {limit}")
    if limit >= len(ds):
        if limit > len(ds):
            logger.warning("max_train_samples=%d but only %d training rows: using all of them", limit, len(ds))
        return ds
    picked = np.random.default_rng(seed).choice(len(ds), size=limit, replace=False)
    return ds.select(sorted(picked.tolist()))


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


def load_model_for(cfg: AudioArguments, path: str | None = None, *, freeze_audio_encoder: bool = False) -> LoadedModel:
    """`models.load_model` with the recipe's model settings (the model at `path`, default `model_name_or_path`):
    the one loader of training, the GRPO reference model and evaluation."""
    return load_model(
        path or cfg.model_name_or_path,
        timestamps=cfg.timestamp_spec(),
        dtype=cfg.model_dtype,
        attn_implementation=cfg.attn_implementation,
        freeze_audio_encoder=freeze_audio_encoder,
        preset_seed=cfg.preset_seed,
        cache_audio_features=cfg.cache_audio_features,
    )


def load_for_training(cfg: AudioArguments) -> LoadedModel:
    from transformers import set_seed

    # The seed first: LoRA's and the random timestamp rows' initial values are drawn while loading, before the
    # Trainer would set it, so two runs with one seed would otherwise start from different adapters.
    set_seed(cfg.seed)
    lm = load_model_for(cfg, freeze_audio_encoder=cfg.freeze_audio_encoder)
    check_run_info(cfg, lm.path, training=True)
    _select_trainable(lm, cfg)
    if cfg.use_peft:
        lm.model = _wrap_lora(lm, cfg)
    # ZeRO-3 partitions parameters at load time: their real size is `ds_numel`.
    trainable = sum(getattr(p, "ds_numel", p.numel()) for p in lm.model.parameters() if p.requires_grad)
    total = sum(getattr(p, "ds_numel", p.numel()) for p in lm.model.parameters())
    logger.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    if trainable == 0:
        raise ValueError("nothing to train: every parameter is frozen (check trainable_modules / use_peft)")
    return lm


def _named_parts(lm: LoadedModel) -> dict[str, torch.nn.Module]:
    a = lm.adapter
    return {
        "aligner": a.aligner(lm.model),
        "audio_encoder": a.audio_encoder(lm.model),
        "language_model": a.language_model(lm.model),
    }


def _select_trainable(lm: LoadedModel, cfg: AudioArguments) -> None:
    if not cfg.trainable_modules:
        return
    model, parts = lm.model, _named_parts(lm)
    model.requires_grad_(False)
    for item in cfg.trainable_modules:
        if item in parts:
            parts[item].requires_grad_(True)
            continue
        hits = [p for n, p in model.named_parameters() if item in n]
        if not hits:
            raise ValueError(
                f"trainable_modules: {item!r} matches no parameter; use {sorted(parts)} or a name substring"
            )
        for p in hits:
            p.requires_grad_(True)


def _wrap_lora(lm: LoadedModel, cfg: AudioArguments):
    from peft import LoraConfig, get_peft_model

    lm_module = lm.adapter.language_model(lm.model)
    prefix = next(n for n, m in lm.model.named_modules() if m is lm_module)
    linear = {n for n, m in lm.model.named_modules() if n.startswith(prefix + ".") and isinstance(m, torch.nn.Linear)}
    targets = sorted(n for n in linear if n.rsplit(".", 1)[-1] in cfg.lora_target_modules)
    missing = [t for t in cfg.lora_target_modules if not any(n.rsplit(".", 1)[-1] == t for n in linear)]
    if missing:
        names = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ValueError(f"lora_target_modules {missing} do not exist in the language model; linear layers: {names}")
    extra_trainable = [n for n, p in lm.model.named_parameters() if p.requires_grad] if cfg.trainable_modules else []
    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        modules_to_save=sorted({n.rsplit(".", 1)[0] for n in extra_trainable}) or None,
    )
    return get_peft_model(lm.model, config)


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
    return "\n".join(lines)


def write_checkpoint_card(trainer, stage: str) -> None:
    """Write :func:`model_card` to ``output_dir/README.md``, where TRL's trainers write their own card with every
    checkpoint (its text names none of the base model, recipe, timestamps or rewards)."""
    if not trainer.is_world_process_zero():
        return
    cfg = trainer.args
    info = {"stage": stage, "base_model": cfg.model_name_or_path, "answer_style": cfg.answer_style,
            "rewards": list(getattr(cfg, "rewards", None) or []), "lora_adapter": getattr(cfg, "use_peft", False)}  # fmt: skip
    os.makedirs(cfg.output_dir, exist_ok=True)
    (Path(cfg.output_dir) / "README.md").write_text(model_card(cfg, info, trainer.state))


def _merge_adapter(cfg, adapter_dir: Path, final: Path) -> None:
    """Reload the base model (same timestamp tokens, same deterministic init), apply the adapter, merge, save."""
    from peft import PeftModel

    base = load_model(
        cfg.model_name_or_path, timestamps=cfg.timestamp_spec(), dtype=cfg.model_dtype, preset_seed=cfg.preset_seed
    )
    merged = PeftModel.from_pretrained(base.model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(final)
