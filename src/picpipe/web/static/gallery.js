// Gallery: thumbnails grouped by day, loaded page by page from /api/assets as the user scrolls,
// and a viewer (medium first, then full resolution) with metadata and provenance.
//
// Stays fast at 100,000 assets: one keyset page per request (never an offset), lazy images of
// fixed size (no layout shifts), and chunks of tiles far from the viewport give up their tiles
// (keeping their size) so the page never holds more than a few screens of image nodes.
"use strict";

(function () {
  const { h, url, getJSON, count, bytes, dateTime, wallClock } = window.picpipe;
  const root = document.getElementById("gallery");
  const daysBox = document.getElementById("days");
  const sentinel = document.getElementById("sentinel");
  const endNote = document.getElementById("gallery-end");
  const statusLine = document.getElementById("gallery-status");
  const pageSize = Number(root.dataset.pageSize) || 120;
  const filters = JSON.parse(root.dataset.filters || "{}");

  // Browsers show these directly; anything else (HEIC, RAW, TIFF) comes as full-size JPEG.
  const BROWSER_IMAGES = new Set(["image/jpeg", "image/png", "image/gif", "image/webp", "image/avif"]);
  const THUMB_BOX = 500; // the "small" thumbnail fits 500x500
  const KEEP_MARGIN = "4000px 0px"; // chunks this close to the viewport keep their tiles
  const CHUNK_ROWS = 12; // rows of tiles per chunk of a big day
  const TILE_GAP = 4; // px, as in the style sheet

  const items = []; // every asset loaded so far, in display order (the viewer walks this)
  const sections = []; // {day, el, counter, size, chunks: [{el, indexes: [item index], collapsed}]}
  let cursor = null;
  let loading = null;
  let finished = false;

  // -- pages ------------------------------------------------------------------------------

  function loadMore() {
    if (loading || finished) return loading;
    statusLine.textContent = items.length ? `${count(items.length)} shown · loading…` : "loading…";
    loading = getJSON("/api/assets", { ...filters, limit: pageSize, cursor })
      .then((page) => {
        for (const asset of page.assets) add(asset);
        cursor = page.next_cursor;
        finished = !cursor;
        root.dataset.loaded = String(items.length);
        root.dataset.pages = String(Number(root.dataset.pages || 0) + 1);
        statusLine.textContent = `${count(items.length)} shown` + (finished ? "" : " · scroll for more");
        if (finished) {
          endNote.hidden = false;
          endNote.textContent = items.length ? "That is everything." : "Nothing here yet.";
        }
      })
      .catch((error) => {
        statusLine.textContent = `could not load more (${error.message}); retrying when you scroll`;
      })
      .finally(() => {
        loading = null;
        // The observer only fires on changes: look again in case the sentinel is still in view.
        pageObserver.unobserve(sentinel);
        if (!finished) pageObserver.observe(sentinel);
      });
    return loading;
  }

  const pageObserver = new IntersectionObserver(
    (entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    },
    { rootMargin: "0px 0px 1500px 0px" },
  );

  // -- day sections and tiles -------------------------------------------------------------

  const dayFormat = new Intl.DateTimeFormat(undefined, {
    weekday: "short",
    day: "numeric",
    month: "short",
    year: "numeric",
    timeZone: "UTC",
  });
  const longDayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeZone: "UTC" });

  function dayOf(asset) {
    return (asset.taken || "").slice(0, 10) || "undated";
  }

  function dayTitle(day, format) {
    const d = new Date(day + "T00:00:00Z");
    return Number.isNaN(d.getTime()) ? day : format.format(d);
  }

  function add(asset) {
    const index = items.push(asset) - 1;
    const day = dayOf(asset);
    let section = sections[sections.length - 1];
    if (!section || section.day !== day) section = newSection(day);
    section.size += 1;
    section.counter.textContent = count(section.size);
    let chunk = section.chunks[section.chunks.length - 1];
    if (chunk.indexes.length >= chunkSize()) chunk = newChunk(section);
    chunk.indexes.push(index);
    if (!chunk.collapsed) chunk.el.append(tile(index));
  }

  function newSection(day) {
    const counter = h("span", { class: "muted" });
    const heading = h("h2", { title: dayTitle(day, longDayFormat) }, dayTitle(day, dayFormat), counter);
    const el = h("section", { class: "day", dataset: { day } }, heading);
    const section = { day, el, counter, size: 0, chunks: [] };
    sections.push(section);
    daysBox.append(el);
    newChunk(section);
    return section;
  }

  // A day of thousands of photos (a wedding, a trip) is split into chunks of whole rows, so
  // the part of it far from the screen can be dropped too.
  function newChunk(section) {
    const chunk = { el: h("div", { class: "tiles" }), indexes: [], collapsed: false };
    chunk.el.chunk = chunk;
    section.chunks.push(chunk);
    section.el.append(chunk.el);
    chunkObserver.observe(chunk.el);
    return chunk;
  }

  let columns = 0;
  function chunkSize() {
    if (!columns) {
      const sample = daysBox.querySelector(".tile");
      if (!sample) return CHUNK_ROWS * 8;
      columns = Math.max(1, Math.floor((daysBox.clientWidth + TILE_GAP) / (sample.offsetWidth + TILE_GAP)));
    }
    return CHUNK_ROWS * columns;
  }

  function thumbSize(asset) {
    const w = asset.width || THUMB_BOX;
    const hgt = asset.height || THUMB_BOX;
    const scale = Math.min(1, THUMB_BOX / Math.max(w, hgt));
    return [Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(hgt * scale))];
  }

  function tile(index) {
    const asset = items[index];
    const [w, hgt] = thumbSize(asset);
    const problems = asset.problems || [];
    const label = [asset.name, asset.place && asset.place.city, asset.camera, ...problems]
      .filter(Boolean).join(" · ");
    return h(
      "a",
      { class: "tile", href: `#${asset.sha256}`, dataset: { index, kind: asset.kind }, title: label },
      asset.thumbs === "ok"
        ? h("img", {
            src: url(asset.urls.small),
            width: w,
            height: hgt,
            alt: asset.name || "",
            loading: "lazy",
            decoding: "async",
          })
        : // No thumbnail (yet): a labelled placeholder instead of a request that would fail.
          h(
            "span",
            { class: "tile-placeholder" },
            h("strong", {}, asset.thumbs === "failed" ? "no preview" : "preview pending"),
            h("span", {}, asset.name || asset.kind),
          ),
      asset.kind === "video"
        ? h("span", { class: "badge-video" }, "▶ " + (asset.duration ? duration(asset.duration) : "video"))
        : null,
      // A kept file with a recorded problem (truncated, not a photo): said on the tile too.
      problems.length ? h("span", { class: "badge-problem", title: problems.join("; ") }, "⚠ " + problems[0]) : null,
    );
  }

  function duration(seconds) {
    const s = Math.round(seconds);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  // Far-away chunks drop their tiles and keep their size; they come back when near.
  const chunkObserver = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        const chunk = entry.target.chunk;
        if (entry.isIntersecting) expand(chunk);
        else collapse(chunk);
      }
    },
    { rootMargin: KEEP_MARGIN },
  );

  function collapse(chunk) {
    if (chunk.collapsed || !chunk.el.childElementCount) return;
    chunk.el.style.width = `${chunk.el.offsetWidth}px`;
    chunk.el.style.height = `${chunk.el.offsetHeight}px`;
    chunk.el.replaceChildren();
    chunk.collapsed = true;
  }

  function expand(chunk) {
    if (!chunk.collapsed) return;
    chunk.el.replaceChildren(...chunk.indexes.map(tile));
    chunk.el.style.width = "";
    chunk.el.style.height = "";
    chunk.collapsed = false;
  }

  daysBox.addEventListener("click", (event) => {
    const link = event.target.closest(".tile");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    viewer.open(Number(link.dataset.index));
  });

  // -- viewer -----------------------------------------------------------------------------

  const viewer = (function () {
    const box = document.getElementById("viewer");
    const image = document.getElementById("viewer-image");
    const video = document.getElementById("viewer-video");
    const title = document.getElementById("viewer-title");
    const meta = document.getElementById("viewer-meta");
    const sizeNote = document.getElementById("viewer-size");
    let current = -1;
    let opener = null;
    let token = 0; // drops answers for a photo the user has already left

    function fullUrl(asset) {
      const direct = asset.kind === "video" || BROWSER_IMAGES.has(asset.mime_type);
      return url(asset.urls.full, direct ? {} : { jpeg: "true" });
    }

    async function open(index) {
      if (index < 0) return;
      if (index >= items.length) {
        if (finished) return;
        await loadMore();
        if (index >= items.length) return;
      }
      if (current < 0) opener = document.activeElement;
      current = index;
      const mine = ++token;
      const asset = items[index];
      box.hidden = false;
      document.body.classList.add("viewing");
      history.replaceState(null, "", `#${asset.sha256}`);
      title.textContent = asset.name || asset.sha256;
      meta.replaceChildren(h("p", { class: "muted" }, "loading…"));
      showPicture(asset, mine);
      try {
        const detail = await getJSON(`/api/assets/${asset.sha256}`);
        if (mine === token) meta.replaceChildren(...describe(detail));
      } catch (error) {
        if (mine === token) meta.replaceChildren(h("p", { class: "bad" }, `No details: ${error.message}`));
      }
      if (index + 1 >= items.length - 5 && !finished) loadMore();
    }

    function showPicture(asset, mine) {
      if (asset.kind === "video") {
        image.hidden = true;
        image.removeAttribute("src");
        video.hidden = false;
        if (asset.thumbs === "ok") video.poster = url(asset.urls.medium);
        else video.removeAttribute("poster");
        video.src = fullUrl(asset);
        box.dataset.shown = "video";
        sizeNote.textContent = "video";
        return;
      }
      video.pause();
      video.removeAttribute("src");
      video.hidden = true;
      image.hidden = false;
      image.alt = asset.name || "";
      box.dataset.shown = "loading";
      sizeNote.textContent = "loading…";
      // Medium first (fast, fills the screen), then full resolution swapped in once decoded.
      let medium;
      if (asset.thumbs === "ok") {
        image.src = url(asset.urls.medium);
        medium = image.decode();
      } else {
        image.removeAttribute("src");
        medium = Promise.reject(new Error("no thumbnail"));
      }
      medium
        .then(
          () => {
            if (mine !== token) return false;
            box.dataset.shown = "medium";
            sizeNote.textContent = "medium · loading full resolution…";
            return true;
          },
          () => mine === token, // no medium thumbnail: go straight for the original
        )
        .then((go) => {
          if (!go) return;
          const full = new Image();
          full.src = fullUrl(asset);
          return full.decode().then(
            () => {
              if (mine !== token) return;
              image.src = full.src;
              box.dataset.shown = "full";
              sizeNote.textContent = `full resolution · ${full.naturalWidth} × ${full.naturalHeight}`;
            },
            () => {
              if (mine === token) sizeNote.textContent = "medium · full resolution not available now";
            },
          );
        });
    }

    function close() {
      token++;
      current = -1;
      box.hidden = true;
      document.body.classList.remove("viewing");
      video.pause();
      video.removeAttribute("src");
      image.removeAttribute("src");
      history.replaceState(null, "", location.pathname + location.search);
      if (opener && opener.focus) opener.focus();
    }

    function row(label, value) {
      if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) {
        return [];
      }
      return [h("dt", {}, label), h("dd", {}, value)];
    }

    function place(p) {
      if (!p) return null;
      const lat = `${Math.abs(p.lat).toFixed(5)}° ${p.lat >= 0 ? "N" : "S"}`;
      const lon = `${Math.abs(p.lon).toFixed(5)}° ${p.lon >= 0 ? "E" : "W"}`;
      const where = p.alt !== null && p.alt !== undefined ? `${lat}, ${lon}, ${Math.round(p.alt)} m` : `${lat}, ${lon}`;
      const names = [...new Set([p.city, p.region, p.country].filter(Boolean))].join(", ");
      return names ? [names, h("span", { class: "muted" }, ` · ${where}`)] : where;
    }

    function describe(a) {
      const taken = a.taken ? wallClock(a.taken) + (a.taken.length > 19 ? ` (UTC${a.taken.slice(19)})` : "") : null;
      const dims = a.width && a.height ? `${a.width} × ${a.height}` : null;
      const facts = h(
        "dl",
        {},
        row("Taken", taken ? [taken, h("span", { class: "muted" }, ` · from ${a.date_source}`)] : null),
        row("Camera", a.camera),
        row("Lens", a.lens),
        row("Place", place(a.place)),
        row("Size", [dims, dims ? " · " : "", bytes(a.size), a.file_type ? ` · ${a.file_type}` : ""]),
        row("Duration", a.duration ? duration(a.duration) : null),
        row("Title", a.title),
        row("Description", a.description),
        row("Keywords", (a.keywords || []).join(", ")),
        row("Rating", a.rating ? "★".repeat(a.rating) : null),
        row("Albums", (a.albums || []).map((al) => al.name).join(", ")),
        row("Pair", a.pair_kind),
        row("Problems", (a.problems || []).join("; ")),
        row("Imported", dateTime(a.imported_at)),
        row("SHA-256", h("code", {}, a.sha256)),
      );
      const out = [facts, h("p", {}, h("a", { href: url(a.urls.full), download: a.name || true }, "Download original"))];
      out.push(h("h3", {}, "Provenance"));
      out.push(
        a.provenance && a.provenance.length
          ? h(
              "ul",
              { class: "provenance" },
              a.provenance.map((p) =>
                h("li", {}, h("strong", {}, p.source), ": ", p.ref, p.gone ? h("span", { class: "muted" }, " (gone)") : null),
              ),
            )
          : h("p", { class: "muted" }, "No source file recorded."),
      );
      out.push(h("h3", {}, "Copies"));
      out.push(
        h(
          "ul",
          { class: "replicas" },
          h("li", {}, "library (this server)"),
          (a.replicas || []).map((r) =>
            h(
              "li",
              {},
              h("strong", {}, r.destination),
              ` (${r.kind}): ${r.state}`,
              r.verified_at ? ` · verified ${dateTime(r.verified_at)}` : "",
            ),
          ),
        ),
      );
      return out;
    }

    document.getElementById("viewer-close").addEventListener("click", close);
    document.getElementById("viewer-prev").addEventListener("click", () => open(current - 1));
    document.getElementById("viewer-next").addEventListener("click", () => open(current + 1));
    document.addEventListener("keydown", (event) => {
      if (box.hidden) return;
      if (event.key === "Escape") close();
      else if (event.key === "ArrowLeft") open(current - 1);
      else if (event.key === "ArrowRight") open(current + 1);
      else return;
      event.preventDefault();
    });

    return { open, close };
  })();

  loadMore();
})();
