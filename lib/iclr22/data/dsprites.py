"""dSprites {cite:p}`matthey2017dsprites`, re-rendered procedurally on its exact factor grid.

Source:  no package ships DeepMind's ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` and
         nothing may be downloaded at run time, so this module *regenerates* the dataset
         from its published definition (README of deepmind/dsprites-dataset): one white
         sprite on a black 64 x 64 canvas, five factors on a full Cartesian grid

         ======  ===========  =======================================================
         index   factor       values
         ======  ===========  =======================================================
         0       shape        square, ellipse, heart (3)
         1       scale        6 values linearly spaced in [0.5, 1]
         2       orientation  40 values linearly spaced in [0, 2 pi] (so 39 == 0)
         3       x-position   32 values linearly spaced in [0, 1]
         4       y-position   32 values linearly spaced in [0, 1]
         ======  ===========  =======================================================

         3 x 6 x 40 x 32 x 32 = 737,280 images, in the original order (shape varies
         slowest, y-position fastest), so a flat index means the same factors as in the
         original file.
Licence: the definition is DeepMind's (dataset under Apache-2.0); this renderer is ours.
Size:    nothing is stored: 720 centred sprites (shape x scale x orientation) are drawn once
         and pasted at the 32 x 32 positions on demand, for any set of flat indices.

What is and is not the original. The factor grid, the canvas, binary pixels and the ordering
are exactly dSprites'. The pixels are *not* bit-identical to DeepMind's file (its rasteriser
and sprite outlines are not published): our square has side ``20 * scale`` px, our ellipse
semi-axes ``(10, 5) * scale`` px, our heart is the classic parametric heart scaled to a width
of ``20 * scale`` px; a pixel is on when its centre lies inside the rotated shape (rotation
counter-clockwise on screen); position ``(x, y)`` moves the sprite's centre over 32 columns
and 32 rows, one pixel per step, from canvas coordinate 16 to 47 (a pixel boundary, so the
unrotated square covers exactly ``20 * scale`` pixels a side; rows grow downwards), and every
sprite stays wholly on the canvas as in the original. Label this data *simulated from
dSprites' definition* wherever it is used.

32-pixel images. ``render(..., size=32)`` gives the 64-pixel image averaged over 2 x 2 blocks
(grey levels 0, 1/4, ..., 1). It is computed directly from four *sub-pixel phase* banks of
the 720 sprites (the parity of the x and y shifts), which is identical to rendering at 64 px
and pooling, but 4 x cheaper in memory: the whole dataset is 0.75 GB at 32 px as uint8
quarters, 2.9 GB at 64 px as bool (0.36 GB with ``np.packbits``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from matplotlib.path import Path as PolygonPath

FACTOR_NAMES = ("shape", "scale", "orientation", "x-position", "y-position")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
NUM_IMAGES = int(np.prod(FACTOR_SIZES))  # 737,280
CANVAS = 64
PATCH = 32           # a centred sprite lives on a 32 x 32 patch of the 64 x 64 canvas
PATCH_CENTRE = 16.0  # sprite centre inside its patch (pixel k covers [k, k + 1])
HALF_SIZE = 10.0     # half the square's side (and the heart's half width) at scale 1, in px
SIZES = (64, 32)

#: The factor values of dSprites, in grid order (shape as 0, 1, 2 as in the original file's
#: ``latents_values``: there 1, 2, 3).
FACTOR_VALUES = (
    np.arange(3, dtype=np.float64),
    np.linspace(0.5, 1.0, 6),
    np.linspace(0.0, 2 * math.pi, 40),
    np.linspace(0.0, 1.0, 32),
    np.linspace(0.0, 1.0, 32),
)


def _check_indices(indices) -> np.ndarray:
    array = np.asarray(indices)
    if array.ndim != 1:
        raise ValueError(f"indices must be a 1-d array of flat dSprites indices, got shape "
                         f"{array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"indices must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= NUM_IMAGES):
        raise ValueError(f"indices must lie in [0, {NUM_IMAGES}), got range "
                         f"[{array.min()}, {array.max()}]")
    return array


def _check_size(size: int) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be 64 (the original) or 32 (2 x 2 pooled), got {size!r}")


def factor_indices(indices) -> np.ndarray:
    """Factor indices of flat dSprites indices. Shapes: (N,) -> (N, 5) int64 (grid order)."""
    flat = _check_indices(indices)
    return np.stack(np.unravel_index(flat, FACTOR_SIZES), axis=1).astype(np.int64)


def flat_indices(factors) -> np.ndarray:
    """Inverse of :func:`factor_indices`. Shapes: (N, 5) int -> (N,) int64."""
    array = np.asarray(factors)
    if array.ndim != 2 or array.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factors must be (N, 5), got shape {array.shape}")
    if np.any(array < 0) or np.any(array >= np.asarray(FACTOR_SIZES)):
        raise ValueError(f"factor indices must lie below {FACTOR_SIZES}")
    return np.ravel_multi_index(tuple(array.T), FACTOR_SIZES).astype(np.int64)


def factor_values(indices) -> np.ndarray:
    """The factors' values (shape id, scale, angle in rad, x, y). Shapes: (N,) -> (N, 5)."""
    idx = factor_indices(indices)
    return np.stack([FACTOR_VALUES[k][idx[:, k]] for k in range(len(FACTOR_SIZES))], axis=1)


def _heart_outline(num_points: int = 400) -> np.ndarray:
    """The parametric heart, centred on its bounding box and scaled to width 2. (P, 2)."""
    t = np.linspace(0.0, 2 * math.pi, num_points, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    xy = np.stack([x, -y], axis=1)  # screen rows grow downwards: lobes up, point down
    xy -= (xy.max(axis=0) + xy.min(axis=0)) / 2
    return xy / (xy[:, 0].max())


def sprite(shape: int, scale: float, orientation: float) -> np.ndarray:
    """One centred sprite on a 32 x 32 patch. Shapes: -> (32, 32) bool.

    A pixel is on when its centre, rotated back by ``orientation`` about the patch centre,
    lies inside the unrotated shape of half size ``HALF_SIZE * scale``.
    """
    if shape not in (0, 1, 2):
        raise ValueError(f"shape must be 0 (square), 1 (ellipse) or 2 (heart), got {shape!r}")
    centres = np.arange(PATCH) + 0.5 - PATCH_CENTRE
    cols, rows = np.meshgrid(centres, centres)  # (32, 32) each: x right, y down
    c, s = math.cos(orientation), math.sin(orientation)
    # Counter-clockwise on screen (y down) by theta: undo it on the sample points.
    u = c * cols - s * rows
    v = s * cols + c * rows
    h = HALF_SIZE * scale
    if shape == 0:
        return (np.abs(u) <= h) & (np.abs(v) <= h)
    if shape == 1:
        return (u / h) ** 2 + (v / (h / 2)) ** 2 <= 1.0
    outline = PolygonPath(_heart_outline() * h)
    inside = outline.contains_points(np.stack([u.ravel(), v.ravel()], axis=1))
    return inside.reshape(PATCH, PATCH)


@lru_cache(maxsize=1)
def sprite_bank() -> np.ndarray:
    """All 720 centred sprites in grid order. Shapes: -> (3, 6, 40, 32, 32) bool (read-only)."""
    bank = np.zeros(FACTOR_SIZES[:3] + (PATCH, PATCH), dtype=bool)
    for shape in range(3):
        for i, scale in enumerate(FACTOR_VALUES[1]):
            for j, angle in enumerate(FACTOR_VALUES[2]):
                bank[shape, i, j] = sprite(shape, float(scale), float(angle))
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=1)
def _phase_bank() -> np.ndarray:
    """2 x 2 block sums of every sprite for both parities of its x and y shift.

    Shapes: -> (720, 2, 2, 17, 17) uint8 in 0..4, [sprite, y parity, x parity, row, col].
    """
    bank = sprite_bank().reshape(-1, PATCH, PATCH)
    out = np.zeros((bank.shape[0], 2, 2, PATCH // 2 + 1, PATCH // 2 + 1), dtype=np.uint8)
    for py in range(2):
        for px in range(2):
            padded = np.zeros((bank.shape[0], PATCH + 2, PATCH + 2), dtype=np.uint8)
            padded[:, py:py + PATCH, px:px + PATCH] = bank
            # (720, 34, 34) -> (720, 17, 2, 17, 2) -> sum over each 2 x 2 block
            blocks = padded.reshape(bank.shape[0], PATCH // 2 + 1, 2, PATCH // 2 + 1, 2)
            out[:, py, px] = blocks.sum(axis=(2, 4))
    out.setflags(write=False)
    return out


def render(indices, size: int = 64) -> np.ndarray:
    """Images of flat dSprites indices.

    Shapes: (N,) -> (N, 64, 64) bool for ``size=64``; (N, 32, 32) float32 in
    {0, 0.25, 0.5, 0.75, 1} for ``size=32`` (the 64-pixel image averaged over 2 x 2 blocks).
    """
    _check_size(size)
    idx = factor_indices(indices)
    num = len(idx)
    sprite_id = np.ravel_multi_index(tuple(idx[:, :3].T), FACTOR_SIZES[:3])
    x, y = idx[:, 3], idx[:, 4]
    n = np.arange(num)[:, None, None]
    if size == 64:
        out = np.zeros((num, CANVAS, CANVAS), dtype=bool)
        r = np.arange(PATCH)[None, :, None]
        c = np.arange(PATCH)[None, None, :]
        bank = sprite_bank().reshape(-1, PATCH, PATCH)
        # canvas[n, y + r, x + c] = sprite[n, r, c]   (N, 32, 32) scatter
        out[n, y[:, None, None] + r, x[:, None, None] + c] = bank[sprite_id]
        return out
    half = PATCH // 2 + 1
    out = np.zeros((num, CANVAS // 2, CANVAS // 2), dtype=np.float32)
    r = np.arange(half)[None, :, None]
    c = np.arange(half)[None, None, :]
    blocks = _phase_bank()[sprite_id, y % 2, x % 2]          # (N, 17, 17) block sums
    out[n, (y // 2)[:, None, None] + r, (x // 2)[:, None, None] + c] = blocks / 4.0
    return out


def pool2(images: np.ndarray) -> np.ndarray:
    """Average 2 x 2 blocks. Shapes: (N, 64, 64) -> (N, 32, 32) float32."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] % 2 or images.shape[2] % 2:
        raise ValueError(f"images must be (N, H, W) with even H and W, got {images.shape}")
    num, height, width = images.shape
    # (N, H, W) -> (N, H/2, 2, W/2, 2) -> mean over each block
    blocks = images.reshape(num, height // 2, 2, width // 2, 2).astype(np.float32)
    return blocks.mean(axis=(2, 4))


def render_all(size: int = 32, chunk: int = 65_536) -> np.ndarray:
    """The whole dataset. Shapes: -> (737280, 32, 32) uint8 quarters (0..4) for ``size=32``
    (0.75 GB), or (737280, 64, 8) uint8 ``np.packbits`` rows for ``size=64`` (0.36 GB)."""
    _check_size(size)
    width = CANVAS // 8 if size == 64 else size
    out = np.zeros((NUM_IMAGES, size, width), dtype=np.uint8)
    for start in range(0, NUM_IMAGES, chunk):
        stop = min(start + chunk, NUM_IMAGES)
        images = render(np.arange(start, stop), size)
        out[start:stop] = np.packbits(images, axis=2) if size == 64 else np.rint(images * 4)
    return out
