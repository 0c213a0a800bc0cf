"""One figure and table style for the whole book, sized for its text column.

The rendered book's text column is about 784 px wide. A figure of :data:`COLUMN_WIDTH_IN`
inches saved at :data:`DPI` is drawn at (nearly) its own size there, so a font of ``s``
points is ``s * DPI / 72`` px on screen: the sizes below give 14-17 px text. Wider figures
are shrunk by the browser and their text with them; :func:`check_figsize` warns.

:func:`apply` sets the matplotlib rcParams (:data:`BOOK_RC`: size, fonts, mathtext for tick
labels, tight saving, no top/right spines) and the pandas display options (whole numbers
print as whole numbers, nothing truncated). It runs when ``iclr22.viz`` is imported, so
every chapter and every library draw function gets the same look. Helpers the draw
functions call:

* :func:`figure` - a figure of the column's width (or a fraction of it);
* :func:`legend` - a legend placed beside or below the axes, never over the data;
* :func:`fit_title` - an axes title wrapped to the axes' width instead of clipped;
* :func:`show` - display a figure as an image with meaningful alt text;
* :func:`format_number` - ``13767.0 -> "13767"``, ``0.123456 -> "0.1235"``.

Label axes with units and write maths as mathtext: ``ax.set_xlabel(r"$\\theta_i$")``,
``r"$\\partial L_{\\mathrm{LOO}} / \\partial \\alpha_i$"``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import textwrap
import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend

#: Width of the book's text column in inches at :data:`DPI` (about 784 px).
COLUMN_WIDTH_IN = 7.0
#: Default figure height for one row of axes.
DEFAULT_HEIGHT_IN = 4.0
#: Resolution of saved figures (and of the inline backend): 1 pt = DPI / 72 px.
DPI = 110
#: Flip-books store every frame, so they are saved a little coarser.
FLIPBOOK_DPI = 90
#: A figure wider than this is shrunk in the column (its fonts fall under ~12 px).
MAX_WIDTH_IN = 7.5

BOOK_RC: dict[str, Any] = {
    "figure.figsize": (COLUMN_WIDTH_IN, DEFAULT_HEIGHT_IN),
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "figure.constrained_layout.use": False,
    "font.size": 10.0,
    "axes.titlesize": 11.0,
    "axes.titleweight": "normal",
    "axes.labelsize": 10.0,
    "xtick.labelsize": 9.0,
    "ytick.labelsize": 9.0,
    "legend.fontsize": 9.0,
    "legend.title_fontsize": 9.0,
    "legend.frameon": False,
    "figure.titlesize": 12.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "axes.formatter.use_mathtext": True,
    "mathtext.fontset": "dejavusans",
    "lines.linewidth": 1.6,
    "image.cmap": "viridis",
}

PANDAS_OPTIONS: dict[str, Any] = {
    "display.max_colwidth": None,
    "display.max_columns": None,
    "display.width": 120,
}


def format_number(value: float) -> str:
    """A float as a reader expects it: whole numbers without decimals, else 4 significant digits.

    ``13767.0 -> "13767"``, ``0.8512345 -> "0.8512"``, ``12.4 -> "12.4"``, NaN -> ``"nan"``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value)}"
    return f"{value:.4g}"


def apply() -> None:
    """Set the book's matplotlib rcParams and pandas display options (idempotent)."""
    matplotlib.rcParams.update(BOOK_RC)
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency of the book
        return
    for key, value in PANDAS_OPTIONS.items():
        pd.set_option(key, value)
    pd.set_option("display.float_format", format_number)


def check_figsize(figsize: Sequence[float]) -> tuple[float, float]:
    """``figsize`` as a (width, height) tuple; warns when it is wider than the column."""
    if len(figsize) != 2 or not all(isinstance(v, (int, float)) and v > 0 for v in figsize):
        raise ValueError(f"figsize must be (width, height) in inches > 0, got {figsize!r}")
    width, height = float(figsize[0]), float(figsize[1])
    if width > MAX_WIDTH_IN:
        warnings.warn(
            f"figsize width {width:g} in is wider than the book's column "
            f"({COLUMN_WIDTH_IN:g} in): the page shrinks it and its text becomes hard to "
            "read; use fewer panels per row or more rows", stacklevel=3)
    return width, height


def figure(width: float = 1.0, height_in: float = DEFAULT_HEIGHT_IN, **kwargs: Any) -> Figure:
    """A new figure ``width`` x the column wide (0 < width <= 1) and ``height_in`` tall."""
    if not 0 < width <= 1:
        raise ValueError(f"width is a fraction of the column in (0, 1], got {width!r}")
    return plt.figure(figsize=check_figsize((COLUMN_WIDTH_IN * width, height_in)), **kwargs)


def legend(target: Axes | Figure, *, where: str = "right", ncol: int | None = None,
           **kwargs: Any) -> Legend | None:
    """A legend beside (``where="right"``) or below (``"below"``) the axes, off the data.

    ``target``: an Axes (its own handles) or a Figure (the handles of all its axes, once
    per label). Returns the Legend, or None when nothing is labelled.
    """
    if where not in ("right", "below"):
        raise ValueError(f"where must be 'right' or 'below', got {where!r}")
    axes = target.axes if isinstance(target, Figure) else [target]
    handles, labels, seen = [], [], set()
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in seen:
                seen.add(label)
                handles.append(handle)
                labels.append(label)
    if not handles:
        return None
    if where == "right":
        options = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                       ncol=ncol or 1)
    else:
        options = dict(loc="upper center", bbox_to_anchor=(0.5, -0.12), borderaxespad=0.0,
                       ncol=ncol or min(len(handles), 4))
    options.update(kwargs)
    if isinstance(target, Figure):
        if where == "below":
            options["bbox_to_anchor"] = (0.5, 0.0)
        return target.legend(handles, labels, **options)
    return target.legend(handles, labels, **options)


def fit_title(ax: Axes, text: str, **kwargs: Any) -> None:
    """Set an axes title wrapped to the axes' width (thumbnails keep their whole title)."""
    fig = ax.figure
    width_in = ax.get_position().width * fig.get_figwidth()
    size = matplotlib.font_manager.FontProperties(
        size=kwargs.get("fontsize", matplotlib.rcParams["axes.titlesize"])).get_size_in_points()
    # An average DejaVu Sans glyph is about 0.55 em wide.
    chars = max(4, int(width_in * 72 / (0.55 * size)))
    ax.set_title(textwrap.fill(text, width=chars, break_long_words=False), **kwargs)


def figure_png(fig: Figure, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes, saved tight at the book's resolution."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", dpi=dpi or DPI)
    return buffer.getvalue()


def show(fig: Figure, alt: str, *, close: bool = True) -> None:
    """Display ``fig`` as an image whose alt text is ``alt`` (what the figure shows).

    The book renders the HTML ``<img>`` with that alt text (a plain matplotlib output gets
    the image's file name as alt text).
    """
    from IPython.display import HTML, display

    if not isinstance(alt, str) or len(alt.strip()) < 10:
        raise ValueError("alt must describe the figure in words (at least 10 characters)")
    png = base64.b64encode(figure_png(fig)).decode("ascii")
    display(HTML(f'<img src="data:image/png;base64,{png}" alt="{html.escape(alt)}" '
                 'style="max-width:100%">'))
    if close:
        plt.close(fig)
