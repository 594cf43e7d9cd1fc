"""A model made ready to train from a recipe: the seed, the checkpoint's timestamp layout, the trainable parts
(`trainable_modules`) and LoRA adapters on the language model (`use_peft`). Shared by SFT and GRPO."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

import torch

from .loading import LoadedModel, load_model_for

if TYPE_CHECKING:
    from ..configs import AudioArguments

logger = logging.getLogger(__name__)


def load_for_training(cfg: AudioArguments) -> LoadedModel:
    """The policy of an SFT or GRPO run: :func:`load_model_for` (the recipe's model, its audio encoder frozen if
    asked), the checkpoint's timestamp layout checked, then trainable parts and LoRA as the recipe says."""
    from transformers import set_seed

    from ..runs import check_run_info

    # The seed first: LoRA's and the random timestamp rows' initial values are drawn while loading, before the
    # Trainer would set it, so two runs with one seed would otherwise start from different adapters.
    set_seed(cfg.seed)
    lm = load_model_for(cfg, freeze_audio_encoder=cfg.freeze_audio_encoder)
    check_run_info(cfg, lm.path, training=True)
    select_trainable(lm, cfg)
    if cfg.use_peft:
        # Again, right before LoRA draws its matrices: building a preset on first use re-seeds the global RNG with
        # the preset's seed, so a run that built its preset started from other adapters than one that found it cached.
        set_seed(cfg.seed)
        lm.model = wrap_lora(lm, cfg)
    # ZeRO-3 partitions parameters at load time: their real size is `ds_numel`.
    trainable = sum(getattr(p, "ds_numel", p.numel()) for p in lm.model.parameters() if p.requires_grad)
    total = sum(getattr(p, "ds_numel", p.numel()) for p in lm.model.parameters())
    logger.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    if trainable == 0:
        raise ValueError("nothing to train: every parameter is frozen (check trainable_modules / use_peft)")
    return lm


def named_parts(lm: LoadedModel) -> dict[str, torch.nn.Module]:
    """The parts `trainable_modules` may name, from the family adapter."""
    a = lm.adapter
    return {
        "aligner": a.aligner(lm.model),
        "audio_encoder": a.audio_encoder(lm.model),
        "language_model": a.language_model(lm.model),
    }


def select_trainable(lm: LoadedModel, cfg: AudioArguments) -> None:
    """Full fine-tuning of `trainable_modules` only (part names or parameter-name substrings), the rest frozen."""
    if not cfg.trainable_modules:
        return
    model, parts = lm.model, named_parts(lm)
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


def wrap_lora(lm: LoadedModel, cfg: AudioArguments):
    """The model with LoRA adapters on the language model's `lora_target_modules`; parts already made trainable by
    `trainable_modules` are trained in full beside them (PEFT's `modules_to_save`)."""
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
    model = get_peft_model(lm.model, config)
    if lm.timestamp_ids:
        keep_embeddings_in_adapter(model)
    return model


def keep_embeddings_in_adapter(model) -> None:
    """Every adapter this PEFT model saves (checkpoints, `final/adapter`) carries the embedding and lm_head tables.

    Timestamp tokens add rows to the base model (resized past its vocabulary, or spare rows of a Qwen config set to
    the TimePro-RL eq. 1 values). An adapter of LoRA matrices alone leaves stock PEFT with the base's rows: too few
    for the tokenizer, or the spare rows' untrained values. PEFT's "auto" would miss it, since it compares a
    top-level `config.vocab_size` that these composite configs do not set. With the tables in the adapter,
    `PeftModel.from_pretrained` on the stock base (resized to the tokenizer when it has fewer rows) restores them.
    Resuming reloads the same frozen values, so it stays exact. Cost: two vocabulary x hidden tables per adapter.
    """
    save = model.save_pretrained
    model.save_pretrained = functools.partial(save, save_embedding_layers=True)
