"""Where the system does not auto-mount (a headless Pi), picpipe mounts a card read-only
through a real udisks2 and, once the card is safe to format, ejects it."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import pytest

from picpipe.jobs.cards import CardService
from picpipe.sources.mounts import read_mounts
from picpipe.sources.removable import RemovableOptions
from tests.destinations.contract import photo
from tests.jobs.test_cards import card_settings
from tests.servers.udisks import card_image, loop_device, udisks_running

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import LibraryFixture

pytestmark = pytest.mark.slow


def mount_of_device(device: str) -> str | None:
    return next((m.mount_point for m in read_mounts() if m.source == device), None)


def test_a_card_is_mounted_read_only_then_ejected_when_safe(
    library: LibraryFixture, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    staging = tmp_path / "card"
    (staging / "DCIM" / "100CANON").mkdir(parents=True)
    for i in range(3):
        (staging / "DCIM" / "100CANON" / f"IMG_{i + 1:04d}.JPG").write_bytes(photo(i + 1, 20_000))
    image = card_image(staging, tmp_path / "card.img")
    settings = card_settings(library, tmp_path)
    with udisks_running(), loop_device(str(image)) as device:
        assert mount_of_device(device) is None  # nothing mounted it: no auto-mounter here
        options = RemovableOptions(
            udev=False,
            poll_seconds=0.05,
            udisks_mount=True,
            devices=[device],
            eject_when_safe=True,
        )
        svc = CardService(settings, "cards", options, catalog=library.catalog, tools=library.tools)
        stop = threading.Event()
        caplog.set_level(logging.INFO, logger="picpipe.jobs.cards")
        deadline = time.monotonic() + 30
        while not svc.sessions and time.monotonic() < deadline:
            svc.tick(stop)
            time.sleep(0.1)
        assert svc.sessions, caplog.text
        session = svc.sessions[0]
        assert session.card.label == "EOS_DIGITAL"
        assert session.card.path.startswith("/media/")  # where udisks2 mounts, as desktops do
        assert session.safety is not None
        assert session.safety.safe, session.safety
        assert mount_of_device(device) is None, "ejected once safe: it can be pulled"
        assert "ejected" in caplog.text
        mounted_ro = [line for line in caplog.text.splitlines() if "mounted read-only" in line]
        assert len(mounted_ro) == 1
        svc.close()


def test_a_card_that_cannot_be_mounted_is_one_line_not_a_retry_loop(
    library: LibraryFixture, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    staging = tmp_path / "card"
    staging.mkdir()
    image = card_image(staging, tmp_path / "card.img", label="BROKEN")
    with udisks_running(), loop_device(str(image)) as device:
        # Mounted elsewhere first, then taken away under udisks2's feet: mount fails.
        options = RemovableOptions(
            mount_roots=[tmp_path / "nowhere"], udev=False, udisks_mount=True, devices=[device]
        )
        svc = CardService(
            card_settings(library, tmp_path, destinations=1),
            "cards",
            options,
            catalog=library.catalog,
            tools=library.tools,
        )
        svc.udisks.command = str(tmp_path / "no-such-udisksctl")  # every call fails
        svc.udisks._answers = True
        stop = threading.Event()
        caplog.set_level(logging.WARNING, logger="picpipe.jobs.cards")
        for _ in range(3):
            svc.tick(stop)
        warnings = [r for r in caplog.records if "cannot be mounted" in r.getMessage()]
        assert len(warnings) == 1, caplog.text  # tried once, not on every poll
        assert device in warnings[0].getMessage()
        assert not svc.sessions
        svc.close()
