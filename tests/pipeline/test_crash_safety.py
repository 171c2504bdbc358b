"""Crash safety, proven: kill -9 real imports at many points, re-run, and check everything.

Each round starts from an empty library and catalog, SIGKILLs one or two `picpipe import`
processes at chosen points (start-up, migrations, scan, copies in flight, placed but not yet
catalogued, late commits), then lets one run complete and checks library, catalog and
`verify` against hashes the test computes itself. fsync stays on: the real durability path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
import pytest
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.pool import NullPool

from picpipe.library.layout import TEMP_PREFIX
from picpipe.samples import make_jpeg
from tests.conftest import tree_digest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PICPIPE = Path(sys.executable).with_name("picpipe")
UNIQUE_PHOTOS = 56
POLL = 0.002  # seconds between looks at the running import
ORIGINAL = re.compile(r"originals/\d{4}/\d{2}/\d{2}/([0-9a-f]{64})\.jpg")

Event = Literal["start", "catalog", "lock", "temp", "placed"]


@dataclass(frozen=True)
class SourceSet:
    """Two source folders; every file with the sha256 and library path it must end up at."""

    folders: tuple[Path, Path]
    hashes: dict[Path, str]  # every source file → its sha256
    expected: dict[str, str]  # sha256 → originals/YYYY/MM/DD/<sha256>.jpg


@dataclass(frozen=True)
class KillPoint:
    """SIGKILL ``delay`` seconds after ``event`` is seen in the running import.

    start: the process was spawned; catalog: it connected to the catalog (migrations start);
    lock: it holds its run lease in the catalog (migrations done); temp: a temp file is in the
    library;
    placed: ``count`` more originals got their final name than when it started.
    """

    event: Event
    delay: float = 0.0
    count: int = 1

    def __str__(self) -> str:
        count = f" x{self.count}" if self.event == "placed" else ""
        return f"{self.event}{count} +{self.delay * 1000:.0f}ms"


@dataclass(frozen=True)
class Profile:
    """When things happen in one uninterrupted import, in seconds after spawning it."""

    catalog: float
    lock: float
    end: float


@dataclass
class Harness:
    """One library, its catalog URL and the sources; spawns and checks real imports."""

    home: Path
    library: Path
    url: str
    sources: SourceSet
    logs: Path
    spawned: int = 0

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        """A `picpipe` process in its own process group, output to files (never a full pipe)."""
        self.spawned += 1
        out = self.logs / f"{self.spawned:02d}.out"
        err = self.logs / f"{self.spawned:02d}.err"
        cmd = [str(PICPIPE), "--home", str(self.home), "--library", str(self.library), *args]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            return subprocess.Popen(
                cmd, stdout=stdout, stderr=stderr, env=picpipe_env(self.url), start_new_session=True
            )

    def start_import(self) -> subprocess.Popen[bytes]:
        return self.spawn("import", *map(str, self.sources.folders), "--json")

    def finish(self, proc: subprocess.Popen[bytes], timeout: float = 120) -> tuple[int, str]:
        """Wait for ``proc``; returns its exit code and stdout (stderr goes into failures)."""
        deadline = time.monotonic() + timeout
        # Wait without reaping: while the leader is a zombie its group id cannot be reused.
        while not exited(proc):
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"picpipe did not finish in {timeout}s:\n{self.stderr()}")
            time.sleep(POLL)
        # A SIGKILLed picpipe can leave its stay-open exiftool helpers running; reap them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(), (self.logs / f"{self.spawned:02d}.out").read_text()

    def stderr(self) -> str:
        return (self.logs / f"{self.spawned:02d}.err").read_text()[-3000:]

    def complete_import(self) -> dict[str, Any]:
        rc, out = self.finish(self.start_import())
        assert rc == 0, f"import after crashes exited {rc}:\n{self.stderr()}"
        summary: dict[str, Any] = json.loads(out)
        return summary

    def watch(self, point: KillPoint) -> Callable[[subprocess.Popen[bytes]], bool]:
        """A test for "``point.event`` happened in this run", set up before it is spawned."""
        if point.event == "start":
            return lambda _proc: True
        if point.event == "catalog" and self.url.startswith("sqlite"):
            return lambda proc: sqlite_open(self.url, proc.pid)
        if point.event == "catalog":
            # Backends of earlier (killed) runs can linger a moment; only new ones count.
            before = pg_sessions(self.url)
            return lambda _proc: bool(pg_sessions(self.url) - before)
        if point.event == "lock":
            return lambda proc: proc.pid in run_holder(self.url)
        if point.event == "temp":
            return lambda _proc: bool(library_files(self.library)[0])
        target = len(library_files(self.library)[1]) + point.count
        return lambda _proc: len(library_files(self.library)[1]) >= target

    def kill_at(self, point: KillPoint) -> bool:
        """Run an import and SIGKILL it at ``point``; False when it finished before that."""
        happened = self.watch(point)
        began = time.monotonic()
        proc = self.start_import()
        while not happened(proc):
            if exited(proc):
                break
            time.sleep(POLL)
        else:
            time.sleep(point.delay)
        if not exited(proc):
            os.kill(proc.pid, signal.SIGKILL)
        rc, _out = self.finish(proc)
        temps, originals = library_files(self.library)
        # Shown by pytest when the test fails: what each kill left behind.
        print(
            f"  {point}: {'killed' if rc == -signal.SIGKILL else 'finished'} after"
            f" {time.monotonic() - began:.2f}s, left {len(temps)} temp and"
            f" {len(originals)} placed file(s)"
        )
        assert rc in (0, -signal.SIGKILL), f"import exited {rc}:\n{self.stderr()}"
        return rc == -signal.SIGKILL

    def reset(self) -> None:
        """An empty library and catalog (same URL): every round starts from nothing."""
        shutil.rmtree(self.library, ignore_errors=True)
        if self.url.startswith("sqlite"):
            # No file at all, as on a first run (the no-/proc "catalog" event needs that too).
            database = sqlite_path(self.url)
            for suffix in ("", "-wal", "-shm", "-journal"):
                database.with_name(database.name + suffix).unlink(missing_ok=True)
            return
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            tables = MetaData()
            tables.reflect(engine)
            tables.drop_all(engine)
        finally:
            engine.dispose()


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``proc`` ended, without reaping it (so its pid stays ours to signal)."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def picpipe_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
    return {**env, "PICPIPE_DATABASE_URL": url}


def sqlite_open(url: str, pid: int) -> bool:
    """Whether process ``pid`` has the SQLite catalog open (its migrations start then)."""
    fds = Path(f"/proc/{pid}/fd")
    if not fds.parent.is_dir():  # no /proc: the file appearing is the next best sign
        return sqlite_path(url).exists()
    target = os.path.realpath(sqlite_path(url))
    try:
        return any(os.readlink(fds / fd) == target for fd in os.listdir(fds))
    except FileNotFoundError:  # an fd closed while we looked
        return False


def pg_sessions(url: str) -> set[int]:
    """Server pids of the other sessions on the PostgreSQL catalog (the test keeps none open)."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return {row[0] for row in rows}


def run_holder(url: str) -> set[int]:
    """The pids of runs marked running in the catalog (a run holds its lease: migrations
    are done). Nothing when the catalog or its tables are not there yet."""
    if url.startswith("sqlite") and not sqlite_path(url).exists():
        return set()
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as db:
            rows = db.execute(text("SELECT pid FROM session WHERE status = 'running'"))
            return {row[0] for row in rows}
    except Exception:  # no session table yet, or a migration holds it
        return set()
    finally:
        engine.dispose()


def library_files(library: Path) -> tuple[list[Path], list[Path]]:
    """Temp files anywhere in the library, and every other file under ``originals/``."""
    temps: list[Path] = []
    originals: list[Path] = []
    for folder, _dirs, files in os.walk(library):
        for name in files:
            path = Path(folder, name)
            if name.startswith(TEMP_PREFIX):
                temps.append(path)
            elif path.relative_to(library).parts[0] == "originals":
                originals.append(path)
    return temps, originals


def sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, exiftool_available: None) -> SourceSet:
    """~60 photos of 0.3-1.5 MB in two folders, with byte-identical copies within and across."""
    root = tmp_path_factory.mktemp("sources").resolve()
    folders = (root / "phone", root / "camera")
    start = datetime(2021, 6, 1, 9, 30)
    taken: dict[Path, datetime] = {}
    for i in range(UNIQUE_PHOTOS):
        side = 480 + (i % 7) * 80
        when = start + timedelta(days=i // 4, hours=i % 4)  # four photos a day
        photo = make_jpeg(
            folders[i % 2] / f"roll{i % 3}" / f"IMG_{i:04d}.jpg",
            size=(side * 4 // 3, side),
            taken=when,
            offset="+02:00" if i % 3 == 0 else None,
            seed=i,
            noise=64.0 + (i % 5) * 8,
            quality=95,
        )
        taken[photo.path] = when
    shot = list(taken)  # shot[i] is in folders[i % 2]
    phone, camera = folders
    copies = {  # copy → original: the same bytes in both folders, and twice in one folder
        phone / "from-camera" / "IMG_0001.jpg": shot[1],
        camera / "from-phone" / "IMG_0002.jpg": shot[2],
        phone / "backup" / "IMG_0003.jpg": shot[3],
        camera / "roll0" / "IMG_0003 (1).jpg": shot[3],
        phone / "roll1" / "IMG_0004 copy.jpg": shot[4],
        camera / "roll2" / "IMG_0005 (1).jpg": shot[5],
    }
    for copy, original in copies.items():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, copy)
        taken[copy] = taken[original]
    hashes = {path: sha256(path) for path in taken}
    expected = {hashes[p]: f"originals/{t:%Y/%m/%d}/{hashes[p]}.jpg" for p, t in taken.items()}
    assert len(expected) == UNIQUE_PHOTOS, "generated photos must all differ"
    return SourceSet(folders, hashes, expected)


@pytest.fixture(scope="module")
def profile(sources: SourceSet, tmp_path_factory: pytest.TempPathFactory) -> Profile:
    """Time one uninterrupted import (SQLite, throwaway library) to place the kill points."""
    work = tmp_path_factory.mktemp("profile")
    (work / "logs").mkdir()
    url = f"sqlite:///{work / 'home' / 'catalog.db'}"
    harness = Harness(work / "home", work / "library", url, sources, work / "logs")
    watches = {event: harness.watch(KillPoint(event)) for event in ("catalog", "lock")}
    began = time.monotonic()
    proc = harness.start_import()
    times: dict[str, float] = {}
    while not exited(proc):
        for event, happened in watches.items():
            if event not in times and happened(proc):
                times[event] = time.monotonic() - began
        time.sleep(POLL)
    end = time.monotonic() - began
    rc, _out = harness.finish(proc)
    assert rc == 0, harness.stderr()
    return Profile(times.get("catalog", end / 3), times.get("lock", end / 2), end)


def kill_rounds(p: Profile) -> list[list[KillPoint]]:
    """Rounds of kill points; each round's kills hit the leftovers of the one before."""
    migrations, work, n = p.lock - p.catalog, p.end - p.lock, UNIQUE_PHOTOS
    return [
        # Creating the schema on a fresh catalog; the second run creates it again.
        [KillPoint("catalog", 0.15 * migrations), KillPoint("catalog", 0.45 * migrations)],
        [KillPoint("catalog", 0.8 * migrations), KillPoint("lock")],  # then session start, scan
        [KillPoint("start", 0.5 * p.catalog)],  # interpreter start-up, nothing touched yet
        [KillPoint("temp")],  # first copy in flight
        [KillPoint("temp"), KillPoint("lock")],  # mid-copy, then in the next run's recovery
        [KillPoint("placed"), KillPoint("placed", count=3)],  # final name, not yet catalogued
        [KillPoint("lock", 0.3 * work), KillPoint("placed", count=n // 4)],
        [KillPoint("placed", count=n // 2)],  # a batch may be committed, the rest not
        [KillPoint("placed", count=n)],  # every original placed; final commit pending
        [KillPoint("placed", 0.1 * work, count=n)],  # final commit, presence, session end
    ]


def assert_library_and_catalog_agree(h: Harness) -> None:
    """Every source file is in the library once, at its place, and the catalog says so."""
    expected = h.sources.expected
    temps, originals = library_files(h.library)
    assert temps == [], "unfinished temp files were left behind"
    placed = {str(p.relative_to(h.library)): p for p in originals if p.suffix != ".xmp"}
    assert sorted(placed) == sorted(expected.values()), "library holds exactly the sources"
    for rel, path in placed.items():
        match = ORIGINAL.fullmatch(rel)
        assert match is not None, rel
        assert sha256(path) == match.group(1), f"{rel} does not hold its hash"

    engine = create_engine(h.url, poolclass=NullPool)
    try:
        with engine.connect() as db:
            assets = db.execute(text("SELECT sha256, library_path, size FROM asset")).all()
            files = db.execute(
                text(
                    "SELECT s.location, f.ref, f.state, f.sha256 FROM source_file f"
                    " JOIN source s ON s.id = f.source_id"
                )
            ).all()
            statuses = db.execute(text("SELECT status FROM session ORDER BY id")).scalars().all()
    finally:
        engine.dispose()
    assert sorted((sha, path) for sha, path, _size in assets) == sorted(expected.items())
    for _sha, path, size in assets:
        assert size == (h.library / path).stat().st_size, path
    provenance = {Path(location) / ref: (state, sha) for location, ref, state, sha in files}
    assert len(files) == len(provenance) == len(h.sources.hashes), "one row per source file"
    for source_file, sha in h.sources.hashes.items():
        assert provenance.get(source_file) in (("imported", sha), ("duplicate", sha)), source_file
    assert "running" not in statuses, f"a session is still marked running: {statuses}"
    assert statuses[-1] == "completed"

    rc, out = h.finish(h.spawn("verify", "--json"))
    assert out.strip(), f"verify printed no report (exit {rc}):\n{h.stderr()}"
    report = json.loads(out)
    assert (rc, report["clean"]) == (0, True), report
    assert report["checked"] == len(expected)


def test_kill9_at_many_points_then_rerun_leaves_a_consistent_library(
    catalog_url: str, sources: SourceSet, profile: Profile, tmp_path: Path
) -> None:
    before = tree_digest(sources.folders[0].parent)
    (tmp_path / "logs").mkdir()
    h = Harness(tmp_path / "home", tmp_path / "library", catalog_url, sources, tmp_path / "logs")
    rounds = kill_rounds(profile)
    hits: list[tuple[KillPoint, bool]] = []

    print(
        f"profile: catalog {profile.catalog:.2f}s, lock {profile.lock:.2f}s, end {profile.end:.2f}s"
    )
    for number, points in enumerate(rounds, 1):
        print(f"round {number}")
        h.reset()
        hits += [(point, h.kill_at(point)) for point in points]
        summary = h.complete_import()
        print("  then:", {k: summary[k] for k in ("status", "new", "duplicate", "unchanged")})
        total = len(sources.hashes)
        assert (summary["seen"], summary["failed"], summary["failures"]) == (total, 0, [])
        assert summary["new"] + summary["duplicate"] + summary["unchanged"] == total
        assert_library_and_catalog_agree(h)

    again = h.complete_import()
    assert (again["new"], again["unchanged"], again["failed"]) == (0, len(sources.hashes), 0)
    assert tree_digest(sources.folders[0].parent) == before, "sources are never modified"
    missed = [point for point, killed in hits if not killed]
    # A kill can come after the end on a fast machine; most must land in a running import.
    assert len(missed) <= len(hits) // 4, f"imports finished before: {[str(p) for p in missed]}"
