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


def widget_page(with_state: bool, module: str | None = None) -> str:
    """A page with a saved slider + Output widget, as myst-nb renders one.

    module: if given, the box's model claims to come from this (third-party) JS module.
    """
    import ipywidgets as widgets
    from ipywidgets.embed import embed_data

    box = widgets.VBox([widgets.IntSlider(value=3, max=10, description="k"), widgets.Output()])
    data = embed_data(views=[box])
    if module:
        data["manager_state"]["state"][box.model_id].update(
            model_module=module, model_module_version="1.0.0")
    state = json.dumps(data["manager_state"]) if with_state else '{"state": {}}'
    view = json.dumps(data["view_specs"][0])
    head = (f'<script type="application/vnd.jupyter.widget-state+json">{state}</script>'
            '<script src="iclr22-js/require.js"></script>'
            '<script src="iclr22-js/widgets-config.js"></script>'
            '<script src="iclr22-js/html-manager/embed-amd.js" data-jupyter-widgets-cdn-only=""'
            ' data-jupyter-widgets-cdn="iclr22-js/no-cdn/"></script>')
    body = (f'<div class="cell_output"><script type="application/vnd.jupyter.widget-view+json">'
            f"{view}</script></div>")
    return page(body, head)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Problems found on each page of a small hand-made site, by page name."""
    site = tmp_path_factory.mktemp("site")
    (site / "img.png").write_bytes(PNG_1PX)
    pages = {
        "good.html": page('<h1>Good</h1><img src="img.png" alt="ok">'),
        "missing_image.html": page('<img src="figures/gone.png" alt="gone">'),
        "traceback.html": page("<pre>Traceback (most recent call last):\n  File ...\n"
                               "ZeroDivisionError: division by zero</pre>"),
        "cdn.html": page('<script src="https://cdn.jsdelivr.net/npm/x/x.js"></script>'),
    }
    if WIDGET_JS.is_dir():
        shutil.copytree(WIDGET_JS, site / "iclr22-js")
        pages["widget_good.html"] = widget_page(with_state=True)
        pages["widget_no_state.html"] = widget_page(with_state=False)
        pages["widget_third_party.html"] = widget_page(with_state=True, module="ipyfoo")
    for name, html in pages.items():
        (site / name).write_text(html, encoding="utf-8")
    found = check_html.check_all(site, check_html.pages_to_check(site))
    return {rel: problems for rel, problems, _ in found}


def test_good_page_passes(results):
    assert results["good.html"] == []


def test_missing_image_fails(results):
    assert any("missing image 'figures/gone.png'" in p for p in results["missing_image.html"])
    assert any("404 for /figures/gone.png" in p for p in results["missing_image.html"])


def test_traceback_fails(results):
    assert any("traceback" in p for p in results["traceback.html"])


def test_non_local_request_fails(results):
    assert any("non-local host" in p and "cdn.jsdelivr.net" in p for p in results["cdn.html"])


@pytest.mark.skipif(not WIDGET_JS.is_dir(), reason="run `make install` to pack the widget JS")
def test_saved_widget_renders(results):
    assert results["widget_good.html"] == []


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
