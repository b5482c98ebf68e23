"""The outer loop split over processes (gloo on the CPU) gives the single-process meta-parameters."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from l2l.outer_loop.algorithm.distributed import Ranks, from_environment, shard

WORKER = textwrap.dedent("""
    import os, sys, torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    import l2l.outer_loop.algorithm.distributed as distributed
    from l2l.outer_loop.algorithm.meta_train import train_meta
    from l2l.outer_loop.app.build import build_meta, build_task
    from l2l.outer_loop.app.records import loop_settings, outer_settings
    from l2l.outer_loop.app.compose import compose_config
    out, batch, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if os.environ.get("NO_GLOBAL_RATES") == "1":  # the negative control: rates regularized per rank only
        import l2l.outer_loop.algorithm.objective as objective
        objective.global_rates = lambda rates, ranks: rates
    ranks = distributed.from_environment()
    if ranks is not None:
        dist.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world)
    cfg = compose_config(["experiment=smoke", f"outer.batch_size={batch}", f"outer.iterations={iterations}",
                          "outer.progress=false", "outer.checkpoint_every=1000", "outer.log_every=1"])
    torch.manual_seed(cfg.seed)
    meta = build_meta(cfg, build_task(cfg.task))
    result = train_meta(meta, outer_settings(cfg), loop_settings(cfg), cfg.seed, out + "/run", ranks=ranks)
    if ranks is None or ranks.main:
        torch.save({"params": {k: v.detach().clone() for k, v in meta.state_dict().items()},
                    "history": result.history}, out + "/params.pt")
    if ranks is not None:
        dist.barrier()  # leave together, as the app does: a rank leaving gloo while rank 0 still saves can abort
        dist.destroy_process_group()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(tmp_path, name: str, world: int, batch: int = 16, iterations: int = 3, extra_env=None) -> dict:
    out = tmp_path / name
    out.mkdir()
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1", **(extra_env or {})}
        if world > 1:
            env.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        else:
            env.pop("WORLD_SIZE", None)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(out), str(batch), str(iterations)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    return torch.load(out / "params.pt", weights_only=True)


def _max_difference(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
def test_two_processes_train_the_single_process_model(tmp_path):
    """2 processes × 8 tasks = 1 process × 16 tasks, 3 iterations, same seed: float32 reduction order only."""
    single = _train(tmp_path, "single", 1)
    split = _train(tmp_path, "split", 2)
    difference = _max_difference(split["params"], single["params"])
    scale = max(float(v.abs().max()) for v in single["params"].values())
    assert difference <= 1e-5 * scale, (difference, scale)
    for a, b in zip(split["history"], single["history"], strict=True):  # the logged metrics are the global ones
        for key in ("loss", "reg_loss", "test_mse", "grad_norm"):  # grad_norm: of the averaged meta-gradient
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    # the negative control: regularizing each rank's own rates is another objective (Adam's first steps hide
    # it in the weights, so the check is on the regularization loss and the gradient norm)
    local = _train(tmp_path, "local_rates", 2, extra_env={"NO_GLOBAL_RATES": "1"})
    def largest_change(key: str) -> float:
        return max(abs(a[key] / b[key] - 1) for a, b in zip(local["history"], single["history"], strict=True))

    assert largest_change("reg_loss") > 5e-4  # measured: 2.8e-3 (equal to 6e-8 with the global rates)
    assert largest_change("grad_norm") > 1e-3  # measured: 6.4e-3 (equal with the global rates)


def test_shard_splits_the_batch_or_says_why():
    assert shard(16, None) == slice(0, 16)
    assert [shard(16, Ranks(r, 2)) for r in range(2)] == [slice(0, 8), slice(8, 16)]
    with pytest.raises(ValueError, match=r"outer.batch_size=10 is not allowed with 3 processes"):
        shard(10, Ranks(0, 3))


def test_from_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert from_environment() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert from_environment() == Ranks(1, 2)
    assert not Ranks(1, 2).main and Ranks(0, 2).main


def _torchrun(run_dir, *overrides: str, nproc: int = 2) -> subprocess.CompletedProcess:
    l2l_train = os.path.join(os.path.dirname(sys.executable), "l2l-train")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update({"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"})
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                           f"--master_port={_free_port()}", l2l_train, "experiment=smoke", "outer.progress=false",
                           "outer.threads=1", "eval.tasks=4", f"hydra.run.dir={run_dir}", *overrides],
                          env=env, capture_output=True, text=True, timeout=300)


def _trained_iterations(run_dir) -> list[int]:
    """The iterations of metrics.jsonl's training records (the evaluation adds one without a loss)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["iteration"] for r in records if "loss" in r]


@pytest.mark.slow
def test_l2l_train_under_torchrun_writes_once_and_resumes(tmp_path):
    """torchrun × 2: rank 0 writes metrics, checkpoint, evaluation and summary; a resume continues the curve."""
    run_dir = tmp_path / "run"
    out = _torchrun(run_dir, "outer.batch_size=8", "outer.iterations=4")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["eval"] is not None
    assert _trained_iterations(run_dir) == [0, 2, 3]  # log_every 2, and the last
    out = _torchrun(run_dir, "outer.batch_size=8", "outer.iterations=6", f"outer.resume={run_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert _trained_iterations(run_dir) == [0, 2, 3, 4, 5]
    # a batch that does not split evenly stops before any work, naming the field
    out = _torchrun(tmp_path / "bad", "outer.batch_size=5", "outer.iterations=2")
    assert out.returncode != 0 and "outer.batch_size=5 is not allowed with 2 processes" in out.stderr


@pytest.mark.slow
def test_torchrun_without_a_run_dir_makes_one(tmp_path):
    """Every worker names the default run dir by the launcher's start: one dir, not one per rank."""
    l2l_train = os.path.join(os.path.dirname(sys.executable), "l2l-train")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update({"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"})
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={_free_port()}", l2l_train, "experiment=smoke", "outer.progress=false",
                          "outer.threads=1", "eval.enabled=false", "outer.batch_size=4", "outer.iterations=2",
                          "name=stamp"], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "stamp").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").is_file(), runs


@pytest.mark.slow
def test_hydra_submitit_launcher_with_two_tasks_runs_one_distributed_job(tmp_path):
    """hydra/launcher=submitit_local with tasks_per_node=2: the job's two tasks form one group (submitit's
    variables exported for torch.distributed), as on SLURM with hydra/launcher=slurm."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    l2l_train = os.path.join(os.path.dirname(sys.executable), "l2l-train")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update({"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"})
    sweep = tmp_path / "sweep"
    out = subprocess.run([l2l_train, "-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
                          "hydra.launcher.timeout_min=10", "experiment=smoke", "outer.batch_size=8",
                          "outer.iterations=2", "outer.threads=1", "outer.progress=false", "eval.tasks=4",
                          f"hydra.sweep.dir={sweep}"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((sweep / "0" / "summary.json").read_text())["processes"] == 2
