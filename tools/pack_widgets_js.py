"""Pack the JavaScript that renders saved widgets and maths offline: ``pack_widgets_js.py OUTDIR``.

The rendered book has no kernel and must not depend on a CDN. This script installs pinned
versions of ``@jupyter-widgets/html-manager`` (the 1.x line that matches ipywidgets 8.1),
``requirejs`` and ``mathjax`` from the npm registry into a temporary folder and copies only
the files a page needs into ``OUTDIR/iclr22-js/``:

- ``require.js``               AMD loader that ``embed-amd.js`` needs;
- ``widgets-config.js``        tells require.js where the html-manager's fonts live;
- ``html-manager/``            ``embed-amd.js`` (with the base, controls and output widgets
                               built in) and the font files its CSS refers to; its maths
                               typesetting calls are rewritten from the MathJax 2 API
                               (``MathJax.Hub.Queue``, absent in MathJax 3, which threw
                               "Cannot read properties of undefined (reading 'Queue')" on
                               every widget page) to MathJax 3's ``typesetPromise``;
- ``mathjax/``                 ``tex-chtml.js`` and its CHTML fonts, for ``$...$`` maths.

``OUTDIR`` is listed in ``html_static_path`` by ``_config.yml`` (so Sphinx copies it to
``_build/html/_static/``); it is not ``_static/`` itself, since Jupyter Book 1 injects every
``.js`` file found under ``_static/`` into every page. ``OUTDIR/.stamp`` records the versions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

NPM_PACKAGES = {
    "@jupyter-widgets/html-manager": "1.0.15",  # ipywidgets 8.1.x (controls 5.x, output 6.x)
    "requirejs": "2.3.8",
    "mathjax": "3.2.2",
}
BUNDLE = "iclr22-js"
FONT_SUFFIXES = {".woff", ".woff2", ".ttf", ".eot", ".svg"}

# embed-amd.js derives the URL of its icon fonts from the require.js module id
# "@jupyter-widgets/html-manager/dist/...", which require.js resolves relative to the page.
# Map that id to the folder next to this file, so the fonts load from here on every page.
WIDGETS_CONFIG_JS = """\
// Written by tools/pack_widgets_js.py: html-manager assets live next to this file.
(function () {
  var src = document.currentScript && document.currentScript.src;
  if (!src) { return; }
  var base = src.substring(0, src.lastIndexOf("/") + 1) + "html-manager";
  window.__jupyter_widgets_assets_path__ = base + "/";
  if (window.requirejs && window.requirejs.config) {
    window.requirejs.config({paths: {"@jupyter-widgets/html-manager/dist": base}});
  }
})();
"""


def npm_install(prefix: Path) -> Path:
    """Install the pinned packages under ``prefix``; return its ``node_modules`` folder."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("pack_widgets_js: npm not found (Debian: apt install npm)")
    specs = [f"{name}@{version}" for name, version in NPM_PACKAGES.items()]
    cmd = [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save",
           "--prefix", str(prefix), *specs]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pack_widgets_js: `{' '.join(cmd)}` failed:\n{result.stderr}")
    return prefix / "node_modules"


# html-manager 1.x typesets widget labels with MathJax 2; the book loads MathJax 3.
MATHJAX2_CALL = 'MathJax.Hub.Queue(["Typeset",MathJax.Hub,e])'
MATHJAX3_CALL = ("(MathJax.typesetPromise&&MathJax.startup.promise.then(function(){"
                 "return MathJax.typesetPromise([e])}).catch(function(){}))")


def patch_mathjax3(source: str) -> str:
    """``embed-amd.js`` with every MathJax 2 typeset call rewritten for MathJax 3."""
    count = source.count(MATHJAX2_CALL)
    if count == 0 or "MathJax.Hub" in source.replace(MATHJAX2_CALL, ""):
        raise SystemExit("pack_widgets_js: embed-amd.js does not call MathJax.Hub as expected; "
                         "update patch_mathjax3 for this html-manager version")
    return source.replace(MATHJAX2_CALL, MATHJAX3_CALL)


def copy_html_manager(modules: Path, dest: Path) -> None:
    """Copy ``embed-amd.js`` (patched for MathJax 3) and the fonts its CSS refers to."""
    dist = modules / "@jupyter-widgets" / "html-manager" / "dist"
    dest.mkdir(parents=True)
    source = (dist / "embed-amd.js").read_text(encoding="utf-8")
    (dest / "embed-amd.js").write_text(patch_mathjax3(source), encoding="utf-8")
    for path in dist.iterdir():
        if path.suffix in FONT_SUFFIXES:
            shutil.copy2(path, dest / path.name)


def copy_mathjax(modules: Path, dest: Path) -> None:
    """Copy MathJax's ``tex-chtml.js`` and its woff-v2 CHTML fonts."""
    es5 = modules / "mathjax" / "es5"
    dest.mkdir(parents=True)
    shutil.copy2(es5 / "tex-chtml.js", dest / "tex-chtml.js")
    fonts = Path("output") / "chtml" / "fonts" / "woff-v2"
    shutil.copytree(es5 / fonts, dest / fonts)


def installed_version(modules: Path, name: str) -> str:
    """The version npm actually installed for ``name``."""
    return json.loads((modules / name / "package.json").read_text())["version"]


def pack(outdir: Path) -> None:
    """Replace ``outdir/iclr22-js`` with freshly packed files and write ``outdir/.stamp``."""
    bundle = outdir / BUNDLE
    with tempfile.TemporaryDirectory(prefix="pack-widgets-js-") as tmp:
        modules = npm_install(Path(tmp))
        versions = {name: installed_version(modules, name) for name in NPM_PACKAGES}
        if versions != NPM_PACKAGES:
            raise SystemExit(f"pack_widgets_js: npm installed {versions}, expected {NPM_PACKAGES}")
        staging = Path(tmp) / BUNDLE
        staging.mkdir()
        shutil.copy2(modules / "requirejs" / "require.js", staging / "require.js")
        (staging / "widgets-config.js").write_text(WIDGETS_CONFIG_JS)
        copy_html_manager(modules, staging / "html-manager")
        copy_mathjax(modules, staging / "mathjax")
        outdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.copytree(staging, bundle)
    (outdir / ".stamp").write_text(json.dumps(versions, indent=2, sort_keys=True) + "\n")


def main(argv: list[str]) -> int:
    """Command line entry point."""
    if len(argv) != 1:
        print("usage: pack_widgets_js.py OUTDIR", file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    pack(outdir)
    print(f"packed {', '.join(f'{k}@{v}' for k, v in NPM_PACKAGES.items())} into {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
