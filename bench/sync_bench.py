"""Sync benchmark: replication throughput against ``rclone copy``, and the cost of a no-op sync.

Generates N JPEGs of 3000x2000 (about 3.3 MB each) under ``--out`` and imports them once into a
library (fsync and sidecars off; reused by later runs). Then, for each destination kind - a local
folder (``filesystem``, and ``filesystem-nofsync`` with the kind's fsync off, as rclone writes),
``s3`` on the project's moto server and ``azure`` on Azurite, both started with the code in
``tests/servers`` - it times the real CLI (``picpipe sync --destination NAME --json``, start-up
included) replicating the whole library to a fresh destination, and ``rclone copy`` (Debian
rclone) of the same originals to a fresh target of the same kind: rounds interleaved, medians of
``--repeat``, each ``--concurrency`` used as ``replicas.concurrency`` and rclone ``--transfers``
(``--checkers 8``, rclone's default hash check on). CPU seconds of both processes are shown too:
on a busy machine they vary less than wall time. Target: picpipe >= 1.0x rclone's throughput.

No-op sync (everything verified already): CLI wall time, in-process ``SyncRun.run()`` time and
the calls it makes to the destination (counted by a proxy; the target is zero), beside a no-op
``rclone copy`` of the same tree; and the same for a synthetic catalog of ``--noop-assets``
verified assets (rows written with SQL; the no-op path reads only the catalog). ``--profile``
adds one in-process sync per kind with cProfile on every worker thread: where the time goes.

rclone remotes come from environment variables only (``--config`` an empty file of ours), so no
secret lands in a file and a user's rclone config is never read. From the repo:

    .venv/bin/python bench/sync_bench.py [--jpegs N] [--repeat N] [--concurrency 4 8]
        [--kinds filesystem filesystem-nofsync s3 azure] [--noop-assets N] [--profile]
        [--json] [--out DIR]

Progress goes to stderr; the report (with ``--json``, one JSON object) to stdout; it is also
written to ``<out>/sync_bench.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, insert, select

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Asset, Destination, Replica
from picpipe.config import load_settings
from picpipe.destinations.base import Destination as Backend
from picpipe.destinations.base import open_destination
from picpipe.jobs.replicate import SyncRun
from picpipe.jobs.retry import RetryPolicy
from picpipe.jobs.workflows import import_sources
from picpipe.library.layout import ORIGINALS
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.samples import make_jpeg
from picpipe.sources.folder import FolderSource

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's own test servers: tests/servers/*.py

PICPIPE = str(Path(sys.executable).with_name("picpipe"))
RCLONE = shutil.which("rclone") or "rclone"
MB = 1e6
DATA_VERSION = 2  # bump when the generated data changes shape, to invalidate old caches
KINDS = ("filesystem", "filesystem-nofsync", "s3", "azure")
REMOTE_CALLS = ("stat", "put", "verify", "read", "list", "check", "find_existing")
Section = dict[str, Any]

# What each side does per file, so the comparison is read honestly (rclone 1.60 with its
# defaults, seen with -vv --dump headers: it logs "md5 = … OK" after each transfer).
HASH_NOTES = {
    "filesystem": (
        "picpipe: stat of the key, kernel copy (copy_file_range) to a temp name, fsync of file "
        "and folder (the default fsync: true), the temp file read back and SHA-256d, rename | "
        "rclone: copy, MD5 of source and copy compared after each file; no fsync"
    ),
    "filesystem-nofsync": "the same with the destination's fsync: false, as rclone does",
    "s3": (
        "picpipe: one LIST per run, MD5+SHA-256 of the source in one read (the SHA-256 proves "
        "the library copy is sound), PUT with Content-MD5 and x-amz-checksum-sha256 (botocore "
        "also SHA-256s the body for SigV4 on http endpoints); the server's MD5 ETag verifies it | "
        "rclone: one LIST, MD5 of the source, PUT with Content-MD5 and UNSIGNED-PAYLOAD, then "
        "HEAD: ETag = MD5"
    ),
    "azure": (
        "picpipe: one List per run, MD5+SHA-256 of the source in one read, Put Blob with "
        "transactional Content-MD5 (the service refuses other bytes, which verifies it) | "
        "rclone: one List, MD5 of the source, Put Block + Put Block List with "
        "x-ms-blob-content-md5, then HEAD: Content-MD5"
    ),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def figure(label: str, value: float, base_label: str, base: float, unit: str) -> dict[str, Any]:
    ratio = value / base if base else float("nan")
    return dict(label=label, value=value, unit=unit, baseline_label=base_label, baseline=base,
                ratio=ratio)  # fmt: skip


def verdict(target: str, met: bool, detail: str) -> dict[str, Any]:
    return {"target": target, "met": met, "detail": detail}


def child_env(extra: dict[str, str], *, rclone: bool = False) -> dict[str, str]:
    """This environment without the user's PICPIPE_* and RCLONE_* settings, plus ``extra``.

    For rclone also without AWS_CA_BUNDLE: its S3 SDK refuses a CA bundle together with
    rclone's own HTTP transport (LoadCustomCABundleError), and the servers here are plain HTTP.
    """
    drop = ("PICPIPE_", "RCLONE_", *(("AWS_CA_BUNDLE",) if rclone else ()))
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | extra


@dataclass(frozen=True, slots=True)
class Ran:
    seconds: float  # wall time
    cpu: float  # user + system seconds of the child (the servers' CPU is not in it)
    stdout: str


def timed(cmd: Sequence[str], env: dict[str, str]) -> Ran:
    """Run ``cmd`` to its end; a failure stops the benchmark with its output.

    CPU time comes from RUSAGE_CHILDREN, which counts only children waited for: the servers
    (children too) run on, so the difference is this command's own.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} {cmd[1:4]} failed ({done.returncode}): "
                         f"{(done.stderr or done.stdout)[-3000:]}")  # fmt: skip
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Ran(seconds, cpu, done.stdout)


# -- data ----------------------------------------------------------------------------------------


def _taken(i: int) -> datetime:
    return datetime(2021, 5, 1, 10, 0, 0) + timedelta(days=2 * i, minutes=41 * i)


def _make(job: tuple[Path, int]) -> None:
    path, i = job
    make_jpeg(path, size=(3000, 2000), taken=_taken(i), seed=i, noise=28.0 + i % 9, quality=90)


@dataclass(frozen=True, slots=True)
class Library:
    """The imported library and its copy for this run (catalog in ``home``)."""

    home: Path
    root: Path
    count: int
    bytes: int


def ensure_library(out: Path, count: int) -> tuple[Library, bool]:
    """``count`` generated JPEGs imported into ``out/library`` once (fsync off); reused."""
    folder, home, root = out / "sync-jpegs", out / "sync-home", out / "sync-library"
    marker = out / "sync-library.json"
    wanted = {"version": DATA_VERSION, "count": count}
    old = load_json(marker)
    if (
        {k: old.get(k) for k in wanted} == wanted
        and (home / "catalog.db").is_file()
        and (root / ORIGINALS).is_dir()
    ):
        return Library(home, root, count, int(old["bytes"])), True
    marker.unlink(missing_ok=True)  # written again only once the import is complete
    for path in (folder, home, root):
        shutil.rmtree(path, ignore_errors=True)
    folder.mkdir(parents=True)
    files = [folder / f"IMG_{_taken(i):%Y%m%d_%H%M%S}_{i:04d}.jpg" for i in range(count)]
    log(f"generating {count} JPEGs of 3000x2000 in {folder} (once) ...")
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_make, [(f, i) for i, f in enumerate(files)]))
    log(f"importing them into {root} (once, fsync off) ...")
    # No sidecars: the originals folder then holds exactly what sync replicates (rclone's input).
    quick: dict[str, Any] = {"sidecars": {"write": False}, "import": {"fsync": False}}
    settings = load_settings(home=home, library=root, **quick)
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    try:
        source = FolderSource(str(folder), folder, settings.scan)
        summary = import_sources(settings, catalog, [source], tools=tools)
        with catalog.session() as db:
            total = int(db.scalar(select(func.sum(Asset.size))) or 0)
    finally:
        tools.close()
        catalog.close()
    if summary.new != count:
        raise SystemExit(f"the import went wrong: {summary.as_dict()}")
    shutil.rmtree(folder)  # the library holds the originals now
    marker.write_text(json.dumps(wanted | {"bytes": total}))
    return Library(home, root, count, total), False


def fresh_home(library: Library, work: Path) -> Library:
    """A copy of the cached catalog, so destinations made by this run leave the cache alone."""
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy2(library.home / "catalog.db", home / "catalog.db")
    return Library(home, library.root, library.count, library.bytes)


# -- targets -------------------------------------------------------------------------------------


class Target:
    """One destination kind: fresh places to replicate to, for picpipe and for rclone."""

    kind = ""

    def env(self, tag: str) -> dict[str, str]:
        """Variables picpipe (its ``*_env`` options) and rclone (its remote) read for ``tag``."""
        return {}

    def create(self, tag: str) -> None: ...

    def options(self, tag: str) -> dict[str, Any]:
        """The ``destinations.<name>`` entry replicating to ``tag``."""
        raise NotImplementedError

    def rclone_path(self, tag: str) -> str:
        raise NotImplementedError

    def objects(self, tag: str) -> tuple[int, int]:
        """(count, bytes) of what ``tag`` holds, to check each run did the whole job."""
        raise NotImplementedError

    def drop(self, tag: str) -> None: ...


class FilesystemTarget(Target):
    """Folders under ``root``; with ``fsync`` False the destination's fsync option is off."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        self.kind = "filesystem" if fsync else "filesystem-nofsync"

    def create(self, tag: str) -> None:
        (self.root / tag).mkdir(parents=True)

    def options(self, tag: str) -> dict[str, Any]:
        return {"kind": "filesystem", "path": str(self.root / tag), "fsync": self.fsync}

    def rclone_path(self, tag: str) -> str:
        return str(self.root / tag)

    def objects(self, tag: str) -> tuple[int, int]:
        found = [p.stat().st_size for p in (self.root / tag).rglob("*") if p.is_file()]
        return len(found), sum(found)

    def drop(self, tag: str) -> None:
        shutil.rmtree(self.root / tag, ignore_errors=True)


class S3Target(Target):
    """Buckets on the project's S3 test server (moto, its own process, authentication on)."""

    kind = "s3"
    REMOTE = "ppbench_s3"

    def __init__(self, server: Any) -> None:
        self.server = server
        self.client = server.client()

    def env(self, tag: str) -> dict[str, str]:
        keys = {"PPBENCH_S3_KEY_ID": self.server.access_key_id,
                "PPBENCH_S3_SECRET": self.server.secret_access_key}  # fmt: skip
        return dict(self.server.rclone_env(self.REMOTE)) | keys

    def create(self, tag: str) -> None:
        self.client.create_bucket(Bucket=tag)

    def options(self, tag: str) -> dict[str, Any]:
        return {"kind": "s3", "bucket": tag, "endpoint_url": self.server.endpoint_url,
                "region": self.server.region, "addressing_style": "path",
                "access_key_id_env": "PPBENCH_S3_KEY_ID",
                "secret_access_key_env": "PPBENCH_S3_SECRET"}  # fmt: skip

    def rclone_path(self, tag: str) -> str:
        return f"{self.REMOTE}:{tag}"

    def _items(self, tag: str) -> Iterator[dict[str, Any]]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=tag):
            yield from page.get("Contents", [])

    def objects(self, tag: str) -> tuple[int, int]:
        sizes = [int(item["Size"]) for item in self._items(tag)]
        return len(sizes), sum(sizes)

    def drop(self, tag: str) -> None:  # the emulator's memory, not anyone's data
        with suppress(Exception):
            keys = [{"Key": item["Key"]} for item in self._items(tag)]
            for i in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=tag, Delete={"Objects": keys[i : i + 1000]})
            self.client.delete_bucket(Bucket=tag)


class AzureTarget(Target):
    """Containers on Azurite; rclone 1.60 reaches an emulator on another port only through a
    container SAS URL (its ``endpoint`` is a host suffix it puts behind https://account.)."""

    kind = "azure"
    REMOTE = "ppbench_az"

    def __init__(self, server: Any) -> None:
        from azure.storage.blob import BlobServiceClient

        self.server = server
        self.service = BlobServiceClient.from_connection_string(server.connection_string)

    def env(self, tag: str) -> dict[str, str]:
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        sas = generate_container_sas(
            self.server.account_name,
            tag,
            account_key=self.server.account_key,
            permission=ContainerSasPermissions(read=True, write=True, create=True, list=True),
            expiry=datetime.now().astimezone() + timedelta(hours=6),
        )
        prefix = f"RCLONE_CONFIG_{self.REMOTE.upper()}_"
        return {"PPBENCH_AZURE_CONN": self.server.connection_string,
                prefix + "TYPE": "azureblob",
                prefix + "SAS_URL": f"{self.server.account_url}/{tag}?{sas}"}  # fmt: skip

    def create(self, tag: str) -> None:
        self.service.create_container(tag)

    def options(self, tag: str) -> dict[str, Any]:
        return {"kind": "azure", "container": tag, "connection_string_env": "PPBENCH_AZURE_CONN"}

    def rclone_path(self, tag: str) -> str:
        return f"{self.REMOTE}:{tag}"

    def objects(self, tag: str) -> tuple[int, int]:
        sizes = [int(b.size) for b in self.service.get_container_client(tag).list_blobs()]
        return len(sizes), sum(sizes)

    def drop(self, tag: str) -> None:  # the emulator's disk, not anyone's data
        with suppress(Exception):
            self.service.delete_container(tag)


def open_targets(stack: ExitStack, kinds: Sequence[str], work: Path) -> dict[str, Target]:
    """Start the servers the kinds need (the project's own test-server code) and stop them."""
    targets: dict[str, Target] = {}
    for kind in kinds:
        if kind.startswith("filesystem"):
            targets[kind] = FilesystemTarget(work / "fs", fsync=kind == "filesystem")
        elif kind == "s3":
            from tests.servers.s3 import running_s3_server

            log("starting the S3 server (moto) ...")
            targets[kind] = S3Target(stack.enter_context(running_s3_server()))
        elif kind == "azure":
            from tests.servers.azurite import running_azurite

            log("starting Azurite ...")
            targets[kind] = AzureTarget(stack.enter_context(running_azurite()))
    return targets


# -- running picpipe and rclone -----------------------------------------------------------------


class Runner:
    """Runs the picpipe CLI and rclone against a target, each on fresh places named by tag."""

    def __init__(self, library: Library, work: Path) -> None:
        self.library = library
        self.work = work
        self.config = work / "config.yaml"
        self.rclone_config = work / "rclone.conf"  # empty: remotes come from the environment
        self.rclone_config.write_text("")
        self.serial = 0

    def tag(self, who: str) -> str:
        self.serial += 1
        return f"ppbench-{who}-{os.getpid()}-{self.serial}"

    def write_config(self, name: str, options: dict[str, Any], concurrency: int) -> None:
        config = {"replicas": {"concurrency": concurrency}, "destinations": {name: options}}
        self.config.write_text(yaml.safe_dump(config))

    def picpipe(self, target: Target, tag: str, concurrency: int) -> tuple[Ran, dict[str, Any]]:
        """``picpipe sync --destination <tag> --json``; its times and JSON report."""
        self.write_config(tag, target.options(tag), concurrency)
        cmd = [PICPIPE, "--home", str(self.library.home), "--library", str(self.library.root),
               "--config", str(self.config), "sync", "--destination", tag, "--json"]  # fmt: skip
        ran = timed(cmd, child_env(target.env(tag)))
        return ran, dict(json.loads(ran.stdout))

    def rclone(self, target: Target, tag: str, concurrency: int) -> Ran:
        cmd = [RCLONE, "copy", str(self.library.root / ORIGINALS), target.rclone_path(tag),
               "--config", str(self.rclone_config), "--transfers", str(concurrency),
               "--checkers", "8", "-q"]  # fmt: skip
        return timed(cmd, child_env(target.env(tag), rclone=True))

    def check(self, target: Target, tag: str, who: str) -> None:
        count, size = target.objects(tag)
        if (count, size) != (self.library.count, self.library.bytes):
            raise SystemExit(f"{who} to {target.kind} left {count} objects, {size} bytes; "
                             f"expected {self.library.count}, {self.library.bytes}")  # fmt: skip


def bench_throughput(
    runner: Runner, target: Target, concurrency: int, repeat: int
) -> tuple[Section, list[dict[str, Any]]]:
    """Median MB/s of picpipe sync and rclone copy to fresh places, rounds interleaved."""
    lib = runner.library
    times: dict[str, list[float]] = {"picpipe": [], "rclone": [], "picpipe_in_run": []}
    cpu: dict[str, list[float]] = {"picpipe": [], "rclone": []}
    for round_ in range(repeat):
        order = ("picpipe", "rclone") if round_ % 2 == 0 else ("rclone", "picpipe")
        for who in order:
            tag = runner.tag(who[0])
            target.create(tag)
            try:
                if who == "picpipe":
                    ran, report = runner.picpipe(target, tag, concurrency)
                    tally = report["destinations"][tag]
                    if tally["uploaded"] != lib.count or tally["failed"]:
                        raise SystemExit(f"picpipe sync to {target.kind} went wrong: {report}")
                    times["picpipe_in_run"].append(float(report["seconds"]))
                else:
                    ran = runner.rclone(target, tag, concurrency)
                runner.check(target, tag, who)
            finally:
                target.drop(tag)
            times[who].append(ran.seconds)
            cpu[who].append(ran.cpu)
            log(f"  {target.kind:<18} x{concurrency}  {who:<7} {lib.bytes / ran.seconds / MB:6.1f} "
                f"MB/s, {ran.cpu:5.2f} CPU s")  # fmt: skip
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: lib.bytes / v / MB for k, v in med.items()}
    ratio = rate["picpipe"] / rate["rclone"]
    section = {
        "kind": target.kind,
        "concurrency": concurrency,
        "picpipe_mb_s": rate["picpipe"],
        "rclone_mb_s": rate["rclone"],
        "ratio": ratio,
        "picpipe_in_run_mb_s": rate["picpipe_in_run"],
        "seconds": times,
        "cpu_seconds": cpu,
        "picpipe_cpu_s": statistics.median(cpu["picpipe"]),
        "rclone_cpu_s": statistics.median(cpu["rclone"]),
        "figure": figure(f"picpipe sync → {target.kind}, x{concurrency}", rate["picpipe"],
                         f"rclone copy --transfers {concurrency}", rate["rclone"], "MB/s"),
    }  # fmt: skip
    met = verdict(f"{target.kind} x{concurrency}: picpipe >= 1.0x rclone", ratio >= 1.0,
                  f"{ratio:.2f}x")  # fmt: skip
    return section, [met]


# -- no-op sync ----------------------------------------------------------------------------------


class Counting:
    """A destination that counts the calls that would reach the far end."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in REMOTE_CALLS:
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return value(*args, **kwargs)

        return counted


def in_process_noop(
    home: Path, root: Path, config: Path, name: str
) -> tuple[float, dict[str, int]]:
    """One in-process ``SyncRun.run()`` of destination ``name``: seconds and remote calls."""
    settings = load_settings(config=config, home=home, library=root)
    catalog = open_catalog(settings.catalog_url)
    backend = Counting(open_destination(name, dict(settings.destinations[name])))
    try:
        run = SyncRun(
            catalog,
            settings.library_root,
            {name: backend},  # type: ignore[dict-item]  # the proxy quacks like the backend
            policy=RetryPolicy(0, 0.0, 0.0),
            concurrency={name: settings.replicas.concurrency},
        )
        start = time.perf_counter()
        report = run.run()
        seconds = time.perf_counter() - start
    finally:
        backend.close()
        catalog.close()
    tally = report.destinations[name]
    if tally.planned or tally.uploaded or tally.failed:
        raise SystemExit(f"the no-op sync of {name} did something: {report.as_dict()}")
    # S3 and Azure build their SDK client on first use: still None means not one request
    # (a proof at the network level, beside the counted calls).
    calls = dict(backend.calls)
    if getattr(backend._inner, "_client", None) is not None:
        calls["sdk client made"] = 1
    return seconds, calls


def log_noop(result: dict[str, Any]) -> None:
    log(f"  no-op {result['kind']}, {result['assets']} assets: CLI {result['cli_s']:.2f} s, "
        f"in-process {result['in_process_s'] * 1000:.0f} ms, calls {result['remote_calls']}, "
        f"rclone {result['rclone_noop_s']:.2f} s")  # fmt: skip


def median_of(job: Callable[[], float], repeat: int) -> float:
    return statistics.median(job() for _ in range(repeat))


def bench_noop(runner: Runner, target: Target, concurrency: int, repeat: int) -> Section:
    """A destination and an rclone target holding everything; then sync / copy again."""
    lib = runner.library
    ours, theirs = runner.tag("noop"), runner.tag("noop-rclone")
    try:
        target.create(ours)
        target.create(theirs)
        runner.picpipe(target, ours, concurrency)
        runner.rclone(target, theirs, concurrency)

        def cli() -> float:
            ran, report = runner.picpipe(target, ours, concurrency)
            if report["destinations"][ours]["planned"]:
                raise SystemExit(f"the no-op sync planned work: {report}")
            return ran.seconds

        cli()  # warm-up
        os.environ.update(target.env(ours))  # the in-process destination reads its *_env
        in_proc = [in_process_noop(lib.home, lib.root, runner.config, ours) for _ in range(repeat)]
        result: dict[str, Any] = {
            "kind": target.kind,
            "assets": lib.count,
            "cli_s": median_of(cli, repeat),
            "in_process_s": statistics.median(s for s, _ in in_proc),
            "remote_calls": in_proc[-1][1],
            "rclone_noop_s": median_of(
                lambda: runner.rclone(target, theirs, concurrency).seconds, repeat
            ),
        }
    finally:
        target.drop(ours)
        target.drop(theirs)
    log_noop(result)
    return result


def synthetic_catalog(home: Path, count: int, name: str) -> None:
    """``count`` assets, each with a verified replica at ``name``, written straight with SQL."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    now = datetime(2024, 1, 1, 12, 0, 0)
    shas = [hashlib.sha256(f"asset {i}".encode()).hexdigest() for i in range(count)]
    try:
        with catalog.session() as db, db.begin():
            dest = Destination(name=name, kind="filesystem", created_at=now)
            db.add(dest)
            db.flush()
            db.execute(insert(Asset), [
                {"sha256": sha, "size": 3_000_000 + i, "kind": "photo", "mime_type": "image/jpeg",
                 "taken_local": now - timedelta(hours=i), "date_source": "exif",
                 "original_name": f"IMG_{i:05d}.jpg", "imported_at": now, "thumbs_state": "ok",
                 "library_path": f"{2024 - i // 3000}/01/01/IMG_{i:05d}.jpg"}
                for i, sha in enumerate(shas)
            ])  # fmt: skip
            db.execute(insert(Replica), [
                {"sha256": sha, "destination_id": dest.id, "state": "verified", "attempts": 1,
                 "remote_key": f"2024/01/01/IMG_{i:05d}.jpg", "checksum": sha,
                 "updated_at": now, "verified_at": now}
                for i, sha in enumerate(shas)
            ])  # fmt: skip
    finally:
        catalog.close()


def ensure_tiny_tree(root: Path, count: int) -> None:
    """``count`` 1 KB files in folders of 1000 (rclone's no-op reference at that size)."""
    marker = root.with_suffix(".json")
    if load_json(marker) == {"version": DATA_VERSION, "count": count}:
        return
    shutil.rmtree(root, ignore_errors=True)
    for i in range(count):
        folder = root / f"{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IMG_{i:05d}.jpg").write_bytes(i.to_bytes(4, "big") * 256)
    marker.write_text(json.dumps({"version": DATA_VERSION, "count": count}))


def bench_noop_synthetic(out: Path, work: Path, count: int, repeat: int) -> Section:
    """No-op sync over ``count`` verified assets: CLI and in-process; rclone on a tree as big."""
    home, root, name = work / "synthetic-home", work / "synthetic-library", "verified"
    empty = work / "synthetic-destination"  # any call reaching it would find nothing there
    for path in (root, empty):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    log(f"no-op sync over a synthetic catalog of {count} verified assets ...")
    synthetic_catalog(home, count, name)
    config = work / "synthetic.yaml"
    config.write_text(yaml.safe_dump({"destinations": {name: {"kind": "filesystem",
                                                              "path": str(empty)}}}))  # fmt: skip
    cmd = [PICPIPE, "--home", str(home), "--library", str(root), "--config", str(config),
           "sync", "--destination", name, "--json"]  # fmt: skip

    def cli() -> float:
        ran = timed(cmd, child_env({}))
        if json.loads(ran.stdout)["destinations"][name]["planned"]:
            raise SystemExit(f"the synthetic no-op sync planned work: {ran.stdout}")
        return ran.seconds

    cli()
    in_proc = [in_process_noop(home, root, config, name) for _ in range(repeat)]
    tree, copy = out / f"noop-tree-{count}", work / "noop-tree-copy"
    ensure_tiny_tree(tree, count)
    shutil.rmtree(copy, ignore_errors=True)
    rclone = [RCLONE, "copy", str(tree), str(copy), "--config", str(work / "rclone.conf"),
              "--checkers", "8", "-q"]  # fmt: skip
    timed(rclone, child_env({}, rclone=True))
    result: dict[str, Any] = {
        "kind": "filesystem (synthetic catalog)",
        "assets": count,
        "cli_s": median_of(cli, repeat),
        "in_process_s": statistics.median(s for s, _ in in_proc),
        "remote_calls": in_proc[-1][1],
        "rclone_noop_s": median_of(
            lambda: timed(rclone, child_env({}, rclone=True)).seconds, repeat
        ),
        "rclone_note": f"rclone copy of {count} 1 KB files, local to local, already copied",
        "version_s": median_of(
            lambda: timed([PICPIPE, "--version"], child_env({})).seconds, repeat
        ),
    }
    shutil.rmtree(copy, ignore_errors=True)
    log_noop(result)
    return result


def rclone_checks(runner: Runner, target: Target) -> str:
    """What rclone -vv says it compared after uploading one folder (the hash check is on by
    default). Only those lines are kept: -vv also logs the remote's secrets."""
    tag = runner.tag("probe")
    target.create(tag)
    one = min((runner.library.root / ORIGINALS).rglob("*.jpg"))
    cmd = [RCLONE, "copy", str(one.parent), target.rclone_path(tag), "--config",
           str(runner.rclone_config), "-vv"]  # fmt: skip
    try:
        done = subprocess.run(cmd, env=child_env(target.env(tag), rclone=True),
                              capture_output=True, text=True, check=False)  # fmt: skip
    finally:
        target.drop(tag)
    if done.returncode != 0:
        raise SystemExit(f"rclone to {target.kind} failed ({done.returncode})")
    said = [line.split(": ", 2)[-1] for line in done.stderr.splitlines() if " OK" in line]
    return "; ".join(dict.fromkeys(said)) or "(no hash check logged)"


# -- where the time goes ------------------------------------------------------------------------

# Buckets of a worker thread's time, by the profiled function's name (C functions mostly). A wait
# in ``with lock:`` is not a call cProfile sees: it counts in the waiting function's own time.
BUCKETS = (
    ("hashing", ("_hashlib", "_md5", "_sha2")),
    ("fsync", ("posix.fsync",)),
    ("file read/write", ("_io.", "posix.read", "posix.write", "readinto")),
    ("network send/receive", ("_socket", "_ssl", "select", "poll")),
    ("catalog (sqlite)", ("sqlite3",)),
)


class ProfiledSyncRun(SyncRun):
    """A SyncRun whose worker threads each run under their own cProfile profiler (cProfile
    sees only the thread that enabled it), merged afterwards."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.profilers: list[cProfile.Profile] = []
        self._local = threading.local()

    def _replicate(self, *args: Any, **kwargs: Any) -> None:
        prof = getattr(self._local, "prof", None)
        if prof is None:
            prof = self._local.prof = cProfile.Profile()
            with self._lock:
                self.profilers.append(prof)
        prof.enable()
        try:
            super()._replicate(*args, **kwargs)
        finally:
            prof.disable()


def bench_profile(runner: Runner, target: Target, concurrency: int, out: Path) -> Section:
    """One in-process sync to a fresh destination under ProfiledSyncRun: worker thread-seconds
    by bucket, and the top functions (``out/sync_profile_<kind>.txt``)."""
    lib, tag = runner.library, runner.tag("profile")
    target.create(tag)
    runner.write_config(tag, target.options(tag), concurrency)
    os.environ.update(target.env(tag))
    settings = load_settings(config=runner.config, home=lib.home, library=lib.root)
    catalog = open_catalog(settings.catalog_url)
    backend = open_destination(tag, dict(settings.destinations[tag]))
    try:
        run = ProfiledSyncRun(catalog, lib.root, {tag: backend}, policy=RetryPolicy(0, 0.0, 0.0),
                              concurrency={tag: concurrency})  # fmt: skip
        start = time.perf_counter()
        report = run.run()
        wall = time.perf_counter() - start
    finally:
        backend.close()
        catalog.close()
        target.drop(tag)
    if report.destinations[tag].uploaded != lib.count:
        raise SystemExit(f"the profiled sync to {target.kind} went wrong: {report.as_dict()}")
    text = io.StringIO()
    stats = pstats.Stats(*run.profilers, stream=text)
    stats.sort_stats("tottime").print_stats(30)
    (out / f"sync_profile_{target.kind}.txt").write_text(text.getvalue())
    buckets = dict.fromkeys([name for name, _ in BUCKETS] + ["python and other"], 0.0)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # (file, line, name) → …
    for (_file, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        bucket = next((b for b, keys in BUCKETS if any(k in name for k in keys)), None)
        buckets[bucket or "python and other"] += tottime
    busy = sum(buckets.values())
    shares = ", ".join(f"{k} {v:.1f} s ({v / busy:.0%})" for k, v in buckets.items() if v)
    log(f"  profile {target.kind}: {lib.bytes / wall / MB:.1f} MB/s in-process; {shares}")
    return {"kind": target.kind, "concurrency": concurrency, "wall_s": wall,
            "mb_s": lib.bytes / wall / MB, "thread_seconds": buckets,
            "top": f"sync_profile_{target.kind}.txt"}  # fmt: skip


# -- report --------------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    p = report["params"]
    print(f"picpipe sync benchmark: {os.cpu_count()} cores, {p['count']} JPEGs, "
          f"{p['bytes'] / MB:.0f} MB; medians of {p['repeat']} rounds; {p['data']}")  # fmt: skip
    print(f"rclone: {report['rclone_version']}; load average {p['load_at_start']:.1f} at the "
          f"start, {p['load_at_end']:.1f} at the end (other work skews figures)\n")  # fmt: skip
    print("| target | concurrency | picpipe MB/s | rclone MB/s | ratio | verdict (>= 1.0x) "
          "| CPU s picpipe / rclone |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for s in report["throughput"]:
        met = "met" if s["ratio"] >= 1.0 else "NOT MET"
        print(f"| {s['kind']} | {s['concurrency']} | {s['picpipe_mb_s']:.1f} | "
              f"{s['rclone_mb_s']:.1f} | {s['ratio']:.2f}x | {met} | "
              f"{s['picpipe_cpu_s']:.1f} / {s['rclone_cpu_s']:.1f} |")  # fmt: skip
    print("\nMB/s of each round (slowest-fastest), and picpipe's inside the run (its report's "
          "seconds: no start-up, no client set-up)")  # fmt: skip
    for s in report["throughput"]:
        lo_hi = {who: f"{p['bytes'] / max(s['seconds'][who]) / MB:.0f}-"
                      f"{p['bytes'] / min(s['seconds'][who]) / MB:.0f}"
                 for who in ("picpipe", "rclone")}  # fmt: skip
        print(f"  {s['kind']} x{s['concurrency']}: picpipe {lo_hi['picpipe']}, rclone "
              f"{lo_hi['rclone']}; picpipe in the run {s['picpipe_in_run_mb_s']:.1f}")  # fmt: skip
    print("\nwhat each side does per file:")
    for kind, note in report["hash_notes"].items():
        print(f"  {kind}: {note}")
        if kind in report["rclone_logged"]:
            print(f"    rclone -vv logged: {report['rclone_logged'][kind]}")
    print("\nno-op sync (everything verified already)")
    print("| target | assets | picpipe CLI s | in-process SyncRun.run ms | remote calls | "
          "rclone no-op copy s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for n in report["noop"]:
        calls = ", ".join(f"{k} {v}" for k, v in n["remote_calls"].items()) or "none"
        print(f"| {n['kind']} | {n['assets']} | {n['cli_s']:.2f} | {n['in_process_s'] * 1000:.0f}"
              f" | {calls} | {n['rclone_noop_s']:.2f} |")  # fmt: skip
    for n in report["noop"]:
        if "version_s" in n:
            print(f"  CLI start-up alone (picpipe --version): {n['version_s']:.2f} s; "
                  f"rclone reference at {n['assets']}: {n['rclone_note']}")  # fmt: skip
    if report["profile"]:
        print("\nwhere a worker thread's time goes (one in-process sync each, cProfile on every "
              "thread; thread-seconds, so more than the wall time)")  # fmt: skip
    for p in report["profile"]:
        busy = sum(p["thread_seconds"].values())
        shares = ", ".join(f"{k} {v:.1f} s ({v / busy:.0%})"
                           for k, v in p["thread_seconds"].items() if v)  # fmt: skip
        print(f"  {p['kind']} x{p['concurrency']}: {p['mb_s']:.1f} MB/s under the profiler, "
              f"wall {p['wall_s']:.1f} s; {shares}; top functions in {p['top']}")  # fmt: skip
    print("\nverdicts")
    for v in report["verdicts"]:
        print(f"  {v['target']}: {'met' if v['met'] else 'NOT MET'} ({v['detail']})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jpegs", type=int, default=120, help="JPEGs of ~3 MB (default 120)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per median (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8],
                        help="replicas.concurrency = rclone --transfers (default 4 8)")  # fmt: skip
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--noop-assets", type=int, default=10_000,
                        help="synthetic catalog size for the no-op figure (0: skip)")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="profile a sync per kind too")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if min(args.jpegs, args.repeat, *args.concurrency) < 1 or args.noop_assets < 0:
        parser.error("counts must be at least 1")
    if shutil.which(RCLONE) is None:
        raise SystemExit("rclone is not installed (apt-get install rclone)")
    out: Path = args.out.resolve()
    work = out / f"sync-work-{os.getpid()}"  # two runs at once must not share it
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cached, reused = ensure_library(out, args.jpegs)
    library = fresh_home(cached, work)
    for path in library.root.rglob("*"):  # into the page cache: this measures the sync
        if path.is_file():
            path.read_bytes()
    version = subprocess.run([RCLONE, "version"], capture_output=True, text=True, check=False)
    report: dict[str, Any] = {
        "params": vars(args) | {"out": str(out), "count": library.count, "bytes": library.bytes,
                                "load_at_start": os.getloadavg()[0],
                                "data": "library reused" if reused else "library generated"},
        "rclone_version": version.stdout.splitlines()[0] if version.stdout else "?",
        "throughput": [], "noop": [], "profile": [], "verdicts": [], "rclone_logged": {},
        "hash_notes": {k: HASH_NOTES[k] for k in args.kinds},
    }  # fmt: skip
    runner = Runner(library, work)
    with ExitStack() as stack:
        targets = open_targets(stack, args.kinds, work)
        for kind, target in targets.items():
            report["rclone_logged"][kind] = rclone_checks(runner, target)
        for concurrency in args.concurrency:
            for kind, target in targets.items():
                log(f"replicating {library.bytes / MB:.0f} MB to {kind} x{concurrency} ...")
                section, verdicts = bench_throughput(runner, target, concurrency, args.repeat)
                report["throughput"].append(section)
                report["verdicts"] += verdicts
        for kind, target in targets.items() if args.profile else ():
            log(f"profiling a sync to {kind} ...")
            report["profile"].append(bench_profile(runner, target, args.concurrency[0], out))
        for kind, target in targets.items():
            log(f"no-op sync to {kind} ...")
            report["noop"].append(bench_noop(runner, target, args.concurrency[0], args.repeat + 2))
    if args.noop_assets:
        synthetic = bench_noop_synthetic(out, work, args.noop_assets, args.repeat + 2)
        report["noop"].append(synthetic)
    for n in report["noop"]:
        calls = sum(v for k, v in n["remote_calls"].items())
        report["verdicts"].append(
            verdict(
                f"no-op sync of {n['kind']} ({n['assets']} assets) makes no remote call",
                calls == 0,
                f"{calls} calls",
            )
        )
    shutil.rmtree(work, ignore_errors=True)
    report["params"]["load_at_end"] = os.getloadavg()[0]
    (out / "sync_bench.json").write_text(json.dumps(report, indent=2, default=str))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
