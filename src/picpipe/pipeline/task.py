"""ImportTask: the one object that flows through the stages, with its outcome and error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from picpipe.catalog.queries import KnownFile
    from picpipe.errors import PicpipeError
    from picpipe.events import Outcome
    from picpipe.pipeline.metadata import MediaInfo
    from picpipe.pipeline.motion import MotionVideo
    from picpipe.sources.base import SourceEntry


@dataclass(frozen=True, slots=True)
class EmbeddedAsset:
    """An asset extracted from a task's file, placed in the library: its provenance is the
    file's asset (``embedded_in``), it has no source file of its own."""

    sha256: str
    size: int
    info: MediaInfo
    library_path: str
    name: str
    embedded_in: str


@dataclass(slots=True, eq=False)
class ImportTask:
    """One source file on its way into the library: plain data (names, the entry, what the
    catalog knew, the results so far), so it can cross a process or machine boundary; the
    source itself is looked up by name where the task runs (`StageContext.sources`).

    Stages fill ``sha256``, ``info`` and ``library_path`` and set ``outcome``; the runner sets
    ``error`` (and outcome ``failed``) when a stage raises. A task with an outcome is done.
    """

    source_name: str
    source_id: int
    entry: SourceEntry
    known: KnownFile | None = None
    sha256: str | None = None
    info: MediaInfo | None = None
    library_path: str | None = None
    outcome: Outcome | None = None
    error: PicpipeError | None = None
    problems: list[str] = field(default_factory=list)
    attempts: int = 0
    owns_claim: bool = False  # holds the catalog claim on its content
    deferred: bool = False  # waits for a twin (this run or another) holding that claim
    written: bool = False  # this task wrote the original (bytes added to the library)
    restores: bool = False  # the content is catalogued but its original was missing
    # Index mode (`mode: index`): where the one read of the file was staged for metadata and
    # thumbnails (`library/staging.py`), and that the asset keeps no library original.
    staged: str | None = None
    index_only: bool = False
    fills_index: bool = False  # a library-mode copy of an index-only asset: placed now
    skip_reason: str | None = None  # outcome "skipped": why (not media, temp name, rule ...)
    # What the hash stage's read learnt of a JPEG (`pipeline/jpeg_stream.py`): its verdict
    # (None: not walked) and payload hash, so the metadata stage need not read it again.
    jpeg_verdict: str | None = None
    jpeg_payload: str | None = None
    jpeg_end: int | None = None  # offset after the JPEG's EOI: what follows is a trailer
    motion: MotionVideo | None = None  # the video inside a motion photo (`pipeline/motion.py`)
    # Assets found inside this file (a motion photo's video), recorded with it.
    embedded: list[EmbeddedAsset] = field(default_factory=list)

    @property
    def display(self) -> str:
        """How people see this file: ``source:relative/path``."""
        return f"{self.source_name}:{self.entry.ref}"

    @property
    def done(self) -> bool:
        return self.outcome is not None
