"""The import stage that makes a motion photo's video an asset of its own, paired with the still.

It runs after the still is placed (byte-exact: the video stays in it too), only for a new
still whose metadata stage found a video (`pipeline/motion.py`). A still already catalogued
is a duplicate before this stage, so rescans and second imports never extract again. The
video is copied out to a temp file beside the still, hashed, read by exiftool for its own
date, placed under ``originals/`` like any asset and handed to the recorder with the still
(`ImportTask.embedded`), which inserts both in one batch. Both carry the Live Photo id
``motion:<still sha256>``, so pairing (`pipeline/pairs.py`) links them as a Live Photo.
Anything that goes wrong is one problem on the still, which imports regardless.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import TYPE_CHECKING

from picpipe.catalog.queries import find_asset
from picpipe.errors import ExifToolFailed, ItemError
from picpipe.hashing import sha256_file
from picpipe.library.atomic import temp_path
from picpipe.library.layout import original_path, run_temp_tag
from picpipe.library.writer import place_original
from picpipe.pipeline.metadata import media_info
from picpipe.pipeline.motion import extract_video, video_name
from picpipe.pipeline.task import EmbeddedAsset

if TYPE_CHECKING:
    from picpipe.pipeline.stages import StageContext
    from picpipe.pipeline.task import ImportTask

log = logging.getLogger(__name__)


def motion_stage(ctx: StageContext, task: ImportTask) -> None:
    """Extract, place and pair the video of a new motion photo (see the module's doc)."""
    video, path, still = task.motion, task.entry.local_path, task.info
    if video is None or path is None or still is None or task.sha256 is None:
        return
    assert task.library_path is not None
    name = video_name(task.entry.name)
    tag = f"{run_temp_tag(ctx.run_id)}{task.sha256[:16]}-{secrets.token_hex(4)}.mp4"
    temp = temp_path(ctx.library_root / task.library_path, tag)
    try:
        extract_video(path, video, temp)
        sha256, size = sha256_file(temp)
        with ctx.catalog.session() as db:
            known = find_asset(db, sha256) is not None
        live_id = still.live_photo_id or f"motion:{task.sha256}"
        if not known:
            tags = ctx.exiftool.get().read(os.fspath(temp), extra_args=("-struct",))
            info = media_info(
                tags,
                name=name,
                mtime_ns=task.entry.mtime_ns,
                default_tz=ctx.default_tz,
                zones=ctx.zones,
                source=task.source_name,
            )
            rel = original_path(sha256, info.taken.local.date(), info.extension)
            place_original(
                ctx.library_root,
                rel,
                lambda: open(temp, "rb"),  # noqa: SIM115 - the writer closes it
                sha256=sha256,
                size=size,
                display=f"{task.display} (motion video)",
                fsync=ctx.fsync,
                run_id=ctx.run_id,
            )
            info.live_photo_id = live_id
            task.embedded.append(EmbeddedAsset(sha256, size, info, rel, name, task.sha256))
        still.live_photo_id = live_id
        log.debug("%s: motion video %s (%s form)", task.display, sha256[:12], video.form)
    except (OSError, ExifToolFailed, ItemError) as exc:
        detail = exc.message if isinstance(exc, ExifToolFailed | ItemError) else str(exc)
        problem = f"motion photo: video not extracted ({detail}); the still is imported"
        still.problems.append(problem)
        task.problems.append(problem)
    finally:
        temp.unlink(missing_ok=True)
