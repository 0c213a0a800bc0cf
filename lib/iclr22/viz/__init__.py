"""Widgets and plots shared by the chapters.

Every chapter widget is one *draw function* ``draw(fig, value)`` that fills a fresh
matplotlib figure for one value of the widget's main slider. From it, :func:`explore` builds
both views DESIGN.md section 6 asks for:

* :func:`live_view`: an ipywidgets slider and an output area (JupyterLab, Colab), drawn at
  the initial value straight away so the saved notebook shows a meaningful figure;
* :func:`flipbook`: the same figure over every slider value as a self-contained
  JavaScript animation (matplotlib's ``to_jshtml``), which plays in the static book page.
"""

from .widgets import explore, flipbook, live_view

__all__ = ["explore", "flipbook", "live_view"]
