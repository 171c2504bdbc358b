"""The pages in real headless Chromium against the real app served by uvicorn on loopback.

Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright (never ``playwright install``).
Every page is checked for JavaScript errors and failed requests; each test saves screenshots
under the pytest temp folder and copies them to ``bench/out/screens/`` (git-ignored).
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, update

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Asset, ImportSession
from picpipe.catalog.queries import utcnow
from picpipe.config import Settings
from picpipe.pipeline.thumbrun import ThumbRun
from picpipe.samples import make_jpeg, make_sample_set
from picpipe.web.app import create_app
from tests.conftest import MEDIA, LibraryFixture, missing, open_library, running_session
from tests.web.conftest import WebSite, clean_picpipe_env, with_serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENS = Path(__file__).resolve().parents[2] / "bench" / "out" / "screens"
TIMEOUT_MS = 15_000
# Element callbacks run in Playwright's own script world; strings given to wait_for_function
# would be eval'd in the page, which the pages' Content-Security-Policy rightly forbids.
# Lazy images below the fold are not fetched: only those on screen must have arrived.
COMPLETE = """(images) => images
    .filter((i) => i.getBoundingClientRect().top < window.innerHeight)
    .map((i) => i.complete && i.naturalWidth > 0)"""


# -- the server ------------------------------------------------------------------------------


class LiveServer:
    """``create_app(settings)`` under uvicorn in a thread, on a socket bound before it starts."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(settings),
            log_level="warning",
            ws="none",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, args=([self.sock],), daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


@pytest.fixture(scope="module")
def server(web_site: WebSite, browser: Any) -> Iterator[LiveServer]:
    # Needs the browser so that it stops first: the server's forked conversion workers hold
    # copies of every descriptor, Playwright's driver pipes included, until they exit.
    with LiveServer(web_site.settings) as live:
        yield live


@pytest.fixture
def serve(browser: Any) -> Iterator[Callable[[Settings], LiveServer]]:
    """Start a server for other settings; stopped after the test's pages are closed (tests
    ask for this fixture before ``open_page``), so no page sees its server go away."""
    with ExitStack() as stack:
        yield lambda settings: stack.enter_context(LiveServer(settings))


# -- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is not installed (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Problems:
    """JavaScript errors and failed requests seen by one page."""

    errors: list[str] = field(default_factory=list)
    closing: bool = False

    def watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text}")

    def _failed(self, request: Any) -> None:
        # Leaving a page aborts its open event stream: that is not a failure.
        if request.url.endswith("/api/events") and "ERR_ABORTED" in (request.failure or ""):
            return
        self.errors.append(f"request failed: {request.url} {request.failure}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {response.url}")


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screens")


@pytest.fixture
def open_page(browser: Any, screens: Path) -> Iterator[Callable[..., tuple[Any, Problems]]]:
    """A factory of fresh pages (own context: no shared cookies); closed after the test,
    which then fails if any page saw a JavaScript error or a failed request."""
    contexts: list[Any] = []
    watched: list[Problems] = []

    def make(viewport: tuple[int, int] = (1280, 900)) -> tuple[Any, Problems]:
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        problems = Problems()
        problems.watch(page)
        watched.append(problems)
        return page, problems

    yield make
    for context in contexts:
        context.close()
    errors = [e for p in watched for e in p.errors]
    assert errors == [], "\n".join(errors)


def screenshot(page: Any, screens: Path, name: str) -> Path:
    path = screens / f"{name}.png"
    page.screenshot(path=str(path))
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENS / path.name)
    return path


def wait_until(check: Callable[[], bool], timeout: float = TIMEOUT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def kind_counts(settings: Settings) -> dict[str, int]:
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            kinds = list(db.scalars(select(Asset.kind)))
    finally:
        catalog.close()
    return {kind: kinds.count(kind) for kind in set(kinds)}


def settled(page: Any) -> None:
    """Wait until the gallery has not fetched a page for half a second."""
    last, since = None, time.monotonic()
    while time.monotonic() - since < 0.5:
        pages = page.locator("#gallery").get_attribute("data-pages")
        if pages != last:
            last, since = pages, time.monotonic()
        time.sleep(0.05)


# -- dashboard -------------------------------------------------------------------------------


def test_dashboard_shows_totals_sessions_and_failures(
    server: LiveServer, web_site: WebSite, open_page: Any, screens: Path
) -> None:
    page, _ = open_page()
    page.goto(f"{server.url}/dashboard")
    page.wait_for_selector("#live-state[data-state='live']")
    kinds = kind_counts(web_site.settings)
    cards = page.locator("#totals .card")
    for label, kind in (("photos", "photo"), ("videos", "video")):
        value = cards.filter(has_text=label).locator(".card-value").inner_text()
        assert value == str(kinds.get(kind, 0))
    failed = page.locator("#failures table tbody tr")
    assert failed.count() == 1
    assert "empty.jpg" in failed.inner_text()
    assert "file is empty" in failed.inner_text()
    assert page.locator("#failure-count").inner_text() == "1"
    assert "completed with failures" in page.locator("#sessions").inner_text()
    under = page.locator("#under-replicated").inner_text()
    assert f"{sum(kinds.values())} assets have fewer than 2 verified copies" in under
    assert "Idle" in page.locator("#running").inner_text()
    screenshot(page, screens, "dashboard")


def test_dashboard_follows_an_import_as_it_runs(
    sqlite_library: LibraryFixture, tmp_path: Path, serve: Any, open_page: Any, screens: Path
) -> None:
    make_sample_set(tmp_path / "phone", count=6)
    sqlite_library.run(sqlite_library.folder(tmp_path / "phone", "phone"), workers=2)
    catalog = sqlite_library.catalog
    live = serve(sqlite_library.settings)
    page, _ = open_page()
    page.goto(f"{live.url}/dashboard")
    page.wait_for_selector("#live-state[data-state='live']")
    assert "Idle" in page.locator("#running").inner_text()

    # Another process (the CLI) starts an import and writes its counts as it goes.
    with catalog.session() as db, db.begin():
        run = running_session(db, kind="import", device="card EOS_DIGITAL")
        run.seen, run.new, run.duplicate = 400, 150, 10
        run_id = run.id
    running = page.locator(f"#running article[data-session='{run_id}']")
    running.wait_for()
    assert "160 of 400 files" in running.inner_text()
    assert "card EOS_DIGITAL" in running.inner_text()
    with catalog.session() as db, db.begin():
        db.execute(
            update(ImportSession).where(ImportSession.id == run_id).values(new=300, failed=2)
        )
    expect(running).to_contain_text("312 of 400 files", timeout=TIMEOUT_MS)
    progress = running.locator("progress").get_attribute("value")
    assert progress is not None
    assert abs(float(progress) - 0.78) < 0.001
    screenshot(page, screens, "dashboard-running")

    with catalog.session() as db, db.begin():
        db.execute(
            update(ImportSession)
            .where(ImportSession.id == run_id)
            .values(status="completed_with_failures", ended_at=utcnow())
        )
    expect(page.locator("#running")).to_contain_text("Idle", timeout=TIMEOUT_MS)
    assert f"#{run_id}" in page.locator("#running").inner_text()


def test_dashboard_polls_when_events_do_not_get_through(server: LiveServer, open_page: Any) -> None:
    page, problems = open_page()
    # A proxy that does not pass event streams answers with an error page.
    page.route("**/api/events", lambda route: route.fulfill(status=502, body="Bad Gateway"))
    page.goto(f"{server.url}/dashboard")
    page.wait_for_selector("#live-state[data-state='polling']")
    expect(page.locator("#live-state")).to_contain_text("updated", timeout=TIMEOUT_MS)
    assert "photos" in page.locator("#totals").inner_text()
    expected = [e for e in problems.errors if "/api/events" in e or "502" in e]
    assert expected
    problems.errors.clear()  # the proxy's 502 was the point


# -- gallery ---------------------------------------------------------------------------------


@dataclass
class Gallery:
    """A library of 240 photos over 71 days (3-4 a day), with thumbnails."""

    settings: Settings
    names: dict[str, str]  # sha256 → original name
    total: int
    days: int


@pytest.fixture(scope="module")
def gallery_site(tmp_path_factory: pytest.TempPathFactory, exiftool_available: None) -> Gallery:
    root = tmp_path_factory.mktemp("gallery")
    folder = root / "in" / "x-t5"
    times = [datetime(2024, 6, 1, 9) + timedelta(hours=7 * i) for i in range(240)]
    for i, taken in enumerate(times):
        make_jpeg(
            folder / f"DSCF{i:04d}.JPG",
            size=(320, 240) if i % 4 else (240, 320),
            taken=taken,
            make="FUJIFILM",
            model="X-T5",
            seed=i,
            quality=80,
        )
    with clean_picpipe_env(), open_library(root) as lib:
        lib.run(lib.folder(folder, "x-t5"), workers=2)
        ThumbRun(
            lib.catalog,
            home=lib.settings.home_root,
            library_root=lib.settings.library_root,
            options=lib.settings.thumbs,
            workers=2,
        ).run()
        with lib.catalog.session() as db:
            names = {
                sha: name for sha, name in db.execute(select(Asset.sha256, Asset.original_name))
            }
        return Gallery(lib.settings, names, len(names), len({t.date() for t in times}))


def test_gallery_scrolls_page_by_page_and_opens_the_viewer(
    gallery_site: Gallery, serve: Any, open_page: Any, screens: Path
) -> None:
    live = serve(gallery_site.settings)
    page, _ = open_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{live.url}/gallery?page_size=40")
    gallery = page.locator("#gallery")
    page.wait_for_selector("#gallery[data-loaded]")
    settled(page)  # pages load until the screen (and a margin below it) is full
    loaded = int(gallery.get_attribute("data-loaded") or 0)
    assert 40 <= loaded < gallery_site.total
    assert loaded % 40 == 0
    tiles_before = page.locator(".tile").count()
    assert 0 < tiles_before <= loaded
    # Every image has its size up front, so nothing moves as thumbnails arrive.
    first_img = page.locator(".tile img").first
    assert first_img.get_attribute("width")
    assert first_img.get_attribute("height")
    assert first_img.get_attribute("loading") == "lazy"
    wait_until(lambda: all(page.locator(".tile img").evaluate_all(COMPLETE)))
    screenshot(page, screens, "gallery")

    for _ in range(40):  # scroll to the end: every page fetched once
        page.mouse.wheel(0, 3000)
        if page.locator("#gallery-end").is_visible():
            break
        page.wait_for_timeout(200)
    page.locator("#gallery-end").wait_for()
    assert gallery.get_attribute("data-loaded") == str(gallery_site.total)
    pages = [u for u in requests if "/api/assets?" in u]
    assert len(pages) == -(-gallery_site.total // 40)
    assert len(set(pages)) == len(pages)
    assert page.locator(".tile").count() > tiles_before
    days = page.locator(".day h2").all_inner_texts()
    assert len(days) == len(set(days)), "one heading per day"
    assert len(days) == gallery_site.days

    page.mouse.wheel(0, -100_000)
    expect(page.locator(".day").first).to_be_in_viewport(timeout=TIMEOUT_MS)
    sha = (page.locator(".tile").nth(1).get_attribute("href") or "").removeprefix("#")
    name = gallery_site.names[sha]
    requests.clear()
    page.locator(f".tile[href='#{sha}']").click()
    viewer = page.locator("#viewer")
    expect(page.locator("#viewer-title")).to_have_text(name, timeout=TIMEOUT_MS)
    page.wait_for_selector("#viewer[data-shown='full']")
    image_urls = [u for u in requests if f"/api/assets/{sha}/" in u]
    medium = [i for i, u in enumerate(image_urls) if u.endswith("/medium")]
    full = [i for i, u in enumerate(image_urls) if u.endswith("/full")]
    assert medium
    assert full
    assert medium[0] < full[0], "medium first, then full"
    assert (page.locator("#viewer-image").get_attribute("src") or "").endswith("/full")
    expect(viewer).to_contain_text("Provenance", timeout=TIMEOUT_MS)
    info = viewer.inner_text()
    assert name in info
    assert sha in info
    assert "FUJIFILM X-T5" in info or "X-T5" in info
    assert f"x-t5: {name}" in page.locator(".provenance").inner_text()
    screenshot(page, screens, "viewer")

    page.keyboard.press("ArrowRight")
    expect(page.locator("#viewer-title")).not_to_have_text(name, timeout=TIMEOUT_MS)
    assert not page.url.endswith(sha)
    page.wait_for_selector("#viewer[data-shown='full']")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#viewer-title")).to_have_text(name, timeout=TIMEOUT_MS)
    assert page.url.endswith(f"#{sha}")
    page.wait_for_selector("#viewer[data-shown='full']")
    page.keyboard.press("Escape")
    assert viewer.is_hidden()
    assert "#" not in page.url


def test_viewer_shows_heic_as_jpeg_and_plays_video(
    server: LiveServer, web_site: WebSite, open_page: Any, screens: Path
) -> None:
    if web_site.heic is None or web_site.video is None:
        missing(f"real media not found at {MEDIA}")
    page, _ = open_page()
    page.goto(f"{server.url}/gallery")
    page.locator("#gallery-end").wait_for()
    page.locator(f".tile[href='#{web_site.heic}']").click()
    page.wait_for_selector("#viewer[data-shown='full']")
    src = page.locator("#viewer-image").get_attribute("src") or ""
    assert src.endswith(f"/api/assets/{web_site.heic}/full?jpeg=true")
    assert page.locator("#viewer-image").evaluate("(img) => img.naturalWidth") > 0
    screenshot(page, screens, "viewer-heic")
    page.keyboard.press("Escape")

    page.locator(f".tile[href='#{web_site.video}']").click()
    page.wait_for_selector("#viewer[data-shown='video']")
    video = page.locator("#viewer-video")
    assert (video.get_attribute("src") or "").endswith(f"/api/assets/{web_site.video}/full")
    # Chromium reads the video's metadata through range requests.
    wait_until(lambda: video.evaluate("(v) => v.readyState") >= 1)
    assert video.evaluate("(v) => v.duration") > 0
    page.keyboard.press("Escape")


# -- kiosk -----------------------------------------------------------------------------------


def test_kiosk_shows_a_photo_with_its_caption_and_moves_on(
    server: LiveServer, web_site: WebSite, open_page: Any, screens: Path
) -> None:
    page, _ = open_page(viewport=(1024, 640))
    page.goto(f"{server.url}/kiosk?interval=2&client=test-kiosk-{time.monotonic_ns()}")
    kiosk = page.locator("#kiosk")
    page.wait_for_selector("#kiosk[data-shown='1']")
    first = kiosk.get_attribute("data-key")
    assert first in web_site.photos
    caption = page.locator("#kiosk-caption")
    assert re.search(r"\b(19|20)\d\d\b", caption.locator(".date").inner_text())
    with_camera = page.locator("#kiosk-caption .camera")
    if with_camera.count():
        assert with_camera.inner_text().strip()
    page.wait_for_timeout(1500)  # the crossfade
    screenshot(page, screens, "kiosk")
    page.wait_for_selector("#kiosk[data-shown='2']", timeout=6000)
    second = kiosk.get_attribute("data-key")
    assert second in web_site.photos
    assert second != first
    assert page.locator("#kiosk img.shown").count() == 1


# -- tokens ----------------------------------------------------------------------------------


def test_pages_ask_for_the_token_and_log_in(
    web_site: WebSite, serve: Any, open_page: Any, screens: Path
) -> None:
    settings = with_serve(web_site.settings, token="full-secret", read_token="wall-secret")
    live = serve(settings)
    page, problems = open_page()
    page.goto(f"{live.url}/gallery")
    assert re.search(r"/login\?next=%2Fgallery$", page.url)
    screenshot(page, screens, "login")
    page.fill("#token", "full-secret")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/gallery")
    page.wait_for_selector(".tile img")
    assert page.locator(".tile").count() > 0

    # A wall frame that cannot log in carries the read-only token in its URL.
    wall, _ = open_page(viewport=(800, 480))
    wall.goto(f"{live.url}/kiosk?interval=30&token=wall-secret")
    wall.wait_for_selector("#kiosk[data-shown='1']")
    assert wall.locator("#kiosk").get_attribute("data-key") in web_site.photos
    assert problems.errors == []


def test_pages_escape_catalog_text(
    sqlite_library: LibraryFixture, tmp_path: Path, serve: Any, open_page: Any
) -> None:
    make_sample_set(tmp_path / "phone", count=3)
    sqlite_library.run(sqlite_library.folder(tmp_path / "phone", "<img src=x onerror=alert(1)>"))
    with sqlite_library.catalog.session() as db, db.begin():
        sha = db.scalars(select(Asset.sha256)).first()
        db.execute(
            update(Asset)
            .where(Asset.sha256 == sha)
            .values(original_name="<script>alert(1)</script>.jpg")
        )
    live = serve(sqlite_library.settings)
    page, _ = open_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{live.url}/dashboard")
    page.wait_for_selector("#live-state[data-state='live']")
    assert "<img src=x onerror=alert(1)>" in page.locator("#failures").inner_text()
    page.goto(f"{live.url}/gallery")
    page.locator(f".tile[href='#{sha}']").click()
    page.wait_for_selector("#viewer[data-shown='full']")
    assert page.locator("#viewer-title").inner_text() == "<script>alert(1)</script>.jpg"
    assert dialogs == []
