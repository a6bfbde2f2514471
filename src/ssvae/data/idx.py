"""Reader of the IDX format used by MNIST, Fashion-MNIST and their relatives.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order,
big-endian. Files may be gzipped (``.gz``). Every check here raises
:class:`~ssvae.data.base.DataError` naming the file, so a bad download fails
before training instead of half-way through it.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import numpy as np

from ssvae.data.base import DataError, ImageData

log = logging.getLogger(__name__)

#: IDX type code -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

GZIP_MAGIC = b"\x1f\x8b"

#: (role, file stem, IDX rank) of the standard files; the test pair is optional.
STANDARD_FILES = (
    ("train_images", "train-images", 3),
    ("train_labels", "train-labels", 1),
    ("test_images", "t10k-images", 3),
    ("test_labels", "t10k-labels", 1),
)


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in ``.gz``."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from error
    if path.suffix != ".gz":
        return raw
    if not raw.startswith(GZIP_MAGIC):
        raise DataError(f"{path}: named .gz but is not a gzip file")
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise DataError(f"{path}: truncated or corrupt gzip data ({error})") from error


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (plain or gzipped) into an array of its declared shape and type.

    Raises:
        DataError: unreadable file, bad gzip, bad magic number, or a data section
            whose size differs from what the header declares.
    """
    path = Path(path)
    content = _read_bytes(path)
    if len(content) < 4:
        raise DataError(f"{path}: {len(content)} bytes, too short for an IDX header")
    zeros, type_code, rank = content[:2], content[2], content[3]
    if zeros != b"\x00\x00" or type_code not in IDX_DTYPES or rank == 0:
        raise DataError(
            f"{path}: bad magic number 0x{content[:4].hex()} (not an IDX file; expected "
            "0x0000 followed by a type code and the number of dimensions)"
        )
    header_size = 4 + 4 * rank
    if len(content) < header_size:
        raise DataError(f"{path}: truncated header ({len(content)} of {header_size} bytes)")
    shape = tuple(int(size) for size in np.frombuffer(content, ">u4", rank, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(content) - header_size
    if actual != expected:
        state = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {state}: header declares shape {shape} ({expected} bytes of data), "
            f"the file holds {actual}"
        )
    return np.frombuffer(content, dtype, offset=header_size).reshape(shape)


def _check_images(images: np.ndarray, path: Path) -> np.ndarray:
    """Images as (N, D) uint8, refusing ranks below 2 and pixels outside [0, 255]."""
    if images.ndim < 2:
        raise DataError(f"{path}: images need at least 2 dimensions (N, ...), got {images.shape}")
    if images.dtype != np.uint8 and images.size:
        finite = np.isfinite(images) if images.dtype.kind == "f" else True
        if not np.all(finite) or images.min() < 0 or images.max() > 255:
            raise DataError(
                f"{path}: pixel values must lie in [0, 255], found range "
                f"[{images.min()}, {images.max()}]"
            )
        if images.dtype.kind == "f" and not np.all(images == np.round(images)):
            raise DataError(f"{path}: pixel values must be whole numbers in [0, 255]")
    return images.reshape(len(images), -1).astype(np.uint8)


def _check_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    if labels.ndim != 1:
        raise DataError(f"{path}: labels must have 1 dimension, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{path}: labels must be integers, got {labels.dtype}")
    return labels.astype(np.int64)


def read_pair(
    images_path: Path, labels_path: Path
) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    """Images (N, D) uint8, labels (N,) int64 and the image (height, width) of one split.

    The shape is None for images stored flat, as (N, D).
    """
    raw_images = read_idx(images_path)
    images = _check_images(raw_images, images_path)
    labels = _check_labels(read_idx(labels_path), labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels"
        )
    image_shape = tuple(raw_images.shape[1:]) if raw_images.ndim == 3 else None
    return images, labels, image_shape


def find_idx_files(folder: Path) -> dict[str, Path]:
    """Paths of the standard files in ``folder``, keyed by role; the test pair may be absent.

    A file is found as ``<stem>-idx<rank>-ubyte`` or ``<stem>.idx<rank>-ubyte``, plain
    or with ``.gz``; the plain file wins when both exist.
    """
    if not folder.is_dir():
        raise DataError(
            f"IDX folder {folder} does not exist (set data.path=<folder>; Fashion-MNIST "
            "comes with Debian's package: apt-get install dataset-fashion-mnist)"
        )
    found = {}
    for role, stem, rank in STANDARD_FILES:
        names = [f"{stem}{sep}idx{rank}-ubyte{gz}" for gz in ("", ".gz") for sep in "-."]
        found_paths = [folder / name for name in names if (folder / name).is_file()]
        if found_paths:
            found[role] = found_paths[0]
    missing = [f"{stem}-idx{rank}-ubyte[.gz]" for role, stem, rank in STANDARD_FILES[:2]]
    if "train_images" not in found or "train_labels" not in found:
        raise DataError(f"IDX folder {folder} lacks the training files {' and '.join(missing)}")
    if ("test_images" in found) != ("test_labels" in found):
        present = found.get("test_images") or found.get("test_labels")
        raise DataError(f"{present}: test images and labels must come as a pair")
    return found


def load_idx_folder(path: str | None = None) -> ImageData:
    """The training split (and the test split, when present) of a folder of IDX files.

    Args:
        path: Folder holding ``train-images-idx3-ubyte[.gz]``,
            ``train-labels-idx1-ubyte[.gz]`` and optionally the ``t10k-*`` test pair.
    """
    if not path:
        raise DataError("data.path: the folder holding the IDX files is required")
    files = find_idx_files(Path(path).expanduser())
    train_images, train_labels, image_shape = read_pair(
        files["train_images"], files["train_labels"]
    )
    data = ImageData(
        train_images=train_images.astype(np.float32) / 255.0,
        train_labels=train_labels,
        train_origin=str(files["train_labels"]),
        image_shape=image_shape,
    )
    if "test_images" in files:
        test_images, test_labels, _ = read_pair(files["test_images"], files["test_labels"])
        if test_images.shape[1] != train_images.shape[1]:
            raise DataError(
                f"{files['test_images']}: {test_images.shape[1]} pixels per image, the "
                f"training images in {files['train_images']} have {train_images.shape[1]}"
            )
        data.test_images = test_images.astype(np.float32) / 255.0
        data.test_labels = test_labels
        data.test_origin = str(files["test_labels"])
    log.info("IDX folder %s: %d training, %d test images", path, len(train_labels), data.num_test)
    return data
