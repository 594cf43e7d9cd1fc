"""Supervised warm-start with timestamp prompting.

    accelerate launch -m rl_audio.sft recipes/sta.yaml [--key value ...]
    python -m rl_audio.sft recipes/sta.yaml [--key value ...]

Writes `output_dir/final`, a checkpoint that `rl_audio.grpo` and `rl_audio.evaluate` load directly.
"""

from __future__ import annotations

import logging

from .cli import parse_recipe, run_entry
from .configs import AudioSFTConfig
from .data.splits import load_rows
from .distributed import check_processes, use_cpu_processes
from .models.loading import check_positions
from .models.prompting import PromptBuilder
from .models.training import load_for_training
from .runs import save_final, setup_logging
from .trainers.resume import resume_checkpoint
from .trainers.sft import AudioSFTCollator, AudioSFTTrainer, FreezeRowsCallback

logger = logging.getLogger("rl_audio.sft")


def build_trainer(cfg: AudioSFTConfig):
    train = load_rows(cfg, "train")  # data errors first: they should not wait for a 7B model to load
    evaluation = load_rows(cfg, "eval") if cfg.eval_strategy != "no" else None
    lm = load_for_training(cfg)
    if cfg.max_length is not None:
        check_positions(lm.model, cfg.max_length, f"max_length {cfg.max_length}")  # the bound GRPO checks too
    builder = PromptBuilder(lm.adapter, cfg.timestamp_spec(), cfg.system_prompt)
    for rows in (train, evaluation):
        if rows is not None:
            builder.check_fits(max(rows["duration"]), cfg.max_length)  # fail now rather than at some later batch
    dtype = next(p for p in lm.model.parameters()).dtype
    collator = AudioSFTCollator(builder, answer_style=cfg.answer_style, max_length=cfg.max_length, dtype=dtype)
    callbacks = [FreezeRowsCallback(lm.freezer)] if lm.freezer is not None else []
    trainer = AudioSFTTrainer(
        model=lm.model,
        args=cfg,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=collator,
        processing_class=lm.adapter.tokenizer,
        callbacks=callbacks,
    )
    return trainer, lm


def main(argv: list[str] | None = None) -> None:
    use_cpu_processes()  # before parsing: the config builds accelerate's process state
    cfg = parse_recipe(AudioSFTConfig, argv)
    check_processes(cfg)  # several processes that would each train alone: refuse
    setup_logging(cfg.process_index == 0)
    checkpoint = resume_checkpoint(cfg)  # before the model loads: a resume setting that cannot work fails now
    trainer, lm = build_trainer(cfg)
    trainer.train(resume_from_checkpoint=checkpoint)
    final = save_final(trainer, lm, cfg, extra_info={"stage": "sft"})
    logger.info("SFT done: %s", final)


if __name__ == "__main__":
    run_entry(main)
