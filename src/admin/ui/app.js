// aigate console: one ES module, no build step, no network beyond this
// listener. Session cookie auth (HttpOnly: this script never sees it);
// writes send JSON, which the API requires of sessions (CSRF).

const $ = (s, root = document) => root.querySelector(s);
const pages = ["overview", "keys", "requests", "models", "config"];
const SECONDS = 120;
// Per-second buckets of the live feed: requests, errors, tokens.
const live = { start: Math.floor(Date.now() / 1000), req: [], err: [], tok: [] };

async function api(path, opts = {}) {
  const init = { credentials: "same-origin", ...opts, headers: { ...(opts.headers || {}) } };
  if (opts.body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  const body = text ? JSON.parse(text) : {};
  if (r.status === 401 && path !== "/admin/login") showLogin();
  if (!r.ok) throw new Error(body?.error?.message || `HTTP ${r.status}`);
  return body;
}

function text(el, v) { el.textContent = v ?? "–"; }
function cell(row, v, cls) { const td = row.insertCell(); td.textContent = v ?? "–"; if (cls) td.className = cls; return td; }
function usd(v) { return v == null ? "–" : `$${Number(v).toFixed(4)}`; }

// A sparkline: an SVG polyline over the last SECONDS values.
function spark(svg, values) {
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i * 120) / (SECONDS - 1)},${30 - (v / max) * 28 - 1}`).join(" ");
  svg.innerHTML = `<polyline points="${pts}"></polyline>`;
}

function bucket(kind, n) {
  const sec = Math.floor(Date.now() / 1000);
  const arr = live[kind];
  const i = sec - live.start;
  while (arr.length <= i) arr.push(0);
  arr[i] += n;
}

function window_(arr) {
  const now = Math.floor(Date.now() / 1000) - live.start;
  const out = [];
  for (let s = now - SECONDS + 1; s <= now; s++) out.push(s >= 0 ? arr[s] || 0 : 0);
  return out;
}

function drawLive() {
  const req = window_(live.req), err = window_(live.err), tok = window_(live.tok);
  // Rates over the last 10 whole seconds.
  const last = (a) => a.slice(-11, -1).reduce((x, y) => x + y, 0) / 10;
  text($("#t-rps"), last(req).toFixed(1));
  text($("#t-tps"), last(tok).toFixed(0));
  spark($("#c-rps"), req);
  spark($("#c-err"), err);
  spark($("#c-tps"), tok);
}

let feed;
function startFeed() {
  if (feed) return;
  feed = new EventSource("/admin/events");
  // Live numbers from the per-second totals (exact at any rate); request
  // events are a sample for the live tail (at most 20 a second).
  feed.addEventListener("totals", (ev) => {
    const t = JSON.parse(ev.data).data;
    bucket("req", t.requests);
    bucket("err", t.errors);
    bucket("tok", t.tokens);
  });
  feed.addEventListener("request", (ev) => {
    const e = JSON.parse(ev.data).data;
    if (current() === "requests" && !filtering()) prependRequest(e);
  });
  feed.addEventListener("key", () => current() === "keys" && loadKeys());
  // The server ends the feed when the session that opened it expires.
  feed.addEventListener("expired", () => { feed.close(); feed = undefined; showLogin(); });
}

async function loadOverview() {
  const [h, d, p] = await Promise.all([api("/admin/stats?window=1h"), api("/admin/stats?window=24h"), api("/admin/providers")]);
  const t = h.total;
  text($("#t-err"), `${(t.error_rate * 100).toFixed(1)}%`);
  // Whole ms from 10 up: "71 / 165 ms" stays on one line in its tile.
  const ms = (v) => (v >= 10 ? Math.round(v) : v);
  text($("#t-lat"), t.p50_ms == null ? "–" : `${ms(t.p50_ms)} / ${ms(t.p95_ms)} ms`);
  text($("#t-req"), t.requests);
  text($("#t-cost"), usd(d.total.cost_usd));
  const tb = $("#providers tbody");
  tb.replaceChildren();
  for (const pr of p.providers) {
    const row = tb.insertRow();
    cell(row, pr.name);
    cell(row, pr.usable ? "usable" : `unusable: ${pr.why}`, pr.usable ? "good" : "bad");
    cell(row, pr.in_flight);
    cell(row, `${pr.resting_credentials} of ${pr.credentials.length}`);
    cell(row, pr.recent ? `${pr.recent.errors} of ${pr.recent.requests}` : "0 of 0");
  }
}

// Usage and spend of one key over 24 hourly buckets: bars = requests, line =
// cost (each scaled to its own maximum), plain SVG like the sparklines.
function usageChart(id, series) {
  // Parsed from markup: the HTML parser puts <svg> in the SVG namespace.
  const box = document.createElement("span");
  box.innerHTML = '<svg class="usage" viewBox="0 0 120 30" role="img"></svg>';
  const svg = box.firstChild;
  const req = series?.requests || [], cost = series?.cost_usd || [];
  const n = req.length || 24, w = 120 / n;
  const rmax = Math.max(1, ...req), cmax = Math.max(1e-12, ...cost);
  const total = (a) => a.reduce((x, y) => x + y, 0);
  svg.setAttribute("aria-label", `${id}: ${total(req)} requests, ${usd(total(cost))} in the last 24 hours, hour by hour`);
  svg.innerHTML = req.map((v, i) => `<rect x="${(i * w + 0.5).toFixed(2)}" y="${(30 - (v / rmax) * 28).toFixed(2)}" width="${Math.max(w - 1, 0.5).toFixed(2)}" height="${((v / rmax) * 28).toFixed(2)}"></rect>`).join("")
    + (cost.length ? `<polyline points="${cost.map((c, i) => `${(i * w + w / 2).toFixed(2)},${(29 - (c / cmax) * 27).toFixed(2)}`).join(" ")}"></polyline>` : "");
  return [svg, total(req), total(cost)];
}

async function loadKeys() {
  const [{ keys }, day] = await Promise.all([api("/admin/keys"), api("/admin/stats?window=24h&buckets=24")]);
  const tb = $("#key-table tbody");
  tb.replaceChildren();
  for (const k of keys) {
    const row = tb.insertRow();
    row.dataset.id = k.id;
    cell(row, k.id + (k.disabled ? " (disabled)" : ""));
    cell(row, k.source);
    cell(row, k.models ? k.models.join(", ") : "all");
    const actions = () => row.insertCell();
    if (k.read_only) {
      cell(row, k.rpm); cell(row, k.tpm);
    } else {
      for (const f of ["rpm", "tpm"]) {
        const td = row.insertCell();
        const inp = document.createElement("input");
        inp.value = k[f] ?? ""; inp.setAttribute("aria-label", `${f} of ${k.id}`); inp.name = f;
        td.append(inp);
      }
    }
    cell(row, `${k.usage.today.requests} req, ${usd(k.usage.today.cost_usd)}`);
    cell(row, `${k.usage.month.requests} req, ${usd(k.usage.month.cost_usd)}`);
    cell(row, k.remaining_budget_usd.daily == null ? "no budget" : usd(k.remaining_budget_usd.daily));
    const [chart, n, spent] = usageChart(k.id, day.series.keys[k.id]);
    const sum = document.createElement("span");
    sum.className = "usage-sum"; sum.textContent = `${n} req, ${usd(spent)}`;
    row.insertCell().append(chart, sum);
    const td = actions();
    td.className = "actions";
    if (k.read_only) { td.textContent = "config file"; continue; }
    const save = button("Save", async () => {
      const n = (v) => (v === "" ? null : Number(v));
      await act(() => api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: "PATCH", body: { rpm: n($("input[name=rpm]", row).value), tpm: n($("input[name=tpm]", row).value) } }));
    });
    const toggle = button(k.disabled ? "Enable" : "Disable", () => act(() => api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: "PATCH", body: { disabled: !k.disabled } })));
    const revoke = button("Revoke", () => confirm(`Revoke key ${k.id}? Clients using it get 401 at once.`) && act(() => api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE", headers: { "x-aigate-csrf": "1" } })));
    revoke.dataset.action = "revoke";
    td.append(save, " ", toggle, " ", revoke);
  }
}

function button(label, onclick) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = label; b.addEventListener("click", onclick);
  return b;
}

async function act(f) {
  text($("#keys-error"), "");
  try { await f(); } catch (e) { text($("#keys-error"), e.message); }
  await loadKeys();
}

function filtering() {
  return [...new FormData($("#filter-form")).values()].some((v) => v !== "");
}

// Every field of one log entry, in a panel under the table.
const FIELDS = ["request_id", "time_ms", "key", "ingress", "provider", "model", "upstream_model", "status", "attempts", "duration_ms", "ttfb_ms", "tokens_in", "tokens_out", "tokens_estimated", "cost_usd", "error", "seq"];
let detailRow;
function showDetail(row, e) {
  const dl = $("#req-fields");
  dl.replaceChildren();
  const keys = [...FIELDS, ...Object.keys(e).filter((k) => !FIELDS.includes(k))];
  for (const k of keys) {
    if (!(k in e)) continue;
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = k === "time_ms" ? `${new Date(e.time_ms).toISOString()} (${e.time_ms})` : e[k] === null ? "–" : String(e[k]);
    dd.dataset.field = k;
    dl.append(dt, dd);
  }
  text($("#req-detail-h"), `Request ${e.request_id}`);
  if (detailRow) detailRow.removeAttribute("aria-selected");
  detailRow = row;
  row.setAttribute("aria-selected", "true");
  $("#req-detail").hidden = false;
  $("#req-close").focus();
}

function hideDetail() {
  $("#req-detail").hidden = true;
  if (detailRow) { detailRow.removeAttribute("aria-selected"); if (detailRow.isConnected) detailRow.focus(); }
  detailRow = undefined;
}

function requestRow(tb, e, top) {
  const row = top ? tb.insertRow(0) : tb.insertRow();
  // A row is a control: focusable, opened by click, Enter or Space.
  row.tabIndex = 0;
  row.dataset.id = e.request_id;
  row.setAttribute("aria-label", `${e.status} ${e.model ?? ""} ${e.request_id}: show details`);
  row.addEventListener("click", () => showDetail(row, e));
  row.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); showDetail(row, e); }
  });
  cell(row, new Date(e.time_ms).toLocaleTimeString());
  cell(row, e.key); cell(row, e.model); cell(row, e.provider);
  cell(row, e.status, e.status >= 400 || e.status === 0 ? "bad" : "");
  cell(row, e.duration_ms); cell(row, e.tokens_in + e.tokens_out); cell(row, usd(e.cost_usd)); cell(row, e.error);
}

function prependRequest(e) {
  const tb = $("#req-table tbody");
  requestRow(tb, e, true);
  while (tb.rows.length > 100) tb.deleteRow(-1);
}

async function loadRequests() {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData($("#filter-form"))) if (v !== "") q.set(k, v);
  q.set("limit", "100");
  const r = await api(`/admin/requests?${q}`);
  text($("#req-count"), `${r.matched} matching requests in the log (newest 100 shown)`);
  const tb = $("#req-table tbody");
  tb.replaceChildren();
  for (const e of r.requests) requestRow(tb, e, false);
}

// `rpm 7/10, rpd 47/50` (left/limit); "no limits" when the target has none.
function quotaText(q) {
  if (!q) return "no limits";
  return ["rpm", "rph", "rpd", "tpm"].filter((u) => q[u]).map((u) => `${u} ${q[u].left ?? "?"}/${q[u].limit}`).join(", ");
}

async function loadModels() {
  const { models } = await api("/admin/models");
  const tb = $("#model-table tbody");
  tb.replaceChildren();
  for (const m of models) {
    m.targets.forEach((t, i) => {
      const row = tb.insertRow();
      cell(row, i === 0 ? m.name : "");
      cell(row, i === 0 ? m.strategy : "");
      cell(row, t.provider);
      cell(row, t.model ?? "(as asked)");
      cell(row, t.usable ? "usable" : `unusable: ${t.why}`, t.usable ? "good" : "bad");
      cell(row, `${t.resting_credentials} of ${t.credentials.length}`);
      cell(row, quotaText(t.quota));
      cell(row, t.price ? `$${t.price.input} / $${t.price.output}` : "unpriced");
    });
  }
}

async function loadConfig() {
  const c = await api("/admin/config");
  text($("#config-meta"), `${c.source}, loaded ${c.loaded_at}, ${c.reload_count} reloads`);
  text($("#config-text"), JSON.stringify(c.config, null, 2));
}

function current() {
  const h = location.hash.slice(1);
  return pages.includes(h) ? h : "overview";
}

async function show() {
  const page = current();
  for (const p of pages) $(`#${p}`).hidden = p !== page;
  // A new key is shown once: gone from the page once the user leaves Keys.
  if (page !== "keys") { $("#new-key").hidden = true; $("#new-key-value").textContent = ""; }
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    if (page === "overview") await loadOverview();
    if (page === "keys") await loadKeys();
    if (page === "requests") await loadRequests();
    if (page === "models") await loadModels();
    if (page === "config") await loadConfig();
  } catch (e) { console.warn(e); }
}

function showLogin() {
  $("#nav").hidden = true;
  for (const p of pages) $(`#${p}`).hidden = true;
  $("#login").hidden = false;
  $("#login-form input[name=name]").focus();
}

async function start() {
  $("#login").hidden = true;
  $("#nav").hidden = false;
  startFeed();
  await show();
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    await api("/admin/login", { method: "POST", body: { name: f.get("name"), password: f.get("password") } });
    ev.target.reset();
    text($("#login-error"), "");
    await start();
  } catch (e) { text($("#login-error"), e.message); }
});

$("#logout").addEventListener("click", async () => {
  await api("/admin/logout", { method: "POST", body: {} });
  if (feed) { feed.close(); feed = undefined; }
  showLogin();
});

$("#key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = {};
  for (const [k, v] of new FormData(ev.target)) {
    if (v === "") continue;
    body[k] = k === "models" ? v.split(",").map((s) => s.trim()).filter(Boolean) : k === "id" ? v : Number(v);
  }
  await act(async () => {
    const made = await api("/admin/keys", { method: "POST", body });
    text($("#new-key-value"), made.key);
    $("#new-key").hidden = false;
    ev.target.reset();
  });
});

$("#reload").addEventListener("click", async () => {
  text($("#reload-result"), "reloading…");
  const r = await fetch("/admin/reload", { method: "POST", credentials: "same-origin", headers: { "x-aigate-csrf": "1" } });
  const body = await r.json();
  text($("#reload-result"), body.ok ? body.message : `refused:\n${(body.problems || [body?.error?.message]).join("\n")}`);
  await loadConfig();
});

$("#filter-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadRequests(); });
$("#req-close").addEventListener("click", hideDetail);
$("#req-detail").addEventListener("keydown", (ev) => { if (ev.key === "Escape") hideDetail(); });
window.addEventListener("hashchange", show);
setInterval(() => { drawLive(); }, 1000);
setInterval(() => { if (!$("#nav").hidden && current() === "overview") loadOverview().catch(() => {}); }, 5000);

api("/admin/session").then(start, () => showLogin());
