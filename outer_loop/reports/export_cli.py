"""``l2l-export``: a meta-trained learner as a NIR graph, for neuromorphic hardware and other SNN libraries.

    l2l-export arm_one_shot --format nir --out arm.nir                      # the learned initial weights
    l2l-export arm_one_shot --format nir --out circle.nir --adapted-to circle   # after one e-prop update
    l2l-export outputs/my_run --format nir --out my.nir --json

MODEL is a shipped name, a run dir or a checkpoint: of e-prop 2 meta-training (the learner is exported), or of
direct training (``mode=direct``, e.g. ``experiment=pattern_eprop``: the trained network; ``--adapted-to`` needs an
e-prop 2 model). The graph (input, recurrent LIF layers, leaky readout; :mod:`l2l.nir_export`) is written with
``nir.write`` and read back with ``nir.read``. Then both are simulated on the model's input of ``--tasks`` held-out
tasks (or the target): l2l in float64, and the read-back graph by an independent NIR simulator
(:mod:`l2l.nir_simulation`) as NIR defines the neuron (forward-Euler and exact integration), and with l2l's neuron
from the graph's metadata (a control that must agree exactly). Printed (``--json``: as JSON): the fraction of
identical spike bins, of l2l's spikes reproduced, the spike counts, the output's relative RMS error and the task's
metric of each output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2l import __version__
from l2l.command_line import CommandParser
from l2l.outer_loop.checkpoint import CheckpointError
from l2l.outer_loop.reports.pretrained import load_pretrained

FORMATS = ("nir",)
VARIANTS = (("nir_euler", "euler", False), ("nir_exact", "exact", False), ("l2l_neuron", "euler", True))
"""(name, discretization, l2l_neuron): the NIR simulations compared with l2l."""
COINCIDENCE_STEPS = 2
"""An l2l spike counts as reproduced 'within k steps' when the same neuron spikes in the NIR run at most k steps
away."""


def within(spikes: np.ndarray, steps: int) -> np.ndarray:
    """1 where the neuron spikes within ``steps`` time steps (dim 1) of that bin; spikes (B, T, n)."""
    padded = np.pad(spikes, ((0, 0), (steps, steps), (0, 0)))
    length = spikes.shape[1]
    return np.max([padded[:, k:k + length] for k in range(2 * steps + 1)], axis=0)


def load_direct(model: str) -> tuple[Any, Any, dict[str, Any]]:
    """(network, task family, info) of a direct-training run dir or checkpoint; CheckpointError otherwise."""
    from l2l.outer_loop.app.build import build_network, build_task
    from l2l.outer_loop.app.config import saved_config
    from l2l.outer_loop.app.train import build_curriculum
    from l2l.outer_loop.checkpoint import read_checkpoint
    from l2l.outer_loop.reports.pretrained import resolve

    path = resolve(model)
    state = read_checkpoint(path, ("network", "config"), "an l2l model (e-prop 2 or direct training)")
    try:
        cfg = saved_config(state["config"])
        curriculum = build_curriculum(cfg)
        family = curriculum.largest if curriculum is not None else build_task(cfg.task)
        network = build_network(cfg.network, family)
        network.load_state_dict(state["network"])
    except Exception as error:
        raise CheckpointError(f"checkpoint {str(path)!r}: its config and weights do not build a network "
                              f"({error})") from None
    in_run_dir = path.name == "last.pt" and path.parent.name == "checkpoints"
    return network.eval(), family, {"name": path.parent.parent.name if in_run_dir else path.stem}


def adapted_weights(meta: Any, target: str, seed: int) -> tuple[dict[str, torch.Tensor], Any, dict[str, float]]:
    """The learner's weights after one update on the movement ``target`` (each the parameter's shape), its
    episode (B = 1) and the before/after metric."""
    from l2l.outer_loop.algorithm.evaluation import one_shot_step
    from l2l.tasks.arm_target import movement_episode, read_movement

    episode, _ = movement_episode(read_movement(target), meta.family)
    step = one_shot_step(meta, episode, meta.encode(episode, torch.Generator().manual_seed(seed)))
    own = dict(meta.learner.named_parameters())
    weights = {name: value.detach()[0] if value.dim() == own[name].dim() + 1 else value.detach()
               for name, value in step.adaptation.params.items() if name in own}
    scores = {"demo_mse": float(step.per_task["demo_mse"][0]), "test_mse": float(step.per_task["test_mse"][0])}
    return weights, episode, scores


def agreement(network: Any, graph: Any, episode: Any, family: Any) -> dict[str, Any]:
    """l2l's trial of ``network`` (float64) against the NIR simulations of ``graph`` on ``episode.inputs``."""
    from l2l.nir_simulation import simulate_nir

    network = network.double()
    with torch.no_grad():
        trial = network.run(episode.inputs.double())
    spikes = [layer.z.numpy() for layer in trial.layers]
    output = trial.output.numpy()
    metric = family.metric

    def score(y: np.ndarray) -> float:
        loss = family.loss(torch.from_numpy(y), episode)
        return float(loss.metrics.get(metric, loss.per_task).mean()) if metric else float(loss.per_task.mean())

    result: dict[str, Any] = {"l2l": {"spikes": int(sum(s.sum() for s in spikes)), metric: score(output)}}
    for name, discretization, l2l_neuron in VARIANTS:
        run = simulate_nir(graph, episode.inputs.double().numpy(), discretization, l2l_neuron)
        theirs = [run.spikes[f"layers.{l}.lif"] for l in range(len(spikes))]
        same = sum(float((a == b).sum()) for a, b in zip(spikes, theirs, strict=True))
        bins = sum(a.size for a in spikes)
        both = sum(float((a * b).sum()) for a, b in zip(spikes, theirs, strict=True))
        near = sum(float((a * within(b, COINCIDENCE_STEPS)).sum()) for a, b in zip(spikes, theirs, strict=True))
        result[name] = {
            "identical_spike_bins": same / bins,
            "l2l_spikes_reproduced": both / max(1.0, sum(float(a.sum()) for a in spikes)),
            f"l2l_spikes_within_{COINCIDENCE_STEPS}_steps": near / max(1.0, sum(float(a.sum()) for a in spikes)),
            "spikes": int(sum(s.sum() for s in theirs)),
            "output_relative_rms_error": float(np.sqrt(((run.output - output) ** 2).mean() / (output ** 2).mean())),
            metric: score(run.output),
        }
    return result


def report_lines(result: dict[str, Any]) -> list[str]:
    """The agreement for the terminal."""
    metric = result["metric"]
    lines = [f"l2l-export: {result['model']} -> {result['out']} ({result['format']}, "
             f"{'adapted to ' + result['adapted_to'] if result['adapted_to'] else 'initial weights'})",
             f"  agreement on {result['tasks']} held-out trial(s): l2l (float64) "
             f"{result['agreement']['l2l']['spikes']} spikes, {metric} {result['agreement']['l2l'][metric]:.4f}"]
    for name, _, _ in VARIANTS:
        row = result["agreement"][name]
        near = row[f"l2l_spikes_within_{COINCIDENCE_STEPS}_steps"]
        lines.append(f"  {name:10s}: identical spike bins {row['identical_spike_bins']:.4f}, l2l's spikes "
                     f"reproduced {row['l2l_spikes_reproduced']:.3f} (within {COINCIDENCE_STEPS} steps {near:.3f}), "
                     f"{row['spikes']} spikes, output rel. RMS error {row['output_relative_rms_error']:.3g}, "
                     f"{metric} {row[metric]:.4f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``l2l-export``."""
    parser = CommandParser(prog="l2l-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s (l2l) {__version__}")
    parser.add_argument("model", help="a shipped model's name, a run dir or a checkpoint file")
    parser.add_argument("--format", default="nir", help=f"export format: {', '.join(FORMATS)} (default nir)")
    parser.add_argument("--out", required=True, help="the file to write (e.g. model.nir)")
    parser.add_argument("--adapted-to", default=None, metavar="TARGET",
                        help="export the weights after one e-prop update on this movement (an example target's "
                             "name or a CSV/NPY file, as l2l-demo target=)")
    parser.add_argument("--tasks", type=int, default=4, help="held-out tasks for the agreement check (default 4)")
    parser.add_argument("--seed", type=int, default=7, help="seed of those tasks and of the target's coding")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.format not in FORMATS:
        parser.error(f"--format={args.format!r} is not allowed: it must be one of {list(FORMATS)}")
    parser.require_at_least("--tasks", args.tasks, 1)
    parser.require_seed("--seed", args.seed)
    out = Path(args.out)
    if out.is_dir():
        parser.error(f"--out={args.out!r} is not allowed: it is a directory; give a file name (e.g. model.nir)")
    try:
        from l2l.nir_export import network_to_nir, require_nir

        nir = require_nir()
    except ImportError as error:
        parser.exit(2, f"l2l-export: error: {error}\n")
    try:
        meta, _, info = load_pretrained(args.model)
        learner, family = meta.learner, meta.family
    except CheckpointError as error:
        try:                                  # not an e-prop 2 model: a directly trained network?
            meta, (learner, family, info) = None, load_direct(args.model)
        except CheckpointError:
            parser.exit(2, f"l2l-export: error: {error}\n")
    scores = None
    try:
        if args.adapted_to is not None:
            if meta is None:
                raise ValueError(f"--adapted-to={args.adapted_to!r} is not allowed with {args.model!r}: a directly "
                                 "trained network has no one-shot update (give an e-prop 2 model)")
            weights, episode, scores = adapted_weights(meta, args.adapted_to, args.seed)
        else:
            weights, episode = None, family.sample(args.tasks, torch.Generator().manual_seed(args.seed))
        graph = network_to_nir(learner, weights, metadata={"model": info["name"], "l2l_version": __version__,
                                                             "adapted_to": args.adapted_to or ""})
    except ValueError as error:
        parser.error(str(error))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    nir.write(partial, graph)
    partial.replace(out)
    if weights is not None:
        with torch.no_grad():
            for name, value in learner.named_parameters():
                value.copy_(weights.get(name, value))
    result = {"model": info["name"], "format": args.format, "out": str(out), "adapted_to": args.adapted_to,
              "one_shot": scores, "tasks": episode.batch_size, "metric": family.metric,
              "agreement": agreement(learner, nir.read(out), episode, family)}
    print(json.dumps(result, indent=2) if args.json else "\n".join(report_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
