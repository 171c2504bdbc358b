"""`kill -9` during `picpipe sync`, then `sync` again: nothing that was verified is uploaded
twice, nothing is missing, every replica ends verified, and no half file is visible."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sqlalchemy import select

from picpipe.catalog.models import Replica
from picpipe.hashing import sha256_file
from picpipe.samples import make_sample_set
from tests.conftest import LibraryFixture

COUNT = 60


def _spawn(
    base: list[str], env: dict[str, str], *, capture: bool = False
) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("picpipe")
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [str(exe), *base, "sync", "--json"],
        env={**os.environ, **env},
        stdout=out,
        stderr=out,
        start_new_session=True,
    )


def _final_files(root: Path) -> dict[str, tuple[int, int]]:
    """Visible replica files with (inode, mtime_ns): a re-upload would change both.

    Originals only: sidecars (``.xmp``) and catalog snapshots (``picpipe-catalog/``) go beside
    them after the uploads."""
    out = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("picpipe-catalog/") or path.suffix == ".xmp":
            continue
        if path.is_file() and not path.name.startswith(".picpipe-tmp-"):
            st = path.stat()
            out[path.relative_to(root).as_posix()] = (st.st_ino, st.st_mtime_ns)
    return out


def _verified(lib: LibraryFixture) -> dict[str, str]:
    with lib.catalog.session() as db:
        rows = db.scalars(select(Replica).where(Replica.state == "verified"))
        return {str(r.remote_key): r.sha256 for r in rows}


def test_kill_9_during_sync_then_sync_again(library: LibraryFixture, tmp_path: Path) -> None:
    make_sample_set(tmp_path / "phone", count=COUNT)
    library.import_folder(tmp_path / "phone")
    nas = tmp_path / "nas"
    nas.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "replicas": {"concurrency": 2, "backoff_base": 0},
                "destinations": {"nas": {"kind": "filesystem", "path": str(nas), "fsync": True}},
            }
        )
    )
    s = library.settings
    base = ["--home", str(s.home_root), "--library", str(s.library_root), "--config", str(config)]
    env = {"PICPIPE_DATABASE_URL": s.catalog_url}

    kills = 0
    verified_before: dict[str, str] = {}
    files_before: dict[str, tuple[int, int]] = {}
    for threshold in (1, 8, 20, 35, 50):
        proc = _spawn(base, env)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if len(_final_files(nas)) >= threshold:
                break
            time.sleep(0.002)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        # What the catalog calls verified must be complete, untouched files from now on.
        now_verified = _verified(library)
        assert set(verified_before) <= set(now_verified)
        files = _final_files(nas)
        for key, sha in now_verified.items():
            assert sha256_file(nas / key)[0] == sha
        for key in verified_before:
            assert files[key] == files_before[key], f"{key} was uploaded again"
        verified_before, files_before = now_verified, {k: files[k] for k in now_verified}

    assert kills >= 3, "the sync finished before most kill points; make the library bigger"
    proc = _spawn(base, env, capture=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["destinations"]["nas"]["failed"] == 0
    final = _verified(library)
    assert len(final) == COUNT
    files = _final_files(nas)
    assert set(files) == set(final)
    for key, sha in final.items():
        assert sha256_file(nas / key)[0] == sha
    for key in verified_before:
        assert files[key] == files_before[key], f"{key} was uploaded again"
    assert not list(nas.rglob(".picpipe-tmp-*")) or all(
        p.stat().st_size >= 0 for p in nas.rglob(".picpipe-tmp-*")
    )
    with library.catalog.session() as db:
        states = {r.state for r in db.scalars(select(Replica))}
    assert states == {"verified"}
