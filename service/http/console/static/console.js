// The console's only script: local times, and a running run's live counts.
"use strict";

// Times come as RFC 3339 in UTC; show them in the browser's time zone.
function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!isNaN(at)) {
      el.textContent = at.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit",
      });
      el.title = el.getAttribute("datetime");
    }
  }
}

function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  const s = Math.floor(ms / 1000);
  return Math.floor(s / 60) + " min " + (s % 60) + " s";
}

function timeHtml(value) {
  if (!value) return '<span class="muted">—</span>';
  const el = document.createElement("time");
  el.setAttribute("datetime", value);
  el.textContent = value;
  return el.outerHTML;
}

const KINDS = ["passed", "failed", "blocked", "error", "cancelled", "running", "queued"];

function paint(section, snapshot) {
  const c = snapshot.counts, total = snapshot.total_tests;
  for (const kind of KINDS) {
    const seg = section.querySelector('[data-seg="' + kind + '"]');
    if (seg) seg.style.width = (total ? (100 * c[kind]) / total : 0) + "%";
    const count = section.querySelector('[data-count="' + kind + '"]');
    if (count) count.textContent = c[kind];
  }
  const bar = section.querySelector("[data-bar]");
  if (bar) {
    bar.setAttribute("aria-label", KINDS.map((k) => c[k] + " " + k).join(", ") + " of " + total);
  }
  const status = section.querySelector("[data-status]");
  if (status) {
    const badge = document.createElement("span");
    badge.className = "badge badge-" + snapshot.status;
    badge.textContent = snapshot.status;
    status.replaceChildren(badge);
  }
  for (const name of ["started_at", "completed_at"]) {
    const cell = section.querySelector('[data-timing="' + name + '"]');
    if (cell) { cell.innerHTML = timeHtml(snapshot.timing[name]); localTimes(cell); }
  }
  const took = section.querySelector('[data-timing="duration_ms"]');
  if (took) took.textContent = duration(snapshot.timing.duration_ms);
  if (snapshot.terminal) {
    const cancel = section.querySelector("[data-cancel]");
    if (cancel) cancel.remove();
    const finished = section.querySelector("[data-finished]");
    if (finished) finished.hidden = false;
  }
}

// Every event only marks the counts stale; they are fetched and repainted at
// most a few times a second, so a run of thousands of tests cannot flood the page.
const REPAINT_MS = 300;

function follow(section) {
  const base = section.getAttribute("data-live");
  const after = section.getAttribute("data-after") || "0";
  let dirty = false, busy = false, over = false;
  const source = new EventSource(base + "/events?after=" + encodeURIComponent(after));

  async function refresh() {
    if (busy || !dirty) return;
    busy = true; dirty = false;
    try {
      const answer = await fetch(base + "/counts", { credentials: "same-origin" });
      if (answer.ok) {
        const snapshot = await answer.json();
        paint(section, snapshot);
        if (snapshot.terminal) { over = true; source.close(); clearInterval(timer); }
      }
    } finally {
      busy = false;
    }
  }
  const timer = setInterval(refresh, REPAINT_MS);
  source.onmessage = () => { dirty = true; };
  for (const type of ["run.queued", "test.started", "test.passed", "test.failed",
                      "test.blocked", "test.errored", "run.completed", "run.cancelled",
                      "run.errored", "run.created"]) {
    source.addEventListener(type, () => { dirty = true; });
  }
  for (const type of ["run.completed", "run.cancelled", "run.errored"]) {
    // The feed ends after its terminal event: no reconnecting after that.
    source.addEventListener(type, () => { source.close(); dirty = true; });
  }
  source.onerror = () => { if (!over) dirty = true; };
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  const live = document.querySelector("[data-live]");
  if (live) follow(live);
});
