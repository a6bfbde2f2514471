"""IDX folders: reading, validation of corrupt files, and training through ``data=idx``."""

import gzip

import numpy as np
import pytest
from idx_data import idx_bytes, make_images, write_dataset, write_idx

from ssvae.data.base import DataError
from ssvae.data.idx import read_idx
from ssvae.data.sources import load_source


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_read_idx_round_trips(tmp_path, gz, dtype):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(dtype)
    path = write_idx(tmp_path / ("a-idx3-ubyte" + (".gz" if gz else "")), array)
    read = read_idx(path)
    assert read.shape == (2, 3, 4)
    np.testing.assert_array_equal(read, array)


def test_folder_loads_both_splits_in_unit_range(tmp_path):
    folder = write_dataset(tmp_path / "idx", gz=False)
    data = load_source("idx", num_classes=10, path=str(folder))
    images, labels = make_images(30, seed=1)
    assert data.train_images.shape == (300, 64) and data.train_images.dtype == np.float32
    np.testing.assert_allclose(data.train_images * 255, images.reshape(300, -1), atol=1e-4)
    np.testing.assert_array_equal(data.train_labels, labels)
    assert data.test_images.shape == (100, 64) and data.num_test == 100
    assert data.image_size == (8, 8)


def test_test_pair_is_optional(tmp_path):
    folder = write_dataset(tmp_path / "idx", test_per_class=0)
    data = load_source("idx", num_classes=10, path=str(folder))
    assert data.test_images is None and data.num_test == 0


def test_whole_float_pixels_load_like_bytes(tmp_path):
    folder = write_dataset(tmp_path / "idx", gz=False)
    images, _ = make_images(30, seed=1)
    write_idx(folder / "train-images-idx3-ubyte", images.astype(np.float32))
    data = load_source("idx", num_classes=10, path=str(folder))
    np.testing.assert_allclose(data.train_images * 255, images.reshape(300, -1), atol=1e-4)


def _corrupt(folder, case):
    """Spoil the dataset in ``folder`` in one way; returns the file the error must name."""
    labels_gz = folder / "train-labels-idx1-ubyte.gz"
    images_gz = folder / "train-images-idx3-ubyte.gz"
    images, labels = make_images(30, seed=1)
    if case == "bad magic":
        content = bytearray(gzip.decompress(images_gz.read_bytes()))
        content[:4] = b"\x12\x34\x08\x03"
        images_gz.write_bytes(gzip.compress(bytes(content)))
        return images_gz
    if case == "count mismatch":
        write_idx(labels_gz, labels[:-1])
        return labels_gz
    if case == "truncated data":
        plain = folder / "train-images-idx3-ubyte"
        plain.write_bytes(idx_bytes(images)[:-10])  # the plain file wins over the .gz
        return plain
    if case == "truncated gzip":
        images_gz.write_bytes(images_gz.read_bytes()[:200])
        return images_gz
    if case == "not gzip":
        labels_gz.write_bytes(idx_bytes(labels))
        return labels_gz
    if case == "pixels above 255":
        wide = images.astype(np.int16)
        wide[3, 2, 1] = 300
        write_idx(images_gz, wide)
        return images_gz
    if case == "negative pixels":
        write_idx(images_gz, images.astype(np.float32) - 1)
        return images_gz
    if case == "label outside classes":
        write_idx(labels_gz, np.where(labels == 9, 10, labels).astype(np.uint8))
        return labels_gz
    if case == "test pixels differ":
        write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((100, 7, 7), np.uint8))
        return folder / "t10k-images-idx3-ubyte.gz"
    if case == "lone test file":
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
        return folder / "t10k-images-idx3-ubyte.gz"
    raise AssertionError(case)


CORRUPT = {
    "bad magic": "bad magic number 0x12340803",
    "count mismatch": "holds 300 images but .* holds 299 labels",
    "truncated data": "truncated: header declares shape \\(300, 8, 8\\)",
    "truncated gzip": "truncated or corrupt gzip",
    "not gzip": "named .gz but is not a gzip file",
    "pixels above 255": "pixel values must lie in \\[0, 255\\], found range \\[0, 300\\]",
    "negative pixels": "pixel values must lie in \\[0, 255\\]",
    "label outside classes": "30 training label\\(s\\) outside \\[0, num_classes=10\\), e.g. 10",
    "test pixels differ": "49 pixels per image, the training images .* have 64",
    "lone test file": "test images and labels must come as a pair",
}


@pytest.mark.parametrize("case", CORRUPT)
def test_corrupt_file_is_named_in_the_error(tmp_path, case):
    folder = write_dataset(tmp_path / "idx")
    named = _corrupt(folder, case)
    with pytest.raises(DataError, match=CORRUPT[case]) as error:
        load_source("idx", num_classes=10, path=str(folder))
    assert str(named) in str(error.value)


def test_missing_folder_says_how_to_get_fashion_mnist(tmp_path):
    with pytest.raises(DataError, match="does not exist .*apt-get install dataset-fashion-mnist"):
        load_source("idx", path=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="lacks the training files"):
        load_source("idx", path=str(tmp_path / "empty"))


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_train_on_an_idx_folder_evaluates_its_test_split(train_tiny, tmp_path, gz):
    folder = write_dataset(tmp_path / "idx", gz=gz)
    result = train_tiny("data=idx", f"data.path={folder}", "num_samples=all")
    assert result.returncode == 0, result.output
    summary = result.summary()
    classification, clustering = summary["classification"], summary["clustering"]
    # 100 test images: the test accuracy is a whole number of hundredths.
    assert round(classification["accuracy_test"] * 100, 6).is_integer()
    for key in ("nmi_test", "ari_test", "cluster_accuracy_test"):
        assert clustering[key] is not None, key
    assert 0 <= clustering["nmi_test"] <= 1
    report = (result.run_dir / "REPORT.md").read_text()
    for row in ("| Accuracy Test |", "| NMI Test |", "| ARI Test |", "| Cluster Accuracy Test |"):
        assert row in report, row
    assert (result.run_dir / "figures" / "reconstructions.png").stat().st_size > 1000


def test_corrupt_folder_fails_before_training_with_one_line(train_tiny, tmp_path):
    folder = write_dataset(tmp_path / "idx")
    named = _corrupt(folder, "label outside classes")
    result = train_tiny("data=idx", f"data.path={folder}")
    assert result.returncode == 2, result.output
    errors = [line for line in result.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and str(named) in errors[0], result.output
    assert "Traceback" not in result.output
    summary = result.summary()
    assert summary["status"] == "failed" and str(named) in summary["error"]
    assert not (result.run_dir / "checkpoints").exists()


def test_idx_without_a_folder_is_a_config_error(train_tiny):
    result = train_tiny("data=idx")
    assert result.returncode == 2, result.output
    assert "data.path: a value is required" in result.output
