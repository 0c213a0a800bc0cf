"""iclr22.viz.style: the book's one figure and table style."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from iclr22 import viz
from iclr22.viz import style


def test_importing_viz_applies_the_book_style():
    style.apply()
    assert tuple(matplotlib.rcParams["figure.figsize"]) == (style.COLUMN_WIDTH_IN,
                                                             style.DEFAULT_HEIGHT_IN)
    # text of >= 9 pt at 110 dpi is >= 13.75 px in the 784 px column
    assert matplotlib.rcParams["xtick.labelsize"] * style.DPI / 72 >= 13
    assert matplotlib.rcParams["axes.titlesize"] * style.DPI / 72 >= 16
    assert style.COLUMN_WIDTH_IN * style.DPI <= 784
    assert pd.get_option("display.max_colwidth") is None


@pytest.mark.parametrize("value, text", [(13767.0, "13767"), (15, "15"), (0.8512345, "0.8512"),
                                         (12.4, "12.4"), (-3.0, "-3"), (float("nan"), "nan"),
                                         ("x", "x"), (True, "True")])
def test_format_number(value, text):
    assert style.format_number(value) == text


def test_whole_numbers_print_as_whole_numbers_in_tables():
    style.apply()
    table = pd.DataFrame({"nodes": [13767.0, 2.0], "accuracy": [0.851234, 0.5]})
    assert "13767.00" not in table.to_html() and "13767" in table.to_html()
    assert "0.8512" in table.to_string()


def test_legend_beside_axes_is_outside_the_data():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 1], [0, 1], label="a")
    ax.plot([0, 1], [1, 0], label="b")
    leg = style.legend(ax)
    fig.canvas.draw()
    box, axes_box = leg.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= axes_box.x1  # entirely to the right of the axes
    plt.close(fig)


def test_figure_legend_below_collects_labels_once():
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    for ax in axes:
        ax.plot([0, 1], label="same")
    leg = style.legend(fig, where="below")
    assert [t.get_text() for t in leg.get_texts()] == ["same"]
    plt.close(fig)
    with pytest.raises(ValueError):
        style.legend(fig, where="inside")


def test_fit_title_wraps_instead_of_clipping():
    fig, axes = plt.subplots(1, 8, figsize=(7, 1.5))
    style.fit_title(axes[0], "Ankle boot given as Sneaker")
    title = axes[0].get_title()
    assert "\n" in title and title.replace("\n", " ") == "Ankle boot given as Sneaker"
    plt.close(fig)


def test_figure_is_column_wide_and_rejects_bad_width():
    fig = viz.figure(0.5, 3)
    assert fig.get_figwidth() == pytest.approx(style.COLUMN_WIDTH_IN / 2)
    plt.close(fig)
    with pytest.raises(ValueError):
        viz.figure(1.5)


def test_mathtext_labels_render():
    fig, ax = plt.subplots()
    ax.set_xlabel(r"$\theta_i$")
    ax.set_ylabel(r"$\partial L_{\mathrm{LOO}} / \partial \alpha_i$")
    fig.canvas.draw()  # raises on a bad mathtext expression
    plt.close(fig)


def test_show_gives_the_image_alt_text(monkeypatch):
    from iclr22.viz import style as style_module

    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    fig, ax = plt.subplots(figsize=(2, 2))
    style_module.show(fig, "A diagonal line from (0, 0) to (1, 1)")
    assert 'alt="A diagonal line from (0, 0) to (1, 1)"' in shown[0].data
    assert shown[0].data.startswith('<img src="data:image/png;base64,')
    with pytest.raises(ValueError, match="alt"):
        style_module.show(fig, "fig")
