"""Canary secrets never reach output (findings 3 and 4 of the security review).

Every destination kind and the database URL get distinctive secrets: working servers (S3,
Azurite, Samba, the Immich fake, PostgreSQL) with their real credentials, and unreachable
ones with canary strings in every secret field, URL user-info and secret query parameter.
Each command runs at ``-v`` (DEBUG, tracebacks included); then stdout, stderr (the log), the
catalog dump, every file under the home and library roots (sidecars, thumbnails and their
metadata, the SQLite file) and the command lines of every process sampled while the
commands ran are searched for each secret in plain, URL-encoded and base64 form.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from sqlalchemy import create_engine, inspect, text

from picpipe.samples import make_sample_set
from tests.servers.azurite import AzuriteServer
from tests.servers.immich import ImmichAccount
from tests.servers.s3 import S3Server
from tests.servers.samba import SambaServer

CANARY = {
    "s3_key": "CanaryS3KeyId+AKIA7q",
    "s3_secret": "CanaryS3Secret/x+Y=zz",
    "s3_url": "CanaryS3UrlPw+9k",
    "azure_sas": "CanaryAzureSas+sig/Q",
    "azure_url_sig": "CanaryAzureUrlSig+Z",
    "azure_key": "CanaryAzureAccountKey0/+9",
    "smb_password": "CanarySmbPass+w0rd",
    "smb_lonely": "CanarySmbNoUser+pw",
    "immich_key": "CanaryImmichApiKey+Q",
    "immich_url": "CanaryImmichUrlUser",
    "misspelt": "CanaryMisspeltAcessId",
    "db_password": "CanaryDbPassword+7",
    "db_user_pw": "CanaryDbUserPw+8",
}


def forms(secret: str) -> set[str]:
    """The ways a secret could show: as is, URL-encoded, base64 (alone or as Basic auth)."""
    shown = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        base64.b64encode(secret.encode()).decode(),
    }
    return {s for s in shown if len(s) >= 8}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the probe is closed


class Recorder:
    """Runs `picpipe` commands, keeps their output and samples every process's arguments."""

    def __init__(self, base: list[str], env: dict[str, str]) -> None:
        self.base = base
        self.env = env
        self.seen: list[str] = []

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).with_name("picpipe")
        process = subprocess.Popen(
            [str(exe), *self.base, "-v", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        out_parts: list[str] = []
        err_parts: list[str] = []
        while True:
            self.seen.append(_command_lines())
            try:
                out, err = process.communicate(timeout=0.2)
            except subprocess.TimeoutExpired:
                assert time.monotonic() < deadline, f"{args} did not finish"
                continue
            out_parts.append(out)
            err_parts.append(err)
            break
        result = subprocess.CompletedProcess(
            process.args, process.returncode, "".join(out_parts), "".join(err_parts)
        )
        self.seen += [result.stdout, result.stderr]
        return result


def _command_lines() -> str:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append(
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                )
            except OSError:
                continue  # gone meanwhile
    return "\n".join(lines)


def _catalog_dump(url: str) -> str:
    engine = create_engine(url)
    try:
        rows = []
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                rows += [repr(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{table}"'))]
        return "\n".join(rows)
    finally:
        engine.dispose()


def _files_under(*roots: Path) -> str:
    chunks = []
    for root in roots:
        for path in root.rglob("*"):
            # The config file is where the user put the secrets; everything else is output.
            if path.is_file() and not path.is_symlink() and path.name != "config.yaml":
                chunks.append(path.read_bytes().decode("latin-1"))
    return "\n".join(chunks)


@pytest.mark.slow
def test_no_secret_reaches_any_output(
    tmp_path: Path,
    pg_url: str,
    exiftool_available: None,
    samba: SambaServer,
    s3_server: S3Server,
    s3_bucket: str,
    azurite: AzuriteServer,
    azure_container: str,
    immich_account: ImmichAccount,
) -> None:
    closed = _closed_port()
    home, library, phone = tmp_path / "home", tmp_path / "library", tmp_path / "phone"
    make_sample_set(phone, count=4)
    database_url = f"{pg_url}?password={quote(CANARY['db_password'], safe='')}"
    s3_url = f"http://canary:{quote(CANARY['s3_url'], safe='')}@127.0.0.1:{closed}"
    working = {
        "share": samba.destination(path=f"canary-{tmp_path.name}"),
        "s3": s3_server.destination_config(s3_bucket),
        "azure": {
            "kind": "azure",
            "connection_string": azurite.connection_string,
            "container": azure_container,
        },
        "immich": immich_account.config(),
        "nas": {"kind": "filesystem", "path": str(tmp_path / "nas"), "fsync": False},
    }
    failing = {
        "s3-down": {
            "kind": "s3",
            "bucket": "b",
            "endpoint_url": s3_url,
            "access_key_id": CANARY["s3_key"],
            "secret_access_key": CANARY["s3_secret"],
        },
        "azure-down": {
            "kind": "azure",
            "container": "canary",
            "account_url": f"http://127.0.0.1:{closed}/acct?sv=2022-11-02&sig="
            + quote(CANARY["azure_url_sig"], safe=""),
            "sas_token": CANARY["azure_sas"],
        },
        "azure-key-down": {
            "kind": "azure",
            "container": "canary",
            "account_url": f"http://127.0.0.1:{closed}/acct",
            "account_name": "acct",
            "account_key": base64.b64encode(CANARY["azure_key"].encode()).decode(),
        },
        "smb-down": {
            "kind": "smb",
            "server": "127.0.0.1",
            "port": closed,
            "share": "s",
            "username": "u",
            "password": CANARY["smb_password"],
        },
        "immich-down": {
            "kind": "immich",
            "url": f"http://{CANARY['immich_url']}@127.0.0.1:{closed}",
            "api_key": CANARY["immich_key"],
        },
    }
    (tmp_path / "nas").mkdir()
    config = home / "config.yaml"
    home.mkdir()
    settings = {
        "database_url": database_url,
        "replicas": {"retries": 0, "backoff_base": 0.01},
        "sources": {"phone": {"kind": "folder", "path": str(phone)}},
        "destinations": {**working, **failing},
    }
    config.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
    recorder = Recorder(["--home", str(home), "--library", str(library)], env)
    assert recorder.run("import").returncode in (0, 3)  # the sample set has an empty file
    tested = recorder.run("test-connection", "--json")
    assert tested.returncode == 11, tested.stderr  # the unreachable ones
    synced = recorder.run("sync")
    assert synced.returncode != 0, synced.stderr
    for command in (
        ["sync", "--verify"],
        ["status"],
        ["sessions"],
        ["replicas"],
        ["stats"],
        ["sources"],
        ["config"],
        ["config", "--json"],
        ["verify"],
        ["sidecars"],
        ["thumbs", "--all"],
    ):
        recorder.run(*command)
    assert "verified" in recorder.run("replicas").stdout

    # Misconfigured entries: a password without a user name, a misspelt secret key.
    misconfigured = {
        **settings,
        "destinations": {
            "lonely": {
                "kind": "smb",
                "server": "h",
                "share": "s",
                "password": CANARY["smb_lonely"],
            },
            "typo": {"kind": "s3", "bucket": "b", "acess_id": CANARY["misspelt"]},
        },
    }
    config.write_text(yaml.safe_dump(misconfigured))
    for command in (["sync"], ["test-connection"], ["config"], ["sync", "--destination", "typo"]):
        result = recorder.run(*command)
        assert result.returncode in (0, 4), result.stderr
    # A catalog that cannot be reached, with a password in the user-info and in the query.
    broken_db = (
        f"postgresql+psycopg://postgres:{quote(CANARY['db_user_pw'], safe='')}@127.0.0.1:{closed}/x"
        f"?password={quote(CANARY['db_password'], safe='')}"
    )
    config.write_text(yaml.safe_dump({"database_url": broken_db}))
    assert recorder.run("status").returncode == 5

    everything = "\n".join(
        [*recorder.seen, _catalog_dump(pg_url), _files_under(home, library, tmp_path / "nas")]
    )
    secrets = {
        **CANARY,
        "samba": samba.password,
        "s3": s3_server.secret_access_key,
        "immich": immich_account.api_key,
    }
    leaked = {
        name: form
        for name, secret in secrets.items()
        for form in forms(secret)
        if form in everything
    }
    assert not leaked
