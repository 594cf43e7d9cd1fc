"""GRPO on audio with TimePro-RL's variance-gated reward fusion.

    accelerate launch -m rl_audio.grpo recipes/timepro.yaml [--key value ...]
    python -m rl_audio.grpo recipes/timepro.yaml [--key value ...]

Starts from a plain model, a tiny preset or an rl_audio SFT output (`.../final`); writes `output_dir/final`.
"""

from __future__ import annotations

import logging

import rewards as reward_lib

from .cli import parse_recipe, run_entry
from .configs import AudioGRPOConfig
from .data import render_question
from .data.splits import load_rows
from .distributed import check_processes, use_cpu_processes
from .models.loading import load_model_for
from .models.prompting import PromptBuilder
from .models.training import load_for_training
from .runs import save_final, setup_logging
from .trainers.fusion import RewardFusion
from .trainers.grpo import AudioGRPOTrainer, GuardedReward
from .trainers.resume import resume_checkpoint
from .trainers.sft import FreezeRowsCallback

logger = logging.getLogger("rl_audio.grpo")


def build_rewards(cfg: AudioGRPOConfig) -> tuple[list, list[float], RewardFusion | None]:
    """Reward functions (by registry name or dotted path, with their own settings), TRL's weights of their columns,
    and the recipe's fusion (whose fused column comes last)."""
    unknown = set(cfg.reward_kwargs) - set(cfg.rewards)
    if unknown:
        raise ValueError(f"reward_kwargs has settings for {sorted(unknown)}, which are not in rewards {cfg.rewards}")
    funcs = [GuardedReward(reward_lib.get(n, **(cfg.reward_kwargs.get(n) or {})), n) for n in cfg.rewards]
    weights = list(cfg.reward_weights) if cfg.reward_weights else [1.0] * len(funcs)
    if len(weights) != len(funcs):
        raise ValueError(f"reward_weights has {len(weights)} entries for {len(funcs)} rewards {cfg.rewards}")
    fusion = RewardFusion.from_recipe(cfg, dict(zip(cfg.rewards, funcs)))
    if fusion is None:
        return funcs, weights, None
    return [*funcs, fusion.slot()], fusion.reward_weights(weights), fusion


def build_trainer(cfg: AudioGRPOConfig):
    funcs, weights, fusion = build_rewards(cfg)
    cfg.reward_weights = weights  # TRL reads the column weights from its args; the fused column's weight is last
    train = load_rows(cfg, "train").map(lambda r: {"prompt": render_question(r, cfg.answer_style)})  # data first
    if fusion is not None and not cfg.tasks:
        fusion.check_tasks(set(train["task"]))  # no `tasks` filter: the tasks the manifests hold
    need = cfg.generation_batch_size // cfg.num_generations
    if len(train) < need:
        # TRL's sampler yields only whole generation batches: with fewer prompts it stops at step 0 and exits 0.
        raise ValueError(
            f"{len(train)} training prompts, fewer than one generation batch takes ({need} = generation_batch_size "
            f"{cfg.generation_batch_size} / num_generations {cfg.num_generations}): the run would train no step. "
            "Add rows, or lower per_device_train_batch_size, gradient_accumulation_steps or the process count"
        )
    lm = load_for_training(cfg)
    builder = PromptBuilder(lm.adapter, cfg.timestamp_spec(), cfg.system_prompt)
    builder.check_fits(max(train["duration"]))  # a clip past the timestamp grid fails now, not mid-run

    def reference():
        ref = load_model_for(cfg, lm.path)
        shared = lm.adapter.encoder_cache(lm.model)
        if shared is not None:
            # The same encoder weights as the policy's: while the policy's encoder is frozen, one cache serves both
            # (a policy whose encoder trains never reads it).
            ref.adapter.enable_encoder_cache(ref.model, shared)
        return ref.model.requires_grad_(False)  # never trained: its encoder output can be cached

    trainer = AudioGRPOTrainer(
        model=lm.model,
        args=cfg,
        reward_funcs=funcs,
        train_dataset=train,
        processing_class=lm.adapter.tokenizer,
        callbacks=[FreezeRowsCallback(lm.freezer)] if lm.freezer is not None else [],
        builder=builder,
        reference_factory=reference,
        fusion=fusion,
    )
    return trainer, lm


def main(argv: list[str] | None = None) -> None:
    use_cpu_processes()  # before parsing: the config builds accelerate's process state
    cfg = parse_recipe(AudioGRPOConfig, argv)
    check_processes(cfg)  # several processes that would each train alone: refuse
    setup_logging(cfg.process_index == 0)
    checkpoint = resume_checkpoint(cfg)  # before the model loads: a resume setting that cannot work fails now
    trainer, lm = build_trainer(cfg)
    trainer.train(resume_from_checkpoint=checkpoint)
    final = save_final(trainer, lm, cfg, extra_info={"stage": "grpo", "rewards": cfg.rewards})
    logger.info("GRPO done: %s", final)


if __name__ == "__main__":
    run_entry(main)
