"""Data sets: an IDX (MNIST) reader and ready-to-train wrappers over scikit-learn's bundled data.

Two families of loaders live here:

* :func:`load_idx` / :func:`load_mnist` read the IDX binary format used by MNIST and its
  relatives (Fashion-MNIST, EMNIST), gzip-compressed or raw, with a strict header check so a
  wrong or damaged file fails with a message that says what was expected and what was found.
* :func:`load_digits`, :func:`load_iris`, :func:`load_breast_cancer`, :func:`load_wine` and
  :func:`load_diabetes` wrap the small data sets that scikit-learn ships, returning float32
  features and integer (classification) or float32 (regression) targets, already split and
  standardised, as a :class:`Dataset`; split by :func:`lucidnet.data.splits.train_val_test_split`.

scikit-learn is imported inside the functions that need it so that ``import lucidnet`` stays fast.
"""

from __future__ import annotations

import gzip
import inspect
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .splits import train_val_test_split

__all__ = [
    "Dataset",
    "load_breast_cancer",
    "load_diabetes",
    "load_digits",
    "load_idx",
    "load_iris",
    "load_mnist",
    "load_wine",
]

# IDX type codes -> big-endian element types, as defined by the format (yann.lecun.com/exdb/mnist).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------------------------
# IDX / MNIST
# --------------------------------------------------------------------------------------------


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or raw.

    Compression is detected from the gzip magic bytes ``1f 8b`` at the start of the file, not
    from the file name, so a renamed or decompressed-in-place file still loads.

    The header is: two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
    ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions, then one
    big-endian uint32 per dimension. The data follow, big-endian, and must fill the shape
    exactly.

    Args:
        path: Path of the IDX file.

    Returns:
        A writable array in native byte order with the shape and dtype given by the header.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the gzip stream is corrupt, the header is truncated or malformed (wrong
            magic, unknown type code), or the data are shorter or longer than the shape needs.
            The message names the path and what was expected versus received.
    """
    path = Path(path)
    raw = _idx_bytes(path)
    dtype, shape, header_size = _idx_header(raw, path)
    # Python ints, so the product cannot overflow on a corrupt header with huge dimensions.
    n_items = 1
    for d in shape:
        n_items *= d
    expected = n_items * dtype.itemsize
    received = len(raw) - header_size
    if received != expected:
        raise ValueError(
            f"{path}: expected {expected} bytes of data for shape {shape} ({dtype.name}), "
            f"got {received}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=n_items, offset=header_size)
    # astype to the native-order dtype copies, which also makes the result writable
    # (frombuffer over bytes is read-only).
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _idx_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when they start with the gzip magic."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"IDX file not found: '{path}'") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            # OSError covers gzip.BadGzipFile; EOFError a stream cut short.
            raise ValueError(f"{path}: corrupt gzip stream ({exc})") from exc
    return raw


def _idx_header(raw: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(element dtype, shape, header size in bytes)`` from an IDX header, checked."""
    if len(raw) < 4:
        raise ValueError(
            f"{path}: truncated IDX header: expected at least 4 bytes "
            f"(magic, type code, ndim), got {len(raw)}"
        )
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: expected IDX magic 0x0000 followed by a type code, "
            f"got {raw[:4]!r}"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in _IDX_DTYPES.items())
        raise ValueError(
            f"{path}: unknown IDX type code 0x{type_code:02X}: expected one of {known}"
        )
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions: expected at least 1")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(
            f"{path}: truncated IDX header: expected {header_size} bytes for {ndim} "
            f"dimension(s), got {len(raw)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return _IDX_DTYPES[type_code], shape, header_size


def _find_idx_file(directory: Path, names: list[str]) -> Path:
    """Return the first of ``names`` (each also tried with ``.gz``) that exists in ``directory``."""
    candidates = [n for name in names for n in (name, name + ".gz")]
    for name in candidates:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no MNIST file in '{directory}': looked for {', '.join(candidates)}")


def load_mnist(
    directory: str | os.PathLike[str], kind: Literal["train", "t10k"] = "t10k"
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST images and labels from a directory of IDX files.

    Looks for the standard names ``{kind}-images-idx3-ubyte`` and ``{kind}-labels-idx1-ubyte``,
    also the dotted variants ``{kind}-images.idx3-ubyte`` / ``{kind}-labels.idx1-ubyte``, each
    raw or with a ``.gz`` suffix. Fashion-MNIST uses the same names and loads the same way.

    Args:
        directory: Directory holding the files.
        kind: ``"t10k"`` for the 10,000-image test set, ``"train"`` for the 60,000-image
            training set.

    Returns:
        ``(X, y)``: uint8 images of shape ``(n, 28, 28)`` (values 0-255) and uint8 labels of
        shape ``(n,)``. Scale and cast them yourself (e.g. ``X / 255``, ``y.astype(np.int64)``).

    Raises:
        ValueError: If ``kind`` is not ``"train"`` or ``"t10k"``, a file is malformed (see
            :func:`load_idx`), the arrays do not have the expected rank / dtype, or the image
            and label counts differ.
        FileNotFoundError: If the directory or a file is missing; the message lists the file
            names that were tried.
    """
    if kind not in ("train", "t10k"):
        raise ValueError(f"kind must be 'train' or 't10k', got {kind!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory not found: '{directory}'")

    images_path = _find_idx_file(
        directory, [f"{kind}-images-idx3-ubyte", f"{kind}-images.idx3-ubyte"]
    )
    labels_path = _find_idx_file(
        directory, [f"{kind}-labels-idx1-ubyte", f"{kind}-labels.idx1-ubyte"]
    )
    X = load_idx(images_path)
    y = load_idx(labels_path)

    if X.dtype != np.uint8 or X.ndim != 3:
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (n, rows, cols), "
            f"got {X.dtype} with shape {X.shape}"
        )
    if y.dtype != np.uint8 or y.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (n,), "
            f"got {y.dtype} with shape {y.shape}"
        )
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"MNIST image and label counts differ: {X.shape[0]} images in '{images_path}', "
            f"{y.shape[0]} labels in '{labels_path}'"
        )
    return X, y


# --------------------------------------------------------------------------------------------
# scikit-learn bundled data sets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """A split, ready-to-train data set.

    Unpacks like scikit-learn's ``train_test_split``:
    ``X_train, X_test, y_train, y_test = ln.datasets.load_iris()``.

    Attributes:
        X_train: float32 features, shape ``(n_train, n_features)``.
        X_test: float32 features, shape ``(n_test, n_features)``.
        y_train: int64 class indices (classification) or float32 targets (regression),
            shape ``(n_train,)``.
        y_test: Same for the test split, ``(n_test,)``.
        feature_names: One name per feature column.
        target_names: Class names, indexed by label (classification); empty for regression.
        task: ``"classification"`` or ``"regression"``.
        mean: Per-feature mean subtracted when ``scale=True`` (fitted on the training split),
            else ``None``. Apply ``(X_new - mean) / scale`` to new data.
        scale: Per-feature standard deviation divided by when ``scale=True``, else ``None``.
    """

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    task: Literal["classification", "regression"]
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int | None:
        """Number of classes, or ``None`` for regression."""
        return len(self.target_names) if self.task == "classification" else None

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.X_train, self.X_test, self.y_train, self.y_test))

    def __repr__(self) -> str:
        # Shapes, not the arrays: a repr that prints thousands of numbers is unreadable.
        return (
            f"Dataset(task={self.task!r}, X_train={self.X_train.shape}, "
            f"X_test={self.X_test.shape}, n_features={self.n_features}, "
            f"n_classes={self.n_classes}, scaled={self.mean is not None})"
        )


def _load_sklearn(
    name: str,
    task: Literal["classification", "regression"],
    split: bool,
    test_size: float,
    seed: int,
    scale: bool,
) -> Dataset | tuple[np.ndarray, np.ndarray]:
    """Shared body of the scikit-learn wrappers: load ``sklearn.datasets.<name>``, cast, split
    (stratified for classification, by :func:`lucidnet.data.splits.train_val_test_split`),
    standardise on the training split."""
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise TypeError(f"test_size must be a float in (0, 1), got {test_size!r}")
    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size must be a float in (0, 1), got {test_size!r}")

    import sklearn.datasets

    bunch = getattr(sklearn.datasets, name)()
    X = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64 if task == "classification" else np.float32)
    if not split:
        return X, y
    # Stratified for classification, so small test splits keep the class proportions.
    rows = train_val_test_split(y, test_size=float(test_size), val_size=0.0, task=task, seed=seed)
    X_train, X_test = X[rows.train], X[rows.test]
    mean = std = None
    if scale:
        X_train, X_test, mean, std = _standardise(X_train, X_test)
    return Dataset(
        X_train=np.ascontiguousarray(X_train),
        X_test=np.ascontiguousarray(X_test),
        y_train=np.ascontiguousarray(y[rows.train]),
        y_test=np.ascontiguousarray(y[rows.test]),
        feature_names=_feature_names(bunch, X.shape[1]),
        target_names=tuple(str(n) for n in bunch.target_names) if task == "classification" else (),
        task=task,
        mean=mean,
        scale=std,
    )


def _standardise(
    X_train: np.ndarray, X_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both parts standardised with the training part's mean and standard deviation (test
    statistics would leak test information); returns them and ``(mean, std)``."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train)
    mean = scaler.mean_.astype(np.float32)
    std = scaler.scale_.astype(np.float32)  # scikit-learn maps zero variance to 1
    return (
        ((X_train - mean) / std).astype(np.float32),
        ((X_test - mean) / std).astype(np.float32),
        mean,
        std,
    )


def _feature_names(bunch: Any, n_features: int) -> tuple[str, ...]:
    # Some bunches hold names as a list, others as an ndarray (whose truth value is ambiguous).
    names = tuple(str(n) for n in getattr(bunch, "feature_names", ()))
    return names if len(names) == n_features else tuple(f"x{i}" for i in range(n_features))


_LOADER_ARGS = """Args:
    split: If True, return a :class:`Dataset` with a train / test split (stratified by class
        for classification). If False, return the whole data set as ``(X, y)``, unscaled:
        there is no training split to fit a scaler on, so fit one on whatever training
        part you make.
    test_size: Fraction of the samples in the test split, in (0, 1).
    seed: Random seed of the split.
    scale: Standardise the features (zero mean, unit variance) with statistics fitted on
        the training split only. Ignored when ``split=False``.

Returns:
    A :class:`Dataset` when ``split=True``, else ``(X, y)``."""


def _loader(func: Callable[..., Any]) -> Callable[..., Any]:
    """Complete a scikit-learn wrapper's docstring with the arguments all of them share."""
    func.__doc__ = inspect.cleandoc(func.__doc__ or "") + "\n\n" + _LOADER_ARGS
    return func


@_loader
def load_digits(
    split: bool = True, test_size: float = 0.2, seed: int = 0, scale: bool = True
) -> Dataset | tuple[np.ndarray, np.ndarray]:
    """Handwritten digits: 1,797 images of 8x8 pixels (values 0-16), 10 classes.

    Features are the 64 pixels, flattened row by row; labels are the digits 0-9 (int64).
    """
    return _load_sklearn("load_digits", "classification", split, test_size, seed, scale)


@_loader
def load_iris(
    split: bool = True, test_size: float = 0.2, seed: int = 0, scale: bool = True
) -> Dataset | tuple[np.ndarray, np.ndarray]:
    """Iris flowers: 150 samples, 4 measurements (cm), 3 species (int64 labels)."""
    return _load_sklearn("load_iris", "classification", split, test_size, seed, scale)


@_loader
def load_breast_cancer(
    split: bool = True, test_size: float = 0.2, seed: int = 0, scale: bool = True
) -> Dataset | tuple[np.ndarray, np.ndarray]:
    """Breast cancer Wisconsin: 569 samples, 30 features, 2 classes.

    Labels are 0 = malignant, 1 = benign (int64), as in scikit-learn.
    """
    return _load_sklearn("load_breast_cancer", "classification", split, test_size, seed, scale)


@_loader
def load_wine(
    split: bool = True, test_size: float = 0.2, seed: int = 0, scale: bool = True
) -> Dataset | tuple[np.ndarray, np.ndarray]:
    """Wine recognition: 178 samples, 13 chemical measurements, 3 cultivars (int64 labels)."""
    return _load_sklearn("load_wine", "classification", split, test_size, seed, scale)


@_loader
def load_diabetes(
    split: bool = True, test_size: float = 0.2, seed: int = 0, scale: bool = True
) -> Dataset | tuple[np.ndarray, np.ndarray]:
    """Diabetes progression (regression): 442 samples, 10 features.

    The target is a disease-progression score one year after baseline (float32, shape (n,)).
    scikit-learn ships these features already centred and scaled over all 442 samples;
    ``scale=True`` refits the standardisation on the training split alone.
    """
    return _load_sklearn("load_diabetes", "regression", split, test_size, seed, scale)
