"""Backups keep the edits: sidecars and catalog snapshots at the destination, and a catalog
rebuilt from them after the library and its catalog are lost (up to `restore-catalog`; `repair`
puts the originals back)."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, text

from picpipe.catalog.db import create_catalog_engine, open_catalog
from picpipe.catalog.models import Asset, Base, Replica, SidecarReplica
from picpipe.catalog.web_sessions import add_session
from picpipe.hashing import sha256_file
from picpipe.library.marker import read_marker
from picpipe.pipeline.sidecar_sync import reimport_changed_sidecars
from picpipe.samples import make_sample_set
from tests.conftest import LibraryFixture, run_cli
from tests.servers.s3 import S3Server

SECRET_SESSION = "a-live-login-session-id"


def cli(lib: LibraryFixture, tmp_path: Path, destinations: dict[str, Any], **replicas: Any) -> Any:
    config = {"replicas": {"backoff_base": 0.05, **replicas}, "destinations": destinations}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    s = lib.settings
    base = ["--home", str(s.home_root), "--library", str(s.library_root)]
    base += ["--config", str(config_file)]
    env = {"PICPIPE_DATABASE_URL": s.catalog_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*base, *args, env=env, timeout=300)

    return run


def edit_as_digikam(sidecar: Path, *assignments: str) -> None:
    before = sidecar.stat().st_mtime_ns
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", *assignments, str(sidecar)], check=True
    )
    later = before + 2_000_000_000
    import os

    os.utime(sidecar, ns=(later, later))


def catalog_state(url: str) -> dict[str, Any]:
    catalog = open_catalog(url)
    try:
        with catalog.session() as db:
            return {
                "assets": {
                    a.sha256: (a.library_path, a.rating, tuple(a.keywords or ()))
                    for a in db.scalars(select(Asset))
                },
                "replicas": {
                    (r.sha256, r.remote_key, r.state) for r in db.scalars(select(Replica))
                },
                "sidecars": {
                    (r.sha256, r.remote_key, r.sidecar_sha256)
                    for r in db.scalars(select(SidecarReplica))
                },
            }
    finally:
        catalog.close()


def lose_the_catalog(lib: LibraryFixture) -> None:
    url = lib.settings.catalog_url
    lib.catalog.close()
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    engine = create_catalog_engine(url)
    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


@pytest.mark.slow
def test_lose_library_and_catalog_then_restore_the_catalog(
    library: LibraryFixture, tmp_path: Path
) -> None:
    make_sample_set(tmp_path / "phone", count=4)
    library.import_folder(tmp_path / "phone")
    with library.catalog.session() as db:
        first = db.scalars(select(Asset).order_by(Asset.sha256)).first()
        assert first is not None
    sidecar = library.root / f"{first.library_path.rsplit('.', 1)[0]}.xmp"
    edit_as_digikam(sidecar, "-XMP:Rating=5", "-XMP:Subject+=grandma")
    reimport_changed_sidecars(library.settings, library.catalog, tools=library.tools)
    now = datetime.now(UTC).replace(tzinfo=None)
    with library.catalog.session() as db:
        add_session(db, SECRET_SESSION, "w", now=now, lifetime=timedelta(days=1))

    nas = tmp_path / "nas"
    nas.mkdir()
    run = cli(library, tmp_path, {"nas": {"kind": "filesystem", "path": str(nas), "fsync": False}})
    done = run("sync", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["sidecars_uploaded"] == {"nas": 4}
    snapshot_key = report["catalog_snapshots"]["nas"]
    assert snapshot_key.startswith("picpipe-catalog/catalog-")
    assert snapshot_key.endswith(
        ".sqlite.gz" if "sqlite" in library.settings.catalog_url else ".json.gz"
    )
    pointer = json.loads((nas / "picpipe-catalog/latest.json").read_text())
    assert pointer["snapshot"] == snapshot_key
    assert pointer["assets"] == 4
    assert pointer["sha256"] == sha256_file(nas / snapshot_key)[0]
    raw = gzip.decompress((nas / snapshot_key).read_bytes())
    from picpipe.catalog.web_sessions import id_hash

    assert id_hash(SECRET_SESSION).encode() not in raw  # login sessions never in a snapshot

    before = catalog_state(library.settings.catalog_url)
    assert len(before["sidecars"]) == 4
    sidecars_then = {
        sha: (library.root / f"{path.rsplit('.', 1)[0]}.xmp").read_bytes()
        for sha, (path, _r, _k) in before["assets"].items()
    }
    assert before["assets"][first.sha256][1] == 5

    # The NAS with the library and the catalog is lost.
    marker = read_marker(library.root)
    assert marker is not None
    shutil.rmtree(library.root)
    lose_the_catalog(library)

    restored = run("restore-catalog", "nas", "--json")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    answer = json.loads(restored.stdout)
    assert answer["assets"] == 4
    assert answer["replicas"] == 4
    assert answer["sidecar_replicas"] == 4
    assert answer["destinations"] == ["nas"]
    assert answer["library_marker"] == "adopted"

    after = catalog_state(library.settings.catalog_url)
    assert after == before
    again = read_marker(library.root)
    assert again is not None
    assert again.library_id == marker.library_id
    # The destination holds every original and its current sidecar, edits included.
    for sha, key, _state in after["replicas"]:
        assert sha256_file(nas / key)[0] == sha
    for sha, key, sidecar_sha in after["sidecars"]:
        assert (nas / key).read_bytes() == sidecars_then[sha]
        assert sha256_file(nas / key)[0] == sidecar_sha
    assert (
        b"grandma"
        in (nas / next(k for s, k, _ in after["sidecars"] if s == first.sha256)).read_bytes()
    )

    # A catalog that has assets is not replaced without --force.
    refused = run("restore-catalog", "nas")
    assert refused.returncode == 5
    assert "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    forced = run("restore-catalog", str(nas), "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["library_marker"] == "matches"


@pytest.mark.slow
def test_restore_refuses_what_it_cannot_trust(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    make_sample_set(tmp_path / "phone", count=2)
    sqlite_library.import_folder(tmp_path / "phone")
    nas = tmp_path / "nas"
    nas.mkdir()
    run = cli(
        sqlite_library,
        tmp_path,
        {"nas": {"kind": "filesystem", "path": str(nas), "fsync": False}},
    )
    empty = run("restore-catalog", "nas")
    assert empty.returncode == 5
    assert "no catalog snapshot" in empty.stderr
    nowhere = run("restore-catalog", "elsewhere")
    assert nowhere.returncode == 4
    assert "nas" in nowhere.stderr
    assert run("sync").returncode == 0
    pointer = json.loads((nas / "picpipe-catalog/latest.json").read_text())
    snapshot = nas / pointer["snapshot"]
    snapshot.write_bytes(snapshot.read_bytes()[:-10] + b"0123456789")  # damaged at the NAS
    lose_the_catalog(sqlite_library)
    damaged = run("restore-catalog", "nas")
    assert damaged.returncode == 9
    assert "sha256" in damaged.stderr
    assert not Path(sqlite_library.settings.catalog_url.split("///", 1)[1]).exists()


@pytest.mark.slow
def test_only_the_last_snapshots_are_kept(sqlite_library: LibraryFixture, tmp_path: Path) -> None:
    make_sample_set(tmp_path / "phone", count=1)
    sqlite_library.import_folder(tmp_path / "phone")
    nas = tmp_path / "nas"
    (nas / "picpipe-catalog").mkdir(parents=True)
    for day in ("20200101", "20200102", "20200103"):
        (nas / f"picpipe-catalog/catalog-{day}T000000Z.sqlite.gz").write_bytes(b"old")
    (nas / "picpipe-catalog/notes.txt").write_text("someone's")
    run = cli(
        sqlite_library,
        tmp_path,
        {"nas": {"kind": "filesystem", "path": str(nas), "fsync": False}},
        catalog_snapshots=2,
    )
    assert run("sync").returncode == 0
    # Nothing to send: no new snapshot either (a sync with everything in place stays quiet).
    quiet = run("sync", "--json")
    assert quiet.returncode == 0
    assert json.loads(quiet.stdout)["catalog_snapshots"] == {}
    kept = sorted(p.name for p in (nas / "picpipe-catalog").iterdir())
    assert len(kept) == 4
    assert "notes.txt" in kept
    assert "latest.json" in kept
    assert "catalog-20200103T000000Z.sqlite.gz" in kept
    # The snapshot is a SQLite database that opens and lists the asset.
    newest = nas / json.loads((nas / "picpipe-catalog/latest.json").read_text())["snapshot"]
    unpacked = tmp_path / "unpacked.sqlite"
    unpacked.write_bytes(gzip.decompress(newest.read_bytes()))
    with sqlite3.connect(unpacked) as db:
        assert db.execute("select count(*) from asset").fetchone() == (1,)
    off = cli(
        sqlite_library,
        tmp_path,
        {"nas": {"kind": "filesystem", "path": str(nas), "fsync": False}},
        catalog_snapshots=0,
    )
    assert off("sync").returncode == 0
    assert sorted(p.name for p in (nas / "picpipe-catalog").iterdir()) == kept


@pytest.mark.slow
def test_sidecars_and_snapshots_in_s3(
    sqlite_library: LibraryFixture, tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    lib = sqlite_library
    make_sample_set(tmp_path / "phone", count=3)
    lib.import_folder(tmp_path / "phone")
    run = cli(lib, tmp_path, {"s3": s3_server.destination_config(s3_bucket, prefix="photos")})
    done = run("sync", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["sidecars_uploaded"] == {"s3": 3}
    client = s3_server.client()
    try:
        keys = {o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
        with lib.catalog.session() as db:
            first = db.scalars(select(Asset).order_by(Asset.sha256)).first()
            assert first is not None
            replica = db.scalars(select(Replica).where(Replica.sha256 == first.sha256)).one()
        sidecar = lib.root / f"{first.library_path.rsplit('.', 1)[0]}.xmp"
        remote = f"{replica.remote_key}.xmp"
        assert remote in keys
        assert "picpipe-catalog/latest.json" in keys

        def body(key: str) -> bytes:
            answer: bytes = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
            return answer

        assert body(remote) == sidecar.read_bytes()
        edit_as_digikam(sidecar, "-XMP:Rating=3")
        assert run("sync").returncode == 0
        assert body(remote) == sidecar.read_bytes()
        # Someone else rewrites it in the bucket: kept; picpipe's next version goes beside it.
        client.put_object(Bucket=s3_bucket, Key=remote, Body=b"<theirs/>")
        edit_as_digikam(sidecar, "-XMP:Rating=1")
        again = run("sync", "--json")
        assert again.returncode == 0, again.stderr
        [version] = json.loads(again.stdout)["sidecar_versions"]
        assert version["kept"] == remote
        assert body(remote) == b"<theirs/>"
        assert body(version["written"]) == sidecar.read_bytes()
        lose_the_catalog(lib)
        restored = run("restore-catalog", "s3", "--json")
        assert restored.returncode == 0, restored.stderr
        assert json.loads(restored.stdout)["sidecar_replicas"] == 3
    finally:
        client.close()


@pytest.mark.slow
def test_a_postgresql_snapshot_restores_into_sqlite_too(
    tmp_path: Path, pg_url: str, exiftool_available: None
) -> None:
    from picpipe.destinations.base import open_destination
    from picpipe.jobs.restore_catalog import restore_catalog
    from tests.conftest import open_library

    with open_library(tmp_path, pg_url) as lib:
        make_sample_set(tmp_path / "phone", count=2)
        lib.import_folder(tmp_path / "phone")
        nas = tmp_path / "nas"
        nas.mkdir()
        run = cli(lib, tmp_path, {"nas": {"kind": "filesystem", "path": str(nas), "fsync": False}})
        assert run("sync").returncode == 0
        before = catalog_state(lib.settings.catalog_url)
        root = lib.root
    backend = open_destination("nas", {"kind": "filesystem", "path": str(nas)})
    url = f"sqlite:///{tmp_path / 'moved' / 'catalog.db'}"
    report = restore_catalog(backend, url, root)
    assert report.format == "json"
    assert report.assets == 2
    assert report.library_marker == "matches"
    assert catalog_state(url) == before


@pytest.mark.slow
def test_restore_after_losing_the_nas_walkthrough(library: LibraryFixture, tmp_path: Path) -> None:
    """README "Restore after losing the NAS": import, edit a sidecar as digiKam would, sync,
    lose library and catalog, restore-catalog, repair: every original and every edit back."""
    make_sample_set(tmp_path / "phone", count=3)
    library.import_folder(tmp_path / "phone")
    with library.catalog.session() as db:
        assets = {a.sha256: a.library_path for a in db.scalars(select(Asset))}
    first_sha = sorted(assets)[0]
    sidecar = library.root / f"{assets[first_sha].rsplit('.', 1)[0]}.xmp"
    edit_as_digikam(sidecar, "-XMP:Rating=4", "-XMP:Subject+=walkthrough")
    reimport_changed_sidecars(library.settings, library.catalog, tools=library.tools)
    nas = tmp_path / "nas"
    nas.mkdir()
    run = cli(library, tmp_path, {"nas": {"kind": "filesystem", "path": str(nas), "fsync": False}})
    assert (done := run("sync")).returncode == 0, done.stdout + done.stderr
    sidecars_then = {
        sha: (library.root / f"{path.rsplit('.', 1)[0]}.xmp").read_bytes()
        for sha, path in assets.items()
    }

    shutil.rmtree(library.root)
    lose_the_catalog(library)

    restored = run("restore-catalog", "nas", "--json")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    repaired = run("repair", "--json")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    report = json.loads(repaired.stdout)
    outcomes = {(i["sha256"], i["what"]): i["outcome"] for i in report["items"]}
    assert {sha for sha, what in outcomes if what == "original"} == set(assets)
    for sha, path in assets.items():
        assert sha256_file(library.root / path)[0] == sha
        assert (library.root / f"{path.rsplit('.', 1)[0]}.xmp").read_bytes() == sidecars_then[sha]
    edited = (library.root / f"{assets[first_sha].rsplit('.', 1)[0]}.xmp").read_text()
    assert "walkthrough" in edited
    verified = run("verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
