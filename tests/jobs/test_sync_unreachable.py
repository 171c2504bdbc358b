"""An unreachable destination is found once, not once per photo: its part of the sync stops
within seconds with one line and exit 11, and the other destinations go on."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from picpipe.catalog.models import Replica
from picpipe.destinations.base import ConnectionReport, Destination
from picpipe.jobs.replicate import SyncRun
from picpipe.jobs.retry import RetryPolicy
from picpipe.samples import make_jpeg
from tests.conftest import LibraryFixture, run_cli
from tests.jobs.test_replicate import Counting, filesystem


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def photos(library: LibraryFixture, tmp_path: Path, count: int = 12) -> None:
    source = tmp_path / "phone"
    for i in range(count):
        make_jpeg(source / f"IMG_{i}.jpg", taken=datetime(2020, 3, 1 + i), seed=i)
    assert library.import_folder(source).new == count


def test_an_unreachable_destination_stops_at_once_and_the_others_go_on(
    library: LibraryFixture, tmp_path: Path
) -> None:
    photos(library, tmp_path)
    nas = tmp_path / "nas"
    nas.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        "destinations:\n"
        f"  nas:\n    kind: filesystem\n    path: {nas}\n"
        f"  unmounted:\n    kind: filesystem\n    path: {tmp_path / 'not-mounted' / 'photos'}\n"
        "  offline:\n    kind: s3\n    bucket: photos\n"
        f"    endpoint_url: http://127.0.0.1:{closed_port()}\n"
        "    access_key_id: AKIAEXAMPLE\n    secret_access_key: not-a-real-secret\n"
    )
    env = {
        "PICPIPE_HOME": str(library.settings.home_root),
        "PICPIPE_LIBRARY": str(library.root),
        "PICPIPE_DATABASE_URL": library.settings.catalog_url,
        "PICPIPE_CONFIG": str(config),
    }
    started = time.monotonic()
    result = run_cli("sync", "--json", env=env)
    seconds = time.monotonic() - started
    assert result.returncode == 11, result.stderr
    assert seconds < 10, f"took {seconds:.1f}s"
    report = json.loads(result.stdout)
    assert report["destinations"]["nas"]["uploaded"] == 12
    assert report["destinations"]["nas"]["unreachable"] is None
    assert "does not exist" in report["destinations"]["unmounted"]["unreachable"]
    assert report["destinations"]["offline"]["unreachable"]
    for name in ("unmounted", "offline"):
        assert report["destinations"][name]["failed"] == 0, "no photo failed for it"
    originals = [p for p in nas.rglob("*") if p.is_file() and p.suffix != ".xmp"]
    assert len([p for p in originals if "picpipe-catalog" not in p.parts]) == 12
    assert (nas / "picpipe-catalog" / "latest.json").is_file()  # the good one got its snapshot
    assert not (tmp_path / "not-mounted").exists(), "an unmounted NAS path is never created"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "unmounted" in errors[0]
    assert "offline" in errors[0]
    with library.catalog.session() as db:
        states = {(r.destination_id, r.state) for r in db.scalars(select(Replica))}
    assert {state for _d, state in states} == {"verified"}, "no replica row for the others"

    # Once the NAS is mounted, the next sync catches up.
    (tmp_path / "not-mounted" / "photos").mkdir(parents=True)
    config.write_text(config.read_text().split("  offline:")[0])
    again = run_cli("sync", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["destinations"]["unmounted"]["uploaded"] == 12


class GoesAway(Counting):
    """A real destination whose share goes away after the first check: every put fails as
    unreachable, and a later check says so."""

    def __init__(self, inner: Destination) -> None:
        super().__init__(inner, fail_puts=10_000)
        self.checks = 0

    def check(self) -> ConnectionReport:
        self.checks += 1
        if self.checks == 1:
            return self.inner.check()
        return ConnectionReport(self.inner.name, "filesystem", False, False, False, "share gone")


def test_transfers_failing_in_a_row_recheck_and_stop_the_destination(
    library: LibraryFixture, tmp_path: Path
) -> None:
    photos(library, tmp_path, count=20)
    flaky = GoesAway(filesystem(tmp_path, "flaky"))
    good = filesystem(tmp_path, "good")
    report = SyncRun(
        library.catalog,
        library.root,
        {"flaky": flaky, "good": good},  # type: ignore[dict-item]
        policy=RetryPolicy(retries=1, base=0.0, cap=0.0),
        concurrency={"flaky": 1, "good": 2},
        runs=library.settings.runs,
    ).run()
    tally = report.destinations["flaky"]
    assert (tally.unreachable, flaky.checks) == ("share gone", 2)
    assert tally.failed == 5, "stopped at the re-check, not after every photo"
    assert flaky.calls["put"] == 5 * 2, "each of the five tried twice (one retry), no more"
    assert report.destinations["good"].uploaded == 20
    assert report.unreachable == {"flaky": "share gone"}
