"""tools/check_html.py on hand-written pages: one good page and each kind of broken page.

No jupyter-book build (too slow): the pages are written here, with the widget JavaScript
packed by ``make`` (``_static_widgets/``) copied next to them. Skipped without Chromium.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import check_html  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
WIDGET_JS = ROOT / "_static_widgets" / "iclr22-js"
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


def page(body: str, head: str = "") -> str:
    """A minimal HTML page."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head>"
            f"<body>{body}</body></html>")


def widget_page(with_state: bool, module: str | None = None, disabled: bool = True,
                head_extra: str = "") -> str:
    """A page with a saved slider + Output widget, as myst-nb renders one.

    module: if given, the box's model claims to come from this (third-party) JS module.
    disabled: whether the saved slider is disabled (an enabled one is a dead control).
    """
    import ipywidgets as widgets
    from ipywidgets.embed import embed_data

    box = widgets.VBox([widgets.IntSlider(value=3, max=10, description="k", disabled=disabled),
                        widgets.HTMLMath(value=r"$\alpha = 1$"), widgets.Output()])
    data = embed_data(views=[box])
    if module:
        data["manager_state"]["state"][box.model_id].update(
            model_module=module, model_module_version="1.0.0")
    state = json.dumps(data["manager_state"]) if with_state else '{"state": {}}'
    view = json.dumps(data["view_specs"][0])
    head = (f'<script type="application/vnd.jupyter.widget-state+json">{state}</script>'
            f"{head_extra}"
            '<script src="iclr22-js/require.js"></script>'
            '<script src="iclr22-js/widgets-config.js"></script>'
            '<script src="iclr22-js/html-manager/embed-amd.js" data-jupyter-widgets-cdn-only=""'
            ' data-jupyter-widgets-cdn="iclr22-js/no-cdn/"></script>')
    body = (f'<div class="cell_output"><script type="application/vnd.jupyter.widget-view+json">'
            f"{view}</script></div>")
    return page(body, head)


SETUP_CODE = ('import sys\nif "google.colab" in sys.modules:\n'
              '    %pip install -q "iclr22 @ git+https://github.com/x/y"\n'
              'from iclr22 import runtime')
BOOK_CSS = ROOT / "_static" / "book.css"
#: pydata-sphinx-theme 0.17's rules for display maths (the cause of the phone clipping).
THEME_MATH_CSS = ("div.math{align-items:center;display:flex;max-width:100%;overflow:hidden;"
                  "flex-direction:row-reverse;gap:.5em}"
                  "div.math mjx-container{flex-grow:1;overflow:auto;padding-bottom:.2rem}")
TAGGED = (r"\[ f^{\rm lin}_w(x) = f_{w_0}(x) + J(x)\,(w - w_0),\qquad "
          r"J(x) = \nabla_w f_w(x)\big|_{w=w_0} \in \mathbb{R}^{K\times P} \tag{eq. 2}\]")


def cell(code: str, folded: bool = False, tags: str = "") -> str:
    """A code cell as myst-nb renders one (``folded``: inside the hide-input toggle)."""
    source = (f'<div class="cell_input docutils container"><div class="highlight"><pre>'
              f"{code}</pre></div></div>")
    if folded:
        source = (f'<details class="admonition hide above-input"><summary>'
                  f"Show code cell source</summary>{source}</details>")
        tags = tags or "tag_hide-input"
    return f'<div class="cell {tags} docutils container">{source}</div>'


def equation(box_style: str) -> str:
    """A display equation 600 px wide inside a box styled ``box_style``."""
    return (f'<div class="math" style="{box_style}"><mjx-container display="true" '
            'style="display:block;min-width:600px;width:600px">wide</mjx-container></div>')


def tagged_equation_page(book_css: bool) -> str:
    """A wide tagged equation typeset by MathJax 3 under the theme's CSS (and ours)."""
    head = (f"<meta name='viewport' content='width=device-width'><style>{THEME_MATH_CSS}</style>"
            + ('<link rel="stylesheet" href="book.css">' if book_css else "")
            + '<script defer src="iclr22-js/mathjax/tex-chtml.js"></script>')
    return page(f'<div class="math notranslate nohighlight">{TAGGED}</div>', head)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Problems found on each page of a small hand-made site, by page name.

    Few pages, each holding several faults, and each rendered only at the widths its faults
    need (Chromium starts are what make this test slow)."""
    site = tmp_path_factory.mktemp("site")
    (site / "img.png").write_bytes(PNG_1PX)
    desktop = {
        "good.html": page('<h1>Good</h1><img src="img.png" alt="ok">'),
        "broken.html": page('<img src="figures/gone.png" alt="gone">'
                            '<img src="img.png" alt="img.png">'
                            "<pre>Traceback (most recent call last):\n  File ...\n"
                            "ZeroDivisionError: division by zero</pre>"
                            '<script src="https://cdn.jsdelivr.net/npm/x/x.js"></script>'),
        "js_errors.html": page("<p>x</p><script>console.error('widget failed')</script>"
                               "<script>Promise.reject(new Error('no Queue'))</script>",
                               "<script>const X_URL = 1;</script>"
                               "<script>const X_URL = 1;</script>"),
        "cells_bad.html": page(cell(SETUP_CODE)
                               + cell("import numpy as np\nfrom iclr22 import viz")
                               + cell("x = load()", tags="tag_hide-input")),
        "cells_good.html": page('<div class="cell tag_remove-input">'
                                '<div class="cell_output">out</div></div>'
                                + cell("import numpy as np", folded=True)
                                + cell("import torch\nloss = (s - t).pow(2).mean()")),
    }
    both = {"equations_clipped.html": page(
        equation("display:flex;flex-direction:row-reverse;overflow:hidden;width:300px")
        + equation("overflow:hidden;width:300px"))}
    phone = {"equation_scrolls.html": page(equation("overflow-x:auto;width:300px"))}
    if WIDGET_JS.is_dir():
        shutil.copytree(WIDGET_JS, site / "iclr22-js")
        shutil.copy(BOOK_CSS, site / "book.css")
        mathjax = ('<script>window.MathJax = {}</script>'
                   '<script defer src="iclr22-js/mathjax/tex-chtml.js"></script>')
        desktop["widget_good.html"] = widget_page(with_state=True, head_extra=mathjax)
        desktop["widget_live_looking.html"] = widget_page(with_state=True, disabled=False)
        desktop["widget_no_state.html"] = widget_page(with_state=False)
        desktop["widget_third_party.html"] = widget_page(with_state=True, module="ipyfoo")
        phone["tagged_equation_theme.html"] = tagged_equation_page(book_css=False)
        phone["tagged_equation_book_css.html"] = tagged_equation_page(book_css=True)
    found = {}
    for group, widths in ((desktop, check_html.WIDTHS[:1]), (both, check_html.WIDTHS),
                          (phone, check_html.WIDTHS[1:])):
        for name, html in group.items():
            (site / name).write_text(html, encoding="utf-8")
        checked = check_html.check_all(site, [site / name for name in group], widths)
        found.update({rel: problems for rel, problems, _ in checked})
    return found


def test_good_page_passes(results):
    assert results["good.html"] == []


def test_missing_image_fails(results):
    assert any("missing image 'figures/gone.png'" in p for p in results["broken.html"])
    assert any("404 for /figures/gone.png" in p for p in results["broken.html"])


def test_traceback_fails(results):
    assert any("traceback" in p for p in results["broken.html"])


def test_non_local_request_fails(results):
    assert any("non-local host" in p and "cdn.jsdelivr.net" in p for p in results["broken.html"])


@pytest.mark.skipif(not WIDGET_JS.is_dir(), reason="run `make install` to pack the widget JS")
def test_saved_widget_renders(results):
    """A saved widget with disabled controls and maths renders, with no JavaScript error
    (the html-manager's MathJax 2 call used to throw "reading 'Queue'" under MathJax 3)."""
    assert results["widget_good.html"] == []


@pytest.mark.skipif(not WIDGET_JS.is_dir(), reason="run `make install` to pack the widget JS")
def test_saved_widget_with_live_looking_controls_fails(results):
    assert any("live-looking controls" in p for p in results["widget_live_looking.html"])


def test_javascript_errors_fail(results):
    problems = results["js_errors.html"]
    assert any("JavaScript error" in p and "already been declared" in p for p in problems)
    assert any("console.error: widget failed" in p for p in problems)
    assert any("unhandled promise rejection: no Queue" in p for p in problems)


def test_alt_text_that_is_the_file_name_fails(results):
    assert any("alt text" in p and "img.png" in p for p in results["broken.html"])
    assert results["good.html"] == []  # alt="ok" is alt text


def test_setup_and_import_cells_must_be_folded(results):
    bad = results["cells_bad.html"]
    assert any("setup cell shows its code" in p for p in bad)
    assert any("import-only cell" in p and "import numpy" in p for p in bad)
    assert any("no closed fold" in p for p in bad)
    assert results["cells_good.html"] == []


def test_clipped_equations_fail_at_both_widths(results):
    clipped = results["equations_clipped.html"]
    for width in ("phone", "desktop"):
        assert any(f"{width} width equation 1" in p and "on the left" in p for p in clipped)
        assert any(f"{width} width equation 2" in p and "on the right" in p for p in clipped)
    assert results["equation_scrolls.html"] == []


@pytest.mark.skipif(not WIDGET_JS.is_dir(), reason="run `make install` to pack the widget JS")
def test_book_css_keeps_tagged_equations_whole_at_phone_width(results):
    """The theme's reversed-flex div.math loses a wide tagged equation's left part at 420 px;
    _static/book.css makes it scroll instead (real MathJax, the theme's own rules)."""
    assert any("phone width" in p and "on the left" in p
               for p in results["tagged_equation_theme.html"])
    assert results["tagged_equation_book_css.html"] == []


@pytest.mark.skipif(not WIDGET_JS.is_dir(), reason="run `make install` to pack the widget JS")
def test_widget_without_state_fails(results):
    assert any("did not render" in p for p in results["widget_no_state.html"])


@pytest.mark.skipif(not WIDGET_JS.is_dir(), reason="run `make install` to pack the widget JS")
def test_widget_from_another_package_fails_without_cdn(results):
    problems = results["widget_third_party.html"]
    assert any("did not render" in p for p in problems)
    assert "404 for /iclr22-js/no-cdn/ipyfoo@1.0.0/dist/index.js" in problems
    assert not any("non-local host" in p for p in problems)


def test_pages_to_check_skips_indexes_and_internals(tmp_path):
    for rel in ["a.html", "sub/b.html", "genindex.html", "search.html", "_static/c.html"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(page(""))
    found = [p.relative_to(tmp_path).as_posix() for p in check_html.pages_to_check(tmp_path)]
    assert found == ["a.html", "sub/b.html"]
