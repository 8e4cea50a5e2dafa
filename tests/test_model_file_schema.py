"""The model-file schema: one crafted file per class of failure found by the attack on issue 14
(87 of 590 ``info`` / ``predict`` runs on crafted files ended in a traceback), plus the
relations between fields that the schema checks.

Each file starts from a real model written by ``lucidnet train`` (on a generated CSV) or by the
Python API (``Sequential.save``, the estimators' ``save``); its lucidnet JSON document is
rewritten with the safetensors layout kept valid (``_model_files.rewrite``). Then every reader
runs on it: ``lucidnet.load``, ``lucidnet info`` / ``predict`` / ``evaluate`` / ``explain``,
``load_estimator`` and the ONNX exporter. A field needed to predict that is malformed makes
every reader refuse the file (``ModelFileError``; for the command one line and exit status 2);
a malformed descriptive field is dropped with a warning and everything else works. Never a
traceback.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _model_files import Bases, make_bases, readers, rewrite, run_cli, split_file

import lucidnet as ln
from lucidnet.cli.demo import format_confusion
from lucidnet.data.prep import PreparationWarning, TabularPreparer
from lucidnet.interop.estimators import NeuralNetworkClassifier, load_estimator
from lucidnet.io import ModelFileWarning


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> Bases:
    return make_bases(tmp_path_factory.mktemp("schema_bases"))


def at(*path: Any, value: Any = None, delete: bool = False) -> Callable[[dict], None]:
    """An edit of the lucidnet document: set (or delete) the entry at ``path``."""

    def edit(info: dict[str, Any]) -> None:
        node = info
        for key in path[:-1]:
            node = node[key]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return edit


def together(*edits: Callable[[dict], None]) -> Callable[[dict], None]:
    def edit(info: dict[str, Any]) -> None:
        for one in edits:
            one(info)

    return edit


def meta(*path: Any, **kw: Any) -> Callable[[dict], None]:
    return at("metadata", *path, **kw)


def prep(*path: Any, **kw: Any) -> Callable[[dict], None]:
    return at("metadata", "preparation", *path, **kw)


def fitted(*path: Any, **kw: Any) -> Callable[[dict], None]:
    return at("metadata", "sklearn_estimator", "fitted", *path, **kw)


def _all(outcomes: list[Any]) -> dict[str, Any]:
    """The outcomes by reader, after checking that nothing escaped."""
    escaped = [f"{o.reader}: {o.detail}" for o in outcomes if o.kind == "escaped"]
    assert not escaped, escaped
    return {o.reader: o for o in outcomes}


# ---- fields needed to predict: the file is refused ----------------------------------------------

#: name -> (base file, edit, a fragment of the one-line error)
REFUSED = {
    # metadata.task
    "task_int": ("clf", meta("task", value=5), "'task' must be the preparation's task"),
    "task_unknown": ("clf", meta("task", value="clustering"), "'task' must be"),
    "task_other": ("clf", meta("task", value="regression"), "'task' must be"),
    "task_list": ("reg", meta("task", value=["regression"]), "'task' must be"),
    # metadata.classes: int, dict, wrong length, other labels, for regression
    "classes_int": ("clf", meta("classes", value=3), "'classes' must be the 3 classes"),
    "classes_dict": ("clf", meta("classes", value={"high": 0}), "'classes' must be"),
    "classes_short": ("clf", meta("classes", value=["high", "low"]), "'classes' must be"),
    "classes_long": ("clf", meta("classes", value=["a", "b", "c", "d"]), "'classes' must be"),
    "classes_other": ("clf", meta("classes", value=["x", "y", "z"]), "'classes' must be"),
    "classes_nested": ("clf", meta("classes", value=[["high"], "low", "mid"]), "'classes'"),
    "classes_regression": ("reg", meta("classes", value=["a", "b"]), "must be null"),
    # metadata.target and preparation.target
    "target_int": ("clf", meta("target", value=7), "'target' must be the preparation's"),
    "prep_target_name": ("clf", prep("target", "name", value=1), "target.name must be"),
    "prep_target_task": ("clf", prep("target", "task", value="x"), "target.task must be"),
    "prep_target_classes_int": ("clf", prep("target", "classes", value=3), "target.classes"),
    "prep_target_classes_dup": (
        "clf",
        prep("target", "classes", value=["high", "high", "mid"]),
        "duplicate labels",
    ),
    "prep_target_classes_nan": (
        "clf",
        prep("target", "classes", value=["high", math.nan, "mid"]),
        "target.classes must be",
    ),
    "prep_target_rows": ("clf", prep("target", "rows_in", value="many"), "target.rows_in"),
    "prep_target_missing": ("clf", prep("target", value=None), "has no target"),
    "prep_target_list": ("clf", prep("target", value=[1]), "'target' must be an object"),
    # the preparation's state
    "state_fill_nan": ("clf", prep("state", "numeric", "fill", 0, value=math.nan), "finite"),
    "state_fill_huge": ("clf", prep("state", "numeric", "fill", 0, value=10**400), "finite"),
    "state_scale_zero": ("clf", prep("state", "numeric", "scaler", "scale", 0, value=0), "pos"),
    "state_scaler_extra_key": (
        "clf",
        prep("state", "numeric", "scaler", "n_features_in", value=[1.0]),
        "must have the keys",
    ),
    "state_indicator_not_a_feature": (
        "clf",
        prep("state", "indicators", value=["label"]),
        "indicators must name numeric or categorical",
    ),
    "state_vocabulary_duplicate": (
        "clf",
        prep("state", "text", "vectorizers", 0, "vocabulary", 1, value="bad"),
        "duplicate",
    ),
    "state_idf_short": (
        "clf",
        prep("state", "text", "vectorizers", 0, "idf", value=[1.0]),
        "entries",
    ),
    "state_categories_empty": (
        "clf",
        prep("state", "categorical", "categories", 0, value=[]),
        "is empty",
    ),
    "state_n_seen_str": (
        "clf",
        prep("state", "categorical", "n_seen", "city", value="3"),
        "n_seen",
    ),
    "state_ids_in_tfidf_mode": (
        "clf",
        prep("state", "ids", value={"vocabulary": [], "max_len": 3}),
        "must have the keys",
    ),
    "prep_config_bad": ("clf", prep("config", "scaling", value="log"), "invalid 'config'"),
    "prep_not_object": ("clf", meta("preparation", value=[1, 2]), "no stored data preparation"),
    # the core's part: loss, optimizer
    "loss_class_weight_length": (
        "clf",
        at("loss", "config", "class_weight", value=[1.0, 2.0]),
        "class_weight has 2 entries for the 3 classes",
    ),
    "loss_regression_for_classes": (
        "clf",
        at("loss", value={"class": "MSE", "config": {}}),
        "softmax loss",
    ),
    "loss_none": ("clf", at("loss", value=None), "softmax loss"),
    "loss_not_object": ("clf", at("loss", value="CrossEntropy"), "'loss' must be an object"),
    "optimizer_iterations_negative": (
        "clf",
        at("optimizer", "iterations", value=-1),
        "'iterations' must be an integer",
    ),
    "optimizer_iterations_inf": (
        "clf",
        at("optimizer", "iterations", value=math.inf),
        "'iterations' must be an integer",
    ),
    "optimizer_config_list": ("clf", at("optimizer", "config", value=[1]), "'optimizer'"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_needed_field_malformed_is_refused(name: str, bases: Bases, tmp_path: Path) -> None:
    base, edit, fragment = REFUSED[name]
    path = rewrite(getattr(bases, base), tmp_path / f"{name}.lnet", edit)
    out = _all(readers(path, bases, tmp_path / "out.onnx", cli_data=True))
    for reader in ("info", "predict", "evaluate", "explain"):
        assert out[reader].kind == "refused", (reader, out[reader])
        assert fragment in out[reader].detail, (reader, out[reader].detail)
    # a field the network itself needs (loss, optimizer) makes lucidnet.load refuse too
    if name.startswith(("loss_class_weight", "loss_not", "optimizer")):
        with pytest.raises(ln.ModelFileError, match="corrupt lucidnet model file"):
            ln.load(path)
        assert out["onnx"].kind == "refused"


# ---- descriptive fields: dropped with a warning --------------------------------------------------

HUGE = 10**400  # an integer beyond the float range (OverflowError when formatted as a float)
CM = ("test_metrics", "details", "confusion_matrix")
PER_CLASS = ("test_metrics", "details", "per_class")

#: name -> (base file, edit, a fragment of the warning, text ``info`` must no longer show)
DROPPED = {
    # metadata.test_metrics and its details
    "metrics_str": ("clf", meta("test_metrics", value="good"), "'test_metrics'", "Test set"),
    "metrics_accuracy_str": (
        "clf",
        meta("test_metrics", "accuracy", value="0.9"),
        "'accuracy': expected a number",
        "Test set",
    ),
    "metrics_accuracy_huge": (
        "clf",
        meta("test_metrics", "accuracy", value=HUGE),
        "beyond the float range",
        "Test set",
    ),
    "cm_empty": ("clf", meta(*CM, value=[]), "expected 3 rows", "Confusion matrix"),
    "cm_ragged": ("clf", meta(*CM, value=[[1, 2, 3], [1], [1, 2, 3]]), "3 x 3", "Test set"),
    "cm_float": ("clf", meta(*CM, 0, 0, value=1.5), "expected an integer", "Test set"),
    "cm_huge": ("clf", meta(*CM, 0, 0, value=HUGE), "expected an integer", "Test set"),
    "cm_negative": ("clf", meta(*CM, 0, 0, value=-4), "expected an integer >= 0", "Test set"),
    "per_class_missing": (
        "clf",
        meta(*PER_CLASS, "high", delete=True),
        "'per_class'",
        "Test set",
    ),
    "per_class_support_str": (
        "clf",
        meta(*PER_CLASS, "low", "support", value="8"),
        "'support'",
        "Test set",
    ),
    "details_classes_other": (
        "clf",
        meta("test_metrics", "details", "classes", value=["a", "b", "c"]),
        "expected the model's classes",
        "Test set",
    ),
    "regression_metrics_missing": (
        "reg",
        meta("test_metrics", "mae", delete=True),
        "'test_metrics'",
        "Test set",
    ),
    # the preparation's fit report
    "fit_report_str": ("clf", prep("fit_report", value="x"), "fit report", "imputed"),
    "fit_report_imputed": (
        "clf",
        prep("fit_report", "imputed", "x", value=[1, 2]),
        "fit report entry 'imputed'",
        "imputed (fitting rows)",
    ),
    "fit_report_rows": (
        "clf",
        prep("fit_report", "rows_fit", value=-3),
        "fit report entry 'rows_fit'",
        None,
    ),
    "fit_report_split": (
        "clf",
        prep("fit_report", "split", value={"train": "all"}),
        "fit report entry 'split'",
        "  split:",
    ),
    # history values (checked by lucidnet.load: the core's part)
    "history_value_str": (
        "clf",
        at("history", "history", "loss", 0, value="low"),
        "'history' entry is malformed",
        "Final epoch",
    ),
    "history_lengths": (
        "clf",
        at("history", "history", "loss", value=[]),
        "has 0 values for 3 epochs",
        "Final epoch",
    ),
    "history_epoch_negative": (
        "clf",
        at("history", "epoch", value=[-1, 0, 1]),
        "history.epoch",
        "Final epoch",
    ),
    "history_not_object": ("reg", at("history", value=[1]), "'history'", "Final epoch"),
    "history_huge_value": (
        "clf",
        at("history", "iteration_loss", value=[HUGE]),
        "too large for a float",
        "Final epoch",
    ),
    # training info: best_epoch and the rest
    "best_epoch_beyond": (
        "clf",
        meta("training", "best_epoch", value=99),
        "'training.best_epoch' (99) is beyond the epochs run",
        "Best epoch:",
    ),
    "best_epoch_str": (
        "clf",
        meta("training", "best_epoch", value="2"),
        "'training.best_epoch'",
        "Best epoch:",
    ),
    "best_epoch_zero": (
        "clf",
        meta("training", "best_epoch", value=0),
        "'training.best_epoch'",
        "Best epoch:",
    ),
    "training_seconds": (
        "clf",
        meta("training", "seconds", value="fast"),
        "'training.seconds'",
        None,
    ),
    "training_not_object": ("clf", meta("training", value=5), "'training'", "Hyper-parameters"),
    "training_hp_nested": (
        "clf",
        meta("training", "hidden", value=[[4]]),
        "'training.hidden'",
        "hidden=",
    ),
    "split_str": ("clf", meta("split", value="80/20"), "'split'", None),
    # explain divides by the target's std: a subnormal one made its step NaN (found by the fuzzer)
    "scaling_std_subnormal": (
        "reg",
        meta("target_scaling", "std", value=5e-324),
        "'target_scaling'",
        None,
    ),
    "scaling_std_zero": ("reg", meta("target_scaling", "std", value=0.0), "'target_scaling'", None),
    "created_by_int": ("clf", meta("created_by", value=3), "'created_by'", "written by 3"),
    # the core's descriptive fields
    "metrics_unknown": ("clf", at("metrics", value=["nope"]), "'metrics'", None),
    "name_empty": ("clf", at("name", value=""), "'name'", None),
}


@pytest.mark.parametrize("name", list(DROPPED))
def test_descriptive_field_malformed_is_dropped(name: str, bases: Bases, tmp_path: Path) -> None:
    base, edit, fragment, gone = DROPPED[name]
    path = rewrite(getattr(bases, base), tmp_path / f"{name}.lnet", edit)
    out = _all(readers(path, bases, tmp_path / "out.onnx", cli_data=True))
    for reader in ("load", "info", "predict", "evaluate", "explain", "onnx"):
        assert out[reader].kind == "ok", (reader, out[reader])
    for reader in ("info", "predict", "evaluate", "explain"):
        assert out[reader].warned, reader
    code, text, err = run_cli(["info", path])
    assert code == 0
    warning_lines = [line for line in err.splitlines() if fragment in line]
    assert len(warning_lines) == 1, err
    assert warning_lines[0].startswith("lucidnet: warning: ")
    if gone is not None:
        assert gone not in text, text
    assert "Network" in text or "Total params" in text  # the rest is still shown


def test_core_fields_dropped_with_model_file_warning(bases: Bases, tmp_path: Path) -> None:
    """``lucidnet.load`` itself drops a malformed history / metrics / name / metadata."""
    edits = {
        "history": at("history", "best_epoch", value="first"),
        "metrics": at("metrics", value="accuracy"),
        "name": at("name", value=7),
        "metadata": at("metadata", value=["not", "an", "object"]),
    }
    for field, edit in edits.items():
        path = rewrite(bases.api, tmp_path / f"{field}.lnet", edit)
        with pytest.warns(ModelFileWarning, match=f"its '{field}' entry is malformed"):
            model = ln.load(path)
        assert model.predict(bases.X[:2]).shape == (2, 3)
    assert model.metadata == {}  # (the last one: metadata dropped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ln.load(bases.api).metadata == {"owner": "tests", "tags": ["a", "b"]}


def test_fit_report_dropped_with_preparation_warning(bases: Bases) -> None:
    info, _, _ = split_file(bases.clf.read_bytes())
    saved = info["metadata"]["preparation"]
    saved["fit_report"]["imputed"] = {"x": {"count": "ten", "value": 0.1, "how": "median"}}
    with pytest.warns(PreparationWarning, match="'imputed' is malformed"):
        restored = TabularPreparer.from_dict(saved)
    assert "imputed" not in restored.report_
    assert "imputed (fitting rows)" not in restored.summary()
    assert restored.report_["rows_fit"] == saved["fit_report"]["rows_fit"]


@pytest.mark.parametrize(
    "where",
    [("metadata", "user"), ("metadata", "preparation", "fit_report", "x"), ("history", "params")],
)
def test_deep_nesting_is_refused(where: tuple, bases: Bases, tmp_path: Path) -> None:
    """JSON nested 600 deep parses, but copying it (``explain`` copies the model) or printing
    it hit Python's recursion limit (a RecursionError traceback): refused at load."""
    path = rewrite(bases.clf, tmp_path / "deep.lnet", at(*where, value="__deep__"))
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    text = raw[8 : 8 + n].replace(b'\\"__deep__\\"', b"[" * 600 + b"]" * 600)
    assert len(text) > n
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    out = _all(readers(path, bases, tmp_path / "out.onnx", cli_data=True))
    for reader in ("load", "info", "predict", "evaluate", "explain", "export", "onnx"):
        assert out[reader].kind == "refused", out[reader]
        assert "nested more than 64 levels deep" in out[reader].detail


# ---- the network must fit the metadata -------------------------------------------------------


def _with_clf_metadata(bases: Bases, model: Any, path: Path) -> Path:
    """``model`` saved with the metadata (preparation, classes ...) of the CLI's classifier."""
    model.metadata = ln.load(bases.clf).metadata
    model.save(path)
    return path


def _n_features(bases: Bases) -> int:
    return ln.load(bases.clf).input_shape[0]


@pytest.mark.parametrize(
    "layers, fragment",
    [
        # the crafted Embedding: token ids in [0, 3), the command feeds float features
        (lambda n: [ln.Embedding(3, 2), ln.Dense(3)], "takes token ids"),
        (lambda n: [ln.Dense(2)], "output units, one per class"),
        (lambda n: [ln.Dense(3), ln.Dense(1)], "output units"),
    ],
    ids=["embedding_first", "two_outputs_for_three_classes", "one_output"],
)
def test_network_must_fit_metadata(layers, fragment, bases: Bases, tmp_path: Path) -> None:
    n = _n_features(bases)
    model = ln.Sequential(layers(n))
    model.build((n,), seed=0)
    model.compile("cross_entropy")
    path = _with_clf_metadata(bases, model, tmp_path / "net.lnet")
    out = _all(readers(path, bases, tmp_path / "out.onnx", cli_data=True))
    for reader in ("info", "predict", "evaluate", "explain"):
        assert out[reader].kind == "refused", out[reader]
        assert fragment in out[reader].detail, out[reader].detail
    assert out["load"].kind == "ok"  # the library loads it: it is a valid network


def test_network_input_must_match_preparation(bases: Bases, tmp_path: Path) -> None:
    model = ln.Sequential([ln.Dense(3)])
    model.build((_n_features(bases) + 1,), seed=0)
    model.compile("cross_entropy")
    path = _with_clf_metadata(bases, model, tmp_path / "wide.lnet")
    code, _, err = run_cli(["predict", path, bases.data])
    assert code == 2 and err.count("\n") == 1
    assert "does not match the" in err and "features of its data preparation" in err


def test_statistic_beyond_float32_is_refused_per_row(bases: Bases, tmp_path: Path) -> None:
    """A finite but huge fill value (fuzzer case: 1e225) makes the prepared feature of every
    row with a missing ``x`` infinite in float32: the commands that read the CSV name the row
    and the feature in one line (before, the network raised a ValueError traceback)."""
    path = rewrite(
        bases.clf, tmp_path / "fill.lnet", prep("state", "numeric", "fill", 0, value=1e225)
    )
    out = _all(readers(path, bases, tmp_path / "out.onnx", cli_data=True))
    assert out["info"].kind == "ok"
    for reader in ("predict", "evaluate", "explain"):
        assert out[reader].kind == "refused"
        assert "row 1 gives a non-finite value for the feature 'x'" in out[reader].detail


def test_metadata_filled_from_preparation(bases: Bases, tmp_path: Path) -> None:
    """Files without ``task`` / ``classes`` / ``target`` (older versions) take them from the
    preparation; a valid file gives no warning."""
    edit = together(*(meta(key, delete=True) for key in ("task", "classes", "target")))
    path = rewrite(bases.clf, tmp_path / "old.lnet", edit)
    code, text, err = run_cli(["predict", path, bases.data])
    assert code == 0 and err == ""
    assert text.splitlines()[0].startswith("prediction,proba_high,proba_low,proba_mid")
    code, _, err = run_cli(["info", bases.clf])
    assert code == 0 and err == ""


# ---- the estimators' loader ------------------------------------------------------------------

#: name -> (base, edit, fragment of the ModelFileError)
ESTIMATOR_REFUSED = {
    "classes_long": ("est_clf", fitted("classes_", value=[0, 1, 2, 3]), "output units"),
    "classes_unsorted": ("est_clf", fitted("classes_", value=[2, 1, 0]), "sorted"),
    "classes_dtype_bomb": ("est_clf", fitted("classes_dtype", value="<U999999999"), "strings"),
    "classes_dtype_void": ("est_clf", fitted("classes_dtype", value="V16"), "plain number"),
    "classes_dtype_truncating": ("est_clf", fitted("classes_", value=[0.5, 1, 2]), "i values"),
    "activation": ("est_clf", fitted("out_activation_", value="relu"), "out_activation_"),
    "n_features": ("est_clf", fitted("n_features_in_", value=4), "input shape"),
    "n_features_bool": ("est_clf", fitted("n_features_in_", value=True), "n_features_in_"),
    "n_outputs": (
        "est_reg",
        together(fitted("n_outputs_", value=2), fitted("target_scaling", value=None)),
        "n_outputs_ (2)",
    ),
    "scaling_std_zero": (
        "est_reg",
        fitted("target_scaling", "std", value=[0.0]),
        "positive stds",
    ),
    "feature_names": ("est_clf", fitted("feature_names_in_", value=["a"]), "3 strings"),
    "param_unknown": (
        "est_clf",
        at("metadata", "sklearn_estimator", "params", "evil", value=1),
        "unknown parameters",
    ),
    "param_invalid": (
        "est_clf",
        at("metadata", "sklearn_estimator", "params", "hidden_layer_sizes", value=[-1]),
        "hidden_layer_sizes",
    ),
    "random_state_str": (
        "est_clf",
        at("metadata", "sklearn_estimator", "params", "random_state", value="seed"),
        "random_state",
    ),
    "class": ("est_clf", at("metadata", "sklearn_estimator", "class", value=[1]), "unknown"),
    "fitted_list": ("est_reg", at("metadata", "sklearn_estimator", "fitted", value=[]), "objects"),
}


@pytest.mark.parametrize("name", list(ESTIMATOR_REFUSED))
def test_estimator_field_malformed_is_refused(name: str, bases: Bases, tmp_path: Path) -> None:
    base, edit, fragment = ESTIMATOR_REFUSED[name]
    path = rewrite(getattr(bases, base), tmp_path / f"{name}.lnet", edit)
    with pytest.raises(ln.ModelFileError) as info:
        load_estimator(path)
    assert fragment in str(info.value)
    out = _all(readers(path, bases, tmp_path / "out.onnx", cli_data=True))
    assert out["load"].kind == "ok" and out["onnx"].kind == "ok"  # the network is fine


def test_estimator_loss_curve_dropped_with_warning(bases: Bases, tmp_path: Path) -> None:
    path = rewrite(bases.est_clf, tmp_path / "curve.lnet", fitted("loss_curve_", value="x"))
    with pytest.warns(ModelFileWarning, match="loss_curve_ is malformed"):
        est = load_estimator(path)
    assert est.loss_curve_ == []
    assert isinstance(est, NeuralNetworkClassifier)
    np.testing.assert_array_equal(
        est.predict(bases.X), load_estimator(bases.est_clf).predict(bases.X)
    )


# ---- the formatting the attack broke -------------------------------------------------------------


def test_format_confusion_edge_cases() -> None:
    assert format_confusion(np.zeros((0, 0), dtype=int), []).startswith("true\\pred")
    text = format_confusion(np.array([[10**12, 0], [0, 1]]), ["a", "b"])
    assert "1000000000000" in text
