"""Tests of the ``lucidnet`` command: end to end on generated CSV files (numeric, categorical,
text and missing values), the metrics JSON schema, config files, and every user mistake ->
exit status 2 with one line on stderr and no traceback.

Most tests call :func:`lucidnet.cli.main` in-process; a few run the installed ``lucidnet``
entry point in a subprocess to check real exit codes and stderr.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cli import run

import lucidnet as ln
from lucidnet.cli import commands as cli
from lucidnet.data.prep import TabularPreparer

GOOD, BAD = ["good", "great", "fine"], ["bad", "awful", "poor"]
NEUTRAL = "movie film plot acting music long short story".split()
N_ROWS = 300
EPOCHS = "25"


def make_frame(n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    """A learnable table: the class depends on a number, a category and words of a text."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    city = rng.choice(["Paris", "Lyon", "Nice"], n)
    mood = rng.integers(-1, 2, n)  # -1, 0, 1: drives which words appear in the text
    text = []
    for m in mood:
        words = list(rng.choice(NEUTRAL, 4))
        if m != 0:
            words += list(rng.choice(GOOD if m > 0 else BAD, 2))
        rng.shuffle(words)
        text.append(" ".join(words))
    score = 0.8 * x + 0.6 * ((city == "Paris") - 1.0 * (city == "Nice")) + 2.0 * mood
    label = np.where(score > 1.0, "high", np.where(score < -1.0, "low", "mid"))
    df = pd.DataFrame(
        {
            "x": x.round(4),
            "noise": rng.normal(0.0, 1.0, n).round(4),
            "city": city,
            "review": text,
            "blank": np.nan,  # entirely empty: dropped with a reason
            "label": label,
            "price": (10.0 * score + 50.0 + rng.normal(0.0, 0.5, n)).round(3),
        }
    )
    df.loc[::9, "x"] = np.nan
    df.loc[::7, "city"] = None
    df.loc[::11, "review"] = None
    return df


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    """Exit status 2, exactly one line on stderr, starting with 'lucidnet: error:'."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lucidnet: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    make_frame().to_csv(d / "data.csv", index=False)
    return d


@pytest.fixture(scope="module")
def clf(work) -> dict:
    """A classification model trained once for the module (output, metrics, paths)."""
    model, metrics, report = work / "clf.lnet", work / "clf.json", work / "clf.html"
    code, out, err = run(
        ["train", work / "data.csv", "--target", "label", "--drop", "price", "--epochs", EPOCHS,
         "--hidden", "16", "--lr", "0.01", "--out", model, "--metrics-json", metrics,
         "--report", report]
    )  # fmt: skip
    assert code == 0, err
    m = json.loads(metrics.read_text())
    return {"out": out, "err": err, "model": model, "metrics": m, "report": report}


@pytest.fixture(scope="module")
def reg(work) -> dict:
    model, metrics = work / "reg.lnet", work / "reg.json"
    code, out, err = run(
        ["train", work / "data.csv", "--target", "price", "--drop", "label", "--epochs", "60",
         "--hidden", "16", "--lr", "0.01", "--out", model, "--metrics-json", metrics, "--quiet"]
    )  # fmt: skip
    assert code == 0, err
    return {"out": out, "model": model, "metrics": json.loads(metrics.read_text())}


# ---- train ----------------------------------------------------------------------------------


def test_train_classification_story(clf):
    out = clf["out"]
    for fragment in [
        "300 rows x 7 columns",
        "city    categorical",  # roles with reasons
        "review  text",
        "blank   empty        all",  # the entirely empty column is dropped, with its reason
        "price   dropped",
        "missing -> ",  # what was done with missing values, in the role table
        "Task: classification (picked automatically: non-numeric target values)",
        "split: 209 train / 30 val / 61 test (stratified)",  # round(0.2 * rows) per class
        f"epoch   1/{EPOCHS}",  # line-mode progress (stdout is not a terminal)
        "val_loss=",
        "early stopping chose epoch",
        "Diagnostics after epoch",  # on by default
        "macro F1",
        "Confusion matrix",
        "true\\pred  high  low  mid",
        "Model saved to",
    ]:
        assert fragment in out, fragment


def test_metrics_json_classification_schema(clf):
    m = clf["metrics"]
    assert m["task"] == "classification"
    assert set(m["test"]) == {"accuracy", "f1_macro"}
    assert m["split"]["train"] + m["split"]["val"] + m["split"]["test"] == N_ROWS
    assert 1 <= m["best_epoch"] <= m["epochs_run"] <= int(EPOCHS)
    assert m["classes"] == ["high", "low", "mid"]
    cm = np.array(m["confusion_matrix"])
    assert cm.sum() == m["split"]["test"]
    assert m["test"]["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert [m["per_class"][c]["support"] for c in m["classes"]] == cm.sum(axis=1).tolist()
    assert m["test"]["accuracy"] > 0.7  # learnable data: far above chance (1/3)
    assert m["hyperparameters"]["hidden"] == [16]


def test_model_file_metadata(clf):
    model = ln.load(clf["model"])
    meta = model.metadata
    assert meta["target"] == "label" and meta["task"] == "classification"
    assert meta["classes"] == ["high", "low", "mid"]
    assert meta["test_metrics"]["accuracy"] == clf["metrics"]["test"]["accuracy"]
    assert meta["training"]["lr"] == 0.01
    json.dumps(meta)  # plain JSON
    prep = TabularPreparer.from_dict(meta["preparation"])
    assert prep.state_["columns"]["text"] == ["review"]


def test_info(clf):
    code, out, _ = run(["info", clf["model"]])
    assert code == 0
    for fragment in ["Total params", "Parameters:", "Data preparation", "Training:", "best epoch"]:
        assert fragment in out
    assert f"accuracy {clf['metrics']['test']['accuracy']:.4f}" in out


def test_predict_applies_saved_preparation(clf, work):
    df = pd.read_csv(work / "data.csv")
    unlabelled = work / "unlabelled.csv"
    df.drop(columns=["label", "price"]).to_csv(unlabelled, index=False)
    code, out, err = run(["predict", clf["model"], unlabelled])
    assert code == 0, err
    pred = pd.read_csv(io.StringIO(out))
    assert list(pred.columns) == ["prediction", "proba_high", "proba_low", "proba_mid"]
    assert len(pred) == len(df)
    proba = pred[["proba_high", "proba_low", "proba_mid"]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    classes = np.array(["high", "low", "mid"])
    assert (pred["prediction"].to_numpy() == classes[proba.argmax(axis=1)]).all()
    # the same numbers as the Python API: saved preparation + network
    model = ln.load(clf["model"])
    prep = TabularPreparer.from_dict(model.metadata["preparation"])
    np.testing.assert_allclose(proba, model.predict(prep.transform(df)), rtol=1e-4, atol=1e-6)


def test_evaluate_matches_predictions(clf, work):
    metrics = work / "eval.json"
    code, out, err = run(["evaluate", clf["model"], work / "data.csv", "--metrics-json", metrics])
    assert code == 0, err
    assert "accuracy" in out and "Confusion matrix" in out
    m = json.loads(metrics.read_text())
    assert m["task"] == "classification" and m["rows"] == N_ROWS
    _, pred_out, _ = run(["predict", clf["model"], work / "data.csv"])
    pred = pd.read_csv(io.StringIO(pred_out))["prediction"]
    truth = pd.read_csv(work / "data.csv")["label"]
    assert m["test"]["accuracy"] == pytest.approx(float((pred == truth).mean()))


def test_regression_end_to_end(reg, work):
    m = reg["metrics"]
    assert m["task"] == "regression"
    assert set(m["test"]) == {"mae", "rmse", "r2"}
    assert m["test"]["r2"] > 0.8
    # trained on the standardised target (fit's target_scaling), and the file says so
    price = pd.read_csv(work / "data.csv")["price"]
    assert m["target_scaling"]["mean"] == pytest.approx(price.mean(), rel=0.05)
    assert m["target_scaling"]["std"] == pytest.approx(price.std(), rel=0.1)
    assert "standardised target" in m["target_scaling"]["note"]
    assert "epoch   1/" not in reg["out"]  # --quiet: no progress lines
    assert "R^2" in reg["out"]
    code, out, _ = run(["predict", reg["model"], work / "data.csv"])
    assert code == 0
    pred = pd.read_csv(io.StringIO(out))["prediction"].to_numpy()
    y = pd.read_csv(work / "data.csv")["price"].to_numpy()
    code, _, _ = run(
        ["evaluate", reg["model"], work / "data.csv", "--metrics-json", work / "r.json"]
    )
    e = json.loads((work / "r.json").read_text())["test"]
    # the network outputs original units (target scaling folded into the last layer)
    assert e["mae"] == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-3)
    assert e["mae"] < 0.5 * y.std()
    code, out, _ = run(["info", reg["model"]])
    assert "MAE" in out and "standardised target" in out


def test_output_files_never_overwritten(clf, work):
    before = clf["model"].read_bytes()
    code, _, err = run(["train", work / "data.csv", "--target", "label", "--out", clf["model"]])
    assert_user_error(code, err, "already exists", "--overwrite")
    assert clf["model"].read_bytes() == before
    out = work / "pred.csv"
    assert run(["predict", clf["model"], work / "data.csv", "--out", out])[0] == 0
    out.write_text("sentinel\n")
    code, _, err = run(["predict", clf["model"], work / "data.csv", "--out", out])
    assert_user_error(code, err, "already exists")
    assert out.read_text() == "sentinel\n"
    assert run(["predict", clf["model"], work / "data.csv", "--out", out, "--overwrite"])[0] == 0
    assert out.read_text().startswith("prediction,")
    data = (work / "data.csv").read_text()
    for extra in ([], ["--overwrite"]):  # never the input file, even with --overwrite
        code, _, err = run(
            ["predict", clf["model"], work / "data.csv", "--out", work / "data.csv", *extra]
        )
        assert_user_error(code, err, "input file")
    assert (work / "data.csv").read_text() == data


def test_default_out_is_data_stem_in_cwd(work, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    argv = ["train", work / "data.csv", "--target", "label", "--epochs", "2", "--quiet"]
    assert run(argv)[0] == 0
    assert (tmp_path / "data.lnet").exists()
    code, _, err = run(argv)
    assert_user_error(code, err, "data.lnet", "already exists")
    code, out, _ = run([*argv[:-1], "--no-diagnostics", "--out", tmp_path / "b.lnet"])
    assert code == 0
    assert "epoch   1/2" in out and "Diagnostics after" not in out


# ---- config files ---------------------------------------------------------------------------


def test_config_file_and_command_line_precedence(work):
    cfg = work / "hp.toml"
    cfg.write_text(
        'target = "label"\nhidden = [8]\nlr = 0.05\nepochs = 3\nbatch_size = 16\n'
        'drop = ["price"]\nbatch-norm = true\n'
    )
    metrics = work / "cfg.json"
    code, _, err = run(
        ["train", work / "data.csv", "--config", cfg, "--lr", "0.02", "--quiet",
         "--out", work / "cfg.lnet", "--metrics-json", metrics]
    )  # fmt: skip
    assert code == 0, err
    hp = json.loads(metrics.read_text())["hyperparameters"]
    assert hp["lr"] == 0.02  # the flag wins over the file
    assert (hp["epochs"], hp["hidden"], hp["batch_size"]) == (3, [8], 16)
    assert hp["batch_norm"] is True and hp["drop"] == ["price"]


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("learning_rate = 0.1\n", ["unknown key 'learning_rate'", "valid keys:", "lr"]),
        ('lr = "fast"\n', ["key 'lr'", "expected a number"]),
        ("epochs = 0\n", ["key 'epochs'", ">= 1"]),
        ('activation = "swish"\n', ["key 'activation'", "invalid choice"]),
        ("batch-norm = 1\n", ["key 'batch-norm'", "true or false"]),
        ("drop = 3\n", ["key 'drop'", "list of column names"]),
        ("lr = [\n", ["not valid TOML"]),
    ],
)
def test_config_errors(work, content, fragments):
    cfg = work / "bad.toml"
    cfg.write_text(content)
    code, _, err = run(["train", work / "data.csv", "--target", "label", "--config", cfg])
    assert_user_error(code, err, *fragments)


# ---- bad input: one line on stderr, exit status 2 -------------------------------------------


@pytest.fixture(scope="module")
def bad_files(work) -> dict[str, Path]:
    from safetensors.numpy import save_file

    d = work / "bad"
    d.mkdir()
    files = {
        "empty": ("", None),
        "binary": (None, bytes(range(256)) * 4),
        "prose": ("This is a sentence of prose and not a table at all\nmore words here\n", None),
        "header_only": ("a,b,label\n", None),
        "single_class": ("a,b,label\n1,2,x\n3,4,x\n5,6,x\n", None),
        "target_missing": ("a,b,label\n1,2,\n3,4,\n", None),
        "empty_feature": ("a,label\n" + "".join(f",{i % 2}\n" for i in range(10)), None),
        "no_x": (make_frame(20).drop(columns=["x"]).to_csv(index=False), None),
        "corrupt.lnet": (None, os.urandom(64)),
        "truncated.lnet": (None, b"\x10\x00\x00\x00\x00\x00\x00\x00{}"),
    }
    out = {}
    for name, (text, blob) in files.items():
        path = d / (name if name.endswith(".lnet") else f"{name}.csv")
        path.write_bytes(blob if blob is not None else text.encode())
        out[name] = path
    save_file({"w": np.zeros(3, np.float32)}, str(d / "other.safetensors"), metadata={"k": "v"})
    plain = ln.Sequential([ln.Dense(2)])  # a valid model file, but not from `lucidnet train`
    plain.build((3,), seed=0)
    plain.save(d / "plain.lnet")
    return out


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["train", "{d}/nope.csv", "--target", "label"], ["does not exist"]),
        (["train", "{bad}/empty.csv", "--target", "label"], ["empty"]),
        (["train", "{bad}/binary.csv", "--target", "label"], ["not", "binary"]),
        (["train", "{bad}/prose.csv", "--target", "label"], ["does not look like CSV"]),
        (["train", "{bad}/header_only.csv", "--target", "label"], ["no data rows"]),
        (["train", "{d}/data.csv", "--target", "nope"], ["'nope' not found", "'review'"]),
        (["train", "{bad}/single_class.csv", "--target", "label"], ["single class"]),
        (["train", "{bad}/target_missing.csv", "--target", "label"], ["entirely empty"]),
        (["train", "{bad}/empty_feature.csv", "--target", "label"], ["no usable feature", "'a'"]),
        (["train", "{d}/data.csv", "--target", "label", "--text", "blank"], ["'blank'", "empty"]),
        (["train", "{d}/data.csv", "--target", "label", "--drop", "zzz"], ["unknown columns"]),
        (
            ["train", "{d}/data.csv", "--target", "price", "--class-weight", "balanced"],
            ["classification"],
        ),
        (["train", "{d}/data.csv", "--target", "label", "--task", "regression"], ["not numbers"]),
        (["train", "{d}/data.csv"], ["--target"]),
        (["train", "{d}/data.csv", "--target", "label", "--lr", "-1"], ["--lr", "> 0"]),
        (["train", "{d}/data.csv", "--target", "label", "--lr", "abc"], ["--lr"]),
        (["train", "{d}/data.csv", "--target", "label", "--hidden", "8,x"], ["--hidden"]),
        (["train", "{d}/data.csv", "--target", "label", "--epochs", "0"], ["--epochs"]),
        (["train", "{d}/data.csv", "--target", "label", "--dropout", "1"], ["--dropout"]),
        (
            [
                "train",
                "{d}/data.csv",
                "--target",
                "label",
                "--test-size",
                "0.7",
                "--val-size",
                "0.3",
            ],
            ["test_size + val_size"],
        ),
        (["train", "{d}/data.csv", "--target", "label", "--optimizer", "nope"], ["invalid choice"]),
        (["frobnicate"], ["invalid choice"]),
        (["predict", "{d}/clf.lnet", "{bad}/no_x.csv"], ["missing the feature columns ['x']"]),
        (["predict", "{bad}/corrupt.lnet", "{d}/data.csv"], ["not a lucidnet model file"]),
        (["predict", "{bad}/truncated.lnet", "{d}/data.csv"], ["not a lucidnet model file"]),
        (["info", "{bad}/other.safetensors"], ["another program"]),
        (["info", "{d}/data.csv"], ["not a lucidnet model file"]),
        (["info", "{d}/nope.lnet"], ["does not exist"]),
        (["predict", "{bad}/plain.lnet", "{d}/data.csv"], ["no stored data preparation"]),
        (["evaluate", "{d}/clf.lnet", "{bad}/no_x.csv"], ["missing the feature columns"]),
        (["evaluate", "{d}/clf.lnet", "{d}/unlabelled.csv"], ["no target column 'label'"]),
        (["explain", "{d}/clf.lnet", "{d}/data.csv", "--row", "100000"], ["out of range"]),
        (["export", "{d}/clf.lnet"], ["--onnx"]),
        (["export", "{bad}/corrupt.lnet", "--onnx", "{d}/c.onnx"], ["not a lucidnet model"]),
        (["export", "{d}/clf.lnet", "--onnx", "{d}/clf.lnet", "--overwrite"], ["input file"]),
    ],
)
def test_bad_input_is_one_line_exit_2(clf, work, bad_files, argv, fragments):
    if any("unlabelled" in a for a in argv) and not (work / "unlabelled.csv").exists():
        make_frame().drop(columns=["label"]).to_csv(work / "unlabelled.csv", index=False)
    args = [a.format(d=work, bad=work / "bad") for a in argv]
    code, out, err = run(args)
    assert_user_error(code, err, *fragments)


def test_keyboard_interrupt_exits_130(work, monkeypatch):
    def interrupt(path, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr("lucidnet.data.columns.read_table", interrupt)
    code, _, err = run(["train", work / "data.csv", "--target", "label", "--out", work / "k.lnet"])
    assert code == 130
    assert err.strip().splitlines() == ["lucidnet: interrupted by the user (Ctrl-C)"]


def test_keyboard_interrupt_during_training_says_it_once(work, monkeypatch):
    """Ctrl-C inside fit: fit says what was kept; the command adds no second message."""
    import lucidnet.optimizers as optimizers

    calls = {"n": 0}
    step = optimizers.Optimizer.step

    def interrupt_on_third_step(self, model):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return step(self, model)

    monkeypatch.setattr(optimizers.Optimizer, "step", interrupt_on_third_step)
    code, _, err = run(["train", work / "data.csv", "--target", "label", "--out", work / "i.lnet"])
    assert code == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("training interrupted by the user"), err
    assert not (work / "i.lnet").exists()


def test_internal_errors_keep_their_traceback(work, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "build_model", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["train", str(work / "data.csv"), "--target", "label", "--quiet",
                  "--out", str(work / "bug.lnet")])  # fmt: skip


# ---- help, version, demo --------------------------------------------------------------------


@pytest.mark.parametrize("command", [*cli.COMMANDS])
def test_help_has_examples(command, capsys):
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"lucidnet {command}" in out


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lucidnet {ln.__version__}"


def test_demo_runs(capsys):
    assert cli.main(["demo", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "Test accuracy" in out and "Confusion matrix" in out


# ---- glass-box commands ---------------------------------------------------------------------


def test_explain_text_and_json(clf, work):
    code, out, err = run(["explain", clf["model"], work / "data.csv", "--row", 2])
    assert code == 0, err
    assert "Forward pass" in out
    code, out, _ = run(["explain", clf["model"], work / "data.csv", "--row", 2, "--json"])
    assert code == 0
    assert isinstance(json.loads(out), dict)


def test_gradcheck_passes(clf, work):
    code, out, err = run(["gradcheck", clf["model"], work / "data.csv", "--rows", 4])
    assert code == 0, err
    assert "PASSED" in out


def test_lr_find_with_plot(work):
    pytest.importorskip("matplotlib")
    png = work / "lr.png"
    code, out, err = run(
        ["lr-find", work / "data.csv", "--target", "label", "--drop", "price", "--hidden", "8",
         "--plot", png]
    )  # fmt: skip
    assert code == 0, err
    assert "suggested learning rate" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report(clf):
    html = clf["report"].read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "Confusion" in html or "confusion" in html
    assert "Report written to" in clf["out"]


def test_export_onnx_matches_predict(clf, work):
    ort = pytest.importorskip("onnxruntime")
    path = work / "clf.onnx"
    code, out, err = run(["export", clf["model"], "--onnx", path])
    assert code == 0, err
    assert "PREPARED features" in out
    model = ln.load(clf["model"])
    X = TabularPreparer.from_dict(model.metadata["preparation"]).transform(make_frame(20, seed=1))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (proba,) = session.run(None, {session.get_inputs()[0].name: X})
    np.testing.assert_allclose(proba, model.predict(X), rtol=1e-5, atol=1e-6)


# ---- the real entry point -------------------------------------------------------------------

ENTRY = Path(sys.executable).parent / "lucidnet"


@pytest.mark.skipif(not ENTRY.exists(), reason="the lucidnet entry point is not installed")
def test_entry_point_exit_codes(clf, work):
    bad = subprocess.run(
        [str(ENTRY), "train", str(work / "missing.csv"), "--target", "label"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip() == f"lucidnet: error: data file '{work / 'missing.csv'}' does not exist"
    )
    assert "Traceback" not in bad.stderr
    ok = subprocess.run(
        [str(ENTRY), "predict", str(clf["model"]), str(work / "data.csv")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("prediction,proba_high,proba_low,proba_mid")


# ---- the verdict: baselines, intervals, calibration (issue 13) ---------------------------------


def test_train_prints_baselines_intervals_and_verdict(clf):
    out = clf["out"]
    for fragment in [
        "Baselines on the same 61 test rows (95% CIs: bootstrap, 1000 resamples",
        "majority class",
        "logistic regression",
        "gradient-boosted trees",
        "text column 'review' left out",  # the trees see the raw columns, not the text
        "(baselines fitted in",
        "Verdict: ",
        "Calibration: expected calibration error",
    ]:
        assert fragment in out, fragment


def test_metrics_json_verdict_and_calibration(clf):
    m = clf["metrics"]
    v = m["verdict"]
    assert v["metric"] == "accuracy" and v["n_test"] == m["split"]["test"] == 61
    net = v["network"]["accuracy"]
    assert net["value"] == pytest.approx(m["test"]["accuracy"])
    assert net["ci95"][0] <= net["value"] <= net["ci95"][1]
    assert v["network"]["f1_macro"]["value"] == pytest.approx(m["test"]["f1_macro"])
    kinds = {b["kind"]: b for b in v["baselines"]}
    assert set(kinds) == {"trivial", "linear", "trees"}
    majority = kinds["trivial"]
    # the majority class of the training rows, scored on the test rows
    support = {c: m["per_class"][c]["support"] for c in m["classes"]}
    assert majority["metrics"]["accuracy"]["value"] <= max(support.values()) / 61 + 1e-9
    for b in v["baselines"]:
        assert b["margin"]["value"] == pytest.approx(
            net["value"] - b["metrics"]["accuracy"]["value"]
        )
        assert b["seconds"] >= 0
    assert v["sentence"] and v["sentence"].endswith(".")
    c = m["calibration"]
    assert c["temperature"] is None and c["rows"] == "test" and c["n_rows"] == 61
    assert 0 <= c["ece_before"] <= 1 and sum(b["count"] for b in c["bins"]) == 61
    assert ln.load(clf["model"]).metadata["calibration"] == c


def test_regression_verdict(reg):
    v = reg["metrics"]["verdict"]
    assert v["metric"] == "r2"
    assert v["network"]["r2"]["value"] == pytest.approx(reg["metrics"]["test"]["r2"])
    assert v["network"]["mae"]["value"] == pytest.approx(reg["metrics"]["test"]["mae"], rel=1e-5)
    names = [b["name"] for b in v["baselines"]]
    assert names == ["training mean", "ridge regression", "gradient-boosted trees"]
    assert "Verdict: " in reg["out"]  # --quiet keeps the verdict line, not the table
    assert "Baselines on the same" not in reg["out"]
    assert reg["metrics"]["calibration"] is None


def test_calibrate_and_no_baselines(work):
    model, metrics = work / "cal.lnet", work / "cal.json"
    code, out, err = run(
        ["train", work / "data.csv", "--target", "label", "--drop", "price", "--epochs", EPOCHS,
         "--hidden", "16", "--lr", "0.01", "--out", model, "--metrics-json", metrics,
         "--calibrate", "--no-baselines", "--no-diagnostics"]
    )  # fmt: skip
    assert code == 0, err
    assert "Baselines" not in out and "95% confidence intervals" in out
    m = json.loads(metrics.read_text())
    c = m["calibration"]
    assert c["temperature"] > 0 and c["fitted_on"] == m["split"]["val"] == 30
    assert "temperature" in out and f"{c['ece_before']:.4f} -> {c['ece_after']:.4f}" in out
    assert m["verdict"]["baselines"] == [] and m["hyperparameters"]["calibrate"] is True
    # the temperature lives in the weights: the saved model's test metrics are the printed ones,
    # and the ECE after is what its predictions give on the same rows
    from lucidnet.cli.model_meta import read_trained_model
    from lucidnet.glassbox.calibration import expected_calibration_error

    trained = read_trained_model(str(model))
    assert trained.warnings == () and trained.metadata["calibration"] == c
    df = pd.read_csv(work / "data.csv")
    prep = trained.preparer
    d, y = prep.prepare_target(df)
    from lucidnet.data.splits import train_val_test_split

    split = train_val_test_split(y, 0.2, 0.1, task="classification", seed=0)
    X = prep.transform(d.iloc[split.test])
    proba = trained.model.predict(X)
    assert expected_calibration_error(proba, y[split.test]) == pytest.approx(c["ece_after"])
    assert (proba.argmax(1) == y[split.test]).mean() == pytest.approx(m["test"]["accuracy"])
    code, out, err = run(["info", model])
    assert code == 0, err
    assert f"Calibration: temperature {c['temperature']:.3f}" in out and "at training" in out


def test_evaluate_prints_intervals_and_calibration(clf, work):
    metrics = work / "eval_ci.json"
    code, out, err = run(["evaluate", clf["model"], work / "data.csv", "--metrics-json", metrics])
    assert code == 0, err
    assert "95% confidence intervals (bootstrap of the 300 rows" in out
    assert "Calibration: expected calibration error" in out and "rows of the file" in out
    e = json.loads(metrics.read_text())
    assert e["verdict"]["network"]["accuracy"]["value"] == pytest.approx(e["test"]["accuracy"])
    assert e["verdict"]["baselines"] == [] and e["calibration"]["n_rows"] == 300


def test_calibrate_needs_classification(work):
    code, _, err = run(
        ["train", work / "data.csv", "--target", "price", "--drop", "label", "--calibrate",
         "--out", work / "never.lnet"]
    )  # fmt: skip
    assert_user_error(code, err, "--calibrate needs a classification task")
    assert not (work / "never.lnet").exists()


@pytest.mark.parametrize(
    "calibration, kept",
    [
        (None, True),
        ("absent", True),  # files written before the entry existed
        ({"ece_before": 2.0}, False),
        ("bad", False),
    ],
)
def test_calibration_metadata_checked_on_load(clf, work, calibration, kept):
    from _model_files import rewrite

    from lucidnet.cli.model_meta import read_trained_model

    def edit(info):
        if calibration == "absent":
            info["metadata"].pop("calibration", None)
        else:
            info["metadata"]["calibration"] = calibration

    path = rewrite(clf["model"], work / "cal_meta.lnet", edit)
    trained = read_trained_model(str(path))
    assert ("calibration" in " ".join(trained.warnings)) is not kept
    if not kept:
        assert "calibration" not in trained.metadata
    code, _, err = run(["info", path])
    assert code == 0 and "Traceback" not in err


def test_calibration_metadata_with_a_bad_temperature_is_dropped(clf, work):
    from _model_files import rewrite

    from lucidnet.cli.model_meta import read_trained_model

    def edit(info):
        c = dict(info["metadata"]["calibration"])
        c.update(temperature=-1.0, ece_after=0.1, bins_after=c["bins"])
        info["metadata"]["calibration"] = c

    path = rewrite(clf["model"], work / "cal_temp.lnet", edit)
    trained = read_trained_model(str(path))
    assert any("calibration" in w and "> 0" in w for w in trained.warnings)


def test_a_failing_baseline_never_costs_the_model(work, monkeypatch):
    from lucidnet.glassbox import verdict

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(verdict, "trees_baseline", broken)
    model = work / "survives.lnet"
    code, out, err = run(
        ["train", work / "data.csv", "--target", "label", "--drop", "price", "--epochs", "3",
         "--hidden", "8", "--out", model, "--quiet"]
    )  # fmt: skip
    assert code == 0 and model.exists()
    assert "the gradient-boosted trees baseline was skipped (RuntimeError: boom)" in err
    assert "Verdict: " in out
