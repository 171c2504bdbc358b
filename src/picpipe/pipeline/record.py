"""Write finished tasks to the catalog in batches (one transaction per batch).

Within a batch, new assets are inserted before the provenance rows that point at them, so a
duplicate found in the same run is always recorded after its twin's asset. The content claims
of the batch's tasks are released in the same transaction: a twin waiting on a claim finds
the asset committed the moment the claim is gone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from picpipe.catalog.queries import (
    add_assets,
    add_session_failures,
    mark_in_library,
    upsert_source_files,
    utcnow,
    write_session_counts,
)
from picpipe.catalog.remote_sources import record_sha1s
from picpipe.catalog.runs import content_claim, release_claims

if TYPE_CHECKING:
    from picpipe.catalog.db import Catalog
    from picpipe.pipeline.metadata import MediaInfo
    from picpipe.pipeline.task import EmbeddedAsset, ImportTask
    from picpipe.sources.base import Source, SourceEntry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SessionCounts:
    seen: int = 0
    new: int = 0
    duplicate: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped: int = 0
    bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)


class Recorder:
    """Collects finished tasks and scan problems; `flush` commits them as one batch."""

    def __init__(
        self,
        catalog: Catalog,
        session_id: int,
        *,
        move: bool = False,
        sources: dict[str, Source] | None = None,
        batch_size: int = 200,
        max_delay: float = 1.0,
    ) -> None:
        self.catalog = catalog
        self.session_id = session_id
        self.move = move
        self.sources = sources if sources is not None else {}
        self.counts = SessionCounts()
        self._batch_size = batch_size
        self._max_delay = max_delay
        self._tasks: list[ImportTask] = []
        self._problems: list[tuple[int, str, str]] = []
        self._last_flush = time.monotonic()

    def add(self, task: ImportTask) -> None:
        """Count a finished task and queue it (its content claim is released when committed)."""
        counts = self.counts
        if task.written:
            counts.bytes += task.entry.size
        if task.outcome == "new":
            counts.new += 1
        elif task.outcome == "duplicate":
            counts.duplicate += 1
        elif task.outcome == "skipped":
            counts.skipped += 1
        else:
            counts.failed += 1
            reason = task.error.reason if task.error else "unknown error"
            counts.failures.append((task.display, reason))
        for problem in task.problems:
            counts.warnings.append((task.display, problem))
        self._tasks.append(task)
        self.maybe_flush()

    def add_problem(self, source_id: int, display: str, reason: str) -> None:
        """A listing problem (folder vanished, loop): a failure without a file row."""
        self.counts.failed += 1
        self.counts.failures.append((display, reason))
        self._problems.append((source_id, display, reason))
        self.maybe_flush()

    def maybe_flush(self) -> None:
        due = time.monotonic() - self._last_flush >= self._max_delay
        if len(self._tasks) + len(self._problems) >= self._batch_size or due:
            self.flush()

    @property
    def pending(self) -> int:
        """Tasks queued and not committed yet."""
        return len(self._tasks)

    def flush(self) -> None:
        """Commit everything queued, then (``--move``) remove the sources now safely stored."""
        tasks, self._tasks = self._tasks, []
        problems, self._problems = self._problems, []
        now = utcnow()
        with self.catalog.write() as db:
            fresh = [t for t in tasks if t.outcome == "new" and t.info is not None]
            rows = [_asset_row(t, now, self.session_id) for t in fresh]
            # A motion photo's video goes in with its still (it has no source file row).
            embedded = [e for t in fresh for e in t.embedded]
            rows += [_embedded_row(e, now, self.session_id) for e in embedded]
            inserted = add_assets(db, rows)
            # An index-only asset whose original a library-mode source just placed.
            placed = [t.sha256 for t in tasks if t.fills_index and t.outcome == "duplicate"]
            mark_in_library(db, [sha for sha in placed if sha])
            for task in fresh:
                if task.sha256 not in inserted:
                    # Another run catalogued the same content first: one asset, two records.
                    self._count_as_duplicate(task)
            new_rows: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            for task in tasks:
                row = _source_file_row(task, now, self.session_id)
                if task.known is None:
                    row.update(
                        source_id=task.source_id,
                        ref=task.entry.ref,
                        folder=task.entry.ref.rpartition("/")[0],
                        first_seen=now,
                    )
                    new_rows.append(row)
                else:
                    row["id"] = task.known.id
                    updates.append(row)
            upsert_source_files(db, new_rows, updates)
            record_sha1s(db, self._checked_sha1s(tasks))
            failures = [(t.display, t.error.reason) for t in tasks if t.error is not None]
            failures += [(display, reason) for _sid, display, reason in problems]
            add_session_failures(db, self.session_id, failures)
            claimed = [content_claim(t.sha256) for t in tasks if t.owns_claim and t.sha256]
            release_claims(db, self.session_id, claimed)
            write_session_counts(db, self.session_id, self._count_values())
        self._last_flush = time.monotonic()
        if self.move:
            self._remove_moved(tasks)

    def _checked_sha1s(self, tasks: list[ImportTask]) -> list[tuple[str, str]]:
        """(sha256, SHA-1) of imported tasks whose source checked the server's SHA-1 against
        the bytes it delivered (`pipeline/checksum_stage.py`)."""
        pairs: list[tuple[str, str]] = []
        for task in tasks:
            source = self.sources.get(task.source_name)
            checksum = task.entry.checksum
            if source is None or checksum is None or source.caps.server_checksum != "sha1":
                continue
            if task.outcome in ("new", "duplicate") and task.sha256 is not None:
                pairs.append((task.sha256, checksum))
        return pairs

    def _count_as_duplicate(self, task: ImportTask) -> None:
        task.outcome = "duplicate"
        self.counts.new -= 1
        self.counts.duplicate += 1
        if task.written:  # same bytes at the same path: the other run's placement stands
            self.counts.bytes -= task.entry.size

    def _count_values(self) -> dict[str, int]:
        c = self.counts
        return {
            "seen": c.seen,
            "new": c.new,
            "duplicate": c.duplicate,
            "unchanged": c.unchanged,
            "failed": c.failed,
            "skipped": c.skipped,
            "bytes": c.bytes,
        }

    def _remove_moved(self, tasks: list[ImportTask]) -> None:
        for task in tasks:
            source = self.sources.get(task.source_name)
            if task.outcome in ("new", "duplicate") and source and source.caps.can_remove:
                _remove_source(source, task.entry, task.display)


def _remove_source(source: Source, entry: SourceEntry, display: str) -> None:
    try:
        source.remove(entry)
    except OSError as exc:
        log.warning("could not remove %s after import: %s", display, exc.strerror)


def _asset_row(task: ImportTask, now: Any, session_id: int) -> dict[str, Any]:
    assert task.info is not None
    assert task.sha256 is not None
    assert task.library_path is not None
    return _info_row(
        task.info, task.sha256, task.entry.size, task.library_path, task.entry.name, now
    ) | {"session_id": session_id, "embedded_in": None, "index_only": task.index_only}


def _embedded_row(asset: EmbeddedAsset, now: Any, session_id: int) -> dict[str, Any]:
    row = _info_row(asset.info, asset.sha256, asset.size, asset.library_path, asset.name, now)
    return row | {"session_id": session_id, "embedded_in": asset.embedded_in, "index_only": False}


def _info_row(
    info: MediaInfo, sha256: str, size: int, library_path: str, name: str, now: Any
) -> dict[str, Any]:
    taken = info.taken
    return {
        "sha256": sha256,
        "size": size,
        "kind": info.kind,
        "mime_type": info.mime_type,
        "file_type": info.file_type,
        "taken_local": taken.local,
        "taken_offset_min": taken.offset_min,
        "taken_utc": taken.utc,
        "date_source": taken.source,
        "offset_source": taken.offset_source,
        "make": info.make,
        "model": info.model,
        "lens": info.lens,
        "gps_lat": info.gps_lat,
        "gps_lon": info.gps_lon,
        "gps_alt": info.gps_alt,
        "city": info.city,
        "region": info.region,
        "country": info.country,
        "width": info.width,
        "height": info.height,
        "orientation": info.orientation,
        "duration": info.duration,
        "live_photo_id": info.live_photo_id,
        "payload_sha256": info.payload_sha256,
        "original_name": name,
        "library_path": library_path,
        "problems": info.problems or None,
        "keywords": info.keywords,
        "rating": info.rating,
        "label": info.label,
        "title": info.title,
        "description": info.description,
        "regions": info.regions,
        "sidecar_mtime_ns": info.sidecar_mtime_ns,
        # Bytes no decoder recognises have nothing to show: no thumbnail run tries them.
        "thumbs_state": "failed" if info.kind == "unknown" else "pending",
        "thumbs_error": "not a photo or video" if info.kind == "unknown" else None,
        "imported_at": now,
    }


_STATES = {"new": "imported", "duplicate": "duplicate", "skipped": "skipped"}


def _source_file_row(task: ImportTask, now: Any, session_id: int) -> dict[str, Any]:
    state = _STATES.get(task.outcome or "", "failed")
    error = task.error
    return {
        "size": task.entry.size,
        "mtime_ns": task.entry.mtime_ns,
        "ctime_ns": task.entry.ctime_ns,
        "sha256": task.sha256 if state in ("imported", "duplicate") else None,
        "state": state,
        "error": error.message if error is not None else task.skip_reason,
        "retryable": bool(error is not None and error.retryable),
        "last_seen": now,
        "gone": False,
        "session_id": session_id,
    }
