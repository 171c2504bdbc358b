"""Thumbnails of newer formats: AVIF 8/10-bit, JPEG XL 8/16-bit, HDR HEIC, animated WebP.

The files are generated: Pillow writes 8-bit AVIF (with an EXIF orientation, to check
uprightness), imagecodecs' libavif 10-bit AVIF, libvips JPEG XL, pillow-heif a 10-bit HEIC
whose colour says BT.2020 + PQ with the SDR picture placed at 203 nits (BT.2408), so a right
tone map gives back about the SDR picture. Each gets three thumbnails: upright, sRGB without a
profile, and neither black nor washed out (mean within 15 levels of the SDR source).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# pillow-heif before pyvips, as in the decoders (two libheif builds must not mix).
import pillow_heif  # isort: skip
import imagecodecs
import numpy
import pytest
import pyvips
from PIL import Image
from sqlalchemy import select

from picpipe.catalog.models import Asset
from picpipe.pipeline.decoders import fit
from picpipe.pipeline.hdr import REFERENCE_WHITE_NITS
from picpipe.pipeline.thumbrun import ThumbRun
from picpipe.pipeline.thumbs import BOXES, thumb_file
from tests.conftest import LibraryFixture

W, H = 640, 480


def picture() -> numpy.ndarray:
    """A picture with a bright top-left corner: tells upright from turned."""
    yy, xx = numpy.mgrid[0:H, 0:W]
    rgb = numpy.stack([xx * 255 // W, yy * 255 // H, numpy.full_like(xx, 128)], -1)
    rgb[: H // 4, : W // 4] = 250
    return rgb.astype(numpy.uint8)


def pq(nits: numpy.ndarray) -> numpy.ndarray:
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 32, 3424 / 4096, 2413 / 128, 2392 / 128
    y = (nits / 10000.0) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def srgb_to_linear(rgb: numpy.ndarray) -> numpy.ndarray:
    c = rgb / 255.0
    return numpy.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


BT709_TO_2020 = numpy.array(
    [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]]
)


ORIENTATIONS = {
    "eight.avif": 6,
    "ten.avif": 1,
    "eight.jxl": 1,
    "sixteen.jxl": 1,
    "hdr.heic": 1,
    "anim.webp": 1,
}


def make_files(folder: Path) -> dict[str, int]:
    """The test files (written by a child process) and the EXIF orientation of each.

    libvips keeps worker threads once used; the thumbnail run forks its workers from this
    process, and a fork of a process whose libvips threads ran can deadlock in the child.
    """
    subprocess.run(
        [sys.executable, "-c", f"from tests.pipeline.test_formats import write_files; "
         f"write_files({str(folder)!r})"],
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=300,
    )  # fmt: skip
    return ORIENTATIONS


def write_files(target: str) -> None:
    """Write the test files into ``target`` (run in a child process, see `make_files`)."""
    folder = Path(target)
    folder.mkdir(parents=True)
    rgb = picture()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(folder / "eight.avif", quality=85, exif=exif.tobytes())
    ten = ((rgb.astype(numpy.uint32) * 1023 + 127) // 255).astype(numpy.uint16)
    (folder / "ten.avif").write_bytes(imagecodecs.avif_encode(ten, level=85, bitspersample=10))
    vips = pyvips.Image.new_from_memory(rgb.tobytes(), W, H, 3, "uchar")
    vips.copy(interpretation="srgb").jxlsave(str(folder / "eight.jxl"))
    wide = (rgb.astype(numpy.uint16) * 257).tobytes()
    pyvips.Image.new_from_memory(wide, W, H, 3, "ushort").copy(interpretation="rgb16").jxlsave(
        str(folder / "sixteen.jxl")
    )
    light = srgb_to_linear(rgb.astype(numpy.float64)) @ BT709_TO_2020.T * REFERENCE_WHITE_NITS
    code = (numpy.clip(pq(light), 0, 1) * 65535).round().astype("<u2")
    hdr = pillow_heif.from_bytes(mode="RGB;16", size=(W, H), data=code.tobytes())
    nclx = {"color_primaries": 9, "transfer_characteristics": 16, "matrix_coefficients": 9}
    hdr.save(folder / "hdr.heic", quality=95, nclx_profile=nclx | {"full_range_flag": 1})
    frames = [Image.fromarray(rgb), Image.new("RGB", (W, H), "blue")]
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:], duration=80)
    return {
        "eight.avif": 6,
        "ten.avif": 1,
        "eight.jxl": 1,
        "sixteen.jxl": 1,
        "hdr.heic": 1,
        "anim.webp": 1,
    }


def test_new_formats_get_three_upright_srgb_thumbnails(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    files = make_files(tmp_path / "in")
    summary = sqlite_library.import_folder(tmp_path / "in")
    assert (summary.new, summary.failed) == (len(files), 0)
    run = ThumbRun(
        sqlite_library.catalog,
        home=sqlite_library.settings.home_root,
        library_root=sqlite_library.settings.library_root,
        options=sqlite_library.settings.thumbs,
        workers=2,
    )
    result = run.run("missing")
    assert (result.made, result.failed) == (len(files), 0), result.failures
    source = picture().astype(numpy.float64)
    home = sqlite_library.settings.home_root
    with sqlite_library.catalog.session() as db:
        shas = {name: sha for name, sha in db.execute(select(Asset.original_name, Asset.sha256))}
    for name, orientation in files.items():
        turned = orientation == 6
        for size, box in BOXES.items():
            path = thumb_file(home, shas[name], size, "jpeg")  # type: ignore[arg-type]
            with Image.open(path) as thumb:
                assert "icc_profile" not in thumb.info, name
                assert thumb.mode == "RGB", name
                assert thumb.size == fit((H, W) if turned else (W, H), box), (name, size)
        # The small thumbnail turned back to stored orientation matches the source picture.
        with Image.open(thumb_file(home, shas[name], "small", "jpeg")) as thumb:  # type: ignore[arg-type]
            stored = thumb.rotate(-90, expand=True) if turned else thumb.copy()
        got = numpy.asarray(stored.convert("RGB").resize((W, H)), dtype=numpy.float64)
        assert abs(got.mean() - source.mean()) < 15, (name, got.mean(), source.mean())
        corner = got[: H // 8, : W // 8].mean()
        assert corner > 200, (name, "the bright corner is top left", corner)


def test_tone_map_keeps_sdr_levels_and_rolls_off_highlights() -> None:
    from picpipe.pipeline.hdr import tone_map

    nclx = {"color_primaries": 1, "transfer_characteristics": 16}
    nits = numpy.array([[[0.0] * 3, [REFERENCE_WHITE_NITS * 0.18] * 3, [203.0] * 3, [4000.0] * 3]])
    out = tone_map((pq(nits) * 65535).astype(numpy.uint16), nclx)
    black, grey, white, bright = out[0, :, 0]
    assert black == 0
    assert 115 <= grey <= 120, "18% grey is sRGB 118"
    assert 240 <= white < bright <= 255, "SDR white stays below the rolled-off highlight"
    hlg = tone_map(
        numpy.full((1, 1, 3), int(0.75 * 65535), numpy.uint16), {"transfer_characteristics": 18}
    )
    assert 200 < hlg[0, 0, 0] <= 255, "HLG reference white (75%) is near SDR white"


@pytest.mark.parametrize("name", ["heic/Canon.HIF"])
def test_a_pq_camera_heif_is_tone_mapped_not_truncated(name: str) -> None:
    from tests.conftest import MEDIA

    if not (MEDIA / name).is_file():
        pytest.skip(f"{MEDIA / name} is absent")
    heif = pillow_heif.open_heif(MEDIA / name, convert_hdr_to_8bit=False)
    image = heif[heif.primary_index]
    assert image.info["nclx_profile"]["transfer_characteristics"] == 16
    assert image.mode == "RGB;16"
