"""Writing outputs: atomically (never half written), into a location checked up front."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO], Any], mode: str = "w") -> Path:
    """Write through ``write(handle)`` to a temporary file beside ``path``, then rename it.

    The rename is atomic on POSIX file systems: readers see the old file or the
    complete new one, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 -- closed below, before the rename
        mode, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # Temporary files are private (0600); give the result the usual umask-based mode.
        os.chmod(handle.name, 0o666 & ~_umask())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text))


def finite_or_none(data: Any) -> Any:
    """Replace NaN and infinities by None, recursively: JSON has no spelling for them."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(value) for value in data]
    return data


def write_json(path: str | Path, data: Any) -> Path:
    """Strict JSON (non-finite floats become null), written atomically."""
    return write_text(path, json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n")


class OutputLocationError(OSError):
    """A directory cannot take a run's files: not writable, or too little free space."""


def check_output_location(path: str | Path, min_free_mb: float = 0) -> None:
    """Create ``path`` if needed, write and remove a probe file there, and check free space.

    Raises:
        OutputLocationError: naming the reason in one line (e.g. "Read-only file system").
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe.") as probe:
            probe.write(b"probe")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise OutputLocationError(f"cannot write there ({error.strerror or error})") from error
    free_mb = shutil.disk_usage(path).free / 2**20
    if free_mb < min_free_mb:
        raise OutputLocationError(
            f"only {free_mb:.0f} MB free, below paths.min_free_mb={min_free_mb:g}"
        )
