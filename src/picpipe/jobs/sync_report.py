"""What a sync did: per-destination tallies, failures and (dry run) the plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from picpipe.jobs.report import RunReport

# Why a sync leaves index-only assets (`mode: index`) out.
INDEX_ONLY = "index only (mode: index): no original in the library to send"


class DestinationTally:
    """Counts of one destination in one run."""

    planned: int = 0
    uploaded: int = 0
    present: int = 0  # already at the far end and verified there: adopted without upload
    reverified: int = 0
    repaired: int = 0  # verified before, found damaged or missing by --verify, uploaded again
    failed: int = 0
    bytes: int = 0
    unreachable: str | None = None  # why this destination's part of the run was stopped


@dataclass(slots=True)
class SyncReport:
    """What a sync did; ``failures`` are (destination, library path, reason)."""

    session_id: int | None
    status: str
    dry_run: bool
    seconds: float = 0.0
    destinations: dict[str, DestinationTally] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    planned: list[dict[str, Any]] = field(default_factory=list)  # dry run: what would happen
    sidecars_uploaded: dict[str, int] = field(default_factory=dict)  # destination → count
    # (destination, key of someone's edit kept there, key the new version went to)
    sidecar_versions: list[tuple[str, str, str]] = field(default_factory=list)
    snapshots: dict[str, str] = field(default_factory=dict)  # destination → snapshot key
    # Sidecar edits made after the upload, sent as the server's own fields (Immich).
    edits_pushed: dict[str, int] = field(default_factory=dict)
    index_only: int = 0  # assets skipped: kept as an index only, no original to send

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.destinations.values())

    @property
    def unreachable(self) -> dict[str, str]:
        """Destinations whose part of the run stopped because they cannot be reached."""
        return {n: t.unreachable for n, t in self.destinations.items() if t.unreachable}

    def report(self) -> RunReport:
        """The shared shape: counts summed over the destinations."""
        tallies = self.destinations.values()
        counts = {
            name: sum(getattr(t, name) for t in tallies)
            for name in ("planned", "uploaded", "present", "reverified", "repaired", "failed")
        }
        return RunReport(
            "sync",
            self.session_id,
            self.status,
            counts,
            sum(t.bytes for t in tallies),
            [{"destination": d, "path": p, "reason": r} for d, p, r in self.failures],
            [],
            self.seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        return self.report().as_dict() | {
            "session_id": self.session_id,
            "status": self.status,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "destinations": {
                name: {
                    "planned": t.planned,
                    "uploaded": t.uploaded,
                    "present": t.present,
                    "reverified": t.reverified,
                    "repaired": t.repaired,
                    "failed": t.failed,
                    "bytes": t.bytes,
                    "unreachable": t.unreachable,
                }
                for name, t in self.destinations.items()
            },
            "failures": [{"destination": d, "path": p, "reason": r} for d, p, r in self.failures],
            "sidecars_uploaded": dict(self.sidecars_uploaded),
            "sidecar_versions": [
                {"destination": d, "kept": k, "written": w} for d, k, w in self.sidecar_versions
            ],
            "catalog_snapshots": dict(self.snapshots),
            "edits_pushed": dict(self.edits_pushed),
            "skipped": (
                [{"reason": INDEX_ONLY, "assets": self.index_only}] if self.index_only else []
            ),
            **({"planned": self.planned} if self.dry_run else {}),
        }
