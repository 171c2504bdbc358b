"""Runs leased in the catalog: owner, heartbeat, lease expiry, exclusion keys and claims.

A run is a ``session`` row with an owner (host, pid, the pid's start time) and a lease it
renews while it works. It is **stale** only when its lease has expired, or when it belongs to
this host and its process is gone (borg's rule for its own locks); only stale runs are
recovered. Exclusion ("one import of source X at a time") is a `RunLease` row per key, taken
in the same transaction that creates the run, so it holds across processes and machines. A
`Claim` marks work in hand (content being placed, a key being uploaded) with the run's lease.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update

from picpipe.catalog.models import Claim, ImportSession, RunLease
from picpipe.catalog.queries import utcnow
from picpipe.catalog.upsert import insert_ignore
from picpipe.errors import CatalogBusy
from picpipe.hashing import sha256_bytes

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

RUNNING = "running"


WATCH_KIND = "watch"  # the run of a live source's watcher: its progress JSON is its status


def lease_now() -> datetime:
    """Naive UTC now with microseconds: leases of a few seconds need more than seconds."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who runs a run: host name (``runs.host``), pid and that process's start time."""

    host: str
    pid: int
    started: int | None

    @classmethod
    def this_process(cls, host: str) -> Owner:
        return cls(host=host[:200], pid=os.getpid(), started=process_start(os.getpid()))


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run as `status` shows it, whichever machine runs it."""

    id: int
    kind: str
    device: str | None
    host: str | None
    pid: int | None
    started_at: datetime
    heartbeat_at: datetime | None
    lease_until: datetime | None
    progress: dict[str, Any] | None
    counts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.id,
            "kind": self.kind,
            "device": self.device,
            "host": self.host,
            "pid": self.pid,
            "started_at": _iso(self.started_at),
            "heartbeat_at": _iso(self.heartbeat_at),
            "lease_until": _iso(self.lease_until),
            "progress": self.progress,
            "counts": self.counts,
        }


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (None without /proc or pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def owner_alive(pid: int | None, started: int | None) -> bool:
    """Whether the local process ``pid`` still runs and is the same process (same start)."""
    if pid is None:
        return False
    now = process_start(pid)
    if now is None:
        return False
    return started is None or now == started


def is_stale(run: ImportSession, *, host: str, now: datetime) -> bool:
    """A running run whose lease expired, or whose local owner process is gone."""
    if run.status != RUNNING:
        return False
    if run.lease_until is None or run.lease_until < now:
        return True
    return run.host == host[:200] and not owner_alive(run.pid, run.owner_started)


# -- starting, renewing and ending runs ------------------------------------------------------


def begin_run(
    db: Session,
    *,
    kind: str,
    device: str,
    owner: Owner,
    lease_seconds: float,
    keys: Sequence[str] = (),
) -> ImportSession:
    """Create a running run holding the exclusion ``keys``; raises CatalogBusy naming the live
    run that holds one of them. A key held by a stale run is taken over. Call inside a
    transaction: on CatalogBusy nothing of this call stays."""
    now = lease_now()
    run = ImportSession(
        kind=kind,
        device=device,
        status=RUNNING,
        started_at=utcnow(),
        seen=0,
        new=0,
        duplicate=0,
        unchanged=0,
        failed=0,
        bytes=0,
        pid=owner.pid,
        host=owner.host,
        owner_started=owner.started,
        heartbeat_at=now,
        lease_until=now + timedelta(seconds=lease_seconds),
    )
    db.add(run)
    db.flush()
    for key in keys:
        row = {"key": key, "session_id": run.id, "acquired_at": utcnow()}
        if insert_ignore(db, RunLease, [row], conflict=["key"]):
            continue
        holder = db.execute(
            select(ImportSession)
            .join(RunLease, RunLease.session_id == ImportSession.id)
            .where(RunLease.key == key)
        ).scalar_one_or_none()
        if holder is not None and not is_stale(holder, host=owner.host, now=now):
            raise CatalogBusy(detail=describe_holder(key, holder))
        taken = db.execute(
            update(RunLease)
            .where(
                RunLease.key == key,
                RunLease.session_id == (holder.id if holder is not None else -1),
            )
            .values(session_id=run.id, acquired_at=utcnow())
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise CatalogBusy(detail=f"{key} was taken by another run just now")
    return run


def describe_holder(key: str, holder: ImportSession) -> str:
    return (
        f"{key} is held by {holder.kind} run {holder.id} on {holder.host}, pid {holder.pid},"
        f" since {holder.started_at:%Y-%m-%d %H:%M:%S} UTC"
    )


def renew_lease(
    db: Session,
    run_id: int,
    *,
    lease_seconds: float,
    keys: int,
    progress: dict[str, Any] | None = None,
) -> bool:
    """Renew the run's lease (and store its progress); False when the run lost it: it is no
    longer running, or another run took over one of its ``keys`` exclusion leases."""
    now = lease_now()
    values: dict[str, Any] = {
        "heartbeat_at": now,
        "lease_until": now + timedelta(seconds=lease_seconds),
    }
    if progress is not None:
        values["progress"] = progress
    done = db.execute(
        update(ImportSession)
        .where(ImportSession.id == run_id, ImportSession.status == RUNNING)
        .values(**values)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    held = db.scalar(
        select(func.count()).select_from(RunLease).where(RunLease.session_id == run_id)
    )
    return int(held or 0) == keys


def end_run(db: Session, run_id: int, status: str, *, error: str | None = None) -> None:
    """Mark the run ended with ``status`` and drop its leases and claims."""
    values: dict[str, Any] = {"status": status, "ended_at": utcnow(), "lease_until": None}
    if error is not None:
        values["error"] = error[:2000]
    db.execute(update(ImportSession).where(ImportSession.id == run_id).values(**values))
    release_run(db, run_id)


def release_run(db: Session, run_id: int) -> None:
    db.execute(delete(RunLease).where(RunLease.session_id == run_id))
    db.execute(delete(Claim).where(Claim.session_id == run_id))


def stale_runs(db: Session, *, host: str, kinds: Sequence[str] = ()) -> list[ImportSession]:
    """Runs still marked running whose lease expired or whose local owner is gone."""
    query = select(ImportSession).where(ImportSession.status == RUNNING)
    if kinds:
        query = query.where(ImportSession.kind.in_(kinds))
    now = lease_now()
    return [run for run in db.scalars(query) if is_stale(run, host=host, now=now)]


def mark_interrupted(db: Session, run_ids: Sequence[int]) -> None:
    """Stale runs end as interrupted; their leases and claims are freed."""
    for run_id in run_ids:
        db.execute(
            update(ImportSession)
            .where(ImportSession.id == run_id, ImportSession.status == RUNNING)
            .values(status="interrupted", ended_at=utcnow(), lease_until=None)
        )
        release_run(db, run_id)


def active_runs(db: Session, *, host: str) -> list[RunInfo]:
    """Every run marked running and not stale, oldest first, with owner and progress."""
    now = lease_now()
    rows = db.scalars(
        select(ImportSession).where(ImportSession.status == RUNNING).order_by(ImportSession.id)
    )
    return [
        RunInfo(
            id=r.id,
            kind=r.kind,
            device=r.device,
            host=r.host,
            pid=r.pid,
            started_at=r.started_at,
            heartbeat_at=r.heartbeat_at,
            lease_until=r.lease_until,
            progress=r.progress,
            counts={
                "seen": r.seen,
                "new": r.new,
                "duplicate": r.duplicate,
                "unchanged": r.unchanged,
                "failed": r.failed,
                "bytes": r.bytes,
            },
        )
        for r in rows
        if not is_stale(r, host=host, now=now)
    ]


# -- claims ---------------------------------------------------------------------------------


def try_claim(db: Session, key: str, run_id: int, *, host: str) -> int | None:
    """Claim ``key`` for ``run_id``: None when the claim is now this run's, else the id of
    the live run that holds it. A claim of a stale run is taken over."""
    row = {"key": key, "session_id": run_id, "created_at": utcnow()}
    if insert_ignore(db, Claim, [row], conflict=["key"]):
        return None
    holder = db.execute(
        select(ImportSession)
        .join(Claim, Claim.session_id == ImportSession.id)
        .where(Claim.key == key)
    ).scalar_one_or_none()
    if holder is None:  # released between our insert and this look: try once more
        return None if insert_ignore(db, Claim, [row], conflict=["key"]) else -1
    if holder.id == run_id:
        return run_id
    if not is_stale(holder, host=host, now=lease_now()):
        return holder.id
    taken = db.execute(
        update(Claim)
        .where(Claim.key == key, Claim.session_id == holder.id)
        .values(session_id=run_id, created_at=utcnow())
    )
    return None if taken.rowcount == 1 else holder.id  # type: ignore[attr-defined]


def release_claims(db: Session, run_id: int, keys: Sequence[str]) -> None:
    """Drop this run's claims on ``keys`` (results committed, or the work failed)."""
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        db.execute(delete(Claim).where(Claim.session_id == run_id, Claim.key.in_(chunk)))


def content_claim(sha256: str) -> str:
    return f"content:{sha256}"


def key_claim(destination_id: int, remote_key: str) -> str:
    """The claim on a remote key; a key too long for the column is claimed by its digest."""
    claim = f"key:{destination_id}:{remote_key}"
    if len(claim) <= 400:
        return claim
    return f"key:{destination_id}:sha256:{sha256_bytes(remote_key.encode())}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None
