"""A process pool for work that may crash its worker (decoders of hostile files).

Work items cross it as plain, picklable data (`ThumbJob`); the pool can be replaced when a
worker dies, so one bad file fails alone.

Workers come from a fork server (``forkserver``), not from a fork of this process: the
service runs many threads (watchers, the web server, the MQTT client, heartbeats), and a fork
copies whatever lock one of them holds at that instant into a child that then waits for it
forever (a thumbnail pass that never ends). The fork server is a fresh interpreter started
once per process with the modules the caller names already imported (``preload``), so a new
pool, at start or after a crash, still costs milliseconds.

Workers end with the process that made the pool, even after ``kill -9`` of it: each watches
that pid from a daemon thread (their parent is the fork server, which ends with it too).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

J = TypeVar("J")
R = TypeVar("R")
PARENT_POLL_SECONDS = 0.5  # how soon an orphaned worker notices


class ProcessPool(Generic[J, R]):
    """``work(job)`` in ``workers`` forked processes; `restart` replaces a broken pool."""

    def __init__(
        self,
        work: Callable[[J], R],
        workers: int,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        preload: tuple[str, ...] = (),
    ) -> None:
        self.preload = preload
        self.work = work
        self.workers = workers
        self.initializer = initializer
        self.initargs = initargs
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        if self.preload:
            # Only the first pool's list counts: the fork server starts once per process.
            context.set_forkserver_preload(list(self.preload))
        return ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_worker_start,
            initargs=(os.getpid(), self.initializer, self.initargs),
        )

    def submit(self, job: J) -> Future[R]:
        return self._executor.submit(self.work, job)

    def restart(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = self._start()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _worker_start(
    parent: int, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]
) -> None:
    """In each worker: watch the parent, then the pool's own initializer."""
    threading.Thread(
        target=_exit_when_orphaned, args=(parent,), name="parent-watch", daemon=True
    ).start()
    if initializer is not None:
        initializer(*initargs)


def _exit_when_orphaned(parent: int) -> None:
    # The process that made the pool gone means nobody will read our results, and a decoder
    # holding ~85 MB must not linger.
    stop = threading.Event()
    while not stop.wait(PARENT_POLL_SECONDS):
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            continue  # another user's process took the pid: ours is gone, but rarely; keep on
