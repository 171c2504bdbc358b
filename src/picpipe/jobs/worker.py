"""The executor seam, and the local worker pool behind it.

Work items cross this seam as plain data (`ImportTask`, `ThumbJob`); callers submit items and
collect finished results in the order they finish. `LocalWorkerPool` runs one function per item
in threads, a bounded number in flight; a distributed engine stands in for it by offering the
same methods (`Executor`). Items may be delivered more than once by such an engine, so every
stage is safe to run twice.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

T = TypeVar("T")
R = TypeVar("R")
T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class Executor(Protocol[T_contra, R_co]):
    """What a run needs of whatever executes its work items."""

    @property
    def in_flight(self) -> int: ...
    def submit(self, item: T_contra) -> Sequence[R_co]: ...
    def finished(self) -> Iterator[R_co]: ...
    def drain(self) -> Iterator[R_co]: ...


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
