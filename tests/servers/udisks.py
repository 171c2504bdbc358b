"""udisks2 for the card tests: the system bus, udev and udisksd, started here when they are
not running (a container boots none of them), and loop devices made from card images.

Needs root (loop devices, the system bus); anything missing is a skip with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

UDISKSD = Path("/usr/libexec/udisks2/udisksd")
UDEVD = Path("/lib/systemd/systemd-udevd")


def _answers() -> bool:
    try:
        done = subprocess.run(["udisksctl", "status"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=False)


@contextmanager
def udisks_running() -> Iterator[None]:
    """udisksd answering on the system bus for the duration, or a skip saying why not."""
    for tool in ("udisksctl", "dbus-daemon", "losetup", "udevadm", "mkfs.ext2"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup installs udisks2)")
    if _answers():
        yield
        return
    if not UDISKSD.exists() or not UDEVD.exists():
        pytest.skip("udisksd or systemd-udevd is not installed")
    if not Path("/run/dbus/system_bus_socket").exists():
        Path("/run/dbus").mkdir(parents=True, exist_ok=True)
        started = _run("dbus-daemon", "--system", "--fork")
        if started.returncode != 0:
            pytest.skip(f"the system bus cannot be started here: {started.stderr.strip()}")
    if _run("udevadm", "control", "--ping").returncode != 0:
        started = _run(str(UDEVD), "--daemon")
        if started.returncode != 0:
            pytest.skip(f"udev cannot be started here: {started.stderr.strip()}")
    daemon = subprocess.Popen(
        [str(UDISKSD), "--no-debug"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 15
        while not _answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.skip("udisksd does not come up here")
            time.sleep(0.2)
        yield
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


@contextmanager
def loop_device(image: Path) -> Iterator[str]:
    """``image`` attached as a loop device that udev has looked at, detached after."""
    attached = _run("losetup", "--find", "--show", str(image))
    if attached.returncode != 0:
        pytest.skip(f"loop devices are refused here: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    try:
        _run("udevadm", "trigger", "--action=change", device)
        _run("udevadm", "settle", "--timeout=10")
        yield device
    finally:
        mounted = _run("findmnt", "--noheadings", "--output", "TARGET", "--source", device)
        for target in mounted.stdout.split():
            _run("umount", target)
        _run("losetup", "--detach", device)


def card_image(folder: Path, image: Path, label: str = "EOS_DIGITAL") -> Path:
    """An ext2 image holding ``folder``'s files (no mount needed to fill it). ext2 rather
    than FAT: containers' kernels often lack the FAT driver; udisks2 treats both alike."""
    with open(image, "wb") as handle:
        handle.truncate(32 * 1024 * 1024)
    subprocess.run(
        ["mkfs.ext2", "-q", "-L", label, "-d", str(folder), str(image)],
        check=True,
        capture_output=True,
    )
    return image
