"""The service's catalog reads (Home Assistant, /metrics) on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from picpipe.catalog.cards import begin_card_session, update_card_session
from picpipe.catalog.models import Asset
from picpipe.catalog.queries import utcnow
from picpipe.catalog.replicas import ensure_destination, set_replica
from picpipe.catalog.service_status import queue_figures, service_snapshot
from picpipe.sources.card_detect import CardIdentity
from tests.conftest import LibraryFixture
from tests.destinations.contract import photo


def test_snapshot_and_queue_figures_follow_imports_replicas_and_cards(
    library: LibraryFixture, tmp_path: Path
) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    for i in range(3):
        (folder / f"IMG_{i}.JPG").write_bytes(photo(i + 1, 10_000))
    library.run(library.folder(folder, "phone"), workers=2)
    with library.catalog.session() as db:
        empty = queue_figures(db)
    assert empty.oldest_unverified_seconds == 0  # no destination: nothing waits
    assert empty.files_by_outcome["new"] == 3

    with library.catalog.write() as db:
        nas = ensure_destination(db, "nas", "filesystem")
        ensure_destination(db, "s3", "s3")
    with library.catalog.session() as db:
        shas = sorted(db.scalars(select(Asset.sha256)))
    with library.catalog.write() as db:
        set_replica(db, nas, shas[0], state="verified", verified_at=utcnow())
        set_replica(db, nas, shas[1], state="pending")
        set_replica(db, nas, shas[2], state="failed", last_error="refused")
        card = CardIdentity("EOS", "AB-12", 1 << 30, "folder", "vfat", "/media/EOS")
        card_id, _ = begin_card_session(db, "cards", card)
        update_card_session(db, card_id, state="safe", files=3)

    with library.catalog.session() as db:
        snap = service_snapshot(db, target=2, sources=["phone", "never-imported"])
        figures = queue_figures(db)
    assert (snap.assets, snap.below_target, snap.target) == (3, 2, 2)
    dests = {d.name: d for d in snap.destinations}
    assert (dests["nas"].verified, dests["nas"].pending, dests["nas"].failed) == (1, 1, 1)
    assert dests["nas"].last_success is not None
    assert dests["s3"].last_success is None
    sources = {s.name: s for s in snap.sources}
    assert sources["phone"].last_success is not None
    assert sources["phone"].errors == 0
    assert not sources["phone"].credentials_failing
    assert sources["never-imported"].last_success is None
    assert [(c.label, c.safe, c.files) for c in snap.cards] == [("EOS", True, 3)]
    assert snap.last_session is not None
    assert snap.last_session["new"] == 3
    assert figures.replicas_in_progress == {"nas": 1}
    assert figures.oldest_unverified_seconds >= 0
    assert figures.running_sessions == 0
