"""Reporting commands: `status`, `sessions`, `sources`, `stats`, `config`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from picpipe.catalog.db import open_catalog, sqlite_catalog_path
from picpipe.catalog.models import ImportSession
from picpipe.catalog.queries import (
    asset_counts,
    recent_sessions,
    session_by_id,
    session_failures,
    skipped_files,
    source_summaries,
)
from picpipe.catalog.runs import active_runs
from picpipe.catalog.status import kept_with_problems
from picpipe.cli.app import (
    console,
    emit_json,
    human_bytes,
    print_failures,
    reports_errors,
    state,
)
from picpipe.cli.imports import source_roots
from picpipe.cli.report_text import failure_path, plain, shell_quote
from picpipe.config import mask_url
from picpipe.config_template import render_template
from picpipe.errors import ConfigError
from picpipe.library.layout import THUMB_SIZES, thumb_folder
from picpipe.library.marker import library_problem


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("sessions")(sessions)
    app.command("sources")(sources)
    app.command("stats")(stats)
    app.command("config")(config)


JsonFlag = typer.Option(False, "--json", help="Print the result as JSON.")


@reports_errors
def status(ctx: typer.Context, as_json: bool = JsonFlag) -> None:
    """Where the library is, what it holds, and how the last import went."""
    settings = state(ctx).settings
    if (missing := sqlite_catalog_path(settings.catalog_url)) and not missing.exists():
        # Looking creates nothing: no home, no catalog, no library folder.
        _status_uninitialised(settings, missing, as_json)
        return
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            counts = asset_counts(db)
            last = recent_sessions(db, 1)
            last_run = _session_dict(last[0], db) if last else None
            active = [run.as_dict() for run in active_runs(db, host=settings.runs.host)]
            problem_count, problem_items = kept_with_problems(db, 10)
        problem = library_problem(settings.library_root, catalog)
    finally:
        catalog.close()
    result: dict[str, Any] = {
        "library": str(settings.library_root),
        "home": str(settings.home_root),
        "catalog": mask_url(settings.catalog_url),
        "library_reachable": problem is None and (settings.library_root / "originals").is_dir(),
        "library_problem": problem,
        "assets": sum(v["count"] for v in counts.values()),
        "bytes": sum(v["bytes"] for v in counts.values()),
        "by_kind": counts,
        "last_session": last_run,
        "import_running": any(run["kind"] == "import" for run in active),
        "service": next((run for run in active if run["kind"] == "service"), None),
        "runs": active,
        "kept_with_problems": {"count": problem_count, "newest": problem_items},
    }
    if as_json:
        emit_json(result)
        return
    console.print(
        f"library   {result['library']}"
        + ("" if result["library_reachable"] else " (not reachable)"),
        markup=False,
    )
    if problem:
        console.print(f"          {problem}", markup=False)
    console.print(f"catalog   {result['catalog']}")
    console.print(f"assets    {result['assets']} ({human_bytes(result['bytes'])})")
    for kind, value in sorted(counts.items()):
        console.print(f"  {kind:<7} {value['count']} ({human_bytes(value['bytes'])})")
    if last_run:
        console.print(
            f"last run  session {last_run['id']} {last_run['status']} at {last_run['started_at']}: "
            f"{last_run['new']} new, {last_run['failed']} failed"
        )
    if result["service"] is not None:
        _print_service(result["service"])
    for run in active:
        if run["kind"] == "service":
            continue
        progress = run["progress"] or {}
        done = progress.get("done", 0)
        of = f" of {progress['total']}" if progress.get("total") else ""
        console.print(
            f"running   {run['kind']} run {run['run_id']} on {run['host']} (pid {run['pid']}),"
            f" {progress.get('stage', run['kind'])} {done}{of}, since {run['started_at']}",
            markup=False,
        )
    if problem_count:
        console.print(f"problems  {problem_count} kept with a problem (newest first):")
        _print_problems(problem_items)


def _print_service(run: dict[str, Any]) -> None:
    """The running service: its state word, what it does now, and what keeps failing."""
    progress = run["progress"] or {}
    job = f", running {progress['job']}" if progress.get("job") else ""
    console.print(
        f"service   {progress.get('state', 'starting')}{job} (run {run['run_id']} on "
        f"{run['host']}, pid {run['pid']}, since {run['started_at']})",
        markup=False,
    )
    for kind in ("sources", "destinations"):
        for name, entry in sorted((progress.get(kind) or {}).items()):
            if entry.get("error"):
                console.print(f"  {kind[:-1]} {name}: {entry['error']}", markup=False)
    for job, when in sorted((progress.get("next") or {}).items()):
        console.print(f"  next {job} at {when}", markup=False)


def _status_uninitialised(settings: Any, catalog_path: Path, as_json: bool) -> None:
    result = {
        "library": str(settings.library_root),
        "home": str(settings.home_root),
        "catalog": mask_url(settings.catalog_url),
        "initialised": False,
        "library_reachable": False,
        "library_problem": f"no catalog at {catalog_path}: run `picpipe init`",
        "assets": 0,
        "bytes": 0,
    }
    if as_json:
        emit_json(result)
        return
    console.print(f"library   {result['library']} (not initialised)", markup=False)
    console.print(f"          {result['library_problem']}", markup=False)


def _print_problems(items: list[dict[str, Any]]) -> None:
    for item in items:
        reasons = "; ".join(item["problems"]) or "no thumbnail"
        console.print(f"  {shell_quote(item['name'])} ({item['kind']}): {reasons}", markup=False)


@reports_errors
def sessions(
    ctx: typer.Context,
    session_id: int | None = typer.Argument(None, help="Show only this session."),
    limit: int = typer.Option(20, "--limit", min=1, help="How many recent sessions."),
    skipped: bool = typer.Option(
        False, "--skipped", help="List each skipped file of the sessions' sources with its reason."
    ),
    as_json: bool = JsonFlag,
) -> None:
    """Recent import sessions with their counts and failures (``ID`` for one session)."""
    settings = state(ctx).settings
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            if session_id is not None:
                run = session_by_id(db, session_id)
                if run is None:
                    raise ConfigError(detail=f"there is no session {session_id}")
                runs = [run]
            else:
                runs = recent_sessions(db, limit)
            rows = [_session_dict(run, db) for run in runs]
            if skipped:
                for row in rows:
                    row["skipped_files"] = [
                        {"path": p, "reason": r} for p, r in skipped_files(db, row["id"])
                    ]
    finally:
        catalog.close()
    if as_json:
        emit_json(rows)
        return
    _print_sessions(rows, source_roots(settings), detail=session_id is not None)


# Short words for the table; the JSON keeps the catalog's names.
_STATUS_WORDS = {"completed": "ok", "completed_with_failures": "failures"}


def _print_sessions(rows: list[dict[str, Any]], roots: dict[str, str], *, detail: bool) -> None:
    """The sessions table (fits 80 columns: the status is never cut), then per session its
    failures (one session: all, as pasteable paths), warnings and skipped files."""
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    statuses = [_STATUS_WORDS.get(r["status"], r["status"]) for r in rows]
    ids = [str(r["id"]) for r in rows]
    # The id and the status are never cut; narrow terminals lose the counts' widths first.
    table.add_column("id", justify="right", no_wrap=True, min_width=max([2, *map(len, ids)]))
    table.add_column("kind", no_wrap=True, max_width=6, overflow="ellipsis")
    table.add_column("status", no_wrap=True, min_width=max(map(len, statuses), default=6))
    table.add_column("started UTC", no_wrap=True)
    for name in ("seen", "new", "dup", "unch", "fail", "skip"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("bytes", justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["id"]),
            plain(r["kind"]),
            _STATUS_WORDS.get(r["status"], r["status"]),
            r["started_at"][5:16].replace("T", " "),  # MM-DD HH:MM (UTC)
            str(r["seen"]),
            str(r["new"]),
            str(r["duplicate"]),
            str(r["unchanged"]),
            str(r["failed"]),
            str(r["skipped"]),
            human_bytes(r["bytes"]),
        )
    console.print(table)
    for r in rows:
        if detail and r["failures"]:
            console.print(f"session {r['id']}: {r['failed']} failed")
            print_failures(r["failures"], limit=100, roots=roots)
        if r["kept_with_problems"]:
            console.print(f"session {r['id']}: warnings (kept with a problem)")
            _print_problems(r["kept_with_problems"])
        for item in r.get("skipped_files", []):
            path = failure_path(item["path"], roots)
            console.print(f"  {r['id']} skipped  {path}  {item['reason']}", markup=False)


@reports_errors
def sources(ctx: typer.Context, as_json: bool = JsonFlag) -> None:
    """Every source the catalog knows and what it contributed."""
    settings = state(ctx).settings
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            rows = source_summaries(db)
    finally:
        catalog.close()
    known = {r["name"] for r in rows}
    for name, options in settings.sources.items():
        if name not in known:
            rows.append(
                {
                    "name": name,
                    "kind": options.get("kind", "folder"),
                    "location": str(options.get("path", "")),
                    "files": 0,
                    "bytes": 0,
                    "imported": 0,
                    "duplicate": 0,
                    "failed": 0,
                    "gone": 0,
                    "last_scan_at": None,
                }
            )
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "kind", "files", "imported", "duplicate", "failed", "gone", "last scan")
    for r in rows:
        table.add_row(
            plain(r["name"]),
            r["kind"],
            str(r["files"]),
            str(r["imported"]),
            str(r["duplicate"]),
            str(r["failed"]),
            str(r["gone"]),
            r["last_scan_at"] or "never",
        )
    console.print(table)


@reports_errors
def stats(ctx: typer.Context, as_json: bool = JsonFlag) -> None:
    """Storage: photos, videos, originals, thumbnails and cache, per source."""
    settings = state(ctx).settings
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            counts = asset_counts(db)
            per_source = source_summaries(db)
    finally:
        catalog.close()
    home = settings.home_root
    thumbs = {size: _tree_usage(home / thumb_folder(size)) for size in THUMB_SIZES}
    result: dict[str, Any] = {
        "photos": counts.get("photo", {}).get("count", 0),
        "raw": counts.get("raw", {}).get("count", 0),
        "videos": counts.get("video", {}).get("count", 0),
        "originals": {
            "count": sum(v["count"] for v in counts.values()),
            "bytes": sum(v["bytes"] for v in counts.values()),
        },
        "thumbnails": {
            "count": sum(t["count"] for t in thumbs.values()),
            "bytes": sum(t["bytes"] for t in thumbs.values()),
            "by_size": thumbs,
        },
        "cache": _tree_usage(home / "cache"),
        "sources": [
            {k: s[k] for k in ("name", "kind", "files", "bytes", "imported", "duplicate", "failed")}
            for s in per_source
        ],
    }
    if as_json:
        emit_json(result)
        return
    console.print(
        f"photos      {result['photos']}   raw {result['raw']}   videos {result['videos']}"
    )
    o, t, c = result["originals"], result["thumbnails"], result["cache"]
    console.print(f"originals   {o['count']} files, {human_bytes(o['bytes'])}")
    console.print(f"thumbnails  {t['count']} files, {human_bytes(t['bytes'])}")
    console.print(f"cache       {c['count']} files, {human_bytes(c['bytes'])}")
    for s in result["sources"]:
        console.print(
            f"  {s['name']}: {s['files']} files ({human_bytes(s['bytes'])}), "
            f"{s['imported']} imported, {s['duplicate']} duplicate, {s['failed']} failed"
        )


@reports_errors
def config(
    ctx: typer.Context,
    template: bool = typer.Option(False, "--template", help="Print a commented config file."),
    as_json: bool = JsonFlag,
) -> None:
    """Show the effective configuration (secrets masked), or a commented template."""
    if template:
        console.print(render_template(), markup=False, highlight=False, end="")
        return
    data = state(ctx).settings.masked_dump()
    if as_json:
        emit_json(data)
        return
    import yaml

    console.print(yaml.safe_dump(data, sort_keys=False), markup=False, end="")


def _session_dict(run: ImportSession, db: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "device": run.device,
        "status": run.status,
        "started_at": run.started_at.isoformat() + "Z",
        "ended_at": run.ended_at.isoformat() + "Z" if run.ended_at else None,
        "seen": run.seen,
        "new": run.new,
        "duplicate": run.duplicate,
        "unchanged": run.unchanged,
        "failed": run.failed,
        "skipped": run.skipped,
        "bytes": run.bytes,
        "failures": [{"path": p, "reason": r} for p, r in session_failures(db, run.id, 100)],
        "kept_with_problems": kept_with_problems(db, 100, session_id=run.id)[1],
    }


def _tree_usage(root: Path) -> dict[str, int]:
    count = size = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                size += os.stat(os.path.join(folder, name)).st_size
                count += 1
            except OSError:
                continue
    return {"count": count, "bytes": size}
