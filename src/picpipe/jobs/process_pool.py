"""A process pool for work that may crash its worker (decoders of hostile files).

Work items cross it as plain, picklable data (`ThumbJob`); the pool can be replaced when a
worker dies, so one bad file fails alone. Workers are forked from this process with what they
need already imported, so a new pool, at start or after a crash, costs milliseconds. Fork rather
than spawn or a forkserver: those exec the interpreter again, which fails where the user may
run Python but not re-exec it (a venv behind a private home).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

J = TypeVar("J")
R = TypeVar("R")


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
            self.workers, mp_context=context, initializer=self.initializer, initargs=self.initargs
        )

    def submit(self, job: J) -> Future[R]:
        return self._executor.submit(self.work, job)

    def restart(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = self._start()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
