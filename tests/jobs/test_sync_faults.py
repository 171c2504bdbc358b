"""`picpipe sync` against a real S3 server through a fault-injecting proxy, and a remote object
corrupted behind picpipe's back that `sync --verify` finds and repairs."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy import select

from picpipe.catalog.models import Replica
from picpipe.destinations.base import open_destination
from picpipe.hashing import sha256_file
from picpipe.jobs.replicate import SyncRun
from picpipe.jobs.retry import RetryPolicy
from picpipe.samples import make_sample_set
from tests.conftest import LibraryFixture, run_cli
from tests.servers.faultproxy import FaultProxy
from tests.servers.s3 import S3Server

COUNT = 16


@pytest.fixture
def imported(sqlite_library: LibraryFixture, tmp_path: Path) -> LibraryFixture:
    make_sample_set(tmp_path / "phone", count=COUNT)
    sqlite_library.import_folder(tmp_path / "phone")
    return sqlite_library


def _remote_objects(server: S3Server, bucket: str) -> dict[str, bytes]:
    client = server.admin
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_every_asset_ends_verified_through_drops_resets_stalls_and_errors(
    imported: LibraryFixture, s3_server: S3Server, s3_bucket: str
) -> None:
    port = urlsplit(s3_server.endpoint_url).port
    assert port is not None
    with FaultProxy("127.0.0.1", port, seed=20261121) as proxy:
        proxy.faults(
            "drop", "reset", "stall", "status", "cut",
            probability=0.25, stall=3.0, statuses=(503, 500, 429),
        )  # fmt: skip
        config = s3_server.destination_config(s3_bucket, endpoint_url=proxy.url, read_timeout=1.0)
        cloud = open_destination("cloud", config)
        report = SyncRun(
            imported.catalog,
            imported.root,
            {"cloud": cloud},
            policy=RetryPolicy(retries=12, base=0.01, cap=0.1),
            concurrency={"cloud": 4},
        ).run()
        cloud.close()
        injected = proxy.injected
    assert injected >= 5, proxy.counts()
    assert report.failed == 0, report.failures
    with imported.catalog.session() as db:
        rows = list(db.scalars(select(Replica)))
    assert len(rows) == COUNT
    assert {r.state for r in rows} == {"verified"}
    stored = _remote_objects(s3_server, s3_bucket)
    for row in rows:
        assert sha256_file_bytes(stored[str(row.remote_key)]) == row.sha256


def test_sync_verify_finds_a_corrupted_remote_object(
    imported: LibraryFixture, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    settings = imported.settings
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"destinations": {"cloud": s3_server.destination_config(s3_bucket)}})
    )
    base = ["--home", str(settings.home_root), "--library", str(settings.library_root)]
    base += ["--config", str(config)]
    first = run_cli(*base, "sync", "--json")
    assert first.returncode == 0, first.stderr
    assert s3_server.secret_access_key not in first.stdout + first.stderr
    with imported.catalog.session() as db:
        victim = db.scalars(select(Replica).order_by(Replica.sha256)).first()
        assert victim is not None
    key = str(victim.remote_key)
    client = s3_server.admin
    head = client.head_object(Bucket=s3_bucket, Key=key)
    body = bytearray(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # same size, same metadata: only a content check can tell
    client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(body), Metadata=head["Metadata"])

    again = run_cli(*base, "sync", "--json")
    assert json.loads(again.stdout)["destinations"]["cloud"]["planned"] == 0
    checked = run_cli(*base, "sync", "--verify", "--json")
    assert checked.returncode == 0, checked.stderr
    tally = json.loads(checked.stdout)["destinations"]["cloud"]
    assert tally["repaired"] == 1
    assert tally["reverified"] == COUNT - 1
    repaired = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert sha256_file_bytes(repaired) == victim.sha256


def sha256_file_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_sha256_helper_agrees(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f")[0] == sha256_file_bytes(b"abc")
