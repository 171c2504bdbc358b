"""Capture time: the best embedded date, its offset and origin; impossible values are missing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from picpipe.pipeline.dates import (
    choose_capture_time,
    date_from_filename,
    parse_offset,
    parse_stamp,
    plausible,
)

BERLIN_WINTER = timezone(timedelta(hours=1))
MTIME = int(datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC).timestamp() * 1e9)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021:04:10 11:43:59+01:00", (datetime(2021, 4, 10, 11, 43, 59), 60)),
        ("2019:04:24 22:24:00+02:00 DST", (datetime(2019, 4, 24, 22, 24), 120)),
        ("2022:04:24 08:35:46Z", (datetime(2022, 4, 24, 8, 35, 46), 0)),
        ("2008:05:30 15:56:01", (datetime(2008, 5, 30, 15, 56, 1), None)),
        ("2008:05:30 15:56:01.25-05:30", (datetime(2008, 5, 30, 15, 56, 1), -330)),
        ("0000:00:00 00:00:00", None),
        ("2010:13:40 10:00:00", None),
        ("    :  :     :  :  ", None),
        ("1700:01:01 00:00:00", None),
        (None, None),
    ],
)
def test_parse_stamp(value: object, expected: object) -> None:
    assert parse_stamp(value) == expected


def test_parse_offset() -> None:
    assert parse_offset("+05:30") == 330
    assert parse_offset("-0800") == -480
    assert parse_offset("Z") == 0
    assert parse_offset("+25:00") is None
    assert parse_offset("garbage") is None


def test_future_dates_are_implausible() -> None:
    now = datetime(2026, 1, 1)
    assert plausible(datetime(2026, 1, 1, 20), now)
    assert not plausible(datetime(2026, 1, 5), now)


def test_exif_date_with_offset_original() -> None:
    taken, problems = choose_capture_time(
        {
            "ExifIFD:DateTimeOriginal": "2021:07:10 20:39:25",
            "ExifIFD:OffsetTimeOriginal": "+01:00",
            "ExifIFD:OffsetTime": "+02:00",
        },
        name="x.jpg",
        mtime_ns=MTIME,
    )
    assert (taken.local, taken.offset_min, taken.source) == (
        datetime(2021, 7, 10, 20, 39, 25),
        60,
        "exif",
    )
    assert taken.utc == datetime(2021, 7, 10, 19, 39, 25)
    assert problems == []


def test_new_years_eve_stays_in_its_local_year() -> None:
    taken, _ = choose_capture_time(
        {"ExifIFD:DateTimeOriginal": "2022:12:31 23:30:00", "ExifIFD:OffsetTimeOriginal": "-05:00"},
        name="x.jpg",
        mtime_ns=MTIME,
    )
    assert taken.local.date().isoformat() == "2022-12-31"
    assert taken.utc is not None
    assert taken.utc.year == 2023


def test_all_zero_exif_date_falls_back_and_is_reported() -> None:
    taken, problems = choose_capture_time(
        {"ExifIFD:DateTimeOriginal": "0000:00:00 00:00:00"},
        name="IMG_20230405_123456.jpg",
        mtime_ns=MTIME,
    )
    assert (taken.local, taken.source, taken.offset_min) == (
        datetime(2023, 4, 5, 12, 34, 56),
        "filename",
        None,
    )
    assert problems
    assert "0000:00:00" in problems[0]


def test_video_keys_date_is_local_with_offset() -> None:
    taken, _ = choose_capture_time(
        {
            "Keys:CreationDate": "2019:07:24 11:25:40+03:00",
            "QuickTime:CreateDate": "2019:07:24 08:25:57",
        },
        name="x.mov",
        mtime_ns=MTIME,
    )
    assert (taken.local, taken.offset_min, taken.source) == (
        datetime(2019, 7, 24, 11, 25, 40),
        180,
        "quicktime",
    )


def test_quicktime_utc_only_is_converted_to_the_default_zone() -> None:
    taken, _ = choose_capture_time(
        {"QuickTime:CreateDate": "2022:12:31 23:30:00"},
        name="x.mp4",
        mtime_ns=MTIME,
        default_tz=BERLIN_WINTER,
    )
    assert (taken.local, taken.offset_min, taken.source) == (
        datetime(2023, 1, 1, 0, 30),
        60,
        "quicktime-utc",
    )
    assert taken.utc == datetime(2022, 12, 31, 23, 30)


def test_sidecar_date_beats_gps_and_filename() -> None:
    taken, _ = choose_capture_time(
        {"Composite:GPSDateTime": "2020:01:01 10:00:00Z"},
        name="IMG_20230405_123456.jpg",
        mtime_ns=MTIME,
        sidecar={"XMP-exif:DateTimeOriginal": "2015:06:07 08:09:10+02:00"},
    )
    assert (taken.local, taken.offset_min, taken.source) == (
        datetime(2015, 6, 7, 8, 9, 10),
        120,
        "sidecar",
    )


def test_gps_time_is_utc() -> None:
    taken, _ = choose_capture_time(
        {"Composite:GPSDateTime": "2020:01:01 10:00:00Z"},
        name="x.jpg",
        mtime_ns=MTIME,
        default_tz=UTC,
    )
    assert (taken.local, taken.offset_min, taken.source) == (datetime(2020, 1, 1, 10), 0, "gps")


def test_mtime_is_the_last_resort() -> None:
    taken, _ = choose_capture_time({}, name="holiday.jpg", mtime_ns=MTIME, default_tz=UTC)
    assert (taken.local, taken.offset_min, taken.source) == (
        datetime(2024, 2, 3, 4, 5, 6),
        0,
        "mtime",
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("IMG_20230405_123456.jpg", datetime(2023, 4, 5, 12, 34, 56)),
        ("PXL_20230405_123456789.jpg", datetime(2023, 4, 5, 12, 34, 56)),
        ("20230405_123456.mp4", datetime(2023, 4, 5, 12, 34, 56)),
        ("VID_20191231_235959.mp4", datetime(2019, 12, 31, 23, 59, 59)),
        ("Screenshot_2023-04-05-12-34-56.png", datetime(2023, 4, 5, 12, 34, 56)),
        ("IMG-20230405-WA0001.jpg", datetime(2023, 4, 5)),
        ("IMG_20231399_123456.jpg", None),
        ("DSC_1234.JPG", None),
        ("holiday.jpg", None),
    ],
)
def test_date_from_filename(name: str, expected: datetime | None) -> None:
    assert date_from_filename(name) == expected


def test_quicktime_location_date_is_gps_time() -> None:
    taken, _ = choose_capture_time(
        {
            "QuickTime:CreateDate": "0000:00:00 00:00:00",
            "Keys:LocationDate": "2020:05:06 07:08:09Z",
        },
        name="x.mov",
        mtime_ns=MTIME,
        default_tz=UTC,
    )
    assert (taken.local, taken.source, taken.offset_source) == (
        datetime(2020, 5, 6, 7, 8, 9),
        "gps",
        "default",
    )


def test_sidecar_date_beats_the_embedded_one() -> None:
    taken, _ = choose_capture_time(
        {"ExifIFD:DateTimeOriginal": "2021:01:01 10:00:00", "ExifIFD:OffsetTimeOriginal": "+01:00"},
        name="x.jpg",
        mtime_ns=MTIME,
        sidecar={"XMP-photoshop:DateCreated": "2019:02:03 04:05:06"},
    )
    assert (taken.local, taken.offset_min, taken.source) == (
        datetime(2019, 2, 3, 4, 5, 6),
        None,
        "sidecar",
    )


def test_place_zone_gives_the_offset_of_that_moment() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    for local, offset in ((datetime(2021, 3, 28, 1, 30), 60), (datetime(2021, 3, 28, 3, 30), 120)):
        taken, _ = choose_capture_time(
            {"ExifIFD:DateTimeOriginal": local.strftime("%Y:%m:%d %H:%M:%S")},
            name="x.jpg",
            mtime_ns=MTIME,
            place_zone=berlin,
            configured_zone=ZoneInfo("Asia/Tokyo"),
        )
        assert (taken.offset_min, taken.offset_source) == (offset, "gps-zone")
