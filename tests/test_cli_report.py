"""Tests of the report and explain call sites of the ``lucidnet`` command: the report of a
``train`` run tells what the run did (the restored epoch, the per-class table, the standardised
regression target, predicted vs actual), and ``explain`` and the report name the inputs in the
user's terms (``city=Paris``, ``review:good``, ``x (standardised)``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import make_frame, run

import lucidnet as ln
from lucidnet.cli.commands import feature_labels
from lucidnet.data.prep import TabularPreparer


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli_report")
    make_frame(200).to_csv(d / "data.csv", index=False)
    return d


def train(work: Path, target: str, drop: str) -> tuple[str, Path, Path]:
    model, report = work / f"{target}.lnet", work / f"{target}.html"
    # --dropout 0: the text defaults would add dropout, and explain's training step applies it
    code, out, err = run(
        ["train", work / "data.csv", "--target", target, "--drop", drop, "--epochs", "12",
         "--hidden", "8", "--lr", "0.01", "--patience", "3", "--out", model, "--report", report,
         "--quiet", "--dropout", "0"]
    )  # fmt: skip
    assert code == 0, err
    return out, model, report


def test_feature_labels_say_what_was_done():
    df = make_frame(60)
    prep = TabularPreparer(target="label", drop=["price"]).fit(df)
    names = prep.feature_names_out()
    labels = feature_labels(prep)
    assert len(labels) == len(names)
    assert labels[names.index("x")] == "x (standardised)"
    assert labels[names.index("noise")] == "noise (standardised)"
    assert labels[names.index("x is missing")] == "x is missing"
    assert labels[names.index("city=Paris")] == "city=Paris"
    assert any(n.startswith("review:") for n in labels)
    minmax = TabularPreparer(target="label", drop=["price"], scaling="minmax").fit(df)
    assert feature_labels(minmax)[0].endswith(" (scaled 0-1)")


def test_classification_report_and_explain_name_the_inputs(work):
    pytest.importorskip("matplotlib")
    _, model, report = train(work, "label", "price")
    html = report.read_text(encoding="utf-8")
    cards = html.split('<div class="cards">', 1)[1].split("<h2>", 1)[0]
    assert "weights kept" in cards and "val loss, epoch" in cards
    assert "Per class:" in html and "<td>high</td>" in html
    effects = html.split("Inputs that move the predictions", 1)[1]
    assert "x (standardised)" in effects and "city=" in effects
    code, out, err = run(["explain", model, work / "data.csv", "--row", 0])
    assert code == 0, err
    first = out.split("1. Forward pass", 1)[0]
    assert "0. The input:" in first and "x (standardised)" in first


def test_regression_report_and_explain_are_on_the_standardised_target(work):
    pytest.importorskip("matplotlib")
    _, model_path, report = train(work, "price", "label")
    html = report.read_text(encoding="utf-8")
    assert "losses are on the standardised target" in html
    assert 'alt="predicted vs actual"' in html and 'alt="residuals"' in html
    assert "loss (standardised)" in html
    # explain shows the step training took: output and target on (y - mean) / std
    code, out, err = run(["explain", model_path, work / "data.csv", "--row", 1, "--json"])
    assert code == 0 and "explained on the standardised target" in err
    step = json.loads(out)
    model = ln.load(model_path)
    scaling = model.metadata["target_scaling"]
    X = TabularPreparer.from_dict(model.metadata["preparation"]).transform(make_frame(200)[1:2])
    expected = (model.predict(X).ravel() - scaling["mean"]) / scaling["std"]
    np.testing.assert_allclose(np.ravel(step["forward"][-1]["output"]), expected, rtol=1e-4)
    price = make_frame(200)["price"].iloc[1]
    target = (price - scaling["mean"]) / scaling["std"]
    np.testing.assert_allclose(np.ravel(step["y"]), [target], rtol=1e-4)
