"""The settle rule (quiet time across polls, re-check after hashing) and the mount table
that decides whether a folder is polled."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from picpipe.sources.mounts import Mount, mount_of, needs_polling, parse_mountinfo, read_mounts
from picpipe.sources.settle import Settler, signature_of, still_same

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 0:30 / / rw,relatime master:1 - ext4 /dev/sda1 rw
40 27 0:41 / /srv/nas rw,relatime shared:7 - cifs //nas/photos rw,vers=3.1.1
41 27 0:42 / /srv/nfs rw,relatime - nfs4 nas:/export rw
42 40 0:43 / /srv/nas/local rw - ext4 /dev/sdb1 rw
43 27 0:44 / /media/usb\\040stick rw - vfat /dev/sdc1 rw
44 27 0:45 / /mnt/gdrive rw - fuse.rclone gdrive: rw
this line is broken
"""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_file_settles_only_after_a_quiet_time_spanning_polls() -> None:
    clock = Clock()
    settler = Settler(5.0, clock)
    settler.observe("a.jpg", (10, 1, 7))
    clock.now = 6.0
    assert settler.settled() == {}, "one observation spans no time"
    settler.observe("a.jpg", (20, 2, 7))  # grew: the quiet time starts again
    clock.now = 10.0
    settler.observe("a.jpg", (20, 2, 7))
    assert settler.settled() == {}
    assert settler.pending() == 1
    clock.now = 11.0
    settler.observe("a.jpg", (20, 2, 7))
    assert settler.settled() == {"a.jpg": (20, 2, 7)}
    assert settler.pending() == 0


def test_rename_then_mtime_change_and_vanishing_restart_or_forget() -> None:
    clock = Clock()
    settler = Settler(2.0, clock)
    settler.observe("IMG.HEIC", (5, 100, 1))
    clock.now = 1.0
    settler.observe("IMG.HEIC", (5, 200, 1))  # icloudpd's os.utime right after the rename
    clock.now = 2.5
    settler.observe("IMG.HEIC", (5, 200, 1))
    assert settler.settled() == {}
    clock.now = 3.0
    settler.observe("IMG.HEIC", (5, 200, 1))
    assert list(settler.settled()) == ["IMG.HEIC"]
    settler.observe("gone.jpg", (1, 1, 1))
    settler.observe("gone.jpg", None)
    assert settler.pending() == 0


def test_a_file_written_slowly_settles_once_complete(tmp_path: Path) -> None:
    path = tmp_path / "slow.jpg"
    chunks = [os.urandom(4096) for _ in range(6)]

    def write() -> None:
        with open(path, "ab") as handle:
            for chunk in chunks:
                handle.write(chunk)
                handle.flush()
                time.sleep(0.15)

    path.touch()
    writer = threading.Thread(target=write)
    writer.start()
    settler = Settler(0.4)
    found: dict[str, tuple[int, int, int]] = {}
    deadline = time.monotonic() + 10
    while not found and time.monotonic() < deadline:
        settler.observe("slow.jpg", signature_of(path))
        found = settler.settled()
        time.sleep(0.05)
    writer.join()
    assert found["slow.jpg"][0] == len(b"".join(chunks)), "settled only once every chunk was in"
    assert still_same(path, found["slow.jpg"])
    path.write_bytes(b"rewritten in place")
    assert not still_same(path, found["slow.jpg"])
    assert signature_of(tmp_path) is None, "a folder is not a candidate"
    assert signature_of(tmp_path / "missing") is None


def test_the_mount_table_says_which_folders_to_poll() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 7
    assert mount_of("/srv/nas/2024/IMG.JPG", mounts) == Mount("/srv/nas", "cifs", "//nas/photos")
    assert mount_of("/srv/nas/local/x", mounts).fstype == "ext4"  # type: ignore[union-attr]
    assert mount_of("/srv/nasty", mounts).mount_point == "/"  # type: ignore[union-attr]
    assert mount_of("/media/usb stick/DCIM", mounts).fstype == "vfat"  # type: ignore[union-attr]
    assert "cifs mount at /srv/nas" in (needs_polling("/srv/nas/in", mounts) or "")
    assert needs_polling("/srv/nfs", mounts) is not None
    assert needs_polling("/mnt/gdrive/Photos", mounts) is not None  # fuse.rclone
    assert needs_polling("/srv/nas/local", mounts) is None
    assert needs_polling("/home/me", mounts) is None
    assert needs_polling("/anything", []) is None


def test_this_machines_table_is_read(tmp_path: Path) -> None:
    mounts = read_mounts()
    if not mounts:
        return  # no /proc here: nothing is known, and nothing is polled for it
    assert mount_of(tmp_path, mounts) is not None
    assert read_mounts(str(tmp_path / "no-such-table")) == []
