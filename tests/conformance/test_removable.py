"""The removable (card) source passes the source contract on a card-shaped folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from picpipe.sources.removable import RemovableSource
from tests.conformance.contract import SourceContract
from tests.conformance.test_folder import FolderWorld


class CardWorld(FolderWorld):
    """A folder standing for a mounted card (an empty DCIM, as a formatted card has)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        (root / "DCIM").mkdir()
        self.source = RemovableSource("card", root)


class TestRemovableSource(SourceContract):
    @pytest.fixture
    def world(self, tmp_path: Path) -> CardWorld:
        if not os.path.exists("/proc/self/io"):
            pytest.skip("/proc/self/io is needed to count the bytes a listing reads")
        return CardWorld(tmp_path / "card")
