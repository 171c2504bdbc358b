"""One progress display for every kind of run: a sink of the run's event stream.

On a terminal, a Rich bar with the stage, done of total (when known) and a tally of outcomes;
otherwise (piped, ``--json``) no sink at all: structured logs say what happened.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from picpipe.cli.app import console
from picpipe.events import ItemDone, ItemFailed
from picpipe.events import Progress as ProgressEvent

if TYPE_CHECKING:
    from collections.abc import Iterator

    from picpipe.events import Event, EventSink


@contextmanager
def run_progress(label: str, *, quiet: bool) -> Iterator[list[EventSink]]:
    """The sinks to hand a run: a live bar on a terminal, none when ``quiet`` or piped."""
    if quiet or not console.is_terminal:
        yield []
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=None),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task(label, total=None, counts="")
        tally: Counter[str] = Counter()
        where = {"stage": label, "done": 0}

        def on_event(event: Event) -> None:
            if isinstance(event, ProgressEvent):
                where.update(stage=event.stage, done=event.done)
                if event.total is not None:
                    progress.update(bar, total=event.total, completed=event.done)
                progress.update(bar, description=event.stage)
            elif isinstance(event, ItemDone):
                tally[event.outcome] += 1
            elif isinstance(event, ItemFailed):
                tally["failed"] += 1
            else:
                return
            counts = "  ".join(f"{name} {n}" for name, n in sorted(tally.items()))
            seen = f"seen {where['done']}  " if where["stage"] == "scan" else ""
            progress.update(bar, counts=seen + counts)

        yield [on_event]
