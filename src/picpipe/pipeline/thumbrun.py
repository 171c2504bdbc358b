"""Run the thumbnail stage over the catalog: choose assets, a process pool, record results.

The main process chooses what to make (``pending`` assets; with ``missing`` also ``ok`` assets
whose files are gone, found by listing the thumbnail folders; ``all``), hands plain
`ThumbJob`s to a process pool sized to the cores, and records each `ThumbResult`: the
metadata JSON beside the thumbnails, then ``thumbs_state``/``thumbs_error`` (and a video's
codec and duration) in catalog batches. A worker killed by a crashing decoder breaks the
pool: the jobs that were in flight are run again one at a time in a fresh pool, so the one
that crashes is recorded as failed and the others are made.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from picpipe.catalog.thumbs import (
    ThumbOutcome,
    assets_to_thumb,
    save_thumb_outcomes,
    staged_still_needed,
    thumb_states,
)
from picpipe.errors import DependencyMissing, LibraryError
from picpipe.jobs.process_pool import ProcessPool
from picpipe.jobs.report import RunReport
from picpipe.library.atomic import atomic_write_bytes
from picpipe.library.layout import (
    THUMB_SIZES,
    is_temp_name,
    thumb_folder,
    thumb_metadata_path,
)
from picpipe.library.staging import find_staged, staging_root, sweep_staged
from picpipe.pipeline.thumbs import EXTENSIONS, ThumbJob, ThumbResult, init_worker, make_thumbnails

if TYPE_CHECKING:
    import threading
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.catalog.models import Asset
    from picpipe.config import ThumbOptions

log = logging.getLogger(__name__)

Selection = Literal["missing", "pending", "all"]
CRASHED = "the decoder crashed on this file (its worker process died); it was not retried"


@dataclass(slots=True)
class ThumbSummary:
    """What one thumbnail run did; ``thumbs --json`` prints `as_dict`."""

    made: int = 0
    failed: int = 0
    skipped: int = 0  # not chosen: thumbnails already there, or failed before (see --all)
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)
    run_id: int | None = None  # the leased run that made them

    def report(self) -> RunReport:
        return RunReport(
            "thumbs",
            self.run_id,
            "completed_with_failures" if self.failed else "completed",
            {"made": self.made, "failed": self.failed, "skipped": self.skipped},
            0,
            self.failures,
            [],
            self.seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        return self.report().as_dict() | {
            "made": self.made,
            "failed": self.failed,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "failures": self.failures,
        }


# Decoders run in forked processes: a crash in one fails that file only (`jobs/process_pool`).
_Pool = ProcessPool[ThumbJob, ThumbResult]
ProgressSink = Callable[[ThumbSummary, int], None]  # the summary so far, the number to make


@dataclass(frozen=True, slots=True)
class _Item:
    job: ThumbJob
    library_path: str
    facts: dict[str, Any]


class ThumbRun:
    """Makes thumbnails for the assets of one catalog.

    ``work`` is the worker function (a module-level function, so the pool can pickle it);
    tests pass scripted ones. Raises LibraryError when the library root is not there and
    DependencyMissing when libvips is; a file that cannot be read is a failed result.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        home: Path,
        library_root: Path,
        options: ThumbOptions,
        workers: int | None = None,
        progress: ProgressSink | None = None,
        work: Callable[[ThumbJob], ThumbResult] = make_thumbnails,
        batch_size: int = 100,
        stop: threading.Event | None = None,
        restage: Callable[[str], Path | None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.home = home
        self.library_root = library_root
        self.options = options
        self.workers = workers or options.workers or cpu_count()
        self.progress = progress or (lambda _summary, _total: None)
        self.work = work
        self.batch_size = batch_size
        # Set by a stopping service: no new job starts, the ones in flight are recorded, the
        # rest stay pending for the next run.
        self.stop = stop
        # Fetches an index-only original again when its staged copy is gone (a crash, a
        # cleaned home): without it such an asset waits for its thumbnails.
        self.restage = restage
        self._batch: list[ThumbResult] = []
        self._last_flush = time.monotonic()
        self._made_dirs: set[Path] = set()

    def run(self, selection: Selection = "missing") -> ThumbSummary:
        """Make thumbnails for the ``selection`` and record every outcome."""
        started = time.monotonic()
        if not self.library_root.is_dir():
            raise LibraryError(
                detail=f"library root {self.library_root} is not there; is it mounted?"
            )
        todo, skipped = self._select(selection)
        summary = ThumbSummary(skipped=skipped)
        self.progress(summary, len(todo))
        if todo:
            _load_decoders()
            workers = max(1, min(self.workers, len(todo)))
            pool: ProcessPool[ThumbJob, ThumbResult] = ProcessPool(
                self.work,
                workers,
                initializer=init_worker,
                initargs=(max(1, cpu_count() // workers),),
                preload=("picpipe.pipeline.thumbs", "picpipe.pipeline.thumbrun"),
            )
            try:
                self._process(pool, self._items(todo), summary, len(todo))
            finally:
                pool.shutdown()
                self._flush()
        self._sweep_staged()
        summary.seconds = time.monotonic() - started
        log.info(
            "thumbnails: %d made, %d failed, %d skipped in %.1fs",
            summary.made,
            summary.failed,
            summary.skipped,
            summary.seconds,
        )
        return summary

    # -- choosing ------------------------------------------------------------------------

    def _select(self, selection: Selection) -> tuple[list[str], int]:
        with self.catalog.session() as db:
            states = thumb_states(db)
        if selection == "all":
            return [sha for sha, _ in states], 0
        todo = {sha for sha, state in states if state == "pending"}
        if selection == "missing" and any(state == "ok" for _, state in states):
            present = self._present()
            todo |= {sha for sha, state in states if state == "ok" and sha not in present}
        return [sha for sha, _ in states if sha in todo], len(states) - len(todo)

    def _present(self) -> set[str]:
        """Assets with all three thumbnails on disk, from one listing of each folder."""
        suffix = "." + EXTENSIONS[self.options.format]
        present: set[str] | None = None
        for size in THUMB_SIZES:
            names: set[str] = set()
            root = self.home / thumb_folder(size)
            for shard in _listing(root):
                names.update(
                    name[: -len(suffix)]
                    for name in _listing(root / shard)
                    if name.endswith(suffix) and not is_temp_name(name)
                )
            present = names if present is None else present & names
        return present or set()

    def _items(self, todo: Sequence[str]) -> Iterator[_Item]:
        options, root = self.options, self.library_root
        for start in range(0, len(todo), 200):
            with self.catalog.session() as db:
                for asset in assets_to_thumb(db, todo[start : start + 200]):
                    job = ThumbJob(
                        sha256=asset.sha256,
                        original=self._original_of(asset, root),
                        kind=asset.kind,
                        home=str(self.home),
                        format=options.format,
                        quality=options.quality,
                        max_pixels=options.max_pixels,
                        file_type=asset.file_type,
                        orientation=asset.orientation,
                    )
                    yield _Item(job, asset.library_path, asset_facts(asset))

    def _original_of(self, asset: Asset, root: Path) -> str:
        if not asset.index_only:
            return str(root / asset.library_path)
        # Index mode: the import's one read, staged; else fetched again from a source
        # (`restage`); without either the job fails retryably (the file cannot be read).
        staged = find_staged(staging_root(self.home), asset.sha256)
        if staged is None and self.restage is not None:
            staged = self.restage(asset.sha256)
        return str(staged if staged is not None else staging_root(self.home) / asset.sha256)

    def _sweep_staged(self) -> None:
        """Staged index-mode originals whose thumbnails are settled are not kept."""

        def needed(sha256s: list[str]) -> dict[str, bool]:
            with self.catalog.session() as db:
                return staged_still_needed(db, sha256s)

        removed = sweep_staged(staging_root(self.home), needed)
        if removed:
            log.debug("removed %d staged index-mode original(s)", removed)

    # -- running -------------------------------------------------------------------------

    def _process(
        self,
        pool: ProcessPool[ThumbJob, ThumbResult],
        items: Iterator[_Item],
        summary: ThumbSummary,
        total: int,
    ) -> None:
        in_flight: dict[Future[ThumbResult], _Item] = {}
        limit = pool.workers * 3
        more = True
        while True:
            if more and self.stop is not None and self.stop.is_set():
                more = False
            while more and len(in_flight) < limit:
                item = next(items, None)
                if item is None:
                    more = False
                else:
                    in_flight[pool.submit(item.job)] = item
            if not in_flight:
                return
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            suspects: list[_Item] = []
            for future in done:
                item = in_flight.pop(future)
                result = _outcome(future, item)
                if result is None:
                    suspects.append(item)
                else:
                    self._record(item, result, summary, total)
            if suspects:
                # The jobs still in flight share the broken pool's fate; which one crashed it
                # is unknown, so each that did not finish runs again alone.
                pool.restart()  # waits for the old pool: every future is settled now
                for future, item in in_flight.items():
                    result = _outcome(future, item)
                    if result is None:
                        suspects.append(item)
                    else:
                        self._record(item, result, summary, total)
                in_flight.clear()
                log.warning(
                    "a thumbnail worker died; retrying %d file(s) one by one", len(suspects)
                )
                for item in suspects:
                    self._isolated(pool, item, summary, total)

    def _isolated(
        self,
        pool: ProcessPool[ThumbJob, ThumbResult],
        item: _Item,
        summary: ThumbSummary,
        total: int,
    ) -> None:
        future = pool.submit(item.job)
        wait([future])
        result = _outcome(future, item)
        if result is None:
            result = ThumbResult(item.job.sha256, reason=CRASHED)
            pool.restart()
        self._record(item, result, summary, total)

    # -- recording -----------------------------------------------------------------------

    def _record(self, item: _Item, result: ThumbResult, summary: ThumbSummary, total: int) -> None:
        if result.ok:
            summary.made += 1
            log.debug("thumbnails of %s made in %.3fs", item.library_path, result.seconds)
        else:
            summary.failed += 1  # a retryable failure stays pending for the next run
            reason = result.reason or "unknown error"
            summary.failures.append(
                {"sha256": result.sha256, "path": item.library_path, "reason": reason}
            )
            log.warning("%s: no thumbnails: %s", item.library_path, reason)
        self._write_metadata(item, result)
        self._batch.append(result)
        if len(self._batch) >= self.batch_size or time.monotonic() - self._last_flush > 1.0:
            self._flush()
        self.progress(summary, total)

    def _write_metadata(self, item: _Item, result: ThumbResult) -> None:
        data = dict(item.facts)
        data["display_width"], data["display_height"] = result.width, result.height
        if result.duration is not None:
            data["duration"] = result.duration
        data["thumbs"] = (
            {"format": self.options.format} | {k: list(v) for k, v in result.sizes.items()}
            if result.ok
            else None
        )
        data["thumbs_error"] = result.reason
        payload = json.dumps(data, ensure_ascii=False).encode()
        target = self.home / thumb_metadata_path(result.sha256)
        try:
            if target.read_bytes() == payload:
                return  # a remake with the same facts: leave the file (and its mtime) alone
        except OSError:
            pass
        try:
            if target.parent not in self._made_dirs:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(target.parent)
            # No fsync: the JSON is remade from the catalog by the next run that needs it.
            atomic_write_bytes(target, payload, fsync=False, middle=target.name)
        except OSError as exc:
            log.warning("%s: could not write %s: %s", item.library_path, target, exc.strerror)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._last_flush = time.monotonic()
        if not batch:
            return
        outcomes = [
            ThumbOutcome(
                r.sha256,
                "ok" if r.ok else "pending" if r.retry else "failed",
                r.reason,
                r.video_codec,
                r.duration,
            )
            for r in batch
        ]
        with self.catalog.write() as db:
            save_thumb_outcomes(db, outcomes)


def asset_facts(asset: Asset) -> dict[str, Any]:
    """The asset's key metadata for ``thumbs/metadata/{sha[:2]}/{sha256}.json``."""
    return {
        "sha256": asset.sha256,
        "kind": asset.kind,
        "mime_type": asset.mime_type,
        "taken_local": asset.taken_local.isoformat(),
        "taken_offset_min": asset.taken_offset_min,
        "date_source": asset.date_source,
        "make": asset.make,
        "model": asset.model,
        "lens": asset.lens,
        "gps_lat": asset.gps_lat,
        "gps_lon": asset.gps_lon,
        "width": asset.width,
        "height": asset.height,
        "duration": asset.duration,
        "original_name": asset.original_name,
        "library_path": asset.library_path,
        "live_photo_id": asset.live_photo_id,
        "pair_id": asset.pair_id,
    }


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _outcome(future: Future[ThumbResult], item: _Item) -> ThumbResult | None:
    """The future's result; None when its worker died (the pool is broken)."""
    try:
        return future.result()
    except (BrokenProcessPool, CancelledError):
        return None
    except Exception as exc:  # the pool's own failures (pickling), not decoder errors
        log.debug("thumbnail job for %s failed", item.library_path, exc_info=True)
        return ThumbResult(item.job.sha256, reason=f"internal error: {exc!r}"[:300])


def _listing(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _load_decoders() -> None:
    """Import the decoders once here, so forked workers start with them (and fail early)."""
    try:
        importlib.import_module("picpipe.pipeline.decoders")
    except (ImportError, OSError) as exc:
        raise DependencyMissing(tool="libvips (pyvips)", detail=str(exc)) from exc
