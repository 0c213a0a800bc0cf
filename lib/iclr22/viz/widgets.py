"""Live ipywidgets view and static flip-book of one draw function (see ``iclr22.viz``)."""

from __future__ import annotations

import base64
import html as html_lib
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
from IPython.display import HTML, display
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure

from . import style

DrawFunction = Callable[[Figure, Any], None]

#: Largest flip-book we embed: check_notebooks.py rejects any single output over 2 MB.
MAX_FLIPBOOK_BYTES = 1_800_000

#: matplotlib's animation controls link Font Awesome from a CDN; the offline page draws the
#: same buttons with Unicode glyphs instead (the selectors beat the icon font's own rules).
_CDN_LINK = re.compile(r"<link[^>]*https?://[^>]*>", re.IGNORECASE)
#: The animation's frame image (matplotlib writes it without alt text).
_ANIM_IMG = re.compile(r'<img (?=id="_anim_img)')
_GLYPHS = {"fa-minus": "\\2212", "fa-fast-backward": "\\23EE", "fa-step-backward": "\\23F4",
           "fa-play": "\\25B6", "fa-pause": "\\23F8", "fa-step-forward": "\\23F5",
           "fa-fast-forward": "\\23ED", "fa-plus": "\\002B"}
_OFFLINE_STYLE = "<style>" + "".join(
    f".anim-buttons i.fa.{name}::before{{content:'{glyph}';font-family:inherit;font-style:normal}}"
    for name, glyph in _GLYPHS.items()
) + ".anim-buttons i.fa-flip-horizontal{display:inline-block;transform:scaleX(-1)}</style>"


def _check_values(values: Sequence[Any], initial: Any) -> list[Any]:
    values = list(values)
    if not values:
        raise ValueError("values must hold at least one slider position")
    if initial is not None and initial not in values:
        raise ValueError(f"initial={initial!r} is not one of the slider values {values}")
    return values


def _label(value: Any) -> str:
    """How a slider value is written, the same in the live slider and the flip-book."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def recording() -> bool:
    """True while ``tools/execute.py`` records a chapter for the book (``ICLR22_RECORD=1``)."""
    return os.environ.get("ICLR22_RECORD") == "1"


def _png_output(fig: Figure) -> dict:
    """A figure as one Jupyter display_data output (PNG)."""
    png = base64.b64encode(style.figure_png(fig)).decode("ascii")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": png, "text/plain": f"<Figure {fig.get_size_inches()}>"}}


def live_view(
    draw: DrawFunction,
    values: Sequence[Any],
    *,
    label: str,
    initial: Any = None,
    figsize: tuple[float, float] | None = None,
) -> widgets.VBox:
    """A slider over ``values`` and an output area redrawn by ``draw(fig, value)``.

    The figure for ``initial`` (default: the first value) is drawn at once. The returned box
    has ``.slider`` and ``.output`` attributes, so tests can drive it headless
    (``view.slider.value = v`` redraws).
    """
    values = _check_values(values, initial)
    figsize = style.check_figsize(figsize or matplotlib.rcParams["figure.figsize"])
    options = [(_label(v), v) for v in values]
    slider = widgets.SelectionSlider(
        options=options, value=values[0] if initial is None else initial,
        description=label, continuous_update=False,
        style={"description_width": "initial"}, layout=widgets.Layout(width="95%"),
    )
    output = widgets.Output()

    def redraw(value: Any) -> None:
        fig = plt.figure(figsize=figsize)
        try:
            draw(fig, value)
            # Set the output area's content directly (not `with output:`), so the redraw
            # works the same in a kernel, in nbclient and in headless tests.
            output.outputs = (_png_output(fig),)
        finally:
            plt.close(fig)

    slider.observe(lambda change: redraw(change["new"]), names="value")
    redraw(slider.value)
    box = widgets.VBox([slider, output])
    box.slider, box.output = slider, output
    return box


def flipbook(
    draw: DrawFunction,
    values: Sequence[Any],
    *,
    label: str | None = None,
    alt: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = style.FLIPBOOK_DPI,
    interval_ms: int = 700,
) -> HTML:
    """The figure over every value of ``values`` as an offline JavaScript animation.

    Frames are PNGs embedded in the HTML, so the page needs no kernel and no network. With a
    ``label``, a caption above the animation names the frames the way the live slider does
    (``label = v0, v1, ...``). ``alt`` is the animation's alt text (what the figure shows;
    by default it names the slider and its values). Raises ``ValueError`` if the result exceeds
    ``MAX_FLIPBOOK_BYTES`` (use fewer values, a smaller ``figsize`` or ``dpi``).
    """
    values = _check_values(values, None)
    figsize = style.check_figsize(figsize or matplotlib.rcParams["figure.figsize"])
    backend = matplotlib.get_backend()
    fig = plt.figure(figsize=figsize, dpi=dpi)
    try:
        def frame(index: int) -> list:
            fig.clear()
            draw(fig, values[index])
            return []

        animation = FuncAnimation(fig, frame, frames=len(values), interval=interval_ms,
                                  blit=False, repeat=False)
        html = animation.to_jshtml(fps=max(1, round(1000 / interval_ms)),
                                   embed_frames=True, default_mode="once")
    finally:
        plt.close(fig)
        matplotlib.use(backend)
    alt = alt or f"Figure drawn for each {label or 'slider value'}: " + _frames(values)
    html = _ANIM_IMG.sub(f'<img alt="{html_lib.escape(alt)}" ', _CDN_LINK.sub("", html))
    html = _OFFLINE_STYLE + _caption(label, values) + html
    if len(html) > MAX_FLIPBOOK_BYTES:
        raise ValueError(
            f"flip-book is {len(html)/1e6:.1f} MB (> {MAX_FLIPBOOK_BYTES/1e6:.1f} MB): "
            "use fewer values, a smaller figsize or a lower dpi"
        )
    return HTML(html)


def _frames(values: list[Any]) -> str:
    return ", ".join(_label(v) for v in values)


def _caption(label: str | None, values: list[Any]) -> str:
    if label is None:
        return ""
    frames = _frames(values)
    return ('<p class="iclr22-flipbook-caption"><em>Flip-book, one frame per slider value '
            f"({html_lib.escape(label)} = {html_lib.escape(frames)}): it plays in this page "
            "without a kernel. Run the notebook (JupyterLab, Colab, Binder) for the live "
            "slider.</em></p>")


def explore(
    draw: DrawFunction,
    values: Sequence[Any],
    *,
    label: str,
    initial: Any = None,
    alt: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = style.FLIPBOOK_DPI,
    static: bool | None = None,
    show: bool = True,
) -> tuple[widgets.VBox | None, HTML | None]:
    """The chapter's widget: the live slider in a kernel, the flip-book in the book.

    This is the one call a chapter makes for its widget. Exactly one view is built and shown:

    * ``static=False`` (a live kernel: JupyterLab, Colab, Binder, nbval): the ipywidgets
      slider and its figure; no flip-book, so no duplicate and no dead copy;
    * ``static=True`` (while ``tools/execute.py`` records the chapter for the book): only
      the flip-book, which plays in the static page; no saved widget state whose slider
      would look live but change nothing.

    ``static=None`` (default) chooses by :func:`recording`. ``alt``: the flip-book's alt text
    (say what the figure shows). Returns ``(view, None)`` or ``(None, flipbook)``.
    """
    _check_values(values, initial)
    if static is None:
        static = recording()
    if static:
        book = flipbook(draw, values, label=label, alt=alt, figsize=figsize, dpi=dpi)
        if show:
            display(book)
        return None, book
    view = live_view(draw, values, label=label, initial=initial, figsize=figsize)
    if show:
        display(view)
    return view, None
