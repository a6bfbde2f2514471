"""Writing outputs so that a killed process never leaves a half-written file behind."""

from __future__ import annotations

import json
import math
import os
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
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


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
