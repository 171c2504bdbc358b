"""The Source protocol: list what is there, open a file, watch for changes.

Contract (every kind, checked by ``tests/conformance``):
- ``listing`` reads no file content and never modifies anything. It yields each folder's files
  (every file: those it will not import carry ``skipped`` with the reason) in one
  `FolderListing` (a folder listed in two pieces is allowed but loses the rescan shortcut of
  folder digests). Problems with one folder or file are yielded as `ScanProblem`
  values, and the listing goes on.
- ``open`` yields a binary stream of the entry's bytes. It raises an ``ItemError``: VanishedFile
  when the entry is gone, UnreadableFile when it cannot be read, TornRead when the bytes changed
  while the stream was open (detected on exit).
- ``album_members`` exists only for kinds with ``caps.albums``: the albums of the last
  complete listing (`SourceAlbum`); an album not listed is left as it was.
- ``remove`` exists only for kinds with ``caps.can_remove`` and is called only by ``--move``
  after the library copy is verified and recorded.
- The kind's class has ``Options``: a pydantic model of its config entry without ``kind``
  (unknown keys forbidden), checked by `source_options` when the settings load.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from picpipe.errors import ConfigError

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager

SourceMode = Literal["library", "index"]
DEFAULT_POLL_SECONDS = 60.0  # what photos-sync polled at


class CommonSourceOptions(BaseModel):
    """Options every source kind accepts, read by the pipeline and the service, not the kind.

    ``mode: index`` keeps the catalog row, thumbnails and provenance of each file but not its
    original (full resolution is fetched from the source on demand); ``poll_seconds`` is how
    often `picpipe watch` runs a source that cannot watch for changes. A kind's ``Options``
    inherits from this model.
    """

    model_config = ConfigDict(extra="forbid")

    mode: SourceMode = "library"
    poll_seconds: float = Field(default=DEFAULT_POLL_SECONDS, gt=0)


def source_mode(raw: dict[str, Any]) -> SourceMode:
    """The ``mode`` of one configured source entry (validated when the settings loaded)."""
    return "index" if raw.get("mode") == "index" else "library"


def poll_seconds(raw: dict[str, Any]) -> float:
    """The ``poll_seconds`` of one configured source entry (its default when absent)."""
    value = raw.get("poll_seconds", DEFAULT_POLL_SECONDS)
    return float(value) if isinstance(value, int | float) else DEFAULT_POLL_SECONDS


@dataclass(frozen=True, slots=True)
class SourceCaps:
    """Optional abilities, declared as data so callers check flags rather than probing."""

    can_watch: bool = False
    stable_ids: bool = False
    server_checksum: str | None = None
    can_remove: bool = False
    local_paths: bool = False  # entries have a local file path tools such as exiftool can read
    # A volume that comes and goes (a camera card): sessions per insertion, "safe to format".
    removable: bool = False
    # Lists only what changed since a mark kept in the catalog between runs
    # (`IncrementalSource`); such a listing cannot tell which files are gone.
    incremental: bool = False
    # Refs are the keys a destination of this kind stores (Immich asset ids): an entry whose
    # ref is a verified replica's key is picpipe's own upload, known without a download.
    refs_are_keys_of: str | None = None
    # Knows albums and Live Photo halves by ref (`RelatingSource`): recorded after the import.
    relations: bool = False
    # The source has albums: ``album_members()`` after a listing says which refs are in which
    # (the import records them as picpipe albums).
    albums: bool = False


class SourceEntry(NamedTuple):
    """One file in a source. ``ref`` is stable within the source (relative path, item id).

    A named tuple rather than a dataclass: a rescan makes one per file, and this is the
    cheapest immutable value Python has.
    """

    ref: str
    name: str
    size: int
    mtime_ns: int
    local_path: str | None = None
    checksum: str | None = None
    extras: dict[str, Any] | None = None
    # Where the source has one: a chmod or a same-mtime rewrite changes it, so it is a change.
    ctime_ns: int | None = None
    # Why the source accounts for this file without importing it (temp name, hidden, ignored
    # by rule, sidecar); None for a file to import.
    skipped: str | None = None
    # The name says nothing about the content (unknown or missing extension): the import
    # reads its first bytes (`sources/sniff.py`) and skips it when it is not media.
    sniff: bool = False


class FolderListing:
    """The files of one folder (album, page) of a source, listed in one piece.

    ``fingerprint`` is a cheap list of plain tuples that changes whenever any file's name,
    size or mtime does; ``entries`` are built from it only when asked for, because a rescan
    of an unchanged folder never needs them.
    """

    __slots__ = ("_build", "_entries", "fingerprint", "folder")

    def __init__(
        self,
        folder: str,
        entries: list[SourceEntry] | None = None,
        *,
        fingerprint: list[tuple[Any, ...]] | None = None,
        build: Callable[[], list[SourceEntry]] | None = None,
    ) -> None:
        self.folder = folder
        self._entries = entries
        self._build = build
        if fingerprint is None:
            fingerprint = [(e.ref, e.size, e.mtime_ns) for e in entries or ()]
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.fingerprint)

    @property
    def entries(self) -> list[SourceEntry]:
        if self._entries is None:
            self._entries = self._build() if self._build is not None else []
        return self._entries


@dataclass(frozen=True, slots=True)
class SourceAlbum:
    """One album of a source as its last listing saw it: ``members`` maps each ref in it to
    the source's own key for that item (a Synology cache key), or None."""

    external_id: str
    name: str
    members: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """Something in the listing that could not be read (a folder that vanished, a loop)."""

    ref: str
    reason: str


class Source(Protocol):
    kind: ClassVar[str]
    caps: ClassVar[SourceCaps]
    name: str

    @property
    def location(self) -> str: ...

    def listing(self) -> Iterator[FolderListing | ScanProblem]: ...

    def open(self, entry: SourceEntry) -> AbstractContextManager[BinaryIO]: ...

    def changes(self, stop: threading.Event) -> Iterator[list[SourceEntry]]: ...

    def remove(self, entry: SourceEntry) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SourceRelations:
    """What a source says about its files beyond their bytes, by ref.

    ``albums``: server album id → (name, every member ref); each album given is complete, its
    picpipe album's members are replaced. ``live_pairs``: (still ref, motion ref).
    """

    albums: dict[str, tuple[str, list[str]]]
    live_pairs: list[tuple[str, str]]


class RelatingSource(Source, Protocol):
    """A source with ``caps.relations``: after its files are recorded, the import asks for
    `relations` (of the last listing) and records the albums and pairs."""

    def relations(self) -> SourceRelations: ...


class IncrementalSource(Source, Protocol):
    """A source with ``caps.incremental``; the import calls, in this order:

    ``resume(state)`` with what ``next_state`` returned after the last run ({} at first),
    then ``listing()``; ``listing_partial`` says whether that listing covered only changes
    (no file may then be marked gone but those in ``gone_refs``: deletions the source saw
    among the changes); ``next_state(failed)`` after the run's outcomes are recorded, with the
    refs that failed, so the mark never passes a file to try again.
    """

    def resume(self, state: dict[str, Any]) -> None: ...

    @property
    def listing_partial(self) -> bool: ...

    @property
    def gone_refs(self) -> set[str]: ...

    def next_state(self, failed: set[str]) -> dict[str, Any]: ...


class AlbumSource(Protocol):
    """The extra of a kind with ``caps.albums``."""

    def album_members(self) -> list[SourceAlbum]: ...


def source_kinds() -> dict[str, Any]:
    """Every registered source kind (built-ins register through the same entry points)."""
    return {ep.name: ep for ep in entry_points(group="picpipe.sources")}


def load_source_kind(kind: str) -> Any:
    kinds = source_kinds()
    if kind not in kinds:
        raise ConfigError(detail=f"unknown source kind {kind!r}; known: {', '.join(sorted(kinds))}")
    return kinds[kind].load()


def source_options(name: str, raw: dict[str, Any]) -> Any:
    """Validate one ``sources.<name>`` entry against its kind's ``Options`` (no I/O)."""
    from pydantic import ValidationError

    from picpipe.redact import validation_problems

    kind = raw.get("kind", "folder")
    kinds = source_kinds()
    if not isinstance(kind, str) or kind not in kinds:
        raise ConfigError(
            detail=f"sources.{name}.kind: unknown kind {kind!r}; known: {', '.join(sorted(kinds))}"
        )
    options_model = getattr(load_source_kind(kind), "Options", None)
    if options_model is None:
        return None  # a kind without options of its own takes none
    fields = {k: v for k, v in raw.items() if k != "kind"}
    try:
        return options_model.model_validate(fields)
    except ValidationError as exc:
        # "key: problem" only: pydantic's own text repeats the values (a password, a key).
        problems = validation_problems(exc, prefix=f"sources.{name}.", model=options_model)
        raise ConfigError(detail="; ".join(problems)) from None


def iter_entries(source: Source) -> Iterator[SourceEntry | ScanProblem]:
    """The listing flattened to single entries (for watching and simple callers)."""
    for item in source.listing():
        if isinstance(item, ScanProblem):
            yield item
        else:
            yield from item.entries


def find_entry(source: Source, ref: str) -> SourceEntry | None:
    """The current entry of ``ref`` in ``source`` (None when it is not there any more).

    Generic over kinds: a listing, never a content read. The listing of the ref's own folder
    (its folder part, as folder kinds list) is checked first, so only that folder's entries
    are built; other kinds' listings (albums of item ids) are searched after. Skipped entries
    do not count.
    """
    folder = ref.rpartition("/")[0]
    others: list[FolderListing] = []
    for item in source.listing():
        if isinstance(item, ScanProblem):
            continue
        if item.folder != folder:
            others.append(item)
            continue
        for entry in item.entries:
            if entry.ref == ref and entry.skipped is None:
                return entry
    for listing in others:
        for entry in listing.entries:
            if entry.ref == ref and entry.skipped is None:
                return entry
    return None
