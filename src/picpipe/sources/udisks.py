"""Mounting cards where the system does not, and ejecting them when safe, through udisks2.

Desktops auto-mount a card under ``/media/<user>/<label>``; a headless Raspberry Pi or a NAS
often does not. With ``udisks_mount: true`` a removable source asks udisks2 (the daemon desktops
use, over ``udisksctl``) to mount each card file system it finds unmounted, read-only, so the
mount-root watcher sees it as on a desktop. Which block devices count as cards: those udev
says sit on a removable disk (a card reader's slot), and those listed in ``devices`` (a reader
that reports itself fixed). With ``eject_when_safe: true`` a card whose session ended "safe to
format" is unmounted and its drive powered off, so it can be pulled at once.

Every call is a subprocess with a timeout; a failure is one line in the log and the card's
session goes on or ends as it would without udisks2. Nothing here writes to a card: the mount
is read-only and picpipe never formats.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from picpipe.errors import UdisksFailed
from picpipe.sources.mounts import read_mounts

log = logging.getLogger(__name__)

TIMEOUT = 20.0  # seconds for one udisksctl call (a slow card may take a few to mount)
_MOUNTED = re.compile(r"^Mounted (?P<device>\S+) at (?P<path>.+?)\.?$", re.MULTILINE)


@dataclass(slots=True)
class Udisks:
    """udisksctl, when installed and its daemon answers."""

    command: str | None = field(default_factory=lambda: shutil.which("udisksctl"))
    _answers: bool | None = None
    tried: set[str] = field(default_factory=set)  # devices a mount failed for, not retried

    def available(self) -> bool:
        if self.command is None:
            return False
        if self._answers is None:
            try:
                self._run("status")
                self._answers = True
            except UdisksFailed as exc:
                log.warning("udisks2 does not answer (%s); cards are not mounted by picpipe", exc)
                self._answers = False
        return self._answers

    def mount(self, device: str) -> str:
        """Mount ``device`` read-only; returns where udisks2 put it."""
        out = self._run("mount", "--block-device", device, "--options", "ro")
        found = _MOUNTED.search(out)
        if found is None:
            raise UdisksFailed(f"udisksctl said {out.strip()!r}")
        return found["path"]

    def eject(self, device: str) -> None:
        """Unmount ``device`` and power off its drive (a loop device has none to power off)."""
        self._run("unmount", "--block-device", device)
        if not os.path.basename(device).startswith("loop"):
            self._run("power-off", "--block-device", device)

    def _run(self, *args: str) -> str:
        assert self.command is not None
        # Never a password prompt (polkit): a service has nobody to answer it.
        quiet = ["--no-user-interaction"] if args[0] != "status" else []
        try:
            done = subprocess.run(
                [self.command, *args, *quiet],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UdisksFailed(f"udisksctl {args[0]}: {exc}") from exc
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            # "Error mounting /dev/sdb1: GDBus.Error:org.freedesktop.UDisks2.Error.Failed: ..."
            reason = lines[-1].rsplit(": ", 1)[-1] if lines else f"exit {done.returncode}"
            raise UdisksFailed(f"udisksctl {args[0]}: {reason}")
        return done.stdout


def unmounted_cards(listed: list[str]) -> list[str]:
    """Block devices with a file system that are not mounted and are cards: on a removable
    disk as udev says, or in ``listed``."""
    mounted = {m.source for m in read_mounts()}
    wanted = {os.path.realpath(d) for d in listed}
    found: list[str] = []
    for device, removable in _filesystems():
        if device in mounted:
            continue
        if removable or os.path.realpath(device) in wanted:
            found.append(device)
    return sorted(found)


def _filesystems() -> list[tuple[str, bool]]:
    """(device node, on a removable disk) of every block device udev knows a file system on."""
    try:
        import pyudev  # type: ignore[import-untyped]
    except ImportError:
        return []
    try:
        context = pyudev.Context()
        devices = list(context.list_devices(subsystem="block"))
    except (OSError, ValueError) as exc:
        log.debug("udev cannot list block devices: %s", exc)
        return []
    found = []
    for device in devices:
        if device.properties.get("ID_FS_USAGE") != "filesystem" or not device.device_node:
            continue
        disk = device if device.device_type == "disk" else device.find_parent("block", "disk")
        flag = disk.attributes.get("removable") if disk is not None else None
        found.append((str(device.device_node), flag == b"1"))
    return found
