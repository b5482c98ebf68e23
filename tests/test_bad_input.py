"""The bad-input table: every command, given an impossible value, an unknown key or a damaged file, stops with a
non-zero exit and one line naming the key (or file), the value and what is allowed, without a traceback.

Each row is ``(command, arguments, a fragment of that line)``. ``l2l-train meta`` and ``l2l-train direct`` prepend
a tiny config (``TINY_META``, ``TINY_DIRECT``) so a row that were accepted would finish in seconds; ``{name}``
in the arguments is a file of the ``files`` fixture (a finished tiny run, damaged copies of its checkpoint,
foreign files). ``python tests/test_bad_input.py`` prints the table as docs/reliability.md shows it.
"""

from __future__ import annotations

import contextlib
import io
import math
import shlex
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_reliability import TINY_DIRECT, TINY_META, l2l_train, run_hydra_command  # noqa: E402

BIG = "99999999999999999999"          # > 2**64: an integer no seed or size can be

TRAIN_META = [
    # outer loop
    ("outer.iterations=0", "outer.iterations=0 is not allowed"),
    ("outer.iterations=-5", "outer.iterations=-5 is not allowed"),
    ("outer.iterations=1.5", "outer.iterations"),
    ("outer.iterations=" + BIG, f"outer.iterations={BIG} is not allowed"),
    ("outer.batch_size=0", "outer.batch_size=0 is not allowed"),
    ("outer.batch_size=10000000", "outer.batch_size=10000000, task.n_steps=30"),
    ("outer.lr=inf", "outer.lr=inf is not allowed: it must be a finite number > 0"),
    ("outer.lr=nan", "outer.lr=nan is not allowed"),
    ("outer.lr=-1", "outer.lr=-1.0 is not allowed"),
    ("outer.lr=fast", "outer.lr"),
    ("outer.optimizer=rmsprop", "outer.optimizer='rmsprop' is not allowed: choose one of ['adam', 'sgd']"),
    ("outer.threads=-2", "outer.threads=-2 is not allowed: it must be an integer >= 0"),
    ("outer.checkpoint_every=0", "outer.checkpoint_every=0 is not allowed"),
    ("outer.keep_checkpoints=sometimes", "outer.keep_checkpoints=sometimes is not allowed: it must be true or false"),
    ("outer.log_every=0", "outer.log_every=0 is not allowed"),
    ("outer.figure_every=-1", "outer.figure_every=-1 is not allowed"),
    ("outer.grad_clip=-1", "outer.grad_clip=-1.0 is not allowed"),
    ("outer.grad_clip=inf", "outer.grad_clip=inf is not allowed"),
    ("outer.divergence_factor=0.5", "outer.divergence_factor=0.5 is not allowed: it must be 0 (off) or"),
    ("outer.memory_budget_gib=-1", "outer.memory_budget_gib=-1.0 is not allowed"),
    ("outer.memory_budget_gib=0.0000001", "more than outer.memory_budget_gib=1e-07"),
    ("outer.resume=/nonexistent/last.pt", "checkpoint '/nonexistent/last.pt' does not exist"),
    ("outer.resume=sometimes", "outer.resume"),
    ("outer.progress=maybe", "outer.progress"),
    # inner loop
    ("inner.lr=0", "inner.lr=0.0 is not allowed"),
    ("inner.lr=nan", "inner.lr=nan is not allowed"),
    ("inner.lr_mode=per_neuron", "inner.lr_mode='per_neuron' is not allowed"),
    ("inner.backend=magic", "inner.backend='magic' is not allowed: choose one of ['eprop1_random', "
                            "'eprop1_symmetric', 'explicit', 'higher', 'maml']"),
    ("inner.optimizer=adam", "inner.optimizer='adam' needs inner.backend=higher"),
    ("inner.n_demos=0", "inner.n_demos=0 is not allowed"),
    ("inner.n_demos=100000", "inner.n_demos=100000"),
    ("inner.adapt_weights=[w_out]", "inner.adapt_weights=['w_out'] is not allowed"),
    # learner
    ("network.n_hidden=0", "network.n_hidden=0 is not allowed: it must be an integer >= 1"),
    ("network.n_hidden=100000", "network.n_hidden=100000, network.layers=1, error_module.n_hidden=6, inner.n_demos=1: "
                                "one iteration needs about"),
    ("network.layers=0", "network.layers=0 is not allowed"),
    ("network.layers=100000", "network.layers=100000"),
    ("network.tau_m=0", "network.tau_m=0.0 is not allowed: it must be a finite number > 0"),
    ("network.tau_m=inf", "network.tau_m=inf is not allowed"),
    ("network.v_th=-1", "network.v_th=-1.0 is not allowed"),
    ("network.dt=0", "network.dt=0.0 is not allowed"),
    ("network.n_ref=-1", "network.n_ref=-1 is not allowed: it must be an integer >= 0"),
    ("network.gamma=0", "network.gamma=0.0 is not allowed"),
    ("network.surrogate=box", "network.surrogate='box' is not allowed: choose one of"),
    ("network.psi_refractory=half", "network.psi_refractory='half' is not allowed: choose one of ['keep', 'zero']"),
    ("network.cell=spiky", "network.cell='spiky' is not allowed: choose one of"),
    ("network.readout_init_scale=nan", "network.readout_init_scale=nan is not allowed: it must be a finite"),
    # error module
    ("error_module.n_hidden=0", "error_module.n_hidden=0 is not allowed"),
    ("error_module.code_sigma=0", "error_module.code_sigma=0.0 is not allowed"),
    ("error_module.code_neurons=0", "error_module.code_neurons=0 is not allowed"),
    ("error_module.code_peak_hz=-5", "error_module.code_peak_hz=-5.0 is not allowed"),
    ("error_module.code_peak_hz=1e30", "error_module.code_peak_hz=1e+30 is not allowed with dt=1.0 ms"),
    ("error_module.code_range=[-inf,inf]", "error_module.code_range[0]=-inf is not allowed: it must be a"),
    ("error_module.code_range=[1,0]", "error_module.code_range=[1.0, 0.0] is not allowed: low must be < high"),
    ("error_module.signal_layers=some", "error_module.signal_layers='some' is not allowed: choose one of"),
    ("error_module.tau_m=-1", "error_module.tau_m=-1.0 is not allowed"),
    ("error_module.tau_filter=0", "error_module.tau_filter=0.0 is not allowed: it must be a finite number > 0"),
    # task
    ("task.n_steps=0", "task.n_steps=0 is not allowed"),
    ("task.n_steps=100000000", "task.n_steps=100000000"),
    ("task.n_sines=0", "task.n_sines=0 is not allowed"),
    ("task.name=juggling", "task.name='juggling' is not allowed"),
    # held-out evaluation
    ("eval.bptt_lrs=[]", "eval.bptt_lrs=[] is not allowed: give a non-empty list"),
    ("eval.eprop1_lrs=[-1.0]", "eval.eprop1_lrs=[-1.0] is not allowed"),
    ("eval.eprop1_lrs=[nan]", "eval.eprop1_lrs=[nan] is not allowed"),
    ("eval.tasks=0", "eval.tasks=0 is not allowed"),
    ("eval.enabled=true eval.tasks=100000000", "eval.tasks=100000000"),
    ("eval.figure_tasks=-1", "eval.figure_tasks=-1 is not allowed: it must be an integer >= 0"),
    ("eval.seed=-1", "eval.seed=-1 is not allowed: a seed must be an integer in [0, 2**63)"),
    ("eval.seed=" + BIG, f"eval.seed={BIG} is not allowed: a seed must be an integer"),
    # the run
    ("seed=" + BIG, f"seed={BIG} is not allowed: a seed must be an integer"),
    ("seed=18446744073709551616", "seed=18446744073709551616 is not allowed: a seed must be an integer"),
    ("seed=-3", "seed=-3 is not allowed: a seed must be"),
    ("seed=abc", "seed"),
    ("mode=both", "mode='both' is not allowed: choose one of ['direct', 'meta']"),
    ("device=tpu", "device='tpu' is not allowed"),
    ("logger=dashboard", "logger"),
    ("+logger.backends.dashboard=true", "logger.backends='dashboard' is not allowed: choose one of ['csv', 'mlflow', "
                                        "'tensorboard', 'wandb']"),
    ("logger.init_timeout=0", "logger.init_timeout=0.0 is not allowed: it must be a finite number > 0"),
    ("+foo=1", "foo=1 is not an l2l-train key"),
    ("+outer.batchsize=3", "outer.batchsize=3 (did you mean outer.batch_size?) is not an l2l-train key"),
    ("outer.batchsize=3", "outer.batchsize"),
    ("network=spiky", "network"),
    ("experiment=nope", "experiment"),
    ("rule=magic", "rule"),
    ("overwrite=perhaps", "overwrite"),
    # sweeps: every value of every swept key is composed before the first job
    ("-m outer.lr=0.1,abc", "outer.lr=abc is not allowed: it must be a number"),
    ("-m network=lif,spiky", "network='spiky' is not allowed: choose one of ['alif', 'lif', 'lstm', 'rnn']"),
    ("-m outer.iterations=1,2.5", "outer.iterations=2.5 is not allowed: it must be an integer"),
    # run dirs
    ("hydra.run.dir=", "hydra.run.dir='' is not allowed: give the run a folder"),
    ("hydra.run.dir={file}", "is not allowed: it is a file, not a folder"),
    ("hydra.run.dir={file}/sub", "is not a folder this user can write into"),
    ("name=" + "x" * 5000, "one of its names is 5000 bytes, more than the 255 a file system allows"),
    # damaged or foreign checkpoints to resume from
    ("outer.iterations=4 outer.resume={empty}", "is corrupted or not a torch checkpoint"),
    ("outer.iterations=4 outer.resume={garbage}", "is corrupted or not a torch checkpoint"),
    ("outer.iterations=4 outer.resume={truncated}", "is corrupted or not a torch checkpoint"),
    ("outer.iterations=4 outer.resume={foreign}", "is not a meta-mode checkpoint (outer.resume): it lacks"),
    ("outer.iterations=4 outer.resume={pickled}", "is corrupted or not a torch checkpoint"),
    ("outer.iterations=4 outer.resume={tensor}", "is not a meta-mode checkpoint (outer.resume): it lacks"),
    ("outer.iterations=4 outer.resume={nan}", "non-finite values in ['meta.learner.layers.0.w_rec']"),
    ("outer.iterations=4 outer.resume={wrong_shape}", "meta.learner.layers.0.w_rec"),
    ("outer.iterations=4 outer.resume={emptydir}", "emptydir"),
    ("outer.iterations=4 outer.resume={direct_run}", "direct"),
    ("outer.iterations=1 outer.resume={meta_run}", "outer.iterations=1 is below the checkpoint's iteration 2"),
]

TRAIN_DIRECT = [
    ("train.iterations=0", "train.iterations=0 is not allowed"),
    ("train.batch_size=0", "train.batch_size=0 is not allowed"),
    ("train.batch_size=100000000", "train.batch_size=100000000"),
    ("train.lr=-1", "train.lr=-1.0 is not allowed: it must be a finite number > 0"),
    ("train.optimizer=rmsprop", "train.optimizer='rmsprop' is not allowed"),
    ("train.threads=-1", "train.threads=-1 is not allowed"),
    ("train.log_every=0", "train.log_every=0 is not allowed"),
    ("train.eval_batch_size=0", "train.eval_batch_size=0 is not allowed"),
    ("train.eval_batch_size=100000000", "train.eval_batch_size=100000000"),
    ("train.divergence_factor=-3", "train.divergence_factor=-3.0 is not allowed"),
    ("train.checkpoint_every=0", "train.checkpoint_every=0 is not allowed"),
    ("train.curriculum.threshold=nan", "train.curriculum.threshold=nan is not allowed: it must be a finite"),
    ("train.resume=/nonexistent/last.pt", "/nonexistent/last.pt"),
    ("rule.name=magic", "rule.name='magic' is not allowed"),
    ("rule.name=bptt", "rule.feedback='symmetric' is not an l2l-train key"),
    ("rule.feedback=mirror", "rule.feedback='mirror' is not allowed"),
    ("rule.rate_weight=-1", "rule.rate_weight=-1.0 is not allowed"),
    ("rule.rate_weight=nan", "rule.rate_weight=nan is not allowed: it must be a finite number"),
    ("rule.rate_target_hz=-10", "rule.rate_target_hz=-10.0 is not allowed: it must be a finite number"),
    ("rule=eprop_online rule.chunk=0", "rule.chunk=0 is not allowed: it must be an integer >= 1"),
    ("rule=eprop_random rule.feedback_seed=-2", "rule.feedback_seed=-2 is not allowed: a seed must be"),
    ("rule=tbptt network=lif network.layers=2", "network.layers=2 is not allowed with rule=tbptt"),
    ("rule=tbptt rule.window=0", "rule.window=0 is not allowed"),
    ("rule=morder rule.order=-1", "rule.order=-1 is not allowed"),
    ("rule=bptt network.layers=10000000", "network.layers=10000000"),
    ("network.layers=2", "network.layers=2 is not allowed with rule=eprop"),
    ("'+network.options={{colour: 1}}'", "network.options={'colour': 1} is not allowed for a lif cell"),
    ("task.n_inputs=0", "task.n_inputs=0 is not allowed"),
    ("seed=18446744073709551616", "seed=18446744073709551616 is not allowed: a seed must be an integer"),
    ("train.iteratons=5", "train.iteratons"),
    ("train.iterations=abc", "train.iterations"),
    ("train.resume={meta_run}", "meta"),
]

DEMO = [
    ("+colour=red", "colour='red' is not an l2l-demo key: the keys are"),
    ("tasks=0", "tasks=0 is not allowed"),
    ("tasks=-2", "tasks=-2 is not allowed"),
    ("tasks=abc", "tasks"),
    ("tasks=100000000", "tasks=100000000"),
    ("seed=-1", "seed=-1 is not allowed"),
    ("seed=" + BIG, f"seed={BIG} is not allowed"),
    ("gif_task=4", "gif_task=4 is not allowed: it must be in [0, tasks=4)"),
    ("gif_task=-1", "gif_task=-1 is not allowed"),
    ("threads=-1", "threads=-1 is not allowed"),
    ("device=tpu", "device='tpu' is not allowed"),
    ("baselines=maybe", "baselines"),
    ("checkpoint=nothing_here", "checkpoint 'nothing_here': no such file, and not a shipped model"),
    ("target=nothing_here", "target='nothing_here' is not allowed: no such file, and not an example target (circle"),
    ("target=circle target_kind=xy", "target_kind='xy' is not allowed: it must be one of ['endpoint', 'joint_vel"),
    ("target=circle target_scale=100", "the arm reaches 0.000 to 1.000 m (scale it with target_scale=...)"),
    ("target=circle target_scale=0", "target_scale=0.0 is not allowed: it must be a finite number > 0"),
    ("checkpoint={empty}", "is corrupted or not a torch checkpoint"),
    ("checkpoint={garbage}", "is corrupted or not a torch checkpoint"),
    ("checkpoint={truncated}", "is corrupted or not a torch checkpoint"),
    ("checkpoint={foreign}", "is not an l2l e-prop 2 model"),
    ("checkpoint={pickled}", "is corrupted or not a torch checkpoint"),
    ("checkpoint={nan}", "w_rec"),
    ("checkpoint={wrong_shape}", "w_rec"),
    ("checkpoint={emptydir}", "emptydir"),
    ("checkpoint={direct_run}", "direct"),
    ("checkpoint={yaml}", "is corrupted or not a torch checkpoint"),
    ("hydra.run.dir=", "hydra.run.dir='' is not allowed"),
]

EVAL = [
    ("{meta_run} --tasks 0", "--tasks=0 is not allowed"),
    ("{meta_run} --tasks -3", "--tasks=-3 is not allowed"),
    ("{meta_run} --tasks abc", "--tasks"),
    ("{meta_run} --tasks 100000000", "--tasks=100000000"),
    ("{meta_run} --seed -1", "--seed=-1 is not allowed"),
    ("{meta_run} --seed " + BIG, f"--seed={BIG} is not allowed"),
    ("{meta_run} --threads -1", "--threads=-1"),
    ("{meta_run} --out /proc/x", "--out '/proc/x': cannot write there"),
    ("{meta_run} --out {file}", "--out"),
    ("{meta_run} --colour red", "--colour"),
    ("/nonexistent/run", "'/nonexistent/run': no such file"),
    ("{empty}", "is corrupted or not a torch checkpoint"),
    ("{garbage}", "is corrupted or not a torch checkpoint"),
    ("{truncated}", "is corrupted or not a torch checkpoint"),
    ("{foreign}", "is not an l2l e-prop 2 model"),
    ("{pickled}", "is corrupted or not a torch checkpoint"),
    ("{tensor}", "is not an l2l e-prop 2 model"),
    ("{nan}", "w_rec"),
    ("{wrong_shape}", "w_rec"),
    ("{bad_config}", "does not match the model its config describes: wrong shapes"),
    ("{emptydir}", "emptydir"),
    ("{direct_run}", "direct"),
    ("{yaml}", "is corrupted or not a torch checkpoint"),
]

VERIFY = [
    ("--checks nonsense", "--checks"),
    ("--cells spiky", "--cells"),
    ("--checks eprop2_reference_fixture --cells alif", "runs nothing"),
    ("--checks eprop2_reference_fixture --cells lif --reference-fixture /nonexistent.npz", "no such file"),
    ("--checks eprop2_reference_fixture --cells lif --reference-fixture {garbage}", "--reference-fixture"),
    ("--checks eprop2_reference_fixture --cells lif --reference-fixture {empty}", "--reference-fixture"),
    ("--checks eprop2_reference_fixture --cells lif --reference-fixture {npz_foreign}", "--reference-fixture"),
    ("--checks eprop2_reference_fixture --cells lif --reference-fixture {npz_wrong_shape}", "--reference-fixture"),
    ("--checks eprop2_reference_fixture --cells lif --reference-fixture {emptydir}", "--reference-fixture"),
    ("--colour red", "--colour"),
]

BENCH = [
    ("meta --iterations 0", "--iterations=0 is not allowed"),
    ("meta --iterations -1", "--iterations=-1 is not allowed"),
    ("meta --threads -1", "--threads=-1 is not allowed"),
    ("meta --experiment nope", "--experiment='nope' is not allowed"),
    ("meta --experiment pattern_eprop", "is a mode='direct' experiment"),
    ("meta +foo=1 --iterations 1", "foo=1 is not an l2l-train key"),
    ("meta outer.lr=nan --iterations 1", "outer.lr=nan is not allowed"),
    ("meta outer.batch_size=0 --iterations 1", "outer.batch_size=0 is not allowed"),
    ("meta outer.batch_size=100000000 --iterations 1", "outer.batch_size=100000000"),
    ("meta network=spiky --iterations 1", "network"),
    ("--sections nothing", "--sections='nothing' is not allowed"),
    ("--sections ,", "--sections"),
    ("--repeats 0", "--repeats=0 is not allowed"),
    ("--steps 0", "--steps=0 is not allowed"),
    ("--steps 100000000", "--steps=100000000"),
    ("--hidden 100000000", "--hidden=100000000"),
    ("--long-steps 0", "--long-steps=0 is not allowed"),
    ("--device tpu", "--device='tpu' is not allowed"),
    ("--threads -1", "--threads=-1"),
    ("--colour red", "--colour"),
    ("alignment --steps 0", "--steps=0 is not allowed"),
    ("alignment --depths 0", "--depths=[0] is not allowed"),
    ("alignment --seeds -1", "--seeds"),
    ("alignment --hidden 100000000", "--hidden=100000000"),
    ("alignment --colour red", "--colour"),
]

TUNE = [
    ("experiment=smoke --trials 0", "--trials=0 is not allowed"),
    ("experiment=smoke --max-failures 0", "--max-failures=0 is not allowed"),
    ("experiment=smoke --param outer.lr", "--param 'outer.lr'"),
    ("experiment=smoke --param outer.lr=gauss:0:1", "kind 'gauss' is not allowed"),
    ("experiment=smoke --param outer.lr=log:0:1", "--param 'outer.lr=log:0:1'"),
    ("experiment=smoke --param outer.lr=float:1:0", "--param 'outer.lr=float:1:0'"),
    ("experiment=smoke --param outer.lr=float:a:1", "'a' is not a number"),
    ("experiment=smoke --param outer.lr=float:0:inf", "the bounds must be finite"),
    ("experiment=smoke --param outer.batch_size=int:0:4", "outer.batch_size=0 is not allowed"),
    ("experiment=smoke --param network.cell=choice:", "--param 'network.cell=choice:'"),
    ("experiment=smoke --param network.cell=choice:lif,spiky", "network.cell='spiky' is not allowed"),
    ("experiment=smoke --param outer.lrr=log:1e-4:1e-2", "outer.lrr"),
    ("experiment=smoke --param outer.lr=log:1e-4:1e-2 --param outer.lr=log:1e-3:1e-2", "outer.lr"),
    ("experiment=smoke outer.lr=nan", "outer.lr=nan is not allowed"),
    ("experiment=smoke +foo=1", "foo=1 is not an l2l-train key"),
    ("experiment=nope", "experiment"),
    ("experiment=smoke --study 'bad name'", "--study 'bad name' is not allowed"),
    ("experiment=smoke --storage nosuchdb://x", "--storage 'nosuchdb://x' cannot be opened"),
    ("experiment=smoke --seed -1", "--seed=-1 is not allowed"),
    ("experiment=smoke --out {file}", "--out"),
    ("experiment=smoke seed=" + BIG, f"seed={BIG} is not allowed"),
    ("experiment=smoke --colour red", "--colour"),
]

CASES = ([("l2l-train meta", a, m) for a, m in TRAIN_META] + [("l2l-train direct", a, m) for a, m in TRAIN_DIRECT]
         + [("l2l-demo", a, m) for a, m in DEMO] + [("l2l-eval", a, m) for a, m in EVAL]
         + [("l2l-verify", a, m) for a, m in VERIFY] + [("l2l-bench", a, m) for a, m in BENCH]
         + [("l2l-tune", a, m) for a, m in TUNE])


# ---- the files the rows name ------------------------------------------------------------------------------------


def make_files(root: Path) -> dict[str, Path]:
    """A finished tiny meta run (2 iterations) and direct run, and damaged or foreign files beside them."""
    assert l2l_train([*TINY_META, "outer.iterations=2"], root / "meta_run")[0] == 0
    assert l2l_train(TINY_DIRECT, root / "direct_run")[0] == 0
    last = root / "meta_run" / "checkpoints" / "last.pt"
    files = {"meta_run": root / "meta_run", "direct_run": root / "direct_run", "emptydir": root / "emptydir",
             "file": root / "afile"}
    files["emptydir"].mkdir()
    files["file"].write_text("")

    def write(name: str, data: bytes) -> None:
        files[name] = root / f"{name}.pt"
        files[name].write_bytes(data)

    write("empty", b"")
    write("garbage", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    write("truncated", last.read_bytes()[: last.stat().st_size // 2])
    files["yaml"] = root / "config.yaml"
    files["yaml"].write_text("network:\n  n_hidden: 8\n")
    for name, obj in (("foreign", {"weights": torch.zeros(3)}), ("tensor", torch.zeros(3)),
                      ("pickled", {"meta": Fraction(1, 3), "config": {}})):
        files[name] = root / f"{name}.pt"
        torch.save(obj, files[name])
    state = torch.load(last, weights_only=True)
    for name, change in (("nan", lambda s: s["meta"]["learner.layers.0.w_rec"].fill_(float("nan"))),
                         ("wrong_shape", lambda s: s["meta"].update({"learner.layers.0.w_rec": torch.zeros(3, 3)})),
                         ("bad_config", lambda s: s["config"]["network"].update(n_hidden=9))):
        copy = torch.load(last, weights_only=True)
        change(copy)
        files[name] = root / f"{name}.pt"
        torch.save(copy, files[name])
    del state
    files["npz_foreign"] = root / "foreign.npz"
    np.savez(files["npz_foreign"], a=np.zeros(3))
    files["npz_wrong_shape"] = root / "wrong_shape.npz"
    fixture = Path(__file__).parent / "data"
    dumps = sorted(fixture.glob("*.npz"))
    if dumps:
        with np.load(dumps[0], allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        first = next(k for k, v in arrays.items() if v.ndim == 2)
        arrays[first] = arrays[first][:-1]
        np.savez(files["npz_wrong_shape"], **arrays)
    else:
        np.savez(files["npz_wrong_shape"], meta=np.zeros(1))
    return files


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return make_files(tmp_path_factory.mktemp("bad_input_files"))


# ---- running one row --------------------------------------------------------------------------------------------


def run_argparse_command(main, argv: list[str]) -> tuple[int, str]:
    """An argparse command's ``main(argv)`` in this process: (exit code, stderr)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    return int(code or 0), err.getvalue()


def run_row(command: str, args: str, files: dict[str, Path], tmp: Path) -> tuple[int, str]:
    """One row of the table in this process: (exit code, stderr)."""
    argv = shlex.split(args.format(**{k: str(v) for k, v in files.items()}))
    program, _, mode = command.partition(" ")
    flags = [a for a in argv if a in ("-m", "--multirun")]          # Hydra's flags go before the overrides
    argv = [*flags, *(a for a in argv if a not in flags)]
    own_dir = any(a.startswith(("hydra.run.dir=", "name=")) for a in argv)    # rows about the run dir itself
    run_dir = [] if own_dir else [f"hydra.run.dir={tmp / 'run'}"]
    if program == "l2l-train":
        from l2l.outer_loop.app import train

        base = TINY_META if mode == "meta" else TINY_DIRECT
        return run_hydra_command(train.cli, ["l2l-train", *flags, *base, *argv[len(flags):], *run_dir])
    if program == "l2l-demo":
        from l2l.outer_loop.reports import demo

        return run_hydra_command(demo.cli, ["l2l-demo", *argv, *run_dir])
    if program == "l2l-eval":
        from l2l.outer_loop.reports.eval_cli import main
    elif program == "l2l-verify":
        from l2l.outer_loop.app.verify_cli import main
    elif program == "l2l-bench":
        from l2l.outer_loop.bench.cli import main
    else:
        from l2l.outer_loop.app.tune import main

        argv = [*argv, "--out", str(tmp / "tune")] if "--out" not in argv else argv
    return run_argparse_command(main, argv)


@pytest.mark.parametrize("command, args, message", CASES, ids=[f"{c}:{a[:60]}" for c, a, _ in CASES])
def test_bad_input_stops_in_one_line(command, args, message, files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_row(command, args, files, tmp_path)
    assert code != 0 and "Traceback" not in err and err.strip().count("\n") == 0, (code, err)
    assert message in err, err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def shown_args(args: str) -> str:
    """A row's arguments as the docs show them (placeholders kept, long values cut)."""
    args = args.replace("{{", "{").replace("}}", "}")
    return args if len(args) < 70 else args[:60] + "…"


def run_table() -> list[tuple[str, str, str, int, str]]:
    """Every row run in a fresh temporary folder: (command, arguments, fragment, exit code, stderr). A row that
    raises or runs over 60 s gives exit code -1 and the exception."""
    import signal
    import tempfile
    import traceback

    from hydra.core.global_hydra import GlobalHydra

    def too_long(*_):
        raise TimeoutError("the row ran over 60 s")

    results = []
    with tempfile.TemporaryDirectory() as root:
        made = make_files(Path(root))
        for k, (command, args, message) in enumerate(CASES):
            tmp = Path(root) / f"case{k}"
            tmp.mkdir()
            signal.signal(signal.SIGALRM, too_long)
            signal.alarm(60)
            try:
                code, err = run_row(command, args, made, tmp)
            except BaseException as error:  # noqa: BLE001 - the table reports it
                code, err = -1, "".join(traceback.format_exception(error))[-600:]
            finally:
                signal.alarm(0)
                GlobalHydra.instance().clear()
            for name, path in sorted(made.items(), key=lambda item: -len(str(item[1]))):
                err = err.replace(str(path), "{" + name + "}")
            results.append((command, args, message, code, err.replace(str(tmp), "{tmp}")))
    return results


def markdown_table(results: list[tuple[str, str, str, int, str]]) -> str:
    """The table as docs/reliability.md shows it: each row's exit code and the line it printed."""
    counts = Counter(c.split()[0] for c, _, _, _, _ in results)
    lines = [f"{len(results)} rows: " + ", ".join(f"{c} {n}" for c, n in counts.items()) + ".", "",
             "| command | arguments | exit | the line it printed |", "|---|---|---|---|"]
    for command, args, _, code, err in results:
        line = " ".join(err.split()).replace("|", "\\|")
        lines.append(f"| {command} | `{shown_args(args)}` | {code} | {line} |")
    return "\n".join(lines)


def test_the_docs_show_every_row():
    docs = (Path(__file__).parents[1] / "docs" / "reliability.md").read_text(encoding="utf-8")
    shown = [tuple(cell.strip().strip("`") for cell in line.split(" | ")[:2])
             for line in docs.splitlines() if line.startswith("| l2l-")]
    assert [(f"| {c}", shown_args(a)) for c, a, _ in CASES] == shown, "rerun python tests/test_bad_input.py"


if __name__ == "__main__":
    table = run_table()
    failing = [r for r in table if not (r[3] > 0 and "Traceback" not in r[4] and r[4].strip().count("\n") == 0
                                        and r[2] in r[4])]
    for command, args, message, code, err in failing:
        print(f"--- {command} {args!r} (exit {code})\n    want: {message}\n    got: {err.strip()[-700:]}",
              file=sys.stderr)
    print(markdown_table(table))


def test_a_full_disk_names_the_file_and_the_last_good_checkpoint(tmp_path, monkeypatch):
    import errno

    saves = []
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 3:                       # the checkpoint of iteration 3: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    code, err = l2l_train([*TINY_META, "outer.iterations=5", "outer.checkpoint_every=1"], run)
    last = run / "checkpoints" / "last.pt"
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"could not write '{last}': No space left on device; the last good checkpoint is '{last}' " \
           "(iteration 2): free space and rerun with outer.resume=auto" in err, err
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(last, weights_only=True)["iteration"] == 2
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt"]          # no partial file left
    code, err = l2l_train([*TINY_META, "outer.iterations=5", "outer.checkpoint_every=1", "outer.resume=auto"], run)
    assert code == 0, err


@pytest.mark.parametrize("experiment", ["smoke", "pattern_eprop", "copy_repeat_eprop3"])
def test_every_number_of_the_config_is_checked(experiment):
    """Every instance of the kinds, not a list: each float key of the composed config refuses nan and inf, each
    integer key a 65-bit value, naming the key (one check over the whole config, before any work)."""
    from omegaconf import OmegaConf

    from l2l.outer_loop.app.checks import check_config
    from l2l.outer_loop.app.compose import compose_config

    cfg = compose_config([f"experiment={experiment}"])
    plain = OmegaConf.to_container(cfg, resolve=True)

    def leaves(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                yield from leaves(value, path + ".")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                yield path, value

    found = list(leaves(plain))
    assert sum(isinstance(v, float) for _, v in found) >= 20 and sum(isinstance(v, int) for _, v in found) >= 20
    for key, value in found:
        for bad in ((math.nan, math.inf) if isinstance(value, float) else (2**64,)):
            changed = OmegaConf.to_container(cfg, resolve=True)
            node = changed
            *parents, last = key.split(".")
            for part in parents:
                node = node[part]
            node[last] = bad
            with pytest.raises(ValueError) as error:
                check_config(OmegaConf.create(changed))
            assert str(error.value).startswith(f"{key}="), (key, str(error.value))


def test_l2l_demo_animates_a_model_with_fewer_steps_than_frames(files, tmp_path):
    """A model trained on 30-step movements: the GIF has 30 frames (the default 50 failed before)."""
    from PIL import Image

    from l2l.outer_loop.reports import demo

    code, err = run_hydra_command(demo.cli, ["l2l-demo", f"checkpoint={files['meta_run']}", "tasks=1",
                                             "baselines=false", f"hydra.run.dir={tmp_path}"])
    assert code == 0, err
    with Image.open(tmp_path / "arm.gif") as gif:
        assert gif.n_frames == 30
