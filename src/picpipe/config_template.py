"""The commented YAML that `picpipe init` writes and `picpipe config --template` prints."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from picpipe.config import (
    IGNORED_NAMES,
    IGNORED_PATTERNS,
    PHOTO_EXTENSIONS,
    RAW_EXTENSIONS,
    SIDECAR_EXTENSIONS,
    VIDEO_EXTENSIONS,
)

if TYPE_CHECKING:
    from pathlib import Path


def _flow(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' if not i[0].isalnum() else i for i in items) + "]"


# Example values of destination options that an entry needs (required, or one of a choice),
# where "..." or "null" would not load uncommented.
_EXAMPLES = {
    "url": "https://photos.example.org",
    "account_url": "https://ACCOUNT.blob.core.windows.net",
    "container": "photos",
    "bucket": "photos",
    "server": "nas.local",
    "share": "photos",
    "path": "/mnt/backup/photos",
    "api_key_env": "IMMICH_API_KEY",
}


def destination_kinds_block() -> str:
    """A commented example of every installed destination kind, from its Options model."""
    from picpipe.destinations.base import destination_kind, destination_kind_names

    lines: list[str] = []
    for kind in destination_kind_names():
        try:
            options = destination_kind(kind).Options
        except ImportError as exc:  # a broken plugin must not hide the rest of the template
            lines.append(f"#   (kind {kind} cannot be loaded: {exc})")
            continue
        lines.append(f"#   my-{kind}:")
        lines.append(f"#     kind: {kind}")
        common = ("kind", "layout", "concurrency")
        fields = [n for n in options.model_fields if n not in common] + ["layout", "concurrency"]
        for name in fields:
            field = options.model_fields[name]
            default = field.get_default(call_default_factory=True)
            # Uncommented, the example must load: "null" is "not set", "..." a placeholder.
            if field.is_required():
                shown = _EXAMPLES.get(name, "...")
            elif default is None and name in _EXAMPLES:
                shown = _EXAMPLES[name]
            else:
                shown = _scalar(default)
            note = f"  # {field.description}" if field.description else ""
            lines.append(f"#     {name}: {shown}{note}")
    return "\n".join(lines) + "\n"


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    return str(value)


def render_template() -> str:
    """Every setting with its default and a comment; secrets come from the environment."""
    return f"""\
# picpipe configuration. Precedence: this file < PICPIPE_* environment variables < CLI flags.
# Nested keys map to variables with a double underscore, e.g. PICPIPE_SCAN__SKIP_HIDDEN=false.

# Library root for originals (often a NAS mount). Default: $PICPIPE_HOME/library.
# library: /mnt/nas/photos

# Catalog database. Default: SQLite in $PICPIPE_HOME/catalog.db. For PostgreSQL prefer the
# PICPIPE_DATABASE_URL environment variable, so the password stays out of files.
# database_url: postgresql+psycopg://picpipe@db.example/picpipe

# Files processed in parallel (hashing, metadata, copying). Default: 2 x cores, at most 8.
# workers: 4

# Log level: DEBUG, INFO, WARNING, ERROR.
log_level: INFO

scan:
  # Extensions (case-insensitive) that count as media. Every other file is counted too: files
  # with another or no extension are recognised by their first bytes and imported when they
  # are media, else skipped with a reason (`picpipe sessions ID --skipped`).
  photo_extensions: {_flow(PHOTO_EXTENSIONS)}
  raw_extensions: {_flow(RAW_EXTENSIONS)}
  video_extensions: {_flow(VIDEO_EXTENSIONS)}
  # Sidecars and proxies: skipped (a sidecar is read with its photo), never sniffed.
  sidecar_extensions: {_flow(SIDECAR_EXTENSIONS)}
  # Names skipped anywhere in a tree (NAS litter, OS metadata).
  ignored_names: {_flow(IGNORED_NAMES)}
  # Glob patterns skipped: AppleDouble files and the temp names of downloaders and copiers.
  ignored_patterns: {_flow(IGNORED_PATTERNS)}
  # Skip folders, and files without a media extension, whose name starts with a dot.
  skip_hidden: true
  # Follow symbolic links to files and folders (loops are detected and reported).
  follow_symlinks: true

import:
  # fsync each original and its folder before it counts as imported (turn off only for tests).
  fsync: true
  # Zone for dates stored only in UTC (e.g. Android videos); default: this machine's zone.
  # default_timezone: Europe/Berlin

thumbs:
  # Thumbnails in three sizes under $PICPIPE_HOME/thumbs: jpeg (default) or webp.
  format: jpeg
  quality: 85
  # Images with more pixels than this are not decoded (decompression bombs).
  max_pixels: 250000000
  # Processes making thumbnails; default one per core.
  # workers: 2
  # Make thumbnails during every import (otherwise: picpipe thumbs --missing).
  on_import: true

sidecars:
  # Write an XMP sidecar (<sha256>.xmp) beside each original; edits made in digiKam and
  # other tools are read back, never overwritten.
  write: true
  # The name it gets: sha (<sha256>.xmp, PhotoPrism, digiKam "compatible with commercial
  # programs"), sha.ext (<sha256>.<ext>.xmp: darktable, Immich, digiKam's default) or both.
  naming: sha

views:
  # Folders of links to the originals with names people recognise (Damselfly, file
  # browsers), rebuilt by `picpipe views` and after every import; none by default.
  # path: /srv/library/views           # default: the library's views/ folder
  layouts: []                          # by-date, by-album, by-source, by-camera
  link: symlink                        # or hardlink (same file system as the library)
  # templates: {{by-date: "{{year}}/{{month}}/{{day}}/{{name}}"}}

consumers:
  # Immich reading the library as a read-only external library: picpipe creates it, sets
  # its import path and exclusions, and asks for a scan after each import that added photos.
  # immich: {{url: http://immich:2283, api_key: ..., import_path: /mnt/picpipe}}

# Named sources. `picpipe import` with no arguments imports all of them. A source with
# `move: true` is an inbox: `picpipe import --move` deletes its files once they are stored.
sources:
#   phone:   {{kind: folder, path: /srv/phone-dump}}
#   icloud:  {{kind: folder, path: /srv/icloudpd}}
#   inbox:   {{kind: folder, path: /srv/inbox, move: true}}   # deletes files once stored
#   scans:   {{kind: folder, path: /srv/scans, timezone: Europe/Berlin}}  # zone for its dates
#   # Index only: catalog, thumbnails and provenance, no original in the library (full size
#   # is fetched from the source on demand); `picpipe watch` polls it every poll_seconds.
#   kitchen: {{kind: folder, path: /mnt/nas/kitchen, mode: index, poll_seconds: 60}}
#   cards:   {{kind: removable, mount_roots: [/media, /run/media], safe_replicas: 2}}  # `watch`
#   immich:  {{kind: immich, url: "http://immich:2283", api_key_env: IMMICH_API_KEY}}
#   kitchen: {{kind: synology, url: "http://nas:5000", username: frame, password_env: SYNO_PW}}

# Time zone of camera clocks, for dates without an offset in photos without GPS.
cameras:
#   "Canon EOS 5D": Europe/Berlin

replicas:
  # Verified copies each asset should have, the library's own included (`picpipe replicas`
  # lists the assets below it).
  target: 2
  # Uploads at once per destination (a destination's own `concurrency` overrides it).
  concurrency: 4
  # Attempts after the first on transient errors (timeouts, resets, 429, 5xx), waiting
  # backoff_base * 2^n seconds (with jitter), at most backoff_max.
  retries: 5
  backoff_base: 0.5
  backoff_max: 30.0
  # Catalog snapshots kept at each file destination (picpipe-catalog/), one written after
  # every sync, for `picpipe restore-catalog`; 0 turns them off.
  catalog_snapshots: 3

serve:
  # `picpipe serve` listens here. Binding anything but loopback needs a token of at least
  # 16 characters (or insecure). See SECURITY.md.
  host: 127.0.0.1
  port: 8080
  # Full-access and read-only (kiosk, dashboard) tokens; prefer PICPIPE_SERVE__TOKEN and
  # PICPIPE_SERVE__READ_TOKEN so they stay out of files (`openssl rand -hex 32`).
  # An empty value means no token.
  # token: ...
  # read_token: ...
  # Serve a non-loopback address without a strong token (trusted LAN only; --insecure-open).
  insecure: false
  # Host names requests may use besides loopback, this machine's names and IP addresses
  # (the name a reverse proxy or DNS gives this server); "*.example.org" for sub-domains.
  allowed_hosts: []
  # Set to photos-sync for photos-sync's bare /files/list of cache-key names.
  compat: picpipe

cache:
  # Full-resolution copies fetched from replicas or converted for browsers, kept in
  # $PICPIPE_HOME/cache/full up to this size and age (least recently used goes first).
  max_size_gb: 10.0
  ttl_days: 30.0

# Home Assistant over MQTT: the service (`picpipe start`) publishes its status, progress,
# library and replica figures, per-card "safe to format" and buttons under MQTT discovery.
# Uncomment to turn it on; the password comes only from the environment variable named.
mqtt:
  # host: 127.0.0.1
  # port: 1883
  # username: picpipe
  # password_env: PICPIPE_MQTT_PASSWORD
  # discovery_prefix: homeassistant
  # topic_prefix: picpipe
  # Discovery as one config topic per entity (single; every Home Assistant) or one payload
  # for the whole device (device; Home Assistant 2024.11 or newer).
  # discovery: single

runs:
  # Every run (import, sync, thumbs, sidecars) holds a lease in the catalog, renewed every
  # third of this many seconds; a run whose lease lapsed is recovered by the next one (a dead
  # run on this machine is recovered at once). Machines sharing one catalog see each other's.
  lease_seconds: 60.0
  # This machine's name in run owners (default: its host name); containers that share a host
  # name need distinct ones.
  # host: nas-1
  # Seconds a SQLite write waits for another process before it is a catalog error (exit 5).
  busy_timeout: 30.0

schedule:
  # The jobs of `picpipe start`: "every 15m" / "every 1h30m" (from the service's start) or a
  # five-field cron expression in local time ("0 3 * * 0": Sundays 03:00); null turns one off.
  # "sync" replicates to every destination, "reconcile" rescans every source, "scrub"
  # re-hashes the library's originals (as `picpipe verify`).
  sync: every 1h
  reconcile: every 6h
  scrub: null
  # Also sync soon after every import that added photos (a new photo is copied in seconds).
  sync_after_import: true

# Named destinations (replicas): `picpipe sync` keeps a verified copy of every asset in each.
# For a secret prefer `<secret>_env: VARIABLE` or `<secret>_file: /path` to the value.
destinations:
{destination_kinds_block()}"""


def write_private_file(path: Path, text: str) -> bool:
    """Create ``path`` with ``text``, readable by its owner only (0600: it may hold secrets).

    False when the file already exists (it is left alone).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return True
