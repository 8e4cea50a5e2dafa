"""Image data: from a folder of images, a CSV of image paths or IDX files to float arrays.

Three kinds of input give the same thing, ``(n, height, width, channels)`` float32 pixels in
``[0, 1]`` (channels-last, as :class:`lucidnet.Conv2D` takes them) and one target per image:

* a **folder** with one sub-folder per class (``digits/0/a.png``, ``digits/1/b.png``, ...):
  :func:`list_folder`;
* a **CSV file** with a column of image paths (relative to the CSV file's folder) and a
  target column: the caller reads the table and passes the paths (:func:`resolve_paths`);
* **IDX files** (MNIST's format): :func:`read_idx_images`, built on
  :func:`lucidnet.data.datasets.load_idx`.

The preparation is one small object, :class:`ImagePreparation` (size, colour mode, scaling),
chosen from the training images by :func:`choose_preparation`, applied by :func:`load_images`
and kept as JSON in a model file (``to_dict`` / ``from_dict``, checked), so that a trained
model can be given raw images. Pillow decodes PNG / JPEG / BMP (and what else it knows); it
is imported inside the functions, so ``import lucidnet`` never loads it.

Safety: an image whose header declares more than :data:`MAX_PIXELS` pixels is refused before
it is decoded (a "decompression bomb": a few kilobytes of PNG can declare gigapixels), and
Pillow's own bomb check (``Image.MAX_IMAGE_PIXELS``) is set to the same limit for the decoder.
A file that cannot be read or decoded raises :class:`ImageError` naming it (or is skipped and
counted, with ``skip_unreadable=True``).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import json_kind

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "ImageError",
    "ImagePreparation",
    "LoadedImages",
    "choose_preparation",
    "find_idx_pair",
    "input_kind",
    "is_idx_file",
    "list_folder",
    "load_images",
    "looks_like_image_path",
    "path_column_in_head",
    "read_idx_images",
    "resolve_paths",
    "shift_images",
]

_CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
#: the file endings read as images (case-insensitive)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: the most pixels an image may declare (width x height): 40 megapixels, a large photo;
#: beyond it the file is refused before decoding (Pillow's own default is 89 M with a warning)
MAX_PIXELS = 40_000_000
#: the longest side of the automatic size: larger images are scaled down (aspect kept), so
#: that a folder of photos does not become a network input of millions of values
MAX_AUTO_SIDE = 64
#: the largest size ``--image-size`` accepts per side
MAX_SIDE = 1024
_MODES = {"gray": "L", "rgb": "RGB"}
_CHANNELS = {"gray": 1, "rgb": 3}
#: Pillow modes that hold one grey value per pixel
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


class ImageError(ValueError):
    """A user's image data cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class ImagePreparation:
    """How raw images become network inputs: resized to ``height x width`` (bilinear), converted
    to ``color`` (``"gray"``: 1 channel, ``"rgb"``: 3), pixel values divided by 255.

    Attributes:
        height, width: the size every image is resized to, in pixels.
        color: ``"gray"`` or ``"rgb"``.
        reason: how the size and colour were chosen (shown to the user; not needed to predict).
    """

    height: int
    width: int
    color: str
    reason: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        """The per-image input shape ``(height, width, channels)``."""
        return (self.height, self.width, _CHANNELS[self.color])

    def describe(self) -> str:
        """One line: ``28x28 gray, pixels / 255 -> [0, 1]``."""
        return f"{self.width}x{self.height} {self.color}, pixels / 255 -> [0, 1]"

    def summary(self) -> str:
        """For ``lucidnet info``: what is done to every image, and why this size and colour."""
        return f"Image preparation: {self.describe()}, bilinear resizing ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state, read back by :meth:`from_dict`."""
        return {
            "height": self.height,
            "width": self.width,
            "color": self.color,
            "scaling": "divide_by_255",
            "resample": "bilinear",
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ImagePreparation:
        """The preparation stored by :meth:`to_dict`, checked field by field.

        Raises:
            ValueError: a field is missing or malformed (the message names it).
        """
        keys = {"height", "width", "color", "scaling", "resample", "reason"}
        if not isinstance(d, dict) or set(d) != keys:
            found = sorted(d)[:8] if isinstance(d, dict) else json_kind(d)
            raise ValueError(f"expected an object with the keys {sorted(keys)}, got {found}")
        for side in ("height", "width"):
            v = d[side]
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIDE:
                raise ValueError(f"'{side}': expected an integer in [1, {MAX_SIDE}], got {v!r}")
        if d["color"] not in _MODES:
            raise ValueError(f"'color': expected 'gray' or 'rgb', got {json_kind(d['color'])}")
        if d["scaling"] != "divide_by_255" or d["resample"] != "bilinear":
            raise ValueError(
                "'scaling' / 'resample': expected 'divide_by_255' / 'bilinear' (the only ones "
                f"this version applies), got {d['scaling']!r} / {d['resample']!r}"
            )
        if not isinstance(d["reason"], str):
            raise ValueError(f"'reason': expected a string, got {json_kind(d['reason'])}")
        return cls(d["height"], d["width"], d["color"], d["reason"])


@dataclass(frozen=True)
class LoadedImages:
    """Images as network inputs.

    Attributes:
        X: float32 ``(n, height, width, channels)`` in ``[0, 1]``.
        kept: indices (into the paths given) of the images in ``X``, int64 ``(n,)``: all of
            them unless unreadable files were skipped.
        skipped: ``(path, reason)`` of each skipped file.
    """

    X: np.ndarray
    kept: np.ndarray
    skipped: tuple[tuple[str, str], ...] = ()


# ------------------------------------------------------------------------------------------------
# finding the images
# ------------------------------------------------------------------------------------------------


def looks_like_image_path(value: Any) -> bool:
    """Whether ``value`` is text ending in an image file suffix (``a/b.PNG``)."""
    return isinstance(value, str) and value.lower().endswith(IMAGE_SUFFIXES)


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (any depth), sorted, hidden files left out."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if looks_like_image_path(f) and f[0] != "."]
    return found


def list_folder(folder: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """The images of a folder with one sub-folder per class.

    Args:
        folder: the folder; each sub-folder's name is a class, the image files in it (at any
            depth) its examples. Image files directly in ``folder`` are an error (no class).

    Returns:
        ``(paths, y, classes)``: the image paths (sorted by class, then name), int64 class
        indices ``(n,)`` into ``classes`` (the sub-folder names, sorted).

    Raises:
        ImageError: not a folder, no class sub-folders, fewer than 2 classes with images, or
            images lying directly in ``folder``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ImageError(f"'{folder}' is not a folder")
    loose = [
        p.name for p in sorted(root.iterdir()) if p.is_file() and looks_like_image_path(p.name)
    ]
    if loose:
        raise ImageError(
            f"'{folder}' has image files directly in it ({loose[0]!r}, ...): put each class's "
            "images in a sub-folder named after the class (e.g. cats/, dogs/)"
        )
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = {p.name: _image_files(p) for p in subs}
    classes = [c for c, files in per_class.items() if files]
    if not classes:
        raise ImageError(
            f"'{folder}' has no images: expected one sub-folder per class with image files "
            f"({', '.join(IMAGE_SUFFIXES[:4])}) in it; found {len(subs)} sub-folder(s)"
        )
    if len(classes) < 2:
        raise ImageError(
            f"'{folder}' has images of a single class ({classes[0]!r}): classification needs "
            "at least 2 class sub-folders with images"
        )
    paths = [str(f) for c in classes for f in per_class[c]]
    y = np.concatenate([np.full(len(per_class[c]), i, np.int64) for i, c in enumerate(classes)])
    return paths, y, classes


def resolve_paths(values: Sequence[Any], base: str | os.PathLike[str], column: str) -> list[str]:
    """The image paths of a CSV column, relative ones taken from the CSV file's folder ``base``.

    Raises:
        ImageError: an empty cell, or a path that is not a file (the first one, with its row).
    """
    out = []
    for row, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise ImageError(f"column {column!r}, row {row + 1}: no image path (empty cell)")
        p = Path(v.strip())
        p = p if p.is_absolute() else Path(base) / p
        if not p.is_file():
            raise ImageError(f"column {column!r}, row {row + 1}: image file '{p}' not found")
        out.append(str(p))
    return out


def input_kind(path: str, image_column: str | None = None) -> str | None:
    """``"folder"``, ``"idx"`` or ``"csv"`` when ``path`` holds images, else None (a table).

    A folder holding an IDX images file is ``"idx"``; any other folder ``"folder"``.

    A CSV counts as images when ``image_column`` is given or a column's first values all end in
    an image suffix (``.png``, ``.jpg``, ...)."""
    if os.path.isdir(path):
        has_idx = any("images" in f.name and is_idx_file(f) for f in Path(path).iterdir())
        return "idx" if has_idx else "folder"
    if not os.path.isfile(path):
        return None
    if is_idx_file(path):
        return "idx"
    if image_column is not None:
        return "csv"
    if path.lower().endswith(_CSV_SUFFIXES) and path_column_in_head(path) is not None:
        return "csv"
    return None


def _head_rows(path: str, n: int = 21) -> list[list[str]]:
    """The first ``n`` rows of a (possibly gzip-compressed) delimited text file."""
    import gzip

    opener: Any = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
            lines = [line for _, line in zip(range(n), fh, strict=False)]
    except (OSError, EOFError):
        return []
    if not lines:
        return []
    counts = {d: lines[0].count(d) for d in ",;\t|"}
    sep = max(counts, key=counts.__getitem__)
    return list(csv.reader(lines, delimiter=sep))


def path_column_in_head(path: str) -> str | None:
    """The first column whose first values are all image paths, or None."""
    rows = _head_rows(path)
    if len(rows) < 2:
        return None
    header, body = rows[0], rows[1:]
    for j, name in enumerate(header):
        values = [r[j] for r in body if j < len(r) and r[j].strip()]
        if values and all(looks_like_image_path(v.strip()) for v in values):
            return name
    return None


def is_idx_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a file that starts like an IDX file (raw or gzip-compressed)."""
    import gzip

    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if head[:2] == b"\x1f\x8b":
                fh.seek(0)
                with gzip.open(fh) as gz:
                    head = gz.read(4)
    except (OSError, EOFError):
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and head[2] in (8, 9, 11, 12, 13, 14)


def find_idx_pair(path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """``(images file, labels file or None)`` for an IDX images file or a folder holding one.

    The labels file is found by name: ``images`` -> ``labels`` and ``idx3`` -> ``idx1``
    (``t10k-images-idx3-ubyte.gz`` -> ``t10k-labels-idx1-ubyte.gz``).

    Raises:
        ImageError: a folder without exactly one ``*images*`` IDX file.
    """
    p = Path(path)
    if p.is_dir():
        found = sorted(f for f in p.iterdir() if "images" in f.name and is_idx_file(f))
        if len(found) != 1:
            names = ", ".join(f.name for f in found) or "none"
            raise ImageError(
                f"'{path}': expected one IDX images file (a name with 'images') in the folder, "
                f"found {names}; give the file itself"
            )
        p = found[0]
    labels = p.with_name(p.name.replace("images", "labels").replace("idx3", "idx1"))
    return p, labels if labels != p and labels.is_file() else None


def read_idx_images(
    images: str | os.PathLike[str], labels: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """IDX images as uint8 ``(n, height, width, channels)`` and their labels ``(n,)`` or None.

    Raises:
        ImageError: a malformed file (:func:`lucidnet.data.datasets.load_idx`'s message), images
            that are not uint8 of rank 3 (gray) or 4 (channels last, 1 or 3 channels), labels
            that are not one integer per image.
    """
    from .datasets import load_idx

    try:
        X = load_idx(images)
        y = None if labels is None else load_idx(labels)
    except ValueError as exc:
        raise ImageError(str(exc)) from None
    if X.dtype != np.uint8 or X.ndim not in (3, 4) or (X.ndim == 4 and X.shape[3] not in (1, 3)):
        raise ImageError(
            f"'{images}': expected uint8 images of shape (n, height, width) or (n, height, "
            f"width, 1 or 3), got {X.dtype} with shape {X.shape}"
        )
    if min(X.shape) == 0:
        raise ImageError(f"'{images}' holds no images (shape {X.shape})")
    if X.ndim == 3:
        X = X[..., None]
    if y is not None and (y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(X)):
        raise ImageError(
            f"'{labels}': expected one integer label per image ({len(X)}), got {y.dtype} with "
            f"shape {y.shape}"
        )
    return X, y


# ------------------------------------------------------------------------------------------------
# choosing the preparation
# ------------------------------------------------------------------------------------------------


def _pil() -> Any:
    """Pillow's Image module with its bomb limit set to ours; a clear error without Pillow."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover (Pillow is in the images / dev extras)
        raise ImageError(
            "reading images needs Pillow: pip install 'lucidnet[images]' (or pip install pillow)"
        ) from None
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    return Image


def _open(path: str) -> Any:
    """The image opened lazily (header only), its declared size checked against MAX_PIXELS."""
    import warnings

    Image = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"'{path}': refused, too many pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise ImageError(f"'{path}': not a readable image ({_short(exc)})") from None
    w, h = im.size
    if w * h > MAX_PIXELS or min(w, h) < 1:
        im.close()
        raise ImageError(
            f"'{path}': refused, the image declares {w} x {h} = {w * h:,} pixels "
            f"(the limit is {MAX_PIXELS:,}: a decompression bomb, or far larger than needed)"
        )
    return im


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def parse_size(text: str) -> tuple[int, int]:
    """``"28"`` -> (28, 28); ``"32x48"`` (width x height) -> (height 48, width 32).

    Raises:
        ValueError: not ``N`` or ``WxH`` with sides in [1, MAX_SIDE].
    """
    parts = text.lower().replace(" ", "").split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or not all(1 <= s <= MAX_SIDE for s in sides):
        raise ValueError(
            f"expected N or WIDTHxHEIGHT with sides from 1 to {MAX_SIDE} (e.g. 28 or 32x48), "
            f"got {text!r}"
        )
    return (sides[-1], sides[0])


def choose_preparation(
    paths: Sequence[str],
    size: tuple[int, int] | None = None,
    color: str = "auto",
    *,
    skip_unreadable: bool = False,
) -> ImagePreparation:
    """The preparation for these images, reading only their headers.

    Args:
        paths: the training images.
        size: ``(height, width)``, or None: the most common size among the images, scaled
            down (aspect kept) so that its longer side is at most :data:`MAX_AUTO_SIDE`.
        color: ``"gray"``, ``"rgb"`` or ``"auto"``: gray when every image's mode is a grey
            one (``L``, ``1``, ``I;16``, ...), else RGB (an RGB file whose three channels are
            equal still counts as RGB: telling would mean decoding every image twice).
        skip_unreadable: leave files whose header cannot be read out of the choice (they
            are skipped again when loaded) instead of raising.

    Raises:
        ImageError: an unreadable or oversized file (named), ``color`` not one of the three.
    """
    if color not in ("auto", "gray", "rgb"):
        raise ImageError(f"color must be 'auto', 'gray' or 'rgb', got {color!r}")
    sizes: Counter[tuple[int, int]] = Counter()
    gray = True
    for p in paths:
        try:
            im = _open(p)
        except ImageError:
            if skip_unreadable:
                continue
            raise
        sizes[(im.size[1], im.size[0])] += 1
        gray = gray and im.mode in _GRAY_MODES
        im.close()
    if not sizes:
        raise ImageError(f"none of the {len(paths)} images could be read")
    if color == "auto":
        color = "gray" if gray else "rgb"
        how_color = "every image is gray" if gray else "some images have colour"
    else:
        how_color = "set with --color"
    if size is not None:
        h, w = size
        how = "set with --image-size"
    else:
        (h, w), n = sizes.most_common(1)[0]
        how = f"the most common size, {n} of {len(paths)} images"
        if max(h, w) > MAX_AUTO_SIDE:
            f = MAX_AUTO_SIDE / max(h, w)
            h, w = max(1, round(h * f)), max(1, round(w * f))
            how += f", scaled down to a longest side of {MAX_AUTO_SIDE} (--image-size to change)"
    return ImagePreparation(h, w, color, f"size: {how}; {color}: {how_color}")


# ------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------


def _decode(path: str, prep: ImagePreparation) -> np.ndarray:
    """One image as uint8 ``(height, width, channels)``, resized and converted."""
    Image = _pil()
    im = _open(path)
    try:
        with im:
            # JPEG: let the decoder scale down by 2/4/8 first (far faster for photos)
            im.draft("L" if prep.color == "gray" else "RGB", (prep.width, prep.height))
            if im.mode not in ("L", "RGB"):
                # 16-bit / float grey: to 8 bits by its range, not Pillow's clipping at 255
                if im.mode.startswith("I") or im.mode == "F":
                    a = np.asarray(im, dtype=np.float64)
                    top = _full_scale(im.mode, float(a.max()) if a.size else 0.0)
                    im = Image.fromarray(np.clip(a / top * 255.0, 0, 255).astype(np.uint8))
                elif "A" in im.mode or im.mode == "P":  # transparent pixels over white
                    rgba = im.convert("RGBA")
                    back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(back, rgba)
            im = im.convert(_MODES[prep.color])
            if im.size != (prep.width, prep.height):
                im = im.resize((prep.width, prep.height), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated / corrupt data
        raise ImageError(f"'{path}': cannot decode the image ({_short(exc)})") from None
    return a[..., None] if a.ndim == 2 else a


def _full_scale(mode: str, peak: float) -> float:
    """The value that is white in a 16-bit, 32-bit or float gray image: the format's own for
    16 bits; otherwise the smallest of 1 (floats in [0, 1]), 255 and 65535 that holds the
    image's peak (the same for every image of a data set, unlike the peak itself)."""
    if mode.startswith("I;16"):
        return 65535.0
    for top in ((1.0,) if mode == "F" else ()) + (255.0, 65535.0):
        if peak <= top:
            return top
    return peak


def load_images(
    paths: Sequence[str], prep: ImagePreparation, *, skip_unreadable: bool = False
) -> LoadedImages:
    """Decode, resize, convert and scale images into one float32 array.

    Args:
        paths: image files.
        prep: the preparation (from :func:`choose_preparation`, or a model file).
        skip_unreadable: leave out files that cannot be read (each listed in ``skipped``)
            instead of raising at the first.

    Returns:
        :class:`LoadedImages`: ``X`` of shape ``(kept, height, width, channels)`` in ``[0, 1]``.

    Raises:
        ImageError: a file cannot be read (named; unless ``skip_unreadable``), or none can.
    """
    out = np.empty((len(paths), *prep.shape), dtype=np.uint8)
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    for i, p in enumerate(paths):
        try:
            out[len(kept)] = _decode(p, prep)
        except ImageError as exc:
            if not skip_unreadable:
                raise
            skipped.append((p, str(exc)))
            continue
        kept.append(i)
    if not kept:
        raise ImageError(f"none of the {len(paths)} images could be read ({skipped[0][1]})")
    return LoadedImages(scale(out[: len(kept)]), np.asarray(kept, np.int64), tuple(skipped))


def scale(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] (divided by 255), the one scaling images get."""
    return pixels.astype(np.float32) * np.float32(1.0 / 255.0)


def resize_array(pixels: np.ndarray, prep: ImagePreparation) -> np.ndarray:
    """uint8 images ``(n, h, w, c)`` (IDX) brought to ``prep``: resized (bilinear, as files
    are) and converted to its colour (gray -> RGB repeats the channel; RGB -> gray uses
    Pillow's ITU-R 601-2 luma, as files are)."""
    Image = _pil()
    n, h, w, c = pixels.shape
    if (h, w) == (prep.height, prep.width) and c == prep.shape[2]:
        return pixels
    out = np.empty((n, *prep.shape), dtype=np.uint8)
    for i in range(n):
        im = Image.fromarray(pixels[i, :, :, 0] if c == 1 else pixels[i])
        im = im.convert(_MODES[prep.color])
        if im.size != (prep.width, prep.height):
            im = im.resize((prep.width, prep.height), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        out[i] = a[..., None] if a.ndim == 2 else a
    return out


# ------------------------------------------------------------------------------------------------
# augmentation
# ------------------------------------------------------------------------------------------------


def shift_images(
    X: np.ndarray,
    rng: np.random.Generator,
    max_shift: int = 2,
    flip: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Each image moved by a random whole number of pixels (and mirrored left-right at random
    with ``flip``), the uncovered border filled with zeros: the training-time augmentation.

    Shifts are drawn uniformly from ``[-max_shift, max_shift]`` per image and axis. Flips are
    off by default because they change what many images mean (a mirrored 2 is no digit).

    Args:
        X: ``(n, height, width, channels)`` images.
        rng: the generator the shifts and flips are drawn from (seeded by the caller).
        max_shift: the largest shift in pixels, >= 0.
        flip: mirror half of the images (chosen at random) left-right.
        out: array of ``X``'s shape to write into (may not be ``X`` itself); new if None.

    Returns:
        The shifted images, ``X``'s shape and dtype.
    """
    n, h, w = X.shape[:3]
    out = np.empty_like(X) if out is None else out
    out[...] = 0
    dy = rng.integers(-max_shift, max_shift + 1, size=n)
    dx = rng.integers(-max_shift, max_shift + 1, size=n)
    mirror = rng.random(n) < 0.5 if flip else np.zeros(n, dtype=bool)
    # one slice copy per distinct shift, not per image
    for sy in range(-max_shift, max_shift + 1):
        for sx in range(-max_shift, max_shift + 1):
            rows = np.flatnonzero((dy == sy) & (dx == sx))
            if rows.size == 0:
                continue
            src = X[rows, max(0, -sy) : h - max(0, sy), max(0, -sx) : w - max(0, sx)]
            out[rows, max(0, sy) : h - max(0, -sy), max(0, sx) : w - max(0, -sx)] = src
    if mirror.any():
        out[mirror] = out[mirror, :, ::-1]
    return out
