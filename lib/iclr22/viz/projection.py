"""2-D projections shared by chapter figures."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def pca_basis(points: Tensor, dims: int = 2) -> tuple[Tensor, Tensor]:
    """Mean (D,) and the top ``dims`` principal directions (D, dims) of points (N, D).

    Exact SVD; each direction's sign is fixed (its largest-magnitude entry is positive), so
    the same points always give the same picture. Project other points with
    ``(x - mean) @ basis``.
    """
    if points.dim() != 2 or points.shape[0] < 2 or not 1 <= dims <= points.shape[1]:
        raise ValueError(f"points must be (N >= 2, D >= dims={dims}), got {tuple(points.shape)}")
    mean = points.mean(0)
    _, _, vh = torch.linalg.svd(points - mean, full_matrices=False)
    basis = vh[:dims].t()
    signs = torch.sign(basis.gather(0, basis.abs().argmax(0, keepdim=True)))
    return mean, basis * signs


def pca_2d(points: Tensor | np.ndarray) -> np.ndarray:
    """The first two principal components of points (N, D), as a NumPy array (N, 2)."""
    points = torch.as_tensor(points)
    mean, basis = pca_basis(points, 2)
    return ((points - mean) @ basis).numpy()
