"""The papermill processes of a run, so that an interrupt stops them and everything below them.

Each process starts in a session of its own and dies with its parent (:func:`mattlib.processes.die_with_parent`);
:data:`_PROCESSES` knows the running ones, and :func:`_terminate_tree` ends a process with its
descendants (its kernel included).
"""

from __future__ import annotations

import functools
import os
import subprocess
import threading
import time
from pathlib import Path

from mattlib.processes import die_with_parent


@functools.lru_cache(maxsize=1)
class _Processes:
    """The papermill processes running now, so an interrupt can stop them (and their kernels)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self.stopping = threading.Event()

    def start(self, command: list[str], **kwargs) -> subprocess.Popen:
        with self._lock:
            if self.stopping.is_set():
                raise _NotStarted
            # preexec_fn only calls prctl (libc loaded beforehand): safe after fork in a threaded parent
            proc = subprocess.Popen(
                command,
                start_new_session=True,  # noqa: PLW1509
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
                **kwargs,
            )
            self._running.add(proc)
            return proc

    def finish(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop_all(self) -> None:
        """No new process starts; the running ones and their descendants are terminated."""
        with self._lock:
            self.stopping.set()
            running = list(self._running)
        for proc in running:
            _terminate_tree(proc.pid)


class _NotStarted(Exception):
    """The run is stopping: a cell's process was not started."""


_PROCESSES = _Processes()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc; a kernel runs in a session of its own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _terminate_tree(pid: int, *, grace: float = 5.0) -> None:
    """SIGTERM ``pid`` and its descendants, SIGKILL what is still alive after ``grace`` seconds."""
    import signal

    victims = [pid, *_descendants(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for victim in victims:
            try:
                os.kill(victim, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(v) for v in victims):
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
