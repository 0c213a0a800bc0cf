"""Load-or-compute cache for trained artifacts (state_dicts, tensors, small metrics).

``load_or_compute(name, config, compute)`` returns ``compute()``'s result, computing it only
when no valid copy for this exact ``config`` is cached. Layout under ``cache_dir()``::

    <name>-<sha256(config)[:16]>.pt     b"ICLR22CACHE1\\n" + sha256 hex of the body + b"\\n" + body
    <name>-<sha256(config)[:16]>.json   the config, for people (the key is its hash)

The body is ``torch.save`` of the artifact and is read back with
``torch.load(weights_only=True)`` only: tensors, dicts, lists, numbers and strings, never
arbitrary pickled objects. Every file is written to a temporary file in the same folder and
then renamed over the target (atomic on POSIX), so concurrent writers and a run killed
mid-write never leave a half-written artifact; a truncated or corrupt file fails its sha256
check, is reported with a warning, and is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

CACHE_VARIABLE = "ICLR22_CACHE"
MAGIC = b"ICLR22CACHE1\n"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class CorruptCacheError(RuntimeError):
    """A cached file exists but fails its integrity check."""


def cache_dir() -> Path:
    """``$ICLR22_CACHE`` if set, else ``$XDG_CACHE_HOME/iclr22`` (``~/.cache/iclr22``)."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "iclr22"


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the config's canonical JSON (sorted keys); non-JSON values are an error."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"config must be plain JSON (numbers, strings, lists): {err}") from err
    return hashlib.sha256(text.encode()).hexdigest()


def artifact_path(name: str, config: Mapping[str, Any], folder: Path | None = None) -> Path:
    """Where the artifact for ``(name, config)`` lives."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must match {_NAME.pattern}, got {name!r}")
    return (folder or cache_dir()) / f"{name}-{config_hash(config)[:16]}.pt"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: Path, artifact: Any, config: Mapping[str, Any] | None = None) -> None:
    """Write ``artifact`` (and its config, as JSON beside it) atomically with a checksum."""
    buffer = io.BytesIO()
    torch.save(artifact, buffer)
    body = buffer.getvalue()
    digest = hashlib.sha256(body).hexdigest().encode()
    atomic_write_bytes(path, MAGIC + digest + b"\n" + body)
    if config is not None:
        text = json.dumps(dict(config), sort_keys=True, indent=2) + "\n"
        atomic_write_bytes(path.with_suffix(".json"), text.encode())


def load(path: Path) -> Any:
    """Read an artifact written by :func:`save`; raise :class:`CorruptCacheError` if damaged."""
    data = Path(path).read_bytes()
    header = len(MAGIC) + 64 + 1
    if not data.startswith(MAGIC) or len(data) < header or data[header - 1:header] != b"\n":
        raise CorruptCacheError(f"{path}: not an iclr22 cache file (bad or truncated header)")
    expected = data[len(MAGIC):header - 1].decode("ascii", errors="replace")
    body = data[header:]
    actual = hashlib.sha256(body).hexdigest()
    if actual != expected:
        raise CorruptCacheError(
            f"{path}: sha256 mismatch (file truncated or corrupt): expected {expected[:12]}..., "
            f"got {actual[:12]}..."
        )
    return torch.load(io.BytesIO(body), weights_only=True, map_location="cpu")


def load_or_compute(
    name: str,
    config: Mapping[str, Any],
    compute: Callable[[], Any],
    *,
    folder: Path | None = None,
    refresh: bool = False,
) -> Any:
    """Return the cached artifact for ``(name, config)``, or compute, store and return it.

    name:    a short identifier (letters, digits, ``_.-``), e.g. ``"cold_brew_teacher"``.
    config:  everything the artifact depends on, as plain JSON (its hash is the key).
    compute: a function of no arguments returning tensors / dicts / numbers.
    refresh: recompute even if a valid copy exists.
    Tensors come back on the CPU; move them to the device you need.
    """
    path = artifact_path(name, config, folder)
    if path.exists() and not refresh:
        try:
            return load(path)
        except CorruptCacheError as err:
            warnings.warn(f"{err}; recomputing", RuntimeWarning, stacklevel=2)
    artifact = compute()
    save(path, artifact, config)
    return artifact
