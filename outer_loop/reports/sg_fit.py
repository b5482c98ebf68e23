"""Can the synthetic gradient learn? Fit it to a frozen network's true border gradients and watch its R².

    python -m l2l.outer_loop.reports.sg_fit RUN_DIR [--stage S] [--trials 400] [--every 25] \\
        [--sg-hidden 0,64] [--sg-lambda 0,1] [--sg-lr 1e-4,1e-3,1e-2] [--out DIR]

RUN_DIR (or a checkpoint) is a direct run of a truncated rule (``eprop3``, ``tbptt_sg``): its network is loaded and
never changes. For every combination of the grids, a fresh learned SG (``sg_time`` on when it has hidden units)
trains online exactly as in training (one Adam step per trial on its λ-mixed targets, batches of the run's
``train.batch_size`` from the curriculum stage ``--stage``, default the run's last), and every ``--every`` trials it
is scored on a fixed probe batch of ``--probe`` tasks of the same stage: the cosine and R² of its predictions against
the true border gradients (``l2l.synthetic_gradient.gradient_quality``). With the network frozen the targets stop
moving, so this separates "the SG cannot represent or learn the gradient" from "it cannot follow a network that
learns". Writes ``<out>/sg_fit.json`` (every series) and ``<out>/sg_fit.png`` (R² against trials, one line per
combination), and prints the final scores.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from l2l.command_line import CommandParser
from l2l.outer_loop.checkpoint import CheckpointError, read_checkpoint
from l2l.rules import make_rule
from l2l.rules import truncated_bptt as tb
from l2l.synthetic_gradient import gradient_quality

TRUNCATED_WITH_SG = ("eprop3", "tbptt_sg")


def load_run(path: Path) -> tuple[Any, Any, Any]:
    """(config, network with the checkpoint's weights, curriculum or None) of a direct run dir or checkpoint."""
    from l2l.outer_loop.app.build import build_network, build_task
    from l2l.outer_loop.app.train import build_curriculum

    checkpoint = path / "checkpoints" / "last.pt" if path.is_dir() else path
    state = read_checkpoint(checkpoint)
    if "network" not in state or "config" not in state:
        raise CheckpointError(f"{checkpoint}: not a direct training checkpoint (no network or config)")
    cfg = OmegaConf.create(state["config"])
    if cfg.rule.name not in TRUNCATED_WITH_SG:
        raise ValueError(f"{checkpoint}: rule {cfg.rule.name!r} has no synthetic gradient (one of "
                         f"{list(TRUNCATED_WITH_SG)})")
    curriculum = build_curriculum(cfg)
    family = curriculum.largest if curriculum is not None else build_task(cfg.task)
    network = build_network(cfg.network, family).double()
    network.load_state_dict({k: v.double() for k, v in state["network"].items()})
    for p in network.parameters():
        p.requires_grad_(True)
    if curriculum is not None and state.get("curriculum"):
        curriculum.stage = int(state["curriculum"]["stage"])
    return cfg, network, curriculum if curriculum is not None else family


def fit(cfg: Any, network: Any, source: Any, hidden: int, lam: float, lr: float, trials: int, every: int,
        probe_size: int, seed: int) -> list[dict[str, float]]:
    """One SG trained online on the frozen network; its quality on the probe batch every ``every`` trials."""
    window = int(cfg.rule.window)
    rule = make_rule(cfg.rule.name, window=window, sg_hidden=hidden, sg_time=hidden > 0, sg_lambda=lam, sg_lr=lr,
                     sg_seed=seed)
    family = source.family if hasattr(source, "family") else source

    def batch(size: int, generator: torch.Generator) -> Any:
        episode = source.sample(size, generator)
        episode.inputs = episode.inputs.double()
        return episode

    probe = batch(probe_size, torch.Generator().manual_seed(seed + 1))
    probe_loss = lambda y: family.loss(y, probe).mean      # noqa: E731
    generator = torch.Generator().manual_seed(seed)
    series = []
    for trial in range(trials + 1):
        episode = batch(int(cfg.train.batch_size), generator)
        rule.gradients(network, episode.inputs, lambda y, e=episode: family.loss(y, e).mean)   # the SG's step
        if trial % every == 0 or trial == trials:
            rule.predictor.begin_trial(probe.inputs.shape[1], window)
            result = tb.truncated_pass(network, probe.inputs, probe_loss, network.parameter_dict(), window,
                                       rule.predictor, None, False)
            truths = tb.border_adjoints(network, probe.inputs, probe_loss, window)
            series.append({"trial": trial, **gradient_quality(result.predictions, truths)})
    return series


def markdown(record: dict[str, Any]) -> str:
    """One row per grid point: the SG, λ, its learning rate, cosine and R² after the last trial, the best R²."""
    lines = [f"| SG | λ | sg_lr | cosine after {record['trials']} trials | R² after {record['trials']} trials | "
             "best R² |", "|---|---|---|---|---|---|"]
    for label, series in record["series"].items():
        hidden, lam, lr = label.split("_")
        units = int(hidden[1:])
        kind = "linear" if units == 0 else f"{units} tanh units + time"
        last = series[-1]
        lines.append(f"| {kind} | {lam[len('lambda'):]} | {lr[len('lr'):]} | {last['cosine']:.3f} | {last['r2']:.3f} | "
                     f"{max(s['r2'] for s in series):.3f} |")
    return "\n".join(lines)


def figure(results: dict[str, list[dict[str, float]]]) -> Any:
    """R² against trials, one line per grid point; R² = 0 dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, (label, series) in enumerate(results.items()):
        ax.plot([s["trial"] for s in series], [s["r2"] for s in series], lw=1.1, color=f"C{k % 10}", label=label,
                ls="-" if "h0_" not in label else ":")
    ax.axhline(0.0, color="gray", ls="--", lw=0.8)
    ax.set(xlabel="trials the SG trained (network frozen)", ylabel="R² on the probe batch", ylim=(-1.0, 1.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return fig


def _grid(parser: CommandParser, flag: str, text: str, cast: type) -> list[Any]:
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"{flag}={text!r} is not allowed: give comma-separated numbers")
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        parser.error(f"{flag}={text!r} is not allowed: give comma-separated finite numbers >= 0")
    return values


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints one line per grid point; writes sg_fit.json and sg_fit.png."""
    parser = CommandParser(prog="python -m l2l.outer_loop.reports.sg_fit", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a direct run dir (eprop3 or tbptt_sg) or its checkpoint")
    parser.add_argument("--stage", type=int, default=None, help="curriculum stage of the batches (default: the run's)")
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--probe", type=int, default=64, help="tasks in the fixed probe batch")
    parser.add_argument("--sg-hidden", default="0,64")
    parser.add_argument("--sg-lambda", default="0,1")
    parser.add_argument("--sg-lr", default="1e-4,1e-3,1e-2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="folder of sg_fit.json and sg_fit.png (default: the run dir)")
    args = parser.parse_args(argv)
    for flag, value in (("--trials", args.trials), ("--every", args.every), ("--probe", args.probe),
                        ("--threads", args.threads)):
        parser.require_at_least(flag, value, 1)
    parser.require_seed("--seed", args.seed)
    hidden = [int(h) for h in _grid(parser, "--sg-hidden", args.sg_hidden, float)]
    lambdas = _grid(parser, "--sg-lambda", args.sg_lambda, float)
    if any(lam > 1 for lam in lambdas):
        parser.error(f"--sg-lambda={args.sg_lambda!r} is not allowed: each λ must be in [0, 1]")
    rates = _grid(parser, "--sg-lr", args.sg_lr, float)
    if any(r == 0 for r in rates):
        parser.error(f"--sg-lr={args.sg_lr!r} is not allowed: each rate must be > 0")
    torch.set_num_threads(args.threads)
    path = Path(args.run)
    try:
        cfg, network, source = load_run(path)
    except (CheckpointError, ValueError) as error:
        parser.exit(2, f"sg_fit: error: {error}\n")
    if args.stage is not None:
        if not hasattr(source, "stages") or not 0 <= args.stage < len(source.stages):
            parser.error(f"--stage={args.stage} is not allowed: the run has "
                         f"{len(getattr(source, 'stages', []))} curriculum stages")
        source.stage = args.stage
    results, started = {}, time.perf_counter()
    for h, lam, lr in itertools.product(hidden, lambdas, rates):
        label = f"h{h}_lambda{lam:g}_lr{lr:g}"
        results[label] = fit(cfg, network, source, h, lam, lr, args.trials, args.every, args.probe, args.seed)
        last = results[label][-1]
        best = max(s["r2"] for s in results[label])
        print(f"{label}: after {args.trials} trials cosine {last['cosine']:.3f}, R² {last['r2']:.3f} "
              f"(best R² {best:.3f})", flush=True)
    out = Path(args.out) if args.out else (path if path.is_dir() else path.parent)
    out.mkdir(parents=True, exist_ok=True)
    stage = getattr(source, "stage", None)
    record = {"run": str(path), "rule": cfg.rule.name, "window": int(cfg.rule.window), "stage": stage,
              "stage_params": source.stages[stage] if stage is not None else None, "trials": args.trials,
              "probe": args.probe, "seed": args.seed, "seconds": round(time.perf_counter() - started, 1),
              "series": results}
    (out / "sg_fit.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    figure(results).savefig(out / "sg_fit.png", dpi=110)
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
