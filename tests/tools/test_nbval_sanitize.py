"""Tests of tools/nbval_sanitize.cfg, parsed the way nbval parses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

CFG = Path(__file__).resolve().parents[2] / "tools" / "nbval_sanitize.cfg"


def sanitize(text: str) -> str:
    """Apply the rules in file order, as nbval does."""
    for regex, replace in get_sanitize_patterns(CFG.read_text(encoding="utf-8")):
        text = re.sub(regex, replace, text)
    return text


def test_every_section_is_a_rule():
    assert len(get_sanitize_patterns(CFG.read_text(encoding="utf-8"))) == 3


@pytest.mark.parametrize(("a", "b"), [
    ("profile=quick  device=cpu (2 cores, x86_64)  torch=2.13.0+cpu",
     "profile=full  device=cuda (NVIDIA H100 80GB HBM3)  torch=2.13.0"),
    ("trained in 12.3 s", "trained in 0.4 s"),
    ("took 1.2s, eval 850 ms", "took 11s, eval 3 ms"),
    ("<Figure at 0x7f3c2a1b5e50>", "<Figure at 0x55d0c0ffee00>"),
])
def test_run_dependent_text_is_equal_after_sanitizing(a, b):
    assert a != b and sanitize(a) == sanitize(b)


@pytest.mark.parametrize("text", ["accuracy 0.912", "5 steps", "x86_64", "100 samples", "0x1F"])
def test_ordinary_numbers_are_kept(text):
    assert sanitize(text) == text
