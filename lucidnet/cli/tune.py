"""``lucidnet tune``: hyper-parameter search on Optuna, shared by any number of workers.

The data file is read, prepared and split once per process by ``train``'s own code
(:func:`lucidnet.cli.commands._setup`: the same roles, leakage guard, split and test rows as
``lucidnet train`` with the same options); every trial then trains a network on those arrays
(:mod:`lucidnet.interop.tuning`: TPE sampling, median pruning on the per-epoch validation
loss). The study lives in an Optuna storage: by default an SQLite file next to ``--out``, so an
interrupted search continues when the command is run again; ``--storage`` takes any Optuna URL,
and every worker started with the same URL and ``--study`` joins the same study.

Each worker saves the best model of the study it knows of to its ``--out``, atomically, as a
normal model file (``predict``, ``evaluate``, ``info`` read it; ``metadata["tuning"]`` says
which study and trial it is). When the study's best trial was found by another worker or an
earlier run, the worker retrains its parameters (same seed: the same network) at the end.

The command is wired into :data:`lucidnet.cli.commands.COMMANDS` by ``lucidnet/cli/__init__.py``
(it imports the commands' helpers, so the commands module cannot import it).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..interop import tuning
from . import commands as cmd
from . import saving
from .args import CLIError


def cmd_tune(args: argparse.Namespace) -> int:
    """``lucidnet tune``: prepare once, search, save the best model, print the study."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise CLIError('tune needs Optuna: pip install "lucidnet[tune]"') from None
    out, url, name = _outputs(args)
    with cmd._user_errors("config file [search]"):
        space = tuning.parse_space(getattr(args, "config_search", None))
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the command prints its own lines
    # the first trial of a new study runs the command's own settings (train's defaults)
    study = _open_study(url, name, tuning.default_params(space, _defaults(args)))
    data, _, _, task, classes = cmd._setup(args)
    if len(data.X_val) == 0:
        raise CLIError("tune needs validation rows (--val-size > 0): trials are compared on them")
    writer = _BestWriter(args, data, task, classes, out, name)
    objective = _objective(args, data, task, classes, space, writer)
    _say_start(args, study, space, url, name)
    start = time.perf_counter()
    try:
        ran = tuning.run_study(
            study, objective, args.trials, timeout=args.timeout, callbacks=[_trial_line(args)]
        )
    except KeyboardInterrupt:
        print(
            f"lucidnet: interrupted (Ctrl-C); the running trial was marked failed. Run the same "
            f"command again to continue study '{name}' in {_shown(url)}",
            file=sys.stderr,
        )
        raise cmd._InterruptedInFit from None
    seconds = time.perf_counter() - start
    _wait_for_other_workers(args, study, args.timeout is not None and seconds >= args.timeout)
    cmd._say("", trials_table(study), "", f"This worker ran {ran} trials in {seconds:.1f} s.")
    _finish(args, study, objective, writer)
    return 0


def _wait_for_other_workers(
    args: argparse.Namespace,
    study: Any,
    timed_out: bool = False,
    poll_s: float = 0.5,
    clock: Any = time.monotonic,
) -> None:
    """Once this worker has no trial left to start, wait while other workers' trials of the
    study still run: then every worker ends with the study's final best model in its --out
    (a trial that finishes after a worker exited would otherwise be in the other workers'
    files only). Not after ``--timeout`` ran out (the time is spent). The wait is bounded: a
    killed worker's trial is marked failed once its heartbeat is stale
    (``tuning.GRACE_SECONDS``), and a trial without heartbeats (a worker that never sent one,
    a study run elsewhere) is given up after twice the longest finished trial (at least the
    grace period). Ctrl-C stops the wait: the best trial finished so far is saved."""
    import optuna
    from optuna.trial import TrialState

    if timed_out:
        return
    durations = [t.duration.total_seconds() for t in study.get_trials(deepcopy=False)
                 if t.duration is not None]  # fmt: skip
    limit = max(tuning.GRACE_SECONDS, 2 * max(durations, default=0.0))
    start, said = clock(), False
    try:
        while running := study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if clock() - start > limit:
                numbers = ", ".join(f"#{t.number}" for t in running)
                cmd._say(
                    f"Gave up waiting after {limit:.0f} s for trial(s) {numbers} (their "
                    "workers may have stopped): saving the best trial finished so far."
                )
                return
            if not said and not args.quiet:
                cmd._say(f"Waiting for {len(running)} trial(s) still running in other workers")
            said = True
            optuna.storages.fail_stale_trials(study)
            time.sleep(poll_s)
    except cmd._Terminated:
        raise
    except KeyboardInterrupt:
        cmd._say("Stopped waiting (Ctrl-C): saving the best trial finished so far.")


def _outputs(args: argparse.Namespace) -> tuple[str, str, str]:
    """(--out, storage URL, study name), checked before any work."""
    out = args.out or f"{Path(args.data).stem}-tuned.lnet"
    cmd._check_output(out, True, (args.data,), "model file")  # (rewritten as the study goes)
    if args.report:
        cmd._check_output(args.report, args.overwrite, (args.data,), "report")
        if os.path.realpath(args.report) == os.path.realpath(out):
            raise CLIError("--out and --report must be different files")
    name = args.study or f"{Path(args.data).stem}-{args.target}"
    if os.path.exists(out) and not args.overwrite and _tuning_of(out).get("study") != name:
        # not this study's best model so far (which continuing the study may replace)
        raise CLIError(
            f"model file '{out}' already exists and was not written by 'lucidnet tune' for this "
            "study; pass --overwrite to replace it"
        )
    url = args.storage or "sqlite:///" + str(Path(out).resolve().with_suffix(".optuna.db"))
    return out, url, name


def _metadata_of(path: str) -> dict[str, Any]:
    """A model file's metadata; empty for a file missing or unreadable."""
    from ..io import load

    try:
        meta = load(path).metadata
    except Exception:  # noqa: BLE001 (any unreadable file is "not ours")
        return {}
    return meta if isinstance(meta, dict) else {}


def _tuning_of(path: str | dict[str, Any]) -> dict[str, Any]:
    """The ``tuning`` record (study, trial) of a model file ``lucidnet tune`` wrote (a path, or
    its metadata already read); empty for any other file, or one missing or unreadable."""
    meta = _metadata_of(path) if isinstance(path, str) else path
    tuned = meta.get("tuning")
    return tuned if isinstance(tuned, dict) else {}


def _shown(url: str) -> str:
    """A storage URL without its password, for messages."""
    head, sep, tail = url.partition("://")
    if sep and "@" in tail:
        creds, _, host = tail.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{head}://{user}:***@{host}" if ":" in creds else url
    return url


def _open_study(url: str, name: str, first: dict[str, Any]) -> Any:
    """The study ``name`` in the storage at ``url`` (created when new;
    :func:`lucidnet.interop.tuning.open_storage`: heartbeats, so that a killed worker's trial is
    failed rather than left running; SQLite waiting for another worker's lock).

    Two workers started at the same moment on a new SQLite file may race to create its tables;
    the loser retries."""
    from sqlalchemy.exc import ArgumentError

    error: Exception | None = None
    for attempt in range(5):
        try:
            return tuning.make_study(tuning.open_storage(url), name, first_params=first)
        except (ImportError, ValueError, TypeError, ArgumentError) as exc:  # bad URL, no driver
            raise CLIError(f"--storage {_shown(url)!r}: {' '.join(str(exc).split())}") from None
        except Exception as exc:  # noqa: BLE001 (SQLAlchemy's errors: retried, then reported)
            error = exc
            time.sleep(0.2 * (attempt + 1))
    message = " ".join(str(error).split())[:300]
    raise CLIError(f"--storage {_shown(url)!r}: cannot open the study ({message})")


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    """The command's values of the parameters (those the search space leaves alone)."""
    return {k: getattr(args, k) for k in tuning.DEFAULTS}


def _objective(
    args: argparse.Namespace,
    data: Any,
    task: str,
    classes: list[str],
    space: dict[str, Any],
    writer: _BestWriter,
) -> tuning.Objective:
    """The trials' objective on the prepared arrays, building ``train``'s network."""
    return tuning.Objective(
        data.X_train,
        data.y_train,
        data.X_val,
        data.y_val,
        loss=args.loss,  # chosen by _setup as train chooses it
        n_outputs=len(classes) if task == "classification" else 1,
        space=space,
        defaults=_defaults(args),
        epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        threads=args.threads,
        class_weight=None if args.class_weight == "none" else args.class_weight,
        build=cmd.build_model,
        on_best=writer,
    )


def _say_start(
    args: argparse.Namespace, study: Any, space: dict[str, Any], url: str, name: str
) -> None:
    if args.quiet:
        return
    done = len(study.get_trials(deepcopy=False, states=tuning.finished_states()))
    left = max(0, args.trials - done)
    cmd._say(
        "",
        f"Study '{name}' in {_shown(url)}: {done} finished trials; {left} to go to --trials "
        f"{args.trials} (shared with any other worker of this study)",
        f"Search space (up to {args.epochs} epochs per trial, early stopping patience "
        f"{args.patience}, {args.threads} thread(s) per trial):",
        tuning.describe_space(space),
    )


def _params_text(trial: Any) -> str:
    p = dict(trial.params)
    hidden = trial.user_attrs.get("hidden") or p.get("hidden")
    for k in ("layers", "units", "hidden"):
        p.pop(k, None)
    parts = [f"hidden={hidden}"] if hidden else []
    for k, v in p.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def _trial_line(args: argparse.Namespace) -> Any:
    """An Optuna callback printing one line per finished trial."""

    def line(study: Any, trial: Any) -> None:
        if args.quiet or trial.user_attrs.get("surplus"):
            return
        value = "" if trial.value is None else f"val_loss {trial.value:.4f} "
        try:
            leader = study.best_trial  # one query (best_value asks for it again)
            best = f"best {leader.value:.4f} (#{leader.number})"
        except ValueError:
            best = "no best yet"
        ua = trial.user_attrs
        cmd._say(
            f"trial {trial.number:>3} {trial.state.name.lower():<8} {value}"
            f"{ua.get('epochs', '?')} epochs {ua.get('seconds', 0):.1f} s  {best}  "
            f"{_params_text(trial)}"
        )
        sys.stdout.flush()

    return line


def _last_value(trial: Any) -> float | None:
    """A trial's value, or a pruned trial's last reported value (None: neither)."""
    if trial.value is not None or not trial.intermediate_values:
        return trial.value
    return trial.intermediate_values[max(trial.intermediate_values)]


def trials_table(study: Any) -> str:
    """Every trial of the study: number, state, value, epochs, seconds, parameters."""
    rows = ["trial  state      val_loss  epochs  seconds  parameters"]
    for t in study.get_trials(deepcopy=False):
        state = "surplus" if t.user_attrs.get("surplus") else t.state.name.lower()
        value = _last_value(t)
        shown = "" if value is None else f"{value:.4f}"
        rows.append(
            f"{t.number:>5}  {state:<9}  {shown:>8}  {t.user_attrs.get('epochs', ''):>6}  "
            f"{t.user_attrs.get('seconds', 0.0):>7.1f}  {_params_text(t)}"
        )
    return "\n".join(rows)


def importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the completed trials; empty with fewer
    than two completed trials or when every completed trial had the same parameters."""
    import optuna

    try:
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}


class _BestWriter:
    """Saves a trial's model to ``--out`` (atomically, a normal model file with
    ``metadata["tuning"]``) and remembers which trial the file holds."""

    def __init__(
        self,
        args: argparse.Namespace,
        data: Any,
        task: str,
        classes: list[str],
        out: str,
        study_name: str,
    ) -> None:
        self.args, self.data, self.task, self.classes = args, data, task, classes
        self.out, self.study_name = out, study_name
        self.written: int | None = None
        self.result: dict[str, Any] | None = None

    def __call__(self, trial: Any, trained: tuning.Trained) -> None:
        self.write(trial.number, trained)

    def write(self, number: int, trained: tuning.Trained) -> None:
        args = argparse.Namespace(**vars(self.args))
        for key in _defaults(args):
            setattr(args, key, trained.config[key])
        data, model, h = self.data, trained.model, trained.history
        self.result = None
        if len(data.X_test):
            pred = cmd.network_predictions(self.task, model, data.X_test)
            self.result = cmd.test_metrics(self.task, data.y_test, pred, self.classes)
        model.metadata = cmd._model_metadata(
            args,
            data,
            self.task,
            seconds=trained.seconds,
            epochs_run=len(h.epoch),
            best=trained.best_epoch,
            scaling=saving.scaling_of(h),
            result=self.result,
        )
        model.metadata["created_by"] = "lucidnet tune"
        model.metadata["tuning"] = {
            "study": self.study_name,
            "trial": number,
            "val_loss": trained.value,
            "note": "val_loss: the validation loss without the weight penalty, at the kept epoch",
        }
        saving.save_trained(model, self.out, True)
        self.written = number


def _finish(
    args: argparse.Namespace, study: Any, objective: tuning.Objective, writer: _BestWriter
) -> None:
    """The best trial, its test metrics, the importances; the study's best model in --out."""
    try:
        best = study.best_trial
    except ValueError:
        cmd._say("No trial completed: no model was saved.")
        return
    held_file: dict[str, Any] = {}  # the metadata of what --out holds, read once
    if writer.written != best.number:
        held_file = _metadata_of(writer.out)
        held = _tuning_of(held_file)
        if held.get("study") == writer.study_name and held.get("trial") == best.number:
            cmd._say(f"'{writer.out}' already holds the best trial #{best.number}.")
        else:
            cmd._say(f"Retraining the best trial #{best.number} (found by another worker or run)")
            writer.write(best.number, objective.train(tuning.best_config(best, objective)))
    cmd._say(
        "",
        f"Best trial #{best.number}: val_loss {best.value:.4f}  {_params_text(best)}",
        f"Model saved to '{writer.out}' (the study's best so far; 'lucidnet info {writer.out}')",
    )
    result = writer.result
    if result is None and writer.written is None:  # --out already held the best trial
        result = held_file.get("test_metrics")
    if result is not None:
        text = cmd.format_metrics(writer.task, result, len(writer.data.X_test))
        cmd._say(text.splitlines()[0] if args.quiet else text)
    ranked = importances(study)
    if ranked:
        cmd._say("Parameter importances (fANOVA over the completed trials):")
        cmd._say(*(f"  {k:<11} {v:.3f}" for k, v in ranked.items()))
    if args.report:
        write_report(args.report, study, ranked)
        cmd._say(f"Report written to '{args.report}'")


def write_report(path: str, study: Any, ranked: dict[str, float]) -> None:
    """An HTML page: the optimisation history (every trial's value, the best so far) and the
    parameter importances as plots (the glass box's matplotlib figures, no pyplot), and the
    trials table."""
    import html

    from ..glassbox.report import _img

    try:
        figures = [(_history_figure(study), "optimisation history")]
        if ranked:
            figures.append((_importance_figure(ranked), "parameter importances"))
    except ImportError as exc:
        raise CLIError(f"--report needs matplotlib ({exc})") from None
    images = "".join(_img(fig, alt) for fig, alt in figures)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>lucidnet tune: {html.escape(study.study_name)}</title></head><body>"
        f"<h1>Study {html.escape(study.study_name)}</h1>{images}"
        f"<h2>Trials</h2><pre>{html.escape(trials_table(study))}</pre></body></html>\n"
    )
    cmd._write_text(path, page)


def _history_figure(study: Any) -> Any:
    from ..glassbox.plots import _new_figure

    fig = _new_figure((7, 4))
    ax = fig.add_subplot()
    best, xs, ys = math.inf, [], []
    for t in study.get_trials(deepcopy=False, states=tuning.finished_states()):
        done, value = t.value is not None, _last_value(t)
        if value is None:
            continue
        ax.plot(t.number, value, "o" if done else "x", color="C0" if done else "C3")
        if done:
            best = min(best, value)
            xs.append(t.number)
            ys.append(best)
    ax.step(xs, ys, where="post", color="C1", label="best so far")
    ax.set(xlabel="trial", ylabel="validation loss", title="Optimisation history (x: pruned)")
    ax.legend()
    fig.tight_layout()
    return fig


def _importance_figure(ranked: dict[str, float]) -> Any:
    from ..glassbox.plots import _new_figure

    fig = _new_figure((7, 0.4 * len(ranked) + 1))
    ax = fig.add_subplot()
    names = list(ranked)[::-1]
    ax.barh(names, [ranked[n] for n in names], color="C0")
    ax.set(xlabel="importance (fANOVA)", title="Parameter importances")
    fig.tight_layout()
    return fig
