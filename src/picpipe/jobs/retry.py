"""Retries with exponential backoff and full jitter.

Whether to retry is asked of the error (``PicpipeError.retryable``), never of its type name;
anything that is not a picpipe error is a bug and propagates at once.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from picpipe.errors import PicpipeError

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` attempts after the first; waits ``base * 2**n`` capped at ``cap``, jittered."""

    retries: int = 5
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``attempt`` (1-based): uniform in [0, min(cap, base·2ⁿ)]."""
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, ceiling)


def call_with_retries(
    func: Callable[[], T],
    policy: RetryPolicy,
    *,
    what: str,
    stop: threading.Event | None = None,
    on_retry: Callable[[int, PicpipeError], None] | None = None,
) -> T:
    """Call ``func`` until it returns, a non-retryable error is raised, or retries run out.

    The last error is re-raised. ``stop`` cuts a wait short (SIGTERM): the pending error is
    raised at once so the caller can record it and shut down.
    """
    attempt = 0
    while True:
        try:
            return func()
        except PicpipeError as exc:
            attempt += 1
            if not exc.retryable or attempt > policy.retries:
                raise
            wait = policy.delay(attempt)
            log.info("%s: %s; retry %d/%d in %.1fs", what, exc, attempt, policy.retries, wait)
            if on_retry is not None:
                on_retry(attempt, exc)
            if stop is not None:
                if stop.wait(wait):
                    raise
            else:
                threading.Event().wait(wait)
