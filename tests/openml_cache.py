"""A tiny stand-in for OpenML's ``mnist_784`` in scikit-learn's on-disk cache layout.

fetch_openml(data_id=554, data_home=...) reads these files without any network
access, exactly as it reads a cache left by a real download.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np

DATA_ID = 554
ARFF_URL = "https://api.openml.org/data/v1/download/52667/mnist_784.arff"


def _arff(images: np.ndarray, labels: np.ndarray, num_classes: int) -> str:
    classes = ",".join(str(c) for c in range(num_classes))
    lines = ["@RELATION mnist_784", ""]
    lines += [f"@ATTRIBUTE pixel{i + 1} NUMERIC" for i in range(images.shape[1])]
    lines += [f"@ATTRIBUTE class {{{classes}}}", "", "@DATA"]
    lines += [",".join([*map(str, row), str(label)]) for row, label in zip(images, labels)]
    return "\n".join(lines) + "\n"


def _features(num_pixels: int, num_classes: int) -> dict:
    def feature(index: int, name: str, data_type: str, target: bool) -> dict:
        entry = {
            "index": str(index),
            "name": name,
            "data_type": data_type,
            "is_target": str(target).lower(),
            "is_ignore": "false",
            "is_row_identifier": "false",
            "number_of_missing_values": "0",
        }
        if data_type == "nominal":
            entry["nominal_values"] = [str(c) for c in range(num_classes)]
        return entry

    pixels = [feature(i, f"pixel{i + 1}", "numeric", False) for i in range(num_pixels)]
    return {"data_features": {"feature": [*pixels, feature(num_pixels, "class", "nominal", True)]}}


def _write_gz(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content))


def write_openml_cache(cache_dir: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write ``images`` (N, D) uint8 and ``labels`` (N,) as dataset 554 under ``cache_dir``.

    The files land where :mod:`ssvae.data.openml` points fetch_openml:
    ``<cache_dir>/openml/openml.org/...``. Returns ``cache_dir``.
    """
    num_classes = 10
    root = cache_dir / "openml" / "openml.org"
    arff = _arff(images, labels, num_classes).encode()
    description = {
        "data_set_description": {
            "id": str(DATA_ID),
            "name": "mnist_784",
            "version": "1",
            "description": "Test stand-in for mnist_784.",
            "format": "ARFF",
            "url": ARFF_URL,
            "md5_checksum": hashlib.md5(arff).hexdigest(),
            "status": "active",
            "default_target_attribute": "class",
        }
    }
    qualities = {
        "data_qualities": {"quality": [{"name": "NumberOfInstances", "value": str(len(labels))}]}
    }
    api = root / "api" / "v1" / "json" / "data"
    _write_gz(api / f"{DATA_ID}.gz", json.dumps(description).encode())
    _write_gz(
        api / "features" / f"{DATA_ID}.gz",
        json.dumps(_features(images.shape[1], num_classes)).encode(),
    )
    _write_gz(api / "qualities" / f"{DATA_ID}.gz", json.dumps(qualities).encode())
    _write_gz(root / "data" / "v1" / "download" / "52667" / "mnist_784.arff.gz", arff)
    return cache_dir
