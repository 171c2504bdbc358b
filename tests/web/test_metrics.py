"""``/metrics`` parses with prometheus-client's own parser and moves with the work."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from picpipe.catalog.replicas import ensure_destination
from picpipe.events import ItemFailed, RunFinished, RunStarted
from picpipe.integrations.metrics import EventMetrics, error_kind, process_metrics
from picpipe.jobs.replicate import SyncRun
from picpipe.web.app import create_app
from tests.conftest import LibraryFixture
from tests.destinations.contract import photo
from tests.jobs.test_replicate import FAST, filesystem
from tests.web.conftest import TestClient, with_serve

READ = "metrics-read-token-0123456789abcdef"
FULL = "metrics-full-token-0123456789abcdef"


def scrape(
    client: TestClient, **headers: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def photos(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "camera"
    folder.mkdir()
    for i in range(count):
        (folder / f"IMG_{i:04d}.JPG").write_bytes(photo(i + 1, 20_000))
    return folder


def test_metrics_move_with_an_import_and_a_sync(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    lib = sqlite_library
    with TestClient(create_app(lib.settings)) as client:
        before = scrape(client)
        lib.run(lib.folder(photos(tmp_path, 3)), sinks=[process_metrics().sink], workers=2)
        after = scrape(client)
        new = ("picpipe_items_total", "import", "new")
        assert (
            value(after, new[0], kind="import", outcome="new")
            - value(before, new[0], kind="import", outcome="new")
            == 3
        )
        grown = value(after, "picpipe_item_bytes_total", kind="import", outcome="new") - value(
            before, "picpipe_item_bytes_total", kind="import", outcome="new"
        )
        assert grown == 3 * 20_000
        assert value(after, "picpipe_catalog_files_total", outcome="new") == 3
        assert value(after, "picpipe_library_assets") == 3
        assert value(after, "picpipe_catalog_up") == 1
        runs = "picpipe_run_duration_seconds_count"
        assert value(after, runs, kind="import") == value(before, runs, kind="import") + 1
        stage = "picpipe_stage_duration_seconds_count"
        assert value(after, stage, kind="import", stage="import") > value(
            before, stage, kind="import", stage="import"
        )
        assert value(after, "picpipe_cache_hit_ratio") == 0.0

        # A destination known but nothing verified there yet: the lag is the assets' age.
        with lib.catalog.write() as db:
            ensure_destination(db, "nas", "filesystem")
        assert value(scrape(client), "picpipe_replication_lag_seconds") > 0
        SyncRun(
            lib.catalog,
            lib.root,
            {"nas": filesystem(tmp_path, "nas")},
            policy=FAST,
            concurrency={"nas": 2},
            sinks=[process_metrics().sink],
        ).run()
        synced = scrape(client)
        assert value(synced, "picpipe_replication_lag_seconds") == 0
        assert value(synced, "picpipe_replicas_in_progress", destination="nas") == 0
        moved = value(synced, "picpipe_runs_total", kind="sync", status="completed")
        assert moved == value(before, "picpipe_runs_total", kind="sync", status="completed") + 1


def test_metrics_need_the_read_token_when_one_is_set(sqlite_library: LibraryFixture) -> None:
    app = create_app(with_serve(sqlite_library.settings, token=FULL, read_token=READ))
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        samples = scrape(client, Authorization=f"Bearer {READ}")
        assert value(samples, "picpipe_catalog_up") == 1


def test_failures_count_by_error_kind() -> None:
    metrics = EventMetrics()
    metrics.sink(RunStarted(1, "sync", "nas"))
    metrics.sink(ItemFailed(1, "a.jpg", "destination nas is not reachable (timeout)"))
    metrics.sink(ItemFailed(1, "b.jpg", "b.jpg: cannot be read (Permission denied)"))
    metrics.sink(ItemFailed(1, "c.jpg", "something new"))
    metrics.sink(RunFinished(1, "sync", "completed_with_failures"))
    text = "\n".join(
        f"{s.name}{s.labels}={s.value}"
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "picpipe_errors_total"
    )
    assert "'error': 'unavailable'" in text
    assert "'error': 'unreadable'" in text
    assert "'error': 'other'" in text
    assert error_kind("destination s3: authentication failed (403)") == "auth"


def test_the_service_component_feeds_the_process_metrics() -> None:
    from picpipe.integrations.metrics import metrics_component

    component = metrics_component()
    assert component.metrics is process_metrics()
    counter = process_metrics().runs.labels("import", "failed")
    before = counter._value.get()
    component.sink(RunStarted(99, "import", "x"))
    component.sink(RunFinished(99, "import", "failed"))
    assert counter._value.get() == before + 1
