"""A process pool for work that may crash its worker (decoders of hostile files).

Work items cross it as plain, picklable data (`ThumbJob`); the pool can be replaced when a
worker dies, so one bad file fails alone. Workers are forked from this process with what they
need already imported, so a new pool, at start or after a crash, costs milliseconds. Fork rather
than spawn or a forkserver: those exec the interpreter again, which fails where the user may
run Python but not re-exec it (a venv behind a private home).

Workers end with their parent, even after ``kill -9`` of it: each watches its parent pid from a
daemon thread. (``PR_SET_PDEATHSIG`` would fire when the *thread* that forked ends, and the
pool forks from whichever thread submits first.)
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
    ) -> None:
        self.work = work
        self.workers = workers
        self.initializer = initializer
        self.initargs = initargs
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("fork")
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
    # Re-parented (to init or a subreaper) means the parent is gone: nobody will read our
    # results, and a decoder holding ~85 MB must not linger.
    stop = threading.Event()
    while not stop.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            os._exit(1)
