"""Variance-gated reward fusion, the advantage-driven adaptive temporal reward of TimePro-RL (§2.2, eq. 2).

For each group of G completions sampled for one prompt::

    R = r_main ⊙ r_aux   if Var(r_main) < eps
    R = r_main           otherwise

``Var`` is the population variance (divide by G, ``ddof=0``) of the group's main rewards; ``eps = 1e-6`` as in
TimePro-RL §3.2. When Eb-F1 (a thresholded, discrete reward) ties across a group, GRPO's group-normalised advantage
vanishes; multiplying by a smooth auxiliary reward (mIoU or METEOR) restores a signal, weighted by ``r_main``.

The fusion needs whole groups, so it runs on rewards already gathered from all processes (in TRL 1.16 a group can
span processes), not inside a per-process reward function. NaN inputs, which TRL uses for "reward does not apply",
are treated as 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["FusedRewards", "variance_gated"]


class FusedRewards(NamedTuple):
    """Fused rewards, shape (N,), and per-group flags, shape (N // G,), True where the product was used."""

    rewards: Any
    fused_groups: Any


def _is_torch_tensor(value: object) -> bool:
    # duck typing keeps torch out of the import graph: only a tensor's own module names it
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def variance_gated(main: Any, aux: Any, group_size: int, eps: float = 1e-6) -> FusedRewards:
    """TimePro-RL eq. 2 over consecutive groups of ``group_size`` rewards (TRL's ``view(-1, num_generations)``).

    ``main`` and ``aux`` are 1-D numpy arrays or torch tensors of length N, a multiple of ``group_size``; the result
    has the type (and, for tensors, the dtype and device) of ``main``. Computed in float64.

    >>> out = variance_gated(np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.9, 0.5, 0.7, 0.2]), group_size=2)
    >>> out.rewards.tolist(), out.fused_groups.tolist()
    ([0.9, 0.5, 0.0, 1.0], [True, False])
    """
    if group_size < 1:
        raise ValueError(f"variance_gated: group_size must be >= 1, got {group_size}")
    as_torch = _is_torch_tensor(main)
    main_np = _to_numpy(main)
    aux_np = _to_numpy(aux)
    if main_np.ndim != 1 or main_np.shape != aux_np.shape:
        raise ValueError(
            f"variance_gated: main and aux must be 1-D of equal length, got {main_np.shape}, {aux_np.shape}"
        )
    if main_np.shape[0] % group_size:
        raise ValueError(f"variance_gated: {main_np.shape[0]} rewards do not split into groups of {group_size}")
    main_g = np.nan_to_num(main_np, nan=0.0).reshape(-1, group_size)  # (N/G, G)
    aux_g = np.nan_to_num(aux_np, nan=0.0).reshape(-1, group_size)  # (N/G, G)
    fused = main_g.var(axis=1) < eps  # (N/G,), population variance
    rewards = np.where(fused[:, None], main_g * aux_g, main_g).reshape(-1)  # (N,)
    if as_torch:
        import torch  # already imported by whoever built the tensor

        return FusedRewards(
            torch.as_tensor(rewards, dtype=main.dtype, device=main.device),
            torch.as_tensor(fused, device=main.device),
        )
    return FusedRewards(rewards, fused)


def _to_numpy(value: Any) -> np.ndarray:
    if _is_torch_tensor(value):
        value = value.detach().to("cpu").double().numpy()
    return np.asarray(value, dtype=np.float64)
