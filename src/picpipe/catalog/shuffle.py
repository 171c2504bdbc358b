"""The ``/files`` shuffle: each client sees every matching photo once before any repeats.

A round is a random order of the photos matching one filter, written to ``shuffle_entry``
(one row per photo with a random ``rank``) when the round starts. A pick takes the unshown
entry of lowest rank through the index ``(client, filter_key, shown, rank)`` and marks it
shown, so a pick costs the same at 100 or 100,000 photos and the order is a true shuffle.
Everything lives in the catalog: a restart (or another server process) carries on where the
last pick left off. Photos imported during a round join it (checked at most once a minute);
photos that stopped matching (left the album) are skipped. When every entry was shown the
round starts again, not with the photo shown last.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, exists, false, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from picpipe.catalog.models import Asset, ShuffleEntry, ShuffleRound
from picpipe.errors import CatalogError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from picpipe.catalog.browse import AssetFilter

# Each lost race means another pick succeeded, so this bound is not reached in practice.
ATTEMPTS = 20
RETRY_PAUSE = 0.01  # seconds, times the attempt number, at most
SYNC_EVERY = timedelta(minutes=1)  # how often a round looks for newly imported photos
# Imports stamp imported_at before they commit: look back this far for late arrivals.
IMPORT_GRACE = timedelta(hours=1)
FORGET_AFTER = timedelta(days=30)  # rounds unused this long are deleted (e.g. past days)


@dataclass(frozen=True, slots=True)
class Shuffle:
    """One client's walk through the photos matching ``where``."""

    client: str
    where: AssetFilter

    def pick(self, db: Session, *, now: datetime) -> Asset | None:
        """The next photo for this client, recorded as shown and committed; None if none match.

        ``now`` is naive UTC, like ``imported_at``, with sub-second precision (the photo shown
        last is the one with the latest ``shown_at``).

        Safe against concurrent picks by the same client (threads or processes): an entry
        another request claimed first is skipped. Raises CatalogError when the catalog keeps
        refusing the writes.
        """
        key = self.where.key()
        for attempt in range(ATTEMPTS):
            try:
                asset = self._pick(db, key, now)
                db.commit()
            except (IntegrityError, OperationalError, CatalogError) as exc:
                # A concurrent request started the same round first, or (SQLite) another
                # writer committed since this transaction read: start over on fresh data,
                # after a short random pause so that racing requests fall out of step.
                db.rollback()
                if attempt == ATTEMPTS - 1:
                    raise CatalogError(detail=f"no photo could be picked ({exc})") from exc
                time.sleep(random.uniform(0, RETRY_PAUSE * (attempt + 1)))
                continue
            return asset
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _pick(self, db: Session, key: str, now: datetime) -> Asset | None:
        # Write first: on SQLite the transaction then holds the write lock (waiting for it
        # under busy_timeout) and reads the newest data, instead of failing on commit because
        # another pick wrote after this one's first read.
        touched = db.execute(
            update(ShuffleRound)
            .where(ShuffleRound.client == self.client, ShuffleRound.filter_key == key)
            .values(used_at=now)
        )
        current = db.get(ShuffleRound, (self.client, key)) if touched.rowcount else None  # type: ignore[attr-defined]
        fresh = current is None
        if current is None:
            current = self._start(db, key, now)
        elif now - current.synced_at >= SYNC_EVERY:
            self._fill(db, key, since=current.started_at - IMPORT_GRACE)
            current.synced_at = now
        current.used_at = now
        avoid: str | None = None
        while True:
            sha256 = self._next(db, key, avoid=avoid)
            if sha256 is None and avoid is not None:
                sha256 = self._next(db, key, avoid=None)  # the only photo: show it again
            if sha256 is None:
                if fresh:
                    return None  # a round just filled and still empty: nothing matches
                avoid = self._last_shown(db, key)
                self._restart(db, current, key, now)
                fresh = True
                continue
            if not self._still_matches(db, sha256):
                self._drop(db, key, sha256)
                continue
            if not self._claim(db, key, sha256, now):
                continue  # another request showed it a moment ago
            return db.get(Asset, sha256)

    # -- rounds ------------------------------------------------------------------------

    def _start(self, db: Session, key: str, now: datetime) -> ShuffleRound:
        # Rounds of this client nobody asked for in a month (e.g. "on this day" of past
        # days) go, with their entries.
        db.execute(
            delete(ShuffleRound).where(
                ShuffleRound.client == self.client, ShuffleRound.used_at < now - FORGET_AFTER
            )
        )
        current = ShuffleRound(
            client=self.client, filter_key=key, started_at=now, synced_at=now, used_at=now
        )
        db.add(current)
        db.flush()
        self._fill(db, key, since=None)
        return current

    def _restart(self, db: Session, current: ShuffleRound, key: str, now: datetime) -> None:
        db.execute(
            delete(ShuffleEntry).where(
                ShuffleEntry.client == self.client, ShuffleEntry.filter_key == key
            )
        )
        current.started_at = current.synced_at = now
        self._fill(db, key, since=None)

    def _fill(self, db: Session, key: str, *, since: datetime | None) -> None:
        """Add the matching photos the round does not hold yet, each at a random rank.

        ``since`` limits the search to photos imported from then on (uses the imported_at
        index); None adds every matching photo (a round's start, one INSERT … SELECT).
        """
        source = select(
            literal(self.client),
            literal(key),
            Asset.sha256,
            func.random(),  # a float on PostgreSQL, a 64-bit integer on SQLite: both order
            false(),
        ).where(*self.where.clauses())
        if since is not None:
            held = (
                exists()
                .where(ShuffleEntry.client == self.client)
                .where(ShuffleEntry.filter_key == key)
                .where(ShuffleEntry.sha256 == Asset.sha256)
            )
            source = source.where(Asset.imported_at >= since, ~held)
        columns = ["client", "filter_key", "sha256", "rank", "shown"]
        db.execute(insert(ShuffleEntry).from_select(columns, source))

    # -- entries -----------------------------------------------------------------------

    def _next(self, db: Session, key: str, *, avoid: str | None) -> str | None:
        query = select(ShuffleEntry.sha256).where(
            ShuffleEntry.client == self.client,
            ShuffleEntry.filter_key == key,
            ShuffleEntry.shown == false(),
        )
        if avoid is not None:
            query = query.where(ShuffleEntry.sha256 != avoid)
        return db.scalar(query.order_by(ShuffleEntry.rank).limit(1))

    def _last_shown(self, db: Session, key: str) -> str | None:
        return db.scalar(
            select(ShuffleEntry.sha256)
            .where(ShuffleEntry.client == self.client, ShuffleEntry.filter_key == key)
            .where(ShuffleEntry.shown_at.is_not(None))
            .order_by(ShuffleEntry.shown_at.desc())
            .limit(1)
        )

    def _still_matches(self, db: Session, sha256: str) -> bool:
        query = select(Asset.sha256).where(Asset.sha256 == sha256, *self.where.clauses())
        return db.scalar(query) is not None

    def _drop(self, db: Session, key: str, sha256: str) -> None:
        db.execute(
            delete(ShuffleEntry).where(
                ShuffleEntry.client == self.client,
                ShuffleEntry.filter_key == key,
                ShuffleEntry.sha256 == sha256,
            )
        )

    def _claim(self, db: Session, key: str, sha256: str, now: datetime) -> bool:
        """Mark the entry shown; False when another request did first."""
        result = db.execute(
            update(ShuffleEntry)
            .where(
                ShuffleEntry.client == self.client,
                ShuffleEntry.filter_key == key,
                ShuffleEntry.sha256 == sha256,
                ShuffleEntry.shown == false(),
            )
            .values(shown=True, shown_at=now)
        )
        return bool(getattr(result, "rowcount", 0) == 1)
