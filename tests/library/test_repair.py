"""`picpipe repair`: a deleted original, a corrupt one and a lost sidecar come back from a
replica (filesystem, S3) or a source copy; what has no good copy anywhere is named and exit 3."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from picpipe.catalog.models import Asset, Replica
from picpipe.catalog.queries import session_failures
from picpipe.library.layout import sidecar_path
from picpipe.samples import make_jpeg
from tests.conftest import LibraryFixture, run_cli, tree_digest
from tests.servers.s3 import S3Server


def photos(folder: Path, count: int = 3) -> None:
    for i in range(count):
        make_jpeg(folder / f"IMG_{i:04d}.JPG", taken=datetime(2021, 3, 1 + i), seed=40 + i)


def cli_base(lib: LibraryFixture, tmp_path: Path, destinations: dict[str, Any]) -> list[str]:
    config: dict[str, Any] = {"import": {"fsync": False}, "destinations": destinations}
    if lib.settings.database_url is not None:  # PostgreSQL
        config["database_url"] = lib.settings.database_url.get_secret_value()
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    s = lib.settings
    return [
        "--home",
        str(s.home_root),
        "--library",
        str(s.library_root),
        "--config",
        str(config_file),
    ]


def assets(lib: LibraryFixture) -> list[Asset]:
    with lib.catalog.session() as db:
        return sorted(db.scalars(select(Asset)), key=lambda a: a.original_name)


def damage(lib: LibraryFixture) -> tuple[Asset, Asset, Asset]:
    """Delete the first original, corrupt the second in place (same size), lose the third's
    sidecar."""
    gone, rotten, bare = assets(lib)[:3]
    (lib.root / gone.library_path).unlink()
    path = lib.root / rotten.library_path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    (lib.root / sidecar_path(bare.library_path)).unlink()
    return gone, rotten, bare


def repair(base: list[str], *extra: str) -> tuple[int, dict[str, Any]]:
    done = run_cli(*base, "repair", "--json", *extra)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def by_what(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, str]]:
    return {(i["what"], i["name"]): i for i in report["items"]}


def replica_keys(lib: LibraryFixture) -> dict[str, str]:
    with lib.catalog.session() as db:
        return {r.sha256: str(r.remote_key) for r in db.scalars(select(Replica))}


def restores_from_a_replica(
    lib: LibraryFixture, tmp_path: Path, destination: dict[str, Any], put_sidecar: Any
) -> None:
    card = tmp_path / "card"
    photos(card)
    lib.import_folder(card)
    base = cli_base(lib, tmp_path, {"backup": destination})
    synced = run_cli(*base, "sync", "--json", timeout=300)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    # The sidecars beside the replicas, where sidecar replication keeps them (<key>.xmp).
    keys = replica_keys(lib)
    for asset in assets(lib):
        put_sidecar(f"{keys[asset.sha256]}.xmp", (lib.root / sidecar_path(asset.library_path)))
    shutil.rmtree(card)  # the card is wiped: only the replica can help
    good = {a.sha256: (lib.root / a.library_path).read_bytes() for a in assets(lib)}
    gone, rotten, bare = damage(lib)
    sidecar_bytes = put_sidecar.saved[keys[bare.sha256] + ".xmp"]

    before = tree_digest(lib.root)
    code, dry = repair(base, "--dry-run")
    assert code == 0, dry
    assert dry["run_id"] is None
    assert {i["outcome"] for i in dry["items"]} == {"would restore"}
    assert tree_digest(lib.root) == before  # --dry-run writes nothing

    code, report = repair(base)
    assert code == 0, report
    assert report["kind"] == "repair"
    assert report["status"] == "completed"
    items = by_what(report)
    assert items[("original", gone.original_name)]["problem"] == "missing"
    assert items[("original", rotten.original_name)]["problem"].startswith("corrupt")
    for key in (("original", gone.original_name), ("original", rotten.original_name)):
        assert items[key]["outcome"] == "restored"
        assert items[key]["origin"] == "replica 'backup'"
    assert items[("sidecar", bare.original_name)]["outcome"] == "restored"
    for sha, data in good.items():
        path = next(lib.root.rglob(f"{sha}.jpg"))
        assert path.read_bytes() == data
    assert (lib.root / sidecar_path(bare.library_path)).read_bytes() == sidecar_bytes
    assert not list(lib.root.rglob(".picpipe-tmp-*"))

    checked = run_cli(*base, "verify", "--json")
    assert checked.returncode == 0, checked.stdout
    assert json.loads(checked.stdout)["clean"]
    code, again = repair(base)
    assert (code, again["items"]) == (0, [])


class SavedFiles(dict[str, bytes]):
    """What a test placed at a destination, by key."""


def test_repair_restores_from_a_filesystem_replica(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    saved = SavedFiles()

    def put(key: str, local: Path) -> None:
        (nas / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, nas / key)
        saved[key] = local.read_bytes()

    put.saved = saved  # type: ignore[attr-defined]
    destination = {"kind": "filesystem", "path": str(nas), "fsync": False}
    restores_from_a_replica(sqlite_library, tmp_path, destination, put)


@pytest.mark.slow
def test_repair_restores_from_s3(
    sqlite_library: LibraryFixture, tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    config = s3_server.destination_config(s3_bucket, prefix="photos")
    client = s3_server.client()
    saved = SavedFiles()

    def put(key: str, local: Path) -> None:
        data = local.read_bytes()
        client.put_object(Bucket=s3_bucket, Key=key, Body=data)
        saved[key] = data

    put.saved = saved  # type: ignore[attr-defined]
    restores_from_a_replica(sqlite_library, tmp_path, config, put)


def test_repair_restores_from_a_matching_source_copy(
    library: LibraryFixture, tmp_path: Path
) -> None:
    card = tmp_path / "card"
    photos(card, 2)
    library.import_folder(card)
    base = cli_base(library, tmp_path, {})
    first, second = assets(library)
    (library.root / first.library_path).unlink()
    path = library.root / second.library_path
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    source_before = tree_digest(card)

    code, report = repair(base)

    assert code == 0, report
    assert {i["origin"] for i in report["items"]} == {f"source {str(card)!r}"}
    assert tree_digest(card) == source_before  # sources are only read
    assert run_cli(*base, "verify").returncode == 0


def test_with_no_good_copy_anywhere_repair_names_each_photo_and_exits_3(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    card = tmp_path / "card"
    photos(card, 3)
    sqlite_library.import_folder(card)
    base = cli_base(sqlite_library, tmp_path, {})
    first, second, third = assets(sqlite_library)
    edited = card / second.original_name
    edited.write_bytes(edited.read_bytes()[:-1] + b"\x01")  # the source copy changed since
    (card / first.original_name).unlink()
    for asset in (first, second):
        (sqlite_library.root / asset.library_path).unlink()
    (sqlite_library.root / sidecar_path(third.library_path)).unlink()

    done = run_cli(*base, "repair")
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for asset in (first, second):
        line = next(x for x in lines if asset.original_name in x and "original" in x)
        assert "unrestored" in line
        assert f"from {card}:{asset.original_name} [{asset.sha256[:12]}]" in line
    assert "content does not match" in next(x for x in lines if second.original_name in x)
    # The lost sidecar has no replica: regenerated from the catalog, and the report says so.
    sidecar = next(x for x in lines if third.original_name in x and "sidecar" in x)
    assert "regenerated" in sidecar
    assert "no replica holds it" in sidecar
    assert (sqlite_library.root / sidecar_path(third.library_path)).is_file()

    code, report = repair(base)
    assert code == 3
    assert report["status"] == "completed_with_failures"
    assert report["counts"]["failed"] == len(report["failures"]) == 2
    with sqlite_library.catalog.session() as db:  # kept with the run for `picpipe sessions N`
        assert len(session_failures(db, report["run_id"])) == 2
    assert all(
        second.sha256[:12] in f["reason"] or first.sha256[:12] in f["reason"]
        for f in report["failures"]
    )


def test_repair_refuses_an_unmounted_library(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    photos(tmp_path / "card", 1)
    sqlite_library.import_folder(tmp_path / "card")
    base = cli_base(sqlite_library, tmp_path, {})
    shutil.rmtree(sqlite_library.root)
    sqlite_library.root.mkdir()  # an empty mount point
    for extra in ((), ("--dry-run",)):
        done = run_cli(*base, "repair", *extra)
        assert done.returncode == 6, done.stdout + done.stderr
        assert "is the NAS mounted?" in done.stdout + done.stderr
        assert list(sqlite_library.root.iterdir()) == []


def test_a_replica_that_does_not_match_is_passed_over_for_a_source_copy(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    from picpipe.catalog.models import Destination

    card = tmp_path / "card"
    photos(card, 1)
    sqlite_library.import_folder(card)
    (asset,) = assets(sqlite_library)
    good = (sqlite_library.root / asset.library_path).read_bytes()
    nas = tmp_path / "nas"
    (nas / "2021").mkdir(parents=True)
    (nas / "2021" / "bad.jpg").write_bytes(good[:-1] + b"\x00")  # same size, other bytes
    now = datetime.now()
    with sqlite_library.catalog.write() as db:
        target = Destination(name="nas", kind="filesystem", created_at=now)
        db.add(target)
        db.flush()
        db.add(
            Replica(
                sha256=asset.sha256,
                destination_id=target.id,
                remote_key="2021/bad.jpg",
                state="verified",
                updated_at=now,
                verified_at=now,
            )
        )
    base = cli_base(sqlite_library, tmp_path, {"nas": {"kind": "filesystem", "path": str(nas)}})
    (sqlite_library.root / asset.library_path).unlink()

    code, report = repair(base)

    assert code == 0, report
    (item,) = report["items"]
    assert item["origin"] == f"source {str(card)!r}"
    assert (sqlite_library.root / asset.library_path).read_bytes() == good

    shutil.rmtree(card)  # now only the bad replica is left
    (sqlite_library.root / asset.library_path).unlink()
    code, report = repair(base)
    assert code == 3
    (item,) = report["items"]
    assert "replica 'nas': content does not match the asset's SHA-256" in item["origin"]
    assert not (sqlite_library.root / asset.library_path).exists()
    assert not list(sqlite_library.root.rglob(".picpipe-tmp-*"))
