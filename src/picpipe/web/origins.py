"""Where an original's bytes come from when the library cannot give them: replicas, then sources.

`Origins.producer` returns a cache producer (``library/cache.py``) that tries each place that
should hold the asset's bytes, in order: every **verified replica** (``replica.state ==
'verified'``) at a destination still configured in ``settings.destinations``, read with
``Destination.read``; then every **source** file recorded with that SHA-256: a folder
source's file is read at ``source.location`` + ``source_file.ref``; a source of any other kind
still configured in ``settings.sources`` is opened by name, the entry found by its ref and
read with ``Source.open`` (how an index-only asset of a remote kind gets its full resolution;
a watched folder too). Each copy
is hashed as it is written to the cache and kept only when its SHA-256 and size match the
asset: a copy that does not match is discarded and the next place is tried. When none
matches, `OriginalUnreachable` is raised.

Destinations are opened once per `Origins` and closed by `close`. Messages that may reach an
HTTP client name no local path; the detail of each failed attempt goes to the log.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from picpipe.catalog import origins as queries
from picpipe.catalog.origins import AssetFacts
from picpipe.errors import EntryTooLarge, OriginalUnreachable, PicpipeError, VanishedFile
from picpipe.hashing import new_hasher
from picpipe.sources.base import find_entry
from picpipe.sources.configured import open_configured_source

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings
    from picpipe.destinations.base import Destination as DestinationKind
    from picpipe.library.cache import CacheSink
    from picpipe.sources.base import Source

log = logging.getLogger(__name__)
_READ = 1 << 20


def asset_facts(catalog: Catalog, sha256: str) -> AssetFacts | None:
    """The asset's row as `AssetFacts`, or None when the catalog does not know it."""
    with catalog.session() as db:
        return queries.asset_facts(db, sha256)


@dataclass(frozen=True, slots=True)
class Copy:
    """One place that should hold the bytes: a label for the log and a way to read them."""

    label: str
    read: Callable[[], Iterator[bytes]]


class Origins:
    """Replica and source copies of originals for one application (thread-safe)."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self._destinations: dict[str, DestinationKind | None] = {}
        self._sources: dict[str, Source | None] = {}
        self._lock = threading.Lock()

    def producer(self, facts: AssetFacts) -> Callable[[CacheSink], None]:
        """A cache producer writing ``facts``' original from the first copy that matches."""

        def produce(sink: CacheSink) -> None:
            copies = self.copies(facts.sha256)
            for copy in copies:
                try:
                    if self._write_verified(copy, facts, sink):
                        log.info("fetched %s from %s", facts.sha256[:12], copy.label)
                        return
                except (PicpipeError, OSError) as exc:
                    log.warning("%s: cannot read %s: %s", copy.label, facts.sha256[:12], exc)
                sink.reset()
            tried = (
                f"none of its {len(copies)} replica or source copies could be read intact"
                if copies
                else "it has no verified replica or readable source copy"
            )
            raise OriginalUnreachable(short=facts.sha256[:12], tried=tried)

        return produce

    def close(self) -> None:
        with self._lock:
            destinations, self._destinations = self._destinations, {}
            sources, self._sources = self._sources, {}
        for destination in destinations.values():
            if destination is not None:
                destination.close()
        for source in sources.values():
            if source is not None:
                source.close()

    # -- the copies ------------------------------------------------------------------------

    def copies(self, sha256: str) -> list[Copy]:
        """Every place that should hold ``sha256``'s bytes, in the order they are tried
        (also what `picpipe repair` restores from); each is checked by its reader's caller."""
        with self.catalog.session() as db:
            replicas = queries.verified_replicas(db, sha256)
            sources = queries.source_files(db, sha256)
        copies: list[Copy] = []
        for name, key in replicas:
            destination = self.destination(name)
            if destination is not None and key:
                copies.append(Copy(f"replica {name!r}", _reader(destination, key)))
        for name, kind, location, ref in sources:
            if kind == "folder":
                # A plain folder's ref is a path: read it there (a listing to find the entry
                # would walk the tree), configured or not.
                if (path := _inside(Path(location), ref)) is not None:
                    copies.append(Copy(f"source {name!r}", _file_reader(path)))
            elif name in self.settings.sources:
                copies.append(Copy(f"source {name!r}", partial(self._source_read, name, ref)))
        return copies

    def source(self, name: str) -> Source:
        """The configured source ``name``, opened once; raises ConfigError (or the kind's
        error) when it cannot be opened, and again on the next call."""
        with self._lock:
            found = self._sources.get(name)
            if found is not None:
                return found
        opened = open_configured_source(self.settings, name)
        with self._lock:
            self._sources[name] = opened
        return opened

    def _source_read(self, name: str, ref: str) -> Iterator[bytes]:
        # The entry as the source lists it now: a file changed since the import is read as
        # it is now, and refused by its hash (`_write_verified`), never sent.
        source = self.source(name)
        entry = find_entry(source, ref)
        if entry is None:
            raise VanishedFile(path=f"{name}:{ref}")
        with source.open(entry) as stream:
            while chunk := stream.read(_READ):
                yield chunk

    def destination(self, name: str) -> DestinationKind | None:
        """The configured destination ``name``, opened once; None when it is not configured."""
        with self._lock:
            if name in self._destinations:
                return self._destinations[name]
            raw = self.settings.destinations.get(name)
            opened: DestinationKind | None = None
            if raw is not None:
                from picpipe.destinations.base import open_destination

                try:
                    opened = open_destination(name, dict(raw))
                except (PicpipeError, ImportError) as exc:
                    log.warning("destination %r cannot be opened to fetch from: %s", name, exc)
            self._destinations[name] = opened
            return opened

    @staticmethod
    def _write_verified(copy: Copy, facts: AssetFacts, sink: CacheSink) -> bool:
        digest = new_hasher()
        size = 0
        try:
            for chunk in copy.read():
                size += len(chunk)
                digest.update(chunk)
                sink.write(chunk)
        except EntryTooLarge:
            log.warning(
                "%s: the copy of %s is larger than the asset", copy.label, facts.sha256[:12]
            )
            return False
        if size != facts.size or digest.hexdigest() != facts.sha256:
            log.warning(
                "%s: the copy of %s does not match its SHA-256; refused",
                copy.label,
                facts.sha256[:12],
            )
            return False
        return True


def _reader(destination: DestinationKind, key: str) -> Callable[[], Iterator[bytes]]:
    return lambda: destination.read(key)


def _file_reader(path: Path) -> Callable[[], Iterator[bytes]]:
    def read() -> Iterator[bytes]:
        with open(path, "rb", buffering=0) as stream:
            while chunk := stream.read(_READ):
                yield chunk

    return read


def _inside(root: Path, ref: str) -> Path | None:
    """``root/ref`` when ``ref`` is a plain relative path (no ``..``, not absolute)."""
    parts = PurePosixPath(ref).parts
    if not parts or PurePosixPath(ref).is_absolute() or ".." in parts or "\x00" in ref:
        return None
    return root.joinpath(*parts)


def open_library_file(root: Path, facts: AssetFacts) -> int | None:
    """An fd on the library original when the library can give it whole; else None.

    None covers a library root that is missing or unreadable (an unmounted NAS), a missing
    original, one replaced by a symbolic link and one whose size no longer matches the
    catalog (the cache then fetches a verified copy).
    """
    parts = PurePosixPath(facts.library_path).parts
    if not parts or ".." in parts or PurePosixPath(facts.library_path).is_absolute():
        return None
    try:
        # O_NOFOLLOW: originals are plain files picpipe placed; a symbolic link in their place
        # (the folders above may be links, the library root often is) is not followed.
        fd = os.open(root.joinpath(*parts), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        log.debug("library original of %s not readable: %s", facts.sha256[:12], exc.strerror)
        return None
    try:
        if os.fstat(fd).st_size != facts.size:
            log.warning("library original of %s has the wrong size", facts.sha256[:12])
            os.close(fd)
            return None
    except OSError:
        os.close(fd)
        return None
    return fd


__all__ = ["AssetFacts", "Copy", "Origins", "asset_facts", "open_library_file"]
