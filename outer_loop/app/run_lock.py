"""One run per run dir: a second ``l2l-train`` into a dir that a live run holds stops at start.

The lock is an ``fcntl.flock`` on ``<run dir>/.lock`` (it dies with its process, ``kill -9`` included, so a
crashed run never leaves a stale lock); the file records the holder's pid and host for the message.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; runs are not guarded
    fcntl = None


class RunDirInUseError(RuntimeError):
    """Another live process is writing into this run dir."""


class RunDirLock:
    """``with RunDirLock(run_dir): ...`` holds the run dir for this process."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._file = None

    def __enter__(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise RunDirInUseError(f"run dir {str(self.path.parent)!r} is in use by {holder}: wait for it, or give "
                                   "this run its own hydra.run.dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._file is not None:
            self._file.close()    # closing releases the flock
            self._file = None
