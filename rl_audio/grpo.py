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
from .models.prompting import PromptBuilder
from .runs import load_for_training, load_model_for, load_rows, save_final, setup_logging
from .trainers.grpo import AudioGRPOTrainer, FusedRewardSlot, GuardedReward
from .trainers.sft import FreezeRowsCallback

logger = logging.getLogger("rl_audio.grpo")


def build_rewards(cfg: AudioGRPOConfig) -> tuple[list, list[float], dict | None]:
    """Reward functions (by registry name or dotted path, with their own settings) and weights; fusion slot."""
    unknown = set(cfg.reward_kwargs) - set(cfg.rewards)
    if unknown:
        raise ValueError(f"reward_kwargs has settings for {sorted(unknown)}, which are not in rewards {cfg.rewards}")
    funcs = [GuardedReward(reward_lib.get(n, **(cfg.reward_kwargs.get(n) or {})), n) for n in cfg.rewards]
    weights = list(cfg.reward_weights) if cfg.reward_weights else [1.0] * len(funcs)
    if len(weights) != len(funcs):
        raise ValueError(f"reward_weights has {len(weights)} entries for {len(funcs)} rewards {cfg.rewards}")
    if cfg.fusion_main is None and cfg.fusion_aux is None:
        return funcs, weights, None
    per_task = isinstance(cfg.fusion_aux, dict)
    if per_task:
        if not cfg.fusion_aux:
            raise ValueError("fusion_aux is an empty mapping: give one reward, or one per task")
        from .data.manifest import TASKS

        unknown = sorted(set(cfg.fusion_aux) - set(TASKS))
        if unknown:
            raise ValueError(
                f"fusion_aux {cfg.fusion_aux}: unknown task(s) {unknown}; valid tasks: {', '.join(TASKS)}"
            )
        aux_roles = [(f"fusion_aux[{t}]", n) for t, n in cfg.fusion_aux.items()]
    else:
        aux_roles = [("fusion_aux", cfg.fusion_aux)]
    for role, name in (("fusion_main", cfg.fusion_main), *aux_roles):
        if name not in cfg.rewards:
            raise ValueError(f"{role} {name!r} is not one of the configured rewards {cfg.rewards}")
    if per_task:
        by_name = dict(zip(cfg.rewards, funcs))
        for task, name in cfg.fusion_aux.items():
            for role, reward in (("fusion_main", cfg.fusion_main), (f"fusion_aux[{task}]", name)):
                _check_applies(by_name[reward].fn, role, reward, task)
        if cfg.tasks:
            check_fusion_tasks(cfg, cfg.tasks)
    # TimePro-RL eq. 2 replaces main and aux by the fused reward: they stay as columns (and are logged) with weight
    # 0, and the fused column carries the main reward's weight.
    main_i = cfg.rewards.index(cfg.fusion_main)
    fused_weight = weights[main_i]
    weights[main_i] = 0.0
    for _, name in aux_roles:
        weights[cfg.rewards.index(name)] = 0.0
    funcs.append(FusedRewardSlot(cfg.fusion_main, cfg.fusion_aux))
    weights.append(fused_weight)
    return funcs, weights, {"main": cfg.fusion_main, "aux": cfg.fusion_aux, "eps": cfg.fusion_eps}


def _check_applies(fn, role: str, name: str, task: str) -> None:
    """A reward that declares its tasks (``rewards.RewardFunction.tasks``) returns None on any other task, which
    the fusion reads as 0: mapped to such a task it would zero every fused group of it."""
    tasks = getattr(fn, "tasks", None)
    if tasks is not None and task not in tasks:
        raise ValueError(f"{role} {name!r} does not apply to task {task!r} (it scores {list(tasks)})")


def check_fusion_tasks(cfg: AudioGRPOConfig, tasks) -> None:
    """With a per-task `fusion_aux`, every training task needs an auxiliary reward."""
    missing = sorted(set(tasks) - set(cfg.fusion_aux))
    if missing:
        raise ValueError(
            f"fusion_aux {cfg.fusion_aux} has no auxiliary reward for the training task(s) {missing}; "
            "add them to the mapping or leave them out of `tasks`"
        )


def build_trainer(cfg: AudioGRPOConfig):
    funcs, weights, fusion = build_rewards(cfg)
    cfg.reward_weights = weights
    train = load_rows(cfg, "train").map(lambda r: {"prompt": render_question(r, cfg.answer_style)})  # data first
    if isinstance(cfg.fusion_aux, dict) and not cfg.tasks:
        check_fusion_tasks(cfg, set(train["task"]))  # no `tasks` filter: the tasks the manifests hold
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
    cfg = parse_recipe(AudioGRPOConfig, argv)
    setup_logging(cfg.process_index == 0)
    trainer, lm = build_trainer(cfg)
    trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    final = save_final(trainer, lm, cfg, extra_info={"stage": "grpo", "rewards": cfg.rewards})
    logger.info("GRPO done: %s", final)


if __name__ == "__main__":
    run_entry(main)
