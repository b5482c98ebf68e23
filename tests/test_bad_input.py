"""Bad input to every command ends in one line naming the key (or file), the value and what is allowed, a
non-zero exit and no traceback. The growing table of issue 29 (each row failed, or was silently accepted,
before its fix)."""

from __future__ import annotations

import pytest
from test_reliability import TINY_DIRECT, TINY_META, l2l_train, run_hydra_command

TRAIN_CASES = [
    # (mode, override, the line's start after "l2l-train: error: ")
    ("meta", "error_module.tau_filter=0", "error_module.tau_filter=0.0 is not allowed: it must be a finite number > 0"),
    ("meta", "error_module.code_peak_hz=1e30", "error_module.code_peak_hz=1e+30 is not allowed with dt=1.0 ms"),
    ("meta", "error_module.code_range=[-inf,inf]", "error_module.code_range[0]=-inf is not allowed: it must be a"),
    ("meta", "error_module.code_range=[1,0]", "error_module.code_range=[1.0, 0.0] is not allowed: low must be < high"),
    ("meta", "network.readout_init_scale=nan", "network.readout_init_scale=nan is not allowed: it must be a finite"),
    ("meta", "seed=99999999999999999999", "seed=99999999999999999999 is not allowed: a seed must be an integer"),
    ("meta", "eval.seed=-1", "eval.seed=-1 is not allowed: a seed must be an integer in [0, 2**63)"),
    ("meta", "outer.grad_clip=inf", "outer.grad_clip=inf is not allowed"),
    ("direct", "rule.rate_weight=nan", "rule.rate_weight=nan is not allowed: it must be a finite number"),
    ("direct", "rule.rate_target_hz=-10", "rule.rate_target_hz=-10.0 is not allowed: it must be a finite number"),
    ("direct", "train.curriculum.threshold=nan", "train.curriculum.threshold=nan is not allowed: it must be a finite"),
    ("direct", "rule=eprop_online rule.chunk=0", "rule.chunk=0 is not allowed: it must be an integer >= 1"),
    ("direct", "rule=eprop_random rule.feedback_seed=-2", "rule.feedback_seed=-2 is not allowed: a seed must be"),
    ("direct", "rule=tbptt network=lif network.layers=2", "network.layers=2 is not allowed with rule=tbptt"),
    ("direct", "rule.name=bptt", "rule.feedback='symmetric' is not an l2l-train key"),
    ("direct", "seed=18446744073709551616", "seed=18446744073709551616 is not allowed: a seed must be an integer"),
]


@pytest.mark.parametrize("mode, override, line", TRAIN_CASES, ids=[f"{m}:{o}" for m, o, _ in TRAIN_CASES])
def test_l2l_train_refuses_in_one_line(mode, override, line, tmp_path):
    base = TINY_META if mode == "meta" else TINY_DIRECT
    code, err = l2l_train([*base, *override.split()], tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"l2l-train: error: {line}"), err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_l2l_demo_refuses_an_unknown_key(tmp_path):
    from outer_loop.reports.demo import main

    code, err = run_hydra_command(main, ["l2l-demo", "+colour=red", f"hydra.run.dir={tmp_path}"])
    assert code == 2 and err.strip() == ("l2l-demo: error: colour='red' is not an l2l-demo key: the keys are "
                                         "['checkpoint', 'tasks', 'seed', 'baselines', 'gif', 'gif_task', 'threads', "
                                         "'device']"), err


def test_l2l_bench_meta_refuses_an_unknown_key(capsys):
    from outer_loop.bench.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["meta", "+foo=1", "--iterations", "1"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "foo=1 is not an l2l-train key" in err and "Traceback" not in err, err


RUN_DIR_CASES = [
    ("hydra.run.dir=", "hydra.run.dir='' is not allowed: give the run a folder"),
    ("hydra.run.dir={file}", "is not allowed: it is a file, not a folder"),
    ("hydra.run.dir={file}/sub", "is not a folder this user can write into"),
    ("name=" + "x" * 5000, "one of its names is 5000 bytes, more than the 255 a file system allows"),
]


@pytest.mark.parametrize("override, message", RUN_DIR_CASES, ids=["empty", "a file", "under a file", "5000 chars"])
def test_an_impossible_run_dir_stops_in_one_line_before_hydra_creates_it(override, message, tmp_path, monkeypatch):
    from outer_loop.app import train

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    override = override.format(file=tmp_path / "afile")
    code, err = run_hydra_command(train.main, ["l2l-train", *TINY_META, override])
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]      # nothing written, not even into cwd
