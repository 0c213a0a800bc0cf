"""dSprites renderer: the factor grid and ordering, the shapes' areas and symmetries, positions,
the 32-pixel phase banks against 2 x 2 pooling, bad input and determinism."""

import math

import numpy as np
import pytest

from iclr22.data import dsprites as ds

RNG = np.random.default_rng(0)
SAMPLE = np.sort(RNG.choice(ds.NUM_IMAGES, 3000, replace=False))


def test_factor_grid_is_dsprites():
    assert ds.FACTOR_SIZES == (3, 6, 40, 32, 32)
    assert ds.NUM_IMAGES == 737_280
    assert ds.SHAPE_NAMES == ("square", "ellipse", "heart")
    np.testing.assert_allclose(ds.FACTOR_VALUES[1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    orientation = ds.FACTOR_VALUES[2]
    assert len(orientation) == 40 and orientation[0] == 0
    assert orientation[-1] == pytest.approx(2 * math.pi)
    for k in (3, 4):
        assert len(ds.FACTOR_VALUES[k]) == 32
        assert ds.FACTOR_VALUES[k][0] == 0 and ds.FACTOR_VALUES[k][-1] == 1


def test_ordering_is_the_original_files():
    """Shape varies slowest, y-position fastest (dSprites' README)."""
    np.testing.assert_array_equal(ds.factor_indices([0, 1, 32, 32 * 32, 737_279]),
                                  [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0],
                                   [0, 0, 1, 0, 0], [2, 5, 39, 31, 31]])
    factors = ds.factor_indices(SAMPLE)
    np.testing.assert_array_equal(ds.flat_indices(factors), SAMPLE)
    values = ds.factor_values([737_279])[0]
    np.testing.assert_allclose(values, [2, 1.0, 2 * math.pi, 1.0, 1.0])


def test_images_are_binary_64px_and_stay_on_the_canvas():
    images = ds.render(SAMPLE)
    assert images.shape == (len(SAMPLE), 64, 64) and images.dtype == bool
    assert images.reshape(len(SAMPLE), -1).any(axis=1).all()       # one sprite each
    assert not images[:, :2].any() and not images[:, -2:].any()    # never touches the border
    assert not images[:, :, :2].any() and not images[:, :, -2:].any()


def test_translation_only_moves_the_sprite():
    """Pixel count depends on (shape, scale, orientation) only; the centroid of the point-
    symmetric square and ellipse is the position: canvas coordinate 16 + index."""
    factors = ds.factor_indices(SAMPLE)
    images = ds.render(SAMPLE)
    bank = ds.sprite_bank()
    counts = images.sum(axis=(1, 2))
    np.testing.assert_array_equal(counts, bank[tuple(factors[:, :3].T)].sum(axis=(1, 2)))
    symmetric = factors[:, 0] < 2
    rows, cols = np.arange(64) + 0.5, np.arange(64) + 0.5
    cx = (images.sum(axis=1) * cols).sum(axis=1) / counts
    cy = (images.sum(axis=2) * rows).sum(axis=1) / counts
    np.testing.assert_allclose(cx[symmetric], 16 + factors[symmetric, 3], atol=1e-9)
    np.testing.assert_allclose(cy[symmetric], 16 + factors[symmetric, 4], atol=1e-9)


@pytest.mark.parametrize("shape, area", [(0, 20.0 ** 2), (1, math.pi * 10 * 5)])
def test_areas_match_the_shapes(shape, area):
    """Square side 20 * scale, ellipse semi-axes (10, 5) * scale: pixel counts within 8 %
    of the area at every scale and orientation, growing as scale^2."""
    bank = ds.sprite_bank()
    for i, scale in enumerate(ds.FACTOR_VALUES[1]):
        counts = bank[shape, i].sum(axis=(1, 2))
        np.testing.assert_allclose(counts, area * scale ** 2, rtol=0.1 if i > 1 else 0.2)


def test_heart_is_a_heart():
    heart = ds.sprite(2, 1.0, 0.0)
    cols = np.flatnonzero(heart.any(axis=0))
    assert cols.max() - cols.min() + 1 == 20                          # width 20 px at scale 1
    np.testing.assert_array_equal(heart, heart[:, ::-1])           # mirror symmetric
    top, bottom = np.flatnonzero(heart.any(axis=1))[[0, -1]]
    assert heart[top].sum() < heart[top + 4].sum()                    # lobes widen downward
    assert heart[bottom].sum() <= 2                                   # and it ends in a point


def test_orientation_wraps_and_rotates_counter_clockwise():
    bank = ds.sprite_bank()
    np.testing.assert_array_equal(bank[:, :, 39], bank[:, :, 0])      # 2 pi == 0
    ellipse = ds.sprite(1, 1.0, math.pi / 2)
    rows, cols = np.flatnonzero(ellipse.any(axis=1)), np.flatnonzero(ellipse.any(axis=0))
    assert len(rows) > 1.8 * len(cols)                                # now upright
    tilted = ds.sprite(1, 1.0, math.pi / 4)
    # counter-clockwise on screen: the long axis points to the upper right
    assert tilted[16 - 6, 16 + 5] and not tilted[16 - 6, 16 - 7]


def test_32px_phase_banks_equal_pooling_the_64px_images():
    small = ds.render(SAMPLE, size=32)
    assert small.shape == (len(SAMPLE), 32, 32) and small.dtype == np.float32
    np.testing.assert_array_equal(small, ds.pool2(ds.render(SAMPLE, size=64)))
    assert set(np.unique(small)) <= {0.0, 0.25, 0.5, 0.75, 1.0}


def test_deterministic_and_read_only():
    np.testing.assert_array_equal(ds.render(SAMPLE[:50]), ds.render(SAMPLE[:50]))
    with pytest.raises(ValueError):
        ds.sprite_bank()[0, 0, 0, 0, 0] = True


def test_bad_input():
    with pytest.raises(ValueError, match="737280"):
        ds.render([ds.NUM_IMAGES])
    with pytest.raises(ValueError):
        ds.render([-1])
    with pytest.raises(TypeError, match="integers"):
        ds.render([0.5])
    with pytest.raises(ValueError, match="1-d"):
        ds.render([[0, 1]])
    with pytest.raises(ValueError, match="size"):
        ds.render([0], size=48)
    with pytest.raises(ValueError, match="shape"):
        ds.sprite(3, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        ds.flat_indices([[0, 0, 0]])
    with pytest.raises(ValueError, match="below"):
        ds.flat_indices([[0, 6, 0, 0, 0]])
    with pytest.raises(ValueError, match="even"):
        ds.pool2(np.zeros((1, 3, 4)))


def test_empty_indices_render_nothing():
    assert ds.render(np.array([], dtype=np.int64)).shape == (0, 64, 64)


@pytest.mark.slow
def test_render_all_fits_in_memory():
    everything = ds.render_all(size=32)
    assert everything.shape == (ds.NUM_IMAGES, 32, 32) and everything.max() == 4
