"""The shared argument checks."""

from dataclasses import dataclass

import numpy as np
import pytest

from iclr22 import checks


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_positive_int_accepts_ints(value):
    checks.positive_int("n", value)


@pytest.mark.parametrize("value", [0, -2, 1.0, "3", True, None])
def test_positive_int_rejects_the_rest_by_name(value):
    with pytest.raises(ValueError, match=r"n must be a positive int, got"):
        checks.positive_int("n", value)


def test_minimum_and_many_names():
    checks.positive_int("seed", 0, minimum=0)
    with pytest.raises(ValueError, match="sample_v must be an int >= 2, got 1"):
        checks.positive_int("sample_v", 1, minimum=2)

    @dataclass
    class Config:
        epochs: int = 3
        batch_size: int = 0

    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        checks.positive_ints(Config(), ("epochs", "batch_size"))
    checks.positive_ints(Config(batch_size=2), ("epochs", "batch_size"))
