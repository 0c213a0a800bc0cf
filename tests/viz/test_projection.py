import numpy as np
import pytest
import torch

from iclr22.viz.projection import pca_2d, pca_basis


def test_pca_recovers_the_dominant_direction_with_a_fixed_sign():
    t = torch.linspace(-3, 3, 50, dtype=torch.float64)
    points = torch.stack([t, 0.01 * torch.cos(7 * t), -2 * t], dim=1)
    mean, basis = pca_basis(points, 2)
    expected = torch.tensor([1.0, 0.0, -2.0], dtype=torch.float64) / 5 ** 0.5
    assert torch.allclose(basis[:, 0].abs(), expected.abs(), atol=1e-6)
    assert basis[:, 0].abs().argmax() == 2 and basis[2, 0] > 0     # sign convention
    assert torch.allclose(basis.T @ basis, torch.eye(2, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(mean, points.mean(0))


def test_pca_2d_is_deterministic_and_accepts_numpy():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(30, 5))
    first, second = pca_2d(points), pca_2d(torch.from_numpy(points.copy()))
    assert first.shape == (30, 2) and np.array_equal(first, second)
    assert np.allclose(first.mean(0), 0, atol=1e-12)


@pytest.mark.parametrize("shape, dims", [((1, 3), 2), ((5, 3), 4), ((5,), 1)])
def test_bad_shapes_are_rejected(shape, dims):
    with pytest.raises(ValueError):
        pca_basis(torch.zeros(shape), dims)
