"""Tests of the batched DeepAA operations: the search space, PIL parity, random ops, errors."""

from __future__ import annotations

import numpy as np
import PIL.Image as Image
import PIL.ImageEnhance as ImageEnhance
import PIL.ImageOps as ImageOps
import pytest
import torch

from iclr22.augmentation import ops
from iclr22.data.fashion_mnist import load_fashion_mnist


@pytest.fixture(scope="module")
def images():
    data = load_fashion_mnist("test")
    raw = data.images[:16]
    return raw, torch.from_numpy(raw.astype(np.float32) / 255)[:, None]


def _pil(name: str, value: float, img: Image.Image) -> Image.Image:
    w, h = img.size
    affine = {"ShearX": (1, value, 0, 0, 1, 0), "ShearY": (1, 0, 0, value, 1, 0),
              "TranslateX": (1, 0, value * w, 0, 1, 0), "TranslateY": (1, 0, 0, 0, 1, value * h)}
    if name in affine:
        return img.transform(img.size, Image.AFFINE, affine[name])
    table = {"Identity": lambda: img, "Rotate": lambda: img.rotate(value),
             "AutoContrast": lambda: ImageOps.autocontrast(img),
             "Invert": lambda: ImageOps.invert(img), "Equalize": lambda: ImageOps.equalize(img),
             "Solarize": lambda: ImageOps.solarize(img, value),
             "Posterize": lambda: ImageOps.posterize(img, int(value)),
             "Contrast": lambda: ImageEnhance.Contrast(img).enhance(value),
             "Brightness": lambda: ImageEnhance.Brightness(img).enhance(value),
             "Sharpness": lambda: ImageEnhance.Sharpness(img).enhance(value)}
    return table[name]()


def test_search_space_has_127_grey_candidates():
    names = [op.name for op in ops.OPS]
    assert "Color" not in names and len(names) == 17
    assert ops.NUM_CANDIDATES == 127 == 8 * 12 + 2 * 12 + 7  # RGB: + 12 Color = 139
    counts = torch.bincount(ops.CANDIDATE_OPS, minlength=len(names)).tolist()
    per_op = dict(zip(names, counts, strict=True))
    assert per_op["Rotate"] == 12 and per_op["Invert"] == 1
    assert ops.CANDIDATE_OPS[ops.IDENTITY] == 0
    rotate = ops.CANDIDATE_OPS == ops.OP_INDEX["Rotate"]
    assert 6 not in ops.CANDIDATE_LEVELS[rotate].tolist()  # level 6 = 0 degrees, dropped
    solarize = ops.CANDIDATE_OPS == ops.OP_INDEX["Solarize"]
    assert 12 not in ops.CANDIDATE_LEVELS[solarize].tolist()  # threshold 256 = identity


def test_magnitude_values_closed_form():
    op = torch.tensor([ops.OP_INDEX["Rotate"]] * 3 + [ops.OP_INDEX["Posterize"]])
    level = torch.tensor([0, 9, 12, 3])
    assert ops.magnitude_values(op, level).tolist() == pytest.approx([-30, 15, 30, 5])
    assert len(ops.candidate_names()) == ops.NUM_CANDIDATES


def test_every_deterministic_candidate_matches_pil_exactly(images):
    raw, x = images
    values = ops.magnitude_values(ops.CANDIDATE_OPS, ops.CANDIDATE_LEVELS)
    for c in range(ops.NUM_CANDIDATES):
        name = ops.OPS[int(ops.CANDIDATE_OPS[c])].name
        if name.startswith("Rand"):
            continue
        ours = ops.apply_candidates(x, ops.CANDIDATE_OPS[c].repeat(len(x)),
                                    ops.CANDIDATE_LEVELS[c].repeat(len(x)))
        ref = np.stack([np.asarray(_pil(name, float(values[c]), Image.fromarray(a, "L")))
                        for a in raw])
        assert torch.equal(torch.round(ours[:, 0] * 255).to(torch.uint8),
                           torch.from_numpy(ref)), f"{name} at {float(values[c])}"


def _run(x, name, generator):
    n = len(x)
    return ops.apply_candidates(x, torch.full((n,), ops.OP_INDEX[name]),
                                torch.full((n,), 6), generator)


def test_random_flip_flips_about_half(images):
    _, x = images
    x = x.repeat(25, 1, 1, 1)
    out = _run(x, "RandFlip", torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert 0.35 < float((flipped & ~same).float().mean()) < 0.65


def test_random_crop_is_a_zero_filled_shift_within_the_pad(images):
    _, x = images
    out = _run(x, "RandCrop", torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(9) for dx in range(9)
                   if torch.equal(padded[i, :, dy:dy + 28, dx:dx + 28], out[i])]
        assert matches, f"image {i} is not a shift of the input"


def test_random_cutout_paints_one_grey_square(images):
    _, x = images
    out = _run(x, "RandCutout", torch.Generator().manual_seed(2))
    changed = out != x
    assert bool((out[changed] == ops.CUTOUT_FILL).all())
    rows = changed.any(3).sum((1, 2))
    cols = changed.any(2).sum((1, 2))
    assert int(rows.max()) <= 14 and int(cols.max()) <= 14


def test_outputs_stay_on_the_uint8_grid_and_are_deterministic(images):
    _, x = images
    n = ops.NUM_CANDIDATES
    xs = x[torch.arange(n) % len(x)]
    a = ops.apply_candidates(xs, ops.CANDIDATE_OPS, ops.CANDIDATE_LEVELS,
                             torch.Generator().manual_seed(3))
    b = ops.apply_candidates(xs, ops.CANDIDATE_OPS, ops.CANDIDATE_LEVELS,
                             torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.allclose(a * 255, torch.round(a * 255), atol=1e-4)
    ident = ops.apply_candidates(x, torch.zeros(len(x), dtype=torch.long),
                                 torch.full((len(x),), 6))
    assert torch.equal(ident, x)


def test_bad_inputs_raise_clear_errors(images):
    _, x = images
    n = len(x)
    ok_op, ok_level = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    with pytest.raises(ValueError, match="grey image"):
        ops.apply_candidates(x[:, 0], ok_op, ok_level)
    with pytest.raises(ValueError, match="grey image"):
        ops.apply_candidates(x.repeat(1, 3, 1, 1), ok_op, ok_level)
    with pytest.raises(ValueError, match="must both be"):
        ops.apply_candidates(x, ok_op[:-1], ok_level)
    with pytest.raises(ValueError, match="op_idx"):
        ops.apply_candidates(x, ok_op + 17, ok_level)
    with pytest.raises(ValueError, match="level"):
        ops.apply_candidates(x, ok_op, ok_level + 13)
