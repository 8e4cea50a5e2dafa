"""Default network and training settings chosen from the prepared data, with the reason.

The static defaults of ``lucidnet train`` (``--hidden 64,32``, no dropout, batches of 32) suit
tabular data: a few dozen to a few hundred dense, standardised columns. Text is different:
TF-IDF turns a text column into thousands of sparse columns, as many input weights per hidden
unit as there are terms, and a network with those defaults memorises the training rows within
one or two epochs (the airline tweets: 5,179 of 5,394 inputs are TF-IDF terms; the validation
loss is lowest after epoch 1-2, then doubles while the training loss falls to 0.01).

The rule (:func:`choose`): when TF-IDF terms are at least :data:`TEXT_SHARE` of the prepared
input features, the input is *text-dominated*, and the options the user did not give become
:data:`TEXT_SETTINGS`:

- ``hidden 100`` (one wide layer): a bag of words is close to linearly separable; a second,
  narrower layer (32 units) is a bottleneck with more weights to overfit and nothing the first
  layer cannot represent (scikit-learn's ``MLPClassifier``, the strong baseline on such data,
  has one layer of 100 units by default);
- ``dropout 0.5``: each hidden unit must be useful without the others, the classic setting for
  a wide layer on sparse, high-dimensional input;
- ``batch 128`` where an epoch still has :data:`MIN_STEPS` such batches (2,560 training rows):
  fewer, less noisy updates per epoch, so that early stopping looks at the validation loss
  after a quarter of the former progress and can keep a point near the best one;
- a **final fit** (:func:`final_fit`): once early stopping has chosen the number of epochs, a
  new network of the same architecture is trained for that many epochs on the training +
  validation rows (80% of the file instead of 70%; a bag of words keeps gaining from rows).
  The test rows stay unseen: the printed test metrics are the saved model's.

Measured (``benchmarks/messy.py`` splits of the airline tweets, accuracy on the benchmark's own
test rows, seeds 0 / 1 / 2): static defaults 0.7824 / 0.8033 / 0.7913; ``--hidden 100`` alone
0.7910 / 0.8118 / 0.7975; dropout 0.5 + batch 128 0.7995 / 0.8108 / 0.7951; the three settings
0.7951 / 0.8115 / 0.7958; with the final fit 0.7995 / 0.8159 / 0.8009; the hand-built
scikit-learn MLP pipeline (leaks dropped, trained on 90% of the rows) 0.8019 / 0.8152 /
0.7985 (seeds 3 / 4: lucidnet 0.8029 / 0.8152, the MLP 0.7964 / 0.7958; means over the five
splits 0.8069 against 0.8016, a logistic regression 0.7876). Sublinear TF and a 50,000-term
vocabulary changed nothing (+-0.1 point). Of the benchmark's tabular files only mpg (168 of
its 190 inputs are TF-IDF terms of the car's name) is text-dominated: R^2 0.8720 / 0.9093 ->
0.8972 / 0.8983 (seeds 0 / 1).

Options given on the command line or in a ``--config`` file
(:func:`lucidnet.cli.args.options_given`), even at their static default values, are never
changed; the run prints which defaults were chosen and why (:func:`apply`), and the model file
keeps the reason (``training.defaults``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .saving import scaling_of

__all__ = [
    "TEXT_SETTINGS",
    "TEXT_SHARE",
    "MIN_STEPS",
    "DefaultsChoice",
    "apply",
    "choose",
    "final_fit",
    "text_features",
]

#: the share of TF-IDF columns among the prepared input features from which the input counts
#: as text-dominated
TEXT_SHARE = 0.5

#: the settings of text-dominated input, by option destination (``args.<dest>``)
TEXT_SETTINGS: dict[str, Any] = {"hidden": (100,), "dropout": 0.5, "batch_size": 128}

#: the larger batch only where an epoch still has this many batches of it
MIN_STEPS = 20

#: how each setting is written in the summary line
_FLAGS = {"hidden": "--hidden", "dropout": "--dropout", "batch_size": "--batch-size"}


@dataclass(frozen=True)
class DefaultsChoice:
    """What :func:`choose` decided.

    Attributes:
        settings: option destination -> value, for the options the rule sets (empty when the
            static defaults stay).
        kept: the options of :data:`TEXT_SETTINGS` left as the user gave them.
        reason: why, in one sentence (empty when nothing was chosen).
    """

    settings: dict[str, Any] = field(default_factory=dict)
    kept: tuple[str, ...] = ()
    reason: str = ""


def choose(
    n_features: int, n_text: int, n_train: int, given: Collection[str] = ()
) -> DefaultsChoice:
    """The rule: text settings for text-dominated input, for the options not ``given``.

    Args:
        n_features: prepared input features (columns of the feature matrix).
        n_text: how many of them are TF-IDF terms.
        n_train: training rows; the larger batch needs :data:`MIN_STEPS` of them per epoch.
        given: option destinations set by the user (never changed).

    Returns:
        A :class:`DefaultsChoice`; ``settings`` is empty below :data:`TEXT_SHARE`.
    """
    if n_features <= 0 or n_text < 0 or n_text > n_features:
        raise ValueError(
            f"n_features, n_text: expected 0 <= n_text <= n_features, n_features > 0, got "
            f"{n_text} of {n_features}"
        )
    share = n_text / n_features
    if share < TEXT_SHARE:
        return DefaultsChoice()
    rule = dict(TEXT_SETTINGS)
    reason = (
        f"{n_text} of the {n_features} input features ({share:.0%}, >= {TEXT_SHARE:.0%}) are "
        "TF-IDF text terms: sparse and numerous, which the tabular defaults (64,32, no "
        "dropout, batch 32) memorise within 1-2 epochs; one wide layer with dropout 0.5"
    )
    big = MIN_STEPS * rule["batch_size"]
    if n_train < big:  # a few updates per epoch would only slow the fit down
        del rule["batch_size"]
        reason += f" generalises better (batch 32 kept: fewer than {big} training rows)"
    else:
        reason += f" and batches of {rule['batch_size']} generalise better"
    kept = tuple(k for k in rule if k in given)
    return DefaultsChoice({k: v for k, v in rule.items() if k not in given}, kept, reason)


def text_features(preparer: Any) -> int:
    """How many of a fitted preparer's output features are TF-IDF terms (0 in token-id mode
    or without text columns)."""
    state = getattr(preparer, "state_", None) or {}
    return sum(len(v["vocabulary"]) for v in state.get("text", {}).get("vectorizers", []))


def _value_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def apply(args: argparse.Namespace, n_train: int, n_features: int, n_text: int) -> list[str]:
    """Set the chosen defaults on ``args`` (the options the user did not give); returns the
    summary lines to print (none when the static defaults stay).

    ``args.options_set`` (:func:`lucidnet.cli.args.options_given`, set by ``parse_args``)
    says what was given; without it (``args`` built by hand) nothing is changed.
    """
    given = getattr(args, "options_set", None)
    if given is None:
        return []
    choice = choose(n_features, n_text, n_train, given)
    args.defaults_reason = choice.reason or None  # saved with the hyper-parameters
    if not choice.reason:
        return []
    for dest, value in choice.settings.items():
        setattr(args, dest, value)
    chosen = ", ".join(f"{_FLAGS[k]} {_value_text(v)}" for k, v in choice.settings.items())
    kept = ", ".join(f"{_FLAGS[k]} {_value_text(getattr(args, k))}" for k in choice.kept)
    head = f"Defaults for text: {chosen or 'none changed'}"
    if kept:
        head += f" (kept as given: {kept})"
    return [head, f"  why: {choice.reason}; give an option to override it"]


def _fresh(model: Any) -> Any:
    """An unbuilt copy of ``model``'s architecture (new weights at ``fit``, from its seed)."""
    from ..model import Sequential

    layers = [type(layer).from_config(layer.get_config()) for layer in model.layers]
    return Sequential(layers, dtype=model.dtype, name=model.name)


def final_fit(
    args: argparse.Namespace, data: Any, model: Any, best: int | None, task: str, run_fit: Any
) -> tuple[Any, dict[str, float] | None, str] | None:
    """The text rule's final fit: a fresh network of the same architecture trained on the
    training + validation rows for the epochs early stopping chose (``best + 1``).

    Why: on text the validation rows are 1 in 8 of the rows a model could learn from, and a
    bag of words keeps gaining from more rows (the airline tweets, seeds 0-2: test accuracy
    +0.5 points on average); once early stopping has chosen the number of epochs they have done
    their job. The test rows stay unseen, so the test metrics remain those of the saved model.
    Skipped (None) unless ``--final-fit on``, or ``auto`` (the default) and the text rule chose
    the settings (:func:`apply`); and unless early stopping ran,
    and neither ``--calibrate`` (its temperature is fitted on the validation rows) nor a too
    large copy of the rows (over half the memory available now) is in the way.

    Args:
        args: the parsed options (``args.defaults_reason`` gets a note of the final fit).
        data: the prepared data; ``X_train`` / ``y_train`` become the rows the final network
            was trained on (so that the baselines are fitted on the same rows).
        model: the network early stopping selected (its architecture is reused).
        best: the selected epoch (0-based), None without early stopping.
        task: ``"classification"`` or ``"regression"``.
        run_fit: the command's fit, ``run_fit(args, data, model, optimizer, task, callbacks)``
            (:func:`lucidnet.cli.commands._run_fit`), called without validation rows.

    Returns:
        ``(network, target scaling {"mean", "std"} or None, a line for the output)``, or None
        when skipped.
    """
    from ..data.limits import available_memory
    from ..optimizers import get as get_optimizer

    reason = getattr(args, "defaults_reason", None)
    mode = getattr(args, "final_fit", "auto")  # --final-fit: auto (the text rule), on, off
    if mode == "off" or (mode == "auto" and not reason):
        return None
    if best is None or len(data.X_val) == 0 or getattr(args, "calibrate", False):
        return None
    rows = len(data.X_train) + len(data.X_val)
    room = available_memory()
    if room is not None and rows * data.X_train[0].nbytes > room // 2:
        return None
    data.X_train = np.concatenate([data.X_train, data.X_val])
    data.y_train = np.concatenate([data.y_train, data.y_val])
    view = argparse.Namespace(X_train=data.X_train, y_train=data.y_train)
    view.X_val, view.y_val = data.X_val[:0], data.y_val[:0]  # no validation: a fixed length
    final = _fresh(model)
    opts = argparse.Namespace(**{**vars(args), "epochs": best + 1})
    start = time.perf_counter()
    history = run_fit(opts, view, final, get_optimizer(args.optimizer, lr=args.lr), task, [])
    seconds = time.perf_counter() - start
    scaling = scaling_of(history)  # as commands._fit gives it
    note = f"final fit: training + validation rows ({rows}) for the {best + 1} epochs chosen"
    args.defaults_reason = f"{reason}; {note}" if reason else note
    why = "text defaults" if mode == "auto" else "--final-fit on"
    line = (
        f"Final fit ({why}): a new network trained on the training + validation rows "
        f"({rows}) for the {best + 1} epochs early stopping chose, in {seconds:.1f} s; the "
        "test rows stay unseen"
    )
    return final, scaling, line
