"""End-to-end tests of ``lucidnet train / predict / evaluate / info`` on images: a folder of
class sub-folders (scikit-learn's digits written as upscaled PNGs), a CSV file with an image-path
column (a count target: squares to count, fitted with the Poisson loss), IDX files, the image
preparation stored in and checked from the model file, augmentation, and bad inputs (one line
on stderr, exit status 2). Every image is generated here; nothing reads ../shared."""

from __future__ import annotations

import gzip
import io
import json
import struct

import numpy as np
import pandas as pd
import pytest
from _cli import run
from PIL import Image

import lucidnet as ln

PER_CLASS = 30  # digits images per class written (4 classes: quick, and still learnable)
CLASSES = (0, 1, 4, 7)


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lucidnet: error: "), err
    for f in fragments:
        assert f in lines[0], lines[0]


def digit_images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits of CLASSES, PER_CLASS each, as uint8 16x16 images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rows = np.concatenate([np.flatnonzero(d.target == c)[:PER_CLASS] for c in CLASSES])
    pixels = (d.images[rows] / 16 * 255).astype(np.uint8)
    return np.repeat(np.repeat(pixels, 2, axis=1), 2, axis=2), d.target[rows]


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits") / "digits"
    X, y = digit_images()
    for i, (img, label) in enumerate(zip(X, y, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / str(label) / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def trained(digits_folder, tmp_path_factory):
    """The default CNN trained on the digits folder: (model path, stdout)."""
    out = tmp_path_factory.mktemp("model") / "digits.lnet"
    code, stdout, err = run(
        [
            "train", digits_folder, "--out", out, "--epochs", 12, "--seed", 1,
            "--metrics-json", out.with_suffix(".json"), "--no-diagnostics",
        ]
    )  # fmt: skip
    assert code == 0, err
    return out, stdout


def test_train_folder_cnn_prints_preparation_and_network(trained):
    path, stdout = trained
    assert "Data: " in stdout and "(folder), 120 images" in stdout
    assert "Images: 16x16 gray, pixels / 255 -> [0, 1]" in stdout
    assert "the most common size, 120 of 120 images" in stdout
    assert "Split: 84 train / 12 validation / 24 test (stratified)" in stdout
    assert "Network (cnn):" in stdout and "Conv2D(32, 3, activation='relu')" in stdout
    assert "MaxPool2D" in stdout and "logistic regression" in stdout
    metrics = json.loads(path.with_suffix(".json").read_text())
    assert metrics["test"]["accuracy"] >= 0.75  # 4 well-separated digits, 12 epochs
    assert metrics["images"]["preparation"]["height"] == 16


def test_model_file_holds_the_preparation(trained):
    model = ln.load(trained[0])
    meta = model.metadata
    assert meta["images"]["preparation"]["color"] == "gray"
    assert meta["images"]["input"] == "folder" and meta["classes"] == ["0", "1", "4", "7"]
    assert model.input_shape == (16, 16, 1)


def test_predict_raw_images_and_evaluate(trained, digits_folder, tmp_path):
    path, _ = trained
    out = tmp_path / "pred.csv"
    code, _, err = run(["predict", path, digits_folder, "--out", out])
    assert code == 0, err
    table = pd.read_csv(out)
    assert list(table.columns) == ["image", "prediction"] + [f"proba_{c}" for c in CLASSES]
    assert len(table) == 4 * PER_CLASS
    np.testing.assert_allclose(table.filter(like="proba_").sum(axis=1), 1.0, atol=1e-4)
    truth = table["image"].map(lambda p: int(p.split("/")[-2]))
    assert (table["prediction"] == truth).mean() >= 0.8
    # one image file, of another size: resized to the model's 16x16
    single = tmp_path / "one.png"
    Image.open(digits_folder / "7" / sorted(p.name for p in (digits_folder / "7").iterdir())[0]
               ).resize((40, 40)).save(single)  # fmt: skip
    code, stdout, err = run(["predict", path, single])
    assert code == 0, err
    assert stdout.splitlines()[1].startswith(str(single))
    code, stdout, err = run(
        ["evaluate", path, digits_folder, "--metrics-json", tmp_path / "m.json"]
    )
    assert code == 0, err
    assert f"'{digits_folder}' ({4 * PER_CLASS} rows): accuracy" in stdout
    assert json.loads((tmp_path / "m.json").read_text())["rows"] == 4 * PER_CLASS


def test_info_shows_the_image_preparation(trained):
    code, stdout, err = run(["info", trained[0]])
    assert code == 0, err
    assert "Image preparation: 16x16 gray" in stdout and "Conv2D" in stdout


def test_explain_an_image_row(trained, digits_folder):
    code, out, err = run(["explain", trained[0], digits_folder, "--row", 31])
    assert code == 0, err
    first = out.splitlines()[0]  # rows in predict's order: the class sub-folders, sorted
    assert first.startswith("Image '") and "(row 31 of 120), 16x16 gray" in first
    assert "label '1' from its class sub-folder" in first
    assert "[sample, row, column, channel]" in out
    assert "one output value worked out" in out and "one kernel weight's gradient" in out
    assert "whole layer recomputed from its patches" in out
    code, out, err = run(["explain", trained[0], digits_folder, "--row", 0, "--json"])
    assert code == 0, err
    step = json.loads(out)  # stdout is the JSON only
    assert step["x"]["shape"] == [1, 16, 16, 1] and step["y"] == [0]


def test_gradcheck_an_image_model(trained, digits_folder):
    code, out, err = run(["gradcheck", trained[0], digits_folder, "--rows", 4])
    assert code == 0, out + err
    assert "PASSED" in out and "less than one grey level" in out
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[-1] in ("ok", "FAIL") and "/" in parts[-4]:
            rows[parts[0]] = (int(parts[-4].split("/")[0]), float(parts[-3]))
    assert {"conv2d_0/W", "conv2d_2/W", "dense_8/b", "input"} <= set(rows)
    for name, (checked, rel) in rows.items():  # real comparisons, float64 agreement
        assert checked > 0 and rel < 1e-6, (name, checked, rel)


def test_explain_and_gradcheck_take_what_predict_takes(trained, tmp_path):
    X, y = digit_images()
    write_idx(tmp_path / "d-images-idx3-ubyte.gz", X[:6])
    write_idx(tmp_path / "d-labels-idx1-ubyte.gz", y[:6])
    code, out, err = run(["explain", trained[0], tmp_path / "d-images-idx3-ubyte.gz", "--row", 2])
    assert code == 0, err
    assert "'d-images-idx3-ubyte.gz#2' (row 2 of 6)" in out and "the IDX labels file" in out
    pd.DataFrame({"path": [f"img{i}.png" for i in range(3)]}).to_csv(tmp_path / "l.csv")
    for i in range(3):
        Image.fromarray(X[i]).save(tmp_path / f"img{i}.png")
    code, out, err = run(["explain", trained[0], tmp_path / "l.csv", "--row", 1])
    assert code == 0, err  # no target column: the model's own prediction, said on stderr
    assert "no labels; using the model's prediction" in err and "Image 'img1.png'" in out
    code, _, err = run(["gradcheck", trained[0], tmp_path / "l.csv"])
    assert_user_error(code, err, "gradcheck needs labels", "'class'")
    code, _, err = run(["explain", trained[0], tmp_path / "l.csv", "--row", 3])
    assert_user_error(code, err, "--row 3 is out of range", "has 3 images")


def test_explain_wrong_data_for_an_image_model(trained, tmp_path):
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(tmp_path / "t.csv", index=False)
    for command, extra in (("explain", ["--row", 0]), ("gradcheck", [])):
        code, _, err = run([command, trained[0], tmp_path / "t.csv", *extra])
        assert_user_error(code, err, "is not image input")


def test_tampered_preparation_is_refused(trained, tmp_path):
    model = ln.load(trained[0])
    model.metadata["images"]["preparation"]["height"] = 20  # no longer the network's input
    bad = tmp_path / "bad.lnet"
    model.save(bad)
    code, _, err = run(["predict", bad, trained[0]])
    assert_user_error(code, err, "input shape", "(20, 16, 1)")
    model.metadata["images"] = {"preparation": "28x28"}
    model.save(bad, overwrite=True)
    code, _, err = run(["info", bad])
    assert_user_error(code, err, "'images'")


def test_mlp_on_flattened_pixels(digits_folder, tmp_path):
    code, stdout, err = run(
        ["train", digits_folder, "--model", "mlp", "--hidden", "32", "--epochs", 40,
         "--out", tmp_path / "m.lnet", "--quiet", "--no-baselines"]
    )  # fmt: skip
    assert code == 0, err
    model = ln.load(tmp_path / "m.lnet")
    assert [type(x).__name__ for x in model.layers] == ["Flatten", "Dense", "Dense"]
    accuracy = float(stdout.split("accuracy ")[1].split()[0])
    assert accuracy >= 0.75


def test_augment_is_seeded_and_changes_training(digits_folder, tmp_path):
    def weights(*extra):
        out = tmp_path / f"a{len(list(tmp_path.iterdir()))}.lnet"
        argv = ["train", digits_folder, "--model", "mlp", "--epochs", 3, "--quiet",
                "--no-baselines", "--out", out, *extra]  # fmt: skip
        code, stdout, err = run(argv)
        assert code == 0, err
        return ln.load(out).get_weights()

    a, b, plain = weights("--augment"), weights("--augment"), weights()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], plain[k]) for k in a)


# ---- a CSV with an image-path column: counting squares (Poisson) --------------------------


def squares_csv(root, n=120, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    (root / "img").mkdir(parents=True)
    for i in range(n):
        k = int(rng.integers(0, 6))
        a = np.zeros((16, 16, 3), np.uint8)
        spots = rng.choice(16, size=k, replace=False)  # 16 cells of a 4x4 grid
        for s in spots:
            r, c = divmod(int(s), 4)
            a[4 * r : 4 * r + 3, 4 * c : 4 * c + 3] = (255, 200, 0)
        Image.fromarray(a).save(root / "img" / f"{i}.png")
        rows.append({"file": f"img/{i}.png", "n_squares": k, "note": "x"})
    pd.DataFrame(rows).to_csv(root / "squares.csv", index=False)
    return root / "squares.csv"


def test_csv_count_regression_poisson_never_negative(tmp_path):
    data = squares_csv(tmp_path)
    code, stdout, err = run(
        ["train", data, "--target", "n_squares", "--task", "regression", "--epochs", 25,
         "--batch-size", 16, "--patience", 10, "--lr", 0.003, "--out", tmp_path / "c.lnet",
         "--no-diagnostics"]
    )  # fmt: skip
    assert code == 0, err
    assert "(csv), 120 images" in stdout and "Poisson" in stdout
    assert "Images: 16x16 rgb" in stdout
    meta = ln.load(tmp_path / "c.lnet").metadata
    assert meta["images"]["column"] == "file" and meta["images"]["count"] is True
    code, out, err = run(["predict", tmp_path / "c.lnet", data, "--keep", "note"])
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    assert list(table.columns) == ["note", "prediction"] and (table["prediction"] >= 0).all()
    truth = pd.read_csv(data)["n_squares"]
    assert np.corrcoef(table["prediction"], truth)[0, 1] > 0.5  # it learned to count a bit
    code, out, err = run(["evaluate", tmp_path / "c.lnet", data])
    assert code == 0 and "MAE" in out, err
    partly = pd.read_csv(data).astype({"n_squares": float})
    partly.loc[:4, "n_squares"] = np.nan  # predict keeps rows without a target, evaluate not
    partly.to_csv(tmp_path / "partly.csv", index=False)
    code, out, err = run(["predict", tmp_path / "c.lnet", tmp_path / "partly.csv"])
    assert code == 0 and len(pd.read_csv(io.StringIO(out))) == 120, err
    code, out, err = run(["evaluate", tmp_path / "c.lnet", tmp_path / "partly.csv"])
    assert code == 0 and "(115 rows)" in out, err


def test_csv_missing_image_file_is_one_line(tmp_path):
    data = squares_csv(tmp_path, n=10)
    (tmp_path / "img" / "3.png").unlink()
    code, _, err = run(["train", data, "--target", "n_squares", "--out", tmp_path / "x.lnet"])
    assert_user_error(code, err, "column 'file', row 4", "3.png' not found")


# ---- IDX files ----------------------------------------------------------------------------


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_idx_train_and_predict(tmp_path):
    X, y = digit_images()
    write_idx(tmp_path / "toy-images-idx3-ubyte.gz", X)
    write_idx(tmp_path / "toy-labels-idx1-ubyte.gz", y)
    code, stdout, err = run(
        ["train", tmp_path / "toy-images-idx3-ubyte.gz", "--model", "mlp", "--epochs", 20,
         "--out", tmp_path / "i.lnet", "--quiet", "--no-baselines"]
    )  # fmt: skip
    assert code == 0, err
    assert ln.load(tmp_path / "i.lnet").metadata["classes"] == ["0", "1", "4", "7"]
    unlabelled = tmp_path / "new"
    unlabelled.mkdir()
    write_idx(unlabelled / "new-images-idx3-ubyte.gz", X[:5])
    code, out, err = run(["predict", tmp_path / "i.lnet", unlabelled / "new-images-idx3-ubyte.gz"])
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out))
    assert table["image"].tolist()[0] == "new-images-idx3-ubyte.gz#0" and len(table) == 5
    code, out, err = run(["evaluate", tmp_path / "i.lnet", tmp_path])  # the folder: its pair
    assert code == 0 and f"({len(X)} rows)" in out, err
    code, _, err = run(["evaluate", tmp_path / "i.lnet", unlabelled])
    assert_user_error(code, err, "has no labels")


# ---- bad inputs ----------------------------------------------------------------------------


def test_empty_folder_and_single_class(tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(["train", tmp_path / "empty", "--out", tmp_path / "e.lnet"])
    assert_user_error(code, err, "has no images")
    one = tmp_path / "one" / "cats"
    one.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(one / "a.png")
    code, _, err = run(["train", tmp_path / "one", "--out", tmp_path / "o.lnet"])
    assert_user_error(code, err, "single class", "'cats'")


def test_corrupt_image_named_or_skipped(digits_folder, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(digits_folder, root)
    (root / "4" / "zz_bad.png").write_bytes(b"not a png at all")
    code, _, err = run(["train", root, "--out", tmp_path / "b.lnet", "--epochs", 1])
    assert_user_error(code, err, "zz_bad.png", "not a readable image")
    code, stdout, err = run(
        ["train", root, "--out", tmp_path / "b.lnet", "--epochs", 1, "--model", "mlp",
         "--skip-unreadable", "--no-baselines"]
    )  # fmt: skip
    assert code == 0, err
    assert "1 unreadable image(s) skipped" in err and "zz_bad.png" in err
    assert f"{4 * PER_CLASS} images" in stdout


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--image-size", "0x5"], "--image-size"),
        (["--stream"], "--stream is for tables"),
        (["--color", "cmyk"], "--color"),
    ],
)
def test_bad_image_options(digits_folder, tmp_path, extra, fragment):
    code, _, err = run(["train", digits_folder, "--out", tmp_path / "x.lnet", *extra])
    assert_user_error(code, err, fragment)


def test_cnn_on_a_table_is_an_error(tmp_path):
    pd.DataFrame({"a": range(20), "y": [0, 1] * 10}).to_csv(tmp_path / "t.csv", index=False)
    code, _, err = run(["train", tmp_path / "t.csv", "--target", "y", "--model", "cnn"])
    assert_user_error(code, err, "--model cnn needs image input")


def test_predict_missing_input(trained, tmp_path):
    code, _, err = run(["predict", trained[0], tmp_path / "nothing"])
    assert_user_error(code, err, "is not image input")


def test_class_limit(digits_folder, tmp_path):
    code, _, err = run(["train", digits_folder, "--max-classes", 3, "--out", tmp_path / "x"])
    assert_user_error(code, err, "4 distinct classes", "--max-classes")


def test_memory_limit_checked_before_decoding(digits_folder, tmp_path):
    code, _, err = run(["train", digits_folder, "--max-memory", "1000", "--out", tmp_path / "x"])
    assert_user_error(code, err, "120 images of 16x16 gray need about", "--image-size")


def test_image_defaults_only_for_options_not_set(digits_folder, tmp_path):
    from lucidnet.cli.args import parse_args
    from lucidnet.cli.images import _apply_image_defaults

    args = parse_args(["train", str(digits_folder), "--patience", "10", "--epochs=200"])
    args.model = "cnn"
    assert _apply_image_defaults(args) == ["batch size 64", "dropout 0.25"]
    assert (args.epochs, args.patience, args.batch_size, args.dropout) == (200, 10, 64, 0.25)
    config = tmp_path / "c.toml"
    config.write_text("batch-size = 32\ndropout = 0.0\n")
    args = parse_args(["train", str(digits_folder), "--config", str(config)])
    args.model = "cnn"
    assert _apply_image_defaults(args) == ["epochs 30", "patience 4"]
    assert (args.batch_size, args.dropout) == (32, 0.0)
