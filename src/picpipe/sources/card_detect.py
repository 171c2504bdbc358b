"""Cards coming and going: who a card is (label, file-system UUID, capacity, reader) and when
one is inserted or pulled.

Detection is a poll of the mount roots (``/media``, ``/run/media`` and configured paths), which
works wherever the system auto-mounts, in containers and in tests; where pyudev and libudev
are there, udev block events (``add``/``change``/``remove``; a reader that stays plugged in
reports a new card as ``change`` on the disk) wake the poll at once instead of at its next
tick. A folder under a root is a card when it is a mount point or holds a camera folder
(``DCIM``, ``PRIVATE``, ``MP_ROOT``); ``/media/<user>/<label>`` is looked at one level down.
A candidate must be seen on two polls in a row, so a folder being filled is not taken early.

Identity of a real mount comes from udev (``ID_FS_UUID``, ``ID_FS_LABEL``, the reader's
vendor and model, ``removable`` on the parent disk) or ``blkid``, and the capacity from
``statvfs``. A plain folder (no device of its own) gets a marker-free identity: its name as the
label and a UUID derived from the name and the capacity of the file system it lives on, so the
same folder is the same card again; nothing is ever written on a card to recognise it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from picpipe.hashing import sha256_bytes
from picpipe.sources.mounts import mount_of, read_mounts
from picpipe.sources.removable import CAMERA_FOLDERS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CardIdentity:
    """Who a card is; (uuid, label) names it across insertions."""

    label: str
    uuid: str
    capacity: int  # bytes
    reader: str  # the reader's vendor and model, the device, or "folder"
    fstype: str
    path: str  # where it is mounted now
    removable: bool | None = None  # the parent disk's ``removable`` flag, when udev knows it


def identify_card(path: Path) -> CardIdentity:
    """The identity of the card mounted (or folder present) at ``path``; reads nothing on the
    card but its file system's figures. Raises OSError when the path is gone."""
    real = os.path.realpath(path)
    fs = os.statvfs(real)
    capacity = fs.f_blocks * fs.f_frsize
    mount = mount_of(real, read_mounts())
    if mount is not None and mount.mount_point == real and mount.source.startswith("/dev/"):
        # The file system's own label and UUID from blkid (it reads the device): udev's copy
        # may be missing (containers) or, just after a card change, still the last card's.
        facts = udev_facts(mount.source) | blkid_facts(mount.source)
        label = facts.get("ID_FS_LABEL") or Path(real).name
        uuid = facts.get("ID_FS_UUID") or _derived_uuid(label, capacity)
        reader = " ".join(v for v in (facts.get("ID_VENDOR"), facts.get("ID_MODEL")) if v) or str(
            mount.source
        )
        removable = facts.get("removable")
        return CardIdentity(
            label,
            uuid,
            capacity,
            reader,
            mount.fstype,
            real,
            None if removable is None else removable == "1",
        )
    name = Path(real).name
    fstype = mount.fstype if mount is not None else ""
    return CardIdentity(name, _derived_uuid(name, capacity), capacity, "folder", fstype, real)


def _derived_uuid(label: str, capacity: int) -> str:
    digest = sha256_bytes(f"{label}\0{capacity}".encode())
    return f"folder-{digest[:12]}"


def udev_facts(device: str) -> dict[str, str]:
    """udev's properties of a block device (and ``removable`` of its disk), or {}."""
    try:
        import pyudev  # type: ignore[import-untyped]
    except ImportError:
        return {}
    try:
        context = pyudev.Context()
        found = pyudev.Devices.from_device_file(context, device)
        facts = {k: str(found.properties[k]) for k in found.properties}
        disk = found if found.device_type == "disk" else found.find_parent("block", "disk")
        if disk is not None:
            flag = disk.attributes.get("removable")
            if flag is not None:
                facts["removable"] = flag.decode().strip()
        return facts
    except (pyudev.DeviceNotFoundError, OSError, LookupError, ValueError) as exc:  # none here
        log.debug("no udev facts for %s: %s", device, exc)
        return {}


def blkid_facts(device: str) -> dict[str, str]:
    """``blkid`` of a device as udev-style keys (``ID_FS_LABEL``...), or {}.

    ``-p`` probes the device itself (root, or read access to it): blkid's cache may still hold
    the file system that was on a reused loop device or in a reader before this card. Without
    that access, the cached answer is the best there is."""
    facts: dict[str, str] = {}
    for args in (["-p", "-o", "export"], ["-o", "export"]):
        try:
            done = subprocess.run(
                ["blkid", *args, device], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return {}
        facts = _blkid_keys(done.stdout)
        if facts:
            break
    return facts


def _blkid_keys(text: str) -> dict[str, str]:
    facts: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key in ("LABEL", "UUID", "TYPE"):
            facts[f"ID_FS_{key}"] = value
    return facts


def is_card_folder(path: Path, mount_points: set[str]) -> bool:
    """A mount point, or a folder with a camera folder at its root."""
    if os.path.realpath(path) in mount_points:
        return True
    return any((path / name).is_dir() for name in CAMERA_FOLDERS)


class CardWatcher:
    """Polls the mount roots; `poll` returns the cards inserted and pulled since last time."""

    def __init__(self, roots: list[Path], paths: list[Path], *, udev: bool = True) -> None:
        self.roots = [Path(r) for r in roots]
        self.paths = [Path(p) for p in paths]
        self._seen_once: set[str] = set()
        self.present: set[str] = set()
        self._wake = threading.Event()
        self._monitor: Any = None
        if udev:
            self._start_udev()

    def candidates(self) -> set[str]:
        points = {m.mount_point for m in read_mounts()}
        found: set[str] = set()
        for path in self.paths:
            if path.is_dir() and (os.path.realpath(path) in points or any(path.iterdir())):
                found.add(str(path))
        for root in self.roots:
            for child in _subfolders(root):
                if is_card_folder(child, points):
                    found.add(str(child))
                    continue
                found.update(str(c) for c in _subfolders(child) if is_card_folder(c, points))
        return found

    def poll(self) -> tuple[list[str], list[str]]:
        """(inserted, pulled): a card counts as inserted once seen on two polls in a row."""
        now = self.candidates()
        pulled = sorted(self.present - now)
        inserted = sorted((now & self._seen_once) - self.present)
        self.present = (self.present & now) | set(inserted)
        self._seen_once = now
        return inserted, pulled

    def still_there(self, path: str) -> bool:
        return path in self.candidates()

    def wait(self, stop: threading.Event, seconds: float) -> None:
        """Sleep until the next poll: ``seconds``, a udev block event, or ``stop``."""
        deadline = seconds
        while deadline > 0 and not stop.is_set():
            if self._wake.wait(min(0.2, deadline)):
                self._wake.clear()
                return
            deadline -= 0.2

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None

    def _start_udev(self) -> None:
        try:
            import pyudev

            monitor = pyudev.Monitor.from_netlink(pyudev.Context())
            monitor.filter_by(subsystem="block")

            def event(device: Any) -> None:
                if device.action in ("add", "change", "remove"):
                    log.debug("udev %s %s", device.action, device.sys_name)
                    self._wake.set()

            self._monitor = pyudev.MonitorObserver(monitor, callback=event, name="picpipe-udev")
            self._monitor.start()
        except (ImportError, OSError, LookupError, ValueError) as exc:  # no udev (container)
            log.debug("udev events unavailable, polling the mount roots only: %s", exc)
            self._monitor = None


def _subfolders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
