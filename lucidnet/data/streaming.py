"""Tables larger than memory: record batches in, prepared mini-batches out.

``lucidnet train big.parquet --target y`` (or ``--stream``) runs :func:`stream_prepare` instead of
:func:`lucidnet.data.prep.prepare`. Memory is bounded by the record batch, the shuffle buffer and
the held-out rows, never by the file:

1. :class:`TableReader` reads the file in record batches with pyarrow (Parquet row groups via
   ``ParquetFile.iter_batches``; CSV via ``pyarrow.csv.open_csv``, column types inferred from its
   first block), each batch a small DataFrame with the file row number of its first row.
2. The split (:class:`StreamSplit`) is a seeded hash of the file row number (splitmix64 of
   ``row + seed * 0x9E3779B97F4A7C15``, as a uniform number ``u`` in [0, 1)): ``u < test`` test,
   ``u < test + val`` validation, else training. It needs no pass and no memory, and the same
   seed puts every row in the same part on every read. It is not stratified. On a large file the
   held-out fractions are lowered so that each part holds at most ``max_holdout`` rows (they are
   kept in memory, prepared, for early stopping and the test metrics).
3. One streaming pass computes the preparation's statistics on the training rows
   (:class:`StreamStats`): per numeric column the count, mean and variance (Welford per batch,
   merged with Chan's parallel formula, float64, both of the raw values and of ``log1p`` for the
   heavy-tail decision), min / max, missing count, a few distinct values, and a uniform sample
   of ``median_sample`` values (the bottom-k of seeded random keys) for the median fill and the
   heavy-tail test (both exact while a column has at most ``median_sample`` training values:
   else they come from the sample, and the summary says so); per categorical column the category
   counts and missing count; the classes of the target over all rows; the regression target's
   moments. From them :meth:`TabularPreparer._finish_fit` builds the same fitted preparer as
   the in-memory path fitted on the same rows (the scaler's mean and variance to float64
   rounding: tests/test_streaming.py).
4. The column roles, the target's task and the leakage guard come from the first
   ``sample_rows`` rows (the whole file when it is smaller), as the summary says.
5. :class:`StreamSource` is a batch source for :func:`lucidnet.training.fit`: each epoch reads
   the file again (Parquet row groups in an order drawn from the run's generator), transforms
   each record batch with the fitted preparer and shuffles within a bounded buffer
   (``buffer_rows``: when it is full, a random half leaves in mini-batches and the rest stays to
   mix with the next record batches); ``shuffle=False`` gives the rows in file order.

Text, date and cyclic columns are not supported when streaming (their statistics need the
vocabulary or the values in memory): the error names the columns and the options that drop
them. pyarrow and pandas are imported inside the functions.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_float, check_positive_int
from .columns import (
    HEAVY_TAIL_MIN_DISTINCT,
    HEAVY_TAIL_RATIO,
    _category_counts,
    _label_key,
    _num_array,
    _pd,
    _sort_key,
    as_frame,
)
from .prep import FEATURE_ROLES, TabularPreparer, _guard_leakage

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "StreamSource",
    "StreamSplit",
    "StreamStats",
    "StreamedData",
    "TableReader",
    "stream_prepare",
]

BATCH_ROWS = 65_536  # rows per record batch read
BUFFER_ROWS = 100_000  # rows of the shuffle buffer
SAMPLE_ROWS = 50_000  # rows for roles, task and the leakage guard
MEDIAN_SAMPLE = 100_000  # values kept per numeric column for the median and the heavy-tail test
MAX_HOLDOUT = 100_000  # most rows held in memory per held-out part (validation, test)
_NA_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


# ---- reading --------------------------------------------------------------------------------


class TableReader:
    """A Parquet or CSV file in record batches, as DataFrames with their first row numbers.

    Args:
        path: the file (Parquet by its ``PAR1`` magic, else delimited text).
        batch_rows: rows per record batch (Parquet; CSV blocks are sized to about as many).
        sep: the CSV delimiter (default ``,``).
    """

    def __init__(self, path: str, batch_rows: int = BATCH_ROWS, sep: str | None = None) -> None:
        self.path, self.sep = path, sep or ","
        self.batch_rows = check_positive_int(batch_rows, "batch_rows")
        if not os.path.isfile(path):
            raise ValueError(f"data file '{path}' not found")
        with open(path, "rb") as f:
            self.parquet = f.read(4) == b"PAR1"
        self.n_rows: int | None = None
        self.group_rows: list[int] = []
        if self.parquet:
            meta = self._parquet().metadata
            self.group_rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            self.n_rows = int(sum(self.group_rows))

    def _parquet(self) -> Any:
        import pyarrow.parquet as pq

        # pages read through a small buffer, not a whole column chunk at once: about a third
        # less peak memory per row group (measured on 250,000-row groups of 21 float64 columns)
        return pq.ParquetFile(self.path, buffer_size=1 << 20, pre_buffer=False)

    def frames(self, rng: np.random.Generator | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
        """``(first row number, DataFrame)`` per record batch; with ``rng`` the Parquet row
        groups come in a random order (CSV: always in file order)."""
        if not self.parquet:
            yield from self._csv_frames()
            return
        starts = np.concatenate([[0], np.cumsum(self.group_rows)]).astype(np.int64)
        order = np.arange(len(self.group_rows))
        if rng is not None:
            order = rng.permutation(order)
        import pyarrow as pa

        pf = self._parquet()
        for g in order:
            start = int(starts[g])
            batches = pf.iter_batches(batch_size=self.batch_rows, row_groups=[int(g)],
                                      use_threads=False)  # fmt: skip
            for rb in batches:
                n = rb.num_rows
                df = rb.to_pandas()
                del rb
                yield start, df
                start += n
            # the pool keeps freed blocks for reuse; the next row group need not find them
            pa.default_memory_pool().release_unused()

    def _csv_frames(self) -> Iterator[tuple[int, pd.DataFrame]]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        # blocks of about batch_rows rows of 20 numbers (the first block fixes the types)
        opts = pcsv.ReadOptions(block_size=max(1 << 20, self.batch_rows * 160))
        # pandas' missing-value markers, so that a streamed CSV reads like read_csv's
        conv = pcsv.ConvertOptions(null_values=list(_NA_VALUES), strings_can_be_null=True)
        reader = pcsv.open_csv(
            self.path,
            read_options=opts,
            parse_options=pcsv.ParseOptions(delimiter=self.sep),
            convert_options=conv,
        )
        start = 0
        try:
            for rb in reader:
                yield start, rb.to_pandas()
                start += rb.num_rows
        except pa.ArrowInvalid as exc:
            raise ValueError(
                f"data file '{self.path}': reading it in blocks failed after row {start} "
                f"({str(exc).splitlines()[0]}); the column types are inferred from the first "
                "block: a column whose values change kind later cannot be streamed"
            ) from None

    def head(self, n: int) -> pd.DataFrame:
        """The first ``n`` rows (fewer if the file is shorter), index 0..n-1."""
        pd = _pd()
        parts, got = [], 0
        for _, df in self.frames():
            parts.append(df.iloc[: n - got])
            got += len(parts[-1])
            if got >= n:
                break
        if not parts:
            raise ValueError(f"data file '{self.path}' has no rows")
        return pd.concat(parts, ignore_index=True)


# ---- the split --------------------------------------------------------------------------------


@dataclass
class StreamSplit:
    """The seeded hash split of file rows (module docstring, step 2). ``counts``: rows with a
    target per part, filled by the statistics pass."""

    test_size: float
    val_size: float
    seed: int
    counts: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0, "test": 0})
    note: str = ""
    stratified: bool = False

    def parts(self, rows: np.ndarray) -> np.ndarray:
        """0 (train), 1 (validation) or 2 (test) for each file row number in ``rows``."""
        z = rows.astype(np.uint64) + np.uint64(self.seed) * _GOLDEN
        with np.errstate(over="ignore"):  # splitmix64: wrap-around arithmetic is the point
            z = z + _GOLDEN
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return np.where(u < self.test_size, 2, np.where(u < self.test_size + self.val_size, 1, 0))

    @property
    def train(self) -> range:
        """Sized stand-ins for :class:`~lucidnet.data.splits.Split`'s row indices (the rows
        are known only while reading): ``len(split.train)`` is the training rows' count."""
        return range(self.counts["train"])

    @property
    def val(self) -> range:
        return range(self.counts["val"])

    @property
    def test(self) -> range:
        return range(self.counts["test"])

    def to_dict(self) -> dict[str, Any]:
        """What a model file records of a split (as :meth:`lucidnet.data.splits.Split.to_dict`)."""
        return {**self.counts, "stratified": False, "note": self.note}


# ---- the statistics pass ----------------------------------------------------------------------


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations per column (Chan's parallel merge)."""

    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def zeros(cls, k: int) -> _Moments:
        return cls(np.zeros(k), np.zeros(k), np.zeros(k))

    def add(self, j: int, x: np.ndarray) -> None:
        """Merge the values ``x`` (float64, finite) into column ``j``."""
        if not len(x):
            return
        n_b, mean_b = float(len(x)), float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n_a, total = self.n[j], self.n[j] + n_b
        delta = mean_b - self.mean[j]
        self.mean[j] += delta * n_b / total
        self.m2[j] += m2_b + delta**2 * n_a * n_b / total
        self.n[j] = total


class StreamStats:
    """The training rows' statistics, accumulated record batch by record batch.

    Args:
        numeric, categorical: the columns of each role.
        median_sample: values kept per numeric column (a uniform sample) for the median.
        seed: the sample's random keys.
    """

    def __init__(
        self, numeric: list[str], categorical: list[str], median_sample: int, seed: int
    ) -> None:
        k = len(numeric)
        self.numeric, self.categorical = numeric, categorical
        self.rows = 0
        self.raw, self.log = _Moments.zeros(k), _Moments.zeros(k)
        self.lo, self.hi = np.full(k, np.inf), np.full(k, -np.inf)
        self.missing = np.zeros(k, dtype=np.int64)
        self.distinct: list[set[float]] = [set() for _ in range(k)]
        self.median_sample = median_sample
        self.sample = [np.empty(0) for _ in range(k)]
        self.keys = [np.empty(0) for _ in range(k)]
        self.seen = np.zeros(k, dtype=np.int64)
        self._rng = np.random.default_rng(seed)
        self.counts: list[Counter] = [Counter() for _ in categorical]
        self.cat_missing = [0] * len(categorical)
        self.target = _Moments.zeros(1)

    def update(self, df: pd.DataFrame, y: np.ndarray | None = None) -> None:
        """Add the training rows ``df`` (and their regression targets ``y``)."""
        self.rows += len(df)
        for j, c in enumerate(self.numeric):
            x = _num_array(df[c], c)
            x = x[np.isfinite(x)]
            self.missing[j] += len(df) - len(x)
            if not len(x):
                continue
            self.raw.add(j, x)
            self.log.add(j, np.log1p(np.maximum(x, 0.0)))  # used only if no value is negative
            self.lo[j], self.hi[j] = min(self.lo[j], x.min()), max(self.hi[j], x.max())
            if len(self.distinct[j]) < HEAVY_TAIL_MIN_DISTINCT:
                self.distinct[j].update(np.unique(x)[:HEAVY_TAIL_MIN_DISTINCT].tolist())
            self._sample(j, x)
        for j, c in enumerate(self.categorical):
            counts, n_missing = _category_counts(df[c])
            self.cat_missing[j] += n_missing
            self.counts[j].update(counts)
        if y is not None:
            self.target.add(0, y.astype(np.float64))

    def _sample(self, j: int, x: np.ndarray) -> None:
        """Keep the values with the ``median_sample`` smallest random keys: a uniform sample
        without replacement of every value seen (all of them while they fit)."""
        self.seen[j] += len(x)
        keys = np.concatenate([self.keys[j], self._rng.random(len(x))])
        values = np.concatenate([self.sample[j], x])
        if len(values) > self.median_sample:
            keep = np.argpartition(keys, self.median_sample)[: self.median_sample]
            keys, values = keys[keep], values[keep]
        self.keys[j], self.sample[j] = keys, values

    def numeric_state(
        self, prep: TabularPreparer, imputed: dict[str, Any], indicators: list[str]
    ) -> dict[str, Any]:
        """The ``numeric`` entry of the preparer's state (as ``TabularPreparer._fit_numeric``:
        median fill, heavy tails through log1p, the scaler fitted after filling)."""
        fills, logs = [], []
        for j, c in enumerate(self.numeric):
            s = self.sample[j]
            positive = s[s > 0]
            heavy = (
                self.raw.n[j] > 0
                and self.lo[j] >= 0
                and len(positive) > 0
                and len(self.distinct[j]) >= HEAVY_TAIL_MIN_DISTINCT
                and self.hi[j] > HEAVY_TAIL_RATIO * np.median(positive)
            )
            logs.append(bool(prep.log_heavy_tails and heavy))
            fills.append(float(np.median(np.log1p(s) if logs[-1] else s)) if len(s) else np.nan)
            k = int(self.missing[j])
            if k:
                shown = float(np.expm1(fills[j])) if logs[j] else fills[j]
                imputed[c] = {"count": k, "value": shown, "how": "median"}
                if prep.add_indicators:
                    indicators.append(c)
        lo = [float(v) if np.isfinite(v) else 0.0 for v in self.lo]
        hi = [float(v) if np.isfinite(v) else 0.0 for v in self.hi]
        scaler = self._scaler(prep.scaling, fills, logs)
        return {"fill": fills, "scaler": scaler, "log": logs, "min": lo, "max": hi}

    def _scaler(self, kind: str, fills: list[float], logs: list[bool]) -> dict[str, Any]:
        """The scaler's state of the filled (and log-transformed) columns: the observed values'
        moments merged with the ``missing`` filled-in values (a group with variance 0)."""
        from sklearn.preprocessing._data import _handle_zeros_in_scale, _is_constant_feature

        use = np.asarray(logs, bool)
        n_o = self.raw.n
        mean_o = np.where(use, self.log.mean, self.raw.mean)
        m2_o = np.where(use, self.log.m2, self.raw.m2)
        fill, k = np.asarray(fills, dtype=np.float64), self.missing.astype(np.float64)
        n = n_o + k
        mean = (n_o * mean_o + k * fill) / n
        var = (m2_o + (mean_o - fill) ** 2 * n_o * k / n) / n
        sc: dict[str, Any] = {"kind": kind}
        if kind == "standard":
            constant = _is_constant_feature(var, mean, n)
            scale = _handle_zeros_in_scale(np.sqrt(var), copy=True, constant_mask=constant)
            sc.update(mean=mean.tolist(), var=var.tolist(), scale=scale.tolist())
        elif kind == "minmax":
            lo = np.where(use, np.log1p(np.maximum(self.lo, 0)), self.lo)
            hi = np.where(use, np.log1p(np.maximum(self.hi, 0)), self.hi)
            lo, hi = (
                np.where(k > 0, np.minimum(lo, fill), lo),
                np.where(k > 0, np.maximum(hi, fill), hi),
            )
            data_range = hi - lo
            scale = 1.0 / _handle_zeros_in_scale(data_range, copy=True)
            sc.update(
                data_min=lo.tolist(), data_max=hi.tolist(), data_range=data_range.tolist(),
                scale=scale.tolist(), min=(-lo * scale).tolist(),
            )  # fmt: skip
        sc["n_samples_seen"] = self.rows
        return sc

    def target_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and (population) standard deviation of the regression target."""
        t = self.target
        return t.mean.copy(), np.sqrt(t.m2 / np.maximum(t.n, 1))

    def sampled_columns(self) -> list[str]:
        """The numeric columns whose median came from a sample (more values than it holds)."""
        return [c for j, c in enumerate(self.numeric) if self.seen[j] > self.median_sample]


# ---- the whole preparation --------------------------------------------------------------------


@dataclass
class StreamedData:
    """What :func:`stream_prepare` gives: the preparer, the training source and the held-out
    rows in memory (prepared), like :class:`lucidnet.data.prep.PreparedData`."""

    preparer: TabularPreparer
    X_train: StreamSource
    y_train: None
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    split: StreamSplit
    rows: int
    notes: list[str]
    raw: Any = None


def stream_prepare(
    path: str,
    target: str,
    *,
    test_size: float = 0.2,
    val_size: float = 0.1,
    seed: int = 0,
    batch_size: int = 32,
    shuffle: bool = True,
    batch_rows: int = BATCH_ROWS,
    buffer_rows: int = BUFFER_ROWS,
    sample_rows: int = SAMPLE_ROWS,
    median_sample: int = MEDIAN_SAMPLE,
    max_holdout: int | None = MAX_HOLDOUT,
    keep_leaks: bool = False,
    sep: str | None = None,
    **preparer_kwargs: Any,
) -> StreamedData:
    """Prepare a file larger than memory: split, statistics pass, training source, held-out rows.

    Args:
        path: a Parquet or CSV file.
        target: the target column.
        test_size, val_size: fractions of the rows for test and validation (the hash split;
            lowered on a large file so that each part holds at most ``max_holdout`` rows).
        seed: the split's hash, the median sample and the leakage guard.
        batch_size, shuffle, buffer_rows: the training source's (:class:`StreamSource`).
        batch_rows: rows per record batch read.
        sample_rows: first rows used for the column roles, the task and the leakage guard.
        median_sample: values kept per numeric column for its median.
        max_holdout: most rows per held-out part (None: no limit).
        keep_leaks, sep, preparer_kwargs: as for :func:`lucidnet.data.prep.prepare`
            (``sep``: the CSV delimiter).

    Raises:
        ValueError: a missing target column, text / date / cyclic columns, a bad option.
    """
    test_size = check_float(test_size, "test_size", low=0.0, high=1.0, high_inclusive=False)
    val_size = check_float(val_size, "val_size", low=0.0, high=1.0, high_inclusive=False)
    if test_size + val_size >= 1:
        raise ValueError(f"test_size + val_size must be below 1, got {test_size + val_size}")
    reader = TableReader(path, batch_rows, sep)
    split, notes = _split(reader, test_size, val_size, seed, max_holdout)
    prep = TabularPreparer(target, **preparer_kwargs)
    head = reader.head(check_positive_int(sample_rows, "sample_rows"))
    roles, dtypes = _sample_roles(prep, head, split, keep_leaks, seed, notes)
    del head
    stats = _statistics_pass(reader, prep, roles, split, median_sample, seed)
    _fit_from_statistics(prep, roles, dtypes, stats)
    if stats.sampled_columns():
        notes.append(
            f"median fills from a sample of {median_sample:,} values per column for "
            f"{len(stats.sampled_columns())} numeric column(s)"
        )
    held = _held_out(reader, prep, split)
    moments = stats.target_moments() if prep.target_["task"] == "regression" else None
    source = StreamSource(reader, prep, split, batch_size, shuffle, buffer_rows, moments=moments)
    split.note = "; ".join(notes)
    prep.report_["split"] = split.to_dict()
    return StreamedData(
        preparer=prep, X_train=source, y_train=None, X_val=held[1][0], y_val=held[1][1],
        X_test=held[2][0], y_test=held[2][1], split=split, rows=stats.rows, notes=notes,
    )  # fmt: skip


def _split(
    reader: TableReader, test: float, val: float, seed: int, max_holdout: int | None
) -> tuple[StreamSplit, list[str]]:
    """The hash split, its held-out fractions lowered to hold at most ``max_holdout`` rows
    (Parquet: from the row count in the file; CSV: from the file size and the first block)."""
    notes = [f"streamed: rows split by a seeded hash of the row number (seed {seed}), "
             "not stratified"]  # fmt: skip
    n = reader.n_rows
    if n is None:  # CSV: estimated from the line ends in its first MiB
        with open(reader.path, "rb") as f:
            first = f.read(1 << 20)
        n = int(os.path.getsize(reader.path) * first.count(b"\n") / max(1, len(first)))
    if max_holdout is not None and n > 0:
        cap = max_holdout / n
        if test > cap or val > cap:
            test, val = min(test, cap), min(val, cap)
            notes.append(f"held-out parts capped at about {max_holdout:,} rows each")
    return StreamSplit(test, val, seed), notes


def _sample_roles(
    prep: TabularPreparer,
    head: pd.DataFrame,
    split: StreamSplit,
    keep_leaks: bool,
    seed: int,
    notes: list[str],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Task, leakage guard and column roles (and their dtypes) from the first rows' training
    part."""
    df, y = prep.prepare_target(head)
    train = _labelled_parts(head, 0, prep.target, split)[1] == 0  # df's rows: those labelled
    if not train.any():
        raise ValueError("the first rows have no training rows: raise sample_rows")
    sample = df.loc[train].reset_index(drop=True)
    leakage = _guard_leakage(prep, sample, y[train], keep_leaks, seed)
    prep.report_["leakage"] = leakage
    roles = prep._infer_roles(sample)
    unsupported = [c for c, r in roles.items() if r.role in ("text", "date", "cyclic")]
    if unsupported:
        kinds = sorted({roles[c].role for c in unsupported})
        raise ValueError(
            f"text, date and cyclic columns are not supported when streaming; {unsupported} "
            f"are {'/'.join(kinds)}: drop them (--drop / drop=[...]), give them another role "
            "(--categorical / --numeric), or train in memory"
        )
    notes.append(f"column roles and task from the first {len(head):,} rows")
    return roles, {c: str(sample[c].dtype) for c in roles}


def _statistics_pass(
    reader: TableReader,
    prep: TabularPreparer,
    roles: dict[str, Any],
    split: StreamSplit,
    median_sample: int,
    seed: int,
) -> StreamStats:
    """One pass over the file: the training rows' statistics, the classes over all rows, the
    row counts per part."""
    cols = {r: [c for c, cr in roles.items() if cr.role == r] for r in FEATURE_ROLES}
    stats = StreamStats(cols["numeric"], cols["categorical"], median_sample, seed)
    t = prep.target
    regression = prep.target_["task"] == "regression"
    labels: set[Any] = set()
    rows_in = dropped = 0
    counting = not regression or prep.target_.get("count")
    for start, df in reader.frames():
        rows_in += len(df)
        if t not in df.columns:
            raise ValueError(
                f"target column {t!r} not found; available columns: {list(df.columns)}"
            )
        rows_with_target, parts = _labelled_parts(df, start, t, split)
        dropped += len(df) - len(rows_with_target)
        df = rows_with_target
        for p, name in enumerate(("train", "val", "test")):
            split.counts[name] += int((parts == p).sum())
        if not regression:
            labels.update(_label_key(v) for v in df[t].drop_duplicates().astype(object))
        train = df.loc[parts == 0]
        y = prep.encode_target(train[t]) if regression else None
        if counting and regression:
            v = _num_array(df[t], t)
            counting = bool(np.all((v >= 0) & (v == np.round(v))))
        stats.update(train, y)
    _target_info(prep, rows_in, dropped, labels, bool(counting))
    if stats.rows == 0:
        raise ValueError(
            "no training rows: the file has no rows with a target in the training part"
        )
    return stats


def _target_info(
    prep: TabularPreparer, rows_in: int, dropped: int, labels: set[Any], count: bool
) -> None:
    """The target's entry as ``prepare_target`` writes it, counted over the whole file."""
    info = prep.target_
    info.update(rows_in=rows_in, rows_dropped_missing=dropped)
    if info["task"] == "classification":
        info["classes"] = sorted(labels, key=_sort_key)
    else:
        info["count"] = bool(info.get("count")) and count


def _fit_from_statistics(
    prep: TabularPreparer, roles: dict[str, Any], dtypes: dict[str, str], stats: StreamStats
) -> None:
    """The fitted preparer from the streamed statistics (``TabularPreparer._finish_fit``)."""
    leakage = prep.report_.get("leakage")
    imputed: dict[str, Any] = {}
    cols = {r: [c for c, cr in roles.items() if cr.role == r] for r in FEATURE_ROLES}
    state: dict[str, Any] = {"columns": dict(cols), "indicators": []}
    if cols["numeric"]:
        state["numeric"] = stats.numeric_state(prep, imputed, state["indicators"])
    if cols["categorical"]:
        state["categorical"] = prep._categorical_state(
            cols["categorical"], stats.counts, stats.cat_missing, imputed, state["indicators"]
        )
    if not cols["numeric"] and not cols["categorical"]:
        dropped = {c: f"{r.role}: {r.reason}" for c, r in roles.items() if r.role != "target"}
        raise ValueError(f"no usable feature columns in data; dropped: {dropped}")
    n = stats.rows
    min_df = prep.min_df if prep.min_df is not None else (2 if n >= 50 else 1)
    prep._finish_fit(state, roles, dtypes, {"rows_fit": n, "imputed": imputed, "min_df": min_df})
    prep.report_["leakage"] = leakage


def _labelled_parts(df: Any, start: int, target: str, split: StreamSplit) -> tuple[Any, np.ndarray]:
    """The rows of a record batch (file rows ``start``, ``start + 1``, ...) that have a
    target, and each one's split part (0 train, 1 validation, 2 test) from its file row
    number: every pass over the file sees the same rows in the same parts."""
    has = df[target].notna().to_numpy()
    return df.loc[has], split.parts(start + np.flatnonzero(has))


def _held_out(
    reader: TableReader, prep: TabularPreparer, split: StreamSplit
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The validation (1) and test (2) rows, prepared, in memory (a second pass)."""
    t = prep.target
    got: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {1: [], 2: []}
    for start, df in reader.frames():
        df, parts = _labelled_parts(df, start, t, split)
        for p in (1, 2):
            rows = df.loc[parts == p]
            if len(rows):
                got[p].append((prep.transform(rows), _encode(prep, rows[t])))
    width = prep._n_features_out()
    regression = prep.target_["task"] == "regression"
    empty = (np.empty((0, width), np.float32), np.empty(0, np.float32 if regression else np.int64))
    return {
        p: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v])) if v else empty
        for p, v in got.items()
    }


def _encode(prep: TabularPreparer, values: pd.Series) -> np.ndarray:
    """``prep.encode_target(values)``, for class labels once per distinct value (the per-value
    label lookup took about 11 s of a 42 s streamed epoch of 4.8 M rows)."""
    if prep.target_["task"] == "regression":
        return prep.encode_target(values)
    codes, uniques = _pd().factorize(values)
    return prep.encode_target(_pd().Series(uniques, dtype=object))[codes]


# ---- the training source ----------------------------------------------------------------------


class StreamSource:
    """The training rows of a file as a batch source for ``fit`` (module docstring, step 5).

    Args:
        reader: the file.
        preparer: the fitted preparer (``stream_prepare``'s).
        split: the hash split; only its training rows (``part``) are read.
        batch_size: rows per mini-batch.
        shuffle: Parquet row groups in a random order and rows shuffled within the buffer.
        buffer_rows: the shuffle buffer's size in rows.
        moments: the regression target's ``(mean, std)`` (``fit``'s target scaling).

    ``max_rows_held`` is the most prepared rows the source has held at once (the buffer and
    the record batch being added): at most ``buffer_rows + batch_rows`` with shuffling.
    """

    def __init__(
        self,
        reader: TableReader,
        preparer: TabularPreparer,
        split: StreamSplit,
        batch_size: int = 32,
        shuffle: bool = True,
        buffer_rows: int = BUFFER_ROWS,
        moments: tuple[np.ndarray, np.ndarray] | None = None,
        part: int = 0,
    ) -> None:
        self.reader, self.preparer, self.split, self.part = reader, preparer, split, part
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.buffer_rows = check_positive_int(buffer_rows, "buffer_rows")
        self.shuffle = bool(shuffle)
        self._moments = moments
        self.n_rows = split.counts[("train", "val", "test")[part]] or None
        self.n_features = preparer._n_features_out()
        self.max_rows_held = 0

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, features)`` of the training part, as an array's (what the CLI reads)."""
        return (self.n_rows or 0, self.n_features)

    def __len__(self) -> int:
        return self.n_rows or 0

    def target_moments(self) -> tuple[np.ndarray, np.ndarray]:
        if self._moments is None:
            raise AttributeError("target_moments: not a regression target")
        return self._moments

    def chunks(self, rng: np.random.Generator | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Prepared ``(X, y)`` of the training rows of each record batch."""
        t = self.preparer.target
        for start, df in self.reader.frames(rng):
            labelled, parts = _labelled_parts(df, start, t, self.split)
            rows = labelled.loc[parts == self.part]
            if len(rows):
                yield self.preparer.transform(rows), _encode(self.preparer, rows[t])

    def batches(
        self, epoch: int, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The mini-batches of one epoch (all of ``batch_size`` rows but the last)."""
        if not self.shuffle:
            yield from self._in_order()
            return
        buf_x: list[np.ndarray] = []
        buf_y: list[np.ndarray] = []
        held, bs = 0, self.batch_size
        for x, y in self.chunks(rng):
            buf_x.append(x)
            buf_y.append(y)
            held += len(x)
            self.max_rows_held = max(self.max_rows_held, held)
            if held < self.buffer_rows:
                continue
            X, Y = np.concatenate(buf_x), np.concatenate(buf_y)
            order = rng.permutation(held)
            out = (held - self.buffer_rows // 2) // bs * bs  # a random part leaves ...
            for i in range(0, out, bs):
                idx = order[i : i + bs]
                yield X[idx], Y[idx]
            rest = order[out:]  # ... the rest mixes with the next record batches
            buf_x, buf_y, held = [X[rest]], [Y[rest]], len(rest)
        if held:
            X, Y = np.concatenate(buf_x), np.concatenate(buf_y)
            order = rng.permutation(held)
            for i in range(0, held, bs):
                yield X[order[i : i + bs]], Y[order[i : i + bs]]

    def _in_order(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Rows in file order, in batches of ``batch_size`` across record batches."""
        bs = self.batch_size
        carry_x, carry_y = np.empty((0, self.n_features), np.float32), None
        for x, y in self.chunks(None):
            X = np.concatenate([carry_x, x]) if len(carry_x) else x
            Y = np.concatenate([carry_y, y]) if carry_y is not None and len(carry_y) else y
            self.max_rows_held = max(self.max_rows_held, len(X))
            full = len(X) // bs * bs
            for i in range(0, full, bs):
                yield X[i : i + bs], Y[i : i + bs]
            carry_x, carry_y = X[full:], Y[full:]
        if len(carry_x):
            yield carry_x, carry_y


def frame_chunks(
    path: str, batch_rows: int = BATCH_ROWS, sep: str | None = None
) -> Iterator[pd.DataFrame]:
    """A file's rows as DataFrames of at most ``batch_rows`` rows (``predict`` in chunks)."""
    for _, df in TableReader(path, batch_rows, sep).frames():
        yield as_frame(df)
