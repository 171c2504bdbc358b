// Dashboard: renders the /api/status document and keeps it current.
// Server-sent events from /api/events first; after repeated errors, polling /api/status.
"use strict";

(function () {
  const { h, url, getJSON, count, bytes, dateTime, shortDateTime, duration, since } = window.picpipe;
  const POLL_MS = 10000; // /api/status computes everything afresh: not too often
  const MAX_SSE_ERRORS = 3;

  const $ = (id) => document.getElementById(id);

  function setState(state, text) {
    const el = $("live-state");
    el.dataset.state = state;
    el.textContent = text;
  }

  function table(columns, rows, empty) {
    if (!rows.length) return h("p", { class: "muted" }, empty);
    return h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : c.cls || null }, c.value(row)))),
        ),
      ),
    );
  }

  function statusBadge(status) {
    return h("span", { class: `status status-${status}` }, status.replaceAll("_", " "));
  }

  // -- sections ---------------------------------------------------------------------------

  function renderRunning(status) {
    const box = $("running");
    const runs = status.running;
    if (!runs.length) {
      const last = status.last_session;
      box.replaceChildren(
        h(
          "p",
          { class: "idle" },
          "Idle. ",
          last
            ? [
                `Last ${last.kind} #${last.id} `,
                statusBadge(last.status),
                ` ${last.ended_at ? "ended " + dateTime(last.ended_at) : "started " + dateTime(last.started_at)}: `,
                `${count(last.new)} new, ${count(last.duplicate)} duplicate, ${count(last.failed)} failed.`,
              ]
            : "No session has run yet.",
        ),
      );
      return;
    }
    box.replaceChildren(
      ...runs.map((run) => {
        const fraction = run.seen ? Math.min(1, run.done / run.seen) : 0;
        const stale = run.alive === false;
        return h(
          "article",
          { class: "run" + (stale ? " stale" : ""), dataset: { session: run.id } },
          h(
            "header",
            {},
            h("strong", {}, `${run.kind} #${run.id}`),
            run.device ? h("span", { class: "muted" }, ` ${run.device}`) : null,
            " ",
            stale ? h("span", { class: "status status-failed" }, "process gone") : statusBadge(run.status),
            h("span", { class: "muted right" }, `running since ${dateTime(run.started_at)} (${since(run.started_at)})`),
          ),
          h("progress", { max: 1, value: fraction.toFixed(4), "aria-label": "progress" }),
          h(
            "p",
            { class: "counts" },
            // While the scan still counts, "seen" only grows: say so rather than a total.
            run.progress && run.progress.stage === "scan"
              ? `${count(run.done)} of at least ${count(run.seen)} files (still counting) · `
              : `${count(run.done)} of ${count(run.seen)} files · `,
            `${count(run.new)} new · ${count(run.duplicate)} duplicate · `,
            `${count(run.unchanged)} unchanged · `,
            h("span", { class: run.failed ? "bad" : null }, `${count(run.failed)} failed`),
            ` · ${count(run.skipped || 0)} skipped`,
            ` · ${bytes(run.bytes)} written`,
          ),
        );
      }),
    );
  }

  function card(label, value, detail, cls) {
    return h(
      "div",
      { class: "card" + (cls ? " " + cls : "") },
      h("div", { class: "card-value" }, value),
      h("div", { class: "card-label" }, label),
      detail ? h("div", { class: "card-detail" }, detail) : null,
    );
  }

  function renderTotals(status) {
    const t = status.totals;
    $("totals").replaceChildren(
      card("photos", count(t.photos)),
      card("raw", count(t.raw)),
      card("videos", count(t.videos)),
      card("originals", bytes(t.bytes), `${count(t.assets)} assets`),
      card(
        "thumbnails pending",
        count(t.thumbs_pending),
        t.thumbs_failed ? `${count(t.thumbs_failed)} could not be made` : null,
        t.thumbs_failed ? "warn" : null,
      ),
    );
  }

  function renderReplication(status) {
    const r = status.replication;
    const under = r.under_replicated;
    const copies = Object.entries(r.copies)
      .map(([n, assets]) => `${count(assets)} with ${n} ${n === "1" ? "copy" : "copies"}`)
      .join(" · ");
    $("replication").replaceChildren(
      h(
        "p",
        { class: "safety " + (under ? "bad" : "good"), id: "under-replicated" },
        h("strong", {}, count(under)),
        ` ${under === 1 ? "asset has" : "assets have"} fewer than ${r.target} verified copies`,
        " (the library counts as one).",
      ),
      copies ? h("p", { class: "muted" }, copies) : null,
      table(
        [
          { label: "destination", value: (d) => [d.name, " ", h("span", { class: "muted" }, d.kind)] },
          { label: "verified", num: true, value: (d) => count(d.verified) },
          { label: "pending", num: true, value: (d) => count(d.pending) },
          { label: "failed", num: true, value: (d) => h("span", { class: d.failed ? "bad" : null }, count(d.failed)) },
          { label: "not queued", num: true, value: (d) => count(d.missing) },
        ],
        r.destinations,
        "No destinations configured.",
      ),
    );
  }

  function renderSessions(status) {
    $("sessions").replaceChildren(
      table(
        [
          { label: "#", num: true, value: (s) => s.id },
          { label: "kind", value: (s) => s.kind },
          { label: "device", cls: "path", value: (s) => s.device || "" },
          { label: "status", value: (s) => statusBadge(s.status) },
          { label: "started", value: (s) => shortDateTime(s.started_at) },
          {
            label: "took",
            value: (s) =>
              s.ended_at ? h("span", { title: `ended ${dateTime(s.ended_at)}` }, duration(s.started_at, s.ended_at)) : "",
          },
          { label: "seen", num: true, value: (s) => count(s.seen) },
          { label: "new", num: true, value: (s) => count(s.new) },
          { label: "duplicate", num: true, value: (s) => count(s.duplicate) },
          { label: "unchanged", num: true, value: (s) => count(s.unchanged) },
          { label: "failed", num: true, value: (s) => h("span", { class: s.failed ? "bad" : null }, count(s.failed)) },
          { label: "skipped", num: true, value: (s) => count(s.skipped || 0) },
          { label: "bytes", num: true, value: (s) => bytes(s.bytes) },
        ],
        status.recent_sessions,
        "No sessions yet.",
      ),
    );
  }

  function renderFailures(status) {
    const f = status.failures;
    $("failure-count").textContent = f.files ? count(f.files) : "";
    const parts = [
      table(
        [
          { label: "source", value: (r) => r.source },
          { label: "file", cls: "path", value: (r) => r.path },
          { label: "reason", cls: "reason", value: (r) => [r.reason, r.retryable ? h("span", { class: "muted" }, " (will retry)") : null] },
          { label: "last seen", value: (r) => shortDateTime(r.last_seen) },
        ],
        f.failed_files,
        "No failed files.",
      ),
    ];
    if (f.files > f.failed_files.length) {
      parts.push(h("p", { class: "muted" }, `Newest ${f.failed_files.length} of ${count(f.files)} shown.`));
    }
    const problems = f.session_problems.filter(
      (p) => !f.failed_files.some((r) => p.path === `${r.source}:${r.path}`),
    );
    if (problems.length) {
      parts.push(
        h("h3", {}, "Other problems recorded by sessions"),
        table(
          [
            { label: "session", num: true, value: (p) => `#${p.session_id}` },
            { label: "where", cls: "path", value: (p) => p.path },
            { label: "reason", cls: "reason", value: (p) => p.reason },
          ],
          problems,
          "",
        ),
      );
    }
    if (f.thumbnail_failures.length) {
      parts.push(
        h("h3", {}, `Thumbnails that could not be made (${count(f.thumbnails)})`),
        table(
          [
            { label: "file", cls: "path", value: (t) => t.name },
            { label: "reason", cls: "reason", value: (t) => t.reason },
          ],
          f.thumbnail_failures,
          "",
        ),
      );
    }
    $("failures").replaceChildren(...parts);
  }

  function render(status) {
    renderRunning(status);
    renderTotals(status);
    renderReplication(status);
    renderSessions(status);
    renderFailures(status);
    document.body.dataset.generated = status.generated_at;
  }

  // -- updates ----------------------------------------------------------------------------

  let pollTimer = null;

  function poll() {
    setState("polling", "polling");
    const tick = async () => {
      try {
        render(await getJSON("/api/status"));
        setState("polling", `updated ${new Date().toLocaleTimeString()}`);
      } catch (error) {
        setState("offline", "server not reachable");
      }
      pollTimer = setTimeout(tick, POLL_MS);
    };
    tick();
  }

  function follow() {
    if (!("EventSource" in window)) {
      poll();
      return;
    }
    let errors = 0;
    const source = new EventSource(url("/api/events"));
    source.addEventListener("open", () => setState("live", "live"));
    source.addEventListener("status", (event) => {
      errors = 0;
      render(JSON.parse(event.data));
      setState("live", "live");
    });
    source.addEventListener("error", () => {
      // The stream ends every few minutes and the browser reconnects by itself; only a
      // run of errors without a message in between, or an answer that is not an event
      // stream (a proxy's error page: the browser gives up), means events do not get through.
      errors += 1;
      if (errors >= MAX_SSE_ERRORS || source.readyState === EventSource.CLOSED) {
        source.close();
        poll();
      } else {
        setState("connecting", "reconnecting…");
      }
    });
    window.addEventListener("pagehide", () => {
      source.close();
      if (pollTimer) clearTimeout(pollTimer);
    });
  }

  render(JSON.parse($("initial-status").textContent));
  follow();
})();
