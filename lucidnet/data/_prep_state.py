"""Validation of a :class:`lucidnet.prep.TabularPreparer` state read back from JSON (a model
file), kept apart from ``prep.py`` so that the preparer module stays readable, and the feature
roles that the state is organised by (``prep`` re-exports them). Private."""

from __future__ import annotations

from typing import Any

from .._validation import check_positive_int

#: the column roles that produce features, in the order of the output columns.
FEATURE_ROLES = ("numeric", "categorical", "text")


def validate_state(st: dict[str, Any], scaling: str) -> None:
    """Check shapes and types of a preparer's state dict (read from a model file) before
    scikit-learn objects are rebuilt from it.

    Raises:
        ValueError: naming the first entry that is malformed.
    """
    cols = st.get("columns")
    if not isinstance(cols, dict) or set(cols) != set(FEATURE_ROLES):
        raise ValueError(f"'state.columns' must map each of {list(FEATURE_ROLES)} to a list")
    for r in FEATURE_ROLES:
        _list(cols[r], f"state.columns.{r}", kind=str)
    roles = st.get("roles")
    if not isinstance(roles, dict) or not all(
        isinstance(v, list) and len(v) == 3 and all(isinstance(x, str) for x in v)
        for v in roles.values()
    ):
        raise ValueError("'state.roles' must map column names to [role, reason, dtype]")
    _list(st.get("indicators"), "state.indicators", kind=str)
    if cols["numeric"]:
        _check_numeric(st["numeric"], len(cols["numeric"]), scaling)
    if cols["categorical"]:
        _check_categorical(st["categorical"], cols["categorical"])
    if "ids" in st:
        _list(st["ids"]["vocabulary"], "state.ids.vocabulary", kind=str)
        check_positive_int(st["ids"]["max_len"], "state.ids.max_len")
    elif cols["text"]:
        _check_tfidf(st["text"], len(cols["text"]))


def _list(v: Any, where: str, n: int | None = None, kind: type | tuple = (int, float)) -> list:
    """``v`` if it is a list of ``kind`` (of ``n`` entries when given), else a ValueError."""
    if not isinstance(v, list) or not all(
        isinstance(x, kind) and not isinstance(x, bool) for x in v
    ):
        raise ValueError(f"{where} must be a list of {getattr(kind, '__name__', 'numbers')}")
    if n is not None and len(v) != n:
        raise ValueError(f"{where} must have {n} entries, got {len(v)}")
    return v


def _check_numeric(num: dict[str, Any], n: int, scaling: str) -> None:
    """``state.numeric``: ``n`` fill values and the statistics of the ``scaling`` scaler."""
    _list(num["fill"], "state.numeric.fill", n)
    sc = num["scaler"]
    if sc.get("kind") != scaling:
        raise ValueError(f"state.numeric.scaler.kind must be {scaling!r}, got {sc.get('kind')!r}")
    keys = {
        "standard": ("mean", "var", "scale"),
        "minmax": ("data_min", "data_max", "data_range", "scale", "min"),
    }
    for k in keys.get(scaling, ()):
        _list(sc.get(k), f"state.numeric.scaler.{k}", n)
    if not isinstance(sc.get("n_samples_seen"), int):
        raise ValueError("state.numeric.scaler.n_samples_seen must be an int")


def _check_categorical(cat: dict[str, Any], columns: list[str]) -> None:
    """``state.categorical``: one fill value, a non-empty category list and a count per column."""
    n = len(columns)
    _list(cat["fill"], "state.categorical.fill", n, str)
    cats = cat["categories"]
    if not isinstance(cats, list) or len(cats) != n:
        raise ValueError(f"state.categorical.categories must be a list of {n} lists")
    for j, c in enumerate(cats):
        if not _list(c, f"state.categorical.categories[{j}]", kind=str):
            raise ValueError(f"state.categorical.categories[{j}] is empty")
    if set(cat["n_seen"]) != set(columns):
        raise ValueError("state.categorical.n_seen must have one count per categorical column")


def _check_tfidf(text: dict[str, Any], n: int) -> None:
    """``state.text``: ``n`` vectorizers, each a vocabulary with one idf weight per term."""
    vecs = text["vectorizers"]
    if not isinstance(vecs, list) or len(vecs) != n:
        raise ValueError(f"state.text.vectorizers must be a list of {n} dicts")
    for j, v in enumerate(vecs):
        voc = _list(v["vocabulary"], f"state.text.vectorizers[{j}].vocabulary", kind=str)
        _list(v["idf"], f"state.text.vectorizers[{j}].idf", len(voc))
