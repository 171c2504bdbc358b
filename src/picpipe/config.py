"""The one typed settings object.

Precedence, lowest first: the YAML config file, ``PICPIPE_*`` environment variables, CLI flags.
The config file is ``--config`` / ``PICPIPE_CONFIG`` or ``$PICPIPE_HOME/config.yaml``. Secrets are
``SecretStr`` or masked by name when shown (`masked_dump`).
"""

from __future__ import annotations

import os
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from picpipe.errors import ConfigError
from picpipe.redact import mask_url as mask_url  # re-exported: the catalog and CLI use it
from picpipe.redact import mask_values, validation_problems

PHOTO_EXTENSIONS = [
    "jpg",
    "jpeg",
    "jpe",
    "png",
    "gif",
    "tif",
    "tiff",
    "webp",
    "heic",
    "heif",
    "hif",
    "avif",
    "bmp",
    "jxl",
]
RAW_EXTENSIONS = [
    "dng",
    "cr2",
    "cr3",
    "crw",
    "nef",
    "nrw",
    "arw",
    "srf",
    "sr2",
    "raf",
    "orf",
    "rw2",
    "pef",
    "srw",
    "x3f",
    "3fr",
    "iiq",
    "erf",
    "mos",
    "mrw",
    "kdc",
    "rwl",
]
VIDEO_EXTENSIONS = [
    "mov",
    "mp4",
    "m4v",
    "3gp",
    "3g2",
    "mkv",
    "avi",
    "mts",
    "m2ts",
    "mpg",
    "mpeg",
    "wmv",
    "webm",
]
IGNORED_NAMES = [
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    "@eaDir",
    "#recycle",
    "#snapshot",
    ".thumbnails",
]
IGNORED_PATTERNS = ["._*", "*.part", "*.tmp", "*.crdownload", ".~*", "~$*", ".picpipe-tmp-*"]
# Files that travel with media but are not imported on their own: sidecars (read with their
# photo), Apple's edit lists, GoPro and DJI proxies. Skipped by name, never sniffed.
SIDECAR_EXTENSIONS = ["xmp", "aae", "thm", "lrv", "lrf"]


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class StrictOptions(BaseModel):
    """Base of every options model: an unknown key is an error, never silently ignored.

    A typo such as ``serve.tokn`` must not leave a server open without its token.
    """

    model_config = ConfigDict(extra="forbid")


def default_home() -> Path:
    """``$XDG_DATA_HOME/picpipe``, i.e. ``~/.local/share/picpipe`` on most systems."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "picpipe"


class ScanOptions(StrictOptions):
    """What a folder scan picks up and what it skips."""

    photo_extensions: list[str] = Field(default_factory=lambda: list(PHOTO_EXTENSIONS))
    raw_extensions: list[str] = Field(default_factory=lambda: list(RAW_EXTENSIONS))
    video_extensions: list[str] = Field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    ignored_names: list[str] = Field(default_factory=lambda: list(IGNORED_NAMES))
    ignored_patterns: list[str] = Field(default_factory=lambda: list(IGNORED_PATTERNS))
    sidecar_extensions: list[str] = Field(default_factory=lambda: list(SIDECAR_EXTENSIONS))
    skip_hidden: bool = True
    follow_symlinks: bool = True

    @field_validator("photo_extensions", "raw_extensions", "video_extensions", "sidecar_extensions")
    @classmethod
    def _lower_no_dot(cls, value: list[str]) -> list[str]:
        return [ext.lower().lstrip(".") for ext in value]

    def media_extensions(self) -> frozenset[str]:
        return frozenset(self.photo_extensions + self.raw_extensions + self.video_extensions)


class ImportOptions(StrictOptions):
    """How originals are placed in the library."""

    fsync: bool = True
    default_timezone: str | None = None  # IANA name for UTC-only dates; None = this machine's


class ThumbOptions(StrictOptions):
    """Thumbnails kept in the local root: tiny (150), small (500), medium (1920x1080)."""

    format: Literal["jpeg", "webp"] = "jpeg"
    quality: int = Field(default=85, ge=1, le=100)
    max_pixels: int = Field(default=250_000_000, ge=1)  # refuse larger images (bombs)
    workers: int | None = Field(default=None, ge=1)  # processes; None = one per core
    on_import: bool = True  # make them as part of every import


class SidecarOptions(StrictOptions):
    """XMP sidecars written beside each original and read back when someone edits them."""

    write: bool = True
    # Which name picpipe writes: <sha256>.xmp (sha), <sha256>.<ext>.xmp (sha.ext), or both.
    naming: Literal["sha", "sha.ext", "both"] = "sha"


ViewLayout = Literal["by-date", "by-album", "by-source", "by-camera"]
VIEW_LAYOUTS: tuple[ViewLayout, ...] = ("by-date", "by-album", "by-source", "by-camera")


class ViewOptions(StrictOptions):
    """Browsable trees of links to the originals (``picpipe views``, after every import)."""

    path: Path | None = None  # default: the library's views/ folder
    layouts: list[ViewLayout] = Field(default_factory=list)  # none: no views are built
    link: Literal["symlink", "hardlink"] = "symlink"
    # Per layout, the link's path inside the layout's folder (see README "Views").
    templates: dict[ViewLayout, str] = Field(default_factory=dict)


class ImmichConsumerOptions(StrictOptions):
    """An Immich server that reads the library as a read-only external library."""

    url: str
    api_key: SecretStr  # an admin's key: external libraries are admin-only
    import_path: str  # the library as Immich's container sees it, e.g. /mnt/picpipe
    name: str = "picpipe"  # the external library's name in Immich
    verify_tls: bool = True


class ConsumerOptions(StrictOptions):
    """Tools that read the library in place and that picpipe keeps informed."""

    immich: ImmichConsumerOptions | None = None


class ReplicaOptions(StrictOptions):
    """How ``picpipe sync`` replicates the library to the configured destinations."""

    target: int = Field(default=2, ge=1)  # verified copies per asset, the library's own included
    concurrency: int = Field(default=4, ge=1, le=64)  # uploads at once per destination
    retries: int = Field(default=5, ge=0, le=50)  # attempts after the first, on transient errors
    backoff_base: float = Field(default=0.5, ge=0)  # seconds; doubles per attempt, with jitter
    backoff_max: float = Field(default=30.0, ge=0)  # seconds; the longest wait between attempts
    # Catalog snapshots kept at each file destination (picpipe-catalog/), one after every
    # sync, for `picpipe restore-catalog`; 0: no snapshots.
    catalog_snapshots: int = Field(default=3, ge=0, le=1000)


class ServeOptions(StrictOptions):
    """``picpipe serve``: where it listens and who may read."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    token: SecretStr | None = None  # full access (header or login cookie); none = no auth
    read_token: SecretStr | None = None  # read-only: kiosk, dashboard, wall frames
    insecure: bool = False  # allow a non-loopback bind without a token (trusted LAN only)
    # Host names (besides loopback, this machine's names and IP literals) that requests may
    # name in their Host header: the name a reverse proxy or DNS entry gives this server.
    # "*.example.org" matches sub-domains; "*" turns the check off (not recommended).
    allowed_hosts: list[str] = Field(default_factory=list)
    # "photos-sync": `/files/list` answers as photos-sync did, a bare JSON list of
    # "<cache_key>.jpg" names (Synology album members; others by sha256).
    compat: Literal["picpipe", "photos-sync"] = "picpipe"

    @field_validator("token", "read_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # `PICPIPE_SERVE__TOKEN=` or `token: ""` must mean "no token", never a token that
        # the bind check counts as configured while the guard ignores it.
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        return raw.strip() if isinstance(raw, str) else value

    @field_validator("allowed_hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [host.strip().lower().rstrip(".") for host in value if host.strip()]


class RunOptions(StrictOptions):
    """``runs:`` how runs hold their leases in the catalog (shared by every machine on it)."""

    # A run renews its lease every third of this; another run may recover it once it lapsed.
    lease_seconds: float = Field(default=60.0, ge=1.0, le=3600.0)
    # This machine's name in run owners (default: the host name); give containers that share
    # a host name distinct ones, or a dead run on one could look alive to the other.
    host: str = Field(default_factory=socket.gethostname, min_length=1, max_length=200)
    # SQLite: how long a write waits for another process's transaction before a catalog error.
    busy_timeout: float = Field(default=30.0, ge=0.1, le=600.0)


class ScheduleOptions(StrictOptions):
    """``schedule:`` the service's recurring work: ``every 15m`` / ``every 6h`` or a five-field
    cron expression (``0 3 * * 0``); null turns a job off. sync = replicate to every
    destination, reconcile = rescan every source, scrub = verify the library."""

    sync: str | None = "every 1h"
    reconcile: str | None = "every 6h"
    scrub: str | None = None
    # A sync soon after every ingest that added photos, besides the schedule's.
    sync_after_import: bool = True

    @field_validator("sync", "reconcile", "scrub")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from picpipe.service.schedule import parse_schedule  # croniter loads only here

        parse_schedule(value)  # ValueError names the problem
        return value.strip()


class CacheOptions(StrictOptions):
    """The full-resolution cache under ``$PICPIPE_HOME/cache/full`` (least recently used)."""

    max_size_gb: float = Field(default=10.0, gt=0)
    ttl_days: float = Field(default=30.0, gt=0)


class MqttOptions(StrictOptions):
    """``mqtt:`` Home Assistant over MQTT (the service publishes; absent: no MQTT)."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    # The broker password is read from this environment variable only, never from the file.
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    discovery_prefix: str = Field(
        default="homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
    )
    topic_prefix: str = Field(default="picpipe", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    # single: one config topic per entity (every Home Assistant); device: one per device
    # (Home Assistant 2024.11 and newer).
    discovery: Literal["single", "device"] = "single"

    def password(self) -> str | None:
        """The broker password from ``password_env`` (None when unset or empty)."""
        if not self.password_env:
            return None
        return os.environ.get(self.password_env) or None


class Settings(BaseSettings):
    """Effective configuration of one picpipe process."""

    model_config = SettingsConfigDict(
        env_prefix="PICPIPE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    home: Path = Field(default_factory=default_home)
    library: Path | None = None
    config: Path | None = None
    database_url: SecretStr | None = None
    workers: int = Field(default_factory=lambda: min(8, (os.cpu_count() or 2) * 2), ge=1, le=64)
    log_level: str = "INFO"
    scan: ScanOptions = Field(default_factory=ScanOptions)
    imports: ImportOptions = Field(
        default_factory=ImportOptions,
        validation_alias=AliasChoices("import", "imports", "picpipe_import"),
        serialization_alias="import",
    )
    thumbs: ThumbOptions = Field(default_factory=ThumbOptions)
    sidecars: SidecarOptions = Field(default_factory=SidecarOptions)
    views: ViewOptions = Field(default_factory=ViewOptions)
    consumers: ConsumerOptions = Field(default_factory=ConsumerOptions)
    replicas: ReplicaOptions = Field(default_factory=ReplicaOptions)
    serve: ServeOptions = Field(default_factory=ServeOptions)
    cache: CacheOptions = Field(default_factory=CacheOptions)
    runs: RunOptions = Field(default_factory=RunOptions)
    mqtt: MqttOptions | None = None
    schedule: ScheduleOptions = Field(default_factory=ScheduleOptions)
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)
    destinations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # IANA zone per camera (model or "make model") for dates without an offset or GPS.
    cameras: dict[str, str] = Field(default_factory=dict)

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().upper() in LOG_LEVELS:
            return value.strip().upper()
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")

    @field_validator(
        "sources", "destinations", "cameras", "scan", "imports", "thumbs", "sidecars", "views",
        "consumers", "replicas", "serve", "cache", "runs", "schedule", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_section(cls, value: object) -> object:
        # `sources:` with every entry commented out (the template's style) reads as null.
        return {} if value is None else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    # -- derived locations ---------------------------------------------------------------

    @property
    def library_root(self) -> Path:
        return (self.library or self.home / "library").expanduser()

    @property
    def views_root(self) -> Path:
        return (self.views.path or self.library_root / "views").expanduser()

    @property
    def home_root(self) -> Path:
        return self.home.expanduser()

    @property
    def config_file(self) -> Path:
        return (self.config or self.home_root / "config.yaml").expanduser()

    @property
    def catalog_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.home_root / 'catalog.db'}"

    def __repr__(self) -> str:
        # Source and destination options may hold keys; never let a repr leak them.
        return f"Settings({self.masked_dump()!r})"

    __str__ = __repr__

    def masked_dump(self) -> dict[str, Any]:
        """The effective settings as plain data with every secret replaced by ``********``."""
        data = self.model_dump(mode="json", by_alias=True)
        data["database_url"] = mask_url(self.catalog_url)
        data["library"] = str(self.library_root)
        data["home"] = str(self.home_root)
        data["config"] = str(self.config_file)
        masked: dict[str, Any] = mask_values(data)
        masked["database_url"] = data["database_url"]  # already masked, and not a "secret" name
        return masked


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML config file named by the flags or environment (not by itself)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] | None = None

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._load().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._load())

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            path, required = _config_path_hint()
            self._data = read_config_file(path, required=required)
        return self._data


# The YAML source must know the file before the settings exist; flags hand it over here, with
# whether the file must exist (a file named by --config or PICPIPE_CONFIG must, except for init).
_path_hint: ContextVar[tuple[Path, bool] | None] = ContextVar("picpipe_config_path", default=None)


def _config_path_hint() -> tuple[Path, bool]:
    if (hinted := _path_hint.get()) is not None:
        return hinted
    if env := os.environ.get("PICPIPE_CONFIG"):
        return Path(env).expanduser(), True
    home = os.environ.get("PICPIPE_HOME")
    return (Path(home).expanduser() if home else default_home()) / "config.yaml", False


def read_config_file(path: Path, *, required: bool = False) -> dict[str, Any]:
    """Parse the YAML config; a missing file is an empty config (an error when ``required``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(
                detail=f"config file {path} does not exist (create it with `picpipe init`)"
            ) from None
        return {}
    except OSError as exc:
        raise ConfigError(detail=f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(detail=f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(detail=f"{path} must hold a mapping of settings")
    return data


def load_settings(
    *,
    config: Path | None = None,
    home: Path | None = None,
    config_may_be_missing: bool = False,
    check_entries: bool = True,
    **flags: Any,
) -> Settings:
    """Build the effective settings: YAML < environment < ``flags`` (None flags are ignored).

    ``check_entries`` validates every source and destination entry against its kind's options
    now, so a typo is found at start rather than at first use. ``config_may_be_missing`` is for
    ``init``, which creates the file that ``--config`` names.
    """
    overrides = {k: v for k, v in flags.items() if v is not None}
    if home is not None:
        overrides["home"] = home
    if config is not None:
        overrides["config"] = config
    hint: tuple[Path, bool] | None = None
    if config is not None:
        hint = (config.expanduser(), not config_may_be_missing)
    elif env := os.environ.get("PICPIPE_CONFIG"):
        hint = (Path(env).expanduser(), not config_may_be_missing)
    elif home is not None:
        hint = (home.expanduser() / "config.yaml", False)
    token = _path_hint.set(hint)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        # `from None`: pydantic's own text repeats the input values (secrets included), and
        # a traceback at DEBUG would print it.
        raise ConfigError(detail="; ".join(validation_problems(exc, model=Settings))) from None
    finally:
        _path_hint.reset(token)
    if check_entries:
        check_source_and_destination_entries(settings)
    return settings


def check_source_and_destination_entries(settings: Settings) -> None:
    """Every ``sources.*`` and ``destinations.*`` entry checked against its kind's options.

    All problems in one error, one ``key: problem`` part each. Imported here: the kinds'
    modules import this one.
    """
    from picpipe.destinations.base import destination_options
    from picpipe.sources.base import source_options

    problems: list[str] = []
    for name, raw in settings.sources.items():
        try:
            source_options(name, raw)
        except ConfigError as exc:
            problems.append(str(exc.fields.get("detail") or exc.message))
    for name, raw in settings.destinations.items():
        try:
            destination_options(name, raw)
        except ConfigError as exc:
            problems.append(str(exc.fields.get("detail") or exc.message))
    if problems:
        raise ConfigError(detail="; ".join(problems))
