"""The local worker pool: runs one function per item in threads, a bounded number in flight.

Callers submit items and collect finished results in the order they finish. The pool knows
nothing of imports; a distributed engine can stand in for it by offering the same three
methods (`submit`, `finished`, `drain`).
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

T = TypeVar("T")
R = TypeVar("R")


class LocalWorkerPool(Generic[T, R]):
    """Threads running ``work(item)``; at most ``max_in_flight`` items queued or running."""

    def __init__(self, work: Callable[[T], R], *, workers: int, max_in_flight: int = 0) -> None:
        self._work = work
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="picpipe")
        self._max_in_flight = max_in_flight or workers * 4
        self._pending: set[Future[R]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def submit(self, item: T) -> list[R]:
        """Queue ``item``; returns the results that finished while waiting for room."""
        ready: list[R] = []
        while len(self._pending) >= self._max_in_flight:
            ready.extend(self._collect(block=True))
        self._pending.add(self._executor.submit(self._work, item))
        return ready

    def finished(self) -> Iterator[R]:
        """Results that are ready now, without waiting."""
        return self._collect(block=False)

    def drain(self) -> Iterator[R]:
        """Every remaining result, waiting for each."""
        while self._pending:
            yield from self._collect(block=True)

    def shutdown(self, *, cancel: bool = False) -> None:
        if cancel:
            for future in self._pending:
                future.cancel()
        self._executor.shutdown(wait=True, cancel_futures=cancel)

    def _collect(self, *, block: bool) -> Iterator[R]:
        if not self._pending:
            return
        done, self._pending = wait(
            self._pending, timeout=None if block else 0, return_when=FIRST_COMPLETED
        )
        for future in done:
            yield future.result()
