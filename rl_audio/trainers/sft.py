"""Audio SFT: a collator that builds timestamp-prompted model inputs from manifest rows, and a thin SFTTrainer."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from transformers import TrainerCallback
from trl import SFTTrainer

from ..data import load_audio, render_question, render_target
from ..models.base import AudioBatch, selected_logits_only
from ..models.prompting import IGNORE_INDEX, PromptBuilder
from .card import ModelCardMixin
from .resume import ExactResumeMixin

logger = logging.getLogger(__name__)


class AudioSFTCollator:
    """Manifest rows -> `input_ids`, `attention_mask`, `labels` (target tokens only) and the family's audio inputs."""

    def __init__(self, builder: PromptBuilder, *, answer_style: str, max_length: int | None, dtype=None):
        self.builder, self.answer_style, self.max_length, self.dtype = builder, answer_style, max_length, dtype

    def __call__(self, rows: list[dict]) -> dict:
        wavs = [load_audio(r["audio"]) for r in rows]
        questions = [render_question(r, self.answer_style) for r in rows]
        targets = [render_target(r, self.answer_style) for r in rows]
        try:
            batch = self.builder.encode_for_training(wavs, questions, targets, max_length=self.max_length)
        except ValueError as e:
            raise ValueError(f"rows {[r['id'] for r in rows]}: {e}") from e
        audio = AudioBatch.from_dict(batch)
        out = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        out.update(self.builder.adapter.model_audio_kwargs(audio, self.dtype))
        return out


def selected_token_nll(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NLL of `targets` (N,) under `logits` (N, V), the positions that predict them: (sum of NLL, number of tokens,
    number correct)."""
    logits = logits.float()
    nll = F.cross_entropy(logits, targets, reduction="sum")
    return nll, torch.as_tensor(targets.numel(), device=logits.device), (logits.argmax(-1) == targets).sum()


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`selected_token_nll` of next-token prediction on the labelled positions of (B, T, V) logits."""
    labels = labels[:, 1:].to(logits.device)  # (B, T-1)
    mask = labels != IGNORE_INDEX
    return selected_token_nll(logits[:, :-1][mask], labels[mask])


class AudioSFTTrainer(ExactResumeMixin, ModelCardMixin, SFTTrainer):
    """SFTTrainer whose loss is computed from the logits (the fused-head path of TRL needs outputs the audio
    families do not return). Loss: mean NLL over target tokens, normalised over the whole accumulated batch when
    transformers passes `num_items_in_batch`."""

    card_stage = "sft"

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        predicts = torch.zeros_like(labels, dtype=torch.bool)
        predicts[:, :-1] = labels[:, 1:] != IGNORE_INDEX
        n_predicts = int(predicts.sum())
        if return_outputs:  # a caller that wants the outputs (compute_metrics) gets every position's logits
            outputs = model(**model_inputs, use_cache=False)
        else:  # the LM head runs on the positions that predict a target token only (training, and loss-only eval)
            with selected_logits_only(model, predicts):
                outputs = model(**model_inputs, use_cache=False)
        if outputs.logits.shape[:2] == (1, n_predicts):  # selected (full logits have T > N positions)
            targets = labels[:, 1:][predicts[:, :-1]].to(outputs.logits.device)  # (N,)
            nll_sum, n_tokens, n_correct = selected_token_nll(outputs.logits[0], targets)
        else:  # full logits: asked for, or the head saw another batch shape (nn.DataParallel splits the batch)
            nll_sum, n_tokens, n_correct = token_nll(outputs.logits, labels)
        denom = num_items_in_batch if num_items_in_batch is not None else n_tokens
        loss = nll_sum / torch.as_tensor(denom, device=nll_sum.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        mode = "train" if model.training else "eval"
        tokens = self.accelerator.gather_for_metrics(n_tokens.detach().reshape(1)).sum()
        correct = self.accelerator.gather_for_metrics(n_correct.detach().reshape(1)).sum()
        self._metrics[mode]["mean_token_accuracy"].append((correct / tokens.clamp(min=1)).item())
        return (loss, outputs) if return_outputs else loss


class FreezeRowsCallback(TrainerCallback):
    """Restores frozen embedding rows (timestamp tokens) after every optimizer step; see `RowFreezer`."""

    def __init__(self, freezer):
        self.freezer = freezer

    def on_step_end(self, args, state, control, **kwargs):
        self.freezer.restore()
