"""The one checkpoint reader and the one atomic writer of l2l (meta-training, direct training, shipped models).

Writing: the state goes to a uniquely named temporary file in the target's folder, is flushed and fsynced,
then renamed over the target (``os.replace`` is atomic on POSIX and Windows) and the folder entry synced,
so the target always holds the last complete checkpoint, and two writers never share a temporary file.

Reading: ``torch.load(..., weights_only=True)`` always. l2l checkpoints hold only tensors and plain
containers (dicts, lists, numbers, strings: state dicts, RNG states, the resolved config, the logged
history), which torch's default allow-list covers, so no extra type is allowed and a file that needs one
(for example a pickle that would run code) is refused with an error naming the file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import torch

REQUIRED_KEYS = ("meta", "optimizer", "iteration", "config")
"""What a meta-training checkpoint (``checkpoints/last.pt``) holds at least."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message names the file and what is wrong with it."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """There is no checkpoint where one was asked for."""


class DiskWriteError(OSError):
    """Writing a file failed (a full disk, a quota, a read-only or vanished folder): the message names the file."""


def disk_write_error(path: str | Path, error: OSError) -> DiskWriteError:
    """``error`` (raised while writing ``path``) as a DiskWriteError naming the file; the errno is kept."""
    return DiskWriteError(error.errno, f"could not write {str(path)!r}: {error.strerror or error}")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain containers) to ``path`` atomically; returns the path."""
    return write_atomically(path, lambda f: torch.save(state, f))


def write_atomically(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = True) -> Path:
    """``write(file)`` into a new file beside ``path``, fsynced, then renamed over ``path`` and the folder
    synced: a reader (or a kill) sees the old file or the new one, never a part. Returns the path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise disk_write_error(path, error) from error
    try:
        with os.fdopen(handle, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException as error:
        Path(partial).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, DiskWriteError):
            raise disk_write_error(path, error) from error
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a power loss (where the platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or for a run dir its ``checkpoints/last.pt`` (or ``last.pt``); MissingCheckpointError
    if there is none."""
    path = Path(path).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.pt", path / "last.pt"):
            if candidate.is_file():
                return candidate
        raise MissingCheckpointError(f"checkpoint {str(path)!r} does not exist: the folder holds no "
                                     "checkpoints/last.pt (give last.pt or its run dir)")
    if not path.is_file():
        raise MissingCheckpointError(f"checkpoint {str(path)!r} does not exist: give last.pt or its run dir")
    return path


def load_failure(error: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in a few words: the Python object it would have
    had to build (never built: that could run code), else the first sentence of torch's message."""
    text = " ".join(str(error).split())
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsafe:
        return (f"loading it would call {unsafe.group(1)}; a weights-only load builds nothing but tensors and plain "
                "containers")
    operand = re.search(r"WeightsUnpickler error: (Unsupported operand \S+)", text)
    if operand:
        return f"neither a torch zip file nor a pickle of tensors: {operand.group(1)}"
    if len(text) < 24:      # "101", "" : torch's terse errors of random bytes and empty files
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    sentence = re.split(r"(?<=[.:;])\s", text, maxsplit=1)[0]
    return sentence if len(sentence) <= 200 else sentence[:200].rsplit(" ", 1)[0] + " ..."


def read_checkpoint(path: str | Path, required: Sequence[str] = (), kind: str = "an l2l checkpoint") -> dict[str, Any]:
    """The dict stored in the file ``path`` (on the CPU, ``weights_only=True``), holding at least ``required``.

    CheckpointError naming the file for an unreadable, corrupted or foreign file ("is not ``kind``").
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, random bytes, a pickle of something else
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted or not a torch checkpoint: it could not be "
                              f"read ({load_failure(error)})") from None
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if not isinstance(state, dict) or missing:
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is not {kind}: it lacks {missing} (found {found})")
    return state


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A meta-training checkpoint (``last.pt`` or a run dir containing ``checkpoints/last.pt``), on the CPU."""
    return read_checkpoint(checkpoint_file(path), REQUIRED_KEYS, "an l2l meta-training checkpoint")
