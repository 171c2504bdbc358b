"""verify re-hashes originals and finds what is missing, corrupt, untracked or unfinished."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from picpipe.library.layout import TEMP_PREFIX
from picpipe.library.verify import verify_library
from picpipe.samples import make_jpeg
from tests.conftest import LibraryFixture


def test_verify_finds_every_kind_of_problem(library: LibraryFixture, tmp_path: Path) -> None:
    for i in range(4):
        make_jpeg(tmp_path / "s" / f"{i}.jpg", taken=datetime(2021, 3, 1 + i), seed=i)
    library.import_folder(tmp_path / "s")
    assert verify_library(library.catalog, library.root).clean

    originals = sorted((library.root / "originals").rglob("*.jpg"))
    originals[0].write_bytes(originals[0].read_bytes()[:-1] + b"\x00")
    originals[1].unlink()
    stray = originals[2].with_name("f" * 64 + ".jpg")
    stray.write_bytes(b"who put this here")
    (originals[3].parent / f"{TEMP_PREFIX}123").write_bytes(b"half")

    report = verify_library(library.catalog, library.root)

    assert (report.checked, report.ok) == (4, 2)
    assert [m["path"] for m in report.missing] == [str(originals[1].relative_to(library.root))]
    assert report.corrupt[0]["problem"] == "content does not match its sha256"
    assert report.untracked == [str(stray.relative_to(library.root))]
    assert len(report.temp_files) == 1
    assert report.problems == 4
    steps = report.as_dict()["next"]  # each problem names the command that puts it right
    assert [step.split(":")[0] for step in steps] == [
        "picpipe repair",
        "picpipe import",
        "picpipe import PATH",
    ]

    sampled = verify_library(library.catalog, library.root, sample_percent=0)
    assert (sampled.checked, sampled.untracked) == (0, [])
