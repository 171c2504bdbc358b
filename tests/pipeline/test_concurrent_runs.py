"""Runs leased in the catalog, end to end: real `picpipe` processes sharing one catalog and
one library, as two machines sharing a PostgreSQL catalog and a NAS library would.

Each process has its own home (its own machine); ``PICPIPE_RUNS__HOST`` names the machine,
so a dead run of "the other machine" is recovered only once its lease has expired.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from picpipe.catalog.db import open_catalog
from picpipe.config import RunOptions
from picpipe.jobs.runs import LeasedRun
from picpipe.library.layout import TEMP_PREFIX, temp_run_id
from picpipe.samples import make_jpeg
from tests.conftest import tree_digest

PICPIPE = Path(os.sys.executable).with_name("picpipe")
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass(frozen=True)
class Photos:
    """Two source folders with shared photos (byte-identical copies) and photos of their own."""

    a: Path
    b: Path
    hashes: dict[Path, str]  # every source file → sha256

    @property
    def unique(self) -> set[str]:
        return set(self.hashes.values())


def sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Photos:
    root = tmp_path_factory.mktemp("overlap").resolve()
    a, b = root / "phone", root / "nas-copy"
    start = datetime(2022, 3, 1, 8, 0)
    for i in range(48):
        when = start + timedelta(days=i // 6, hours=i % 6)
        if i < 32:  # shared: the same bytes in both folders (a phone dump and its NAS copy)
            photo = make_jpeg(a / f"IMG_{i:04d}.jpg", size=(1200, 900), taken=when, seed=i)
            (b / "DCIM").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo.path, b / "DCIM" / f"IMG_{i:04d}.jpg")
        else:  # only in one of them
            folder = a if i % 2 else b
            make_jpeg(folder / f"own_{i:04d}.jpg", size=(1200, 900), taken=when, seed=i)
    hashes = {p: sha256(p) for p in [*a.rglob("*.jpg"), *b.rglob("*.jpg")]}
    return Photos(a, b, hashes)


SPAWNED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """A failed assertion must not leave a picpipe (and its exiftool helpers) running."""
    yield
    while SPAWNED:
        proc = SPAWNED.pop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Machine:
    """One "machine": its own home, its host name, the shared catalog and library."""

    home: Path
    host: str
    library: Path
    url: str
    logs: Path
    lease: float = 3.0
    extra: dict[str, str] | None = None

    def spawn(self, *args: str, tag: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
        env |= {
            "PICPIPE_DATABASE_URL": self.url,
            "PICPIPE_IMPORT__FSYNC": "false",
            "PICPIPE_RUNS__HOST": self.host,
            "PICPIPE_RUNS__LEASE_SECONDS": str(self.lease),
            **(self.extra or {}),
        }
        cmd = [str(PICPIPE), "--home", str(self.home), "--library", str(self.library), *args]
        out = (self.logs / f"{tag}.out").open("wb")
        err = (self.logs / f"{tag}.err").open("wb")
        with out, err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        SPAWNED.append(proc)
        return proc

    def result(self, proc: subprocess.Popen[bytes], tag: str, timeout: float = 180) -> Result:
        try:
            code = proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stay-open exiftool helpers of a kill
        out = (self.logs / f"{tag}.out").read_text()
        return Result(code, out, (self.logs / f"{tag}.err").read_text())

    def run(self, *args: str, tag: str) -> Result:
        return self.result(self.spawn(*args, tag=tag), tag)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, Any]:
        assert self.out.strip(), f"no output (exit {self.code}):\n{self.err[-3000:]}"
        data: dict[str, Any] = json.loads(self.out)
        return data


def machines(tmp_path: Path, url: str, count: int = 2) -> list[Machine]:
    (tmp_path / "logs").mkdir()
    library = tmp_path / "library"
    return [
        Machine(tmp_path / f"home{i}", f"machine-{i}", library, url, tmp_path / "logs")
        for i in range(count)
    ]


def catalog_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as db:
            return [tuple(row) for row in db.execute(text(sql))]
    finally:
        engine.dispose()


def temp_files(library: Path) -> list[Path]:
    return [p for p in library.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def assert_library_holds_exactly(library: Path, url: str, photos: Photos) -> None:
    """Every photo once, with its bytes; one asset per content; no temp file."""
    assert temp_files(library) == []
    originals = [p for p in (library / "originals").rglob("*.jpg")]
    assert sorted(p.stem for p in originals) == sorted(photos.unique)
    for path in originals:
        assert sha256(path) == path.stem
    assets = catalog_rows(url, "SELECT sha256 FROM asset")
    assert sorted(r[0] for r in assets) == sorted(photos.unique)


def test_two_importers_on_one_catalog_and_library_share_the_work(
    catalog_url: str, photos: Photos, tmp_path: Path, exiftool_available: None
) -> None:
    before = tree_digest(photos.a.parent)
    one, two = machines(tmp_path, catalog_url)
    first = one.spawn("import", str(photos.a), "--json", "--no-thumbs", tag="a")
    second = two.spawn("import", str(photos.b), "--json", "--no-thumbs", tag="b")
    ra, rb = one.result(first, "a"), two.result(second, "b")
    assert (ra.code, rb.code) == (0, 0), ra.err[-2000:] + rb.err[-2000:]
    a, b = ra.json, rb.json
    assert a["failed"] == b["failed"] == 0
    assert a["seen"] + b["seen"] == len(photos.hashes)
    # Each shared photo is new in exactly one of the two runs, a duplicate in the other.
    assert a["new"] + b["new"] == len(photos.unique)
    assert a["duplicate"] + b["duplicate"] == len(photos.hashes) - len(photos.unique)

    assert_library_holds_exactly(one.library, catalog_url, photos)
    files = catalog_rows(
        catalog_url,
        "SELECT s.location, f.ref, f.sha256, f.state FROM source_file f"
        " JOIN source s ON s.id = f.source_id",
    )
    recorded = {Path(location) / ref: sha for location, ref, sha, _state in files}
    assert recorded == photos.hashes, "both sets of provenance are recorded, once each"
    statuses = catalog_rows(catalog_url, "SELECT kind, status FROM session ORDER BY id")
    assert statuses == [("import", "completed"), ("import", "completed")], (
        "neither run marked the other interrupted"
    )
    assert catalog_rows(catalog_url, "SELECT key FROM claim") == []
    assert catalog_rows(catalog_url, "SELECT key FROM run_lease") == []
    verify = one.run("verify", "--json", tag="verify")
    assert (verify.code, verify.json["clean"]) == (0, True), verify.out
    assert tree_digest(photos.a.parent) == before, "sources are never modified"


def test_one_import_of_a_source_at_a_time_across_machines(
    catalog_url: str, photos: Photos, tmp_path: Path, exiftool_available: None
) -> None:
    one, two = machines(tmp_path, catalog_url)
    # "machine-0" is importing the folder right now (a run held here, in the test process).
    catalog = open_catalog(catalog_url)
    options = RunOptions(host="machine-0", lease_seconds=30)
    try:
        with LeasedRun(
            catalog, kind="import", device="phone", keys=[f"import:{photos.a}"], options=options
        ) as held:
            busy = two.run("import", str(photos.a), "--json", "--no-thumbs", tag="b")
            assert busy.code == 10, busy.err
            assert f"is held by import run {held.id} on machine-0" in busy.err
            other = two.run("import", str(photos.b), "--json", "--no-thumbs", tag="other")
            assert other.code == 0, "another source imports meanwhile"
            status = two.run("status", "--json", tag="status").json
            assert [(r["run_id"], r["host"], r["kind"]) for r in status["runs"]] == [
                (held.id, "machine-0", "import")
            ]
            assert status["import_running"] is True
        done = one.run("import", str(photos.a), "--json", "--no-thumbs", tag="a")
        assert done.code == 0, done.err
    finally:
        catalog.close()


def catalog_rows_safe(url: str, sql: str) -> list[tuple[Any, ...]]:
    try:
        return catalog_rows(url, sql)
    except Exception:  # not migrated yet
        return []


def test_a_killed_importer_is_recovered_only_after_its_lease_expires(
    catalog_url: str, photos: Photos, tmp_path: Path, exiftool_available: None
) -> None:
    one, two = machines(tmp_path, catalog_url)
    victim = one.spawn("import", str(photos.a), "--json", "--no-thumbs", tag="victim")
    survivor = two.spawn("import", str(photos.b), "--json", "--no-thumbs", tag="survivor")
    deadline = time.monotonic() + 60
    while len(list((one.library / "originals").rglob("*.jpg"))) < 6:
        assert victim.poll() is None, "the import ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    (dead_run,) = [
        r[0] for r in catalog_rows(catalog_url, "SELECT id FROM session WHERE host = 'machine-0'")
    ]
    # A temp file the dead run left, as a kill mid-copy does (and one of a live run elsewhere).
    day = next((one.library / "originals").glob("*/*/*"))
    leftover = day / f"{TEMP_PREFIX}r{dead_run}-0123456789abcdef-dead"
    leftover.write_bytes(b"half a photo")
    foreign = day / f"{TEMP_PREFIX}r999999-0123456789abcdef-live"
    foreign.write_bytes(b"another machine's copy in flight")

    rs = two.result(survivor, "survivor")
    assert rs.code == 0, rs.err[-3000:]
    assert rs.json["failed"] == 0, rs.json["failures"]
    (status,) = catalog_rows(catalog_url, f"SELECT status FROM session WHERE id = {dead_run}")
    # The survivor started while the victim was alive: it did not touch the victim's run.
    assert status == ("running",)

    # Once the lease has lapsed, the next run on the other machine recovers it: its own
    # temp files only.
    time.sleep(one.lease + 0.5)
    again = two.run("import", str(photos.a), "--json", "--no-thumbs", tag="again")
    assert again.code == 0, again.err[-3000:]
    assert catalog_rows(catalog_url, f"SELECT status FROM session WHERE id = {dead_run}") == [
        ("interrupted",)
    ]
    assert not leftover.exists(), "the dead run's temp file is swept"
    assert foreign.exists(), "a temp file of a run that is not stale is left alone"
    assert temp_run_id(foreign.name) == 999999
    foreign.unlink()
    assert_library_holds_exactly(one.library, catalog_url, photos)
    statuses = [r[0] for r in catalog_rows(catalog_url, "SELECT status FROM session")]
    assert "running" not in statuses


def test_two_syncs_to_one_destination_never_upload_a_key_twice(
    catalog_url: str, photos: Photos, tmp_path: Path, exiftool_available: None
) -> None:
    one, two = machines(tmp_path, catalog_url)
    nas = tmp_path / "nas"
    nas.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"destinations:\n  nas:\n    kind: filesystem\n    path: {nas}\n")
    assert one.run("import", str(photos.a), str(photos.b), "--no-thumbs", tag="import").code == 0
    first = one.spawn("--config", str(config), "sync", "--json", tag="s1")
    second = two.spawn("--config", str(config), "sync", "--json", tag="s2")
    r1, r2 = one.result(first, "s1"), two.result(second, "s2")
    codes = sorted((r1.code, r2.code))
    # Either the second waited for nothing (the first was done) or found the first at work.
    assert codes in ([0, 0], [0, 10]), r1.err + r2.err
    if codes == [0, 10]:
        busy = r1 if r1.code == 10 else r2
        assert "sync:nas is held by sync run" in busy.err
    uploaded = sum(r.json["destinations"]["nas"]["uploaded"] for r in (r1, r2) if r.code == 0)
    assert uploaded == len(photos.unique), "each asset uploaded once"
    stored = sorted(  # originals only: sidecars and catalog snapshots go beside them
        p
        for p in nas.rglob("*")
        if p.is_file() and p.suffix != ".xmp" and "picpipe-catalog" not in p.parts
    )
    assert len(stored) == len(photos.unique)
    assert sorted(sha256(p) for p in stored) == sorted(photos.unique)
    keys = catalog_rows(catalog_url, "SELECT remote_key, state FROM replica")
    assert len({k for k, _s in keys}) == len(keys) == len(photos.unique)
    assert {s for _k, s in keys} == {"verified"}
    statuses = [r[0] for r in catalog_rows(catalog_url, "SELECT status FROM session")]
    assert "interrupted" not in statuses
    assert "running" not in statuses


def test_a_database_outage_mid_import_fails_no_file(
    catalog_url: str, photos: Photos, tmp_path: Path, exiftool_available: None
) -> None:
    (one,) = machines(tmp_path, catalog_url, count=1)
    one.extra = {"PICPIPE_RUNS__BUSY_TIMEOUT": "1", "PICPIPE_WORKERS": "2"}
    proc = one.spawn("import", str(photos.a), str(photos.b), "--json", "--no-thumbs", tag="cut")
    deadline = time.monotonic() + 60
    while len(list((one.library / "originals").rglob("*.jpg"))) < 3:
        assert proc.poll() is None, "the import ended before the outage"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    with outage(catalog_url):
        cut = one.result(proc, "cut", timeout=120)
    assert cut.code == 5, f"exit {cut.code}:\n{cut.err[-3000:]}"
    assert "catalog error" in cut.err
    assert "nothing was marked failed" in cut.err
    failed = catalog_rows(catalog_url, "SELECT ref FROM source_file WHERE state = 'failed'")
    assert failed == [], "no file is recorded as failed because the database went away"

    again = one.run("import", str(photos.a), str(photos.b), "--json", "--no-thumbs", tag="again")
    assert again.code == 0, again.err[-3000:]
    assert again.json["failed"] == 0
    assert_library_holds_exactly(one.library, catalog_url, photos)
    statuses = [r[0] for r in catalog_rows(catalog_url, "SELECT status FROM session ORDER BY id")]
    assert statuses[-1] == "completed"
    assert "running" not in statuses


@contextlib.contextmanager
def outage(url: str) -> Any:
    """The catalog goes away until the block ends: PostgreSQL refuses connections and ends
    every session (a failover); SQLite is write-locked by another process past the busy
    timeout."""
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()
        return
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0].replace("+psycopg", "") + "/postgres"
    stop = threading.Event()

    def cut() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            while not stop.is_set():
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                stop.wait(0.05)

    worker = threading.Thread(target=cut, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
