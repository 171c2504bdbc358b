"""Thumbnails: every real file gets three right ones or a reason; formats, bombs, crashes, CLI.

Knowingly different from the MANIFEST, and why:
- video/fixture2.3gp has 12:11 pixels (its sample aspect ratio); picpipe shows it as 192x144,
  the MANIFEST's display size (176x144) counts stored pixels.
- Files the MANIFEST calls broken but libvips still decodes (truncated JPEGs, entropy errors)
  get thumbnails of what decodes (grey where data is missing), as the issue allows.
"""

from __future__ import annotations

import csv
import faulthandler
import io
import json
import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import av
import numpy
import pillow_heif
import pytest
from PIL import Image, ImageCms, ImageOps
from sqlalchemy import select, update
from typer.testing import CliRunner

from picpipe.catalog.db import Catalog, open_catalog
from picpipe.catalog.models import Asset
from picpipe.cli.app import app
from picpipe.config import Settings, load_settings
from picpipe.jobs.workflows import import_sources
from picpipe.pipeline.decoders import fit
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.pipeline.heifbox import primary_is_transformed
from picpipe.pipeline.stages import IMPORT_STAGES
from picpipe.pipeline.thumbrun import CRASHED, ThumbRun, ThumbSummary
from picpipe.pipeline.thumbs import BOXES, ThumbJob, ThumbResult, make_thumbnails, thumb_file
from picpipe.samples import make_jpeg
from picpipe.sources.folder import FolderSource
from tests.conftest import MEDIA, LibraryFixture

SIZES = ("tiny", "small", "medium")
SAR_STRETCHED = {"video/fixture2.3gp": (192, 144)}
EXPECTED_FAILURES = {
    "broken/NegativeArraySizeException.HeifReader.processBoxes.heif": "corrupt or truncated",
    "broken/c3018ebe53d0046eecb58858ca869a99.jpg": "corrupt or truncated",
    "broken/issue_1833_poc.jpg": "corrupt or truncated",
    "broken/test-issue-608-truncated-exif-tiff-dos.jpg": "corrupt or truncated",
    "raw/Canon-R6-pruned.CR3": "RAW pixel data is missing",
    "raw/CanonRaw.cr2": "LibRaw cannot open",
    "raw/IMG_1361.dng": "RAW pixel data is missing",
    "raw/Nikon.nef": "RAW pixel data is missing",
    "raw/Panasonic.rw2": "RAW pixel data is missing",
    "raw/fixture-sony-zv-e10.arw": "LibRaw cannot open",
}


def manifest() -> list[dict[str, str]]:
    if not (MEDIA / "MANIFEST.csv").is_file():
        return []
    with open(MEDIA / "MANIFEST.csv", newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["file_type"] != "EMPTY"]


ROWS = manifest()
BY_PATH = {row["path"]: row for row in ROWS}


def settings_for(root: Path, **thumbs: object) -> Settings:
    return load_settings(
        home=root / "home",
        library=root / "library",
        thumbs=thumbs,
        **{"import": {"fsync": False, "default_timezone": "UTC"}},
    )


def thumb_run(settings: Settings, catalog: Catalog, **kwargs: object) -> ThumbRun:
    return ThumbRun(
        catalog,
        home=settings.home_root,
        library_root=settings.library_root,
        options=settings.thumbs,
        **kwargs,  # type: ignore[arg-type]
    )


def assets(catalog: Catalog) -> dict[str, Asset]:
    with catalog.session() as db:
        return {a.sha256: a for a in db.scalars(select(Asset))}


def pixels(path: Path, size: tuple[int, int] | None = None) -> numpy.ndarray:
    with Image.open(path) as image:
        image = image.convert("RGB")
        return numpy.asarray(image.resize(size) if size else image, dtype=numpy.float64)


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """The reference's own colour management (Pillow's lcms), to compare with ours."""
    image = image.convert("RGB")
    if not icc:
        return image
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"))


def difference(a: numpy.ndarray, b: numpy.ndarray) -> float:
    return float(numpy.abs(a - b).mean())


# -- the real media ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(
    tmp_path_factory: pytest.TempPathFactory, exiftool_available: None
) -> Iterator[tuple[Settings, ThumbSummary, dict[str, Asset]]]:
    if not ROWS:
        pytest.skip(f"../shared/testdata/media is absent ({MEDIA}); real-media thumbnails skipped")
    settings = settings_for(tmp_path_factory.mktemp("thumbmedia"))
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    try:
        import_sources(
            settings,
            catalog,
            [FolderSource("media", MEDIA, settings.scan)],
            tools=tools,
            workers=2,
            stages=IMPORT_STAGES,
        )
        summary = thumb_run(settings, catalog, workers=2).run("missing")
        yield settings, summary, assets(catalog)
    finally:
        tools.close()
        catalog.close()


def small_of(media, path: str) -> Path:  # type: ignore[no-untyped-def]
    settings, _, _ = media
    return thumb_file(settings.home_root, BY_PATH[path]["sha256"], "small", "jpeg")


@pytest.mark.integration
@pytest.mark.parametrize("row", ROWS, ids=[r["path"] for r in ROWS])
def test_every_file_has_three_right_thumbnails_or_a_reason(media, row: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    settings, _, by_sha = media
    asset = by_sha[row["sha256"]]
    if row["path"] in EXPECTED_FAILURES:
        assert asset.thumbs_state == "failed"
        assert EXPECTED_FAILURES[row["path"]] in (asset.thumbs_error or "")
        return
    assert (asset.thumbs_state, asset.thumbs_error) == ("ok", None)
    display = SAR_STRETCHED.get(row["path"])
    if display is None and row["display_width"]:
        display = (int(row["display_width"]), int(row["display_height"]))
    found = {}
    for size in SIZES:
        with Image.open(thumb_file(settings.home_root, asset.sha256, size, "jpeg")) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
            assert "exif" not in image.info
            assert "icc_profile" not in image.info
            found[size] = image.size
    for size in SIZES:
        width, height = found[size]
        box = BOXES[size]
        assert (min(width, box[0]), min(height, box[1])) == (width, height), (size, found[size])
        reference = display or found["medium"]
        never_upscaled = (min(width, reference[0]), min(height, reference[1]))
        assert never_upscaled == (width, height)
        assert abs(width * reference[1] - height * reference[0]) <= (sum(reference) / 2) + 1, (
            f"{size} {found[size]} keeps the aspect of {reference}"
        )
        if display is not None:
            assert found[size] == fit(display, box)


@pytest.mark.integration
def test_the_run_counts_every_asset(media) -> None:  # type: ignore[no-untyped-def]
    _, summary, by_sha = media
    assert summary.made + summary.failed == len(by_sha) == len({r["sha256"] for r in ROWS})
    assert summary.failed == len(EXPECTED_FAILURES)
    assert {f["reason"] for f in summary.failures} == {
        by_sha[BY_PATH[p]["sha256"]].thumbs_error for p in EXPECTED_FAILURES
    }


@pytest.mark.integration
@pytest.mark.parametrize("number", range(2, 9))
def test_every_exif_orientation_comes_out_upright(media, number: int) -> None:  # type: ignore[no-untyped-def]
    landscape_1 = pixels(small_of(media, "orientation/landscape_1.jpg"))
    ours = pixels(small_of(media, f"orientation/landscape_{number}.jpg"))
    assert ours.shape == landscape_1.shape
    # The digit drawn on each photo differs (~14); mirrored is ~45, upside down ~60.
    assert difference(ours, landscape_1) < 25


@pytest.mark.integration
@pytest.mark.parametrize(
    "name", [f"landscape_{n}.jpg" for n in range(1, 9)] + [f"portrait_{n}.jpg" for n in range(5, 9)]
)
def test_orientation_matches_an_independent_reference(media, name: str) -> None:  # type: ignore[no-untyped-def]
    ours = small_of(media, f"orientation/{name}")
    with Image.open(MEDIA / "orientation" / name) as original:
        icc = original.info.get("icc_profile")
        reference = to_srgb(ImageOps.exif_transpose(original), icc)
    size = size_of(ours)
    assert difference(pixels(ours), numpy.asarray(reference.resize(size), dtype=float)) < 6


def _heif_reference(path: Path, exif_rotation: bool) -> Image.Image:
    heif = pillow_heif.open_heif(path, convert_hdr_to_8bit=True)
    picture = heif[heif.primary_index]
    image = Image.frombytes("RGB", picture.size, bytes(picture.data), "raw", "RGB", picture.stride)
    image = to_srgb(image, picture.info.get("icc_profile"))
    return image.transpose(Image.Transpose.ROTATE_270) if exif_rotation else image


@pytest.mark.integration
@pytest.mark.parametrize(
    ("path", "exif_rotation"),
    [("iphone/iphone_7.heic", True), ("iphone/iphone_15_pro.heic", False)],
)
def test_heic_is_upright_with_exif_or_with_its_heif_rotation(media, path, exif_rotation) -> None:  # type: ignore[no-untyped-def]
    # iphone_7: EXIF 6 and no irot (upright only after EXIF); iphone_15_pro: irot 270 and
    # EXIF 6 (libheif's irot alone makes it upright; applying EXIF too would turn it again).
    assert primary_is_transformed(MEDIA / path) is not exif_rotation
    ours = small_of(media, path)
    size = size_of(ours)
    assert size[0] < size[1], "portrait"
    reference = _heif_reference(MEDIA / path, exif_rotation).resize(size)
    wrong = reference.transpose(Image.Transpose.ROTATE_180)
    right = difference(pixels(ours), numpy.asarray(reference, dtype=float))
    assert right < 6
    assert difference(pixels(ours), numpy.asarray(wrong, dtype=float)) > right + 10


@pytest.mark.integration
@pytest.mark.parametrize("path", ["video/quicktime-hvc1.mov", "video/with-gps.mov"])
def test_rotated_videos_are_upright(media, path: str) -> None:  # type: ignore[no-untyped-def]
    _, _, by_sha = media
    asset = by_sha[BY_PATH[path]["sha256"]]
    assert asset.video_codec in {"hevc", "h264"}
    assert (asset.duration or 0) > 0
    with av.open(str(MEDIA / path)) as container:
        first = next(container.decode(video=0)).to_image()
    clockwise = first.transpose(Image.Transpose.ROTATE_270)  # display matrix: 90° clockwise
    ours = small_of(media, path)
    size = size_of(ours)
    right = difference(pixels(ours), numpy.asarray(clockwise.resize(size), dtype=float))
    wrong = clockwise.transpose(Image.Transpose.ROTATE_180).resize(size)
    assert right < 12
    assert difference(pixels(ours), numpy.asarray(wrong, dtype=float)) > right + 10


@pytest.mark.integration
def test_metadata_json_holds_the_key_facts(media) -> None:  # type: ignore[no-untyped-def]
    settings, _, by_sha = media
    row = BY_PATH["iphone/train.mov"]
    target = settings.home_root / "thumbs" / "metadata" / row["sha256"][:2]
    data = json.loads((target / f"{row['sha256']}.json").read_text(encoding="utf-8"))
    asset = by_sha[row["sha256"]]
    assert data["sha256"] == asset.sha256
    assert (data["kind"], data["make"], data["model"]) == ("video", asset.make, asset.model)
    assert data["taken_local"] == asset.taken_local.isoformat()
    assert data["live_photo_id"] == "E905E6C6-C747-4805-942F-9904A0281F02"
    assert (data["display_width"], data["display_height"]) == (1440, 1080)
    assert data["thumbs"] == {
        "format": "jpeg",
        "tiny": [150, 112],
        "small": [500, 375],
        "medium": [1440, 1080],
    }
    assert data["library_path"] == asset.library_path
    assert data["duration"] == pytest.approx(1.233, abs=0.01)
    failed = BY_PATH["raw/Nikon.nef"]["sha256"]
    data = json.loads(
        (settings.home_root / "thumbs/metadata" / failed[:2] / f"{failed}.json").read_text()
    )
    assert data["thumbs"] is None
    assert "pixel data is missing" in data["thumbs_error"]


# -- generated files ---------------------------------------------------------------------------


def _import(library: LibraryFixture, folder: Path) -> None:
    summary = library.import_folder(folder)
    assert summary.failed == 0


def _run(library: LibraryFixture, selection: str = "missing", **thumbs: object) -> ThumbSummary:
    options = library.settings.thumbs.model_copy(update=thumbs)
    run = ThumbRun(
        library.catalog,
        home=library.settings.home_root,
        library_root=library.settings.library_root,
        options=options,
        workers=2,
    )
    return run.run(selection)  # type: ignore[arg-type]


def _sha_of(library: LibraryFixture, name: str) -> str:
    with library.catalog.session() as db:
        return db.scalars(select(Asset.sha256).where(Asset.original_name == name)).one()


def test_a_bomb_gets_a_reason_and_the_next_asset_its_thumbnails(
    library: LibraryFixture, tmp_path: Path
) -> None:
    make_jpeg(tmp_path / "in" / "big.jpg", size=(800, 600), taken=datetime(2020, 1, 1))
    make_jpeg(tmp_path / "in" / "small.jpg", size=(300, 200), taken=datetime(2020, 1, 2))
    _import(library, tmp_path / "in")

    summary = _run(library, max_pixels=100_000)

    assert (summary.made, summary.failed) == (1, 1)
    big, small = _sha_of(library, "big.jpg"), _sha_of(library, "small.jpg")
    states = assets(library.catalog)
    assert states[big].thumbs_state == "failed"
    assert states[big].thumbs_error == (
        "image has 0.48 megapixels, over the 0.1-megapixel limit (thumbs.max_pixels)"
    )
    assert states[small].thumbs_state == "ok"
    assert not thumb_file(library.settings.home_root, big, "tiny", "jpeg").exists()
    assert size_of(thumb_file(library.settings.home_root, small, "medium", "jpeg")) == (300, 200)
    assert summary.failures == [
        {"sha256": big, "path": states[big].library_path, "reason": states[big].thumbs_error}
    ]


def test_webp_thumbnails(sqlite_library: LibraryFixture, tmp_path: Path) -> None:
    make_jpeg(tmp_path / "in" / "a.jpg", size=(2400, 1600), taken=datetime(2020, 1, 1))
    _import(sqlite_library, tmp_path / "in")

    assert _run(sqlite_library, format="webp").made == 1

    sha = _sha_of(sqlite_library, "a.jpg")
    home = sqlite_library.settings.home_root
    expected = {"tiny": (150, 100), "small": (500, 333), "medium": (1620, 1080)}
    for size, dims in expected.items():
        assert not thumb_file(home, sha, size, "jpeg").exists()
        with Image.open(thumb_file(home, sha, size, "webp")) as image:
            assert (image.format, image.size) == ("WEBP", dims)
    meta = json.loads((home / "thumbs/metadata" / sha[:2] / f"{sha}.json").read_text())
    assert meta["thumbs"]["format"] == "webp"


def test_colour_is_converted_to_srgb_whatever_came_in(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    p3 = _display_p3_profile()
    Image.new("RGB", (640, 480), (200, 100, 50)).save(folder / "p3.jpg", icc_profile=p3)
    Image.new("CMYK", (640, 480), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    Image.new("L", (640, 480), 128).save(folder / "grey.jpg")
    Image.new("RGBA", (640, 480), (255, 0, 0, 0)).save(folder / "alpha.png")
    frames = [Image.new("RGB", (320, 240), colour) for colour in ("red", "blue")]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    _import(sqlite_library, folder)

    assert _run(sqlite_library).made == 5

    home = sqlite_library.settings.home_root

    def colour(name: str) -> numpy.ndarray:
        path = thumb_file(home, _sha_of(sqlite_library, name), "small", "jpeg")
        with Image.open(path) as image:
            assert (image.mode, "icc_profile" in image.info) == ("RGB", False)
        return pixels(path).mean(axis=(0, 1))

    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(p3)), ImageCms.createProfile("sRGB"), "RGB", "RGB"
    )
    srgb = ImageCms.applyTransform(Image.new("RGB", (1, 1), (200, 100, 50)), transform)
    assert numpy.abs(colour("p3.jpg") - numpy.array(srgb.getpixel((0, 0)))).max() < 4
    assert numpy.abs(colour("cmyk.jpg") - numpy.array([237, 28, 36])).max() < 40
    assert numpy.abs(colour("grey.jpg") - 128).max() < 3
    assert numpy.abs(colour("alpha.png") - 255).max() < 3, "transparent becomes white"
    assert numpy.abs(colour("anim.gif") - numpy.array([255, 0, 0])).max() < 10, "first frame"


def _display_p3_profile() -> bytes:
    if ROWS:
        heif = pillow_heif.open_heif(MEDIA / "iphone" / "iphone_15_pro.heic")
        return bytes(heif[heif.primary_index].info["icc_profile"])
    pytest.skip("needs a Display P3 profile from ../shared/testdata/media")


def test_missing_only_remakes_what_is_gone(sqlite_library: LibraryFixture, tmp_path: Path) -> None:
    for i in range(3):
        make_jpeg(tmp_path / "in" / f"{i}.jpg", taken=datetime(2020, 1, 1 + i), seed=i)
    _import(sqlite_library, tmp_path / "in")
    assert _run(sqlite_library).made == 3

    again = _run(sqlite_library)
    assert (again.made, again.failed, again.skipped) == (0, 0, 3)

    sha = _sha_of(sqlite_library, "1.jpg")
    thumb_file(sqlite_library.settings.home_root, sha, "small", "jpeg").unlink()
    repaired = _run(sqlite_library)
    assert (repaired.made, repaired.skipped) == (1, 2)
    assert thumb_file(sqlite_library.settings.home_root, sha, "small", "jpeg").exists()
    assert _run(sqlite_library, "all").made == 3


def test_a_missing_original_is_a_reason_and_tried_again(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    make_jpeg(tmp_path / "in" / "a.jpg", taken=datetime(2020, 1, 1))
    _import(sqlite_library, tmp_path / "in")
    (asset,) = assets(sqlite_library.catalog).values()
    original = sqlite_library.root / asset.library_path
    kept = original.read_bytes()
    original.unlink()

    summary = _run(sqlite_library)

    reason = "original is missing from the library; run picpipe verify"
    assert (summary.failed, summary.failures[0]["reason"]) == (1, reason)
    (asset,) = assets(sqlite_library.catalog).values()
    assert (asset.thumbs_state, asset.thumbs_error) == ("pending", reason), "not the file's fault"
    original.write_bytes(kept)
    assert _run(sqlite_library).made == 1
    (asset,) = assets(sqlite_library.catalog).values()
    assert (asset.thumbs_state, asset.thumbs_error) == ("ok", None)


def test_thumbnails_that_cannot_be_written_stay_pending(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    make_jpeg(tmp_path / "in" / "a.jpg", taken=datetime(2020, 1, 1))
    _import(sqlite_library, tmp_path / "in")
    blocker = sqlite_library.settings.home_root / "thumbs" / "small"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"not a folder")

    summary = _run(sqlite_library)

    assert summary.failed == 1
    assert summary.failures[0]["reason"].startswith("could not write thumbnails: ")
    (asset,) = assets(sqlite_library.catalog).values()
    assert asset.thumbs_state == "pending"
    assert not list(blocker.parent.rglob(".picpipe-tmp-*")), "no temp file left behind"
    blocker.unlink()
    assert _run(sqlite_library).made == 1


CRASH_MARK = b"picpipe-test: crash this worker"


def crashing_worker(job: ThumbJob) -> ThumbResult:
    """Like the real worker, but dies (SIGSEGV) on originals that carry CRASH_MARK."""
    if CRASH_MARK in Path(job.original).read_bytes():
        faulthandler.disable()  # pytest's, inherited through fork: no dump on stderr
        os.kill(os.getpid(), signal.SIGSEGV)
    return make_thumbnails(job)


def test_a_crashing_decoder_fails_its_asset_and_the_run_goes_on(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    for i in range(6):
        make_jpeg(tmp_path / "in" / f"{i}.jpg", taken=datetime(2020, 1, 1 + i), seed=i)
    crash = tmp_path / "in" / "3.jpg"
    crash.write_bytes(crash.read_bytes() + CRASH_MARK)  # after EOI: still a valid JPEG
    _import(sqlite_library, tmp_path / "in")
    settings = sqlite_library.settings

    summary = thumb_run(settings, sqlite_library.catalog, workers=2, work=crashing_worker).run()

    assert (summary.made, summary.failed) == (5, 1)
    assert summary.failures[0]["sha256"] == _sha_of(sqlite_library, "3.jpg")
    states = assets(sqlite_library.catalog)
    assert states[_sha_of(sqlite_library, "3.jpg")].thumbs_error == CRASHED
    assert sum(a.thumbs_state == "ok" for a in states.values()) == 5


def test_fit_never_upscales_and_fits_the_box() -> None:
    assert fit((640, 480), (1920, 1080)) == (640, 480)
    assert fit((4000, 3000), (1920, 1080)) == (1440, 1080)
    assert fit((3000, 4000), (500, 500)) == (375, 500)
    assert fit((10000, 10), (150, 150)) == (150, 1)


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exiftool_available: None):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PICPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PICPIPE_LIBRARY", str(tmp_path / "library"))
    monkeypatch.setenv("PICPIPE_IMPORT__FSYNC", "false")
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_thumbs_json_then_a_rerun_makes_nothing(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        make_jpeg(tmp_path / "in" / f"{i}.jpg", taken=datetime(2021, 5, 1 + i), seed=i)
    (tmp_path / "in" / "header-only.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    code, out, _ = cli("import", str(tmp_path / "in"), "--no-thumbs", "--json")
    assert (code, json.loads(out)["new"]) == (0, 4)
    assert "thumbs" not in json.loads(out)

    code, out, err = cli("thumbs", "--json")
    result = json.loads(out)
    assert code == 3, err
    assert (result["made"], result["failed"], result["skipped"]) == (3, 1, 0)
    (failure,) = result["failures"]
    assert failure["path"].startswith("originals/")
    assert failure["path"].endswith(".jpg")
    assert failure["reason"].startswith("corrupt or truncated file")
    assert isinstance(result["seconds"], float)

    code, out, _ = cli("thumbs", "--missing", "--json")
    assert code == 0
    again = json.loads(out)
    assert isinstance(again.pop("run_id"), int)
    assert again | {"seconds": 0} == {
        "kind": "thumbs",
        "status": "completed",
        "counts": {"made": 0, "failed": 0, "skipped": 4},
        "bytes": 0,
        "warnings": [],
        "made": 0,
        "failed": 0,
        "skipped": 4,
        "seconds": 0,
        "failures": [],
    }

    code, out, _ = cli("thumbs", "--all", "--json")
    assert (code, json.loads(out)["made"], json.loads(out)["failed"]) == (3, 3, 1)

    code, _, err = cli("thumbs", "--all", "--missing")
    assert code == 2


def test_import_makes_thumbnails_and_reports_them(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_jpeg(tmp_path / "in" / "a.jpg", taken=datetime(2021, 5, 1))
    (tmp_path / "in" / "header-only.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")

    code, out, _ = cli("import", str(tmp_path / "in"), "--json")

    summary = json.loads(out)
    assert code == 0, "a failed thumbnail does not fail the import"
    assert (summary["new"], summary["failed"]) == (2, 0)
    assert summary["thumbs"] == {"made": 1, "failed": 1}
    code, out, _ = cli("thumbs", "--json")
    assert (code, json.loads(out)["made"], json.loads(out)["skipped"]) == (0, 0, 2)


def test_human_thumbs_output(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_jpeg(tmp_path / "in" / "a.jpg", taken=datetime(2021, 5, 1))
    code, out, _ = cli("import", str(tmp_path / "in"))
    assert code == 0
    assert "thumbnails: 1 made, 0 failed" in out
    catalog = open_catalog(load_settings(home=tmp_path / "home").catalog_url)
    with catalog.session() as db, db.begin():
        db.execute(update(Asset).values(thumbs_state="pending"))
    catalog.close()

    code, out, _ = cli("thumbs")

    assert code == 0
    assert "thumbnails: 1 made, 0 failed, 0 skipped in" in out
