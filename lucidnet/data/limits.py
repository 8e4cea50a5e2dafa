"""Resource limits checked before the work they guard: number of classes, memory of the prepared
feature matrix.

A limit is checked as soon as the number it bounds is known and before anything that grows with
it is computed or allocated, so a run that cannot finish is refused in a moment instead of failing
(or being killed) after minutes of work. A refusal is a :class:`LimitError`: one message that
names the limit, the measured value and the option that changes it.

* **Classes** (:func:`check_classes`): a classification target with more than ``max_classes``
  distinct labels (default :data:`DEFAULT_MAX_CLASSES`) is refused right after the target is read.
  Thousands of "classes" are usually an identifier or a number read as text; each class costs an
  output unit, a row and a column of the confusion matrix and a line of the per-class table.
* **Memory** (:func:`check_matrix_memory`): the float32 feature matrix of all splits, rows x
  features x 4 bytes, is estimated once the column roles are known and before any text column is
  vectorised (with the TF-IDF vocabularies at their cap, ``max_features`` terms per text column)
  and compared with :data:`MEMORY_FRACTION` of the memory available (:func:`available_memory`).
  The rest is left for the table itself, the scikit-learn transforms and training.

The check refuses rather than quietly switching to fewer features: the same command on the same
data must give the same model on any machine. The message says which value of ``max_features``
(or ``max_categories``) would fit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_CLASSES",
    "MEMORY_FRACTION",
    "FeatureWidths",
    "LimitError",
    "available_memory",
    "check_classes",
    "check_matrix_memory",
    "format_bytes",
]

#: the most classes a classification target may have unless ``max_classes`` says otherwise.
#: ImageNet has 1,000; a lucidnet model file keeps the k x k test confusion matrix in its header,
#: and above ~4,700 classes that matrix alone exceeds the header limit of a model file.
DEFAULT_MAX_CLASSES = 1000
#: the share of the available memory the prepared feature matrix may take; the remaining part
#: holds the transforms' temporary blocks, the model, the batches and the predictions.
MEMORY_FRACTION = 0.8

#: how an option (and a value for it) is named in a message: a Python parameter
#: (``max_features``, ``task='regression'``) or a command-line option (``--max-features``,
#: ``--task regression``).
OptionName = Callable[..., str]


def python_option(name: str, value: object = None) -> str:
    """``max_features`` / ``task='regression'``: the keyword argument."""
    return name if value is None else f"{name}={value!r}"


def cli_option(name: str, value: object = None) -> str:
    """``--max-features`` / ``--task regression``: the ``lucidnet`` command's option."""
    flag = "--" + name.replace("_", "-")
    return flag if value is None else f"{flag} {value}"


class LimitError(ValueError):
    """Work refused before it started because it would exceed a limit.

    ``str(error)`` names the Python parameters that change the limit (``max_classes=``);
    :meth:`message` renders the same text with other option names (the command line's
    ``--max-classes``).
    """

    def __init__(self, render: Callable[[OptionName], str]) -> None:
        self._render = render
        super().__init__(render(python_option))

    def message(self, option: OptionName = python_option) -> str:
        """The message with each option named by ``option`` (e.g. :func:`cli_option`)."""
        return self._render(option)


def format_bytes(n: float) -> str:
    """``"1.5 GB"``: a byte count for messages (decimal units, as ``free -h --si``)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} bytes"


# ------------------------------------------------------------------------------------------------
# Classes
# ------------------------------------------------------------------------------------------------


def check_classes(n_classes: int, max_classes: int | None, target: str) -> None:
    """Refuse a classification target with more than ``max_classes`` classes (None: no limit).

    Raises:
        LimitError: naming the target, its number of classes, the limit and ``max_classes``.
    """
    if max_classes is None or n_classes <= max_classes:
        return

    def render(opt: OptionName) -> str:
        return (
            f"target column {target!r} has {n_classes:,} distinct classes, more than the limit of "
            f"{max_classes:,} ({opt('max_classes')}); if its values are numbers to predict use "
            f"{opt('task', 'regression')}, if they are identifiers or free text choose another "
            f"target, if you do mean {n_classes:,} classes raise {opt('max_classes')}"
        )

    raise LimitError(render)


# ------------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureWidths:
    """The columns of the prepared matrix, by kind, known before the text columns are fitted.

    ``text`` is the TF-IDF width of each text column at its cap (``max_features``): an upper
    bound, the vocabulary may turn out smaller. ``ids_bytes_per_row``: the token-id matrix of
    ``text_mode="ids"`` (int64, ``max_len`` per row; 256 when ``max_len`` is picked from the
    data), 0 otherwise.
    """

    numeric: int = 0  # numeric columns plus missing indicators
    dates: int = 0  # features of the date columns (6 or 8 each) and their missing indicators
    cyclic: int = 0  # sin / cos of the cyclic integer codes and their missing indicators
    one_hot: int = 0  # kept categories of all categorical columns
    text: tuple[int, ...] = ()  # per text column, its cap
    max_features: int = 0
    max_categories: int = 0
    categorical_columns: int = 0
    ids_bytes_per_row: int = 0

    @property
    def total(self) -> int:
        return self.numeric + self.dates + self.cyclic + self.one_hot + sum(self.text)

    def bytes_per_row(self) -> int:
        return 4 * self.total + self.ids_bytes_per_row


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate without swapping, or None if unknown.

    ``MemAvailable`` of ``/proc/meminfo`` (``os.sysconf`` free pages elsewhere), lowered to the
    room left under the memory limit of the process's cgroup (containers, systemd), where there
    is one. Tests replace this function to simulate a small machine.
    """
    found = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    if not found:
        found = [v for v in (_sysconf_available(),) if v is not None]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # not on this platform
        return None


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _stat_value(path: str, keys: tuple[str, ...]) -> int:
    try:
        with open(path, encoding="ascii") as fh:
            stats = dict(line.split()[:2] for line in fh if len(line.split()) >= 2)
    except (OSError, ValueError):
        return 0
    return next((int(stats[k]) for k in keys if stats.get(k, "").isdigit()), 0)


def _cgroup_room() -> int | None:
    """Limit minus usage of this process's memory cgroup (v2 or v1), page cache that can be
    dropped (``inactive_file``) not counted as used; None without a limit."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as fh:
            for line in fh:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3 and (parts[0] == "0" or "memory" in parts[1].split(",")):
                    paths["v2" if parts[0] == "0" else "v1"] = parts[2]
    except OSError:
        return None
    candidates = []
    for version, own in paths.items():
        root = "/sys/fs/cgroup" if version == "v2" else "/sys/fs/cgroup/memory"
        limit_f, usage_f = (
            ("memory.max", "memory.current")
            if version == "v2"
            else ("memory.limit_in_bytes", "memory.usage_in_bytes")
        )
        for base in dict.fromkeys((root + own.rstrip("/"), root)):
            limit, usage = _read_int(f"{base}/{limit_f}"), _read_int(f"{base}/{usage_f}")
            if limit is None or usage is None or limit >= 2**60:  # v1 writes ~2**63: no limit
                continue
            cache = _stat_value(f"{base}/memory.stat", ("total_inactive_file", "inactive_file"))
            candidates.append(max(0, limit - max(0, usage - cache)))
            break
    return min(candidates) if candidates else None


def memory_budget(max_memory: int | str | None) -> tuple[int | None, str | None]:
    """``(bytes the prepared matrix may take or None for no check, where that number comes
    from: None when the caller set it)``.

    ``max_memory``: ``"auto"`` (:data:`MEMORY_FRACTION` of :func:`available_memory`), a number
    of bytes, or None (no check).
    """
    if max_memory is None:
        return None, None
    if max_memory != "auto":
        if isinstance(max_memory, bool) or not isinstance(max_memory, int) or max_memory < 1:
            raise ValueError(
                f"max_memory must be 'auto', a positive number of bytes or None, got {max_memory!r}"
            )
        return max_memory, None
    available = available_memory()
    if available is None:  # unknown platform: nothing to compare with
        return None, None
    return (
        int(MEMORY_FRACTION * available),
        f"{MEMORY_FRACTION:.0%} of the {format_bytes(available)} of memory available now",
    )


def check_matrix_memory(
    rows: int, widths: FeatureWidths, max_memory: int | str | None = "auto"
) -> int:
    """Refuse a prepared feature matrix (all splits) that would not fit in memory.

    Args:
        rows: the rows of all splits together.
        widths: the matrix's columns by kind (text columns at their cap).
        max_memory: ``"auto"``, a byte count, or None (see :func:`memory_budget`).

    Returns:
        The estimate in bytes.

    Raises:
        LimitError: the estimate, how it was made, the budget and the options that would make
            it fit (``max_features`` at most N, ``max_categories``, ``max_memory``).
    """
    estimate = rows * widths.bytes_per_row()
    budget, source = memory_budget(max_memory)
    if budget is None or estimate <= budget:
        return estimate

    def render(opt: OptionName) -> str:
        where = source or f"set with {opt('max_memory')}"
        parts = [
            f"the prepared feature matrix would need about {format_bytes(estimate)} ({rows:,} "
            f"rows of all splits x {widths.total:,} float32 features x 4 bytes"
            f"{_width_detail(widths, opt)}), more than the {format_bytes(budget)} it may use "
            f"({where})"
        ]
        parts += _memory_fixes(rows, widths, budget, opt)
        return "; ".join(parts)

    raise LimitError(render)


def _width_detail(w: FeatureWidths, opt: OptionName) -> str:
    """``": 4 numeric, 300 one-hot, 2 text columns x up to 5,000 TF-IDF terms (--max-features)"``"""
    parts = []
    if w.numeric:
        parts.append(f"{w.numeric:,} numeric")
    if w.dates:
        parts.append(f"{w.dates:,} from dates")
    if w.cyclic:
        parts.append(f"{w.cyclic:,} cyclic")
    if w.one_hot:
        parts.append(f"{w.one_hot:,} one-hot")
    if w.text:
        parts.append(
            f"{len(w.text)} text column{'s' * (len(w.text) > 1)} x up to {max(w.text):,} TF-IDF "
            f"terms ({opt('max_features')})"
        )
    if w.ids_bytes_per_row:
        parts.append(f"token ids {w.ids_bytes_per_row:,} bytes per row")
    return ": " + ", ".join(parts) if parts else ""


def _memory_fixes(rows: int, w: FeatureWidths, budget: int, opt: OptionName) -> list[str]:
    """The changes that would make the matrix fit, each with the value to use."""
    room = budget // max(1, rows) - w.ids_bytes_per_row  # bytes per row the budget allows
    fixes = []
    if w.text:
        per_column = (room // 4 - w.numeric - w.dates - w.cyclic - w.one_hot) // len(w.text)
        if per_column >= 1:
            fixes.append(f"lower {opt('max_features')} to at most {per_column:,}")
    if w.one_hot and w.categorical_columns:
        fixed = w.numeric + w.dates + w.cyclic + sum(w.text)
        per_column = (room // 4 - fixed) // w.categorical_columns
        if 1 <= per_column < w.max_categories:
            fixes.append(f"lower {opt('max_categories')} to at most {per_column:,}")
    fixes.append(f"use fewer rows or columns, or set {opt('max_memory')} if more memory is free")
    return ["to fit: " + ", or ".join(fixes)]
