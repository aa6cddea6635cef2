// hotplane dashboard: one EventSource on /api/events (WatchStatus as Server-Sent Events), the
// status from /api/status after each change, and the admin actions. No framework, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_LOG = 300;
const MAX_POINTS = 60;

const state = {
  source: null,
  instance: "",
  lastId: 0, // the newest event id seen from `instance` (drops duplicates)
  status: null,
  points: new Map(), // generation -> {t, ms, items}
  admin: false,
  resyncTimer: null,
  refreshTimer: null,
  shutdown: false, // the server sent its final status: no status read may overwrite it
};

// ---------------------------------------------------------------------------------------------
// Helpers

function text(id, value) {
  $(id).textContent = value === undefined || value === null || value === "" ? "–" : String(value);
}

function time(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "–";
}

function ago(ms) {
  if (!ms) return "–";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  return Math.floor(s / 3600) + "h ago";
}

function shortHash(h) {
  return h ? h.slice(0, 12) : "–";
}

function fmtMs(ms) {
  if (!ms && ms !== 0) return "–";
  return ms < 10 ? ms.toFixed(2) + " ms" : Math.round(ms) + " ms";
}

async function api(method, path, body) {
  const init = { method, headers: { "x-hotplane-dashboard": "1" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let data = null;
  try {
    data = await r.json();
  } catch (_) {
    data = null;
  }
  return { ok: r.ok, status: r.status, data };
}

// ---------------------------------------------------------------------------------------------
// Connection state

function setConn(kind, label) {
  const el = $("conn");
  el.dataset.state = kind;
  el.textContent = label;
  el.className = "badge " + ({ live: "badge-ok", reconnecting: "badge-bad", resynced: "badge-info" }[kind] || "badge-wait");
}

function connect() {
  if (state.source) state.source.close();
  // A stream re-opened by hand resumes too (EventSource only sends Last-Event-ID itself).
  const resume = state.instance ? "?last_event_id=" + encodeURIComponent(state.instance + ":" + state.lastId) : "";
  const es = new EventSource("/api/events" + resume);
  state.source = es;
  es.onopen = () => {
    if ($("conn").dataset.state !== "resynced") setConn("live", "live");
  };
  es.onmessage = (m) => onEvent(m);
  es.onerror = () => {
    if (es.readyState === EventSource.CONNECTING) {
      setConn("reconnecting", "reconnecting…");
    } else {
      // Closed: the server answered with an error (signed out, or refused). Find out why.
      setConn("reconnecting", "reconnecting…");
      setTimeout(start, 2000);
    }
  };
}

function markResynced() {
  setConn("resynced", "resynced");
  clearTimeout(state.resyncTimer);
  state.resyncTimer = setTimeout(() => {
    if ($("conn").dataset.state === "resynced") setConn("live", "live");
  }, 4000);
}

// ---------------------------------------------------------------------------------------------
// Events

function onEvent(m) {
  let e;
  try {
    e = JSON.parse(m.data);
  } catch (_) {
    return;
  }
  const instance = (m.lastEventId || "").replace(/:\d+$/, "");
  const live = e.kind !== "SNAPSHOT" && e.kind !== "HEARTBEAT";
  if (instance && instance !== state.instance) {
    // Another process (a restart): its ids start over.
    if (state.instance) logNotice("connected to a new process: " + instance);
    state.instance = instance;
    state.lastId = 0;
  }
  // A server shutting down sends each stream a final status: kind DRAIN_CHANGED, carrying the
  // id of the last event before it, as snapshots and heartbeats do (hot_reload.proto,
  // WatchStatusResponse.event_id), so a repeated id on it is news, not a duplicate.
  const repeat = live && e.id <= state.lastId;
  const final = repeat && e.kind === "DRAIN_CHANGED" && !!e.status;
  if (repeat && !final) return; // already shown (a replay overlapping what we had)
  state.lastId = Math.max(state.lastId, e.id);
  state.shutdown = final;
  $("last-id").textContent = "last event #" + state.lastId;
  if (e.kind === "SNAPSHOT") {
    if (e.resync) {
      markResynced();
      logNotice("resynced: events were missed, showing a fresh snapshot");
    } else {
      setConn("live", "live");
    }
  } else if ($("conn").dataset.state === "reconnecting") {
    setConn("live", "live");
  }
  if (e.status) render(e.status);
  if (final) {
    showShutdown(e);
    return; // no status to read: the server is going away
  }
  if (e.kind === "HEARTBEAT" || e.kind === "SNAPSHOT") return;
  log(e);
  if (e.target === "PATTERNS" && e.generation && (e.kind === "RELOAD_SUCCEEDED" || e.kind === "ROLLBACK")) {
    showGeneration(e.generation);
    addPoint(e.generation);
    drawChart();
  }
  refreshSoon();
}

function refreshSoon() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(async () => {
    const r = await api("GET", "/api/status");
    if (r.ok && r.data && !state.shutdown) render(r.data);
  }, 150);
}

function describe(e) {
  const parts = [];
  if (e.generation) {
    parts.push("generation " + e.generation.generation);
    parts.push(e.generation.item_count + (e.generation.item_count === 1 ? " item" : " items"));
    if (e.generation.mode && e.generation.mode !== "UNSPECIFIED") parts.push(e.generation.mode.toLowerCase());
    if (e.generation.load_ms) parts.push(fmtMs(e.generation.load_ms));
    if (e.generation.source && e.generation.source !== "UNSPECIFIED") parts.push("via " + e.generation.source.toLowerCase());
  }
  if (e.pattern_id) parts.push("pattern " + e.pattern_id);
  if (e.member) parts.push(e.member.instance_id);
  if (e.status && e.status.drain) parts.push(e.status.drain.draining ? "draining: " + e.status.drain.reason : "serving");
  if (e.error) parts.push(e.error);
  return parts.join(" · ");
}

function addLog(li) {
  const list = $("events");
  list.prepend(li);
  while (list.children.length > MAX_LOG) list.lastChild.remove();
}

/** Adds a line to the log: `kind` is its data-kind, `cls` its class, `cells` [class, text] pairs. */
function logLine(kind, cls, cells) {
  const li = document.createElement("li");
  li.dataset.kind = kind;
  if (cls) li.className = cls;
  for (const [name, value] of cells) {
    const span = document.createElement("span");
    span.className = name;
    span.textContent = value;
    li.append(span);
  }
  addLog(li);
}

function log(e) {
  logLine(e.kind, /FAILED|DISCONNECTED/.test(e.kind) ? "failed" : "", [
    ["at", time(e.at)],
    ["id", "#" + e.id],
    ["kind", e.kind.toLowerCase().replace(/_/g, " ") + (e.target && e.target !== "UNSPECIFIED" ? " · " + e.target.toLowerCase() : "")],
    ["detail", describe(e)],
  ]);
}

function logNotice(message) {
  logLine("NOTICE", "notice", [["at", time(Date.now())], ["id", ""], ["kind", "dashboard"], ["detail", message]]);
}

/**
 * The final status of a server shutting down (already rendered): the drain says so, and the log
 * gets a line without an id (the id is the last event's, already shown).
 */
function showShutdown(e) {
  clearTimeout(state.refreshTimer);
  const badge = $("drain-badge");
  badge.dataset.draining = "true";
  badge.textContent = "shutting down";
  badge.className = "badge badge-bad";
  $("drain-state").textContent = "shutting down (its streams end; new work refused)";
  $("drain-state").className = "bad-text";
  logLine("SHUTDOWN", "", [
    ["at", time(e.at)],
    ["id", ""],
    ["kind", "shutting down"],
    ["detail", describe(e) + " · the server ended this stream (its final status)"],
  ]);
}

// ---------------------------------------------------------------------------------------------
// Rendering

function showGeneration(g) {
  text("generation", g.generation);
  $("hash").textContent = shortHash(g.content_hash);
  $("hash").title = g.content_hash || "";
  text("items", g.item_count);
  text("revision", g.store_revision);
  text("source", (g.source || "").toLowerCase() + (g.mode && g.mode !== "UNSPECIFIED" ? " · " + g.mode.toLowerCase() : ""));
  text("load", fmtMs(g.load_ms));
  text("loaded-at", time(g.loaded_at));
}

function render(s) {
  state.status = s;
  $("instance").textContent = s.instance_id;
  $("version").textContent = s.version ? "v" + s.version : "";
  const p = s.patterns;
  if (p) {
    if (p.current) showGeneration(p.current);
    const err = $("last-error");
    if (p.last_error) {
      err.textContent = p.last_error + " (" + p.consecutive_failures + " in a row, " + time(p.last_error_at) + ")";
      err.className = "bad-text";
    } else {
      err.textContent = "none";
      err.className = "";
    }
    $("loading").hidden = !p.loading;
    $("pinned").textContent = p.pinned ? "yes (automatic reloads held)" : "no";
    $("pinned").className = p.pinned ? "warn-text" : "";
    $("pin-badge").hidden = !p.pinned;
    text("pending", p.pending_changes);
    for (const g of [p.current, ...(p.retained || [])]) if (g) addPoint(g);
    fillRollback(p);
    drawChart();
  }
  if (s.drain) renderDrain(s.drain);
  if (s.bus) renderBus(s.bus);
  renderFleet(s);
}

function renderDrain(d) {
  const badge = $("drain-badge");
  badge.dataset.draining = String(d.draining);
  badge.textContent = d.draining ? "draining" : "serving";
  badge.className = "badge " + (d.draining ? "badge-bad" : "badge-ok");
  $("drain-state").textContent = d.draining ? "draining (new work refused)" : "serving";
  $("drain-state").className = d.draining ? "bad-text" : "ok-text";
  text("drain-since", d.draining ? time(d.since) : "");
  text("drain-reason", d.reason);
  text("in-flight", d.in_flight);
  text("open-streams", d.open_streams);
}

function renderBus(b) {
  const st = $("bus-state");
  if (!b.enabled) {
    st.textContent = "no bus configured";
    st.className = "muted";
  } else {
    st.textContent = b.connected ? "connected" : "disconnected";
    st.className = b.connected ? "ok-text" : "bad-text";
  }
  text("bus-channel", b.channel);
  const err = $("bus-error");
  err.textContent = b.last_error ? b.last_error + " (" + time(b.last_error_at) + ")" : "none";
  err.className = b.last_error ? "bad-text" : "";
  text("bus-reconnects", b.reconnects);
  text("bus-published", b.published + (b.publish_failures ? " (" + b.publish_failures + " failed)" : ""));
  const body = $("bus-outcomes").tBodies[0];
  body.replaceChildren();
  for (const [name, count] of [["received", b.received], ...b.outcomes]) {
    const tr = document.createElement("tr");
    const a = document.createElement("td");
    a.textContent = name.replace(/_/g, " ");
    const c = document.createElement("td");
    c.className = "num";
    c.textContent = count;
    tr.append(a, c);
    body.append(tr);
  }
}

function renderFleet(s) {
  const body = $("fleet-table").tBodies[0];
  const summary = $("fleet-summary");
  const note = $("fleet-note");
  body.replaceChildren();
  if (!s.fleet) {
    summary.textContent = "";
    note.textContent = "No fleet: this replica runs without a Redis bus (--redis-url).";
    return;
  }
  const f = s.fleet;
  const stragglers = f.members.filter((m) => !m.converged).length;
  summary.textContent = f.converged ? "converged" : stragglers + " straggler" + (stragglers === 1 ? "" : "s");
  summary.className = "chip " + (f.converged ? "chip-ok" : "chip-warn");
  note.textContent = f.error ? "Fleet view incomplete: " + f.error : f.members.length + " member" + (f.members.length === 1 ? "" : "s") + ", as this replica sees them";
  for (const m of f.members) {
    const tr = document.createElement("tr");
    tr.dataset.instance = m.instance_id;
    tr.className = (m.converged ? "" : "straggler") + (m.instance_id === s.instance_id ? " self" : "");
    const cells = [
      [m.instance_id, "mono"],
      [m.addr, "mono"],
      [m.generation, "num"],
      [shortHash(m.content_hash), "mono"],
      [m.converged ? "yes" : "no — straggler" + (m.last_error ? ": " + m.last_error : ""), m.converged ? "ok-text" : "warn-text"],
      [ago(m.last_seen) + (m.draining ? " · draining" : ""), ""],
    ];
    for (const [value, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = value;
      if (cls) td.className = cls;
      tr.append(td);
    }
    body.append(tr);
  }
}

function fillRollback(p) {
  const select = $("rollback-to");
  const current = p.current ? p.current.generation : 0;
  const options = (p.retained || []).filter((g) => g.generation !== current);
  const want = options.map((g) => String(g.generation)).join(",");
  if (select.dataset.options === want) return;
  select.dataset.options = want;
  select.replaceChildren();
  for (const g of options) {
    const o = document.createElement("option");
    o.value = g.generation;
    o.textContent = "generation " + g.generation + " · " + g.item_count + (g.item_count === 1 ? " item · " : " items · ") + time(g.loaded_at);
    select.append(o);
  }
  if (!options.length) {
    const o = document.createElement("option");
    o.value = "";
    o.textContent = "no retained generation";
    select.append(o);
  }
  $("act-rollback").disabled = !options.length;
}

// ---------------------------------------------------------------------------------------------
// The chart: load duration (bars, left scale) and item count (line, right scale) per generation.

function addPoint(g) {
  if (!g || !g.generation) return;
  state.points.set(g.generation, { gen: g.generation, t: g.loaded_at, ms: g.load_ms, items: g.item_count });
  if (state.points.size > MAX_POINTS) {
    const oldest = Math.min(...state.points.keys());
    state.points.delete(oldest);
  }
}

function svg(tag, attrs, parent) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.append(el);
  return el;
}

function drawChart() {
  const box = $("chart");
  const W = Math.max(300, box.clientWidth || 600);
  const H = 190;
  const pad = { l: 52, r: 52, t: 10, b: 26 };
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "reload durations and item counts" });
  const points = [...state.points.values()].sort((a, b) => a.gen - b.gen);
  if (!points.length) {
    svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, root).textContent = "no loads yet";
    box.replaceChildren(root);
    return;
  }
  const iw = W - pad.l - pad.r;
  const ih = H - pad.t - pad.b;
  const maxMs = Math.max(1, ...points.map((p) => p.ms));
  const maxItems = Math.max(1, ...points.map((p) => p.items));
  const step = iw / points.length;
  const y = (v, max) => pad.t + ih - (v / max) * ih;
  svg("line", { x1: pad.l, y1: pad.t + ih, x2: W - pad.r, y2: pad.t + ih, class: "axis" }, root);
  for (const f of [0.5, 1]) {
    svg("line", { x1: pad.l, y1: y(maxMs * f, maxMs), x2: W - pad.r, y2: y(maxMs * f, maxMs), class: "axis" }, root);
    svg("text", { x: pad.l - 6, y: y(maxMs * f, maxMs) + 4, "text-anchor": "end", class: "tick" }, root).textContent = fmtMs(maxMs * f);
    svg("text", { x: W - pad.r + 6, y: y(maxItems * f, maxItems) + 4, class: "tick" }, root).textContent = Math.round(maxItems * f);
  }
  const path = [];
  points.forEach((p, i) => {
    const x = pad.l + i * step;
    const bw = Math.max(2, Math.min(28, step * 0.6));
    const bar = svg("rect", { x: x + (step - bw) / 2, y: y(p.ms, maxMs), width: bw, height: Math.max(1, pad.t + ih - y(p.ms, maxMs)), class: "bar" }, root);
    svg("title", {}, bar).textContent = `generation ${p.gen}: ${fmtMs(p.ms)}, ${p.items} items, ${time(p.t)}`;
    const cx = x + step / 2;
    const cy = y(p.items, maxItems);
    path.push((i ? "L" : "M") + cx.toFixed(1) + " " + cy.toFixed(1));
    svg("circle", { cx, cy, r: 3, class: "dot" }, root);
    if (points.length <= 20 || i % Math.ceil(points.length / 20) === 0) {
      svg("text", { x: cx, y: H - 8, "text-anchor": "middle", class: "tick" }, root).textContent = "g" + p.gen;
    }
  });
  svg("path", { d: path.join(" "), class: "line" }, root);
  box.replaceChildren(root);
}

// ---------------------------------------------------------------------------------------------
// Actions

function confirmAction(message) {
  const dialog = $("confirm");
  $("confirm-text").textContent = message;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function act(message, path, body) {
  if (!(await confirmAction(message))) return;
  const out = $("action-result");
  out.hidden = false;
  out.className = "result";
  out.textContent = "…";
  const r = await api("POST", path, body);
  if (r.ok) {
    out.textContent = "OK\n" + JSON.stringify(r.data, null, 2);
  } else {
    out.className = "result error";
    const d = r.data || {};
    out.textContent = "HTTP " + r.status + " · " + (d.code || "ERROR") + "\n" + (d.message || "no answer");
  }
  refreshSoon();
}

function wireActions() {
  $("act-reload").onclick = () => {
    const full = $("reload-full").checked;
    act(full ? "Reload every pattern from the store (full)?" : "Reload the patterns that changed in the store?", "/api/actions/reload", { full, reason: "dashboard" });
  };
  $("act-rollback").onclick = () => {
    const to = Number($("rollback-to").value);
    act(`Roll back to generation ${to}? Automatic reloads are held (pinned) until the next manual Reload.`, "/api/actions/rollback", { to_generation: to, reason: "dashboard" });
  };
  $("act-drain-start").onclick = () =>
    act("Start draining this replica? It refuses new work and reports NOT_SERVING.", "/api/actions/drain/start", { reason: "dashboard" });
  $("act-drain-stop").onclick = () => act("Stop draining and serve again?", "/api/actions/drain/stop", {});
}

// ---------------------------------------------------------------------------------------------
// Start: who am I (sign in when credentials are required), then the stream.

async function start() {
  const r = await api("GET", "/api/session");
  if (r.status === 401) {
    if (state.source) state.source.close();
    $("main").hidden = true;
    $("login").hidden = false;
    return;
  }
  if (!r.ok) {
    $("fatal").hidden = false;
    $("fatal").textContent = (r.data && r.data.message) || "the dashboard is unavailable (HTTP " + r.status + "); retrying";
    setConn("reconnecting", "reconnecting…");
    setTimeout(start, 3000);
    return;
  }
  $("fatal").hidden = true;
  $("login").hidden = true;
  $("main").hidden = false;
  state.admin = r.data.scope === "admin";
  $("actions").hidden = !state.admin;
  $("user").textContent = r.data.name + " · " + r.data.scope;
  $("sign-out").hidden = !r.data.credentials_required;
  drawChart();
  connect();
}

function wireLogin() {
  $("login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const r = await api("POST", "/api/session", { token: $("token").value });
    $("token").value = "";
    if (r.ok) {
      $("login-error").textContent = "";
      start();
    } else {
      $("login-error").textContent = (r.data && r.data.message) || "sign-in failed (HTTP " + r.status + ")";
    }
  };
  $("sign-out").onclick = async () => {
    await api("DELETE", "/api/session");
    if (state.source) state.source.close();
    location.reload();
  };
}

document.addEventListener("DOMContentLoaded", () => {
  wireLogin();
  wireActions();
  window.addEventListener("resize", drawChart);
  setInterval(() => state.status && renderFleet(state.status), 5000);
  start();
});
