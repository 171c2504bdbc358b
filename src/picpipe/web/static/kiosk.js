// Kiosk: a full-screen slideshow for a wall tablet. Each photo comes from /files/random.json
// (the client's no-repeat shuffle) and is fully loaded and decoded before it crossfades in;
// the next one is fetched while the current one shows. A tap shows the next photo at once.
"use strict";

(function () {
  const { url, getJSON } = window.picpipe;
  const root = document.getElementById("kiosk");
  const layers = [document.getElementById("kiosk-a"), document.getElementById("kiosk-b")];
  const captionBox = document.getElementById("kiosk-caption");
  const message = document.getElementById("kiosk-message");
  const settings = JSON.parse(root.dataset.settings);
  const intervalMs = Math.max(2, Number(settings.interval) || 30) * 1000;
  const RELOAD_AFTER_MS = 12 * 3600 * 1000; // a page that runs for months starts afresh twice a day
  const startedAt = Date.now();

  const query = {
    client: settings.client,
    size: settings.size,
    album: settings.album,
    source: settings.source,
    orientation: settings.orientation,
    on_this_day: settings.on_this_day ? "true" : null,
  };

  let front = 0;
  let shown = 0;
  let timer = null;
  let pending = null;
  let busy = false;

  async function fetchNext() {
    const info = await getJSON("/files/random.json", query);
    const picture = new Image();
    picture.src = url(info.url);
    await picture.decode();
    return { info, src: picture.src };
  }

  function prefetch() {
    pending = fetchNext();
    pending.catch(() => {}); // reported when it is needed
  }

  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "long", timeZone: "UTC" });

  function captionOf(info) {
    const parts = [];
    if (info.taken) {
      const d = new Date(info.taken.slice(0, 19) + "Z");
      if (!Number.isNaN(d.getTime())) parts.push(["date", dateFormat.format(d)]);
    }
    if (info.place) {
      const { lat, lon, city, region, country } = info.place;
      const names = [...new Set([city, region, country].filter(Boolean))].join(", ");
      parts.push([
        "place",
        names ||
          `${Math.abs(lat).toFixed(4)}° ${lat >= 0 ? "N" : "S"}, ${Math.abs(lon).toFixed(4)}° ${lon >= 0 ? "E" : "W"}`,
      ]);
    }
    if (info.camera) parts.push(["camera", info.camera]);
    return parts.map(([cls, text]) => {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      return span;
    });
  }

  async function show(next) {
    const back = layers[1 - front];
    back.src = next.src;
    back.alt = next.info.name || "";
    await back.decode().catch(() => {});
    back.classList.add("shown");
    layers[front].classList.remove("shown");
    front = 1 - front;
    if (settings.caption) captionBox.replaceChildren(...captionOf(next.info));
    message.hidden = true;
    shown += 1;
    root.dataset.shown = String(shown);
    root.dataset.key = next.info.key;
  }

  async function cycle() {
    if (busy) return; // a tap while the next photo is still on its way
    busy = true;
    clearTimeout(timer);
    if (Date.now() - startedAt > RELOAD_AFTER_MS) {
      location.reload();
      return;
    }
    try {
      await show(await pending);
    } catch (error) {
      message.hidden = false;
      message.textContent =
        error.status === 404
          ? "No photos match these settings yet."
          : `Waiting for the server (${error.message || "no answer"})…`;
    } finally {
      busy = false;
    }
    prefetch();
    timer = setTimeout(cycle, intervalMs);
  }

  async function keepAwake() {
    // Screen Wake Lock needs a secure context (HTTPS or localhost); elsewhere the tablet's
    // own settings decide.
    try {
      if ("wakeLock" in navigator) await navigator.wakeLock.request("screen");
    } catch (error) {
      /* not allowed here */
    }
  }

  root.addEventListener("click", () => cycle());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") keepAwake();
  });

  keepAwake();
  prefetch();
  cycle();
})();
