// The routes table of the status page: each route's matchers, its pool, and requests and 429s
// per second (from the once-a-second stats events, the last ten seconds) with the totals so
// far. app.js calls renderRoutes with the status's routes and onRouteStats with each stats
// event's; the table is hidden while there are no routes.
"use strict";

const routeRates = {}; // route name -> [{requests, limited}] per second, the last ten

function matchers(r) {
  const parts = [];
  if (r.hosts && r.hosts.length) parts.push(`host ${r.hosts.join(", ")}`);
  if (r.path_prefix) parts.push(`path ${r.path_prefix}${r.strip_prefix ? " (stripped)" : ""}`);
  if (r.methods && r.methods.length) parts.push(r.methods.join(" "));
  for (const [name, value] of Object.entries(r.headers || {})) parts.push(`${name}: ${value}`);
  if (r.priority) parts.push(`priority ${r.priority}`);
  return parts.join(" · ") || "every request";
}

function limitsOf(r) {
  const cost = r.cost ?? 1;
  const own = r.limits ? ` · ${r.limits.capacity} + ${r.limits.rate_per_sec}/s per client` : "";
  return `cost ${cost}${own}`;
}

function perSecond(name, field) {
  const points = routeRates[name] || [];
  return points.length ? points.reduce((sum, p) => sum + p[field], 0) / points.length : 0;
}

// Rows are kept and updated in place, like the backend cards.
function renderRoutes(routes = []) {
  $("routes-panel").hidden = routes.length === 0;
  const body = $("routes");
  const old = new Map([...body.children].map((row) => [row.dataset.route, row]));
  routes.forEach((r, i) => {
    let row = old.get(r.name);
    old.delete(r.name);
    if (!row) {
      row = document.createElement("tr");
      Object.assign(row.dataset, { route: r.name, testid: "route-row" });
      row.innerHTML = `<td></td><td></td><td></td><td></td><td data-testid="route-rps"></td>
        <td data-testid="route-limited"></td><td data-testid="route-requests"></td><td data-testid="route-429"></td>`;
    }
    const cells = row.children;
    cells[0].textContent = r.name;
    cells[1].textContent = matchers(r);
    cells[2].textContent = r.pool;
    cells[3].textContent = limitsOf(r);
    showCounts(row, r.name, r.requests, r.rate_limited);
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
  old.forEach((row) => row.remove());
}

function showCounts(row, name, requests, limited) {
  const cells = row.children;
  cells[4].textContent = fmt(perSecond(name, "requests"));
  cells[5].textContent = fmt(perSecond(name, "limited"));
  cells[6].textContent = fmt(requests);
  cells[7].textContent = fmt(limited);
}

// One stats event's routes against the one before.
function onRouteStats(routes, before) {
  for (const r of routes) {
    const prev = before.find((x) => x.route === r.route);
    const points = (routeRates[r.route] = routeRates[r.route] || []);
    points.push({
      requests: Math.max(0, r.requests - (prev?.requests ?? r.requests)),
      limited: Math.max(0, r.rate_limited - (prev?.rate_limited ?? r.rate_limited)),
    });
    if (points.length > 10) points.shift();
    const row = document.querySelector(`[data-testid=route-row][data-route="${CSS.escape(r.route)}"]`);
    if (row) showCounts(row, r.route, r.requests, r.rate_limited);
  }
}
