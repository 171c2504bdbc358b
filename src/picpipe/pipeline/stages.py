"""The import stages: sniff, hash, dedupe, metadata, place, motion (`pipeline/motion_stage.py`),
sidecar; each ``(ctx, task) -> None``.

Stages only fill in the task or raise an ``ItemError``; the runner decides what runs next and
records the outcome. A stage that finishes the task (a duplicate) sets ``task.outcome``; a new
asset gets outcome "new" from the runner once every stage ran. `import_stages` assembles the
list from the settings (the sidecar stage only when ``sidecars.write``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from picpipe.catalog.queries import find_asset, utcnow
from picpipe.catalog.runs import content_claim, try_claim
from picpipe.errors import ChecksumMismatch, ContentClaimed, EmptyFile, UnreadableFile
from picpipe.hashing import new_hasher, sha256_stream
from picpipe.library.layout import original_path, written_sidecar_paths
from picpipe.library.staging import staged_write
from picpipe.library.writer import place_original
from picpipe.pipeline.checksum_stage import known_checksum_stage
from picpipe.pipeline.exiftool import ExifToolFailed, ExifToolPool
from picpipe.pipeline.jpeg_stream import JpegStreamWalk
from picpipe.pipeline.metadata import media_info
from picpipe.pipeline.motion import find_motion_video
from picpipe.pipeline.motion_stage import motion_stage
from picpipe.pipeline.payload import payload_sha256
from picpipe.pipeline.sidecar import (
    SidecarContent,
    SidecarError,
    SidecarFacts,
    UserFields,
    write_sidecar,
)
from picpipe.pipeline.source_sidecar import read_source_sidecar
from picpipe.pipeline.truncation import TRUNCATED, jpeg_truncated
from picpipe.pipeline.zones import ConfiguredZones
from picpipe.sources.sniff import HEADER_BYTES, media_format

if TYPE_CHECKING:
    from datetime import tzinfo
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings
    from picpipe.pipeline.task import ImportTask
    from picpipe.sources.base import Source

log = logging.getLogger(__name__)

Stage = Callable[["StageContext", "ImportTask"], None]


@dataclass(slots=True)
class StageContext:
    """What stages share within one run: library root, catalog, tools, the run's identity.

    ``run_id`` names the run's temp files and holds its content claims in the catalog;
    ``host`` is this machine's name in run owners (to tell a stale claim from a live one).
    """

    library_root: Path
    catalog: Catalog
    exiftool: ExifToolPool
    default_tz: tzinfo
    fsync: bool = True
    run_id: int = 0
    host: str = ""
    # Where tasks find their sources by name (tasks carry names, not live objects).
    sources: dict[str, Source] = field(default_factory=dict)
    zones: ConfiguredZones = field(default_factory=ConfiguredZones)
    # Sources in `mode: index` (their originals stay at the source) and where their one read
    # is staged (`library/staging.py`).
    index_sources: frozenset[str] = frozenset()
    staging_root: Path | None = None

    def index_mode(self, task: ImportTask) -> bool:
        """The task's source is in index mode and the library has no original to heal."""
        return task.source_name in self.index_sources and not task.restores


NOT_MEDIA = "not a photo or video (no media extension, content not recognised)"


def sniff_stage(ctx: StageContext, task: ImportTask) -> None:
    """A file whose name says nothing (`SourceEntry.sniff`): read its first bytes and skip it
    unless they are a photo or video signature. Other files pass untouched."""
    entry = task.entry
    if not entry.sniff:
        return
    head = b""
    if entry.size > 0:
        with ctx.sources[task.source_name].open(entry) as stream:
            try:
                head = stream.read(HEADER_BYTES)
            except OSError as exc:
                raise UnreadableFile(path=entry.ref, detail=exc.strerror or str(exc)) from exc
    found = media_format(head)
    if found is None:
        task.outcome = "skipped"
        task.skip_reason = NOT_MEDIA if head else "empty file without a media extension"
        return
    log.debug("%s recognised as %s by its content", task.display, found)


def hash_stage(ctx: StageContext, task: ImportTask) -> None:
    """Stream the file through SHA-256 (the source detects a torn read on close).

    A task that comes back after waiting for a content claim keeps its hash (placing it
    re-reads and re-checks the bytes anyway).
    """
    if task.sha256 is not None:
        return
    if task.entry.size == 0:
        raise EmptyFile(path=task.display)
    walk = JpegStreamWalk()
    source = ctx.sources[task.source_name]
    # A server's SHA-1 (Immich) is checked in this same read: the bytes are hashed once.
    sha1 = new_hasher("sha1") if _checks_sha1(source, task) else None
    # Index mode reads each file once: the bytes hashed are staged for exiftool and the
    # thumbnails (the source may have no local path, and a remote one is slow to read twice).
    staging = (
        staged_write(ctx.staging_root)
        if ctx.index_mode(task) and ctx.staging_root is not None
        else contextlib.nullcontext(None)
    )
    with staging as staged:
        feeds: list[Callable[[memoryview], object]] = [walk.update]
        if sha1 is not None:
            feeds.append(sha1.update)
        if staged is not None:
            feeds.append(staged.write)
        with source.open(task.entry) as stream:
            try:
                digest, size = sha256_stream(stream, tee=_all(feeds))
            except OSError as exc:
                raise UnreadableFile(path=task.entry.ref, detail=exc.strerror or str(exc)) from exc
        if size == 0:
            raise EmptyFile(path=task.display)
        if sha1 is not None and sha1.hexdigest() != task.entry.checksum:
            raise ChecksumMismatch(path=task.display, algorithm="SHA-1")
        if staged is not None:  # the source's torn-read check passed on leaving `open`
            task.staged = str(staged.keep(digest, task.entry.name))
    task.sha256 = digest
    task.jpeg_verdict, task.jpeg_payload = walk.verdict, walk.payload_sha256
    task.jpeg_end = walk.end


def dedupe_stage(ctx: StageContext, task: ImportTask) -> None:
    """Known content with its original in place → only provenance is recorded."""
    assert task.sha256 is not None
    with ctx.catalog.session() as db:
        asset = find_asset(db, task.sha256)
        known = (asset.library_path, asset.size, asset.index_only) if asset is not None else None
    if known is not None:
        library_path, size, index_only = known
        if index_only and task.source_name not in ctx.index_sources:
            # A library-mode copy of an index-only asset: its original is placed now.
            task.library_path = library_path
            task.restores = task.fills_index = True
        elif index_only or _present(ctx.library_root / library_path, size):
            task.library_path = library_path
            task.outcome = "duplicate"
            return
        else:
            # The catalogued original is missing: these bytes heal it.
            task.problems.append("library original was missing; restored from this copy")
            task.library_path = library_path
            task.restores = True
    if not task.owns_claim:
        # Claimed in the catalog with the run's lease: a twin in this run or another waits
        # (the runner defers it) until the owner's asset is committed, then is a duplicate.
        with ctx.catalog.write() as db:
            holder = try_claim(db, content_claim(task.sha256), ctx.run_id, host=ctx.host)
        if holder is not None:
            raise ContentClaimed(path=task.display, holder=f"run {holder}")
        task.owns_claim = True


def metadata_stage(ctx: StageContext, task: ImportTask) -> None:
    """Dates, camera, GPS, sizes, ids via exiftool; damage is a recorded problem, not a failure."""
    entry = task.entry
    # A source without local paths in index mode: exiftool reads the staged copy.
    path = entry.local_path or task.staged
    tags: dict[str, Any] = {}
    sidecar: SidecarContent | None = None
    sidecar_path: str | bytes | None = None
    sidecar_problem: str | None = None
    tool = ctx.exiftool.get()
    if path is not None:
        try:
            tags = tool.read(path, extra_args=_extra_args(entry.name))
        except ExifToolFailed as exc:
            task.problems.append(exc.message)
        sidecar_path = find_sidecar(path)
        if sidecar_path is not None:
            try:
                sidecar, seedable = read_source_sidecar(tool, sidecar_path)
            except SidecarError as exc:
                sidecar_problem = f"sidecar: {exc.message}"
            else:
                sidecar_path = sidecar_path if seedable else None
    info = media_info(
        tags,
        name=entry.name,
        mtime_ns=entry.mtime_ns,
        sidecar=sidecar.record if sidecar is not None else None,
        default_tz=ctx.default_tz,
        zones=ctx.zones,
        source=task.source_name,
    )
    info.payload_sha256 = _payload(task, path, info.file_type)
    if sidecar is not None:
        # What people wrote in the sidecar that came with the file seeds picpipe's own and
        # wins, field by field, over what the file says about itself.
        merged = sidecar.user.over(UserFields.from_info(info))
        for name, value in merged.catalog_values().items():
            setattr(info, name, value)
        info.source_sidecar = sidecar_path
    # An index-only asset keeps nothing in the library, a motion photo's video neither.
    if path is not None and info.kind == "photo" and not ctx.index_mode(task):
        task.motion, motion_problem = find_motion_video(path, tags, entry.size, task.jpeg_end)
        if motion_problem is not None:
            info.problems.append(motion_problem)
    if sidecar_problem is not None:
        info.problems.append(sidecar_problem)
    if entry.extras and (problem := entry.extras.get("problem")):
        info.problems.append(str(problem))
    # A cut-off JPEG is kept, with the problem that status, the API and the gallery show.
    if info.file_type == "JPEG" and TRUNCATED not in info.problems and _jpeg_short(task, path):
        info.problems.append(TRUNCATED)
    task.info = info
    task.problems.extend(info.problems)


def place_stage(ctx: StageContext, task: ImportTask) -> None:
    """Copy the original to ``originals/YYYY/MM/DD/<sha256>.<ext>``, verified, atomically."""
    assert task.sha256 is not None
    assert task.info is not None
    rel = task.library_path or original_path(
        task.sha256, task.info.taken.local.date(), task.info.extension
    )
    if ctx.index_mode(task):
        # Index mode: the path the original would have, nothing written there.
        task.library_path = rel
        task.index_only = True
        return
    placement = place_original(
        ctx.library_root,
        rel,
        lambda: ctx.sources[task.source_name].open(task.entry),
        sha256=task.sha256,
        size=task.entry.size,
        display=task.display,
        fsync=ctx.fsync,
        run_id=ctx.run_id,
    )
    task.library_path = rel
    task.written = placement.action == "written"
    if task.restores:
        task.outcome = "duplicate"  # a new asset stays open for the stages after this one


def sidecar_stage(ctx: StageContext, task: ImportTask, naming: str = "sha") -> None:
    """Write the new asset's XMP sidecar beside its original (``<sha256>.xmp``, or the names
    ``naming`` asks for: `layout.written_sidecar_paths`).

    A sidecar that came with the source file is the starting point. A sidecar already in the
    library (an earlier, interrupted run) keeps its user fields, which then go to the catalog.
    Failing to write is a recorded problem on the asset, not a failed import.
    """
    assert task.sha256 is not None
    assert task.info is not None
    assert task.library_path is not None
    if task.index_only:
        return  # a sidecar sits beside an original; an index-only asset has none
    info = task.info
    facts = SidecarFacts(
        sha256=task.sha256,
        original_name=task.entry.name,
        taken_local=info.taken.local,
        taken_offset_min=info.taken.offset_min,
        date_source=info.taken.source,
        imported_at=utcnow(),
        provenance=((task.source_name, task.entry.ref),),
        make=info.make,
        model=info.model,
        lens=info.lens,
        gps_lat=info.gps_lat,
        gps_lon=info.gps_lon,
        gps_alt=info.gps_alt,
        width=info.width,
        height=info.height,
    )
    try:
        for name in written_sidecar_paths(task.library_path, naming):
            written = write_sidecar(
                ctx.exiftool.get(),
                ctx.library_root,
                task.library_path,
                facts,
                UserFields.from_info(info),
                seed=info.source_sidecar,
                fsync=ctx.fsync,
                name=name,
                run_id=ctx.run_id,
            )
    except SidecarError as exc:
        problem = f"sidecar not written: {exc.reason}; `picpipe sidecars --write` tries again"
        info.problems.append(problem)
        task.problems.append(problem)
        return
    for name, value in written.user.catalog_values().items():
        setattr(info, name, value)
    info.sidecar_mtime_ns = written.mtime_ns


IMPORT_STAGES: tuple[Stage, ...] = (
    sniff_stage,
    known_checksum_stage,
    hash_stage,
    dedupe_stage,
    metadata_stage,
    place_stage,
    motion_stage,
)


def import_stages(settings: Settings) -> tuple[Stage, ...]:
    """The import stages these settings ask for: sidecars are written when sidecars.write."""
    if settings.sidecars.write and settings.sidecars.naming != "sha":
        return (*IMPORT_STAGES, functools.partial(sidecar_stage, naming=settings.sidecars.naming))
    if settings.sidecars.write:
        return (*IMPORT_STAGES, sidecar_stage)
    return IMPORT_STAGES


def find_sidecar(path: str | bytes) -> str | bytes | None:
    """An XMP sidecar that came with the file: ``name.ext.xmp`` or ``name.xmp`` (any case)."""
    stem = os.path.splitext(path)[0]
    candidates: list[Any] = []
    for base in (path, stem):
        if isinstance(base, bytes):
            candidates += [base + b".xmp", base + b".XMP"]
        else:
            candidates += [base + ".xmp", base + ".XMP"]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate  # type: ignore[no-any-return]
    return None


def _extra_args(name: str) -> tuple[str, ...]:
    # -struct: face regions come as structures (pipeline/descriptive.py).
    # AVCHD keeps its date in H.264 SEI that only exiftool's -ee reaches in every case.
    return ("-struct", "-ee") if name.lower().endswith((".mts", ".m2ts")) else ("-struct",)


def _payload(task: ImportTask, path: str | bytes | None, file_type: str | None) -> str | None:
    # A JPEG walked during the hash read has its answer; other files (and a JPEG whose strict
    # walk failed) are read again by type.
    if file_type == "JPEG" and task.jpeg_verdict in ("complete", "short", "not-jpeg"):
        return task.jpeg_payload
    return payload_sha256(path, file_type) if path is not None else None


def _jpeg_short(task: ImportTask, path: str | bytes | None) -> bool:
    if task.jpeg_verdict in ("complete", "short", "not-jpeg"):
        return task.jpeg_verdict == "short"
    # The lenient walk tolerates stray bytes between segments, as libjpeg does.
    return path is not None and jpeg_truncated(path)


def _checks_sha1(source: Source, task: ImportTask) -> bool:
    return source.caps.server_checksum == "sha1" and task.entry.checksum is not None


def _all(feeds: list[Callable[[memoryview], object]]) -> Callable[[memoryview], object]:
    """One tee for the hash read that hands each chunk to every feed in turn."""
    if len(feeds) == 1:
        return feeds[0]

    def tee(chunk: memoryview) -> None:
        for feed in feeds:
            feed(chunk)

    return tee


def _present(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False
