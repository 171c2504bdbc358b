"""`picpipe sync`, `picpipe replicas` and `picpipe test-connection`."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import typer

from picpipe.catalog import replicas as q
from picpipe.catalog.db import open_catalog
from picpipe.catalog.known_as import source_paths_of
from picpipe.cli.app import (
    console,
    emit_json,
    human_bytes,
    print_failures,
    reports_errors,
    sigterm_interrupts,
    state,
)
from picpipe.cli.progress import run_progress
from picpipe.cli.report_text import photo_label, sha_of_library_path
from picpipe.config import Settings
from picpipe.destinations.base import ConnectionReport, Destination, open_destination
from picpipe.errors import ConfigError, DestinationUnavailable, ExitCode, ItemsFailed, PicpipeError
from picpipe.jobs.catalog_backup import snapshot_catalog
from picpipe.jobs.replicate import SyncRun
from picpipe.jobs.retry import RetryPolicy
from picpipe.jobs.sync_report import INDEX_ONLY, SyncReport
from picpipe.library.guards import refuse_destination_in_library
from picpipe.library.marker import refuse_missing_library

JsonFlag = typer.Option(False, "--json", help="Print a JSON report instead of text.")


def register(app: typer.Typer) -> None:
    app.command("sync")(sync)
    app.command("replicas")(replicas)
    app.command("test-connection")(check_connections)


@reports_errors
def sync(
    ctx: typer.Context,
    destination: list[str] = typer.Option(
        [], "--destination", "-d", help="Only this destination (repeatable); default all."
    ),
    verify: bool = typer.Option(
        False, "--verify", help="Also re-read verified replicas and repair damaged ones."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Say what would be uploaded and where; change nothing."
    ),
    as_json: bool = JsonFlag,
) -> None:
    """Replicate every asset to the configured destinations, each copy verified there."""
    settings = state(ctx).settings
    backends = open_destinations(settings, destination)
    catalog = open_catalog(settings.catalog_url, busy_timeout=settings.runs.busy_timeout)
    try:
        refuse_missing_library(settings.library_root, catalog)
    except PicpipeError:
        catalog.close()
        raise
    stop = threading.Event()
    previous = sigterm_interrupts()
    try:
        run = SyncRun(
            catalog,
            settings.library_root,
            backends,
            policy=RetryPolicy(
                settings.replicas.retries,
                settings.replicas.backoff_base,
                settings.replicas.backoff_max,
            ),
            concurrency={name: _concurrency(settings, name) for name in backends},
            verify=verify,
            dry_run=dry_run,
            stop=stop,
            runs=settings.runs,
            sidecar_naming=settings.sidecars.naming,
        )
        with run_progress("syncing", quiet=as_json or dry_run) as sinks:
            run.sinks = sinks
            report = run.run()
        if not dry_run:
            # After the run's lease: the snapshot holds this sync's replicas, none "running".
            snapshot_catalog(
                catalog,
                backends,
                keep=settings.replicas.catalog_snapshots,
                policy=run.policy,
                report=report,
                stop=stop,
                workdir=settings.home_root,
            )
        paths = [p for _d, p, _r in report.failures] + [i["path"] for i in report.planned[:200]]
        known = _known_photos(catalog, paths)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for backend in backends.values():
            backend.close()
        catalog.close()
    if as_json:
        emit_json(report.as_dict())
    else:
        _print_report(report, known)
    if report.unreachable:
        # The other destinations were synced; this one's part stopped at its first check.
        names = ", ".join(report.unreachable)
        detail = "; ".join(f"{n}: {why}" for n, why in report.unreachable.items())
        raise DestinationUnavailable(destination=names, detail=detail)
    if report.failed:
        raise ItemsFailed(count=report.failed)


@reports_errors
def replicas(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", help="Under-replicated assets to list."),
    as_json: bool = JsonFlag,
) -> None:
    """The safety report: replicas per destination and assets short of the target copies."""
    settings = state(ctx).settings
    target = settings.replicas.target
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            counts = q.replica_counts(db)
            total, short = q.under_replicated(
                db, target, destinations=list(settings.destinations), limit=limit
            )
            failed = list(q.failed_replicas(db, limit=limit))
            index_only = q.index_only_count(db)
            known = source_paths_of(db, [s for s, *_ in short] + [f[1] for f in failed])
    finally:
        catalog.close()
    configured = list(settings.destinations)
    result: dict[str, Any] = {
        "target": target,
        "destinations": {
            name: {**counts.get(name, dict.fromkeys(q.STATES, 0)), "configured": name in configured}
            for name in sorted(set(counts) | set(configured))
        },
        "under_replicated": total,
        # Index-only assets (`mode: index`) have no copy of picpipe's own: not a backup.
        "not_in_library": index_only,
        "assets": [
            {"sha256": s, "path": p, "copies": c, "in_library": i, "source_path": known.get(s)}
            for s, p, c, i in short
        ],
        "failed": [
            {"destination": d, "sha256": s, "path": p, "reason": r, "source_path": known.get(s)}
            for d, s, p, r in failed
        ],
    }
    if as_json:
        emit_json(result)
        return
    console.print(f"target: {target} verified copies per asset (the library's own included)")
    for name, c in result["destinations"].items():
        note = "" if c["configured"] else "  (no longer configured: not counted)"
        console.print(
            f"  {name:<16} verified {c['verified']}  pending "
            f"{c['pending'] + c['uploading'] + c['verifying']}  failed {c['failed']}{note}",
            markup=False,
        )
    if not configured:
        console.print("  no destinations configured (see `picpipe config --template`)")
    console.print(f"under-replicated assets: {total}")
    if index_only:
        console.print(
            f"not in the library: {index_only} index-only asset(s) (mode: index): "
            "only their sources hold the originals; this is no backup"
        )
    for item in result["assets"]:
        copies = f"{item['copies']} cop{'y' if item['copies'] == 1 else 'ies'}"
        where = "" if item["in_library"] else "  (not in the library)"
        console.print(f"  {copies}  {photo_label(item['path'], known)}{where}", markup=False)
    for item in result["failed"]:
        label = photo_label(str(item["path"]), known)
        console.print(f"  failed  {item['destination']}: {label}  {item['reason']}", markup=False)


@reports_errors
def check_connections(
    ctx: typer.Context,
    name: list[str] = typer.Argument(None, help="Sources or destinations to test; default all."),
    as_json: bool = JsonFlag,
) -> None:
    """Check every source and destination: reachable, authenticated, writable."""
    settings = state(ctx).settings
    wanted = set(name or [])
    unknown = wanted - set(settings.sources) - set(settings.destinations)
    if unknown:
        known = sorted({*settings.sources, *settings.destinations})
        raise ConfigError(
            detail=f"no source or destination named {', '.join(sorted(unknown))}; "
            f"known: {', '.join(known) or 'none configured'}"
        )
    reports: list[dict[str, Any]] = []
    for source, options in settings.sources.items():
        if not wanted or source in wanted:
            reports.append({"role": "source", **_source_report(source, options)})
    for dest, backend in open_destinations(
        settings, sorted(wanted & set(settings.destinations)) if wanted else []
    ).items():
        try:
            report = backend.check()
        except PicpipeError as exc:
            report = ConnectionReport(dest, backend.kind, False, False, False, exc.reason)
        finally:
            backend.close()
        reports.append(
            {
                "role": "destination",
                "name": report.name,
                "kind": report.kind,
                "ok": report.ok,
                "reachable": report.reachable,
                "authenticated": report.authenticated,
                "writable": report.writable,
                "detail": report.detail,
            }
        )
    if as_json:
        emit_json({"ok": all(r["ok"] for r in reports), "results": reports})
    else:
        if not reports:
            console.print("no sources or destinations configured")
        for r in reports:
            mark = "[green]ok[/]" if r["ok"] else "[red]FAILED[/]"
            flags = "  ".join(
                f"{k} {'yes' if r[k] else 'no'}"
                for k in ("reachable", "authenticated", "writable", "readable")
                if k in r
            )
            console.print(f"{mark}  {r['role']} {r['name']} ({r['kind']})  {flags}", markup=True)
            if r["detail"]:
                console.print(f"      {r['detail']}", markup=False)
    if not all(r["ok"] for r in reports):
        raise typer.Exit(ExitCode.DESTINATION)


# -- helpers --------------------------------------------------------------------------------


def open_destinations(settings: Settings, only: list[str]) -> dict[str, Destination]:
    """The configured destinations (``only`` some of them), validated; none is an error."""
    configured = settings.destinations
    if not configured:
        raise ConfigError(
            detail="no destinations configured; add one under `destinations:` in the config "
            "(`picpipe config --template` shows every kind)"
        )
    unknown = [n for n in only if n not in configured]
    if unknown:
        raise ConfigError(
            detail=f"no destination named {', '.join(unknown)}; known: {', '.join(configured)}"
        )
    names = only or list(configured)
    for name in names:
        options = configured[name]
        if str(options.get("kind", "")) == "filesystem" and options.get("path"):
            refuse_destination_in_library(settings, name, Path(str(options["path"])))
    return {n: open_destination(n, dict(configured[n])) for n in names}


def _concurrency(settings: Settings, name: str) -> int:
    own = settings.destinations[name].get("concurrency")
    return int(own) if own else settings.replicas.concurrency


def _source_report(name: str, options: dict[str, Any]) -> dict[str, Any]:
    kind = str(options.get("kind", "folder"))
    if kind == "removable":
        return _card_roots_report(name, options)
    path = Path(str(options.get("path", ""))).expanduser()
    readable = path.is_dir() and os.access(path, os.R_OK | os.X_OK)
    detail = "" if readable else f"{path} is missing or not readable"
    if kind != "folder":
        return {
            "name": name,
            "kind": kind,
            "ok": False,
            "reachable": False,
            "authenticated": False,
            "readable": False,
            "detail": f"kind {kind!r} cannot be tested yet",
        }
    return {
        "name": name,
        "kind": kind,
        "ok": readable,
        "reachable": path.exists(),
        "authenticated": True,
        "readable": readable,
        "detail": detail,
    }


def _card_roots_report(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """A removable source is testable as far as its mount roots: can cards be seen there."""
    roots = [
        *(options.get("mount_roots") or ["/media", "/run/media"]),
        *(options.get("paths") or []),
    ]
    readable = [str(r) for r in roots if os.access(Path(str(r)), os.R_OK | os.X_OK)]
    return {
        "name": name,
        "kind": "removable",
        "ok": bool(readable),
        "reachable": bool(readable),
        "authenticated": True,
        "readable": bool(readable),
        "detail": "" if readable else f"no mount root can be read ({', '.join(map(str, roots))})",
    }


def _known_photos(catalog: Any, paths: list[str]) -> dict[str, str]:
    """Source paths of the photos behind library paths (``<sha256>.<ext>`` names)."""
    shas = {sha for p in paths if (sha := sha_of_library_path(p))}
    if not shas:
        return {}
    with catalog.session() as db:
        return source_paths_of(db, shas)


def _print_report(report: SyncReport, known: dict[str, str]) -> None:
    if report.dry_run:
        for item in report.planned[:200]:
            where = f"{item['destination']}:{item['key']}" if item["key"] else item["destination"]
            label = photo_label(item["path"], known)
            console.print(f"  would {item['action']}  {label} → {where}", markup=False)
        if len(report.planned) > 200:
            console.print(f"  … and {len(report.planned) - 200} more (see --json)")
        total = sum(i["bytes"] for i in report.planned)
        console.print(
            f"dry run: {len(report.planned)} replica(s), {human_bytes(total)}; nothing changed"
        )
        return
    console.print(f"sync session {report.session_id} {report.status} in {report.seconds:.1f}s")
    if report.index_only:
        console.print(f"  skipped {report.index_only} asset(s): {INDEX_ONLY}", markup=False)
    for name, t in report.destinations.items():
        if t.unreachable:
            console.print(f"  {name:<16} not synced: {t.unreachable}", markup=False)
            continue
        console.print(
            f"  {name:<16} uploaded {t.uploaded} ({human_bytes(t.bytes)})  already there "
            f"{t.present}  re-verified {t.reverified}  repaired {t.repaired}  failed {t.failed}",
            markup=False,
        )
        if name in report.sidecars_uploaded or name in report.snapshots:
            console.print(
                f"  {'':<16} sidecars uploaded {report.sidecars_uploaded.get(name, 0)}  "
                f"catalog snapshot {report.snapshots.get(name, '-')}",
                markup=False,
            )
        if name in report.edits_pushed:
            console.print(
                f"  {'':<16} sidecar edits sent {report.edits_pushed[name]}", markup=False
            )
    for name, kept, written in report.sidecar_versions:
        console.print(
            f"  {name}: {kept} was changed there and is kept; picpipe's version is {written}",
            markup=False,
        )
    items = [(d, p, r) for d, p, r in report.failures if p != "(destination)"]
    print_failures([{"path": f"{d}: {photo_label(p, known)}", "reason": r} for d, p, r in items])
