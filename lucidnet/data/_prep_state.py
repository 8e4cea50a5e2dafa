"""The schema of a :class:`lucidnet.prep.TabularPreparer` read back from JSON (a model file),
kept apart from ``prep.py`` so that the preparer module stays readable, and the feature roles
that the state is organised by (``prep`` re-exports them). Private.

A saved preparer (``TabularPreparer.to_dict``) has four parts, and each is checked here before
anything is built from it:

* ``config``: the constructor's arguments (checked by the constructor itself);
* ``state`` (:func:`validate_state`): what ``transform`` computes with. Its keys are exactly
  those the columns call for (``numeric`` with numeric columns, ``categorical`` with
  categorical ones, ``text`` in TF-IDF mode, ``ids`` in token-id mode with text columns); every
  list has the length the columns imply; numbers are finite; vocabularies and categories are
  distinct strings; missing-value indicators name feature columns; a categorical column's
  missing category (``categorical.missing``, absent in files written before it existed) is its
  fill value and one of its categories; optional blocks ``dates`` and ``cyclic`` (integer
  codes such as hour or month; absent in older files) describe their columns; ``numeric``
  holds, since heavy tails are log-transformed, a ``log`` flag and the training ``min`` /
  ``max`` per column (absent in older files: no log, no range check). Invalid: the
  file is refused;
* ``target`` (:func:`validate_target`): the target column, task and classes, which
  ``encode_target`` / ``decode_target`` use. Invalid: refused;
* ``fit_report`` (:func:`clean_fit_report`): what fitting did (rows, imputed values, split,
  the leakage guard's findings), which only describes the run. Each malformed entry is
  dropped with a :class:`PreparationWarning`, so ``summary()`` shows what is valid.

The checks are small functions on the parsed JSON rather than a JSON Schema: the rules that
matter relate fields to each other (one statistic per numeric column, one vectorizer per text
column), and the data package stays free of a schema dependency. The functions never print a
whole value in an error message (a crafted list may hold millions of entries).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from .._validation import check_positive_int, json_kind

#: the column roles that produce features, in the order of the output columns.
FEATURE_ROLES = ("numeric", "categorical", "text")

#: the statistics each numeric scaler stores, one list entry per numeric column
_SCALER_KEYS = {
    "standard": ("mean", "var", "scale"),
    "minmax": ("data_min", "data_max", "data_range", "scale", "min"),
    "none": (),
}
#: the largest count (rows, categories) a saved preparer may state: 2**53, exact as a float
_MAX_COUNT = 2**53


class PreparationWarning(UserWarning):
    """A descriptive part of a saved preparer (its fit report) was malformed and dropped."""


def _count(v: Any, where: str, minimum: int = 0) -> int:
    """``v`` if it is an integer (not a bool) in ``[minimum, 2**53]``."""
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= _MAX_COUNT:
        raise ValueError(f"{where} must be an integer >= {minimum}, got {json_kind(v)}")
    return v


def _list(v: Any, where: str, n: int | None = None, kind_: type | tuple = (int, float)) -> list:
    """``v`` if it is a list of ``kind_`` (of ``n`` entries when given), else a ValueError.
    Numbers must be finite (a NaN fill value or statistic would silently drop or poison a
    feature)."""
    numbers = kind_ == (int, float)
    if not isinstance(v, list) or not all(
        isinstance(x, kind_) and not isinstance(x, bool) for x in v
    ):
        what = "numbers" if numbers else f"{getattr(kind_, '__name__', kind_)}s"
        raise ValueError(f"{where} must be a list of {what}, got {json_kind(v)}")
    if n is not None and len(v) != n:
        raise ValueError(f"{where} must have {n} entries, got {len(v)}")
    if numbers and not all(_finite(x) for x in v):
        raise ValueError(f"{where} must hold finite numbers")
    return v


def _finite(x: int | float) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond the float range
        return False


def _distinct(v: list[Any], where: str) -> None:
    if len(set(v)) != len(v):
        raise ValueError(f"{where} has duplicate entries")


def _keys(d: Any, where: str, expected: set[str]) -> dict[str, Any]:
    """``d`` if it is an object with exactly the keys ``expected``."""
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be an object, got {json_kind(d)}")
    if set(d) != expected:
        raise ValueError(
            f"{where} must have the keys {sorted(expected)}, got {sorted(d)[:10]}"
            + ("..." if len(d) > 10 else "")
        )
    return d


# ------------------------------------------------------------------------------------------------
# state
# ------------------------------------------------------------------------------------------------


def validate_state(st: Any, scaling: str, text_mode: str = "tfidf") -> None:
    """Check a preparer's state dict (read from a model file) before scikit-learn objects are
    rebuilt from it (rules in the module docstring).

    Raises:
        ValueError: naming the first entry that is malformed.
    """
    if not isinstance(st, dict):
        raise ValueError(f"'state' must be an object, got {json_kind(st)}")
    cols = st.get("columns")
    if not isinstance(cols, dict) or set(cols) != set(FEATURE_ROLES):
        raise ValueError(f"'state.columns' must map each of {list(FEATURE_ROLES)} to a list")
    for r in FEATURE_ROLES:
        _list(cols[r], f"state.columns.{r}", kind_=str)
    _keys(st, "state", _expected_state_keys(st, cols, text_mode))
    roles = st["roles"]
    if not isinstance(roles, dict) or not all(
        isinstance(v, list) and len(v) == 3 and all(isinstance(x, str) for x in v)
        for v in roles.values()
    ):
        raise ValueError("'state.roles' must map column names to [role, reason, dtype]")
    indicators = _list(st["indicators"], "state.indicators", kind_=str)
    _distinct(indicators, "state.indicators")
    if not set(indicators) <= set(cols["numeric"]) | set(cols["categorical"]):
        raise ValueError("state.indicators must name numeric or categorical columns")
    if cols["numeric"]:
        _check_numeric(st["numeric"], len(cols["numeric"]), scaling)
    if cols["categorical"]:
        _check_categorical(st["categorical"], cols["categorical"])
    if "ids" in st:
        ids = _keys(st["ids"], "state.ids", {"vocabulary", "max_len"})
        _distinct(_list(ids["vocabulary"], "state.ids.vocabulary", kind_=str), "state.ids")
        check_positive_int(ids["max_len"], "state.ids.max_len")
    if "text" in st:
        _check_tfidf(st["text"], len(cols["text"]))
    if "dates" in st:
        _check_dates(st["dates"])
    if "cyclic" in st:
        _check_cyclic(st["cyclic"])


def _check_cyclic(d: Any) -> None:
    """``state.cyclic``: distinct column names, a period (an integer >= 2) and a missing
    indicator flag per column. Absent in files written before integer codes were detected."""
    d = _keys(d, "state.cyclic", {"columns", "period", "indicator"})
    columns = _list(d["columns"], "state.cyclic.columns", kind_=str)
    n = len(columns)
    if n == 0:
        raise ValueError("state.cyclic.columns must name at least one column")
    _distinct(columns, "state.cyclic.columns")
    for j, p in enumerate(_list(d["period"], "state.cyclic.period", n, kind_=int)):
        _count(p, f"state.cyclic.period[{j}]", minimum=2)
    ind = d["indicator"]
    if not isinstance(ind, list) or len(ind) != n or not all(isinstance(x, bool) for x in ind):
        raise ValueError(f"state.cyclic.indicator must be a list of {n} booleans")


def _check_dates(d: Any) -> None:
    """``state.dates``: per date column a known format, a finite origin, and finite fill / mean /
    positive scale lists of the column's feature count (6, or 8 for a format with a time)."""
    from .columns import DATE_FORMATS

    keys = {"columns", "formats", "origin", "fill", "mean", "scale", "indicator"}
    d = _keys(d, "state.dates", keys)
    columns = _list(d["columns"], "state.dates.columns", kind_=str)
    n = len(columns)
    if n == 0:
        raise ValueError("state.dates.columns must name at least one column")
    _distinct(columns, "state.dates.columns")
    formats = _list(d["formats"], "state.dates.formats", n, kind_=str)
    _list(d["origin"], "state.dates.origin", n)
    ind = d["indicator"]
    if not isinstance(ind, list) or len(ind) != n or not all(isinstance(x, bool) for x in ind):
        raise ValueError(f"state.dates.indicator must be a list of {n} booleans")
    for j, fmt in enumerate(formats):
        if fmt.removesuffix(" %z") not in DATE_FORMATS:
            raise ValueError(f"state.dates.formats[{j}] is not a known date format: {fmt!r}")
        k = 8 if "%H" in fmt else 6
        for key in ("fill", "mean", "scale"):
            if not isinstance(d[key], list) or len(d[key]) != n:
                raise ValueError(f"state.dates.{key} must be a list of {n} lists")
            _list(d[key][j], f"state.dates.{key}[{j}]", k)
        if not all(x > 0 for x in d["scale"][j]):
            raise ValueError(f"state.dates.scale[{j}] must hold positive numbers")


def _expected_state_keys(st: dict[str, Any], cols: dict[str, Any], text_mode: str) -> set[str]:
    """The keys a state with these columns has: one block per role present; TF-IDF mode keeps a
    ``text`` block (possibly of no vectorizer: every text column was dropped as empty), token-id
    mode an ``ids`` block when there are text columns."""
    keys = {"columns", "roles", "indicators"}
    keys |= {r for r in ("numeric", "categorical") if cols[r]}
    if text_mode == "tfidf" and (cols["text"] or "text" in st):
        keys.add("text")
    if text_mode == "ids" and cols["text"]:
        keys.add("ids")
    for optional in ("dates", "cyclic"):  # only preparers that found such columns have them
        if optional in st:
            keys.add(optional)
    return keys


def _check_numeric(num: Any, n: int, scaling: str) -> None:
    """``state.numeric``: ``n`` fill values and the statistics of the ``scaling`` scaler, and,
    in files written since heavy tails are log-transformed (all three or none), per column a
    ``log`` flag and the training ``min`` <= ``max`` (>= 0 where ``log``)."""
    extra = {"log", "min", "max"}
    has = isinstance(num, dict) and bool(extra & set(num))
    num = _keys(num, "state.numeric", {"fill", "scaler"} | (extra if has else set()))
    if has:
        log = num["log"]
        if not isinstance(log, list) or len(log) != n or not all(isinstance(x, bool) for x in log):
            raise ValueError(f"state.numeric.log must be a list of {n} booleans")
        lo = _list(num["min"], "state.numeric.min", n)
        hi = _list(num["max"], "state.numeric.max", n)
        if not all(a <= b for a, b in zip(lo, hi, strict=True)):
            raise ValueError("state.numeric.min must not exceed state.numeric.max")
        if not all(a >= 0 for a, f in zip(lo, log, strict=True) if f):
            raise ValueError("state.numeric.min must be >= 0 for a log-transformed column")
    _list(num["fill"], "state.numeric.fill", n)
    sc = num["scaler"]
    if not isinstance(sc, dict) or sc.get("kind") != scaling:
        found = sc.get("kind") if isinstance(sc, dict) else sc
        raise ValueError(f"state.numeric.scaler.kind must be {scaling!r}, got {json_kind(found)}")
    _keys(sc, "state.numeric.scaler", {"kind", "n_samples_seen", *_SCALER_KEYS[scaling]})
    for k in _SCALER_KEYS[scaling]:
        _list(sc[k], f"state.numeric.scaler.{k}", n)
    if scaling == "standard" and not all(s > 0 for s in sc["scale"]):
        raise ValueError("state.numeric.scaler.scale must hold positive numbers")
    _count(sc["n_samples_seen"], "state.numeric.scaler.n_samples_seen")


def _check_categorical(cat: Any, columns: list[str]) -> None:
    """``state.categorical``: one fill value, a non-empty list of distinct categories and a
    count per column, and, in files written since missing values have a category of their own,
    ``missing`` (:func:`_check_missing_categories`)."""
    base = {"fill", "categories", "n_seen"}
    has_missing = isinstance(cat, dict) and "missing" in cat
    cat = _keys(cat, "state.categorical", base | {"missing"} if has_missing else base)
    n = len(columns)
    _list(cat["fill"], "state.categorical.fill", n, str)
    cats = cat["categories"]
    if not isinstance(cats, list) or len(cats) != n:
        raise ValueError(f"state.categorical.categories must be a list of {n} lists")
    for j, c in enumerate(cats):
        where = f"state.categorical.categories[{j}]"
        if not _list(c, where, kind_=str):
            raise ValueError(f"{where} is empty")
        _distinct(c, where)
    seen = cat["n_seen"]
    if not isinstance(seen, dict) or set(seen) != set(columns):
        raise ValueError("state.categorical.n_seen must have one count per categorical column")
    for c, k in seen.items():
        _count(k, f"state.categorical.n_seen[{c[:40]!r}]")
    if has_missing:
        _check_missing_categories(cat)


def _check_missing_categories(cat: dict[str, Any]) -> None:
    """``state.categorical.missing``: per column the label of its missing category (it must be
    the column's fill value and one of its categories), or null for a column that had no
    missing values when fitted (its fill value must then be no category, so that a missing
    value encodes as all zeros, like an unseen one). Absent in older files: there missing
    values take the fill value, the most frequent training value."""
    labels, fills, cats = cat["missing"], cat["fill"], cat["categories"]
    where = "state.categorical.missing"
    if not isinstance(labels, list) or len(labels) != len(fills):
        raise ValueError(
            f"{where} must be a list of {len(fills)} strings or nulls, got {json_kind(labels)}"
        )
    for j, label in enumerate(labels):
        if label is None:
            if fills[j] in cats[j]:
                raise ValueError(
                    f"state.categorical.fill[{j}] must not be a category when {where}[{j}] is null"
                )
        elif not isinstance(label, str) or label != fills[j] or label not in cats[j]:
            raise ValueError(
                f"{where}[{j}] must be null or the column's fill value and one of its "
                f"categories, got {json_kind(label)}"
            )


def _check_tfidf(text: Any, n: int) -> None:
    """``state.text``: ``n`` vectorizers, each a non-empty vocabulary of distinct terms with
    one finite idf weight per term."""
    vecs = _keys(text, "state.text", {"vectorizers"})["vectorizers"]
    if not isinstance(vecs, list) or len(vecs) != n:
        raise ValueError(f"state.text.vectorizers must be a list of {n} objects")
    for j, v in enumerate(vecs):
        where = f"state.text.vectorizers[{j}]"
        v = _keys(v, where, {"vocabulary", "idf"})
        voc = _list(v["vocabulary"], f"{where}.vocabulary", kind_=str)
        if not voc:
            raise ValueError(f"{where}.vocabulary is empty")
        _distinct(voc, f"{where}.vocabulary")
        _list(v["idf"], f"{where}.idf", len(voc))


# ------------------------------------------------------------------------------------------------
# target and fit report
# ------------------------------------------------------------------------------------------------


def _label(v: Any) -> bool:
    """A class label as the preparer stores it: a string, an integer, a finite float or a bool."""
    return isinstance(v, (str, int)) or (isinstance(v, float) and math.isfinite(v))


def validate_target(t: Any, config: dict[str, Any]) -> None:
    """Check the ``target`` section (``None``, or what ``prepare_target`` found): the column
    (the preparer's own ``target``), the task (the preparer's ``task`` when one was set), and
    for classification two or more distinct class labels.

    Raises:
        ValueError: naming the first entry that is malformed.
    """
    if t is None:
        return
    if not isinstance(t, dict):
        raise ValueError(f"'target' must be an object or null, got {json_kind(t)}")
    if not isinstance(t.get("name"), str) or t["name"] != config.get("target"):
        raise ValueError(
            f"target.name must be the preparer's target column {config.get('target')!r}, got "
            f"{json_kind(t.get('name'))}"
        )
    task = t.get("task")
    if task not in ("classification", "regression") or config.get("task") not in (None, task):
        raise ValueError(
            f"target.task must be 'classification' or 'regression', got {json_kind(task)}"
        )
    if not isinstance(t.get("reason"), str):
        raise ValueError(f"target.reason must be a string, got {json_kind(t.get('reason'))}")
    rows = _count(t.get("rows_in"), "target.rows_in")
    if _count(t.get("rows_dropped_missing"), "target.rows_dropped_missing") > rows:
        raise ValueError("target.rows_dropped_missing is larger than target.rows_in")
    classes = t.get("classes")
    if task == "regression":
        if classes is not None:
            raise ValueError("target.classes must be absent for a regression target")
        return
    if not isinstance(classes, list) or len(classes) < 2 or not all(map(_label, classes)):
        raise ValueError(
            f"target.classes must be a list of 2 or more class labels (strings or numbers), got "
            f"{json_kind(classes)}"
        )
    # distinct as values (encode_target looks labels up) and as text (output column names)
    if len(set(classes)) != len(classes) or len({str(c) for c in classes}) != len(classes):
        raise ValueError("target.classes has duplicate labels")


def _imputed(v: Any) -> None:
    if not isinstance(v, dict) or not all(
        isinstance(e, dict)
        and set(e) == {"count", "value", "how"}
        and isinstance(e["how"], str)
        and (e["value"] is None or isinstance(e["value"], (str, int, float)))
        for e in v.values()
    ):
        raise ValueError("must map columns to {'count', 'value', 'how'}")
    for c, e in v.items():
        _count(e["count"], f"count of {c[:40]!r}")


def _split(v: Any) -> None:
    _keys(v, "it", {"train", "val", "test", "stratified", "note"})
    for k in ("train", "val", "test"):
        _count(v[k], k)
    if not isinstance(v["stratified"], bool) or not isinstance(v["note"], str):
        raise ValueError("'stratified' must be true or false and 'note' a string")


def _leakage(v: Any) -> None:
    """What the leakage guard found (``prepare``): one message per leak, whether the columns
    were kept and why, and the rows of the sample it was checked on (null: all)."""
    _keys(v, "it", {"columns", "kept", "kept_why", "rows_sampled"})
    _list(v["columns"], "'columns'", kind_=str)
    if not isinstance(v["kept"], bool):
        raise ValueError(f"'kept' must be true or false, got {json_kind(v['kept'])}")
    if v["kept_why"] is not None and not isinstance(v["kept_why"], str):
        raise ValueError(f"'kept_why' must be a string or null, got {json_kind(v['kept_why'])}")
    if v["rows_sampled"] is not None:
        _count(v["rows_sampled"], "'rows_sampled'", minimum=1)


#: the fit report's entries and their checks (entries not listed are kept as they are: no code
#: reads them)
_FIT_REPORT = {
    "rows_fit": lambda v: _count(v, "it"),
    "min_df": lambda v: _count(v, "it", minimum=1),
    "imputed": _imputed,
    "split": lambda v: v is None or _split(v),
    "leakage": _leakage,
}


def clean_fit_report(report: Any) -> dict[str, Any]:
    """The ``fit_report`` section with each malformed entry dropped (with a
    :class:`PreparationWarning`); an entry that is not an object at all gives ``{}``."""
    if not isinstance(report, dict):
        warnings.warn(
            f"the preparation's fit report is {json_kind(report)}, not an object; dropped",
            PreparationWarning,
            stacklevel=3,
        )
        return {}
    clean = dict(report)
    for key, check in _FIT_REPORT.items():
        if key not in clean:
            continue
        try:
            check(clean[key])
        except ValueError as exc:
            warnings.warn(
                f"the preparation's fit report entry {key!r} is malformed and was dropped ({exc})",
                PreparationWarning,
                stacklevel=3,
            )
            del clean[key]
    return clean
