// Small helpers shared by the picpipe pages: URLs, DOM building, number and date formats.
// Every text goes in through textContent, never innerHTML, so catalog strings stay text.
"use strict";

window.picpipe = (function () {
  // A read-only token given in the page URL (wall frames) travels on to every request.
  const pageToken = new URLSearchParams(location.search).get("token");

  function url(path, params) {
    const u = new URL(path, location.origin);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "" && value !== false) {
        u.searchParams.set(key, String(value));
      }
    }
    if (pageToken && !u.searchParams.has("token")) u.searchParams.set("token", pageToken);
    return u.pathname + u.search;
  }

  async function getJSON(path, params) {
    const response = await fetch(url(path, params), {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) {
      const error = new Error(`${path}: HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  // h("a", {href: "/x", class: "y"}, "text", child) → element; null children are skipped.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const numberFormat = new Intl.NumberFormat();

  function count(n) {
    return numberFormat.format(n || 0);
  }

  function bytes(n) {
    let value = Number(n) || 0;
    for (const unit of ["B", "KB", "MB", "GB", "TB"]) {
      if (value < 1000 || unit === "TB") {
        return unit === "B" ? `${value} B` : `${value.toFixed(1)} ${unit}`;
      }
      value /= 1000;
    }
    return `${value.toFixed(1)} TB`;
  }

  const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });

  // An instant from the API ("…Z") in the viewer's time zone.
  function dateTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : dateTimeFormat.format(d);
  }

  const shortThisYear = new Intl.DateTimeFormat(undefined, {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
  const shortOtherYear = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

  // A compact instant for tables: "21 Nov, 01:31", or just the date in another year.
  function shortDateTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return d.getFullYear() === new Date().getFullYear() ? shortThisYear.format(d) : shortOtherYear.format(d);
  }

  // "3 s", "4 min", "2 h" between two instants.
  function duration(fromIso, toIso) {
    const seconds = Math.max(0, (new Date(toIso).getTime() - new Date(fromIso).getTime()) / 1000);
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
    return `${Math.round(seconds / 86400)} days`;
  }

  // A wall-clock capture time ("2021-04-10T11:44:00", no zone) shown as it was on the camera.
  const localFormat = new Intl.DateTimeFormat(undefined, {
    dateStyle: "full",
    timeStyle: "short",
    timeZone: "UTC",
  });
  function wallClock(local) {
    if (!local) return "";
    const d = new Date(local.slice(0, 19) + "Z");
    return Number.isNaN(d.getTime()) ? local : localFormat.format(d);
  }

  function since(iso) {
    return iso ? duration(iso, new Date().toISOString()) : "";
  }

  return { url, getJSON, h, count, bytes, dateTime, shortDateTime, duration, wallClock, since, pageToken };
})();
