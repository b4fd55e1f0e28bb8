// Status page for loadbalancer: live updates from /lb/api/events (server-sent events), with
// /lb/api/status polling as the fallback; client management through /clients, each pool's
// backends through /lb/api/pools/{pool}/backends (add, weight, drain, remove), grouped under
// their pool; the routes table is routes.js's. The event
// stream starts with the balancer's recent history (the last events, five minutes of stats),
// so the log and the chart are filled as soon as the page opens.
"use strict";

const HISTORY = 300; // seconds of chart
const COLORS = ["#3867d6", "#20bf6b", "#8854d0", "#fa8231", "#0fb9b1", "#eb3b5a", "#4b6584"];
const state = { backends: [], history: [], last: null, lastId: 0, editing: null, polling: null, source: null, timers: {} };

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem("lb-token") || "";
const fmt = (n) => (n >= 1000 ? n.toLocaleString("en") : String(Math.round(n * 10) / 10));
const clock = (d = new Date()) => d.toTimeString().slice(0, 8);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (options.body) headers["Content-Type"] = "application/json";
  const res = await fetch(path, Object.assign({}, options, { headers }));
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = { message: text }; }
  if (res.status === 401 || res.status === 403) {
    showAuth(res.status === 401
      ? "The admin API needs a token: paste it in the field above."
      : "The admin API only answers this machine when no admin token is set.");
  }
  if (!res.ok) throw Object.assign(new Error(body?.message || res.statusText), { status: res.status });
  hideAuth();
  return body;
}

function showAuth(text) { const b = $("auth-banner"); b.textContent = text; b.hidden = false; }
function hideAuth() { $("auth-banner").hidden = true; }

// Runs `fn` once after a burst of calls (the history arrives as a burst of events).
function soon(name, fn, ms = 100) {
  clearTimeout(state.timers[name]);
  state.timers[name] = setTimeout(fn, ms);
}

function log(text, kind = "", at = new Date()) {
  const li = document.createElement("li");
  li.innerHTML = `<time>${clock(at)}</time><span class="${kind}">${esc(text)}</span>`;
  const list = $("log");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

function renderTotals(status) {
  state.status = status;
  const t = status.totals;
  const items = [
    ["requests", fmt(t.requests)], ["req/s (10 s)", fmt(t.requests_per_sec)],
    ["rate limited", fmt(t.rate_limited)], ["balancer errors", fmt(t.errors)],
    ["clients", fmt(status.clients.registered)], ["buckets", fmt(status.clients.tracked_buckets)],
  ];
  $("totals").innerHTML = items.map(([k, v]) => `<div class="stat"><b>${v}</b><span>${k}</span></div>`).join("");
  const up = Math.round(status.uptime_secs);
  $("meta").textContent = `v${status.version} · ${status.listen} · up ${Math.floor(up / 60)} min ${up % 60} s` +
    (status.draining ? " · draining" : "");
  renderCluster(status.cluster);
  $("strategy").textContent = `strategy: ${status.strategy.replace(/_/g, " ")}`;
}

function renderCluster(c) {
  const el = $("cluster");
  if (!c || c.mode === "single") {
    el.textContent = "single instance";
    el.className = "pill pill-quiet";
    return;
  }
  const version = (v) => (v == null ? "no config" : `config v${v}`);
  const others = c.instances.map((i) => `${i.name}${i.name === c.instance ? " (this)" : ""}: ${version(i.config_version)}`);
  // Behind Sentinel the master moves: say which one this instance is on.
  const master = c.topology === "sentinel" && c.server ? ` · master ${c.server}` : "";
  // With a shared configuration, instances running different versions (while a change travels).
  const versions = [...new Set(c.instances.map((i) => i.config_version).filter((v) => v != null))].sort((a, b) => a - b);
  const mismatch = versions.length > 1 ? ` · config versions differ: ${versions.map((v) => `v${v}`).join(", ")}` : "";
  el.textContent = `cluster · Redis ${c.redis}${master} · ${c.instances.length} instance${c.instances.length === 1 ? "" : "s"}${mismatch}`;
  el.dataset.mismatch = mismatch ? "yes" : "no";
  const server = c.server ? `Redis (${c.topology}) at ${c.server}` : `Redis (${c.topology})`;
  el.title = [server, ...others].join("\n");
  el.className = c.redis === "up" && !mismatch ? "pill pill-up" : "pill pill-down";
  el.dataset.redis = c.redis;
}

// A backend keeps its colour while others come and go.
function colorOf(name) {
  state.colors = state.colors || {};
  if (!(name in state.colors)) state.colors[name] = COLORS[Object.keys(state.colors).length % COLORS.length];
  return state.colors[name];
}

// The cards are kept and updated in place rather than drawn anew: events re-render them at any
// moment, and a card rebuilt under the operator would lose the weight being typed, the failure
// mode chosen, the focus, or a click between press and release. A card is rebuilt only when
// its controls change (a simulated backend's, or the pool's going once it is leaving).
// A backend's key (names are unique within a pool) and how the chart's legend names it.
const keyOf = (pool, name) => `${pool}/${name}`;
const labelOf = (b) => (b.pool === "default" ? b.name : keyOf(b.pool, b.name));

function renderBackends(backends, pools = []) {
  state.backends = backends;
  const list = $("backends");
  const old = new Map([...list.children].map((el) => [el.dataset.key, el]));
  const names = pools.map((p) => p.name);
  backends.forEach((b) => { if (!names.includes(b.pool)) names.push(b.pool); });
  const nodes = [];
  for (const pool of names) {
    nodes.push(poolHead(old, pool, pools.find((p) => p.name === pool)));
    for (const b of backends.filter((x) => x.pool === pool)) {
      const shape = `${b.simulated}|${b.leaving}`;
      let card = old.get(keyOf(b.pool, b.name));
      old.delete(keyOf(b.pool, b.name));
      if (!card || card.dataset.shape !== shape) {
        const fresh = newCard(b, shape);
        if (card) card.replaceWith(fresh);
        card = fresh;
      }
      updateCard(card, b);
      nodes.push(card);
    }
  }
  nodes.forEach((node, i) => { if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null); });
  old.forEach((el) => el.remove());
  $("backend-pool").innerHTML = pools.filter((p) => !p.retired)
    .map((p) => `<option${p.name === $("backend-pool").value ? " selected" : ""}>${esc(p.name)}</option>`).join("");
  $("legend").innerHTML = backends.map((b) => `<span><i style="background:${colorOf(keyOf(b.pool, b.name))}"></i>${esc(labelOf(b))}</span>`).join("") +
    `<span><i style="background:#c27c0e"></i>429/s</span><span><i style="background:#d64545"></i>errors/s</span>`;
}

// The heading of a pool's cards: its name and settings in effect, and how many are up.
function poolHead(old, pool, info) {
  const key = `pool:${pool}`;
  let head = old.get(key);
  old.delete(key);
  if (!head) {
    head = document.createElement("h3");
    head.className = "pool-head";
    Object.assign(head.dataset, { key, testid: "pool-head", pool });
  }
  const limit = info?.max_connections ? ` · ${info.max_connections} in flight per backend at most` : "";
  const about = info
    ? `${info.strategy.replace(/_/g, " ")} · probes ${info.health_path} · ${info.healthy}/${info.backends} up${limit}${info.retired ? " · removed, draining" : ""}`
    : "";
  const queued = head.querySelector('[data-testid="pool-queue"]')?.textContent ?? queueText(info?.queued ?? 0);
  setHtml(head, `${esc(pool)} <span>${esc(about)}</span><span class="queue" data-testid="pool-queue">${esc(queued)}</span>`);
  return head;
}

// A pool's queue as its heading says it: nothing while nobody waits.
const queueText = (n) => (n > 0 ? `${fmt(n)} waiting for a backend` : "");

// The stats event's queue lengths into the pool headings.
function onPoolStats(pools) {
  for (const p of pools) {
    const el = document.querySelector(`[data-testid="pool-head"][data-pool="${CSS.escape(p.pool)}"] [data-testid="pool-queue"]`);
    if (el) el.textContent = queueText(p.queued);
  }
}

// A card's fixed parts and controls; updateCard fills in the rest.
function newCard(b, shape) {
  const card = document.createElement("article");
  card.dataset.testid = "backend-card";
  card.dataset.name = b.name;
  card.dataset.in = b.pool;
  card.dataset.key = keyOf(b.pool, b.name);
  card.dataset.shape = shape;
  const name = esc(b.name);
  const sim = b.simulated ? `
    <div class="sim">
      <span class="mode">simulated: <b data-testid="sim-state"></b></span>
      <select aria-label="failure mode" data-testid="mode">
        <option>refuse</option><option>error</option><option>hang</option>
      </select>
      <button class="danger" data-testid="fail" data-action="fail" data-name="${name}">Fail</button>
      <button class="ok" data-testid="recover" data-action="recover" data-name="${name}">Recover</button>
    </div>` : "";
  const pool = b.leaving ? "" : `
    <div class="pool">
      <input type="number" min="1" max="1000" aria-label="weight of ${name}" data-testid="weight-input">
      <button class="ghost" data-pool="weight" data-name="${name}" data-testid="set-weight">Set weight</button>
      <button class="ghost" data-pool="drain" data-name="${name}" data-testid="drain"></button>
      <button class="danger" data-pool="remove" data-name="${name}" data-testid="remove">Remove</button>
    </div>`;
  card.innerHTML = `
    <div class="card-head"><strong>${name}</strong><span class="state" data-testid="state"></span></div>
    <div class="url"></div>
    <div class="numbers"></div>
    <div class="probe"></div>${sim}${pool}`;
  return card;
}

function updateCard(card, b) {
  const flag = b.leaving ? "leaving" : b.draining ? "draining" : b.ejected ? "ejected" : "";
  card.className = `card ${b.state} ${flag}`;
  card.style.borderTopColor = b.state === "up" && !flag ? colorOf(keyOf(b.pool, b.name)) : "";
  card.querySelector("[data-testid=state]").textContent = b.state;
  setHtml(card.querySelector(".url"), `${esc(b.url)} · <span data-testid="weight">weight ${b.weight}</span>` +
    (flag ? ` · <b data-testid="flag">${flag}</b>` : ""));
  setHtml(card.querySelector(".numbers"), `
    <div><span>requests</span>${fmt(b.requests)}</div>
    <div><span>failures</span>${fmt(b.failures)}</div>
    <div><span>in flight</span>${fmt(b.in_flight)}</div>`);
  card.querySelector(".probe").textContent = b.last_probe
    ? (b.last_probe.ok ? `probe ok in ${b.last_probe.latency_ms.toFixed(1)} ms` : `probe failed: ${b.last_probe.error}`)
    : "no probe yet";
  const sim = card.querySelector("[data-testid=sim-state]");
  if (sim) sim.textContent = b.simulation;
  // The weight field follows the pool until the operator types into it (see the input handler).
  const weight = card.querySelector("[data-testid=weight-input]");
  if (weight && !weight.dataset.edited) weight.value = String(b.weight);
  const drain = card.querySelector("[data-testid=drain]");
  if (drain) {
    drain.dataset.draining = String(b.draining);
    drain.textContent = b.draining ? "Undrain" : "Drain";
  }
}

// Sets an element's markup only when it changed (the numbers change often, the rest seldom).
const shownHtml = new WeakMap();
function setHtml(el, html) {
  if (shownHtml.get(el) === html) return;
  el.innerHTML = html;
  shownHtml.set(el, html);
}

async function refreshStatus() {
  try {
    const status = await api("/lb/api/status");
    renderTotals(status);
    renderBackends(status.backends, status.pools);
    renderRoutes(status.routes);
    renderLimited(status.clients.top_rejected);
  } catch (err) { if (!err.status) log(`status unavailable: ${err.message}`, "down"); }
}

// The clients refused most in the current minute, each with the route its requests took.
function renderLimited(top) {
  setHtml($("limited"), top.map((r) => `<tr data-testid="limited-row" data-client="${esc(r.client)}" data-route="${esc(r.route ?? "")}">
      <td>${esc(r.client)}</td><td>${r.route === null ? "—" : esc(r.route)}</td><td>${fmt(r.rejected)}</td></tr>`).join("")
    || `<tr><td colspan="3" class="probe">Nobody limited this minute.</td></tr>`);
}

async function refreshClients() {
  try {
    const clients = await api("/clients");
    $("clients").innerHTML = clients.map((c) => `<tr data-testid="client-row" data-id="${esc(c.client_id)}">
      <td>${esc(c.client_id)}</td><td>${esc(c.name)}</td><td>${fmt(c.capacity)}</td>
      <td>${fmt(c.rate_per_sec)}</td><td>${fmt(c.tokens)}</td>
      <td class="actions"><button class="ghost" data-edit="${esc(c.client_id)}">Edit</button><button class="danger" data-delete="${esc(c.client_id)}">Delete</button></td>
    </tr>`).join("") || `<tr><td colspan="6" class="probe">No registered clients.</td></tr>`;
    state.clients = clients;
  } catch (_) { /* shown by api() */ }
}

// Per-second points from successive stats events: backend request deltas, 429s and errors.
function onStats(s) {
  const prev = state.last;
  state.last = s;
  if (!prev) return;
  const point = {
    at: s.at_ms,
    // By pool and name: backends join and leave their pools.
    backends: Object.fromEntries(s.backends.map((b) => {
      const before = prev.backends.find((x) => x.backend === b.backend && x.pool === b.pool);
      return [keyOf(b.pool, b.backend), Math.max(0, b.requests - (before?.requests ?? b.requests))];
    })),
    limited: Math.max(0, s.rate_limited - prev.rate_limited),
    errors: Math.max(0, s.errors - prev.errors),
  };
  // New refusals: the most limited clients have changed.
  if (point.limited > 0) soon("status", refreshStatus, 200);
  onRouteStats(s.routes || [], prev.routes || []);
  onPoolStats(s.pools || []);
  state.history.push(point);
  if (state.history.length > HISTORY) state.history.shift();
  soon("chart", drawChart, 50);
  if (state.status) {
    const recent = state.history.slice(-10);
    const perSec = recent.reduce((sum, p) => sum + Object.values(p.backends).reduce((a, b) => a + b, 0) + p.limited + p.errors, 0) / recent.length;
    Object.assign(state.status.totals, { requests: s.requests, rate_limited: s.rate_limited, errors: s.errors, requests_per_sec: perSec });
    renderTotals(state.status);
  }
  document.querySelectorAll('[data-testid="backend-card"]').forEach((card) => {
    const b = s.backends.find((x) => x.backend === card.dataset.name && x.pool === card.dataset.in);
    if (!b) return;
    const nums = card.querySelectorAll(".numbers div");
    nums[0].lastChild.textContent = fmt(b.requests);
    nums[1].lastChild.textContent = fmt(b.failures);
    nums[2].lastChild.textContent = fmt(b.in_flight);
  });
}

function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const series = [];
  state.backends.forEach((b) => {
    const key = keyOf(b.pool, b.name);
    series.push({ color: colorOf(key), values: state.history.map((p) => p.backends[key] || 0) });
  });
  series.push({ color: "#c27c0e", values: state.history.map((p) => p.limited) });
  series.push({ color: "#d64545", values: state.history.map((p) => p.errors) });
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const left = 44, bottom = height - 20, top = 8;
  g.strokeStyle = "#e3e7ee"; g.fillStyle = "#6b7585"; g.font = "11px system-ui"; g.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const y = bottom - ((bottom - top) * k) / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(width, y); g.stroke();
    g.fillText(fmt((max * k) / 4), 4, y + 4);
  }
  g.fillText(`${HISTORY / 60} min ago`, left, height - 4);
  g.fillText("now", width - 24, height - 4);
  const step = (width - left) / (HISTORY - 1);
  const offset = HISTORY - state.history.length;
  for (const s of series) {
    g.strokeStyle = s.color; g.lineWidth = 2; g.beginPath();
    s.values.forEach((v, i) => {
      const x = left + (offset + i) * step, y = bottom - ((bottom - top) * v) / max;
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}

function describe(e) {
  switch (e.type) {
    case "backend_down": return [`${e.backend} is DOWN (${e.reason})`, "down"];
    case "backend_up": return [`${e.backend} is UP again (${e.reason})`, "up"];
    case "failover": return [`failover: ${e.from} → ${e.to} (${e.reason}) · request ${e.request_id}`, "warn"];
    case "request_failed": return [`${e.status} from ${e.backend} (${e.reason}) · request ${e.request_id}`, "down"];
    case "simulation": return [`simulation: ${e.pool && e.pool !== "default" ? e.pool + "/" : ""}${e.backend} ${e.state === "up" ? "recovers" : "fails: " + e.state}${e.manual ? " (by request)" : ""}`, e.state === "up" ? "up" : "warn"];
    case "client": return [`client ${e.client_id} ${e.action}`, ""];
    case "backend_added": return [`${e.backend} (${e.url}) added with weight ${e.weight}; joins on its first good probe`, "up"];
    case "backend_draining": return [e.draining ? `${e.backend} is draining: no new requests` : `${e.backend} takes requests again`, e.draining ? "warn" : "up"];
    case "backend_removed": return [`${e.backend} left the pool (${e.reason})`, "warn"];
    case "backend_ejected": return [e.ejected ? `${e.backend} EJECTED: ${e.reason}` : `${e.backend} is back: ${e.reason}`, e.ejected ? "down" : "up"];
    case "dns": return e.ok
      ? [`DNS: ${e.backend} (${e.url}) has members at ${e.addresses.join(", ") || "no address"}`, ""]
      : [`DNS lookup for ${e.backend} failed (${e.error}); its members at ${e.addresses.join(", ") || "no address"} stay`, "warn"];
    case "backend_weight": return [`${e.backend} now has weight ${e.weight}`, ""];
    case "pool": return [`pool ${e.pool} ${e.action}`, e.action === "removed" ? "warn" : ""];
    case "routes": return [`routes replaced: ${e.routes.join(", ") || "none"}`, ""];
    case "reload": return e.ok
      ? [`pool reloaded (${e.trigger}): added ${e.added.join(", ") || "none"}, removed ${e.removed.join(", ") || "none"}, changed ${e.changed.join(", ") || "none"}`, ""]
      : [`pool reload refused (${e.trigger}), nothing changed: ${e.error}`, "down"];
    case "config": return [e.action === "published" ? `configuration v${e.version} shared with the cluster` : `configuration v${e.version} from ${e.by} applied`, ""];
    case "redis": return [e.state === "up" ? `Redis is UP: limits shared again` : `Redis is DOWN (${e.reason}): limiting alone`, e.state];
    default: return null;
  }
}

function connect() {
  if (state.source) state.source.close();
  const url = "/lb/api/events" + (token() ? `?access_token=${encodeURIComponent(token())}` : "");
  const source = new EventSource(url);
  state.source = source;
  source.onopen = () => {
    $("live").textContent = "live"; $("live").className = "pill pill-live";
    if (state.polling) { clearInterval(state.polling); state.polling = null; }
    refreshStatus(); refreshClients();
  };
  source.onmessage = (msg) => {
    const event = JSON.parse(msg.data);
    // A new stream (a new token) starts with the history again: skip what was shown.
    if (event.id <= state.lastId) return;
    state.lastId = event.id;
    if (event.type === "stats") { onStats(event); return; }
    const line = describe(event);
    if (line) log(line[0], line[1], new Date(event.at_ms));
    if (event.type === "client") soon("clients", refreshClients); else soon("status", refreshStatus);
  };
  source.onerror = () => {
    $("live").textContent = "reconnecting…"; $("live").className = "pill pill-wait";
    if (!state.polling) state.polling = setInterval(refreshStatus, 2000);
  };
}

document.addEventListener("click", async (ev) => {
  const button = ev.target.closest("button");
  if (!button) return;
  if (button.dataset.action) {
    const card = button.closest(".card");
    const name = button.dataset.name;
    const pool = encodeURIComponent(card.dataset.in);
    const body = button.dataset.action === "fail" ? JSON.stringify({ mode: card.querySelector("select").value }) : undefined;
    button.disabled = true;
    try {
      await api(`/lb/api/simulation/${encodeURIComponent(name)}/${button.dataset.action}?pool=${pool}`, { method: "POST", body });
      await refreshStatus();
    } catch (err) { log(`${name}: ${err.message}`, "down"); } finally { button.disabled = false; }
  } else if (button.dataset.pool) {
    const name = button.dataset.name;
    const pool = button.closest(".card").dataset.in;
    const path = `/lb/api/pools/${encodeURIComponent(pool)}/backends/${encodeURIComponent(name)}`;
    const action = button.dataset.pool;
    button.disabled = true;
    try {
      if (action === "remove") await api(path, { method: "DELETE" });
      else {
        const body = action === "weight"
          ? { weight: Number(button.closest(".card").querySelector("[data-testid=weight-input]").value) }
          : { draining: button.dataset.draining !== "true" };
        await api(path, { method: "PATCH", body: JSON.stringify(body) });
        // Sent: the field follows the pool again.
        if (action === "weight") delete button.closest(".card").querySelector("[data-testid=weight-input]").dataset.edited;
      }
      $("backend-error").textContent = "";
      await refreshStatus();
    } catch (err) { $("backend-error").textContent = `${name}: ${err.message}`; } finally { button.disabled = false; }
  } else if (button.dataset.edit) {
    const c = state.clients.find((x) => x.client_id === button.dataset.edit);
    const form = $("client-form");
    form.client_id.value = c.client_id; form.client_id.readOnly = true;
    form.name.value = c.name || ""; form.capacity.value = c.capacity; form.rate_per_sec.value = c.rate_per_sec;
    state.editing = c.client_id; $("client-submit").textContent = "Save"; $("client-cancel").hidden = false;
  } else if (button.dataset.delete) {
    try { await api(`/clients/${encodeURIComponent(button.dataset.delete)}`, { method: "DELETE" }); await refreshClients(); }
    catch (err) { $("form-error").textContent = err.message; }
  }
});

function resetForm() {
  const form = $("client-form");
  form.reset(); form.client_id.readOnly = false; state.editing = null;
  $("client-submit").textContent = "Create"; $("client-cancel").hidden = true;
}

$("client-cancel").addEventListener("click", () => { resetForm(); $("form-error").textContent = ""; });

$("client-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const body = {};
  if (!state.editing) body.client_id = form.client_id.value.trim();
  body.name = form.name.value.trim() || null;
  const number = (text) => (text.trim() === "" ? undefined : Number(text));
  const capacity = number(form.capacity.value), rate = number(form.rate_per_sec.value);
  if (capacity !== undefined) body.capacity = Number.isFinite(capacity) ? capacity : form.capacity.value;
  if (rate !== undefined) body.rate_per_sec = Number.isFinite(rate) ? rate : form.rate_per_sec.value;
  try {
    if (state.editing) await api(`/clients/${encodeURIComponent(state.editing)}`, { method: "PUT", body: JSON.stringify(body) });
    else await api("/clients", { method: "POST", body: JSON.stringify(body) });
    $("form-error").textContent = "";
    resetForm();
    await refreshClients();
  } catch (err) { $("form-error").textContent = err.message; }
});

$("backend-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const body = { url: form.url.value.trim() };
  if (form.weight.value.trim()) body.weight = Number(form.weight.value) || form.weight.value;
  if (form.name.value.trim()) body.name = form.name.value.trim();
  try {
    const pool = encodeURIComponent($("backend-pool").value || "default");
    await api(`/lb/api/pools/${pool}/backends`, { method: "POST", body: JSON.stringify(body) });
    $("backend-error").textContent = "";
    form.reset();
    await refreshStatus();
  } catch (err) { $("backend-error").textContent = err.message; }
});

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("lb-token", $("token").value.trim());
  $("token").value = "";
  connect();
});

// A weight being typed is the operator's until sent: updates from the pool leave it alone.
const editWeight = (ev) => {
  if (ev.target.matches("[data-testid=weight-input]")) ev.target.dataset.edited = "1";
};
document.addEventListener("input", editWeight);
document.addEventListener("change", editWeight);
window.addEventListener("resize", drawChart);
refreshStatus();
refreshClients();
connect();
