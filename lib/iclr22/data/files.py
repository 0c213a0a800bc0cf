"""Locate installed data files and verify their checksums."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path


class DataFileError(FileNotFoundError):
    """A dataset file is missing or does not match its recorded sha256."""


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checked_file(path: str | Path, sha256: str, *, install_hint: str) -> Path:
    """Return ``path`` after checking it exists and its sha256 is ``sha256``.

    install_hint: the command that provides the file (e.g. ``"apt-get install wordnet-base"``),
    included in the error so a reader knows how to fix it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path} not found: install it with `{install_hint}`")
    actual = sha256_of(path)
    if actual != sha256:
        raise DataFileError(
            f"{path} has sha256 {actual[:16]}..., expected {sha256[:16]}...: the file is corrupt "
            f"or a different version; reinstall it with `{install_hint}`"
        )
    return path


def package_file(package: str, *parts: str, sha256: str, install_hint: str) -> Path:
    """A checked data file shipped inside an installed Python package."""
    try:
        root = resources.files(package)
    except ModuleNotFoundError as err:
        raise DataFileError(f"package {package!r} is not installed: `{install_hint}`") from err
    return checked_file(Path(str(root.joinpath(*parts))), sha256, install_hint=install_hint)
