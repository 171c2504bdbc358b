"""The filesystem kind against a real folder, plus what only a file system can get wrong."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from picpipe.destinations.base import Destination, open_destination
from picpipe.errors import DestinationUnavailable
from tests.destinations.contract import DestinationContract, asset_for, photo


@pytest.fixture
def destination(tmp_path: Path) -> Destination:
    root = tmp_path / "nas"
    root.mkdir()
    return open_destination("nas", {"kind": "filesystem", "path": str(root), "fsync": False})


@pytest.fixture
def tamper():
    def write(dest: Destination, key: str, data: bytes) -> None:
        (dest.root / key).write_bytes(data)  # type: ignore[attr-defined]

    return write


@pytest.fixture
def large_size() -> int:
    return 20 << 20


class TestFilesystemContract(DestinationContract):
    pass


def test_date_layout_by_default(destination: Destination) -> None:
    asset, _ = asset_for(photo(1), "IMG_0001.JPG")
    assert destination.key_for(asset) == "2024/05/17/IMG_0001.JPG"


def test_an_unmounted_share_is_never_created(tmp_path: Path) -> None:
    dest = open_destination("nas", {"kind": "filesystem", "path": str(tmp_path / "not-mounted")})
    data = photo(2)
    asset, digests = asset_for(data)
    with pytest.raises(DestinationUnavailable, match="mounted"):
        dest.put(dest.key_for(asset), io.BytesIO(data), digests=digests, asset=asset)
    assert not (tmp_path / "not-mounted").exists()
    report = dest.check()
    assert not report.ok
    assert not report.reachable
