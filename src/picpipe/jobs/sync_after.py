"""After a sync's uploads: Live Photo links and albums where the destination kind has them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from picpipe.catalog import replicas as q
from picpipe.errors import DestinationError

if TYPE_CHECKING:
    import threading
    from collections.abc import Sequence

    from picpipe.catalog.db import Catalog
    from picpipe.jobs.sync_plan import SyncTarget
    from picpipe.jobs.sync_report import SyncReport


def link_pairs_and_albums(
    catalog: Catalog, targets: Sequence[SyncTarget], report: SyncReport, lock: threading.Lock
) -> None:
    """Link Live Photo pairs and fill albums (Immich); a destination error is one failure of
    that destination's report, the others go on."""
    for target in targets:
        backend: Any = target.backend
        try:
            if backend.caps.links_pairs:
                _link_pairs(catalog, target, backend)
            if backend.caps.albums:
                _fill_albums(catalog, target, backend)
        except DestinationError as exc:
            with lock:
                report.failures.append((target.name, "(pairs and albums)", exc.reason))
                report.destinations[target.name].failed += 1


def _link_pairs(catalog: Catalog, target: SyncTarget, backend: Any) -> None:
    with catalog.session() as db:
        pairs = q.unlinked_live_pairs(db, target.destination_id)
    if not pairs:
        return
    linked = set(backend.link_pairs([(s, v) for _sha, s, v in pairs]))
    done = [(sha, v) for sha, s, v in pairs if (s, v) in linked]
    with catalog.write() as db:
        q.mark_linked(db, target.destination_id, done)


def _fill_albums(catalog: Catalog, target: SyncTarget, backend: Any) -> None:
    with catalog.session() as db:
        wanted = q.albums_to_assign(db, target.destination_id)
    if not wanted:
        return
    done = backend.add_to_albums(
        {album: [key for _sha, key in members] for album, members in wanted.items()}
    )
    by_key = {key: sha for members in wanted.values() for sha, key in members}
    with catalog.write() as db:
        q.mark_in_albums(
            db,
            target.destination_id,
            {a: [by_key[k] for k in keys if k in by_key] for a, keys in done.items()},
        )
