"""Live status: /api/status figures against a real imported library, and the event stream."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from picpipe.catalog.models import Asset, Destination, ImportSession, Replica
from picpipe.catalog.queries import utcnow
from picpipe.config import ReplicaOptions, Settings
from picpipe.samples import make_sample_set
from picpipe.web.app import create_app
from picpipe.web.live import StatusFeed
from tests.conftest import LibraryFixture, running_session
from tests.web.conftest import TestClient, with_serve


@pytest.fixture
def imported(library: LibraryFixture, tmp_path: Path) -> LibraryFixture:
    """12 generated photos, a copy of one (duplicate) and an empty file (fails), imported."""
    make_sample_set(tmp_path / "phone", count=12)
    library.run(library.folder(tmp_path / "phone", "phone"), workers=2)
    return library


@pytest.fixture
def imported_sqlite(sqlite_library: LibraryFixture, tmp_path: Path) -> LibraryFixture:
    """``imported`` on SQLite only, for tests about HTTP rather than SQL."""
    make_sample_set(tmp_path / "phone", count=12)
    sqlite_library.run(sqlite_library.folder(tmp_path / "phone", "phone"), workers=2)
    return sqlite_library


@pytest.fixture
def client_for() -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(settings: Settings) -> TestClient:
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def with_replicas(settings: Settings, *, target: int, **update_: Any) -> Settings:
    return settings.model_copy(update={"replicas": ReplicaOptions(target=target), **update_})


def expected_totals(lib: LibraryFixture) -> dict[str, int]:
    with lib.catalog.session() as db:
        assets = list(db.scalars(select(Asset)))
    return {
        "assets": len(assets),
        "photos": sum(a.kind == "photo" for a in assets),
        "raw": sum(a.kind == "raw" for a in assets),
        "videos": sum(a.kind == "video" for a in assets),
        "bytes": sum(a.size for a in assets),
    }


def test_status_reports_the_library(imported: LibraryFixture, client_for: Any) -> None:
    status = client_for(imported.settings).get("/api/status").json()
    totals = expected_totals(imported)
    assert totals["assets"] == 12
    assert {k: status["totals"][k] for k in totals} == totals
    assert status["running"] == []
    last = status["last_session"]
    assert last["kind"] == "import"
    assert last["status"] == "completed_with_failures"
    assert (last["new"], last["duplicate"], last["failed"]) == (12, 1, 1)
    assert last["done"] == last["seen"]
    assert last["started_at"].endswith("Z")
    assert status["recent_sessions"] == [last]
    failures = status["failures"]
    assert failures["files"] == 1
    [failed] = failures["failed_files"]
    assert (failed["source"], failed["path"]) == ("phone", "empty.jpg")
    # The reason names the problem, without repeating "phone:empty.jpg: ".
    assert failed["reason"].startswith("file is empty")
    assert failed["session_id"] == last["id"]
    assert [p["path"] for p in failures["session_problems"]] == ["phone:empty.jpg"]
    replication = status["replication"]
    assert replication["target"] == 2
    assert replication["under_replicated"] == 12  # the library is the only copy
    assert replication["copies"] == {"1": 12}
    assert replication["destinations"] == []


def test_under_replicated_counts_only_verified_copies(
    imported: LibraryFixture, client_for: Any
) -> None:
    with imported.catalog.session() as db, db.begin():
        shas = sorted(db.scalars(select(Asset.sha256)))
        nas = Destination(name="nas", kind="filesystem", created_at=utcnow())
        cloud = Destination(name="cloud", kind="s3", created_at=utcnow())
        db.add_all([nas, cloud])
        db.flush()
        rows = [(nas, sha, "verified") for sha in shas[:8]]
        rows += [(nas, shas[8], "failed"), (nas, shas[9], "uploading"), (nas, shas[10], "pending")]
        rows += [(cloud, sha, "verified") for sha in shas[:3]]
        rows += [(cloud, shas[3], "verifying"), (cloud, shas[4], "failed")]
        db.add_all(
            Replica(sha256=sha, destination_id=dest.id, state=state, updated_at=utcnow())
            for dest, sha, state in rows
        )

    status = client_for(imported.settings).get("/api/status").json()["replication"]
    # Copies: library + nas verified (8) + cloud verified (3, all among nas's 8).
    assert status["copies"] == {"1": 4, "2": 5, "3": 3}
    assert status["under_replicated"] == 4
    by_name = {d["name"]: d for d in status["destinations"]}
    assert by_name["nas"] == {
        "name": "nas",
        "kind": "filesystem",
        "verified": 8,
        "pending": 2,
        "failed": 1,
        "missing": 1,
    }
    assert by_name["cloud"] == {
        "name": "cloud",
        "kind": "s3",
        "verified": 3,
        "pending": 1,
        "failed": 1,
        "missing": 7,
    }

    settings = with_replicas(imported.settings, target=3, destinations={"azure": {"kind": "azure"}})
    status = client_for(settings).get("/api/status").json()["replication"]
    assert status["target"] == 3
    assert status["under_replicated"] == 9
    # Configured but never synced: listed with nothing there.
    assert {
        "name": "azure",
        "kind": "azure",
        "verified": 0,
        "pending": 0,
        "failed": 0,
        "missing": 12,
    } in status["destinations"]


def test_running_session_shows_live_counts_and_a_dead_process(
    imported: LibraryFixture, client_for: Any
) -> None:
    client = client_for(imported.settings)
    with imported.catalog.session() as db, db.begin():
        run = running_session(db, kind="import", device="card")
        run.seen, run.new, run.failed, run.bytes = 40, 10, 1, 12345
        run_id = run.id
    [running] = client.get("/api/status").json()["running"]
    assert running["id"] == run_id
    assert (running["seen"], running["done"], running["alive"]) == (40, 11, True)

    # A session whose process is gone (killed import) says so.
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    with imported.catalog.session() as db, db.begin():
        db.execute(
            update(ImportSession).where(ImportSession.id == run_id).values(pid=int(finished.stdout))
        )
    [running] = client.get("/api/status").json()["running"]
    assert running["alive"] is False


def read_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse ``event: status`` messages from an SSE line stream."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event.get("event") == "status":
                yield json.loads(event["data"])
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


@pytest.mark.timeout(60)
def test_events_push_the_status_and_every_change(imported: LibraryFixture, client_for: Any) -> None:
    client = client_for(imported.settings)
    with client.stream("GET", "/api/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response.iter_lines())
        first = next(events)
        assert first["running"] == []
        assert first["totals"]["assets"] == 12

        with imported.catalog.session() as db, db.begin():
            run_id = running_session(db, kind="import", device="card").id
        second = next(events)
        assert [r["id"] for r in second["running"]] == [run_id]

        with imported.catalog.session() as db, db.begin():
            db.execute(
                update(ImportSession).where(ImportSession.id == run_id).values(seen=5, new=3)
            )
        third = next(events)
        assert (third["running"][0]["seen"], third["running"][0]["done"]) == (5, 3)

        with imported.catalog.session() as db, db.begin():
            db.execute(
                update(ImportSession)
                .where(ImportSession.id == run_id)
                .values(status="completed", ended_at=utcnow())
            )
        fourth = next(events)
        assert fourth["running"] == []
        assert fourth["last_session"]["id"] == run_id


def test_feed_versions_change_only_with_the_status(imported_sqlite: LibraryFixture) -> None:
    lib = imported_sqlite
    feed = StatusFeed(lib.catalog, lib.settings, poll_seconds=0, refresh_seconds=0)
    version, status = feed.current()
    assert feed.current()[0] == version  # rebuilt, but nothing changed
    with lib.catalog.session() as db, db.begin():
        running_session(db, kind="import", device="card")
    new_version, new_status = feed.current()
    assert new_version == version + 1
    assert len(new_status["running"]) == 1
    assert status["running"] == []


def test_status_and_events_need_a_token_when_one_is_set(
    imported_sqlite: LibraryFixture, client_for: Any
) -> None:
    client = client_for(
        with_serve(imported_sqlite.settings, token="full-token", read_token="read-token")
    )
    assert client.get("/api/status").status_code == 401
    assert client.get("/api/events").status_code == 401
    ok = client.get("/api/status", headers={"Authorization": "Bearer read-token"})
    assert ok.status_code == 200
    assert ok.json()["totals"]["assets"] == 12


def test_status_times_are_utc_instants(imported_sqlite: LibraryFixture, client_for: Any) -> None:
    status = client_for(imported_sqlite.settings).get("/api/status").json()
    started = datetime.fromisoformat(status["last_session"]["started_at"].replace("Z", "+00:00"))
    assert started.utcoffset() is not None
    assert status["generated_at"].endswith("Z")
