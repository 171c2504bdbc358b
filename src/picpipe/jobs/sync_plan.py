"""Planning a sync: which assets each destination lacks, under which keys.

Plans are read in pages of `PAGE` assets in sha256 order and merged across destinations, so
one asset becomes one `SyncJob` with the work for every destination that needs it. New keys
are made collision-safe against the catalog and the run; where keys name their sha256, one
listing per folder replaces a check per object.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from picpipe.catalog import replicas as q
from picpipe.catalog.runs import key_claim, try_claim
from picpipe.destinations.base import AssetRef, Destination, collision_key
from picpipe.errors import PicpipeError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from concurrent.futures import ThreadPoolExecutor

    from picpipe.catalog.db import Catalog

log = logging.getLogger(__name__)

PAGE = 500
LIST_AT_LEAST = 8  # new content-addressed keys in one folder before listing it pays off
LIST_AT_MOST = 20_000  # objects a listing may return before per-object checks are cheaper


@dataclass(slots=True)
class SyncTarget:
    """One destination in a run: its backend, row id and pool."""

    name: str
    backend: Destination
    destination_id: int
    pool: ThreadPoolExecutor
    # A dry run writes nothing, so it cannot claim keys in the catalog: key → sha256 here.
    planned_keys: dict[str, str] = field(default_factory=dict)
    # Every key under ``listed_root`` as one listing found it at the start (None: not listed,
    # or too big to list whole); keys picpipe writes later are claimed in the catalog anyway.
    listed: set[str] | None = None
    listed_root: str = ""
    whole_listing_tried: bool = False
    # Reachability, checked once before the first remote call of the run (and again after
    # several transfers in a row failed as unreachable): None while fine, else why not.
    checked: bool = False
    down: str | None = None
    strikes: int = 0


@dataclass(slots=True)
class SyncJob:
    """One asset and the destinations that need something done with it."""

    asset: AssetRef
    library_path: str
    work: list[tuple[SyncTarget, q.PlannedAsset, str]]  # (target, plan row, key)
    absent: set[tuple[str, str]] = field(default_factory=set)  # (target, key) a listing lacked


class SyncPlanner:
    """Reads the plan of every target from the catalog; ``verify`` plans verified ones too."""

    def __init__(self, catalog: Catalog, *, verify: bool, host: str = "") -> None:
        self.catalog = catalog
        self.verify = verify
        self.host = host
        self.run_id: int | None = None  # set for a real run: new keys are claimed under it
        # Asked before a target's first remote call; False drops the target's work (it is
        # unreachable: one line for it, the other destinations go on). None: no check.
        self.reachable: Callable[[SyncTarget], bool] | None = None
        # Only these assets (a card session replicates the card's assets first); None: all.
        self.only: frozenset[str] | None = None

    def pages(self, targets: Sequence[SyncTarget]) -> Iterator[list[SyncJob]]:
        """Jobs in sha256 order, one per asset, grouped from every destination's plan."""
        streams = [self._plan_stream(t) for t in targets]
        merged = heapq.merge(*streams, key=lambda item: item[1].sha256)
        grouped = itertools.groupby(merged, key=lambda item: item[1].sha256)
        while True:
            # Each group must be read before groupby moves on (it shares the iterator).
            rows = {sha: list(items) for sha, items in itertools.islice(grouped, PAGE)}
            if not rows:
                return
            yield self._jobs(rows)

    def _plan_stream(self, target: SyncTarget) -> Iterator[tuple[SyncTarget, q.PlannedAsset]]:
        after = ""
        while True:
            with self.catalog.session() as db:
                page = q.plan_page(
                    db, target.destination_id, after=after, limit=PAGE, everything=self.verify
                )
            if not page:
                return
            for row in page:
                if self.only is None or row.sha256 in self.only:
                    yield target, row
            after = page[-1].sha256

    def _jobs(self, rows: dict[str, list[tuple[SyncTarget, q.PlannedAsset]]]) -> list[SyncJob]:
        if self.reachable is not None:
            down = {t.name for t in self._targets_of(rows) if not self.reachable(t)}
            if down:
                rows = {
                    sha: kept
                    for sha, items in rows.items()
                    if (kept := [(t, r) for t, r in items if t.name not in down])
                }
                if not rows:
                    return []
        shas = list(rows)
        with self.catalog.session() as db:
            provenance = q.first_provenance(db, shas)
            albums = q.album_names(db, shas)
            jobs = []
            assets = {
                sha: _asset_ref(items[0][1], provenance, albums) for sha, items in rows.items()
            }
            claims = {t.name: self._claims_for(db, t, rows, assets) for t in self._targets_of(rows)}
        for sha, items in rows.items():
            asset = assets[sha]
            work = []
            for target, row in items:
                key = (
                    row.remote_key or claims[target.name].get(sha) or target.backend.key_for(asset)
                )
                work.append((target, row, key))
            jobs.append(SyncJob(asset, items[0][1].library_path, work))
        self._list_content_addressed(jobs)
        return jobs

    def _list_content_addressed(self, jobs: list[SyncJob]) -> None:
        """Spare one existence check per new object where keys name their sha256.

        Such keys differ only below a common folder (``photos/``): one listing of it (up to
        `LIST_AT_MOST` objects, once per run) says which keys are free, as ``rclone`` does.
        A bigger destination is listed folder by folder (``photos/ab/``) where a page has
        several keys in one. Other keys, and a listing that fails, are checked one by one.
        """
        folders: dict[tuple[str, str], list[tuple[SyncJob, str]]] = {}
        targets: dict[str, SyncTarget] = {}
        for job in jobs:
            sha = job.asset.sha256
            for target, row, key in job.work:
                if row.replica_state is None and sha in key:
                    folders.setdefault((target.name, key[: key.index(sha)]), []).append((job, key))
                    targets[target.name] = target
        for target in targets.values():
            mine = [f for (n, f) in folders if n == target.name]
            if not target.whole_listing_tried:
                target.whole_listing_tried = True
                root = _common_folder(mine)
                target.listed = self._listing(target, root)
                target.listed_root = root
        for (name, folder), members in folders.items():
            target = targets[name]
            if target.listed is not None and folder.startswith(target.listed_root):
                present: set[str] | None = target.listed
            elif len(members) >= LIST_AT_LEAST and folder:
                present = self._listing(target, folder)
            else:
                present = None
            if present is None:
                continue
            for job, key in members:
                if key not in present:
                    job.absent.add((name, key))

    @staticmethod
    def _listing(target: SyncTarget, prefix: str) -> set[str] | None:
        """Keys under ``prefix``, or None when the listing fails or passes `LIST_AT_MOST`."""
        try:
            keys = itertools.islice((o.key for o in target.backend.list(prefix)), LIST_AT_MOST + 1)
            found = set(keys)
        except PicpipeError as exc:
            log.info(
                "%s: cannot list %r (%s); checking objects one by one", target.name, prefix, exc
            )
            return None
        return found if len(found) <= LIST_AT_MOST else None

    @staticmethod
    def _targets_of(rows: dict[str, list[tuple[SyncTarget, q.PlannedAsset]]]) -> list[SyncTarget]:
        seen: dict[str, SyncTarget] = {}
        for items in rows.values():
            for target, _row in items:
                seen.setdefault(target.name, target)
        return list(seen.values())

    def _claims_for(
        self,
        db: Any,
        target: SyncTarget,
        rows: dict[str, list[tuple[SyncTarget, q.PlannedAsset]]],
        assets: dict[str, AssetRef],
    ) -> dict[str, str]:
        """New keys for assets without one, made collision-safe against the catalog: each new
        key is claimed in the catalog under the run (a key another asset holds or claimed
        gets the collision-safe name instead)."""
        if target.backend.caps.keyed_by_server:
            return {}
        wanted: dict[str, str] = {}
        for sha, items in rows.items():
            for t, row in items:
                if t is target and row.remote_key is None:
                    wanted[sha] = target.backend.key_for(assets[sha])
        taken = q.claimed_keys(db, target.destination_id, list(set(wanted.values())))
        out: dict[str, str] = {}
        if not wanted:
            return out
        with self.catalog.write() as claims:
            for sha, key in wanted.items():
                holder = taken.get(key)
                if (holder is not None and holder != sha) or not self._claim(
                    claims, target, key, sha
                ):
                    key = collision_key(key, sha)
                    self._claim(claims, target, key, sha)
                out[sha] = key
        return out

    def _claim(self, db: Any, target: SyncTarget, key: str, sha: str) -> bool:
        """Whether ``key`` is now this run's for ``sha`` (in the catalog, or in the dry run)."""
        if self.run_id is None:
            return target.planned_keys.setdefault(key, sha) == sha
        claim = key_claim(target.destination_id, key)
        return try_claim(db, claim, self.run_id, host=self.host) is None


def _asset_ref(
    row: q.PlannedAsset, provenance: dict[str, tuple[str, int]], albums: dict[str, list[str]]
) -> AssetRef:
    source_path, mtime_ns = provenance.get(row.sha256, (row.original_name, 0))
    ext = row.library_path.rpartition(".")[2].lower()
    modified = None
    if mtime_ns:
        modified = _from_ns(mtime_ns)
    return AssetRef(
        sha256=row.sha256,
        size=row.size,
        ext=ext,
        kind=row.kind,
        taken_local=row.taken_local,
        taken_offset_min=row.taken_offset_min,
        original_name=row.original_name,
        source_path=source_path,
        mime_type=row.mime_type,
        duration=row.duration,
        pair_id=row.pair_id,
        pair_kind=row.pair_kind,
        albums=tuple(albums.get(row.sha256, ())),
        modified=modified,
    )


def _from_ns(mtime_ns: int) -> datetime:
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).replace(tzinfo=None)


def _common_folder(folders: list[str]) -> str:
    """The deepest folder (``a/b/``, or ``""``) that contains every one of ``folders``."""
    split = [f.split("/")[:-1] for f in folders]
    common: list[str] = []
    for parts in zip(*split, strict=False):
        if any(p != parts[0] for p in parts):
            break
        common.append(parts[0])
    return "".join(f"{p}/" for p in common)
