"""The one contract every destination kind passes against its real (or spec-built) server.

A kind's test module subclasses `DestinationContract` and provides two fixtures:
- ``destination``: a `Destination` talking to a server started for the test (loopback);
- ``tamper``: ``tamper(destination, key, data)`` replaces the stored bytes of ``key`` behind the
  destination's back, the way a failing disk or another tool would (it must not go through
  ``put``).
and may provide ``bad_credentials``: a `Destination` for the same server with a wrong secret.
Kinds with ``caps.keyed_by_server`` (Immich) name objects themselves: the tests use the key
``put`` returns.
"""

from __future__ import annotations

import contextlib
import io
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
from PIL import Image

from picpipe.destinations.base import AssetRef, Destination, Digests
from picpipe.errors import DestinationRejected, PicpipeError


def asset_for(data: bytes, name: str = "IMG_0001.JPG", **changes: Any) -> tuple[AssetRef, Digests]:
    digests = Digests.of_bytes(data)
    values: dict[str, Any] = {
        "sha256": digests.sha256,
        "size": digests.size,
        "ext": name.rpartition(".")[2].lower() or "jpg",
        "kind": "photo",
        "taken_local": datetime(2024, 5, 17, 14, 3, 9),
        "taken_offset_min": 120,
        "original_name": name,
        "source_path": f"DCIM/100APPLE/{name}",
        "mime_type": "image/jpeg",
        "modified": datetime(2024, 5, 17, 14, 3, 9),
    }
    values.update(changes)
    return AssetRef(**values), digests


def photo(seed: int, size: int = 0) -> bytes:
    """A real little JPEG, padded after its end marker to ``size`` bytes when asked."""
    noise = random.Random(seed).randbytes(64 * 48 * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (64, 48), noise).save(out, "JPEG", quality=90)
    data = out.getvalue()
    if size > len(data):
        data += random.Random(-seed).randbytes(size - len(data))
    return data


def store(dest: Destination, data: bytes, name: str = "IMG_0001.JPG", **changes: Any) -> str:
    asset, digests = asset_for(data, name, **changes)
    key = dest.key_for(asset)
    return dest.put(key, io.BytesIO(data), digests=digests, asset=asset).key


class DestinationContract:
    """Subclass with ``destination`` and ``tamper`` fixtures; see the module docstring."""

    def test_has_no_delete(self, destination: Destination) -> None:
        assert not any(hasattr(destination, n) for n in ("delete", "remove", "unlink", "rmdir"))
        remover = getattr(destination, "remove_snapshot", None)
        if remover is None:
            return
        # The one removal there is takes only old catalog snapshots, never a photo.
        data = photo(3)
        asset, digests = asset_for(data)
        key = destination.key_for(asset)
        destination.put(key, io.BytesIO(data), digests=digests, asset=asset)
        for refused in (key, "picpipe-catalog/latest.json", "picpipe-catalog/x/catalog-1.gz"):
            with pytest.raises(DestinationRejected):
                remover(refused)
        assert destination.verify(key, digests).ok

    def test_put_then_stat_verify_read(self, destination: Destination) -> None:
        data = photo(1)
        asset, digests = asset_for(data)
        key = destination.key_for(asset)
        assert key == destination.key_for(asset)  # pure
        stored = destination.put(key, io.BytesIO(data), digests=digests, asset=asset)
        found = destination.stat(stored.key)
        assert found is not None
        assert found.size == len(data)
        for deep in (False, True):
            outcome = destination.verify(stored.key, digests, deep=deep)
            assert outcome.ok, outcome.detail
        assert b"".join(destination.read(stored.key)) == data

    def test_missing_object(self, destination: Destination) -> None:
        data = photo(2)
        asset, digests = asset_for(data, "NEVER_STORED.JPG")
        key = destination.key_for(asset)
        if not destination.caps.keyed_by_server:
            assert destination.stat(key) is None
        outcome = destination.verify(key, digests, deep=True)
        assert not outcome.ok

    def test_put_is_idempotent(self, destination: Destination) -> None:
        data = photo(3)
        first = store(destination, data, "TWICE.JPG")
        second = store(destination, data, "TWICE.JPG")
        assert first == second
        keys = [o.key for o in destination.list()]
        assert keys.count(first) == 1
        assert destination.verify(first, Digests.of_bytes(data), deep=True).ok

    def test_overwrite_replaces_the_object_whole(self, destination: Destination) -> None:
        if destination.caps.keyed_by_server:
            pytest.skip("the server names objects; there is no overwrite")
        old, new = photo(4), photo(5)
        key = store(destination, old, "SAME_NAME.JPG")
        asset, digests = asset_for(new, "SAME_NAME.JPG")
        destination.put(key, io.BytesIO(new), digests=digests, asset=asset)
        assert b"".join(destination.read(key)) == new
        assert destination.verify(key, digests, deep=True).ok

    def test_tampered_object_fails_verification(self, destination: Destination, tamper) -> None:
        data = photo(6)
        key = store(destination, data, "TAMPERED.JPG")
        digests = Digests.of_bytes(data)
        assert destination.verify(key, digests, deep=True).ok
        broken = bytearray(data)
        broken[len(broken) // 2] ^= 0xFF
        tamper(destination, key, bytes(broken))
        outcome = destination.verify(key, digests, deep=True)
        assert not outcome.ok
        assert outcome.detail

    def test_truncated_object_fails_even_cheap_verification(
        self, destination: Destination, tamper
    ) -> None:
        data = photo(7)
        key = store(destination, data, "TRUNCATED.JPG")
        tamper(destination, key, data[: len(data) // 2])
        assert not destination.verify(key, Digests.of_bytes(data)).ok

    def test_wrong_bytes_never_verify(self, destination: Destination) -> None:
        """Bytes that are not what the digests say either fail ``put`` or fail ``verify``."""
        claimed, sent = photo(8), photo(9)
        asset, digests = asset_for(claimed, "LIES.JPG")
        key = destination.key_for(asset)
        with contextlib.suppress(PicpipeError):
            key = destination.put(key, io.BytesIO(sent), digests=digests, asset=asset).key
        assert not destination.verify(key, digests, deep=True).ok

    def test_odd_names_round_trip(self, destination: Destination) -> None:
        for i, name in enumerate(["Ünïcødé photo #1.jpg", "a b+c&d=e%20f.jpg", "日本語.jpg"]):
            data = photo(20 + i)
            key = store(destination, data, name)
            assert b"".join(destination.read(key)) == data
            assert destination.verify(key, Digests.of_bytes(data), deep=True).ok

    def test_large_object(self, destination: Destination, large_size: int) -> None:
        """Bigger than the kind's multipart/chunk threshold in the test configuration."""
        data = photo(30, large_size)
        key = store(destination, data, "BIG.JPG")
        digests = Digests.of_bytes(data)
        assert destination.verify(key, digests).ok
        assert destination.verify(key, digests, deep=True).ok

    def test_concurrent_puts(self, destination: Destination) -> None:
        blobs = [photo(40 + i) for i in range(8)]
        errors: list[BaseException] = []
        lock = threading.Lock()

        def one(i: int) -> str:
            try:
                return store(destination, blobs[i], f"PAR_{i:02d}.JPG")
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                raise

        with ThreadPoolExecutor(4) as pool:
            keys = list(pool.map(one, range(8)))
        assert not errors
        assert len(set(keys)) == 8
        for key, data in zip(keys, blobs, strict=True):
            assert destination.verify(key, Digests.of_bytes(data), deep=True).ok

    def test_list_shows_stored_objects_only(self, destination: Destination) -> None:
        data = photo(50)
        key = store(destination, data, "LISTED.JPG")
        listed = {o.key: o.size for o in destination.list()}
        assert listed.get(key) == len(data)
        assert not any(".picpipe-tmp-" in k for k in listed)

    def test_check_connection(self, destination: Destination) -> None:
        report = destination.check()
        assert report.ok, report.detail

    def test_bad_credentials_are_reported(self, request: pytest.FixtureRequest) -> None:
        if not _has_fixture(request, "bad_credentials"):
            pytest.skip("this kind has no credentials")
        bad: Destination = request.getfixturevalue("bad_credentials")
        report = bad.check()
        assert not report.ok
        assert not report.authenticated
        assert "secret" not in report.detail.lower() or "********" in report.detail


def _has_fixture(request: pytest.FixtureRequest, name: str) -> bool:
    try:
        request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return False
    return True
