"""The issue's promise end to end: "keep every photo on my NAS share, in S3, in Azure Blob
Storage and in Immich", one `picpipe sync`, and a safety report that can be trusted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from sqlalchemy import select

from picpipe.catalog.models import Asset, Replica
from picpipe.destinations.base import open_destination
from picpipe.samples import make_sample_set
from tests.conftest import MEDIA, LibraryFixture, run_cli
from tests.servers.azurite import AzuriteServer
from tests.servers.immich import ImmichAccount
from tests.servers.s3 import S3Server
from tests.servers.samba import SambaServer


def test_one_sync_to_every_kind(
    sqlite_library: LibraryFixture,
    tmp_path: Path,
    samba: SambaServer,
    s3_server: S3Server,
    s3_bucket: str,
    azurite: AzuriteServer,
    azure_container: str,
    immich_account: ImmichAccount,
) -> None:
    phone = tmp_path / "phone"
    make_sample_set(phone, count=5)
    for name in ("train.jpg", "train.mov"):  # a Live Photo: Immich must link its halves
        found = next(MEDIA.rglob(name))
        shutil.copy2(found, phone / name)
    sqlite_library.import_folder(phone)
    with sqlite_library.catalog.session() as db:
        assets = {a.sha256: a for a in db.scalars(select(Asset))}
    assert any(a.pair_kind == "live" for a in assets.values())

    smb_folder = f"backup-{tmp_path.name}"
    config = {
        "replicas": {"target": 6, "backoff_base": 0.05, "catalog_snapshots": 2},
        "destinations": {
            "nas": {"kind": "filesystem", "path": str(tmp_path / "nas"), "fsync": False},
            "share": samba.destination(path=smb_folder),
            "s3": s3_server.destination_config(s3_bucket, prefix="photos"),
            "azure": {
                "kind": "azure",
                "connection_string": azurite.connection_string,
                "container": azure_container,
            },
            "immich": immich_account.config(album="picpipe"),
        },
    }
    (tmp_path / "nas").mkdir()
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    s = sqlite_library.settings
    base = ["--home", str(s.home_root), "--library", str(s.library_root)]
    base += ["--config", str(config_file)]

    check = run_cli(*base, "test-connection", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert {r["name"] for r in json.loads(check.stdout)["results"]} == set(config["destinations"])

    done = run_cli(*base, "sync", "--json", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    for name, tally in report["destinations"].items():
        assert tally["uploaded"] + tally["present"] == len(assets), name
        assert tally["failed"] == 0, name
    # Sidecars and a catalog snapshot reach every kind that holds files (Immich: not files).
    files = {"nas", "share", "s3", "azure"}
    assert report["sidecars_uploaded"] == dict.fromkeys(files, len(assets))
    assert set(report["catalog_snapshots"]) == files
    for secret in (samba.password, s3_server.secret_access_key, immich_account.api_key):
        assert secret not in done.stdout + done.stderr

    safety = json.loads(run_cli(*base, "replicas", "--json").stdout)
    assert safety["under_replicated"] == 0
    assert all(c["verified"] == len(assets) for c in safety["destinations"].values())

    with sqlite_library.catalog.session() as db:
        rows = list(db.scalars(select(Replica)))
    assert len(rows) == 5 * len(assets)
    assert {r.state for r in rows} == {"verified"}
    # Immich got the Live Photo linked and the album filled.
    fake = immich_account.fake
    mine = [a for a in fake.assets.values() if a.owner_id == immich_account.user_id]
    stills = [a for a in mine if a.live_photo_video_id]
    assert len(stills) == 1
    # Immich takes metadata from the sidecar sent with each upload (rating, keywords, ...).
    sidecars = {
        (sqlite_library.root / f"{a.library_path.rsplit('.', 1)[0]}.xmp").read_bytes()
        for a in assets.values()
    }
    assert {a.sidecar for a in mine} == sidecars
    # Nothing half-written anywhere, and the NAS and share hold dated names.
    assert not list((tmp_path / "nas").rglob(".picpipe-tmp-*"))
    assert not list((samba.auth_root / smb_folder).rglob(".picpipe-tmp-*"))
    assert any(p.name == "train.jpg" for p in (samba.auth_root / smb_folder).rglob("*"))

    again = run_cli(*base, "sync", "--json")
    assert all(t["planned"] == 0 for t in json.loads(again.stdout)["destinations"].values())

    # Each sync that changed a destination leaves a snapshot there; the oldest go past two.
    for round_ in range(2):
        make_sample_set(tmp_path / f"more-{round_}", count=1, seed=100 + round_)
        sqlite_library.import_folder(tmp_path / f"more-{round_}")
        more = run_cli(*base, "sync", "--json", timeout=300)
        assert more.returncode == 0, more.stdout + more.stderr
    for name in sorted(files):
        dest = open_destination(name, config["destinations"][name])
        try:
            kept = [o.key for o in dest.list("picpipe-catalog") if "/catalog-" in o.key]
        finally:
            dest.close()
        assert len(kept) == 2, (name, kept)
