"""The removable kind: camera layouts, disposable files, card identity and detection."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from picpipe.sources.base import SourceEntry, iter_entries
from picpipe.sources.card_detect import CardWatcher, blkid_facts, identify_card, udev_facts
from picpipe.sources.removable import RemovableSource
from tests.destinations.contract import photo


def listing(source: RemovableSource) -> dict[str, SourceEntry]:
    return {e.ref: e for e in iter_entries(source) if isinstance(e, SourceEntry)}


def test_camera_layouts_are_listed_with_their_bookkeeping_disposable(tmp_path: Path) -> None:
    card = tmp_path / "card"
    files = {
        "DCIM/100CANON/IMG_0001.JPG": photo(1),
        "DCIM/100GOPRO/GX010001.MP4": b"video",
        "DCIM/100GOPRO/GX010001.THM": b"thumb",
        "DCIM/100GOPRO/GL010001.LRV": b"proxy",
        "PRIVATE/M4ROOT/CLIP/C0001.MP4": b"clip",
        "PRIVATE/M4ROOT/CLIP/C0001M01.XML": b"<xml/>",
        "PRIVATE/AVCHD/BDMV/STREAM/00000.MTS": b"mts",
        "PRIVATE/AVCHD/BDMV/INDEX.BDM": b"INDX",
        "MP_ROOT/100ANV01/MAH00001.MP4": b"mp4",
        "IMG_9999.JPG": photo(2),
        "notes/todo.txt": b"buy milk",
        "DCIM/100CANON/IMG_0002.JPG.part": b"half",
    }
    for ref, data in files.items():
        (card / ref).parent.mkdir(parents=True, exist_ok=True)
        (card / ref).write_bytes(data)
    (card / "System Volume Information").mkdir()
    (card / "System Volume Information" / "IndexerVolumeGuid").write_bytes(b"x")
    source = RemovableSource("card", card)
    found = listing(source)
    media = {r for r, e in found.items() if e.skipped is None and not e.sniff}
    assert media == {
        "DCIM/100CANON/IMG_0001.JPG",
        "DCIM/100GOPRO/GX010001.MP4",
        "PRIVATE/M4ROOT/CLIP/C0001.MP4",
        "PRIVATE/AVCHD/BDMV/STREAM/00000.MTS",
        "MP_ROOT/100ANV01/MAH00001.MP4",
        "IMG_9999.JPG",
    }
    # Read on import to see whether they are media: every folder of a card counts.
    sniffed = {r for r, e in found.items() if e.sniff}
    assert sniffed == {
        "notes/todo.txt",
        "PRIVATE/M4ROOT/CLIP/C0001M01.XML",
        "PRIVATE/AVCHD/BDMV/INDEX.BDM",
    }
    skipped = {r for r, e in found.items() if e.skipped}
    disposable = {r for r in skipped | sniffed if source.disposable(r)}
    assert disposable == {
        "DCIM/100GOPRO/GX010001.THM",
        "DCIM/100GOPRO/GL010001.LRV",
        "PRIVATE/M4ROOT/CLIP/C0001M01.XML",
        "PRIVATE/AVCHD/BDMV/INDEX.BDM",
        "System Volume Information",
    }
    # what keeps the card from being safe, unless imported: the half copy and the notes
    assert (skipped | sniffed) - disposable == {"DCIM/100CANON/IMG_0002.JPG.part", "notes/todo.txt"}
    assert not source.caps.can_remove
    assert source.caps.removable


def test_a_plain_folder_has_a_stable_marker_free_identity(tmp_path: Path) -> None:
    card = tmp_path / "EOS_DIGITAL"
    (card / "DCIM").mkdir(parents=True)
    before = sorted(p.name for p in card.rglob("*"))
    first = identify_card(card)
    assert (first.label, first.reader) == ("EOS_DIGITAL", "folder")
    assert first.uuid.startswith("folder-")
    assert first.capacity > 0
    moved = tmp_path / "elsewhere" / "EOS_DIGITAL"
    moved.parent.mkdir()
    card.rename(moved)
    assert identify_card(moved).uuid == first.uuid  # the same card in another reader
    assert sorted(p.name for p in moved.rglob("*")) == before  # nothing written on it


def test_the_watcher_takes_a_card_on_the_second_look_and_notices_it_pulled(
    tmp_path: Path,
) -> None:
    root = tmp_path / "media"
    (root / "alice").mkdir(parents=True)  # /media/<user>/<label>
    watcher = CardWatcher([root, tmp_path / "missing"], [], udev=False)
    assert watcher.poll() == ([], [])
    (root / "alice" / "NIKON" / "DCIM").mkdir(parents=True)
    (root / "NOT_A_CARD").mkdir()  # no camera folder, not a mount point
    assert watcher.poll() == ([], [])
    card = str(root / "alice" / "NIKON")
    assert watcher.poll() == ([card], [])
    assert watcher.poll() == ([], [])
    shutil.rmtree(root / "alice" / "NIKON")
    assert watcher.poll() == ([], [card])
    stop = threading.Event()
    stop.set()
    watcher.wait(stop, 5)  # returns at once when stopped
    watcher.close()


MKFS = {"vfat": ["mkfs.vfat", "-n"], "ext2": ["mkfs.ext2", "-q", "-L"]}


@pytest.fixture(params=["vfat", "ext2"])
def loop_card(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """An image formatted with the label EOS_DIGITAL and loop-mounted under a mount root, as
    an auto-mounter leaves a card, or a skip saying why not. FAT is what cameras write; ext2
    stands in where the kernel has no FAT driver (containers), so the real-mount path (a
    device of its own, identity from udev or blkid, unmount = card pulled) still runs."""
    fstype = request.param
    tool = MKFS[fstype]
    if shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} is not installed (scripts/setup installs dosfstools)")
    image = tmp_path / "card.img"
    with open(image, "wb") as handle:
        handle.truncate(16 * 1024 * 1024)
    subprocess.run([*tool, "EOS_DIGITAL", str(image)], check=True, capture_output=True)
    mount = tmp_path / "media" / "EOS_DIGITAL"
    mount.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"{fstype} loop mounts are refused here: {done.stderr.strip()}")
    try:
        (mount / "DCIM" / "100CANON").mkdir(parents=True)
        (mount / "DCIM" / "100CANON" / "IMG_0001.JPG").write_bytes(photo(1))
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)


def test_a_loop_mounted_card_is_known_by_its_label_and_file_system_uuid(
    loop_card: Path,
) -> None:
    card = identify_card(loop_card)
    assert blkid_facts(str(loop_card)) == {}  # a folder is no device: nothing, no error
    assert card.label == "EOS_DIGITAL"
    assert card.reader != "folder"
    assert not card.uuid.startswith("folder-")
    if card.fstype == "vfat":
        assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}", card.uuid)  # the FAT volume serial
    watcher = CardWatcher([loop_card.parent], [], udev=False)
    watcher.poll()
    assert watcher.poll() == ([str(loop_card)], [])
    assert "DCIM/100CANON/IMG_0001.JPG" in listing(RemovableSource("card", loop_card))
    subprocess.run(["umount", str(loop_card)], check=True)  # the card pulled
    assert watcher.poll() == ([], [str(loop_card)])  # its empty mount point is no card


def test_udev_events_wake_the_watcher_where_udev_is_there(tmp_path: Path) -> None:
    watcher = CardWatcher([tmp_path], [], udev=True)
    try:
        if watcher._monitor is None:
            pytest.skip("no udev netlink socket here: the watcher polls alone")
        stop = threading.Event()
        watcher._wake.set()  # what a block event does
        watcher.wait(stop, 30)  # returns at once
    finally:
        watcher.close()
    assert watcher._monitor is None


def test_udev_facts_read_removable_on_the_parent_disk() -> None:
    if not Path("/dev/loop0").exists():
        pytest.skip("no /dev/loop0 to ask udev about")
    facts = udev_facts("/dev/loop0")
    if not facts:
        pytest.skip("udev knows nothing of block devices here")
    assert facts["DEVTYPE"] == "disk"
    assert facts["removable"] in ("0", "1")  # read from the disk, where the kernel keeps it
    assert udev_facts("/dev/no-such-device") == {}
