"""The C++ kernels of l2l (``l2l/csrc``), compiled on first use with the machine's compiler and cached.

``spiking_ops()`` returns ``torch.ops.l2l_spiking`` (the fused LIF/ALIF trial, :mod:`l2l.spiking_trial`) or
None when they cannot be had: ``L2L_NATIVE=0`` in the environment, no C++ compiler or ninja, or a failed
build. Then the PyTorch loop of the same trial is used, and the reason is printed once. ``random_ops()``
returns ``torch.ops.l2l_random`` (Bernoulli draws bit-identical to ``torch.rand(...) < p`` from the same
generator, :func:`l2l.tasks.encoders.poisson_spikes`), built into the same library, or None (then torch.rand);
``filter_ops()`` the exponential filter of :mod:`l2l.filters` step by step (or None: the blocked products).
The first build takes about 15 s; later processes load the cached library (``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

SOURCE = Path(__file__).parent / "csrc" / "spiking_trial.cpp"
RANDOM_SOURCE = Path(__file__).parent / "csrc" / "bernoulli.cpp"
FILTER_SOURCE = Path(__file__).parent / "csrc" / "exp_filter.cpp"
# this machine's instruction sets; no contraction into FMAs, so each operation rounds as PyTorch's do
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"]
_state: dict[str, Any] = {}


def spiking_ops() -> Any | None:
    """The compiled fused-trial operators, or None (the reason is printed once to stderr)."""
    if "ops" not in _state:
        _state["ops"] = _load()
    return _state["ops"]


def sources() -> list[Path]:
    """The C++ files built into the one library."""
    return [SOURCE, RANDOM_SOURCE, FILTER_SOURCE]


def filter_ops() -> Any | None:
    """The compiled exponential filter (``torch.ops.l2l_filter``), or None when the library is not built."""
    return None if spiking_ops() is None else torch.ops.l2l_filter


def random_ops() -> Any | None:
    """The compiled Bernoulli kernel, or None: the library is not built (see :func:`spiking_ops`), or its draws
    differ from torch.rand's on this torch (checked once per process; the reason is printed once)."""
    if "random" not in _state:
        ops = spiking_ops()
        _state["random"] = ops if ops is None else checked_random_ops(torch.ops.l2l_random)
    return _state["random"]


def checked_random_ops(ops: Any) -> Any | None:
    """``ops`` if its ``bernoulli_below_`` draws ``torch.rand(...) < p`` exactly (float32 and float64, across several
    regenerations of the generator's state) and leaves the generator where torch.rand does, else None."""
    for dtype in (torch.float32, torch.float64):
        ours, theirs = torch.Generator().manual_seed(20261205), torch.Generator().manual_seed(20261205)
        torch.rand(1001, generator=ours)
        torch.rand(1001, generator=theirs)
        p = torch.linspace(0.0, 1.0, 2500, dtype=dtype)
        expected = (torch.rand(p.shape, generator=theirs, dtype=dtype) < p).to(dtype)
        drawn = ops.bernoulli_below_(torch.empty_like(p), p, ours)
        if not (torch.equal(drawn, expected) and torch.equal(ours.get_state(), theirs.get_state())):
            print(f"l2l: the C++ Bernoulli kernel does not reproduce torch.rand on torch {torch.__version__} "
                  f"({dtype}); using torch.rand", file=sys.stderr)
            return None
    return ops


def native_status() -> str:
    """One line: whether the C++ kernels are in use, and why not."""
    ops = spiking_ops()
    return "C++ kernels: in use" if ops is not None else f"C++ kernels: not in use ({_state.get('reason')})"


def _load() -> Any | None:
    if os.environ.get("L2L_NATIVE", "1") == "0":
        _state["reason"] = "L2L_NATIVE=0"
        return None
    try:
        from torch.utils import cpp_extension

        for source in sources():
            if not source.exists():
                raise FileNotFoundError(f"{source} is missing")
        compiler = os.environ.get("CXX", "c++")
        if shutil.which(compiler) is None:
            raise FileNotFoundError(f"no C++ compiler: {compiler!r} is not on PATH (set CXX to one)")
        if shutil.which("ninja") is None:
            raise FileNotFoundError("no ninja on PATH (pip install ninja, or apt install ninja-build)")
        name = f"l2l_spiking_{_source_tag()}"
        _announce_build(cpp_extension, name)
        with _build_lock(cpp_extension, name):
            cpp_extension.load(name=name, sources=[str(source) for source in sources()], extra_cflags=FLAGS,
                               extra_ldflags=["-fopenmp"],
                               is_python_module=False,
                               verbose=False)
        return torch.ops.l2l_spiking
    except Exception as error:  # no compiler, no ninja, a failed build: the PyTorch loop does the same work
        lines = str(error).splitlines()
        detail = next((line.strip() for line in lines if "error:" in line), lines[0] if lines else "")
        reason = f"{type(error).__name__}: {detail}"[:240]
        _state["reason"] = reason
        print(f"l2l: the C++ trial kernel is not available ({reason}); using the PyTorch loop", file=sys.stderr)
        return None


@contextmanager
def _build_lock(cpp_extension: Any, name: str) -> Iterator[None]:
    """Hold an ``fcntl.flock`` on the build folder while torch loads (or builds) the kernel.

    torch's own build lock is a file (``lock``) that a process killed inside ``load`` (``kill -9`` in the
    first seconds of a run) leaves behind, after which every later process waits for it forever. The flock
    dies with its process; whoever holds it is the only l2l process inside ``load`` for this build, so a
    ``lock`` file found then is such a leftover and is removed (with one line on stderr)."""
    try:
        import fcntl

        build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
    except Exception:  # no fcntl (Windows) or no such torch helper: torch's lock alone
        yield
        return
    build_dir.mkdir(parents=True, exist_ok=True)
    with (build_dir / ".l2l_load.flock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        stale = build_dir / "lock"
        if stale.exists():
            stale.unlink(missing_ok=True)
            print(f"l2l: removed {stale}, left by a process killed while it loaded the C++ kernel", file=sys.stderr)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _announce_build(cpp_extension: Any, name: str) -> None:
    """Say on stderr that a build is about to happen (once per machine and source), if it is."""
    try:
        build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
    except Exception:  # a private helper of torch: without it, build silently
        return
    if not any(build_dir.glob("*.so")):
        print(f"l2l: building the C++ trial kernel once (about 15 s) in {build_dir}", file=sys.stderr)


def _source_tag() -> str:
    """A short hash of the source, of this CPU's instruction sets (the build uses ``-march=native``) and of the
    torch it builds against (version and install location), so that an edited kernel is rebuilt, a cache shared
    by different machines never hands one another's build, and two environments (checkouts, virtual
    environments, torch versions) keep a build each: the build's command names its torch's include and library
    folders, so sharing one entry made each environment rebuild it after the other had used it."""
    import hashlib
    import platform

    cpu = platform.machine()
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        cpu += flags
    except (OSError, StopIteration):
        pass
    build_torch = f"{torch.__version__} {Path(torch.__file__).resolve().parent}"
    return hashlib.sha1(b"".join(source.read_bytes() for source in sources()) + " ".join(FLAGS).encode() + cpu.encode()
                        + build_torch.encode()).hexdigest()[:10]
