"""The replication engine against real filesystem destinations and a real library."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from picpipe.catalog.models import Replica
from picpipe.destinations.base import Destination, open_destination
from picpipe.errors import DestinationUnavailable
from picpipe.hashing import sha256_file
from picpipe.jobs.replicate import SyncRun
from picpipe.jobs.retry import RetryPolicy
from picpipe.jobs.sync_report import SyncReport
from picpipe.samples import make_jpeg, make_sample_set
from tests.conftest import LibraryFixture, run_cli

FAST = RetryPolicy(retries=3, base=0.0, cap=0.0)


class Counting:
    """A real destination that counts the calls made to it (and can fail the first few puts)."""

    def __init__(self, inner: Destination, *, fail_puts: int = 0) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}
        self.fail_puts = fail_puts
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] = self.calls.get(name, 0) + 1
                failing = name == "put" and self.fail_puts > 0
                if failing:
                    self.fail_puts -= 1
            if failing:
                raise DestinationUnavailable(destination=self.inner.name, detail="connection reset")
            return attr(*args, **kwargs)

        return counted


def filesystem(tmp_path: Path, name: str, **options: Any) -> Destination:
    root = tmp_path / name
    root.mkdir(exist_ok=True)
    return open_destination(
        name, {"kind": "filesystem", "path": str(root), "fsync": False, **options}
    )


def sync(lib: LibraryFixture, dests: dict[str, Any], **kwargs: Any) -> SyncReport:
    return SyncRun(
        lib.catalog,
        lib.root,
        dests,
        policy=kwargs.pop("policy", FAST),
        concurrency=dict.fromkeys(dests, 4),
        **kwargs,
    ).run()


def replica_rows(lib: LibraryFixture) -> list[Replica]:
    with lib.catalog.session() as db:
        return list(db.scalars(select(Replica)))


@pytest.fixture
def imported(library: LibraryFixture, tmp_path: Path) -> LibraryFixture:
    make_sample_set(tmp_path / "phone", count=12)
    library.import_folder(tmp_path / "phone")
    return library


def test_every_asset_ends_verified_at_every_destination(
    imported: LibraryFixture, tmp_path: Path
) -> None:
    nas, objects = (
        filesystem(tmp_path, "nas"),
        filesystem(tmp_path, "objects", layout="{prefix}/{sha256[:2]}/{sha256}/{path}"),
    )
    report = sync(imported, {"nas": nas, "objects": objects})
    assert report.status == "completed"
    assert report.destinations["nas"].uploaded == 12
    rows = replica_rows(imported)
    assert len(rows) == 24
    assert {r.state for r in rows} == {"verified"}
    assert all(r.verified_at is not None and r.checksum == r.sha256 for r in rows)
    for row in rows:
        root = tmp_path / ("nas" if row.destination_id == rows[0].destination_id else "objects")
        stored = root / str(row.remote_key)
        if not stored.exists():
            root = tmp_path / "objects" if root.name == "nas" else tmp_path / "nas"
            stored = root / str(row.remote_key)
        assert sha256_file(stored)[0] == row.sha256
    objects_keys = [r.remote_key for r in rows if r.remote_key and r.sha256 in r.remote_key]
    assert len(objects_keys) == 12
    assert all(k.startswith(f"{k.split('/')[1][:2]}/") for k in objects_keys)  # type: ignore[union-attr]


def test_a_second_sync_touches_nothing_remote(imported: LibraryFixture, tmp_path: Path) -> None:
    nas = Counting(filesystem(tmp_path, "nas"))
    sync(imported, {"nas": nas})
    nas.calls.clear()
    report = sync(imported, {"nas": nas})
    assert report.destinations["nas"].planned == 0
    assert nas.calls == {}


def test_transient_errors_are_retried(imported: LibraryFixture, tmp_path: Path) -> None:
    nas = Counting(filesystem(tmp_path, "nas"), fail_puts=5)
    report = sync(imported, {"nas": nas}, policy=RetryPolicy(retries=5, base=0.0, cap=0.0))
    assert report.failed == 0
    assert {r.state for r in replica_rows(imported)} == {"verified"}
    assert sum(r.attempts for r in replica_rows(imported)) == 12


def test_retries_run_out_into_a_failed_replica_with_its_reason(
    imported: LibraryFixture, tmp_path: Path
) -> None:
    nas = Counting(filesystem(tmp_path, "nas"), fail_puts=10_000)
    report = sync(imported, {"nas": nas}, policy=RetryPolicy(retries=2, base=0.0, cap=0.0))
    assert report.status == "completed_with_failures"
    assert report.failed == 12
    assert all("connection reset" in reason for _d, _p, reason in report.failures)
    rows = replica_rows(imported)
    assert {r.state for r in rows} == {"failed"}
    assert all("connection reset" in str(r.last_error) for r in rows)
    # The next sync (the destination is back) finishes the job.
    nas.fail_puts = 0
    assert sync(imported, {"nas": nas}).failed == 0
    assert {r.state for r in replica_rows(imported)} == {"verified"}


def test_an_unmounted_destination_stops_at_once_and_the_others_go_on(
    imported: LibraryFixture, tmp_path: Path
) -> None:
    gone = open_destination("gone", {"kind": "filesystem", "path": str(tmp_path / "unmounted")})
    nas = filesystem(tmp_path, "nas")
    report = sync(imported, {"gone": gone, "nas": nas})
    assert report.destinations["nas"].uploaded == 12
    assert report.destinations["gone"].failed == 0, "not one failure per photo"
    assert "mounted" in (report.destinations["gone"].unreachable or "")
    assert report.failures == [("gone", "(destination)", report.unreachable["gone"])]
    assert not (tmp_path / "unmounted").exists()


def test_same_name_same_day_gets_collision_safe_names(
    library: LibraryFixture, tmp_path: Path
) -> None:
    from datetime import datetime

    taken = datetime(2024, 7, 1, 12, 0, 0)
    make_jpeg(tmp_path / "a" / "IMG_0001.JPG", taken=taken, seed=1)
    make_jpeg(tmp_path / "b" / "IMG_0001.JPG", taken=taken, seed=2)
    library.import_folder(tmp_path / "a")
    library.import_folder(tmp_path / "b")
    sync(library, {"nas": filesystem(tmp_path, "nas")})
    keys = sorted(str(r.remote_key) for r in replica_rows(library))
    assert keys[0] == "2024/07/01/IMG_0001.JPG"
    assert keys[1].startswith("2024/07/01/IMG_0001~")
    assert keys[1].endswith(".JPG")
    assert len({sha256_file(tmp_path / "nas" / k)[0] for k in keys}) == 2


def test_someone_elses_file_is_never_overwritten(library: LibraryFixture, tmp_path: Path) -> None:
    from datetime import datetime

    photo = make_jpeg(tmp_path / "src" / "IMG_0002.JPG", taken=datetime(2024, 7, 2, 8), seed=3)
    library.import_folder(tmp_path / "src")
    foreign = tmp_path / "nas" / "2024" / "07" / "02" / "IMG_0002.JPG"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"somebody else's photo")
    sync(library, {"nas": filesystem(tmp_path, "nas")})
    assert foreign.read_bytes() == b"somebody else's photo"
    (row,) = replica_rows(library)
    assert row.state == "verified"
    assert str(row.remote_key).startswith("2024/07/02/IMG_0002~")
    assert (tmp_path / "nas" / str(row.remote_key)).read_bytes() == photo.path.read_bytes()


def test_a_copy_already_there_is_adopted_without_upload(
    imported: LibraryFixture, tmp_path: Path
) -> None:
    first = filesystem(tmp_path, "nas")
    sync(imported, {"nas": first})
    # The catalog forgets (a new catalog, another machine); the files are still there.
    with imported.catalog.session() as db, db.begin():
        for row in db.scalars(select(Replica)):
            db.delete(row)
    counting = Counting(first)
    report = sync(imported, {"nas": counting})
    assert report.destinations["nas"].present == 12
    assert counting.calls.get("put", 0) == 0


def test_verify_repairs_damaged_and_missing_replicas(
    imported: LibraryFixture, tmp_path: Path
) -> None:
    nas = filesystem(tmp_path, "nas")
    sync(imported, {"nas": nas})
    rows = replica_rows(imported)
    damaged, missing = (
        tmp_path / "nas" / str(rows[0].remote_key),
        tmp_path / "nas" / str(rows[1].remote_key),
    )
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x55
    damaged.write_bytes(bytes(data))
    missing.unlink()
    assert sync(imported, {"nas": nas}).destinations["nas"].planned == 0  # cheap: trusts verified
    report = sync(imported, {"nas": nas}, verify=True)
    tally = report.destinations["nas"]
    assert (tally.repaired, tally.uploaded, tally.reverified) == (2, 2, 10)
    assert sha256_file(damaged)[0] == rows[0].sha256
    assert sha256_file(missing)[0] == rows[1].sha256


def test_dry_run_changes_nothing(imported: LibraryFixture, tmp_path: Path) -> None:
    nas = filesystem(tmp_path, "nas")
    report = sync(imported, {"nas": nas}, dry_run=True)
    assert len(report.planned) == 12
    assert {p["action"] for p in report.planned} == {"upload"}
    assert all(p["key"].startswith("2023/") for p in report.planned)
    assert replica_rows(imported) == []
    assert list((tmp_path / "nas").iterdir()) == []


def test_a_damaged_library_original_is_not_replicated(
    imported: LibraryFixture, tmp_path: Path
) -> None:
    with imported.catalog.session() as db:
        first = db.scalars(select(Replica.sha256)).first()
    from picpipe.catalog.models import Asset

    with imported.catalog.session() as db:
        asset = db.scalars(select(Asset).order_by(Asset.sha256)).first()
        assert asset is not None
        path = imported.root / asset.library_path
    assert first is None
    path.write_bytes(b"bit rot" + path.read_bytes()[7:])
    report = sync(imported, {"nas": filesystem(tmp_path, "nas")})
    assert report.failed == 1
    assert report.destinations["nas"].uploaded == 11
    assert not any(f.name.startswith(".picpipe-tmp") for f in (tmp_path / "nas").rglob("*"))
    stored = [f for f in (tmp_path / "nas").rglob("*") if f.is_file() and f.suffix != ".xmp"]
    assert len(stored) == 11  # no bad copy (the sidecars of the 11 good ones are beside them)


def test_cli_sync_replicas_and_test_connection(imported: LibraryFixture, tmp_path: Path) -> None:
    settings = imported.settings
    (tmp_path / "nas").mkdir()
    config = {
        "replicas": {"target": 3},
        "destinations": {
            "nas": {"kind": "filesystem", "path": str(tmp_path / "nas"), "fsync": False}
        },
    }
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    base = [
        "--home",
        str(settings.home_root),
        "--library",
        str(settings.library_root),
        "--config",
        str(config_file),
    ]
    env = {"PICPIPE_DATABASE_URL": settings.catalog_url}
    dry = run_cli(*base, "sync", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert len(json.loads(dry.stdout)["planned"]) == 12
    done = run_cli(*base, "sync", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["destinations"]["nas"]["uploaded"] == 12
    safety = run_cli(*base, "replicas", "--json", env=env)
    report = json.loads(safety.stdout)
    assert report["destinations"]["nas"]["verified"] == 12
    assert report["under_replicated"] == 12  # target 3: library + nas is 2
    assert report["assets"][0]["copies"] == 2
    check = run_cli(*base, "test-connection", "--json", env=env)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["results"][0]["writable"] is True
    unknown = run_cli(*base, "sync", "--destination", "nope", env=env)
    assert unknown.returncode == 4
    assert "no destination named nope" in unknown.stderr


def test_put_reads_the_stream_it_is_given(tmp_path: Path) -> None:
    """The engine hands each upload its own stream; a kind never needs the library path."""
    dest = filesystem(tmp_path, "nas")
    from tests.destinations.contract import asset_for, photo

    data = photo(1)
    asset, digests = asset_for(data)
    stored = dest.put(dest.key_for(asset), io.BytesIO(data), digests=digests, asset=asset)
    assert stored.sha256 == digests.sha256


def test_content_addressed_keys_are_checked_by_listing_their_folder(
    library: LibraryFixture, tmp_path: Path
) -> None:
    make_sample_set(tmp_path / "many", count=40)
    library.import_folder(tmp_path / "many")
    objects = Counting(
        filesystem(tmp_path, "objects", layout="photos/{sha256}/{name}")  # one folder
    )
    report = sync(library, {"objects": objects})
    assert report.destinations["objects"].uploaded == 40
    assert objects.calls.get("stat", 0) == 0  # one listing answered them all
    assert objects.calls["list"] == 1
    # An object that is already there (same bytes) is still adopted, not overwritten.
    with library.catalog.session() as db, db.begin():
        for row in db.scalars(select(Replica)):
            db.delete(row)
    objects.calls.clear()
    again = sync(library, {"objects": objects})
    assert again.destinations["objects"].present == 40
    assert objects.calls.get("put", 0) == 0
