"""The ``smb`` destination: a share on a NAS, Windows or Samba server, without mounting it.

Speaks SMB 2/3 through smbprotocol's ``smbclient``; connections live in `smb_session`.
- Writes: the temp file (``.picpipe-tmp-…`` in the target folder) is marked delete-pending as
  soon as it exists, so the server removes it when the upload fails, the connection drops or
  picpipe is killed. Only bytes that hashed right are kept: the mark is cleared and the file is
  renamed over the final name (replace-if-exists) on the same handle. Folders are created as
  needed inside the share; the share itself never is.
- Verification: an SMB server computes no checksum a client can ask for, so cheap and deep
  checks both read the file back and hash it, as the filesystem kind does (a size that differs
  fails at once, before reading).
- Signing is always required for a user's session: it protects the bytes on the wire and
  refuses a server that quietly turns an unknown user into a guest. ``encrypt`` adds SMB3
  encryption (untrusted networks; costs CPU). Guest sessions can do neither.
- Timeouts: connecting is bounded by ``connection_timeout``; a server that stops answering is
  noticed after ``timeout`` and the waiting call fails (retryable) instead of hanging.
"""

from __future__ import annotations

import errno
import secrets
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path  # noqa: TC003 - pydantic reads the annotation at runtime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import smbclient
from pydantic import Field, SecretStr, field_validator, model_validator
from smbprotocol.exceptions import SMBException
from smbprotocol.file_info import FileDispositionInformation, FileRenameInformation
from smbprotocol.open import FilePipePrinterAccessMask, SMB2SetInfoRequest

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
from picpipe.destinations.smb_session import MISSING, LanePool, status_of
from picpipe.errors import (
    DestinationAuthFailed,
    DestinationError,
    DestinationRejected,
    DestinationUnavailable,
    IntegrityMismatch,
)
from picpipe.hashing import new_hasher
from picpipe.library.layout import TEMP_PREFIX, is_temp_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

WRITE_CHUNK = 4 << 20  # one SMB2 WRITE each (servers take 1-8 MiB)
_TEMP_ACCESS = (
    FilePipePrinterAccessMask.FILE_WRITE_DATA
    | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES
    | FilePipePrinterAccessMask.FILE_WRITE_ATTRIBUTES
    | FilePipePrinterAccessMask.DELETE  # delete-pending and rename through the handle
    | FilePipePrinterAccessMask.SYNCHRONIZE
)


class SmbOptions(DestinationOptions):
    """An SMB share reached over the network (no mount needed)."""

    kind: str = "smb"
    server: str = Field(description="SMB server host name or IP address")
    port: int = Field(default=445, ge=1, le=65535, description="TCP port of the SMB service")
    share: str = Field(description="share name on the server; it must exist (never created)")
    path: str = Field(
        default="",
        description="folder inside the share for the replicas ('' = the share's root); "
        "created when missing",
    )
    username: str | None = Field(default=None, description="user name; unset = guest access")
    password: SecretStr | None = Field(
        default=None, description="password (prefer password_env or password_file)"
    )
    password_env: str | None = Field(
        default=None, description="name of an environment variable holding the password"
    )
    password_file: Path | None = Field(default=None, description="file holding the password")
    domain: str | None = Field(
        default=None, description="Windows domain of the user; unset for a NAS's own users"
    )
    encrypt: bool = Field(
        default=False,
        description="require SMB3 encryption (untrusted networks; needs a user; costs CPU); "
        "signing is always on for users",
    )
    connection_timeout: float = Field(
        default=5.0, gt=0, description="seconds to connect and log in before giving up"
    )
    timeout: float = Field(
        default=60.0,
        gt=0,
        description="seconds a server may stay silent before the call fails (retried later)",
    )

    @field_validator("share")
    @classmethod
    def _one_share_name(cls, value: str) -> str:
        if not value.strip() or any(c in value for c in "/\\"):
            raise ValueError("a share name, without slashes (folders go in `path`)")
        return value.strip()

    @field_validator("path")
    @classmethod
    def _relative_folder(cls, value: str) -> str:
        parts = [p for p in value.replace("\\", "/").split("/") if p]
        if any(p in {".", ".."} for p in parts):
            raise ValueError("a folder inside the share, without '.' or '..'")
        return "/".join(parts)

    @model_validator(mode="after")
    def _credentials_fit(self) -> SmbOptions:
        has_password = any((self.password, self.password_env, self.password_file))
        if self.username is None and (has_password or self.domain):
            raise ValueError("a password or domain needs `username` (no username = guest)")
        if self.username is not None and not has_password:
            raise ValueError("`username` needs password, password_env or password_file")
        if self.encrypt and self.username is None:
            raise ValueError("`encrypt` needs a user: guest sessions cannot encrypt")
        return self


class SmbDestination:
    """Replicas as files in an SMB share; see `picpipe.destinations.base` for the contract."""

    kind: ClassVar[str] = "smb"
    caps: ClassVar[DestinationCaps] = DestinationCaps(default_layout=DATE_LAYOUT)
    Options: ClassVar[type[DestinationOptions]] = SmbOptions

    def __init__(self, name: str, options: DestinationOptions) -> None:
        assert isinstance(options, SmbOptions)
        self.name = name
        self.options = options
        self._layout = options.layout or self.caps.default_layout
        self._lanes = LanePool(name, options)

    def key_for(self, asset: AssetRef) -> str:
        return render_layout(self._layout, asset)

    def stat(self, key: str) -> RemoteObject | None:
        path = self._unc(self._share_path(key))
        with self._lanes.using(key) as smb:
            try:
                found = smbclient.stat(path, **smb)
            except SMBException as exc:
                if status_of(exc) in MISSING:
                    return None
                raise
        return RemoteObject(key=key, size=found.st_size)

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
        final = self._share_path(key)
        folder = final.rpartition("\\")[0]
        temp = _join(folder, f"{TEMP_PREFIX}{digests.sha256[:16]}-{secrets.token_hex(4)}")
        with self._lanes.using(key) as smb:
            raw = self._create_temp(key, temp, folder, smb)
            keeping = False
            try:
                written, size = _write_hashing(data, raw)
                if size != digests.size or written != digests.sha256:
                    raise IntegrityMismatch(
                        destination=self.name,
                        key=key,
                        detail="the bytes read changed during the copy",
                    )
                _set_info(raw, _disposition(delete=False))
                keeping = True
                _set_info(raw, _rename_to(final))
            except BaseException:
                if keeping:  # the rename failed: hand the temp file back to the server to remove
                    with suppress(Exception):
                        _set_info(raw, _disposition(delete=True))
                _close_quietly(raw)
                raise
            raw.close()
        return RemoteObject(key=key, size=size, sha256=written)

    def verify(self, key: str, digests: Digests, *, deep: bool = False) -> Verification:
        # No checksum to ask the server for: every check re-reads the file (see module docs).
        method = "sha256 re-read"
        try:
            with self._opened(key) as raw:
                stored = raw.fd.end_of_file
                if stored != digests.size:  # no need to read a file of the wrong size
                    remote = RemoteObject(key=key, size=stored)
                    detail = f"size {stored} != {digests.size}"
                    return Verification(False, key, method, detail, remote)
                chunks = iter(lambda: raw.read(READ_CHUNK), b"")
                return verify_by_reading(key, chunks, digests, method)
        except IntegrityMismatch:
            return Verification(False, key, method, "missing")

    def read(self, key: str) -> Iterator[bytes]:
        with self._opened(key) as raw:
            while chunk := raw.read(READ_CHUNK):
                yield chunk

    def list(self, prefix: str = "") -> Iterator[RemoteObject]:
        root = self._share_path("")
        folders = [self._share_path(prefix.strip("/")) if prefix.strip("/") else root]
        with self._lanes.using(None) as smb:
            while folders:
                folder = folders.pop()
                try:  # read to the end, which closes the folder's handle
                    entries = sorted(smbclient.scandir(self._unc(folder), **smb), key=_name)
                except SMBException as exc:
                    if status_of(exc) in MISSING or getattr(exc, "errno", None) == errno.ENOTDIR:
                        continue  # nothing stored there yet
                    raise
                inner = []
                for entry in entries:
                    if is_temp_name(entry.name):
                        continue
                    inside = _join(folder, entry.name)
                    if entry.is_dir(follow_symlinks=False):
                        inner.append(inside)
                    else:
                        key = inside[len(root) :].lstrip("\\").replace("\\", "/")
                        yield RemoteObject(key=key, size=entry.smb_info.end_of_file)
                folders.extend(reversed(inner))  # a stack: the first folder comes out first

    def remove_snapshot(self, key: str) -> None:
        require_snapshot_key(self.name, key)
        with self._lanes.using(key) as smb:
            try:
                smbclient.remove(self._unc(self._share_path(key)), **smb)
            except SMBException as exc:
                if status_of(exc) not in MISSING:
                    raise

    def check(self) -> ConnectionReport:
        report = ConnectionReport(self.name, self.kind, False, False, False)
        root = self._share_path("")
        name = f"{TEMP_PREFIX}probe-{secrets.token_hex(4)}"
        probe = _join(root, name)
        try:
            self._lanes.login()
        except DestinationError as exc:  # a secret that cannot be read: nothing was tried
            return replace(report, detail=_detail(exc))
        try:
            with self._lanes.using(name) as smb:
                raw = self._create_temp(name, probe, root, smb)
                try:  # delete-pending already: closing the handle removes the probe
                    raw.write(b"picpipe")
                except BaseException:
                    _close_quietly(raw)
                    raise
                raw.close()
        except DestinationUnavailable as exc:
            return replace(report, detail=_detail(exc))
        except DestinationAuthFailed as exc:
            return replace(report, reachable=True, detail=_detail(exc))
        except DestinationError as exc:  # a missing share, a refused probe
            return replace(report, reachable=True, authenticated=True, detail=_detail(exc))
        return replace(report, reachable=True, authenticated=True, writable=True)

    def close(self) -> None:
        self._lanes.close()

    # -- helpers ---------------------------------------------------------------------------

    def _share_path(self, key: str) -> str:
        """``key`` as a path inside the share (backslashes), under the ``path`` option."""
        parts = key.split("/") if key else []
        if key and (key.startswith("/") or any(p in {"", ".", ".."} for p in parts)):
            raise DestinationRejected(destination=self.name, key=key, detail="not a valid key")
        return "\\".join([*self.options.path.split("/"), *parts]).strip("\\")

    def _unc(self, share_path: str) -> str:
        return _join(self._lanes.unc, share_path)

    def _create_temp(self, key: str, temp: str, folder: str, smb: dict[str, Any]) -> Any:
        """Create ``temp`` exclusively (and its folder when missing), marked delete-pending."""

        def create() -> Any:
            return smbclient.open_file(
                self._unc(temp),
                mode="xb",
                buffering=0,
                share_access="",
                desired_access=_TEMP_ACCESS,
                **smb,
            )

        try:
            raw = create()
        except SMBException as exc:
            if status_of(exc) not in MISSING or not folder:
                raise
            try:
                smbclient.makedirs(self._unc(folder), exist_ok=True, **smb)
                raw = create()
            except SMBException as again:
                if status_of(again) not in MISSING:
                    raise
                raise DestinationRejected(  # a file where a folder should be
                    destination=self.name, key=key, detail="a file is in the way of its folder"
                ) from again
        try:
            _set_info(raw, _disposition(delete=True))
        except BaseException:
            _close_quietly(raw)
            raise
        return raw

    @contextmanager
    def _opened(self, key: str) -> Iterator[Any]:
        """The file at ``key`` open for reading; `IntegrityMismatch` ("missing") when absent."""
        path = self._unc(self._share_path(key))
        with self._lanes.using(key) as smb:
            try:
                raw = smbclient.open_file(path, mode="rb", buffering=0, share_access="rwd", **smb)
            except SMBException as exc:
                if status_of(exc) in MISSING:
                    raise IntegrityMismatch(
                        destination=self.name, key=key, detail="missing"
                    ) from exc
                raise
            try:
                yield raw
            except BaseException:
                _close_quietly(raw)
                raise
            raw.close()


def _join(*parts: str) -> str:
    """Join share path parts with backslashes, skipping empty ones."""
    return "\\".join(p.strip("\\") if i else p.rstrip("\\") for i, p in enumerate(parts) if p)


def _name(entry: Any) -> str:
    return str(entry.name)


def _detail(exc: DestinationError) -> str:
    return str(exc.fields.get("detail") or exc)


def _close_quietly(raw: Any) -> None:
    """Close a handle while another error is on its way; a dead connection took it already."""
    try:
        raw.close()
    except Exception:
        # The server dropped the handle with the connection; say so, or smbprotocol's finalizer
        # warns later about an unclosed handle that no longer exists.
        raw.fd._connected = False


def _write_hashing(data: BinaryIO, raw: Any) -> tuple[str, int]:
    """Copy ``data`` into the open SMB file in WRITE_CHUNK writes, hashing what was sent."""
    digest = new_hasher()
    size = 0
    while chunk := data.read(WRITE_CHUNK):
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            written = raw.write(view)
            if not written:
                raise OSError(errno.EIO, "the server accepted no bytes")
            view = view[written:]
        size += len(chunk)
    return digest.hexdigest(), size


def _disposition(*, delete: bool) -> Any:
    info = FileDispositionInformation()
    info["delete_pending"] = delete
    return info


def _rename_to(share_path: str) -> Any:
    info = FileRenameInformation()
    info["replace_if_exists"] = True
    info["file_name"] = share_path
    return info


def _set_info(raw: Any, info: Any) -> None:
    """One SMB2 SET_INFO on an open handle; the server's failure status raises."""
    fd = raw.fd
    request = SMB2SetInfoRequest()
    request["info_type"] = info.INFO_TYPE
    request["file_info_class"] = info.INFO_CLASS
    request["file_id"] = fd.file_id
    request["buffer"] = info
    tree = fd.tree_connect
    sent = fd.connection.send(request, sid=tree.session.session_id, tid=tree.tree_connect_id)
    fd.connection.receive(sent)
