"""tools/pack_widgets_js.py: the html-manager's MathJax 2 calls are rewritten for MathJax 3."""

from __future__ import annotations

from pathlib import Path

import pack_widgets_js  # tools/ is on sys.path (tests/tools/conftest.py)
import pytest

ROOT = Path(__file__).resolve().parents[2]
EMBED = ROOT / "_static_widgets" / "iclr22-js" / "html-manager" / "embed-amd.js"


def test_patch_rewrites_every_mathjax2_call():
    source = ('function t(e,t){void 0!==t&&(e.textContent=t),void 0!==window.MathJax&&'
              + pack_widgets_js.MATHJAX2_CALL + "}" + pack_widgets_js.MATHJAX2_CALL)
    patched = pack_widgets_js.patch_mathjax3(source)
    assert "MathJax.Hub" not in patched
    assert patched.count("MathJax.typesetPromise([e])") == 2


def test_patch_refuses_an_unexpected_html_manager():
    with pytest.raises(SystemExit, match="patch_mathjax3"):
        pack_widgets_js.patch_mathjax3("MathJax.Hub.Queue(['Typeset', MathJax.Hub, el])")
    with pytest.raises(SystemExit):
        pack_widgets_js.patch_mathjax3("no maths here")


@pytest.mark.skipif(not EMBED.is_file(), reason="run `make install` to pack the widget JS")
def test_packed_html_manager_has_no_mathjax2_call():
    assert "MathJax.Hub" not in EMBED.read_text(encoding="utf-8")
