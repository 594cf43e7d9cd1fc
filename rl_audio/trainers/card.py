"""The model card our trainers write with every checkpoint, in place of TRL's generic one."""

from __future__ import annotations


class ModelCardMixin:
    """For a TRL trainer subclass: ``create_model_card`` writes :func:`rl_audio.runs.model_card` (base model, recipe,
    timestamps, rewards, papers) to ``output_dir/README.md``. Set ``card_stage`` ("sft", "grpo")."""

    card_stage = "checkpoint"

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        from ..runs import write_checkpoint_card

        write_checkpoint_card(self, self.card_stage)
