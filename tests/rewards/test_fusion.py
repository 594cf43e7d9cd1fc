"""Variance-gated fusion, TimePro-RL eq. 2: R = r_main * r_aux if Var(r_main) < eps else r_main, per group."""

import numpy as np
import pytest
import torch

from rewards.fusion import variance_gated


def test_tied_group_uses_the_product_and_varied_group_keeps_main():
    main = np.array([0.5, 0.5, 0.5, 0.0, 1.0, 0.5])
    aux = np.array([0.2, 0.4, 0.6, 0.9, 0.8, 0.7])
    out = variance_gated(main, aux, group_size=3)
    np.testing.assert_allclose(out.rewards, [0.1, 0.2, 0.3, 0.0, 1.0, 0.5])
    assert out.fused_groups.tolist() == [True, False]


def test_population_variance_decides_at_the_threshold():
    # group [0, d]: population variance d^2 / 4 (the sample variance would be d^2 / 2)
    d = 2e-3  # population variance 1e-6 exactly at eps: not < eps, so main is kept
    eps = (d**2) / 4
    assert variance_gated(np.array([0.0, d]), np.array([0.5, 0.5]), 2, eps=eps).fused_groups.tolist() == [False]
    assert variance_gated(np.array([0.0, d]), np.array([0.5, 0.5]), 2, eps=eps * 1.01).fused_groups.tolist() == [True]
    # with the sample variance (d^2 / 2 = 2 eps) the second call would not fuse: it does, so ddof = 0
    assert (d**2) / 2 > eps * 1.01


def test_nan_inputs_count_as_zero():
    main = np.array([np.nan, 1.0, np.nan, np.nan])
    aux = np.array([0.5, np.nan, 0.3, 0.2])
    out = variance_gated(main, aux, group_size=2)
    # group 1: main [0, 1] varies -> [0, 1]; group 2: main [0, 0] ties -> 0 * aux = [0, 0]
    np.testing.assert_array_equal(out.rewards, [0.0, 1.0, 0.0, 0.0])
    assert out.fused_groups.tolist() == [False, True]
    assert np.isfinite(out.rewards).all()


def test_torch_tensors_in_torch_tensors_out():
    main = torch.tensor([1.0, 1.0, 0.2, 0.8], dtype=torch.float32)
    aux = torch.tensor([0.5, 0.25, 0.9, 0.9], dtype=torch.float32)
    out = variance_gated(main, aux, group_size=2)
    assert isinstance(out.rewards, torch.Tensor) and out.rewards.dtype == torch.float32
    assert torch.allclose(out.rewards, torch.tensor([0.5, 0.25, 0.2, 0.8]))
    assert out.fused_groups.tolist() == [True, False]


def test_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    main = rng.choice([0.0, 0.5, 1.0], size=64)
    aux = rng.uniform(size=64)
    as_numpy = variance_gated(main, aux, group_size=4)
    as_torch = variance_gated(torch.from_numpy(main), torch.from_numpy(aux), group_size=4)
    np.testing.assert_array_equal(as_numpy.rewards, as_torch.rewards.numpy())
    np.testing.assert_array_equal(as_numpy.fused_groups, as_torch.fused_groups.numpy())


@pytest.mark.parametrize(
    "main, aux, group_size",
    [(np.zeros(5), np.zeros(5), 2), (np.zeros(4), np.zeros(3), 2), (np.zeros(4), np.zeros(4), 0)],
)
def test_shape_errors(main, aux, group_size):
    with pytest.raises(ValueError):
        variance_gated(main, aux, group_size)
