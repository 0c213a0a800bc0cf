"""Widgets, plots and the one figure style shared by the chapters.

Importing ``iclr22.viz`` applies the book's figure and table style (:mod:`.style`: sizes
and fonts for the book's column, mathtext tick labels, whole numbers printed as whole
numbers), so every chapter and every library draw function looks the same.

Every chapter widget is one *draw function* ``draw(fig, value)`` that fills a fresh
matplotlib figure for one value of the widget's main slider. :func:`explore` shows it the
way DESIGN.md section 6 asks, once:

* in a live kernel (JupyterLab, Colab, Binder) :func:`live_view`: an ipywidgets slider and
  an output area, drawn at the initial value straight away;
* in the rendered book (``tools/execute.py`` records with ``ICLR22_RECORD=1``)
  :func:`flipbook`: the same figure over every slider value as a self-contained
  JavaScript animation (matplotlib's ``to_jshtml``) that plays without a kernel.
"""

from . import style
from .style import figure, fit_title, format_number, legend, show
from .widgets import explore, flipbook, live_view, recording

style.apply()

__all__ = ["explore", "figure", "fit_title", "flipbook", "format_number", "legend",
           "live_view", "recording", "show", "style"]
