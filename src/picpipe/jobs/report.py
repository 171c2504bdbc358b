"""One report type for every run: counts, bytes, failures with reasons, warnings, seconds.

Each kind keeps its own detailed summary (an import's seen/new/duplicate, a sync's tallies per
destination); all of them render through `RunReport`, so ``--json`` of every command that runs
work shares one envelope: ``kind``, ``run_id``, ``status``, ``counts``, ``bytes``,
``failures`` (path, reason), ``warnings`` (path, problem) and ``seconds``, plus the kind's
own fields beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RunReport:
    """What one run did, in the shape every ``--json`` shares."""

    kind: str
    run_id: int | None
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return self.counts.get("failed", len(self.failures))

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "run_id": self.run_id,
            "status": self.status,
            "counts": dict(self.counts),
            "bytes": self.bytes,
            "failures": list(self.failures),
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
        }
