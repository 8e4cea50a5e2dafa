"""Tests of lucidnet.datasets: the IDX reader on generated files and the scikit-learn wrappers."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from lucidnet.data import datasets as ds

TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as an IDX file: written independently of the reader under test."""
    header = bytes([0, 0, TYPE_CODES[array.dtype], array.ndim])
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


# ------------------------------------------------------------------------------------------
# load_idx
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", list(TYPE_CODES), ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (4, 3, 2)], ids=["1d", "2d", "3d"])
def test_load_idx_roundtrip(tmp_path, compress, dtype, shape):
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        array = rng.normal(size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    path = write_idx(tmp_path / "data.idx", array, compress)

    out = ds.load_idx(path)

    assert out.dtype == dtype
    assert out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


def test_load_idx_detects_gzip_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    # gzip data without .gz, raw data with .gz: the name must not matter.
    gz = write_idx(tmp_path / "plain-name", array, compress=True)
    raw = write_idx(tmp_path / "looks-compressed.gz", array, compress=False)
    np.testing.assert_array_equal(ds.load_idx(gz), array)
    np.testing.assert_array_equal(ds.load_idx(raw), array)


def test_load_idx_accepts_str_path_and_zero_length_dimension(tmp_path):
    array = np.zeros((0, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / "empty.idx", array)
    out = ds.load_idx(str(path))
    assert out.shape == (0, 28, 28)


def test_load_idx_truncated_data(tmp_path):
    data = idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    path = tmp_path / "short.idx"
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match=r"expected 48 bytes of data for shape \(2, 3, 4\)") as e:
        ds.load_idx(path)
    assert "got 43" in str(e.value)
    assert str(path) in str(e.value)


def test_load_idx_overlong_data(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.arange(6, dtype=np.uint8)) + b"\x00\x00")
    with pytest.raises(ValueError, match=r"expected 6 bytes of data for shape \(6,\).*got 8"):
        ds.load_idx(path)


def test_load_idx_truncated_gzip_data(tmp_path):
    # A valid gzip stream of a file whose data were cut: the error comes from the IDX check.
    data = idx_bytes(np.arange(100, dtype=np.uint8))
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(data[:-1]))
    with pytest.raises(ValueError, match="expected 100 bytes of data"):
        ds.load_idx(path)


def test_load_idx_truncated_header(tmp_path):
    path = tmp_path / "header.idx"
    # Declares 3 dimensions (needs 16 header bytes) but holds only one dimension size.
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 10))
    with pytest.raises(ValueError, match=r"truncated IDX header: expected 16 bytes.*got 8") as e:
        ds.load_idx(path)
    assert str(path) in str(e.value)


def test_load_idx_shorter_than_magic(tmp_path):
    path = tmp_path / "tiny.idx"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="truncated IDX header.*got 2"):
        ds.load_idx(path)


def test_load_idx_empty_file(tmp_path):
    path = tmp_path / "empty.idx"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="truncated IDX header.*got 0") as e:
        ds.load_idx(path)
    assert str(path) in str(e.value)


def test_load_idx_wrong_magic(tmp_path):
    path = tmp_path / "notidx.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    with pytest.raises(ValueError, match="expected IDX magic 0x0000 followed by a type code") as e:
        ds.load_idx(path)
    assert "got b'\\x89PNG'" in str(e.value)
    assert str(path) in str(e.value)


def test_load_idx_unknown_type_code(tmp_path):
    path = tmp_path / "badtype.idx"
    path.write_bytes(bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="unknown IDX type code 0x0A.*0x08 \\(uint8\\)") as e:
        ds.load_idx(path)
    assert str(path) in str(e.value)


def test_load_idx_zero_dimensions(tmp_path):
    path = tmp_path / "scalar.idx"
    path.write_bytes(bytes([0, 0, 0x08, 0]) + b"\x01")
    with pytest.raises(ValueError, match="0 dimensions"):
        ds.load_idx(path)


def test_load_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "corrupt.gz"
    compressed = bytearray(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32))))
    # Flip bytes inside the deflate stream (after the 10-byte gzip header).
    for i in range(12, 40):
        compressed[i] ^= 0xFF
    path.write_bytes(bytes(compressed))
    with pytest.raises(ValueError, match="corrupt gzip stream") as e:
        ds.load_idx(path)
    assert str(path) in str(e.value)


def test_load_idx_cut_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    compressed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="corrupt gzip stream"):
        ds.load_idx(path)


def test_load_idx_missing_file(tmp_path):
    path = tmp_path / "nope.idx"
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        ds.load_idx(path)


# ------------------------------------------------------------------------------------------
# load_mnist
# ------------------------------------------------------------------------------------------


def make_mnist_dir(
    directory: Path,
    kind: str = "t10k",
    n_images: int = 20,
    n_labels: int = 20,
    compress: bool = True,
    dotted: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(n_images, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=n_labels, dtype=np.uint8)
    sep = "." if dotted else "-"
    suffix = ".gz" if compress else ""
    write_idx(directory / f"{kind}-images{sep}idx3-ubyte{suffix}", X, compress)
    write_idx(directory / f"{kind}-labels{sep}idx1-ubyte{suffix}", y, compress)
    return X, y


@pytest.mark.parametrize("kind", ["t10k", "train"])
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("dotted", [False, True], ids=["standard", "dotted"])
def test_load_mnist(tmp_path, kind, compress, dotted):
    X, y = make_mnist_dir(tmp_path, kind, compress=compress, dotted=dotted)
    X_out, y_out = ds.load_mnist(tmp_path, kind=kind)
    assert X_out.dtype == np.uint8 and X_out.shape == (20, 28, 28)
    assert y_out.dtype == np.uint8 and y_out.shape == (20,)
    np.testing.assert_array_equal(X_out, X)
    np.testing.assert_array_equal(y_out, y)


def test_load_mnist_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path, n_images=20, n_labels=19)
    with pytest.raises(ValueError, match="counts differ: 20 images.*19 labels"):
        ds.load_mnist(tmp_path)


def test_load_mnist_missing_files_lists_names(tmp_path):
    make_mnist_dir(tmp_path, kind="t10k")
    with pytest.raises(FileNotFoundError) as e:
        ds.load_mnist(tmp_path, kind="train")
    message = str(e.value)
    for name in [
        "train-images-idx3-ubyte",
        "train-images-idx3-ubyte.gz",
        "train-images.idx3-ubyte",
        "train-images.idx3-ubyte.gz",
    ]:
        assert name in message
    assert str(tmp_path) in message


def test_load_mnist_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        ds.load_mnist(tmp_path / "does-not-exist")


def test_load_mnist_bad_kind(tmp_path):
    with pytest.raises(ValueError, match="kind must be 'train' or 't10k', got 'test'"):
        ds.load_mnist(tmp_path, kind="test")


def test_load_mnist_wrong_rank(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 784), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 images of shape \(n, rows, cols\)"):
        ds.load_mnist(tmp_path)


# ------------------------------------------------------------------------------------------
# scikit-learn wrappers
# ------------------------------------------------------------------------------------------

CLASSIFICATION = [
    # loader, n_samples, n_features, n_classes
    (ds.load_digits, 1797, 64, 10),
    (ds.load_iris, 150, 4, 3),
    (ds.load_breast_cancer, 569, 30, 2),
    (ds.load_wine, 178, 13, 3),
]


@pytest.mark.parametrize(
    "loader,n,n_features,n_classes", CLASSIFICATION, ids=[c[0].__name__ for c in CLASSIFICATION]
)
def test_classification_wrappers(loader, n, n_features, n_classes):
    data = loader()
    assert isinstance(data, ds.Dataset)
    assert data.task == "classification"
    n_test = len(data.y_test)  # each class gives round(0.2 * its rows): 20% up to rounding
    assert abs(n_test - 0.2 * n) <= n_classes / 2
    assert data.X_train.shape == (n - n_test, n_features)
    assert data.X_test.shape == (n_test, n_features)
    assert data.y_train.shape == (n - n_test,) and data.y_test.shape == (n_test,)
    assert data.X_train.dtype == np.float32 and data.X_test.dtype == np.float32
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    assert len(data.feature_names) == n_features == data.n_features
    assert len(data.target_names) == n_classes == data.n_classes
    assert all(isinstance(name, str) for name in data.feature_names + data.target_names)

    # Stratified: every class's share in the test split is within one sample of its share overall.
    y_all = np.concatenate([data.y_train, data.y_test])
    overall = np.bincount(y_all, minlength=n_classes) / n
    in_test = np.bincount(data.y_test, minlength=n_classes)
    assert np.all(np.abs(in_test - overall * n_test) <= 1.0)

    # Scaler fitted on the training split only: train is standardised exactly, test only roughly.
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0.0, atol=1e-4)
    std = data.X_train.std(axis=0)
    constant = data.scale == 1.0  # zero-variance columns (digits' border pixels) stay at 0
    np.testing.assert_allclose(std[~constant], 1.0, atol=1e-3)
    assert data.mean is not None and data.mean.shape == (n_features,)


def test_scaler_statistics_come_from_train_split():
    raw = ds.load_wine(scale=False)
    scaled = ds.load_wine(scale=True)
    np.testing.assert_array_equal(raw.y_train, scaled.y_train)
    np.testing.assert_allclose(scaled.mean, raw.X_train.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(scaled.scale, raw.X_train.std(axis=0), rtol=1e-4)
    np.testing.assert_allclose(
        scaled.X_test, (raw.X_test - scaled.mean) / scaled.scale, rtol=1e-5, atol=1e-5
    )
    # Test statistics must differ from the training ones, or this test would prove nothing.
    assert not np.allclose(raw.X_test.mean(axis=0), raw.X_train.mean(axis=0))


def test_scale_false_keeps_raw_values():
    data = ds.load_iris(scale=False)
    assert data.mean is None and data.scale is None
    assert data.X_train.min() >= 0.0  # iris measurements are positive centimetres


def test_diabetes_regression():
    data = ds.load_diabetes()
    assert data.task == "regression"
    assert data.X_train.shape == (354, 10) and data.X_test.shape == (88, 10)  # round(0.2 * 442)
    assert data.y_train.shape == (354,) and data.y_test.shape == (88,)
    assert data.X_train.dtype == np.float32
    assert data.y_train.dtype == np.float32 and data.y_test.dtype == np.float32
    assert data.target_names == () and data.n_classes is None
    assert len(data.feature_names) == 10
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0.0, atol=1e-5)


def test_split_false_returns_whole_unscaled_arrays():
    X, y = ds.load_iris(split=False)
    assert X.shape == (150, 4) and X.dtype == np.float32
    assert y.shape == (150,) and y.dtype == np.int64
    X, y = ds.load_diabetes(split=False)
    assert X.shape == (442, 10) and y.dtype == np.float32


def test_seed_and_test_size():
    a, b, c = ds.load_iris(seed=0), ds.load_iris(seed=0), ds.load_iris(seed=1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.y_test, c.y_test) or not np.array_equal(a.X_test, c.X_test)
    assert ds.load_iris(test_size=0.5).X_test.shape == (75, 4)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_bad_test_size(bad):
    with pytest.raises(ValueError, match="test_size must be a float in \\(0, 1\\)"):
        ds.load_iris(test_size=bad)


def test_bad_test_size_type():
    with pytest.raises(TypeError, match="test_size"):
        ds.load_iris(test_size="0.2")


def test_dataset_unpacks_and_is_frozen():
    data = ds.load_iris()
    X_train, X_test, y_train, y_test = data
    assert X_train is data.X_train and y_test is data.y_test
    assert "X_train=(120, 4)" in repr(data)
    with pytest.raises(AttributeError):
        data.task = "regression"  # type: ignore[misc]
