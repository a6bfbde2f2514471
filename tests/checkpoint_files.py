"""Checkpoint test helpers: broken files of each kind a user meets, and metric comparison."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

BAD_KINDS = ("missing", "corrupt", "truncated", "unsafe", "not_a_checkpoint")

#: A word each kind's error message must contain.
EXPECTED_WORDS = {
    "missing": "no such file",
    "corrupt": "corrupt",
    "truncated": "truncated",
    "unsafe": "refused to load",
    "not_a_checkpoint": "not a training checkpoint",
}


class CreatesFileWhenUnpickled:
    """Unpickling this calls ``open(marker, "w")``: proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def write_bad_checkpoint(kind: str, path: Path, good: Path, marker: Path) -> Path:
    """Put a checkpoint of ``kind`` at ``path`` (``good`` is a valid one to damage)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if kind == "corrupt":
        path.write_bytes(bytes(range(256)) * 64)
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "unsafe":
        checkpoint = {"state_dict": {}, "epoch": 0, "global_step": 0}
        torch.save({**checkpoint, "payload": CreatesFileWhenUnpickled(marker)}, path)
    elif kind == "not_a_checkpoint":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind != "missing":
        raise ValueError(kind)
    return path


def assert_same_metrics(expected: dict, actual: dict, tolerance: float = 1e-6) -> None:
    """Every value of the classification, mixture and clustering sections agrees."""
    for section in ("classification", "mixture", "clustering"):
        assert set(expected[section]) == set(actual[section]), section
        for key, value in expected[section].items():
            other = actual[section][key]
            if isinstance(value, float):
                assert math.isclose(other, value, rel_tol=tolerance, abs_tol=1e-9), key
            elif isinstance(value, list) and value and isinstance(value[0], float):
                np.testing.assert_allclose(other, value, rtol=tolerance, err_msg=key)
            else:
                assert other == value, key
