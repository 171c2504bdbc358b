"""The ``filesystem`` destination: a local folder or a mounted NAS/NFS share (Unraid, Synology).

Writes go to a temp name in the target folder, are fsynced and renamed, so a reader never sees
half a photo. The root itself is never created: an unmounted share must fail the sync, not fill
the local disk underneath its mount point.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from pydantic import Field

from picpipe.destinations.base import (
    DATE_LAYOUT,
    READ_CHUNK,
    AssetRef,
    ConnectionReport,
    DestinationCaps,
    DestinationOptions,
    Digests,
    RemoteObject,
    Verification,
    render_layout,
    require_snapshot_key,
    verify_by_reading,
)
from picpipe.errors import (
    DestinationError,
    DestinationRejected,
    DestinationUnavailable,
    IntegrityMismatch,
)
from picpipe.hashing import new_hasher, sha256_file
from picpipe.library.atomic import rename_over, temp_path, unlink_quietly
from picpipe.library.layout import TEMP_PREFIX, is_temp_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class FilesystemOptions(DestinationOptions):
    """A folder on this machine or a mounted share."""

    kind: str = "filesystem"
    path: Path = Field(description="root folder of the replica (must exist: a mounted share)")
    fsync: bool = Field(default=True, description="fsync each file and folder (slower, safer)")


class FilesystemDestination:
    """Replicas as plain files under ``path``; see `picpipe.destinations.base` for the contract."""

    kind: ClassVar[str] = "filesystem"
    caps: ClassVar[DestinationCaps] = DestinationCaps(default_layout=DATE_LAYOUT)
    Options: ClassVar[type[DestinationOptions]] = FilesystemOptions

    def __init__(self, name: str, options: DestinationOptions) -> None:
        assert isinstance(options, FilesystemOptions)
        self.name = name
        self.options = options
        self.root = options.path.expanduser()
        self._layout = options.layout or self.caps.default_layout

    def key_for(self, asset: AssetRef) -> str:
        return render_layout(self._layout, asset)

    def stat(self, key: str) -> RemoteObject | None:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            self._require_root()
            return None
        except OSError as exc:
            raise self._error(exc, key) from exc
        return RemoteObject(key=key, size=st.st_size)

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        digests: Digests,
        asset: AssetRef,
        resume: dict[str, Any] | None = None,
        checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> RemoteObject:
        self._require_root()
        final = self._path(key)
        temp = temp_path(final, f"{digests.sha256[:16]}-{secrets.token_hex(4)}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            _sweep_own_temps(final.parent, digests.sha256)
            written, size = _copy(data, temp, fsync=self.options.fsync)
            read_back = written is None  # a kernel copy: check what landed on the disk
            if read_back:
                written = sha256_file(temp)[0]
            if size != digests.size or written != digests.sha256:
                raise IntegrityMismatch(
                    destination=self.name, key=key, detail="the bytes read changed during the copy"
                )
            rename_over(temp, final, fsync=self.options.fsync)
        except OSError as exc:
            unlink_quietly(temp)
            raise self._error(exc, key) from exc
        except BaseException:
            unlink_quietly(temp)
            raise
        # A copy read back before its rename is verified; one hashed while written is not.
        return RemoteObject(key=key, size=size, sha256=written, server_checked=read_back)

    def verify(self, key: str, digests: Digests, *, deep: bool = False) -> Verification:
        # No server keeps a checksum here, so every check re-reads the file (page cache helps).
        return verify_by_reading(key, self.read(key), digests)

    def read(self, key: str) -> Iterator[bytes]:
        try:
            stream = open(self._path(key), "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            self._require_root()
            raise IntegrityMismatch(destination=self.name, key=key, detail="missing") from exc
        except OSError as exc:
            raise self._error(exc, key) from exc
        with stream:
            try:
                while chunk := stream.read(READ_CHUNK):
                    yield chunk
            except OSError as exc:
                raise self._error(exc, key) from exc

    def list(self, prefix: str = "") -> Iterator[RemoteObject]:
        self._require_root()
        folder = prefix.strip("/")  # a folder ("2024/05/", "ab/"): keys are paths here
        start = self._path(folder) if folder else self.root
        if not start.is_dir():
            return
        for folder, dirs, files in os.walk(start):
            dirs[:] = sorted(d for d in dirs if not is_temp_name(d))
            for name in sorted(files):
                if is_temp_name(name):
                    continue
                path = Path(folder, name)
                try:
                    size = path.stat().st_size
                except OSError:
                    continue  # vanished while listing
                yield RemoteObject(key=path.relative_to(self.root).as_posix(), size=size)

    def remove_snapshot(self, key: str) -> None:
        require_snapshot_key(self.name, key)
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise self._error(exc, key) from exc

    def check(self) -> ConnectionReport:
        report = ConnectionReport(self.name, self.kind, False, False, False)
        if not self.root.is_dir():
            return replace(
                report, detail=f"{self.root} does not exist or is not a folder (is it mounted?)"
            )
        probe = self.root / f"{TEMP_PREFIX}probe-{secrets.token_hex(4)}"
        try:
            probe.write_bytes(b"picpipe")
            probe.unlink()
        except OSError as exc:
            return replace(
                report, reachable=True, authenticated=True, detail=f"not writable: {exc.strerror}"
            )
        return replace(report, reachable=True, authenticated=True, writable=True)

    def close(self) -> None:
        pass

    # -- helpers ---------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        # Keys come from render_layout (no "..", no absolute parts); refuse anything else.
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in {"", ".", ".."} for p in parts):
            raise DestinationRejected(destination=self.name, key=key, detail="not a valid key")
        return self.root.joinpath(*parts)

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise DestinationUnavailable(
                destination=self.name, detail=f"{self.root} is missing (is the share mounted?)"
            )

    def _error(self, exc: OSError, key: str) -> DestinationError:
        if exc.errno in {errno.ENOSPC, errno.EDQUOT}:
            return DestinationRejected(destination=self.name, key=key, detail="no space left")
        if exc.errno in {errno.EACCES, errno.EPERM, errno.EROFS}:
            return DestinationRejected(
                destination=self.name, key=key, detail=f"not writable ({exc.strerror})"
            )
        if exc.errno in {errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ}:
            return DestinationRejected(destination=self.name, key=key, detail=exc.strerror or "")
        return DestinationUnavailable(destination=self.name, detail=exc.strerror or str(exc))


def _copy(data: BinaryIO, target: Path, *, fsync: bool) -> tuple[str | None, int]:
    """Write ``data`` to ``target`` (created exclusively); returns (SHA-256, bytes written).

    A stream backed by a file is copied by the kernel (copy_file_range: no pass through
    Python, no hash: the engine's verification re-reads the copy anyway) and the hash is None;
    any other stream is hashed as it is written.
    """
    try:
        source = data.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return _copy_hashing(data, target, fsync=fsync)
    size = 0
    with open(target, "xb", buffering=0) as out:
        offset = data.tell()
        while copied := os.copy_file_range(source, out.fileno(), 1 << 30, offset + size):
            size += copied
        if fsync:
            os.fsync(out.fileno())
    data.seek(offset + size)
    return None, size


def _copy_hashing(data: BinaryIO, target: Path, *, fsync: bool) -> tuple[str | None, int]:
    """Write ``data`` to ``target`` (created exclusively), hashing the bytes as written."""
    digest = new_hasher()
    size = 0
    with open(target, "xb", buffering=0) as out:
        while chunk := data.read(8 * READ_CHUNK):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[out.write(view) :]
            size += len(chunk)
        if fsync:
            os.fsync(out.fileno())
    return digest.hexdigest(), size


def _sweep_own_temps(folder: Path, sha256: str) -> None:
    """Remove temp files an interrupted earlier put of this same asset left in ``folder``.

    Their names carry the asset's hash, so they can only be ours, never someone's data.
    """
    for stale in folder.glob(f"{TEMP_PREFIX}{sha256[:16]}-*"):
        unlink_quietly(stale)
