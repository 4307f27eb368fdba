"""One writer per folder: an advisory lock file naming its holder.

The lock is an ``fcntl.flock`` on ``<folder>/.lock``: the kernel releases it when the holding
process dies (even by SIGKILL), so a lock left by a dead process is simply taken over. The file
holds the holder's pid, host and start time for the message a second writer gets.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from mattlib.errors import MattError

__all__ = ["FolderLocked", "folder_lock"]


class FolderLocked(MattError, RuntimeError):
    """Another live process holds the folder's lock; the message names it."""


@contextmanager
def folder_lock(folder: str | Path, *, what: str = "folder", wait: float = 0.0) -> Iterator[Path]:
    """Hold ``folder/.lock`` for the duration of the block.

    Parameters
    ----------
    folder : path
        Created if absent.
    what : str
        How the message names the folder ("run folder", "feature cache").
    wait : float, default 0
        Seconds to wait for the holder to finish before giving up.

    Raises
    ------
    FolderLocked
        When another process still holds the lock after ``wait`` seconds.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    handle = open(path, "a+")  # noqa: SIM115 - held open (and locked) across the yield
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise FolderLocked(
                        f"{what} {folder} is in use by {holder}; wait for it to finish (or stop it) and run again"
                    ) from None
                time.sleep(0.2)
        started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}")
        handle.flush()
        yield path
    finally:
        handle.close()  # closing releases the flock
