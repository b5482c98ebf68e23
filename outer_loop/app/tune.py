"""``l2l-tune``: an Optuna study over ``l2l-train`` configs, stored so that a rerun of the same command resumes it.

    l2l-tune experiment=arm_one_shot --param outer.lr=log:1e-4:1e-2 --param inner.lr=log:1e-4:1e-2 \\
        --param error_module.n_hidden=int:50:200 --param network.cell=choice:lif,alif --trials 20 --study arm

Positional arguments are ``l2l-train`` overrides shared by every trial; each ``--param KEY=KIND:...``
(``float:LOW:HIGH``, ``log:LOW:HIGH``, ``int:LOW:HIGH``, ``choice:A,B,...``) is sampled per trial by a seeded TPE
sampler. Trial ``N`` runs in-process into ``<out>/<study>/trial_N``. The objective: the held-out test MSE after
the one-shot update (``mode=meta``, minimized), or the task family's metric on the held-out batch (``mode=direct``,
in its direction).
The study lives in ``--storage`` (default ``sqlite:///<out>/<study>.db``); rerunning the command keeps the finished
trials, marks the trials a crash left RUNNING as FAIL and runs until ``--trials`` trials are COMPLETE.
Writes ``<out>/<study>_best.json`` (best value, params, overrides and run dir) and ``<out>/<study>_trials.csv`` (one row
per trial, also printed); ``--plots`` adds the study's history and parameter-importance figures. Each trial's
dashboard run (``logger=wandb``, ``mlflow``) is named ``<study>-trial<N>``, grouped by the study and tagged.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from l2l import __version__
from l2l.allocator import keep_freed_memory
from l2l.command_line import CommandParser
from l2l.outer_loop.app.build import build_task
from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.composition_errors import composition_message
from l2l.outer_loop.app.loggers import write_json
from l2l.outer_loop.app.run_lock import RunDirInUseError, RunDirLock
from l2l.outer_loop.app.train import preflight
from l2l.outer_loop.app.tune_report import table_lines, write_study_plots, write_trials_table
from l2l.outer_loop.guard import TrainingInterrupted

Runner = Callable[[DictConfig, Path], dict[str, Any]]
"""Runs one trial's config into its run dir and returns the summary (:func:`l2l.outer_loop.app.train.run`)."""

KINDS = ("float", "log", "int", "choice")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ATTR = "l2l_tune"
"""The study's user attribute that records what it searches (shared overrides, parameters, objective)."""


class MissingObjectiveError(ValueError):
    """A run's summary lacks the value the study optimizes: every trial would, so the study stops."""


@dataclass(frozen=True)
class Param:
    """One searched config entry: ``key`` sampled as ``kind`` in [low, high] or from ``choices``."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def spec(self) -> str:
        """The ``KEY=KIND:...`` text of this parameter (normalized)."""
        body = ",".join(map(str, self.choices)) if self.kind == "choice" else f"{self.low}:{self.high}"
        return f"{self.key}={self.kind}:{body}"

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for an Optuna trial."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high)
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log")

    def probes(self) -> tuple[Any, ...]:
        """Values checked at start: both ends of a range, every choice."""
        return self.choices if self.kind == "choice" else (self.low, self.high)

    def override(self, value: Any) -> str:
        """``key=value`` as an ``l2l-train`` override."""
        return f"{self.key}={value!r}" if isinstance(value, float) else f"{self.key}={value}"


def _number(text: str, kind: str, spec: str) -> float | int:
    try:
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        allowed = "an integer" if kind == "int" else "a number"
        raise ValueError(f"--param {spec!r}: {text!r} is not {allowed}") from None
    if not math.isfinite(value):
        raise ValueError(f"--param {spec!r}: {text!r} is not allowed: the bounds must be finite")
    return value


def _choice(text: str) -> Any:
    """A choice as Optuna stores it: an int or float where the text is one, else the text."""
    for convert in (int, float):
        try:
            value = convert(text)
        except ValueError:
            continue
        return value if math.isfinite(value) else text
    return text


def parse_param(spec: str) -> Param:
    """``KEY=KIND:...`` as a :class:`Param`; ValueError naming the spec and what is allowed."""
    key, sep, rest = spec.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key):
        raise ValueError(f"--param {spec!r} is not allowed: write KEY=KIND:..., e.g. outer.lr=log:1e-4:1e-2")
    kind, _, body = rest.partition(":")
    if kind not in KINDS:
        raise ValueError(f"--param {spec!r}: kind {kind!r} is not allowed: choose one of {list(KINDS)} "
                         "(float:LOW:HIGH, log:LOW:HIGH, int:LOW:HIGH, choice:A,B,...)")
    if kind == "choice":
        texts = [t.strip() for t in body.split(",")]
        if not body or any(not t for t in texts):
            raise ValueError(f"--param {spec!r}: choice needs a comma-separated list of values, e.g. choice:lif,alif")
        choices = tuple(_choice(t) for t in texts)
        if len(set(choices)) < len(choices):
            raise ValueError(f"--param {spec!r}: the choices must differ")
        return Param(key, kind, choices=choices)
    bounds = body.split(":")
    if len(bounds) != 2:
        raise ValueError(f"--param {spec!r}: {kind} needs two bounds, {kind}:LOW:HIGH")
    low, high = (_number(b.strip(), kind, spec) for b in bounds)
    if not low < high:
        raise ValueError(f"--param {spec!r}: LOW={low} must be below HIGH={high}")
    if kind == "log" and low <= 0:
        raise ValueError(f"--param {spec!r}: log needs LOW > 0, got {low}")
    return Param(key, kind, low, high)


def parse_params(specs: Sequence[str], overrides: Sequence[str] = ()) -> list[Param]:
    """Every ``--param``; a key given twice, or also set by a shared override, is a ValueError."""
    params = [parse_param(spec) for spec in specs]
    seen: set[str] = set()
    shared = {o.partition("=")[0].lstrip("+~") for o in overrides}
    for param in params:
        if param.key in seen:
            raise ValueError(f"--param {param.spec!r}: {param.key} is searched twice: keep one --param for it")
        if param.key in shared:
            raise ValueError(f"--param {param.spec!r}: {param.key} is also set by a shared override: drop one of them")
        seen.add(param.key)
    return params


def objective(cfg: DictConfig) -> tuple[str, str]:
    """The summary value a study on ``cfg`` optimizes and its direction: ``test_mse`` (minimize) for
    ``mode=meta``, the task family's metric for ``mode=direct``."""
    if cfg.mode == "meta":
        return "test_mse", "minimize"
    family = build_task(cfg.task)
    return family.metric, "minimize" if family.lower_is_better else "maximize"


def objective_value(summary: Mapping[str, Any], name: str) -> float:
    """The value ``name`` of a run's summary: meta runs ``eval`` (or the last training batch without
    evaluation), direct runs ``final_eval``. :class:`MissingObjectiveError` when it is absent."""
    meta = summary.get("mode") == "meta"
    where = ("eval" if summary.get("eval") else "final_train") if meta else "final_eval"
    value = (summary.get(where) or {}).get(name)
    if value is None:
        hint = ("a meta run scores its held-out tasks (eval.enabled=true) or its last training batch" if meta else
                "a direct run scores its held-out batch (train.eval_batch_size > 0)")
        raise MissingObjectiveError(f"the run's summary has no {where}.{name}, the study's objective (summary keys: "
                                    f"{sorted(summary)}): {hint}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MissingObjectiveError(f"the run's summary has {where}.{name}={value!r}, not a number") from None


def compose_checked(overrides: Sequence[str]) -> DictConfig:
    """The composed config of ``overrides``, checked as ``l2l-train`` checks it at start (ValueError)."""
    try:
        cfg = compose_config(list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ValueError(composition_message(error, "l2l-train")) from None
    preflight(cfg)
    return cfg


def check_space(overrides: Sequence[str], params: Sequence[Param]) -> DictConfig:
    """Compose the shared overrides and each parameter's probes; returns the config of the first point."""
    try:
        compose_checked(overrides)
    except ValueError as error:
        raise ValueError(f"the shared overrides {list(overrides)} are not a valid config: {error}") from None
    first = [p.override(p.probes()[0]) for p in params]
    for i, param in enumerate(params):
        for value in param.probes():
            point = [*first[:i], param.override(value), *first[i + 1:]]
            try:
                compose_checked([*overrides, *point])
            except ValueError as error:
                raise ValueError(f"--param {param.spec!r}: {param.override(value)} is not a valid config: {error}"
                                 ) from None
    return compose_checked([*overrides, *first])


def quiet_logging() -> None:
    """Optuna's per-trial INFO lines and alembic's migration notes below WARNING (l2l-tune prints its own)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def fail_crashed_trials(study: Any, study_dir: Path) -> list[int]:
    """Mark FAIL the RUNNING trials whose run dir is in ``study_dir``: their l2l-tune died (the caller holds the
    dir's lock). Returns their numbers. Trials of drivers with another ``--out`` on a shared storage stay."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run_dir = trial.user_attrs.get("run_dir")
        if run_dir is not None and Path(run_dir).parent == study_dir:
            study.tell(trial.number, state=TrialState.FAIL)
            failed.append(trial.number)
    return failed


@contextmanager
def study_lock(study_dir: Path, flag: str) -> Iterator[None]:
    """Hold ``study_dir`` for this process: a second l2l-tune of the same study and ``--out`` stops at start."""
    try:
        lock = RunDirLock(study_dir).__enter__()
    except RunDirInUseError:
        holder = (study_dir / ".lock").read_text().strip() or "another process"
        raise ValueError(f"{flag} is being run by {holder}: wait for it, or give this run another --study or --out"
                         ) from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def name_dashboard_run(cfg: DictConfig, study: str, number: int, sampled: list[str]) -> None:
    """Trial ``number``'s dashboard run (W&B, MLflow): named ``<study>-trial<number>``, grouped by the study,
    tagged ``study:<study>``, ``trial:<number>`` and its sampled overrides; what the user set is kept."""
    logger = cfg.logger
    logger.run_name = logger.run_name or f"{study}-trial{number}"
    logger.group = logger.group or study
    logger.tags = [*logger.tags, f"study:{study}", f"trial:{number}", *sampled]


def _format(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


@dataclass
class Tuner:
    """Runs the trials of one study: compose, run into ``<study_dir>/trial_<number>``, report the objective."""

    study: Any
    study_dir: Path
    overrides: list[str]
    params: list[Param]
    objective_name: str
    run: Runner

    def trial(self) -> bool:
        """Ask, run and tell one trial; True when it completed. A bad sampled config or a diverged run is a
        failed trial; other errors (and interrupts) fail the trial and propagate."""
        from optuna.trial import TrialState

        trial = self.study.ask()
        run_dir = self.study_dir / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        start = time.perf_counter()
        try:
            values = {p.key: p.suggest(trial) for p in self.params}
            overrides = [*self.overrides, *(p.override(values[p.key]) for p in self.params)]
            trial.set_user_attr("overrides", overrides)
            try:
                cfg = compose_config(overrides)
            except (HydraException, OmegaConfBaseException) as error:
                raise ValueError(composition_message(error, "l2l-train")) from None
            name_dashboard_run(cfg, self.study.study_name, trial.number, overrides[len(self.overrides):])
            (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
            OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
            OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
            name, _ = objective(cfg)
            if name != self.objective_name:
                raise ValueError(f"this trial's config scores {name}, the study optimizes {self.objective_name}")
            value = objective_value(self.run(cfg, run_dir), self.objective_name)
        except MissingObjectiveError as error:
            self._fail(trial, str(error))
            raise
        except (ValueError, FloatingPointError) as error:
            message = " ".join(str(error).split())
            self._fail(trial, message)
            print(f"trial {trial.number}: failed ({message}) | {_format(trial.params)}", flush=True)
            return False
        except BaseException as error:
            self._fail(trial, f"{type(error).__name__}: {error}")
            raise
        if not math.isfinite(value):
            self._fail(trial, f"{self.objective_name}={value}")
            print(f"trial {trial.number}: failed ({self.objective_name}={value}) | {_format(values)}", flush=True)
            return False
        self.study.tell(trial, value, state=TrialState.COMPLETE)
        print(f"trial {trial.number}: {self.objective_name} {value:.6g} | {_format(values)} | "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        return True

    def _fail(self, trial: Any, message: str) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr("error", message)
        self.study.tell(trial, state=TrialState.FAIL)


def best_record(study: Any, storage: str, objective_name: str) -> dict[str, Any]:
    """What ``<study>_best.json`` holds: the best COMPLETE trial's value, params, overrides and run dir."""
    from optuna.trial import TrialState

    best = study.best_trial
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {
        "study": study.study_name, "storage": storage, "objective": objective_name,
        "direction": study.direction.name.lower(), "best_trial": best.number, "best_value": best.value,
        "params": best.params, "overrides": best.user_attrs.get("overrides"), "run_dir": best.user_attrs.get("run_dir"),
        "complete_trials": states.count(TrialState.COMPLETE), "failed_trials": states.count(TrialState.FAIL),
    }


def parser() -> CommandParser:
    """The command line of ``l2l-tune``."""
    p = CommandParser(prog="l2l-tune", description=__doc__.split("\n\n")[0].replace("``", ""),
                                epilog="Example: l2l-tune experiment=smoke --param outer.lr=log:1e-4:1e-2 --trials 5")
    p.add_argument("--version", action="version", version=f"%(prog)s (l2l) {__version__}")
    p.add_argument("overrides", nargs="*", help="l2l-train overrides shared by every trial")
    p.add_argument("--param", action="append", default=[], metavar="KEY=KIND:...",
                   help="a searched entry: KEY=float:LOW:HIGH, log:LOW:HIGH, int:LOW:HIGH or choice:A,B,...")
    p.add_argument("--trials", type=int, default=20, help="COMPLETE trials the study should reach (default 20)")
    p.add_argument("--study", default=None, help="study name (default: the experiment's name)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///<out>/<study>.db)")
    p.add_argument("--out", default="tune", help="folder of the trials' run dirs and <study>_best.json "
                                                 "(default ./tune)")
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    p.add_argument("--max-failures", type=int, default=None,
                   help="stop after this many failed trials in one invocation (default: --trials)")
    p.add_argument("--plots", action="store_true",
                   help="also write <out>/<study>_history.png and <study>_importance.png (Optuna's figures)")
    return p


def tune(args: argparse.Namespace, run: Runner) -> int:
    """Create or resume the study and run it until ``args.trials`` trials are COMPLETE; returns the exit status."""
    import optuna
    from optuna.trial import TrialState

    params = parse_params(args.param, args.overrides)
    cfg = check_space(args.overrides, params)
    objective_name, direction = objective(cfg)
    name = args.study or cfg.name
    if not NAME.match(name):
        raise ValueError(f"--study {name!r} is not allowed: use letters, digits, '_', '-' and '.'")
    out = Path(args.out).resolve()
    study_dir = out / name
    storage_url = args.storage or f"sqlite:///{out / f'{name}.db'}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {str(out)!r}: cannot write there ({error.strerror or error})") from None
    quiet_logging()
    try:
        storage = optuna.storages.RDBStorage(storage_url)
    except Exception as error:  # SQLAlchemy's URL, driver and connection errors
        raise ValueError(f"--storage {storage_url!r} cannot be opened: {' '.join(str(error).split())[:300]}"
                         ) from None
    record = {"overrides": list(args.overrides), "params": [p.spec for p in params], "objective": objective_name}
    with study_lock(study_dir, f"--study {name} in --out {str(out)!r}"):
        study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
        known = study.get_trials(deepcopy=False)
        stored = study.user_attrs.get(ATTR)
        if stored is None and not known:
            stale = sorted(p.name for p in study_dir.glob("trial_*"))
            if stale:
                raise ValueError(f"--out {str(out)!r}: {study_dir} holds {len(stale)} trial dirs ({stale[0]}, ...) "
                                 f"that --storage {storage_url!r} does not know: remove them, or pick another --study")
            study.set_user_attr(ATTR, record)
        elif stored is not None and stored != record:
            differ = "; ".join(f"{k} {stored.get(k)} (stored), now {v}" for k, v in record.items()
                               if stored.get(k) != v)
            raise ValueError(f"--study {name} in {storage_url} was started with other settings: {differ}: rerun it "
                             "with the same overrides and --param, or pick another --study")
        if study.direction.name.lower() != direction:
            raise ValueError(f"--study {name} in {storage_url} is a {study.direction.name.lower()} study, "
                             f"{objective_name} needs {direction}: pick another --study")
        crashed = fail_crashed_trials(study, study_dir)
        # a sampler seeded from the history: a resumed study does not redraw the first trials' random points
        study.sampler = optuna.samplers.TPESampler(seed=args.seed + len(known))
        complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if known:
            print(f"l2l-tune: resuming study {name} ({storage_url}): {complete} complete trials"
                  + (f", marked FAIL the interrupted {crashed}" if crashed else ""), flush=True)
        else:
            print(f"l2l-tune: study {name} ({storage_url}): {direction} {objective_name} over "
                  f"{', '.join(p.spec for p in params) or 'no parameters'}", flush=True)
        tuner = Tuner(study, study_dir, list(args.overrides), params, objective_name, run)
        max_failures = args.max_failures if args.max_failures is not None else args.trials
        failures = 0
        while complete < args.trials and failures < max_failures:
            if tuner.trial():
                complete += 1
            else:
                failures += 1
    rows = write_trials_table(study, out / f"{name}_trials.csv", objective_name)
    print(f"l2l-tune: {len(rows)} trials of study {name}; the table is {out / f'{name}_trials.csv'}:\n"
          + "\n".join(table_lines(rows, objective_name)), flush=True)
    if args.plots:
        for path in write_study_plots(study, out, name):
            print(f"wrote {path}", flush=True)
    if complete == 0:
        print(f"l2l-tune: error: no trial of study {name} completed ({failures} failed in this run)", file=sys.stderr)
        return 1
    best = best_record(study, storage_url, objective_name)
    path = write_json(out / f"{name}_best.json", best)
    print(f"best: trial {best['best_trial']}: {objective_name} {best['best_value']:.6g} | {_format(best['params'])} | "
          f"{best['run_dir']}\nwrote {path}", flush=True)
    if complete < args.trials:
        print(f"l2l-tune: error: stopped after {failures} failed trials (--max-failures {max_failures}): "
              f"{complete} of {args.trials} trials complete; rerun to go on", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``l2l-tune``: 0 when the study reached ``--trials`` COMPLETE trials; 2 for usage errors."""
    keep_freed_memory()
    p = parser()
    args = p.parse_intermixed_args(argv)      # overrides before, between and after the options
    p.require_at_least("--trials", args.trials, 1)
    p.require_at_least("--max-failures", args.max_failures, 1)
    p.require_seed("--seed", args.seed)
    try:
        import optuna  # noqa: F401
    except ImportError:
        p.exit(2, "l2l-tune: error: l2l-tune needs optuna>=4: pip install 'l2l[sweep]'\n")
    from l2l.outer_loop.app.train import run

    try:
        return tune(args, run)
    except TrainingInterrupted as stop:
        print(f"l2l-tune: {stop}; rerun the same command to resume the study", file=sys.stderr)
        return 128 + stop.signal_number
    except KeyboardInterrupt:
        print("l2l-tune: interrupted; rerun the same command to resume the study", file=sys.stderr)
        return 130
    except (ValueError, RunDirInUseError, OSError) as error:
        print(f"l2l-tune: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
