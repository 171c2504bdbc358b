"""What an import does around the listing of a source that remembers (``caps.incremental``)
or relates (``caps.relations``) its files: a remote server such as Immich.

- Before the listing: the source resumes from the state it saved after its last run.
- During it: a partial listing (changes only) settles no folder and marks nothing gone but
  what the source reports deleted (``gone_refs``).
- After the files are recorded: the source's albums and Live Photo pairs go to the catalog,
  then its new state (which never passes a ref that failed in this run).
For every other source each step does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from picpipe.catalog.queries import mark_gone
from picpipe.catalog.remote_sources import (
    link_ref_pairs,
    record_source_albums,
    save_source_state,
    source_state,
)

if TYPE_CHECKING:
    from picpipe.catalog.db import Catalog
    from picpipe.catalog.queries import KnownFile
    from picpipe.sources.base import IncrementalSource, RelatingSource, Source


class RemoteImport:
    """One source's bookkeeping in one import (see the module docstring)."""

    def __init__(self, catalog: Catalog, source: Source, source_id: int) -> None:
        self.catalog = catalog
        self.source = source
        self.source_id = source_id
        self.failed: set[str] = set()  # refs that failed in this run
        self._gone: list[int] = []  # rows the source reported deleted
        self._incremental = cast("IncrementalSource", source) if source.caps.incremental else None
        if self._incremental is not None:
            with catalog.session() as db:
                self._incremental.resume(source_state(db, source_id))

    @property
    def partial(self) -> bool:
        """The listing covers only changes: nothing missing from it is gone."""
        return self._incremental is not None and self._incremental.listing_partial

    def unlisted(self, known: dict[str, KnownFile]) -> None:
        """Rows of a listed folder that the listing did not name: gone only if reported."""
        if self._incremental is not None and self.partial:
            reported = self._incremental.gone_refs
            self._gone += [k.id for ref, k in known.items() if ref in reported and not k.gone]

    def finish(self) -> None:
        """After the source's outcomes are recorded: relations, deletions, the new state."""
        if self.source.caps.relations:
            relations = cast("RelatingSource", self.source).relations()
            with self.catalog.write() as db:
                record_source_albums(db, self.source_id, relations.albums)
                link_ref_pairs(db, self.source_id, relations.live_pairs)
        if self._incremental is not None:
            state = self._incremental.next_state(self.failed)
            with self.catalog.write() as db:
                mark_gone(db, self._gone)
                save_source_state(db, self.source_id, state)
