"""Batched image operations of Deep AutoAugment's search space, on grey image tensors.

The operation set and magnitude ranges are those of the official DeepAA code for CIFAR
(``aug_op_cifar_list`` in MSU-MLSys-Lab/DeepAA; PIL implementations adapted there from
AutoAugment/RandAugment), with :data:`NUM_LEVELS` = 13 magnitude levels per operation:
level ``m`` in ``0..12`` has the value ``low + m / 12 * (high - low)``.

* Symmetric operations (shear, translate, rotate, contrast, brightness, sharpness) drop the
  middle level ``m = 6``, which is the identity (a shear of 0, an enhancement factor of 1):
  12 levels each.
* Solarize and posterize drop the top level ``m = 12`` (threshold 256, 8 bits: identity).
* Identity, auto-contrast, invert, equalize and the three random operations (horizontal flip
  with probability 1/2, cutout, pad-and-crop) have one level.

On RGB images that gives the paper's 139 (operation, magnitude) candidates per layer. Our
images are grey: **Color** (saturation) leaves a grey image unchanged, so its 12 candidates
would be 12 copies of the identity; it is dropped and a layer has :data:`NUM_CANDIDATES` =
127 candidates. Every other operation acts on grey levels exactly as PIL does on an "L"
image; where PIL uses a colour (cutout's CIFAR-mean grey, the pad colour of the crop) we use
mid grey 128 for cutout and the background 0 for the crop's padding.

All operations take ``x`` of shape (N, 1, H, W), float in [0, 1] on the grey levels
``k / 255`` and a magnitude per image; they run batched on any device (no PIL, no loop over
images). Grey levels are re-quantised to ``k / 255`` after every operation, as PIL's uint8
images are, so that solarize/posterize/equalize see the same levels PIL would. The tests
check parity with PIL for every deterministic operation. kornia 0.9 was measured slower than
plain torch for most of these operations on this machine (issue 23: rotate, equalize,
posterize), so plain torch is used throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CANDIDATE_LEVELS", "CANDIDATE_OPS", "IDENTITY", "NUM_CANDIDATES", "NUM_LEVELS",
           "OPS", "OpSpec", "apply_candidates", "candidate_names", "magnitude_values"]

#: Magnitude levels per operation (the official ``--l_mags 13``).
NUM_LEVELS = 13
_MID = (NUM_LEVELS - 1) // 2


@dataclass(frozen=True)
class OpSpec:
    """One operation: its name, its magnitude range and which level is the identity.

    ``identity_level``: the level dropped from the candidates (``None``: the operation has a
    single candidate, applied at the middle level).
    """

    name: str
    low: float
    high: float
    identity_level: int | None


#: The operation set (official CIFAR list without Color, see the module docstring).
OPS: tuple[OpSpec, ...] = (
    OpSpec("Identity", 0.0, 1.0, None),
    OpSpec("ShearX", -0.3, 0.3, _MID),
    OpSpec("ShearY", -0.3, 0.3, _MID),
    OpSpec("TranslateX", -0.45, 0.45, _MID),
    OpSpec("TranslateY", -0.45, 0.45, _MID),
    OpSpec("Rotate", -30.0, 30.0, _MID),
    OpSpec("AutoContrast", 0.0, 1.0, None),
    OpSpec("Invert", 0.0, 1.0, None),
    OpSpec("Equalize", 0.0, 1.0, None),
    OpSpec("Solarize", 0.0, 256.0, NUM_LEVELS - 1),
    OpSpec("Posterize", 4.0, 8.0, NUM_LEVELS - 1),
    OpSpec("Contrast", 0.1, 1.9, _MID),
    OpSpec("Brightness", 0.1, 1.9, _MID),
    OpSpec("Sharpness", 0.1, 1.9, _MID),
    OpSpec("RandFlip", 0.0, 1.0, None),
    OpSpec("RandCutout", 0.0, 1.0, None),
    OpSpec("RandCrop", 0.0, 1.0, None),
)
OP_INDEX = {op.name: i for i, op in enumerate(OPS)}
IDENTITY = 0  # candidate 0 is the identity


def _candidates() -> tuple[Tensor, Tensor]:
    ops, levels = [], []
    for i, op in enumerate(OPS):
        kept = [_MID] if op.identity_level is None else [
            m for m in range(NUM_LEVELS) if m != op.identity_level]
        ops += [i] * len(kept)
        levels += kept
    return torch.tensor(ops), torch.tensor(levels)


#: Operation index and magnitude level of each candidate: (C,) int64 each, C = 127.
CANDIDATE_OPS, CANDIDATE_LEVELS = _candidates()
NUM_CANDIDATES = len(CANDIDATE_OPS)

_GEOMETRIC = {OP_INDEX[n] for n in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")}
CUTOUT_FRACTION = 0.5   # official: 16 px on 32 px images
CROP_PAD_FRACTION = 1 / 8  # official: pad 4 px on 32 px images, random crop
CUTOUT_FILL = 128 / 255  # mid grey on the uint8 grid


def candidate_names() -> list[str]:
    """A label per candidate, e.g. ``"Rotate 10"`` (degrees), ``"Posterize 5"`` (bits)."""
    values = magnitude_values(CANDIDATE_OPS, CANDIDATE_LEVELS)
    names = []
    for op, value in zip(CANDIDATE_OPS.tolist(), values.tolist(), strict=True):
        spec = OPS[op]
        if spec.identity_level is None:
            names.append(spec.name)
        elif spec.name == "Posterize":
            names.append(f"{spec.name} {int(value)}")
        else:
            sign = "+" if spec.low < 0 else ""
            names.append(f"{spec.name} {value:{sign}.3g}")
    return names


def magnitude_values(op_idx: Tensor, level: Tensor) -> Tensor:
    """The magnitude ``low + level / 12 * (high - low)`` of each (operation, level).

    Shapes: op_idx (N,), level (N,) int64 -> (N,) float32.
    """
    low = torch.tensor([op.low for op in OPS], dtype=torch.float32, device=op_idx.device)
    high = torch.tensor([op.high for op in OPS], dtype=torch.float32, device=op_idx.device)
    return low[op_idx] + level.float() / (NUM_LEVELS - 1) * (high[op_idx] - low[op_idx])


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 1 or not x.is_floating_point():
        raise ValueError(f"x must be a float (N, 1, H, W) grey image tensor, got "
                         f"{getattr(x, 'shape', type(x))}")


def _check_indices(x: Tensor, op_idx: Tensor, level: Tensor) -> None:
    if op_idx.shape != (x.shape[0],) or level.shape != (x.shape[0],):
        raise ValueError(f"op_idx {tuple(op_idx.shape)} and level {tuple(level.shape)} must "
                         f"both be ({x.shape[0]},)")
    if op_idx.numel() and (int(op_idx.min()) < 0 or int(op_idx.max()) >= len(OPS)):
        raise ValueError(f"op_idx must lie in 0..{len(OPS) - 1}")
    if level.numel() and (int(level.min()) < 0 or int(level.max()) >= NUM_LEVELS):
        raise ValueError(f"level must lie in 0..{NUM_LEVELS - 1}")


def _quantise(x: Tensor) -> Tensor:
    """Back onto the uint8 grey levels k / 255 (PIL rounds every result to uint8)."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def _levels(x: Tensor) -> Tensor:
    """Integer grey levels 0..255 of x. Shapes: (N, 1, H, W) -> same, int64."""
    return torch.round(x * 255).long()


# --- geometric operations: one grid_sample for the whole batch ------------------------------


def _affine_matrices(op_idx: Tensor, value: Tensor, height: int, width: int) -> Tensor:
    """PIL's inverse maps (output pixel -> input pixel, pixel-centre coordinates).

    Shapes: op_idx, value (N,) -> (N, 2, 3). ShearX (1, v, 0, 0, 1, 0), ShearY (1, 0, 0, v, 1,
    0) about the top-left corner; TranslateX/Y by v times the width/height; Rotate by v
    degrees counter-clockwise about the centre (PIL ``Image.rotate``).
    """
    n = len(op_idx)
    m = torch.zeros(n, 2, 3, dtype=torch.float32, device=value.device)
    m[:, 0, 0] = 1
    m[:, 1, 1] = 1
    is_op = {name: op_idx == OP_INDEX[name] for name in
             ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")}
    m[:, 0, 1] = torch.where(is_op["ShearX"], value, 0.0)
    m[:, 1, 0] = torch.where(is_op["ShearY"], value, 0.0)
    m[:, 0, 2] = torch.where(is_op["TranslateX"], value * width, 0.0)
    m[:, 1, 2] = torch.where(is_op["TranslateY"], value * height, 0.0)
    rot = is_op["Rotate"]
    if rot.any():
        angle = -value[rot] * math.pi / 180  # PIL: angle = -radians(degrees)
        cos, sin = torch.cos(angle), torch.sin(angle)
        cx, cy = width / 2, height / 2
        r = torch.stack([torch.stack([cos, sin, cx - cos * cx - sin * cy], 1),
                         torch.stack([-sin, cos, cy + sin * cx - cos * cy], 1)], 1)  # (R, 2, 3)
        m[rot] = r
    return m


def _fixed(v: Tensor) -> Tensor:
    """PIL's 16.16 fixed point of a coefficient: floor(v * 65536 + 1/2)."""
    return torch.floor(v.double() * 65536 + 0.5).long()


def warp(x: Tensor, matrices: Tensor) -> Tensor:
    """Nearest-neighbour warp exactly as PIL's affine ``transform``, black outside the image.

    Output pixel (col, row) reads input pixel floor(M (col + 1/2, row + 1/2, 1)), with the
    coefficients of M in PIL's 16.16 fixed point (its nearest-neighbour affine path), so
    ties at half pixels fall the way PIL's do.

    Shapes: x (N, 1, H, W), matrices (N, 2, 3) -> (N, 1, H, W).
    """
    n, _, h, w = x.shape
    a = matrices.double()
    # offsets of the pixel centres: xo = a2 + a0/2 + a1/2 (and yo likewise)
    off = a[:, :, 2] + 0.5 * a[:, :, 0] + 0.5 * a[:, :, 1]           # (N, 2)
    coef, off = _fixed(a[:, :, :2]), _fixed(off)                     # (N, 2, 2), (N, 2)
    cols = torch.arange(w, device=x.device)[None, None, :]            # (1, 1, W)
    rows = torch.arange(h, device=x.device)[None, :, None]            # (1, H, 1)
    src = [(coef[:, k, 0, None, None] * cols + coef[:, k, 1, None, None] * rows
            + off[:, k, None, None]) >> 16 for k in (0, 1)]          # 2 x (N, H, W)
    src_col, src_row = src
    inside = (src_col >= 0) & (src_col < w) & (src_row >= 0) & (src_row < h)
    flat = (src_row.clamp(0, h - 1) * w + src_col.clamp(0, w - 1)).reshape(n, -1)  # (N, H*W)
    picked = x.reshape(n, -1).gather(1, flat).reshape(n, 1, h, w)    # (N, 1, H, W)
    return torch.where(inside[:, None], picked, torch.zeros_like(picked))


# --- point and filter operations ------------------------------------------------------------


def autocontrast(x: Tensor) -> Tensor:
    """PIL ``ImageOps.autocontrast``: stretch [min, max] to [0, 255] with PIL's LUT.

    Shapes: (N, 1, H, W) -> same.
    """
    p = _levels(x)
    lo = p.amin(dim=(1, 2, 3), keepdim=True)
    hi = p.amax(dim=(1, 2, 3), keepdim=True)
    scale = 255.0 / (hi - lo).clamp(min=1)
    stretched = torch.floor(p * scale - lo * scale + 1e-9).clamp(0, 255)  # int(ix*scale+off)
    return torch.where(hi > lo, stretched, p.float()) / 255


def equalize(x: Tensor) -> Tensor:
    """PIL ``ImageOps.equalize``: the histogram-equalising LUT of each image.

    Shapes: (N, 1, H, W) -> same.
    """
    n = x.shape[0]
    p = _levels(x).reshape(n, -1)                              # (N, H*W)
    hist = torch.zeros(n, 256, dtype=torch.long, device=x.device).scatter_add_(
        1, p, torch.ones_like(p))                              # (N, 256)
    last = 255 - torch.flip(hist > 0, dims=[1]).float().argmax(1)  # last non-empty bin
    step = (hist.sum(1) - hist.gather(1, last[:, None]).squeeze(1)) // 255  # (N,)
    before = torch.cumsum(hist, 1) - hist                      # pixels below each level
    safe = step.clamp(min=1)[:, None]
    lut = ((safe // 2 + before) // safe).clamp(max=255)        # (N, 256)
    out = torch.where(step[:, None] > 0, lut.gather(1, p), p)
    return out.reshape(x.shape).float() / 255


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """PIL ``ImageOps.solarize``: invert every grey level >= threshold (0..256).

    Shapes: x (N, 1, H, W), threshold (N,) -> (N, 1, H, W).
    """
    p = _levels(x)
    return torch.where(p >= threshold[:, None, None, None], 255 - p, p).float() / 255


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """PIL ``ImageOps.posterize``: keep the top ``int(bits)`` bits of each grey level.

    Shapes: x (N, 1, H, W), bits (N,) -> (N, 1, H, W).
    """
    shift = (8 - bits.long()).clamp(0, 8)[:, None, None, None]
    return ((_levels(x) >> shift) << shift).float() / 255


def _blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL ``ImageEnhance``: ``degenerate + factor (x - degenerate)`` on the uint8 levels,
    in float32 and truncated, clipped to 0..255 (PIL's ``Image.blend``)."""
    d, p = _levels(degenerate).float(), _levels(x).float()
    out = d + factor.float()[:, None, None, None] * (p - d)
    return torch.floor(out).clamp(0, 255) / 255


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Contrast``: blend with the image's rounded mean grey.

    Shapes: x (N, 1, H, W), factor (N,) -> (N, 1, H, W).
    """
    mean = torch.floor(_levels(x).float().mean(dim=(1, 2, 3), keepdim=True) + 0.5) / 255
    return _blend(mean.expand_as(x), x, factor)


def brightness(x: Tensor, factor: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Brightness``: blend with black. Shapes: as :func:`contrast`."""
    return _blend(torch.zeros_like(x), x, factor)


_SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13


def sharpness(x: Tensor, factor: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Sharpness``: blend with the SMOOTH-filtered image (border kept).

    Shapes: x (N, 1, H, W), factor (N,) -> (N, 1, H, W).
    """
    smooth = _quantise(F.conv2d(x, _SMOOTH.to(x)[None, None], padding=1))
    smooth[:, :, 0, :], smooth[:, :, -1, :] = x[:, :, 0, :], x[:, :, -1, :]
    smooth[:, :, :, 0], smooth[:, :, :, -1] = x[:, :, :, 0], x[:, :, :, -1]
    return _blend(smooth, x, factor)


# --- random operations ----------------------------------------------------------------------


def rand_flip(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Horizontal flip with probability 1/2, per image. Shapes: (N, 1, H, W) -> same."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def rand_cutout(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """A square of side H/2 filled with mid grey, centred uniformly in the image (clipped).

    Shapes: (N, 1, H, W) -> same.
    """
    n, _, h, w = x.shape
    half = int(round(CUTOUT_FRACTION * min(h, w))) // 2
    cy = torch.rand(n, generator=generator, device=x.device) * h
    cx = torch.rand(n, generator=generator, device=x.device) * w
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    y0, y1 = (cy - half).clamp(0, h).long(), (cy + half).clamp(0, h).long()
    x0, x1 = (cx - half).clamp(0, w).long(), (cx + half).clamp(0, w).long()
    box = ((rows >= y0[:, None, None]) & (rows < y1[:, None, None])
           & (cols >= x0[:, None, None]) & (cols < x1[:, None, None]))  # (N, H, W)
    return torch.where(box[:, None], torch.full_like(x, CUTOUT_FILL), x)


def rand_crop_matrices(n: int, height: int, width: int, generator: torch.Generator | None,
                       device: torch.device) -> Tensor:
    """Pad by H/8 (black) and crop back at a uniform integer offset: a shift in -pad..pad.

    Shapes: -> (n, 2, 3) translation matrices for :func:`warp`.
    """
    pad = int(round(CROP_PAD_FRACTION * min(height, width)))
    shift = torch.randint(-pad, pad + 1, (n, 2), generator=generator, device=device).float()
    m = torch.zeros(n, 2, 3, device=device)
    m[:, 0, 0] = m[:, 1, 1] = 1
    m[:, :, 2] = shift
    return m


# --- the dispatcher -------------------------------------------------------------------------


def apply_candidates(x: Tensor, op_idx: Tensor, level: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """Apply operation ``op_idx[j]`` at magnitude level ``level[j]`` to image ``j``.

    Images are grouped by operation, so each operation runs once on all its images (the
    five geometric operations and the crop share one ``grid_sample``). ``generator`` drives
    the random operations (flip, cutout, crop).

    Shapes: x (N, 1, H, W) float in [0, 1]; op_idx, level (N,) int64 -> (N, 1, H, W).
    """
    _check_images(x)
    _check_indices(x, op_idx, level)
    op_idx, level = op_idx.to(x.device), level.to(x.device)
    value = magnitude_values(op_idx, level)
    out = x.clone()
    _, _, h, w = x.shape
    geometric = torch.zeros_like(op_idx, dtype=torch.bool)
    for op in _GEOMETRIC:
        geometric |= op_idx == op
    crop = op_idx == OP_INDEX["RandCrop"]
    moved = geometric | crop
    if moved.any():
        matrices = _affine_matrices(op_idx[moved], value[moved], h, w)       # (M, 2, 3)
        crop_rows = crop[moved]
        if crop_rows.any():
            matrices[crop_rows] = rand_crop_matrices(int(crop_rows.sum()), h, w, generator,
                                                     x.device)
        out[moved] = warp(x[moved], matrices)
    point_ops = {
        "AutoContrast": lambda xs, v: autocontrast(xs),
        "Invert": lambda xs, v: 1 - xs,
        "Equalize": lambda xs, v: equalize(xs),
        "Solarize": solarize,
        "Posterize": posterize,
        "Contrast": contrast,
        "Brightness": brightness,
        "Sharpness": sharpness,
        "RandFlip": lambda xs, v: rand_flip(xs, generator),
        "RandCutout": lambda xs, v: rand_cutout(xs, generator),
    }
    for name, fn in point_ops.items():
        rows = op_idx == OP_INDEX[name]
        if rows.any():
            out[rows] = fn(x[rows], value[rows])
    return out
