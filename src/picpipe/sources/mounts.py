"""Which file system a folder lives on, from ``/proc/self/mountinfo``: poll or trust events.

inotify sees only changes made through the local kernel: on a CIFS/SMB, NFS, FUSE or 9p mount
another machine's writes send no events, so such folders are polled (a watched source's
``poll: auto``). Reading the table is cheap and never raises: without it, nothing is known.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"
# Network and user-space file systems: no change events for writes made elsewhere.
NETWORK_TYPES = frozenset(
    {"cifs", "smb3", "smbfs", "nfs", "nfs4", "9p", "afs", "ceph", "glusterfs", "davfs", "fuse"}
)


@dataclass(frozen=True, slots=True)
class Mount:
    mount_point: str
    fstype: str
    source: str

    @property
    def is_network(self) -> bool:
        return self.fstype in NETWORK_TYPES or self.fstype.startswith("fuse.")


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a ``mountinfo`` table (see proc(5)); malformed lines are left out.

    A line is ``id parent major:minor root mount-point options [optional...] - fstype source
    super-options``; the mount point has spaces and the like as octal escapes (``\\040``).
    """
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)
            mounts.append(Mount(_unescape(fields[4]), fields[dash + 1], fields[dash + 2]))
        except (ValueError, IndexError):
            continue
    return mounts


def mount_of(path: str | os.PathLike[str], mounts: list[Mount]) -> Mount | None:
    """The mount that holds ``path`` (symbolic links resolved): the longest mount point that
    is the path or one of its parents; the last one mounted wins on ties (over-mounts)."""
    real = os.path.realpath(path)
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point
        inside = real == point or real.startswith(point.rstrip("/") + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = mount
    return best


def read_mounts(table: str = MOUNTINFO) -> list[Mount]:
    try:
        with open(table, encoding="utf-8", errors="surrogateescape") as handle:
            return parse_mountinfo(handle.read())
    except OSError:
        return []


def needs_polling(path: str | os.PathLike[str], mounts: list[Mount] | None = None) -> str | None:
    """Why ``path`` must be polled (its file system sends no events for remote writes), or
    None when change events can be trusted (or nothing is known about the mount)."""
    mount = mount_of(path, read_mounts() if mounts is None else mounts)
    if mount is not None and mount.is_network:
        return f"{mount.fstype} mount at {mount.mount_point} sends no change events"
    return None


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
