"""Tests of :mod:`lucidnet.data.images`: finding images (class folders, CSV paths, IDX pairs),
choosing and applying the preparation (size, colour, scaling), unreadable and oversized files,
the stored preparation's checks, and the shift augmentation. Every image is generated here."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from lucidnet.data import images as im


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return str(path)


def gray(h=12, w=10, value=0):
    a = np.full((h, w), value, np.uint8)
    a[2:5, 3:7] = 255
    return a


def write_idx(path, array, code=0x08):
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


# ---- finding the images --------------------------------------------------------------------


def test_list_folder_classes_sorted_and_nested(tmp_path):
    save(tmp_path / "cat" / "a.png", gray())
    save(tmp_path / "cat" / "deep" / "b.PNG", gray())
    save(tmp_path / "dog" / "c.jpg", np.stack([gray()] * 3, -1))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    paths, y, classes = im.list_folder(tmp_path)
    assert classes == ["cat", "dog"]  # the empty sub-folder is no class
    assert [p.split("/")[-1] for p in paths] == ["a.png", "b.PNG", "c.jpg"]
    assert y.tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "has no images"),
        ({"only/a.png": 1}, "single class"),
        ({"a.png": 1, "b/c.png": 1}, "directly in it"),
    ],
)
def test_list_folder_errors(tmp_path, layout, message):
    for name in layout:
        save(tmp_path / name, gray())
    with pytest.raises(im.ImageError, match=message):
        im.list_folder(tmp_path)


def test_list_folder_not_a_folder(tmp_path):
    with pytest.raises(im.ImageError, match="is not a folder"):
        im.list_folder(tmp_path / "missing")


def test_resolve_paths_relative_to_base_and_errors(tmp_path):
    save(tmp_path / "img" / "a.png", gray())
    assert im.resolve_paths(["img/a.png"], tmp_path, "file") == [str(tmp_path / "img" / "a.png")]
    with pytest.raises(im.ImageError, match=r"row 2: image file .*b\.png' not found"):
        im.resolve_paths(["img/a.png", "img/b.png"], tmp_path, "file")
    with pytest.raises(im.ImageError, match="row 1: no image path"):
        im.resolve_paths([float("nan")], tmp_path, "file")


def test_input_kind(tmp_path):
    save(tmp_path / "f" / "a" / "x.png", gray())
    (tmp_path / "t.csv").write_text("x,y\n1,2\n3,4\n")
    (tmp_path / "p.csv").write_text("path;count\nf/a/x.png;3\nf/a/x.png;4\n")
    idx = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 4, 4), np.uint8))
    assert im.input_kind(str(tmp_path / "f")) == "folder"
    assert im.input_kind(str(tmp_path / "t.csv")) is None
    assert im.input_kind(str(tmp_path / "t.csv"), "x") == "csv"
    assert im.input_kind(str(tmp_path / "p.csv")) == "csv"
    assert im.path_column_in_head(str(tmp_path / "p.csv")) == "path"
    assert im.input_kind(str(idx)) == "idx"
    assert im.input_kind(str(tmp_path)) == "idx"  # a folder holding the IDX images file
    assert im.input_kind(str(tmp_path / "missing")) is None


def test_idx_pair_and_read(tmp_path):
    X = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    write_idx(tmp_path / "train-images-idx3-ubyte", X)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 0, 1], np.uint8))
    images, labels = im.find_idx_pair(tmp_path)
    assert labels is not None and labels.name == "train-labels-idx1-ubyte"
    pixels, y = im.read_idx_images(images, labels)
    assert pixels.shape == (3, 4, 5, 1) and np.array_equal(pixels[..., 0], X)
    assert y.tolist() == [1, 0, 1]
    write_idx(tmp_path / "bad-labels", np.array([1, 0], np.uint8))
    with pytest.raises(im.ImageError, match="one integer label per image"):
        im.read_idx_images(images, tmp_path / "bad-labels")
    write_idx(tmp_path / "floats", np.zeros((2, 3, 3), np.float32), code=0x0D)
    with pytest.raises(im.ImageError, match="expected uint8 images"):
        im.read_idx_images(tmp_path / "floats", None)


# ---- the preparation -----------------------------------------------------------------------


def test_choose_most_common_size_and_gray(tmp_path):
    paths = [save(tmp_path / f"{i}.png", gray(12, 10)) for i in range(3)]
    paths.append(save(tmp_path / "odd.png", gray(30, 30)))
    prep = im.choose_preparation(paths)
    assert (prep.height, prep.width, prep.color) == (12, 10, "gray")
    assert "3 of 4 images" in prep.reason and prep.shape == (12, 10, 1)


def test_choose_rgb_when_any_colour_and_big_images_scaled_down(tmp_path):
    paths = [save(tmp_path / "g.png", gray(200, 100))]
    paths.append(save(tmp_path / "c.png", np.zeros((200, 100, 3), np.uint8)))
    prep = im.choose_preparation(paths)
    assert prep.color == "rgb" and (prep.height, prep.width) == (64, 32)  # longest side 64
    forced = im.choose_preparation(paths, size=(8, 9), color="gray")
    assert (forced.height, forced.width, forced.color) == (8, 9, "gray")


def test_load_images_resizes_converts_and_scales(tmp_path):
    a = np.zeros((4, 6, 3), np.uint8)
    a[..., 0] = 255  # pure red
    p = save(tmp_path / "red.png", a)
    g = save(tmp_path / "g.bmp", np.full((8, 12), 51, np.uint8))
    rgb = im.load_images([p, g], im.ImagePreparation(2, 3, "rgb"))
    assert rgb.X.shape == (2, 2, 3, 3) and rgb.X.dtype == np.float32
    np.testing.assert_allclose(rgb.X[0, ..., 0], 1.0)
    np.testing.assert_allclose(rgb.X[0, ..., 1:], 0.0)
    np.testing.assert_allclose(rgb.X[1], 0.2, atol=1e-6)  # 51 / 255, the same in each channel
    luma = im.load_images([p], im.ImagePreparation(4, 6, "gray")).X
    np.testing.assert_allclose(luma, 76 / 255, atol=1e-6)  # ITU-R 601-2: 0.299 * 255


def test_load_16_bit_gray_by_its_range(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(path)
    X = im.load_images([str(path)], im.ImagePreparation(4, 4, "gray")).X
    np.testing.assert_allclose(X, 1.0)  # not clipped to 255 / 255 of a garbage value


def test_corrupt_file_named_or_skipped(tmp_path):
    good = save(tmp_path / "good.png", gray())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    prep = im.ImagePreparation(12, 10, "gray")
    with pytest.raises(im.ImageError, match=r"bad\.png': not a readable image"):
        im.load_images([good, str(bad)], prep)
    out = im.load_images([good, str(bad)], prep, skip_unreadable=True)
    assert out.kept.tolist() == [0] and len(out.X) == 1 and out.skipped[0][0] == str(bad)
    with pytest.raises(im.ImageError, match="none of the 1 images"):
        im.load_images([str(bad)], prep, skip_unreadable=True)


def test_truncated_file_is_a_decode_error(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(im.ImageError, match=r"cut\.png'"):
        im.load_images([str(path)], im.ImagePreparation(8, 8, "gray"))


def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    path = save(tmp_path / "big.png", np.zeros((100, 100), np.uint8))
    monkeypatch.setattr(im, "MAX_PIXELS", 5_000)
    with pytest.raises(im.ImageError, match="too many pixels|declares 100 x 100"):
        im.choose_preparation([path])
    with pytest.raises(im.ImageError, match=r"big\.png': refused"):
        im.load_images([path], im.ImagePreparation(8, 8, "gray"))


def test_preparation_round_trip_and_checks():
    prep = im.ImagePreparation(28, 20, "rgb", "why")
    assert im.ImagePreparation.from_dict(prep.to_dict()) == prep
    for key, value, message in [
        ("height", 0, "'height'"),
        ("width", True, "'width'"),
        ("color", "cmyk", "'color'"),
        ("scaling", "standard", "'scaling'"),
        ("reason", 3, "'reason'"),
    ]:
        with pytest.raises(ValueError, match=message):
            im.ImagePreparation.from_dict({**prep.to_dict(), key: value})
    with pytest.raises(ValueError, match="expected an object"):
        im.ImagePreparation.from_dict([1, 2])


@pytest.mark.parametrize(("text", "size"), [("28", (28, 28)), ("32x48", (48, 32))])
def test_parse_size(text, size):
    assert im.parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "x", "3x4x5", "2000"])
def test_parse_size_errors(text):
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        im.parse_size(text)


def test_resize_array_matches_files(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (2, 9, 7, 1), dtype=np.uint8)
    prep = im.ImagePreparation(5, 4, "gray")
    paths = [save(tmp_path / f"{i}.png", pixels[i, ..., 0]) for i in range(2)]
    from_files = im.load_images(paths, prep).X
    np.testing.assert_array_equal(im.scale(im.resize_array(pixels, prep)), from_files)


# ---- augmentation --------------------------------------------------------------------------


def test_shift_images_moves_content_and_zero_fills():
    X = np.zeros((200, 7, 7, 1), np.float32)
    X[:, 3, 3, 0] = 1.0  # one bright pixel in the middle
    out = im.shift_images(X, np.random.default_rng(0), max_shift=2)
    assert out.shape == X.shape and np.array_equal(out.sum(axis=(1, 2, 3)), X.sum(axis=(1, 2, 3)))
    rows, cols = np.nonzero(out[..., 0])[1:]
    assert set(rows) == set(range(1, 6)) and set(cols) == set(range(1, 6))  # all 25 shifts used
    again = im.shift_images(X, np.random.default_rng(0), max_shift=2)
    assert np.array_equal(out, again)  # seeded
    assert np.array_equal(im.shift_images(X, np.random.default_rng(0), max_shift=0), X)


def test_shift_images_edge_content_falls_off():
    X = np.zeros((50, 4, 4, 1), np.float32)
    X[:, 0, :, 0] = 1.0  # the top row
    out = im.shift_images(X, np.random.default_rng(3), max_shift=1)
    sums = out.sum(axis=(1, 2, 3))
    assert set(np.unique(sums)) <= {0.0, 3.0, 4.0}  # lost off the top / a corner, or kept


def test_flip_only_when_asked():
    X = np.zeros((100, 3, 3, 1), np.float32)
    X[:, 1, 0, 0] = 1.0  # left edge
    plain = im.shift_images(X, np.random.default_rng(0), max_shift=0)
    assert np.array_equal(plain, X)
    flipped = im.shift_images(X, np.random.default_rng(0), max_shift=0, flip=True)
    right = flipped[:, 1, 2, 0] == 1.0
    assert 20 < right.sum() < 80 and np.array_equal(flipped[~right], X[~right])


def test_jpeg_drafted_and_resized(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.full((64, 96, 3), (200, 100, 50), np.uint8)).save(path, quality=95)
    X = im.load_images([str(path)], im.ImagePreparation(8, 12, "rgb")).X
    assert X.shape == (1, 8, 12, 3)
    np.testing.assert_allclose(X[0].mean(axis=(0, 1)), np.array([200, 100, 50]) / 255, atol=0.03)


def test_palette_and_transparency_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    path = save(tmp_path / "clear.png", rgba, mode="RGBA")
    X = im.load_images([path], im.ImagePreparation(4, 4, "gray")).X
    np.testing.assert_allclose(X, 1.0)  # shown as on a white page, not as black


def test_full_scale_of_deep_gray_images():
    assert im._full_scale("I;16", 10.0) == 65535.0
    assert im._full_scale("I", 200.0) == 255.0 and im._full_scale("I", 4000.0) == 65535.0
    assert im._full_scale("F", 0.5) == 1.0 and im._full_scale("F", 1e6) == 1e6
