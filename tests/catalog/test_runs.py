"""Runs leased in the catalog: exclusion keys, stale runs, claims, heartbeat and a lost lease,
on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from picpipe.catalog import runs as q
from picpipe.catalog.db import Catalog, open_catalog
from picpipe.catalog.models import ImportSession
from picpipe.config import RunOptions
from picpipe.errors import CatalogBusy, RunLeaseLost
from picpipe.jobs.runs import LeasedRun


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    opened = open_catalog(catalog_url)
    try:
        yield opened
    finally:
        opened.close()


def begin(catalog: Catalog, owner: q.Owner, *keys: str, lease: float = 30.0) -> int:
    with catalog.session() as db, db.begin():
        return q.begin_run(
            db, kind="import", device="x", owner=owner, lease_seconds=lease, keys=keys
        ).id


def here() -> q.Owner:
    return q.Owner.this_process("host-a")


def test_a_key_held_by_a_live_run_is_busy_and_names_its_holder(catalog: Catalog) -> None:
    first = begin(catalog, here(), "import:phone")
    with pytest.raises(CatalogBusy, match=rf"import:phone is held by import run {first} on host-a"):
        begin(catalog, q.Owner("host-b", 1, None), "import:phone")
    with catalog.session() as db:
        # the refused run left nothing behind
        assert [r.id for r in q.active_runs(db, host="host-b")] == [first]
    begin(catalog, q.Owner("host-b", 1, None), "import:camera")  # other keys are free


def test_an_expired_lease_is_taken_over_and_its_owner_learns_it_lost(catalog: Catalog) -> None:
    first = begin(catalog, q.Owner("host-b", 4242, None), "sync:nas", lease=0.2)
    time.sleep(0.3)
    with catalog.session() as db:
        assert [r.id for r in q.stale_runs(db, host="host-a")] == [first]
    second = begin(catalog, here(), "sync:nas")
    with catalog.session() as db, db.begin():
        assert q.renew_lease(db, first, lease_seconds=30, keys=1) is False
        assert q.renew_lease(db, second, lease_seconds=30, keys=1) is True


def test_a_run_of_this_host_whose_process_is_gone_is_stale_at_once(catalog: Catalog) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(gone.stdout)
    dead = begin(catalog, q.Owner("host-a", pid, 1), "import:card")
    alive = begin(catalog, here(), "import:phone")
    elsewhere = begin(catalog, q.Owner("host-b", pid, 1), "import:nas")
    with catalog.session() as db:
        stale = {r.id for r in q.stale_runs(db, host="host-a")}
    # Another host's run is judged by its lease only: its pid means nothing here.
    assert stale == {dead}
    assert alive not in stale
    assert elsewhere not in stale
    with catalog.session() as db, db.begin():
        q.mark_interrupted(db, [dead])
    begin(catalog, here(), "import:card")  # the key is free again


def test_a_pid_reused_by_another_process_is_not_the_owner() -> None:
    started = q.process_start(os.getpid())
    assert started is not None
    assert q.owner_alive(os.getpid(), started)
    assert not q.owner_alive(os.getpid(), started + 1)


def test_claims_are_held_released_and_taken_over_from_stale_runs(catalog: Catalog) -> None:
    mine = begin(catalog, here())
    other = begin(catalog, q.Owner("host-b", 1, None), lease=30)
    key = q.content_claim("ab" * 32)
    with catalog.session() as db, db.begin():
        assert q.try_claim(db, key, mine, host="host-a") is None
        assert q.try_claim(db, key, mine, host="host-a") == mine  # a twin in the same run
        assert q.try_claim(db, key, other, host="host-b") == mine
        q.release_claims(db, mine, [key])
        assert q.try_claim(db, key, other, host="host-b") is None
    with catalog.session() as db, db.begin():  # the other run's lease lapses
        db.execute(
            update(ImportSession)
            .where(ImportSession.id == other)
            .values(lease_until=q.lease_now() - timedelta(seconds=1))
        )
    with catalog.session() as db, db.begin():
        assert q.try_claim(db, key, mine, host="host-a") is None
        q.end_run(db, mine, "completed")
        assert q.try_claim(db, key, other, host="host-b") is None  # end_run freed it


def test_leased_run_renews_its_lease_and_stops_when_it_loses_it(catalog: Catalog) -> None:
    options = RunOptions(host="host-a", lease_seconds=2.0)
    with LeasedRun(catalog, kind="sync", device="nas", keys=["sync:nas"], options=options) as run:
        time.sleep(3.0)  # past the first lease: only the heartbeat keeps it
        with pytest.raises(CatalogBusy):
            begin(catalog, q.Owner("host-b", 1, None), "sync:nas")
        with catalog.session() as db, db.begin():  # as if this process had been frozen
            db.execute(
                update(ImportSession)
                .where(ImportSession.id == run.id)
                .values(lease_until=q.lease_now() - timedelta(seconds=5))
            )
        thief = begin(catalog, q.Owner("host-b", 1, None), "sync:nas")
        deadline = time.monotonic() + 3
        while not run.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(RunLeaseLost):
            run.check()
        run.status = "interrupted"
    with catalog.session() as db:
        assert [r.id for r in q.active_runs(db, host="host-a")] == [thief]
