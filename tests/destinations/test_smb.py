"""The smb kind against a real smbd on loopback, plus what only SMB can get wrong."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from smbprotocol.exceptions import (
    SMBAuthenticationError,
    SMBConnectionClosed,
    SMBException,
    SMBOSError,
)

from picpipe.destinations.base import Destination, Digests, open_destination
from picpipe.destinations.smb import SmbOptions
from picpipe.destinations.smb_session import LanePool
from picpipe.errors import (
    ConfigError,
    DestinationAuthFailed,
    DestinationMisconfigured,
    DestinationRejected,
    DestinationUnavailable,
    IntegrityMismatch,
)
from tests.conftest import missing
from tests.destinations.contract import DestinationContract, asset_for, photo, store
from tests.servers.samba import SambaProcess, SambaServer, running_samba, samba_problem

TEMP = ".picpipe-tmp-"


@pytest.fixture
def folder() -> str:
    """A fresh folder inside the share for one test (the `path` option)."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def opened() -> Iterator[Callable[..., Destination]]:
    """open_destination for an entry; every destination made is closed after the test."""
    made: list[Destination] = []

    def make(config: dict[str, Any], name: str = "nas") -> Destination:
        dest = open_destination(name, config)
        made.append(dest)
        return dest

    yield make
    for dest in made:
        dest.close()


@pytest.fixture
def destination(samba: SambaServer, folder: str, opened) -> Destination:
    return opened(samba.destination(path=folder, timeout=10))


@pytest.fixture
def tamper(samba: SambaServer):
    def write(dest: Destination, key: str, data: bytes) -> None:
        opts = dest.options  # type: ignore[attr-defined]
        (samba.share_root(opts.share) / opts.path / key).write_bytes(data)

    return write


@pytest.fixture
def large_size() -> int:
    return 12 << 20  # three 4 MiB writes


@pytest.fixture
def bad_credentials(samba: SambaServer, folder: str, opened) -> Destination:
    return opened(samba.destination(path=folder, password="not-" + samba.password))


@pytest.fixture
def private_samba(tmp_path: Path) -> Iterator[SambaProcess]:
    """A server of this test's own, to stop, pause or restart."""
    problem = samba_problem()
    if problem:
        missing(problem)
    with running_samba(tmp_path) as process:
        yield process


class TestSmbContract(DestinationContract):
    pass


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{TEMP}*")]


def put(dest: Destination, data: bytes, name: str = "IMG_0001.JPG", stream: Any = None) -> str:
    asset, digests = asset_for(data, name)
    key = dest.key_for(asset)
    return dest.put(key, stream or io.BytesIO(data), digests=digests, asset=asset).key


class Tripwire(io.BytesIO):
    """A stream that calls ``action`` once, when a read goes past ``at`` bytes."""

    def __init__(self, data: bytes, at: int, action: Callable[[], None]) -> None:
        super().__init__(data)
        self.at, self.action, self.fired = at, action, False

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if not self.fired and self.tell() > self.at:
            self.fired = True
            self.action()
        return chunk


# -- layout, options, credentials ----------------------------------------------------------


def test_date_layout_by_default(destination: Destination, samba: SambaServer, folder: str) -> None:
    data = photo(1)
    asset, _ = asset_for(data, "IMG_0001.JPG")
    assert destination.key_for(asset) == "2024/05/17/IMG_0001.JPG"
    put(destination, data)
    assert (samba.auth_root / folder / "2024/05/17/IMG_0001.JPG").read_bytes() == data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"password": None}, "username"),
        ({"username": None}, "needs `username`"),
        ({"share": "private/sub"}, "share"),
        ({"path": "a/../b"}, "path"),
        ({"username": None, "password": None, "encrypt": True}, "encrypt"),
    ],
)
def test_options_that_cannot_work_are_refused(
    samba: SambaServer, changes: dict[str, Any], message: str
) -> None:
    config = {k: v for k, v in {**samba.destination(), **changes}.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        open_destination("nas", config)


def test_password_from_env(samba: SambaServer, folder, opened, monkeypatch) -> None:
    monkeypatch.setenv("NAS_SMB_PASSWORD", samba.password)
    config = samba.destination(path=folder, password_env="NAS_SMB_PASSWORD")
    del config["password"]
    dest = opened(config)
    assert dest.check().ok
    key = put(dest, photo(2))
    assert dest.verify(key, Digests.of_bytes(photo(2))).ok


def test_password_from_file(samba: SambaServer, folder, opened, tmp_path: Path) -> None:
    secret = tmp_path / "smb-password"
    secret.write_text(samba.password + "\n")
    config = samba.destination(path=folder, password_file=str(secret))
    del config["password"]
    dest = opened(config)
    assert dest.check().ok
    config["password_file"] = str(tmp_path / "absent")
    report = opened(config).check()
    assert not report.ok
    assert not report.reachable
    assert "absent" in report.detail


def test_unset_password_env_is_a_config_problem(samba: SambaServer, opened) -> None:
    config = samba.destination(password_env="PICPIPE_TEST_NO_SUCH_VAR")
    del config["password"]
    dest = opened(config)
    with pytest.raises(DestinationMisconfigured, match="PICPIPE_TEST_NO_SUCH_VAR"):
        dest.stat("2024/05/17/x.jpg")


def test_wrong_password_is_auth_failed_and_never_shown(samba: SambaServer, opened) -> None:
    wrong = "Wr0ng-" + uuid.uuid4().hex
    dest = opened(samba.destination(password=wrong))
    with pytest.raises(DestinationAuthFailed) as caught:
        put(dest, photo(3))
    report = dest.check()
    assert report.reachable
    assert not report.authenticated
    for text in (str(caught.value), repr(caught.value), report.detail, repr(dest.options)):  # type: ignore[attr-defined]
        assert wrong not in text
        assert samba.password not in text


def test_an_unknown_user_is_not_taken_for_a_guest(samba: SambaServer, opened) -> None:
    """Samba maps unknown users to guest (map to guest = Bad User); signing refuses that."""
    dest = opened(samba.destination(username="nobody-" + uuid.uuid4().hex[:6], password="x"))
    report = dest.check()
    assert not report.authenticated
    assert "guest" in report.detail


def test_a_domain_user_logs_in(samba: SambaServer, folder, opened) -> None:
    dest = opened(samba.destination(path=folder, domain="PICPIPE"))
    assert dest.check().ok


def test_encrypted_sessions_work(samba: SambaServer, folder, opened) -> None:
    dest = opened(samba.destination(path=folder, encrypt=True))
    data = photo(4, 5 << 20)
    key = put(dest, data)
    assert dest.verify(key, Digests.of_bytes(data), deep=True).ok
    chunks = list(dest.read(key))  # streamed, not one 5 MiB read
    assert len(chunks) > 1
    assert b"".join(chunks) == data


def test_names_smb_refuses_are_made_safe(destination: Destination) -> None:
    data = photo(24)
    key = put(destination, data, 'a:b*c?d"e<f>g|h.jpg')
    assert key == "2024/05/17/a_b_c_d_e_f_g_h.jpg"
    assert b"".join(destination.read(key)) == data


def smb_failure(status: int) -> SMBOSError:
    return SMBOSError(status, r"\\server\share\file")


@pytest.mark.parametrize(
    ("failure", "expected", "text"),
    [
        (smb_failure(0xC000006D), DestinationAuthFailed, "STATUS_LOGON_FAILURE"),
        (smb_failure(0xC00000CC), DestinationMisconfigured, "share 'photos' does not exist"),
        (smb_failure(0xC000007F), DestinationRejected, "no space left"),
        (smb_failure(0xC0000044), DestinationRejected, "STATUS_QUOTA_EXCEEDED"),
        (smb_failure(0xC0000022), DestinationRejected, "not writable"),
        (smb_failure(0xC0000106), DestinationRejected, "name not accepted"),
        (smb_failure(0xC0000043), DestinationUnavailable, "STATUS_SHARING_VIOLATION"),
        (smb_failure(0xC00000C9), DestinationUnavailable, "NETWORK_NAME_DELETED"),
        (smb_failure(0xC0001234), DestinationUnavailable, "NTSTATUS 0xc0001234"),
        (SMBConnectionClosed("SMB socket was closed"), DestinationUnavailable, "socket was closed"),
        (ValueError("Failed to connect to 'nas:445': refused"), DestinationUnavailable, "refused"),
        (ConnectionResetError(104, "Connection reset by peer"), DestinationUnavailable, "reset"),
        (TimeoutError("timed out"), DestinationUnavailable, "timed out"),
        (SMBAuthenticationError("Failed to authenticate"), DestinationAuthFailed, "refused"),
        (
            SMBException("SMB encryption is required but the connection does not support it"),
            DestinationMisconfigured,
            "encryption",
        ),
    ],
)
def test_every_smb_failure_becomes_a_picpipe_error(
    failure: BaseException, expected: type, text: str
) -> None:
    error = LanePool("nas", SmbOptions(server="nas", share="photos")).error(failure, "a.jpg")
    assert type(error) is expected
    assert text in str(error)


def test_access_denied_while_connecting_is_an_auth_problem() -> None:
    pool = LanePool("nas", SmbOptions(server="nas", share="photos"))
    error = pool.error(smb_failure(0xC0000022), None, connecting=True)
    assert isinstance(error, DestinationAuthFailed)
    assert "may not use share 'photos'" in str(error)


# -- shares and sessions -------------------------------------------------------------------


def test_a_missing_share_is_misconfigured_and_never_created(samba: SambaServer, opened) -> None:
    dest = opened(samba.destination(share="no-such-share"))
    with pytest.raises(DestinationMisconfigured, match="share 'no-such-share' does not exist"):
        put(dest, photo(5))
    report = dest.check()
    assert not report.ok
    assert "does not exist" in report.detail
    assert not (samba.auth_root.parent / "no-such-share").exists()


def test_the_path_folder_is_created_inside_the_share(samba: SambaServer, folder, opened) -> None:
    dest = opened(samba.destination(path=f"{folder}/backup/photos"))
    assert dest.stat("2024/05/17/IMG_0001.JPG") is None
    assert list(dest.list()) == []
    key = put(dest, photo(6))
    assert (samba.auth_root / folder / "backup/photos" / key).is_file()


def test_guest_share(samba: SambaServer, folder, opened) -> None:
    dest = opened(samba.destination(guest=True, path=folder))
    assert dest.check().ok
    data = photo(7)
    key = put(dest, data)
    assert (samba.guest_root / folder / key).read_bytes() == data
    assert dest.verify(key, Digests.of_bytes(data), deep=True).ok


def test_destinations_on_one_server_never_share_a_session(
    samba: SambaServer, folder, opened
) -> None:
    """A guest destination must not ride on a user's session to the same server and port."""
    user = opened(samba.destination(path=folder), "user")
    guest = opened(samba.destination(guest=True, share=samba.auth_share, path=folder), "guest")
    key = put(user, photo(8))
    with pytest.raises(DestinationAuthFailed, match="may not use share"):
        guest.stat(key)
    assert user.stat(key) is not None
    assert not guest.check().authenticated


# -- what a failure leaves behind ----------------------------------------------------------


def test_wrong_bytes_leave_no_temp_file(
    destination: Destination, samba: SambaServer, folder
) -> None:
    claimed, sent = photo(9), photo(10)
    asset, digests = asset_for(claimed)
    with pytest.raises(IntegrityMismatch):
        destination.put(destination.key_for(asset), io.BytesIO(sent), digests=digests, asset=asset)
    assert temp_files(samba.auth_root / folder) == []
    assert destination.stat(destination.key_for(asset)) is None


def test_temp_names_are_never_listed(destination: Destination, samba: SambaServer, folder) -> None:
    key = put(destination, photo(11))
    stray = samba.auth_root / folder / "2024/05/17" / f"{TEMP}0123456789abcdef-deadbeef"
    stray.write_bytes(b"half")
    (samba.auth_root / folder / f"{TEMP}dir").mkdir()
    (samba.auth_root / folder / f"{TEMP}dir" / "x.jpg").write_bytes(b"x")
    assert [o.key for o in destination.list()] == [key]
    assert [o.key for o in destination.list("2024/05")] == [key]
    assert list(destination.list("2030")) == []


def test_long_and_odd_names(destination: Destination, samba: SambaServer, folder) -> None:
    name = "Ä" * 60 + "-" + "x" * 130 + ".jpg"  # 255 bytes in UTF-8: ext4's limit
    data = photo(12)
    key = put(destination, data, name)
    assert destination.verify(key, Digests.of_bytes(data), deep=True).ok
    # Too long for the server's disk: refused for good, and the temp file (short name) that
    # could not be renamed is gone.
    with pytest.raises(DestinationRejected, match="name not accepted"):
        put(destination, photo(13), "y" * 300 + ".jpg")
    assert temp_files(samba.auth_root / folder) == []


def test_a_file_where_a_folder_belongs_is_rejected(
    destination: Destination, samba: SambaServer, folder
) -> None:
    (samba.auth_root / folder / "2024").mkdir(parents=True)
    (samba.auth_root / folder / "2024/05").write_bytes(b"someone else's file")
    with pytest.raises(DestinationRejected, match="in the way"):
        put(destination, photo(19))
    assert (samba.auth_root / folder / "2024/05").read_bytes() == b"someone else's file"


def test_a_client_killed_mid_upload_leaves_no_temp_file(samba: SambaServer, folder) -> None:
    """kill -9 of picpipe: the server closes the handle and deletes the delete-pending file."""
    script = """
import io, json, sys, time
from picpipe.destinations.base import open_destination
from tests.conftest import missing
from tests.destinations.contract import asset_for, photo
dest = open_destination("nas", json.loads(sys.argv[1]))
data = photo(14, 12 << 20)
asset, digests = asset_for(data)
class Stall(io.BytesIO):
    def read(self, size=-1):
        if self.tell() >= 4 << 20:
            print("stalled", flush=True)
            time.sleep(60)
        return super().read(size)
dest.put(dest.key_for(asset), Stall(data), digests=digests, asset=asset)
"""
    config = json.dumps(samba.destination(path=folder))
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", script, config], stdout=subprocess.PIPE, cwd=root
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"stalled"
            assert len(temp_files(samba.auth_root / folder)) == 1  # half written, not final
        finally:
            child.kill()
    deadline = time.monotonic() + 10
    while temp_files(samba.auth_root / folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_files(samba.auth_root / folder) == []
    assert not (samba.auth_root / folder / "2024/05/17/IMG_0001.JPG").exists()


# -- a server that goes away ---------------------------------------------------------------


def test_a_server_stopped_mid_upload_then_restarted(private_samba: SambaProcess, opened) -> None:
    server = private_samba.server
    dest = opened(server.destination(timeout=5))
    put(dest, photo(15), "BEFORE.JPG")
    data = photo(16, 12 << 20)
    started = time.monotonic()
    with pytest.raises(DestinationUnavailable):
        put(dest, data, stream=Tripwire(data, 4 << 20, private_samba.stop))
    assert time.monotonic() - started < 10
    assert temp_files(server.auth_root) == []  # smbd closed the handle on its way out
    with pytest.raises(DestinationUnavailable):
        dest.stat("2024/05/17/BEFORE.JPG")
    assert not dest.check().reachable
    assert private_samba.start()  # the same port and shares
    key = put(dest, data)  # the same destination reconnects
    assert dest.verify(key, Digests.of_bytes(data), deep=True).ok


def test_a_stalled_server_fails_the_call_instead_of_hanging(
    private_samba: SambaProcess, opened
) -> None:
    server = private_samba.server
    dest = opened(server.destination(timeout=2))
    put(dest, photo(17), "WARM.JPG")  # a lane exists and is idle
    data = photo(18, 12 << 20)
    started = time.monotonic()
    try:
        with pytest.raises(DestinationUnavailable):
            put(dest, data, stream=Tripwire(data, 1, private_samba.pause))
        elapsed = time.monotonic() - started
    finally:
        private_samba.resume()
    assert elapsed < 15
    deadline = time.monotonic() + 10
    while temp_files(server.auth_root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_files(server.auth_root) == []
    key = put(dest, data)
    assert dest.verify(key, Digests.of_bytes(data)).ok


def test_an_unreachable_server_is_unavailable(opened) -> None:
    with socket_closed_port() as port:
        dest = opened({"kind": "smb", "server": "127.0.0.1", "port": port, "share": "x"})
        with pytest.raises(DestinationUnavailable, match=f"127.0.0.1:{port}"):
            dest.stat("a.jpg")
        report = dest.check()
        assert not report.reachable


class socket_closed_port:  # noqa: N801 - used like a function
    """A loopback port nothing listens on (bound, never listening, for the test's duration)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# -- several threads -----------------------------------------------------------------------


def test_threads_share_one_destination(destination: Destination) -> None:
    """Puts, reads and lists from several threads at once (one SMB connection each)."""
    blobs = {f"T{i:02d}.JPG": photo(60 + i, (i % 3) << 20) for i in range(12)}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            key = put(destination, blobs[name], name)
            assert destination.verify(key, Digests.of_bytes(blobs[name])).ok
            list(destination.list())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(list(destination.list())) == len(blobs)
    assert store(destination, blobs["T00.JPG"], "T00.JPG") == "2024/05/17/T00.JPG"
