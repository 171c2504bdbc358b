"""Generate realistic sample photos (gradients and noise, with EXIF) for demos, tests, benches.

Only the demo command, the test suite and the benchmarks use this; the pipeline never does.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from pathlib import Path

EXIF_IFD = 0x8769
GPS_IFD = 0x8825


@dataclass(frozen=True, slots=True)
class SamplePhoto:
    """What a generated photo claims about itself (for checking the import)."""

    path: Path
    taken: datetime | None
    offset: str | None
    make: str | None
    model: str | None
    gps: tuple[float, float] | None


def make_jpeg(
    path: Path,
    *,
    size: tuple[int, int] = (640, 480),
    taken: datetime | None = None,
    offset: str | None = None,
    make: str | None = "Canon",
    model: str | None = "Canon EOS 5D",
    gps: tuple[float, float] | None = None,
    seed: int = 0,
    noise: float = 32.0,
    quality: int = 90,
) -> SamplePhoto:
    """Write a JPEG with a gradient-and-noise picture and the given EXIF facts."""
    width, height = size
    rng = random.Random(seed)
    red = Image.linear_gradient("L").resize((width, height)).rotate(rng.choice((0, 90, 180)))
    green = Image.effect_noise((width, height), noise)
    blue = Image.radial_gradient("L").resize((width, height))
    picture = Image.merge("RGB", (red.resize((width, height)), green, blue))
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    exif[0x0112] = 1
    if taken is not None:
        sub = exif.get_ifd(EXIF_IFD)
        sub[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
        sub[0x9004] = taken.strftime("%Y:%m:%d %H:%M:%S")  # CreateDate
        if offset:
            sub[0x9011] = offset  # OffsetTimeOriginal
    if gps is not None:
        lat, lon = gps
        gps_ifd = exif.get_ifd(GPS_IFD)
        gps_ifd[1] = "N" if lat >= 0 else "S"
        gps_ifd[2] = _dms(abs(lat))
        gps_ifd[3] = "E" if lon >= 0 else "W"
        gps_ifd[4] = _dms(abs(lon))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, "JPEG", quality=quality, exif=exif.tobytes())
    return SamplePhoto(path, taken, offset, make, model, gps)


def make_sample_set(folder: Path, count: int = 24, *, seed: int = 1) -> list[SamplePhoto]:
    """A small phone-dump-like folder: dated photos over a year, a few duplicates and oddities."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, 9, 0, 0)
    photos: list[SamplePhoto] = []
    cameras = [("Apple", "iPhone 13"), ("samsung", "SM-G991B"), ("Canon", "Canon EOS R6")]
    for i in range(count):
        taken = start + timedelta(days=rng.randrange(365), minutes=rng.randrange(600))
        make, model = cameras[i % len(cameras)]
        name = f"IMG_{taken:%Y%m%d_%H%M%S}_{i:03d}.jpg"
        gps = (round(rng.uniform(-60, 60), 5), round(rng.uniform(-150, 150), 5)) if i % 2 else None
        photos.append(
            make_jpeg(
                folder / f"{taken:%Y-%m}" / name,
                size=(800, 600),
                taken=taken,
                offset="+01:00" if i % 3 == 0 else None,
                make=make,
                model=model,
                gps=gps,
                seed=i,
            )
        )
    copy = folder / "copies" / photos[0].path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(photos[0].path.read_bytes())
    (folder / ".DS_Store").write_bytes(b"\0" * 16)
    (folder / "download.jpg.part").write_bytes(b"\xff\xd8partial")
    (folder / "empty.jpg").write_bytes(b"")
    os.utime(folder / "empty.jpg", (0, 0))
    return photos


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes_full = (value - degrees) * 60
    minutes = int(minutes_full)
    seconds = round((minutes_full - minutes) * 60, 4)
    return (float(degrees), float(minutes), seconds)
