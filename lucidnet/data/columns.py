"""Reading a table and interpreting its columns: CSV reading, column roles, the task, value
conversion.

Column roles (:func:`infer_roles`; inferred on the fitting rows unless overridden with
``numeric=`` / ``categorical=`` / ``text=`` / ``drop=``), checked in this order:

* **empty**: every value missing -> dropped (even when a role was requested).
* **constant**: a single distinct value -> dropped (a role requested by the user wins).
* **categorical**: booleans; pandas ``category`` columns; strings that are not text or ids.
* **numeric**: numbers, and strings that all parse as numbers. Integer columns stay numeric even
  with few distinct values (their order carries information; one-hot them with
  ``categorical=``), unless they are integer codes (below).
* **integer codes** (:func:`_integer_code`): an integer column whose *name* says it is a code
  and whose *values* agree; the name alone never decides, the values alone never do either
  (``cylinders`` 3-8, ``size`` 1-6, ``number`` 1-7 stay numeric):

  - **cyclic** (role ``cyclic``, encoded as sin/cos of ``2 pi value / period``): hour of day
    (a name word ``hour``/``hr``/``hod``..., values within 0-24, period 24), month (``month``/
    ``mnth``/``mon``..., within 0-12, period 12), weekday (``weekday``/``wday``/``dow``/
    ``day_of_week``..., within 0-7, period 7; a bare ``day`` only with 6 or more distinct
    values within 0-7). At least 3 distinct values.
  - **categories** (role ``categorical``, one-hot like strings): a name word that says code
    (``code``, ``type``, ``class``, ``category``, ``kind``, ``group``, ``status``, ``weather``,
    ``season``, ``region``, ``origin``...), 3 to ``MAX_CODE_LEVELS`` (24) distinct values, at
    least ``MIN_ROWS_PER_CODE`` (5) rows per value on average, and no name word that says
    quantity (``count``, ``number``, ``size``, ``age``, ``price``, ``amount``...: those stay
    numeric whatever else the name says). A **year** (``year``, ``yr``: ordered, so the bar
    is higher) becomes categories only when *every* one of its 3 to 24 values has at least
    ``MIN_ROWS_PER_CODE`` rows (car model years 70-82, about 20 cars each, do; discovery years
    1989-2014 of exoplanets, one planet in 1989, stay numeric): measured on mpg.csv, one-hot
    model years raised the test R^2 on 4 of 5 seeds (mean 0.805 -> 0.833); one-hot discovery
    years lowered the macro F1 of planets.csv on 4 of 5 seeds.

  The role table gives the reason, e.g. ``integer code, 12 values 1-12, name 'month' -> cyclic
  month (sin/cos, period 12)``.
* **identifier**: at least 20 values, all distinct, and either integers forming a consecutive run /
  in a column named like an id (``id``, ``*_id``, ``key``, ``index``, ...) or single-word strings;
  also integer row numbers (rising by 1 per row in file order, read from the frame's index, so
  they are caught in a shuffled training subset), and integer-valued floats that are at least 95%
  distinct in an id-named column or beyond 2**53 (tweet ids saved as ``5.70306e+17``).
* **text**: strings with a mean of >= 3 words, or more than 20 distinct values, more than half of
  the rows distinct and mostly multi-word (e.g. names, titles).

**Heavy tails** (:func:`heavy_tailed`, decided on the fitting rows by
:class:`lucidnet.prep.TabularPreparer`, not a role of its own): a numeric column whose
non-missing values are all >= 0, with at least ``HEAVY_TAIL_MIN_DISTINCT`` (10) distinct values,
whose largest value exceeds ``HEAVY_TAIL_RATIO`` (100) times the median of its positive values
(it spans several orders of magnitude: orbital periods of 0.09 to 730,000 days, median about
40) is passed through ``log1p`` before it is imputed and scaled. Standardised as it is, such a
column squeezes most rows into a sliver near its mean and turns a value beyond the training
maximum into a huge input (an exp link then predicts millions). The role table says so
(``heavy-tailed: 0.09 to 730,000 -> log1p then standardised``).

Task inference (:func:`infer_task`): string / bool / category targets -> classification; numbers
with a non-integer value -> regression; integers with 2 distinct values -> classification;
**counts** -> regression (the CLI fits them with the Poisson loss); other integers with <= 20
distinct values that are at most 5% of the rows -> classification; other integers -> regression.

A count is a non-negative integer target that reaches down towards 0 (its smallest value is at
most its range, max - min: so 0..14 or 1..900 but not years 1990..2020) with either more than 10
distinct values (more than the ten digits, the most class codes usually used) or a name that says
count (``count``, ``n_*``, ``num``, ``number``, ``total``, ...: then 3 or more values suffice).
Integer class codes 0/1/2 or digits 0-9 stay classification; ``--task`` overrides.

The private value converters (``_num_array``, ``_cat_array``, ``_text_list``) turn one column
into the arrays that :class:`lucidnet.prep.TabularPreparer` feeds to scikit-learn.

pandas is imported inside the functions so that ``import lucidnet`` stays fast.
"""

from __future__ import annotations

import codecs
import contextlib
import numbers
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import describe

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "ColumnRole",
    "ReadOptions",
    "as_frame",
    "check_read_options",
    "heavy_tailed",
    "infer_roles",
    "infer_task",
    "read_csv",
    "read_table",
]

#: heavy-tail rule (:func:`heavy_tailed`): largest value / median of the positive values
HEAVY_TAIL_RATIO = 100.0
#: ... with at least this many distinct values (not a 0/1 flag or a small code)
HEAVY_TAIL_MIN_DISTINCT = 10
MAX_CLASSES = 20  # integer targets with more distinct values are treated as regression
MAX_CLASS_FRACTION = 0.05  # ... and so are those whose distinct values exceed 5% of the rows
MAX_CODE_VALUES = 10  # integer targets with more distinct values (reaching 0) are counts
_COUNT_WORDS = {"count", "counts", "cnt", "num", "number", "n", "total", "freq", "frequency"}
_COUNT_WORDS |= {"quantity", "qty", "visits", "calls", "events", "claims", "cases"}
MAX_CODE_LEVELS = 24  # an integer column with more distinct values is a quantity, not a code
MIN_ROWS_PER_CODE = 5  # ... and so is one with fewer rows per value (one-hot would overfit)
#: cyclic integer codes: (what, name words, period); values must lie within 0..period
_CYCLES = (
    ("hour", {"hour", "hours", "hr", "hrs", "hod", "hourofday"}, 24),
    ("month", {"month", "months", "mnth", "mon", "mth", "monthofyear"}, 12),
    ("weekday", {"weekday", "weekdays", "wday", "wkday", "dow", "dayofweek"}, 7),
)
_CODE_WORDS = {"code", "codes", "type", "types", "class", "cat", "category", "categories"}
_CODE_WORDS |= {"kind", "group", "grp", "status", "weather", "weathersit", "season", "region"}
_CODE_WORDS |= {"zone", "segment", "sector", "origin", "channel", "source", "brand"}
_YEAR_WORDS = {"year", "years", "yr"}  # ordered: categories only when every year is well filled
_QUANTITY_WORDS = {"size", "age", "amount", "price", "cost", "value", "score", "rating", "rank"}
_QUANTITY_WORDS |= {"length", "weight", "height", "width", "duration", "distance", "level"}
ID_MIN_ROWS = 20  # below this, "all values distinct" says nothing about being an identifier
TEXT_MIN_WORDS = 3.0
_NUMBER_KINDS = ("integer", "floating", "mixed-integer-float", "decimal", "empty")  # infer_dtype
_ID_NAMES = {"id", "uuid", "guid", "key", "index", "idx", "row", "rowid", "row_id"}


def _pd() -> Any:
    import pandas

    return pandas


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

HEAD_BYTES = 65536  # how much of a file (decompressed) the checks and the format sniffing read
SNIFF_RECORDS = 200  # records of the head used to detect the separator and the decimal mark
_SEPARATORS = (",", ";", "\t", "|")  # candidates, in order of preference on a tie
# magic bytes -> compression (the names pandas' ``compression=`` takes)
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),  # (+ a block size digit and the block magic: checked in _file_format)
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_EXTENSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip", ".zst": "zstd"}
_PARQUET_MAGIC = b"PAR1"
_PARQUET_INSTALL = 'pip install "lucidnet[parquet]"'
_COMMA_NUMBER = re.compile(r"[+-]?(\d+,\d*|,\d+)([eE][+-]?\d+)?")
_DOT_NUMBER = re.compile(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class ReadOptions:
    """How a data file was read (what :func:`read_table` detected or was told).

    Attributes:
        format: ``"csv"`` (any delimited text) or ``"parquet"``.
        compression: ``"gzip"``, ``"bz2"``, ``"xz"``, ``"zip"``, ``"zstd"`` or None.
        sep: the field separator (CSV only, else None).
        decimal: the decimal mark of numbers, ``"."`` or ``","`` (CSV only, else None).
        encoding: the text encoding (CSV only, else None).
    """

    format: str = "csv"
    compression: str | None = None
    sep: str | None = ","
    decimal: str | None = "."
    encoding: str | None = "utf-8"

    def describe(self) -> str:
        """One phrase for a data summary line, e.g. ``"separator ';', decimal ','"``."""
        if self.format == "parquet":
            parts = ["Parquet"]
        else:
            sep = "tab" if self.sep == "\t" else repr(self.sep)
            parts = [f"separator {sep}", f"decimal {self.decimal!r}"]
            if self.encoding not in ("utf-8", "utf-8-sig"):
                parts.append(f"encoding {self.encoding!r}")
        if self.compression:
            parts.insert(0, f"{self.compression}-compressed")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, str] | None:
        """The options a file of the same format needs (``sep``, ``decimal``, ``encoding``),
        JSON-ready; None for Parquet (nothing to remember)."""
        if self.format != "csv":
            return None
        return {"sep": str(self.sep), "decimal": str(self.decimal), "encoding": str(self.encoding)}


def check_read_options(
    sep: Any = None, decimal: Any = None, encoding: Any = None, what: str = ""
) -> None:
    """Check reading options given by a user (or stored in a model file); None is "detect".

    Raises:
        ValueError: ``sep`` / ``decimal`` not a single character that can separate fields (not
            a quote, a newline or alphanumeric), ``decimal`` equal to ``sep``, or ``encoding``
            not the name of a text encoding Python knows.
    """
    pre = f"{what}: " if what else ""
    for name, value in (("sep", sep), ("decimal", decimal)):
        if value is None:
            continue
        if not isinstance(value, str) or len(value) != 1 or value in "\"'\r\n" or value.isalnum():
            shown = repr(value) if isinstance(value, str) else describe(value)
            raise ValueError(
                f"{pre}{name} must be a single character that is not a quote, a line break, a "
                f"letter or a digit, got {shown}"
            )
    if sep is not None and decimal is not None and sep == decimal:
        raise ValueError(f"{pre}decimal {decimal!r} is also the separator; they must differ")
    if encoding is not None:
        if not isinstance(encoding, str):
            raise ValueError(f"{pre}encoding must be a string, got {describe(encoding)}")
        try:
            "a".encode(encoding)
        except LookupError:
            raise ValueError(
                f"{pre}unknown encoding {encoding!r} (expected a text encoding such as "
                "'utf-8', 'cp1252', 'latin-1', 'utf-16')"
            ) from None


def read_csv(
    path: str | os.PathLike[str],
    *,
    sep: str | None = None,
    decimal: str | None = None,
    encoding: str | None = None,
) -> pd.DataFrame:
    """Read a data file into a DataFrame (:func:`read_table` without the options it used)."""
    return read_table(path, sep=sep, decimal=decimal, encoding=encoding)[0]


def read_table(
    path: str | os.PathLike[str],
    *,
    sep: str | None = None,
    decimal: str | None = None,
    encoding: str | None = None,
    hint: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, ReadOptions]:
    """Read a CSV (plain or compressed) or Parquet file, with errors that name the file and the
    problem; returns the frame and the :class:`ReadOptions` used.

    * Format and compression come from the file's first bytes (``PAR1``: Parquet; gzip, bz2, xz,
      zip with one member, zstd (needs the ``zstandard`` package) magic numbers), so a
      misnamed file is still read; Parquet needs ``pyarrow`` (``pip install
      "lucidnet[parquet]"``).
    * The separator is the one of ``,`` ``;`` tab ``|`` that splits the first records into the
      same number (> 1) of fields (the most fields wins); the decimal mark is ``,`` when the
      separator is not ``,`` and the fields hold more numbers written ``20,1`` than ``20.1``
      (a European spreadsheet export). The encoding is UTF-8, or UTF-16 with a byte-order mark.
    * ``sep`` / ``decimal`` / ``encoding`` override the detection; ``hint`` (the options a model
      was trained with) is preferred when the file agrees with it: its separator when that
      splits the records consistently, its decimal mark with that separator, its encoding
      unless the file has a byte-order mark.

    A single column whose header looks like prose (more than 64 characters, or 4+ words) is
    rejected as "not CSV"; other single-column files are accepted (a one-feature model's
    prediction input is legitimate).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a directory, an empty file (0 bytes, or a header without rows), binary
            content (NUL bytes, or not text in the encoding), text that is not CSV, a corrupt
            compressed or Parquet file, a bad option, or a missing optional package.
    """
    p = os.fspath(path)
    check_read_options(sep, decimal, encoding)
    if hint:
        check_read_options(
            hint.get("sep"), hint.get("decimal"), hint.get("encoding"), "reading options"
        )
    fmt, compression = _file_format(p)
    if fmt == "parquet":
        return _read_parquet(p), ReadOptions("parquet", None, None, None, None)
    hint = hint or {}
    raw = _head_bytes(p, compression)
    enc = codecs.lookup(encoding or _detect_encoding(raw, hint.get("encoding"))).name
    text = _head_text(p, raw, enc, explicit=encoding is not None)
    records = _sample_records(text, truncated=len(raw) >= HEAD_BYTES)
    sep = sep or _detect_sep(records, hint.get("sep"))
    if decimal is None:
        decimal = hint.get("decimal") if hint.get("sep") == sep else None
        decimal = decimal or _detect_decimal(records, sep)
    if sep == decimal:
        raise ValueError(f"data file '{p}': the decimal mark {decimal!r} is also the separator")
    options = ReadOptions("csv", compression, sep, decimal, enc)
    df = _read_delimited(p, options)
    if df.shape[1] == 1:
        name = str(df.columns[0])
        if len(name) > 64 or len(name.split()) >= 4:
            raise ValueError(
                f"data file '{p}' does not look like CSV: it parsed into a single column whose "
                f"header is {name[:60]!r}; expected comma-separated columns with a header line"
            )
    if len(df) == 0:
        raise ValueError(f"data file '{p}' has a header ({df.shape[1]} columns) but no data rows")
    return df, options


def _file_format(p: str) -> tuple[str, str | None]:
    """``("parquet", None)`` or ``("csv", compression or None)``, from the first bytes, after
    checking that ``p`` exists and is a non-empty file."""
    if not os.path.exists(p):
        raise FileNotFoundError(f"data file '{p}' does not exist")
    if os.path.isdir(p):
        raise ValueError(f"data file '{p}' is a directory, expected a CSV file")
    if os.path.getsize(p) == 0:
        raise ValueError(f"data file '{p}' is empty (0 bytes)")
    with open(p, "rb") as fh:
        magic = fh.read(16)
        fh.seek(max(0, os.path.getsize(p) - 4))
        tail = fh.read(4)
    if magic.startswith(_PARQUET_MAGIC) and tail == _PARQUET_MAGIC:  # Parquet: PAR1 ... PAR1
        return "parquet", None
    for prefix, compression in _MAGIC:
        if magic.startswith(prefix):
            # a text header may start "BZh": bz2 also has a size digit and the pi block magic
            if compression != "bz2" or re.match(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)", magic):
                return "csv", compression
    ext = os.path.splitext(p)[1].lower()
    if ext in (".parquet", ".pq"):
        raise ValueError(f"data file '{p}' is named {ext} but is not Parquet (no PAR1 header)")
    if ext in _EXTENSIONS and magic.startswith(b"\x00"):  # not text either: say what was expected
        raise ValueError(
            f"data file '{p}' is named {ext} but is not {_EXTENSIONS[ext]}-compressed data"
        )
    return "csv", None


def _open_decompressed(p: str, compression: str | None) -> Any:
    """A binary file object over the decompressed content of ``p``."""
    if compression is None:
        return open(p, "rb")
    if compression == "gzip":
        import gzip

        return gzip.open(p, "rb")
    if compression == "bz2":
        import bz2

        return bz2.open(p, "rb")
    if compression == "xz":
        import lzma

        return lzma.open(p, "rb")
    if compression == "zip":
        import zipfile

        zf = zipfile.ZipFile(p)
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if len(names) != 1:
            zf.close()
            raise ValueError(
                f"data file '{p}' is a zip archive with {len(names)} files "
                f"{names[:5]}; expected exactly one CSV file in it"
            )
        return zf.open(names[0])
    return _zstd_module(p).open(p, "rb")


def _zstd_module(p: str) -> Any:
    try:
        import zstandard
    except ImportError:
        raise ValueError(
            f"data file '{p}' is zstd-compressed; reading it needs the zstandard package "
            "(pip install zstandard)"
        ) from None
    return zstandard


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt or cut compressed stream raises (gzip / bz2: OSError, EOFError; xz:
    LZMAError; zip: BadZipFile, zlib.error; zstd: ZstdError)."""
    import lzma
    import zipfile
    import zlib

    errors: list[type[BaseException]] = [
        OSError,
        EOFError,
        zipfile.BadZipFile,
        lzma.LZMAError,
        zlib.error,
    ]
    with contextlib.suppress(ImportError):
        import zstandard

        errors.append(zstandard.ZstdError)
    return tuple(errors)


def _head_bytes(p: str, compression: str | None) -> bytes:
    """The first :data:`HEAD_BYTES` bytes of the (decompressed) content of ``p``."""
    try:
        with _open_decompressed(p, compression) as fh:
            return bytes(fh.read(HEAD_BYTES))
    except _decompression_errors() as exc:
        if compression is None:
            raise
        raise ValueError(
            f"data file '{p}' looks {compression}-compressed but could not be decompressed: "
            f"{_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _detect_encoding(raw: bytes, hint: str | None) -> str:
    """UTF-16 / UTF-8 by byte-order mark, else the hint, else UTF-8."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if raw.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    return hint or "utf-8"


def _head_text(p: str, raw: bytes, encoding: str, explicit: bool) -> str:
    """The head decoded, after checking that it is text: no NUL bytes (in a byte-oriented
    encoding) or characters, and decodable (a character cut by the head limit is allowed)."""
    wide = encoding.startswith(("utf-16", "utf-32"))  # (a name from codecs.lookup)
    if not wide and b"\x00" in raw:
        raise ValueError(f"data file '{p}' is not a CSV text file: it contains NUL bytes (binary?)")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        if exc.start < len(raw) - 4 or len(raw) < HEAD_BYTES:
            if explicit or encoding != "utf-8":
                raise ValueError(
                    f"data file '{p}' is not {encoding} text (undecodable byte at offset "
                    f"{exc.start})"
                ) from None
            raise ValueError(
                f"data file '{p}' is not UTF-8 text (undecodable byte at offset {exc.start}); "
                "binary data, or text in another encoding: give it with --encoding (encoding= "
                "in Python), e.g. cp1252, or re-save the CSV as UTF-8"
            ) from None
        text = raw[: exc.start].decode(encoding)
    if "\x00" in text:
        raise ValueError(f"data file '{p}' is not a CSV text file: it contains NUL characters")
    return text


def _sample_records(text: str, truncated: bool) -> dict[str, list[list[str]]]:
    """The first records of ``text`` split by each candidate separator (quotes respected);
    the last record is dropped when the head was cut."""
    import csv
    import io

    out: dict[str, list[list[str]]] = {}
    for sep in _SEPARATORS:
        rows: list[list[str]] = []
        try:
            for row in csv.reader(io.StringIO(text), delimiter=sep):
                if row:
                    rows.append(row)
                if len(rows) > SNIFF_RECORDS:
                    break
        except csv.Error:
            rows = []  # (malformed quoting for this separator: not a candidate)
        if truncated and len(rows) <= SNIFF_RECORDS and rows:
            rows = rows[:-1]
        out[sep] = rows[:SNIFF_RECORDS]
    return out


def _consistent(rows: list[list[str]]) -> int:
    """The number of fields when every record has the same number (> 1), else 0."""
    if not rows or len(rows[0]) < 2:
        return 0
    n = len(rows[0])
    return n if all(len(r) == n for r in rows) else 0


def _detect_sep(records: dict[str, list[list[str]]], hint: str | None) -> str:
    """The hint when it splits the records consistently; else the candidate splitting them
    consistently into the most fields; else the one with the most header fields; else ``,``."""
    if hint in records and _consistent(records[hint]):
        return str(hint)
    scores = {s: _consistent(records[s]) for s in _SEPARATORS}
    best = max(_SEPARATORS, key=lambda s: scores[s])  # (max keeps the first on a tie)
    if scores[best]:
        return best
    header = {s: len(records[s][0]) if records[s] else 0 for s in _SEPARATORS}
    best = max(_SEPARATORS, key=lambda s: header[s])
    return best if header[best] > 1 else ","


def _detect_decimal(records: dict[str, list[list[str]]], sep: str) -> str:
    """``,`` when the separator is not ``,`` and the data fields hold more numbers written with
    a decimal comma than with a decimal point; else ``.``."""
    if sep == ",":
        return "."
    comma = dot = 0
    for row in records[sep][1:]:
        for field in row:
            f = field.strip()
            comma += _COMMA_NUMBER.fullmatch(f) is not None
            dot += _DOT_NUMBER.fullmatch(f) is not None
    return "," if comma > dot else "."


def _read_delimited(p: str, o: ReadOptions) -> pd.DataFrame:
    """``pandas.read_csv`` with its errors turned into ValueErrors that name the file."""
    pd = _pd()
    try:
        return pd.read_csv(
            p, sep=o.sep, decimal=o.decimal, encoding=o.encoding, compression=o.compression
        )
    except pd.errors.EmptyDataError:
        raise ValueError(f"data file '{p}' is empty (no header, no rows)") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"data file '{p}' is not {o.encoding} text: {exc}") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"data file '{p}' could not be parsed as CSV: {exc}") from None
    except _decompression_errors() as exc:  # a compressed stream cut or corrupt after the head
        if o.compression is None:
            raise
        raise ValueError(
            f"data file '{p}' looks {o.compression}-compressed but could not be decompressed: "
            f"{_first_line(exc)}"
        ) from None


def _read_parquet(p: str) -> pd.DataFrame:
    """``pandas.read_parquet`` through pyarrow, with one-line errors naming the file."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ValueError(
            f"data file '{p}' is Parquet; reading it needs pyarrow: {_PARQUET_INSTALL}"
        ) from None
    try:
        df = _pd().read_parquet(p, engine="pyarrow")
    except (ValueError, OSError, TypeError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise ValueError(
            f"data file '{p}' could not be read as Parquet: {_first_line(exc)}"
        ) from None
    if df.shape[1] == 0:
        raise ValueError(f"data file '{p}' is a Parquet file without columns")
    if len(df) == 0:
        raise ValueError(f"data file '{p}' has a header ({df.shape[1]} columns) but no data rows")
    return df


def as_frame(data: Any, name: str = "data") -> pd.DataFrame:
    """Accept a DataFrame, a NumPy array (columns ``x0``, ``x1``, ...), a dict or the path of a
    CSV (plain or compressed) or Parquet file (read by :func:`read_table`, options detected).

    Non-string column names are converted to strings so that the fitted state stays JSON.
    """
    pd = _pd()
    if isinstance(data, (str, os.PathLike)):
        return read_csv(data)
    if isinstance(data, pd.DataFrame):
        df = data
    elif isinstance(data, np.ndarray):
        arr = data.reshape(-1, 1) if data.ndim == 1 else data
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a 1-D or 2-D array, got shape {data.shape}")
        df = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
    elif isinstance(data, dict):
        df = pd.DataFrame(data)
    else:
        raise TypeError(
            f"{name} must be a pandas DataFrame, a NumPy array, a dict of columns or a CSV path, "
            f"got {describe(data)}"
        )
    if not all(isinstance(c, str) for c in df.columns):
        df = df.rename(columns=str)
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup:
        raise ValueError(f"{name} has duplicated column names: {dup}")
    return df


# --------------------------------------------------------------------------------------------
# Role and task inference
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRole:
    """The role of one column and the reason it was chosen.

    ``role`` is one of ``numeric``, ``categorical``, ``text``, ``date``, ``cyclic`` (used as
    features), ``identifier``, ``constant``, ``empty``, ``dropped`` (user's ``drop=``, or
    excluded as target leakage), or ``target``.
    """

    role: str
    reason: str


def _looks_like_id(name: str) -> bool:
    low = name.strip().lower()
    return low in _ID_NAMES or low.endswith(("_id", " id", "-id")) or name.endswith(("Id", "ID"))


def _row_number(values: np.ndarray, index: np.ndarray | None) -> bool:
    """Whether integer ``values`` number the rows: in file order (the frame's index, kept by
    ``df.iloc[rows]``) they rise by exactly as much as the row position does."""
    if index is None or len(index) != len(values) or len(values) < ID_MIN_ROWS:
        return False
    order = np.argsort(index, kind="stable")
    step_v, step_i = np.diff(values[order]), np.diff(index[order].astype(np.float64))
    return bool(np.all(step_i > 0) and np.all(step_v == step_i))


def _float_id(values: np.ndarray, finite: np.ndarray, n_unique: int, name: str) -> str | None:
    """Why integer-valued floats are an identifier (None if they are not): at least 95% distinct
    in a column named like an id, or beyond 2**53 (no measurement is an exact integer there;
    ids such as tweet ids saved as ``5.70306e+17`` are)."""
    if len(values) < ID_MIN_ROWS or finite.size < 0.95 * len(values):
        return None
    huge = float(np.min(np.abs(finite))) >= 2.0**53
    if huge and (_looks_like_id(name) or n_unique >= 0.95 * finite.size):
        return f"integers of {finite.size} rows beyond 2**53 (float-formatted ids)"
    if _looks_like_id(name) and n_unique >= 0.95 * len(values):
        return f"{n_unique} distinct integers in {len(values)} rows, an id-like name"
    return None


def _numeric_role(
    values: np.ndarray, name: str, prefix: str, index: np.ndarray | None = None
) -> ColumnRole:
    finite = values[np.isfinite(values)]
    n_unique = len(np.unique(finite))
    if finite.size and np.all(finite == np.round(finite)):
        if n_unique == len(values) >= ID_MIN_ROWS:
            consecutive = bool(np.all(np.diff(np.sort(finite)) == 1))
            if consecutive or _looks_like_id(name):
                why = "consecutive integers" if consecutive else "an id-like name"
                return ColumnRole(
                    "identifier", f"{prefix}all {len(values)} integers distinct, {why}"
                )
        if finite.size == len(values) and _row_number(values, index):
            return ColumnRole("identifier", f"{prefix}row numbers (+1 per row in file order)")
        why_float = _float_id(values, finite, n_unique, name)
        if why_float is not None:
            return ColumnRole("identifier", prefix + why_float)
        code = _integer_code(finite, n_unique, name)
        if code is not None:
            return ColumnRole(code[0], prefix + code[1])
        return ColumnRole("numeric", f"{prefix}integers, {n_unique} distinct values")
    return ColumnRole("numeric", f"{prefix}real numbers, {n_unique} distinct values")


def _name_words(name: str) -> set[str]:
    """The lower-case words of a column name (``model_year``, ``modelYear``, ``MODEL YEAR``
    -> {model, year}) and, for names such as ``day_of_week``, the words run together."""
    words = [w.lower() for w in re.findall(r"[A-Za-z][a-z]*|[A-Z]+(?![a-z])", name)]
    return set(words) | {"".join(words)}


def _integer_code(finite: np.ndarray, k: int, name: str) -> tuple[str, str] | None:
    """``(role, reason)`` when the integers ``finite`` (``k`` distinct) of the column ``name``
    are a code (rule in the module docstring): ``("cyclic", ...)`` or ``("categorical",
    ...)``; None for a quantity. The reason of a cyclic code ends with ``period N)``, which
    the preparer reads back."""
    words = _name_words(name)
    if k < 3 or words & (_QUANTITY_WORDS | _COUNT_WORDS):
        return None
    lo, hi = float(finite.min()), float(finite.max())
    what = f"integer code, {k} values {lo:.0f}-{hi:.0f}, name {name!r}"
    for kind, names, period in _CYCLES:
        bare_day = kind == "weekday" and "day" in words and k >= 6
        if (words & names or bare_day) and lo >= 0 and hi <= period:
            return "cyclic", f"{what} -> cyclic {kind} (sin/cos, period {period})"
    if k > MAX_CODE_LEVELS:
        return None
    if words & _CODE_WORDS and k * MIN_ROWS_PER_CODE <= finite.size:
        return "categorical", f"{what} -> categories (one-hot)"
    if words & _YEAR_WORDS:
        rarest = int(np.unique(finite, return_counts=True)[1].min())
        if rarest >= MIN_ROWS_PER_CODE:
            why = f"{what}, each year in >= {MIN_ROWS_PER_CODE} rows -> categories (one-hot)"
            return "categorical", why
    return None


_PERIOD = re.compile(r"period (\d+)\)$")


def cyclic_period(reason: str) -> int:
    """The period of a cyclic code from its role's reason (:func:`_integer_code`)."""
    m = _PERIOD.search(reason)
    if m is None:
        raise ValueError(f"not the reason of a cyclic code: {reason!r}")
    return int(m.group(1))


def _int_index(values: pd.Series) -> np.ndarray | None:
    """The row positions in the file of ``values`` (an integer index), or None."""
    idx = values.index
    if idx.dtype.kind not in "iu":
        return None
    return idx.to_numpy(dtype=np.int64)


def _infer_role(s: pd.Series, name: str) -> ColumnRole:
    pd = _pd()
    values = s.dropna()
    n = len(values)
    if n == 0:
        return ColumnRole("empty", f"all {len(s)} values are missing")
    n_unique = values.nunique()
    if n_unique == 1:
        extra = f", plus {len(s) - n} missing" if len(s) > n else ""
        return ColumnRole("constant", f"single value {_label_key(values.iloc[0])!r}{extra}")
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "boolean":
        return ColumnRole("categorical", "boolean values")
    if isinstance(s.dtype, pd.CategoricalDtype):
        return ColumnRole("categorical", f"pandas category dtype, {n_unique} values")
    index = _int_index(values)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return _numeric_role(values.to_numpy(dtype=np.float64), name, "", index)
    # "all values are numbers" fails on the first value of a text column: skip the full pass
    if pd.to_numeric(values.iloc[:1], errors="coerce").notna().all():
        coerced = pd.to_numeric(values, errors="coerce")
        if coerced.notna().all():
            return _numeric_role(
                coerced.to_numpy(dtype=np.float64), name, "numbers stored as text; ", index
            )
    fmt = detect_date_format(values)
    if fmt is not None:
        return ColumnRole("date", f"dates, format {fmt!r}")
    # words per value, as str.split() counts them (a plain loop: 3x faster than .str.split())
    words = np.fromiter(
        (len(v.split()) for v in values.astype(str).tolist()), dtype=np.int64, count=n
    )
    mean_words = float(words.mean())
    if mean_words >= TEXT_MIN_WORDS:
        return ColumnRole("text", f"free text, {mean_words:.1f} words per value on average")
    if n_unique == n >= ID_MIN_ROWS and float((words <= 1).mean()) >= 0.95:
        return ColumnRole("identifier", f"all {n} single-word strings distinct")
    if n_unique > 20 and n_unique > 0.5 * n and float((words >= 2).mean()) >= 0.5:
        return ColumnRole("text", f"{n_unique} distinct multi-word strings in {n} rows")
    return ColumnRole("categorical", f"strings, {n_unique} distinct values")


def _as_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of column names, got {describe(value)}")
    return list(value)


def infer_roles(
    df: pd.DataFrame,
    target: str | None = None,
    *,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    text: list[str] | None = None,
    drop: list[str] | None = None,
    dates: list[str] | None = None,
    excluded: dict[str, str] | None = None,
) -> dict[str, ColumnRole]:
    """Assign a :class:`ColumnRole` to every column of ``df`` (rules in the module docstring).

    ``dates`` are parsed as dates whatever their values look like (:func:`forced_date_role`);
    ``excluded`` maps columns to leave out to the reason shown for them (role ``dropped``).

    Raises:
        ValueError: an override names an unknown column, names the target, a column is given
            two roles, or a ``dates`` column does not parse as dates (the message shows values
            that do not).
    """
    excluded = dict(excluded or {})
    drop = _as_list(drop, "drop")
    overrides = {
        "numeric": _as_list(numeric, "numeric"),
        "categorical": _as_list(categorical, "categorical"),
        "text": _as_list(text, "text"),
        "date": _as_list(dates, "dates"),
        "dropped": drop + [c for c in excluded if c not in drop],
    }
    columns = list(df.columns)
    forced: dict[str, str] = {}
    for role, names in overrides.items():
        arg = {"dropped": "drop", "date": "dates"}.get(role, role)
        unknown = [c for c in names if c not in columns]
        if unknown:
            raise ValueError(
                f"{arg}= names unknown columns {unknown}; available columns: {columns}"
            )
        if target is not None and target in names:
            raise ValueError(f"{arg}= names the target column {target!r}; remove it from {arg}=")
        for c in names:
            if c in forced and forced[c] != role:
                raise ValueError(f"column {c!r} is given two roles: {forced[c]!r} and {role!r}")
            forced[c] = role
    roles: dict[str, ColumnRole] = {}
    for c in columns:
        if c == target:
            roles[c] = ColumnRole("target", "the target column")
            continue
        if forced.get(c) == "dropped":
            roles[c] = ColumnRole("dropped", excluded.get(c, "listed in drop="))
            continue
        inferred = _infer_role(df[c], c)
        if forced.get(c) == "date" and inferred.role != "empty":
            roles[c] = forced_date_role(df[c], c, inferred)
        elif c in forced and inferred.role != "empty":
            roles[c] = ColumnRole(forced[c], f"set by user (inferred: {inferred.role})")
        else:
            roles[c] = inferred
    return roles


def _infer_task(y: Any) -> tuple[str, str]:
    task, reason, _ = _infer_target(y)
    return task, reason


def _infer_target(y: Any, task: str | None = None) -> tuple[str, str, bool]:
    """``(task, reason, count)`` for a target (rule in the module docstring); with ``task``
    given (by the user) only whether a regression target holds counts is decided."""
    pd = _pd()
    s = pd.Series(np.asarray(y).ravel()) if not isinstance(y, pd.Series) else y
    name = str(s.name) if s.name is not None else ""
    values = s.dropna()
    kind = pd.api.types.infer_dtype(values, skipna=True)
    numeric = not isinstance(s.dtype, pd.CategoricalDtype) and kind in _NUMBER_KINDS
    if task is not None or not numeric:
        return _given_or_non_numeric(task, kind, values, name)
    v = values.to_numpy(dtype=np.float64)
    v = v[np.isfinite(v)]
    integer = bool(np.all(v == np.round(v)))
    k = len(np.unique(v))
    count = _count_reason(v, k, name) if integer else None
    if not integer:
        return "regression", "non-integer target values", False
    if k <= 2:
        return "classification", f"integer target with {k} distinct values in {len(v)} rows", False
    if count is not None:
        return "regression", count, True
    if k <= MAX_CLASSES and k <= MAX_CLASS_FRACTION * len(v):
        return (
            "classification",
            (
                f"integer target with {k} distinct values in {len(v)} rows (class codes: "
                f"not counts, which need more than {MAX_CODE_VALUES} values reaching towards 0 "
                "or a count-like name)"
            ),
            False,
        )
    return (
        "regression",
        (
            f"integer target with {k} distinct values in {len(v)} rows (more than {MAX_CLASSES}, "
            f"or more than {MAX_CLASS_FRACTION:.0%} of the rows)"
        ),
        False,
    )


def _given_or_non_numeric(
    task: str | None, kind: str, values: Any, name: str
) -> tuple[str, str, bool]:
    """The task set by the user (counts: a regression target of counts), or classification
    for non-numeric values."""
    if task is None:
        why = "boolean target" if kind == "boolean" else "non-numeric target values"
        return "classification", why, False
    if task != "regression" or kind not in _NUMBER_KINDS or kind == "boolean":
        return task, "set by user", False
    v = values.to_numpy(dtype=np.float64)
    v = v[np.isfinite(v)]
    integer = bool(np.all(v == np.round(v)))
    count = integer and _count_reason(v, len(np.unique(v)), name, user_regression=True)
    return task, "set by user", bool(count)


def _count_reason(v: np.ndarray, k: int, name: str, user_regression: bool = False) -> str | None:
    """Why integer values ``v`` (``k`` distinct) are counts, or ``None`` when they are not:
    non-negative, reaching towards 0, and more than ``MAX_CODE_VALUES`` values or a count-like
    name (any number of values once the user has said regression)."""
    if v.size == 0 or v.min() < 0 or v.min() > v.max() - v.min():
        return None
    words = {w.lower() for w in re.findall(r"[A-Za-z][a-z]*|[A-Z]+(?![a-z])", name)}
    what = f"count target (non-negative integers, {k} distinct values from {v.min():.0f} to "
    what += f"{v.max():.0f}"
    if k > MAX_CODE_VALUES:
        return f"{what}: more than {MAX_CODE_VALUES}, too many for class codes)"
    if words & _COUNT_WORDS and k >= 3:
        return f"{what}: the name {name!r} says count)"
    if user_regression:
        return f"{what})"
    return None


def infer_task(y: Any) -> str:
    """``"classification"`` or ``"regression"`` for a target (rule in the module docstring;
    counts are regression). A ``pandas.Series`` lends its name to the count rule."""
    return _infer_task(y)[0]


def _label_key(v: Any) -> Any:
    """A JSON-friendly, hashable label: NumPy scalars -> Python, integral floats -> int."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _sort_key(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


# --------------------------------------------------------------------------------------------
# Value conversion helpers
# --------------------------------------------------------------------------------------------


def _cat_str(v: Any) -> str:
    """Canonical category string: ``1``, ``1.0`` and ``np.int64(1)`` all become ``"1"``."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (numbers.Integral, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    return str(v)


def _cat_array(s: pd.Series) -> np.ndarray:
    """Object array of category strings with ``np.nan`` for missing (what SimpleImputer wants)."""
    pd = _pd()
    vals = s.astype(object).to_numpy()
    mask = pd.isna(vals)
    if pd.api.types.infer_dtype(vals, skipna=True) == "string":  # fast path, no per-value calls
        out = vals.copy()
    else:
        out = np.array(
            [None if m else _cat_str(v) for v, m in zip(vals, mask, strict=True)], dtype=object
        )
    out[mask] = np.nan
    return out


def _category_counts(s: pd.Series) -> tuple[Counter, int]:
    """How often each category string of ``s`` occurs (:func:`_cat_array`'s strings), and
    how many values are missing: what a categorical column's fitted state is made of (in
    memory, or added up over a file's record batches when streaming)."""
    raw = _cat_array(s)
    miss = _pd().isna(raw)
    return Counter(raw[~miss].tolist()), int(miss.sum())


def _num_array(s: pd.Series, name: str) -> np.ndarray:
    """float64 values; non-finite values count as missing; unparsable strings are an error."""
    pd = _pd()
    num = pd.to_numeric(s.astype(object) if s.dtype == bool else s, errors="coerce")
    bad = num.isna() & s.notna()
    if bad.any():
        examples = list(dict.fromkeys(s[bad].astype(str)))[:3]
        raise ValueError(
            f"numeric column {name!r} contains {int(bad.sum())} values that are not numbers, "
            f"e.g. {examples}"
        )
    out = num.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def heavy_tailed(values: np.ndarray) -> bool:
    """Whether a numeric column is heavy-tailed (module docstring): its non-missing values are all
    >= 0, at least :data:`HEAVY_TAIL_MIN_DISTINCT` distinct, and the largest is more than
    :data:`HEAVY_TAIL_RATIO` times the median of the positive ones.

    Args:
        values: ``(n,)`` float64 values of the fitting rows, NaN for missing.
    """
    x = values[np.isfinite(values)]
    if len(x) == 0 or x.min() < 0:
        return False
    positive = x[x > 0]
    if len(positive) == 0 or len(np.unique(x)) < HEAVY_TAIL_MIN_DISTINCT:
        return False
    return bool(x.max() > HEAVY_TAIL_RATIO * np.median(positive))


def _text_list(s: pd.Series) -> list[str]:
    return ["" if m else str(v) for v, m in zip(s.astype(object), s.isna(), strict=True)]


# ---- dates ----------------------------------------------------------------------------------

# tried in this order on a sample; day-first and month-first formats both parsing a column means
# it is ambiguous (no day above 12) and is not taken for dates
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d-%m-%Y",
    "%d.%m.%Y",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%d-%m-%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%d-%m-%Y %H:%M:%S",
    "%Y%m%d",  # (compact: tried only for a column given with dates= / --date)
)
_FORCED_ONLY = ("%Y%m%d",)  # auto-detection would take 8-digit numbers or codes for dates
DATE_MIN_PARSED = 0.95  # share of the non-missing values a date format must parse
DATE_SAMPLE = 200
# a trailing time-zone offset (" -0800", "+01:00", "Z"): dropped so that features use local time
_TZ_TAIL = re.compile(r"(?:\s*[+-]\d{2}:?\d{2}|Z)$")
_DATE_FEATURES = ("year", "days", "month sin", "month cos", "weekday sin", "weekday cos")
_TIME_FEATURES = ("hour sin", "hour cos")


def _strip_tz(values: pd.Series) -> tuple[pd.Series, bool]:
    """``values`` as strings without a trailing offset, and whether most values had one."""
    text = values.astype(str).str.strip()
    has = text.str.contains(_TZ_TAIL, regex=True)
    if float(has.mean()) >= DATE_MIN_PARSED:
        return text.str.replace(_TZ_TAIL, "", regex=True), True
    return text, False


def _parse_dates(values: pd.Series, fmt: str) -> pd.Series:
    """Datetimes (NaT where missing or not in ``fmt``; ``fmt`` may end with ``%z``, then the
    offset is dropped and the local time kept)."""
    pd = _pd()
    text = _date_text(values)
    if fmt.endswith(" %z"):
        text = text.str.strip().str.replace(_TZ_TAIL, "", regex=True)
        fmt = fmt[: -len(" %z")]
    return pd.to_datetime(text, format=fmt, errors="coerce")


def _date_text(values: pd.Series) -> pd.Series:
    """``values`` as strings; integer-valued numbers (``20150131``, also when read as floats
    because of missing values) without a decimal part."""
    pd = _pd()
    if pd.api.types.is_numeric_dtype(values.dtype) and values.dtype != bool:
        num = pd.to_numeric(values, errors="coerce")
        if bool((num.dropna() % 1 == 0).all()):
            return num.astype("Int64").astype("string")
    return values.astype("string")


def forced_date_role(s: pd.Series, name: str, inferred: ColumnRole) -> ColumnRole:
    """The role of a column given with ``dates=`` (``--date``): the date format (from
    :data:`DATE_FORMATS`, the compact ``%Y%m%d`` included) that parses the most of its values,
    if it parses at least 95% of them.

    Raises:
        ValueError: no format parses 95% of the values; the message names the column, the best
            format and how much it parsed, and shows values that do not parse.
    """
    if inferred.role == "date":
        return ColumnRole("date", f"set by user, {inferred.reason}")
    pd = _pd()
    values = s.dropna()
    text, tz = _strip_tz(_date_text(values))
    best, best_ok = DATE_FORMATS[0], pd.Series(False, index=values.index)
    ties = []
    for fmt in DATE_FORMATS:
        ok = pd.to_datetime(text, format=fmt, errors="coerce").notna()
        if ok.sum() > best_ok.sum():
            best, best_ok, ties = fmt, ok, []
        elif ok.sum() == best_ok.sum() and ok.any():
            ties.append(fmt)
    share = float(best_ok.mean()) if len(values) else 0.0
    if share < DATE_MIN_PARSED:
        bad = list(dict.fromkeys(text[~best_ok].astype(str)))[:5]
        raise ValueError(
            f"column {name!r} was given as a date column (dates= / --date) but does not parse "
            f"as dates: the best format {best!r} reads {share:.0%} of its {len(values)} values "
            f"(at least {DATE_MIN_PARSED:.0%} needed); values that do not parse: {bad}; "
            f"formats tried: {', '.join(DATE_FORMATS)}"
        )
    fmt = best + (" %z" if tz else "")
    # e.g. 03/04/2015 read as 3 April or 4 March alike: day first (the first in DATE_FORMATS)
    note = " (day and month ambiguous: read day first)" if any(t[:2] == "%m" for t in ties) else ""
    why = f"set by user (inferred: {inferred.role}){note}, dates, format {fmt!r}"
    return ColumnRole("date", why)


def detect_date_format(values: pd.Series) -> str | None:
    """The ``strftime`` format of a column of date strings (``values`` without missing ones), or
    None: a format parsing at least 95% of a sample and of the whole column, and unambiguous."""
    pd = _pd()
    sample, tz = _strip_tz(values.iloc[:DATE_SAMPLE])
    # cheap screen: most values must look like d-m-y / y-m-d before any format is tried
    shaped = sample.str.contains(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}", regex=True)
    if float(shaped.mean()) < DATE_MIN_PARSED:
        return None
    fits = []
    for fmt in DATE_FORMATS:
        if fmt in _FORCED_ONLY:
            continue
        parsed = pd.to_datetime(sample, format=fmt, errors="coerce")
        if float(parsed.notna().mean()) >= DATE_MIN_PARSED:
            fits.append(fmt)
    day_first = [f for f in fits if f.startswith("%d")]
    month_first = [f for f in fits if f.startswith("%m")]
    if not fits or (day_first and month_first):
        return None
    fmt = fits[0] + (" %z" if tz else "")
    if float(_parse_dates(values, fmt).notna().mean()) < DATE_MIN_PARSED:
        return None
    return fmt


def date_feature_names(has_time: bool) -> tuple[str, ...]:
    """The features of one date column, in :func:`date_features` order."""
    return _DATE_FEATURES + (_TIME_FEATURES if has_time else ())


def date_features(values: pd.Series, fmt: str, origin: float) -> np.ndarray:
    """``(n, 6)`` or, for date-times, ``(n, 8)`` float64 features of a date column: year, days
    since ``origin`` (days since 1970-01-01), sin/cos of month, weekday and hour; NaN rows where
    a value is missing or does not parse."""
    t = _parse_dates(values, fmt)
    ok = t.notna().to_numpy()
    ns = t.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    days = ns / 86_400e9
    cols = [
        t.dt.year.to_numpy(dtype=np.float64, na_value=np.nan),
        days - origin,
    ]
    for period, v in (
        (12.0, t.dt.month.to_numpy(dtype=np.float64, na_value=np.nan) - 1.0),
        (7.0, t.dt.day_of_week.to_numpy(dtype=np.float64, na_value=np.nan)),
    ):
        cols += [np.sin(2 * np.pi * v / period), np.cos(2 * np.pi * v / period)]
    if "%H" in fmt:
        hour = (t.dt.hour + t.dt.minute / 60.0).to_numpy(dtype=np.float64, na_value=np.nan)
        cols += [np.sin(2 * np.pi * hour / 24.0), np.cos(2 * np.pi * hour / 24.0)]
    out = np.column_stack(cols)
    out[~ok] = np.nan
    return out


def date_origin(values: pd.Series, fmt: str) -> float:
    """The earliest date of ``values`` in days since 1970-01-01 (0.0 if none parses)."""
    t = _parse_dates(values, fmt).dropna()
    if t.empty:
        return 0.0
    return float(t.min().value) / 86_400e9
