"""TimePro-RL's variance-gated fusion (§2.2, eq. 2) wired to a recipe's reward columns.

The math is :func:`rewards.fusion.variance_gated`; :class:`RewardFusion` holds everything around it that depends on
the recipe: which column is the main reward, which the auxiliary one (one for every group, or one per task), the
extra column that receives the fused reward, the weights TRL combines the columns with, and the fusion metrics.
`AudioGRPOTrainer` calls :meth:`RewardFusion.apply` on the rewards TRL has gathered from every process, so a group
that spans processes fuses as on one process.

Column layout, for ``rewards: [eb_f1, miou, meteor]``, ``fusion_main: eb_f1``,
``fusion_aux: {grounding: miou, sed: miou, dac: meteor}``::

    columns  eb_f1  miou  meteor  fused_eb_f1_by_task
    weights  0      0     0       w(eb_f1)

Main and auxiliary rewards stay as columns (TRL logs them as ``rewards/<name>/mean``) with weight 0: eq. 2 replaces
them by the fused reward, which carries the main reward's weight.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import NamedTuple

import torch

from rewards.fusion import variance_gated

logger = logging.getLogger(__name__)

METRIC = "rewards/fusion/fused_group_frac"  # share of the groups the main reward applies to that were fused
ZERO_STD_METRIC = "rewards/fusion/zero_std_frac"  # groups whose fused reward has no variance (no gradient)


def fused_name(main: str, aux: str | Mapping[str, str]) -> str:
    """Name of the fused reward column: ``fused_<main>_<aux>``, or ``fused_<main>_by_task`` for a per-task aux."""
    return f"fused_{main}_by_task" if isinstance(aux, Mapping) else f"fused_{main}_{aux}"


class FusedRewardSlot:
    """The reward function of the fused column: TRL calls it per process before the gather, and it returns None
    for every completion; :meth:`RewardFusion.apply` fills the column afterwards."""

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(self, completions, **kwargs):
        return [None] * len(completions)


class FusionOutput(NamedTuple):
    rewards: torch.Tensor  # (N, F + 1), the fused column filled in
    metrics: dict[str, float]  # logged as the mean over the step, e.g. rewards/fusion/fused_group_frac


class RewardFusion:
    """Variance-gated fusion over the columns of ``rewards`` (the recipe's reward names, in order).

    ``aux`` is one reward name, or a mapping task -> reward name (each group takes its rows' task). Both must be in
    ``rewards``; with ``reward_fns`` (name -> reward function), a reward that declares the tasks it scores
    (``rewards.RewardFunction.tasks``) must score every task it is mapped to.
    """

    def __init__(
        self,
        rewards: list[str],
        main: str,
        aux: str | Mapping[str, str],
        eps: float = 1e-6,
        reward_fns: Mapping[str, object] | None = None,
    ):
        self.main, self.aux, self.eps = main, (dict(aux) if isinstance(aux, Mapping) else aux), eps
        self.rewards = list(rewards)
        self._check(reward_fns or {})
        self.name = fused_name(main, self.aux)
        self.columns = [*self.rewards, self.name]  # the reward columns TRL computes, in this order
        self.main_index = self.rewards.index(main)
        self.slot_index = len(self.rewards)
        self.aux_index: int | dict[str, int] = (
            {t: self.rewards.index(n) for t, n in self.aux.items()} if self.per_task else self.rewards.index(self.aux)
        )

    @classmethod
    def from_recipe(cls, cfg, reward_fns: Mapping[str, object] | None = None) -> RewardFusion | None:
        """The recipe's fusion (``fusion_main``, ``fusion_aux``, ``fusion_eps`` over ``rewards``); None without one.
        With a per-task aux and a ``tasks`` filter, every task must have an auxiliary reward."""
        if cfg.fusion_main is None and cfg.fusion_aux is None:
            return None
        fusion = cls(cfg.rewards, cfg.fusion_main, cfg.fusion_aux, cfg.fusion_eps, reward_fns)
        if fusion.per_task and cfg.tasks:
            fusion.check_tasks(cfg.tasks)
        return fusion

    @property
    def per_task(self) -> bool:
        return isinstance(self.aux, dict)

    def __getitem__(self, key: str):
        """The recipe's settings by key: ``fusion["main"]``, ``fusion["aux"]``, ``fusion["eps"]``."""
        if key not in ("main", "aux", "eps"):
            raise KeyError(key)
        return getattr(self, key)

    def _check(self, reward_fns: Mapping[str, object]) -> None:
        if self.per_task:
            if not self.aux:
                raise ValueError("fusion_aux is an empty mapping: give one reward, or one per task")
            from ..data.manifest import TASKS

            unknown = sorted(set(self.aux) - set(TASKS))
            if unknown:
                raise ValueError(f"fusion_aux {self.aux}: unknown task(s) {unknown}; valid tasks: {', '.join(TASKS)}")
            aux_roles = [(f"fusion_aux[{t}]", n) for t, n in self.aux.items()]
        else:
            aux_roles = [("fusion_aux", self.aux)]
        for role, name in (("fusion_main", self.main), *aux_roles):
            if name not in self.rewards:
                raise ValueError(f"{role} {name!r} is not one of the configured rewards {self.rewards}")
        if self.per_task:
            for task, name in self.aux.items():
                for role, reward in (("fusion_main", self.main), (f"fusion_aux[{task}]", name)):
                    _check_applies(reward_fns.get(reward), role, reward, task)

    def check_tasks(self, tasks) -> None:
        """With a per-task aux, every training task needs an auxiliary reward."""
        if not self.per_task:
            return
        missing = sorted(set(tasks) - set(self.aux))
        if missing:
            raise ValueError(
                f"fusion_aux {self.aux} has no auxiliary reward for the training task(s) {missing}; "
                "add them to the mapping or leave them out of `tasks`"
            )

    def reward_weights(self, weights: list[float]) -> list[float]:
        """TRL's weights for :attr:`columns` from the recipe's weights of ``rewards``: main and aux 0 (logged
        only), the fused column the main reward's weight (TimePro-RL eq. 2 replaces both by the fused reward)."""
        out = list(weights)
        out[self.main_index] = 0.0
        for i in self.aux_index.values() if self.per_task else (self.aux_index,):
            out[i] = 0.0
        return [*out, float(weights[self.main_index])]

    def slot(self) -> FusedRewardSlot:
        return FusedRewardSlot(self.name)

    def aux_rewards(self, rewards: torch.Tensor, group_size: int, tasks: list[str] | None) -> torch.Tensor:
        """(N,) auxiliary rewards of the (N, F + 1) rewards: one column, or per group the column of its task."""
        if not self.per_task:
            return rewards[:, self.aux_index]
        if tasks is None or len(tasks) != rewards.size(0):
            raise RuntimeError(f"fusion: {0 if tasks is None else len(tasks)} row tasks for {rewards.size(0)} rewards")
        cols = []
        for g in range(0, len(tasks), group_size):
            group = set(tasks[g : g + group_size])
            if len(group) != 1:
                raise ValueError(f"fusion: the group at row {g} mixes tasks {sorted(group)}")
            task = tasks[g]
            if task not in self.aux_index:
                raise ValueError(f"fusion: task {task!r} has no entry in fusion_aux {sorted(self.aux_index)}")
            cols.append(self.aux_index[task])
        cols = torch.tensor(cols, device=rewards.device).repeat_interleave(group_size)  # (N,)
        return rewards[torch.arange(rewards.size(0), device=rewards.device), cols]

    def apply(self, rewards: torch.Tensor, group_size: int, tasks: list[str] | None = None) -> FusionOutput:
        """TimePro-RL eq. 2 on the gathered (N, F + 1) rewards, in place: the fused column from the main and aux
        columns. ``tasks`` holds the gathered rows' tasks (needed with a per-task aux, in the rewards' order)."""
        main = rewards[:, self.main_index]  # (N,)
        fused = variance_gated(main, self.aux_rewards(rewards, group_size, tasks), group_size, self.eps)
        out = fused.rewards.to(rewards.dtype)
        out[torch.isnan(main)] = math.nan  # the main reward does not apply to that row: neither does the fusion
        rewards[:, self.slot_index] = out
        metrics = {}
        # Among the groups the main reward applies to: a group whose rows all have None is not "fused".
        applies = ~torch.isnan(main).view(-1, group_size).all(dim=1)  # (N/G,)
        if applies.any():
            flags = fused.fused_groups.to(applies.device)  # (N/G,)
            metrics[METRIC] = float(flags[applies].float().mean())
            if tasks is not None:  # per-task aux: the same fraction for each task in the batch
                group_tasks = tasks[::group_size]
                for task in sorted(set(group_tasks)):
                    mine = applies & torch.tensor([t == task for t in group_tasks], device=applies.device)
                    if mine.any():
                        metrics[f"{METRIC}/{task}"] = float(flags[mine].float().mean())
        else:
            logger.warning(
                "fusion: the main reward %r applies to no row of this batch (None for every completion): "
                "these groups carry no reward signal",
                self.main,
            )
        # Groups that still give no gradient after fusion (a tie at r_main = 0 stays 0 under eq. 2's product);
        # TRL logs the same for the final weighted reward as `frac_reward_zero_std`.
        fused_std = torch.nan_to_num(out, nan=0.0).view(-1, group_size).std(dim=1)  # (N/G,)
        metrics[ZERO_STD_METRIC] = float((fused_std < 1e-8).float().mean())
        return FusionOutput(rewards, metrics)


def _check_applies(fn, role: str, name: str, task: str) -> None:
    """A reward that declares its tasks (``rewards.RewardFunction.tasks``) returns None on any other task, which
    the fusion reads as 0: mapped to such a task it would zero every fused group of it."""
    fn = getattr(fn, "fn", fn)  # through GuardedReward
    tasks = getattr(fn, "tasks", None)
    if tasks is not None and task not in tasks:
        raise ValueError(f"{role} {name!r} does not apply to task {task!r} (it scores {list(tasks)})")
