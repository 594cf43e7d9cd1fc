"""Exact resume of full and partial fine-tunes: every trained weight comes back from the checkpoint.

transformers' ``Trainer._load_from_checkpoint`` reads ``model.safetensors`` with ``load_state_dict(strict=False)``.
``save_pretrained`` writes the checkpoint's key names (transformers reverts its loading-time renamings, e.g.
Qwen2-Audio's ``language_model.model.layers.*`` for the in-memory ``model.language_model.layers.*``), so 26 of 66
keys of Qwen2-Audio, 88 of 88 of the Qwen2.5-Omni thinker and 68 of 68 of Audio Flamingo 3 miss, restart from their
initial values while optimizer and schedule resume, and only a "missing keys" log line says so.

Here the checkpoint's names are mapped back with the model's own reverse conversion (the same
``revert_weight_conversion`` that ``save_pretrained`` applies, a pure renaming for these families: every tensor keeps
its identity), and the weights load strictly: a key that is still missing or unexpected is an error. LoRA
(adapters), DeepSpeed and FSDP checkpoints keep transformers' own loading, which resumes them exactly.
"""

from __future__ import annotations

import json
import os

import torch


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's weights do not cover the model being resumed."""


def _checkpoint_state(path: str) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    single = os.path.join(path, SAFE_WEIGHTS_NAME)
    if os.path.isfile(single):
        return load_file(single, device="cpu")
    index = os.path.join(path, SAFE_WEIGHTS_INDEX_NAME)
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        state = {}
        for name in files:
            state.update(load_file(os.path.join(path, name), device="cpu"))
        return state
    return None


def load_renamed_state(model: torch.nn.Module, path: str) -> bool:
    """Load the weights saved in checkpoint ``path`` into ``model`` under their in-memory names, strictly.

    Returns False (nothing loaded) when ``path`` holds no safetensors weights, so the caller can fall back.

    Raises:
        CheckpointMismatchError: a model weight is not in the checkpoint, or a checkpoint weight is not in the model.
    """
    saved = _checkpoint_state(path)
    if saved is None:
        return False
    from transformers.core_model_loading import revert_weight_conversion

    current = model.state_dict()
    by_storage: dict[tuple, list[str]] = {}
    for name, tensor in current.items():  # tied weights (lm_head = embed_tokens) share one storage
        by_storage.setdefault((tensor.data_ptr(), tuple(tensor.shape)), []).append(name)
    names = {}  # checkpoint name -> in-memory names
    for saved_name, tensor in revert_weight_conversion(model, dict(current)).items():
        names.setdefault(saved_name, by_storage.get((tensor.data_ptr(), tuple(tensor.shape)), []))
    state, unexpected = {}, []
    for saved_name, tensor in saved.items():
        targets = names.get(saved_name) or ([saved_name] if saved_name in current else [])
        if not targets:
            unexpected.append(saved_name)
        for target in targets:
            state[target] = tensor
    covered = set(state)
    missing = [n for group in by_storage.values() if not covered & set(group) for n in group]
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"resuming from {path}: the checkpoint does not match the model (missing {len(missing)}: "
            f"{missing[:5]}; unexpected {len(unexpected)}: {unexpected[:5]}); refusing to resume with weights "
            "reset to their initial values"
        )
    for group in by_storage.values():  # a tied group saved once loads into each of its names
        source = next(n for n in group if n in state)
        for name in group:
            state.setdefault(name, state[source])
    model.load_state_dict(state, strict=True)
    return True


class ExactResumeMixin:
    """For a transformers ``Trainer`` subclass: resume full and partial fine-tunes with every weight restored."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        target = self.model if model is None else model
        if (
            getattr(self, "is_deepspeed_enabled", False)
            or getattr(self, "is_fsdp_enabled", False)
            or hasattr(target, "peft_config")
            or not load_renamed_state(target, resume_from_checkpoint)
        ):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        return None
