"""What a Synology source keeps between runs, outside the catalog and without secrets in it.

- The 2-step verification device token lives in its own file under the home
  (``secrets/synology-<source>.device``, mode 0600); the state file only names that file.
- The sizes of Live Photo halves by cache key: the listing must give exact sizes, and only
  the downloaded zip tells them, so they are remembered from the first download.

The state file is ``state/synology-<source>.json``, written atomically; a damaged one is
treated as empty (the cost is a new OTP prompt or a re-download, never wrong data).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from picpipe.library.atomic import atomic_write_bytes, rename_over

log = logging.getLogger(__name__)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] or "source"


class SynologyState:
    """The device token reference and the Live Photo half sizes of one source."""

    def __init__(self, home: Path, source: str) -> None:
        self.path = home / "state" / f"synology-{_safe(source)}.json"
        self.token_path = home / "secrets" / f"synology-{_safe(source)}.device"
        self._lock = threading.Lock()
        self._data = self._load()

    def device_id(self) -> str | None:
        """The stored device token, when the state names its file and the file is there."""
        named = self._data.get("device_token_file")
        if not named:
            return None
        try:
            return Path(named).read_text(encoding="ascii").strip() or None
        except OSError:
            return None

    def save_device_id(self, device_id: str) -> None:
        """Keep the token in a 0600 file and name that file (only) in the state."""
        self.token_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = self.token_path.with_name(self.token_path.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(device_id)
        os.chmod(temp, 0o600)
        rename_over(temp, self.token_path, fsync=True)
        with self._lock:
            self._data["device_token_file"] = str(self.token_path)
        self._save()

    def live_sizes(self, cache_key: str) -> tuple[int, int] | None:
        with self._lock:
            found = self._data.get("live_sizes", {}).get(cache_key)
        return (int(found[0]), int(found[1])) if found else None

    def remember_live_sizes(self, cache_key: str, still: int, video: int) -> None:
        with self._lock:
            self._data.setdefault("live_sizes", {})[cache_key] = [still, video]
        self._save()

    def forget_live_sizes(self, keep: set[str]) -> None:
        """Drop the sizes of Live Photos no longer listed (their cache keys changed or went)."""
        with self._lock:
            sizes = self._data.get("live_sizes", {})
            stale = [k for k in sizes if k not in keep]
            for key in stale:
                del sizes[key]
        if stale:
            self._save()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s cannot be read (%s); starting afresh", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        with self._lock:
            body = json.dumps(self._data, sort_keys=True).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, body, fsync=False)


__all__ = ["SynologyState"]
