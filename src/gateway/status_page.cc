// See status_page.h. The page is plain HTML, CSS and JavaScript in one raw string: no
// build step, no framework, nothing fetched but the gateway's own endpoints.
#include "gateway/status_page.h"

namespace infermesh::gateway {
namespace {

constexpr std::string_view kPage = R"IMHTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>infermesh gateway</title>
<style>
  :root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --ok:#12805c; --bad:#c4320a;
          --warn:#b54708; --bg:#f8f9fb; --card:#fff; --accent:#3559e0; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
         color:var(--fg); background:var(--bg); }
  header { display:flex; gap:24px; align-items:baseline; padding:14px 20px;
           background:var(--card); border-bottom:1px solid var(--line); flex-wrap:wrap; }
  header h1 { font-size:17px; margin:0; }
  header .kv { color:var(--muted); }
  header .kv b { color:var(--fg); }
  #error { color:var(--bad); font-weight:600; }
  main { padding:16px 20px; display:grid; gap:16px; }
  .card { background:var(--card); border:1px solid var(--line); border-radius:8px;
          padding:12px 14px; }
  .card h2 { font-size:13px; text-transform:uppercase; letter-spacing:.04em;
             color:var(--muted); margin:0 0 8px; }
  .charts { display:grid; grid-template-columns:repeat(auto-fit, minmax(260px, 1fr)); gap:16px; }
  .chart .value { font-size:22px; font-weight:600; }
  .chart .unit { color:var(--muted); font-size:12px; margin-left:4px; }
  canvas { width:100%; height:90px; display:block; margin-top:6px; }
  table { width:100%; border-collapse:collapse; }
  th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line);
           white-space:nowrap; }
  th { color:var(--muted); font-weight:500; font-size:12px; }
  td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
  tr.down td { color:var(--bad); background:#fff4ed; }
  .pill { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px;
          font-weight:600; background:#ecfdf3; color:var(--ok); }
  tr.down .pill, .pill.bad { background:#fee4e2; color:var(--bad); }
  .pill.warn { background:#fffaeb; color:var(--warn); }
  .bar { position:relative; width:180px; height:10px; background:var(--line); border-radius:5px;
         overflow:hidden; display:inline-block; vertical-align:middle; }
  .bar > span { position:absolute; left:0; top:0; bottom:0; background:var(--accent); }
  .bar.done > span { background:var(--ok); }
  .bar.failed > span { background:var(--bad); }
  .muted { color:var(--muted); }
</style>
</head>
<body>
<header>
  <h1>infermesh gateway</h1>
  <span class="kv">workers ready <b id="h-workers">–</b></span>
  <span class="kv">concurrency limit <b id="h-limit">–</b> (in flight <b id="h-inflight">–</b>)</span>
  <span class="kv">refused by the limiter <b id="h-rejected">–</b></span>
  <span class="kv">updated <b id="updated">never</b></span>
  <span id="error"></span>
</header>
<main>
  <section class="charts">
    <div class="card chart"><h2>Throughput</h2>
      <span class="value" id="v-throughput">–</span><span class="unit">requests/s</span>
      <canvas id="c-throughput"></canvas></div>
    <div class="card chart"><h2>Latency p50 / p99</h2>
      <span class="value" id="v-p50" style="color:#3559e0">–</span><span class="unit">ms p50</span>
      <span class="value" id="v-p99" style="color:#c4320a">–</span><span class="unit">ms p99</span>
      <canvas id="c-latency"></canvas></div>
    <div class="card chart"><h2>Cache hit rate (gateway tier)</h2>
      <span class="value" id="v-hit">–</span><span class="unit">%</span>
      <canvas id="c-hit"></canvas></div>
    <div class="card chart"><h2>Concurrency limit</h2>
      <span class="value" id="v-limit" style="color:#3559e0">–</span><span class="unit">limit</span>
      <span class="value" id="v-inflight" style="color:#b54708">–</span><span class="unit">in flight</span>
      <canvas id="c-limit"></canvas></div>
  </section>
  <section class="card"><h2>Workers</h2>
    <table id="workers"><thead><tr>
      <th>worker</th><th>state</th><th>circuit</th><th class="num">outstanding tokens</th>
      <th class="num">sub-batches sent</th><th class="num">failures</th>
      <th class="num">back-pressure (429)</th><th class="num">max batch</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section class="card"><h2>Jobs</h2>
    <table id="jobs"><thead><tr>
      <th>job</th><th>class</th><th>state</th><th>progress</th><th class="num">items</th>
      <th>updated</th><th>error</th>
    </tr></thead><tbody></tbody></table>
    <div id="jobs-note" class="muted"></div>
  </section>
</main>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const key = params.get("key");
const interval = Math.max(200, Number(params.get("interval")) || 1000);
const headers = key ? { Authorization: "Bearer " + key } : {};
const KEEP = 180;
const ROUTES = new Set(["/embed", "/v1/embeddings", "/infer", "/v2/models/{model}/infer",
                        "/tokenize"]);
const series = { throughput: [], p50: [], p99: [], hit: [], limit: [], inflight: [] };
const state = { polls: 0, errors: 0, series };
window.__infermesh = state;
let prev = null;

function push(name, v) { const s = series[name]; s.push(v); if (s.length > KEEP) s.shift(); }
function text(id, v) { document.getElementById(id).textContent = v; }
function fmt(v, digits) { return v === null || !isFinite(v) ? "–" : v.toFixed(digits); }
function el(tag, attrs, children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children || []) e.appendChild(c);
  return e;
}

// Sums over the inference routes: requests, and the latency histogram's cumulative buckets.
function parseMetrics(body) {
  let requests = 0;
  const buckets = new Map();
  for (const line of body.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}\s+(\S+)$/);
    if (!m) continue;
    const labels = {};
    for (const p of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]] = p[2];
    if (!ROUTES.has(labels.route)) continue;
    const v = Number(m[3]);
    if (m[1] === "infermesh_http_requests_total") requests += v;
    if (m[1] === "infermesh_http_request_duration_seconds_bucket") {
      const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
      buckets.set(le, (buckets.get(le) || 0) + v);
    }
  }
  return { requests, buckets };
}

// The q-quantile of the requests between two scrapes, interpolated within its bucket.
function quantile(q, before, after) {
  const les = [...after.keys()].sort((a, b) => a - b);
  const cum = les.map(le => after.get(le) - (before.get(le) || 0));
  const total = cum.length ? cum[cum.length - 1] : 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  for (let i = 0; i < les.length; i++) {
    if (cum[i] < rank) continue;
    if (les[i] === Infinity) return i > 0 ? les[i - 1] : null;
    const lo = i > 0 ? les[i - 1] : 0, below = i > 0 ? cum[i - 1] : 0;
    const inside = cum[i] - below;
    return lo + (les[i] - lo) * (inside > 0 ? (rank - below) / inside : 1);
  }
  return null;
}

function draw(id, lines) {
  const c = document.getElementById(id);
  const w = c.clientWidth, h = c.clientHeight, dpr = window.devicePixelRatio || 1;
  if (c.width !== w * dpr) { c.width = w * dpr; c.height = h * dpr; }
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  let max = 0;
  for (const l of lines) for (const v of l.data) if (v !== null && v > max) max = v;
  max = max > 0 ? max * 1.15 : 1;
  g.strokeStyle = "#e4e7ec"; g.lineWidth = 1;
  g.beginPath(); g.moveTo(0, h - 0.5); g.lineTo(w, h - 0.5); g.stroke();
  g.fillStyle = "#667085"; g.font = "11px system-ui, sans-serif";
  g.fillText(max >= 10 ? max.toFixed(0) : max.toFixed(2), 2, 11);
  // The x axis spans at least a minute of polls, so a new page shows lines, not dots.
  const span = Math.min(KEEP, Math.max(60, ...lines.map(l => l.data.length)));
  for (const l of lines) {
    g.strokeStyle = l.color; g.lineWidth = 1.8; g.beginPath();
    let started = false;
    l.data.forEach((v, i) => {
      if (v === null) { started = false; return; }
      const x = w - (l.data.length - 1 - i) * (w / (span - 1));
      const y = h - (v / max) * (h - 14) - 1;
      if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
    });
    g.stroke();
  }
}

function renderWorkers(stats) {
  const body = document.querySelector("#workers tbody");
  body.replaceChildren();
  for (const w of stats.circuit_breakers || []) {
    const down = !w.ready || w.state !== "closed" || w.ejected || w.drained;
    const status = w.drained ? "drained" : w.ejected ? "ejected" : w.ready ? "ready" : "down";
    const circuitClass = w.state === "closed" ? "pill" : w.state === "open" ? "pill bad" : "pill warn";
    body.appendChild(el("tr", { class: down ? "down" : "up", "data-node": w.node,
                                "data-state": status, "data-circuit": w.state }, [
      el("td", { text: w.node }),
      el("td", {}, [el("span", { class: "pill", text: status })]),
      el("td", {}, [el("span", { class: circuitClass, text: w.state })]),
      el("td", { class: "num", text: fmt(w.outstanding_tokens, 0) }),
      el("td", { class: "num", text: String(w.sub_batches_sent) }),
      el("td", { class: "num", text: String(w.failures) }),
      el("td", { class: "num", text: String(w.backpressure) }),
      el("td", { class: "num", text: String(w.max_batch) }),
    ]));
  }
  const ready = (stats.circuit_breakers || []).filter(w => w.ready).length;
  text("h-workers", ready + " / " + (stats.total_workers || 0));
}

function renderJobs(resp, body) {
  const tbody = document.querySelector("#jobs tbody");
  const note = document.getElementById("jobs-note");
  if (!resp.ok) {
    tbody.replaceChildren();
    note.textContent = (body && body.error) || ("the job service answered " + resp.status);
    return;
  }
  const jobs = body.jobs || [];
  note.textContent = jobs.length ? "" : "no jobs yet";
  tbody.replaceChildren();
  for (const j of jobs) {
    const done = j.progress ? j.progress.done : 0, total = j.progress ? j.progress.total : 0;
    const pct = j.state === "succeeded" ? 100 : total > 0 ? Math.min(100, 100 * done / total) : 0;
    const bar = el("span", { class: "bar " + (j.state === "succeeded" ? "done"
                                               : j.state === "failed" ? "failed" : "") },
                   [el("span", { style: "width:" + pct.toFixed(1) + "%" })]);
    tbody.appendChild(el("tr", { "data-job": j.id, "data-state": j.state,
                                 "data-progress": pct.toFixed(1) }, [
      el("td", { text: j.id }), el("td", { text: j.class }),
      el("td", {}, [el("span", { class: j.state === "failed" || j.state === "cancelled"
                                   ? "pill bad" : j.state === "succeeded" ? "pill" : "pill warn",
                                 text: j.state })]),
      el("td", {}, [bar, el("span", { class: "muted", text: " " + pct.toFixed(0) + "%" })]),
      el("td", { class: "num", text: total > 0 ? done + " / " + total : String(done) }),
      el("td", { class: "muted", text: j.updated || "" }),
      el("td", { class: "muted", text: j.error || "" }),
    ]));
  }
}

async function poll() {
  try {
    const [s, m] = await Promise.all([
      fetch("/stats", { headers, cache: "no-store" }),
      fetch("/metrics", { headers, cache: "no-store" }),
    ]);
    if (!s.ok) throw new Error("/stats answered " + s.status);
    if (!m.ok) throw new Error("/metrics answered " + m.status);
    const stats = await s.json();
    const now = performance.now();
    const cur = { t: now, ...parseMetrics(await m.text()),
                  hits: stats.cache ? stats.cache.hits : 0,
                  misses: stats.cache ? stats.cache.misses : 0 };
    if (prev) {
      const dt = (cur.t - prev.t) / 1000;
      push("throughput", Math.max(0, (cur.requests - prev.requests) / dt));
      const p50 = quantile(0.5, prev.buckets, cur.buckets);
      const p99 = quantile(0.99, prev.buckets, cur.buckets);
      push("p50", p50 === null ? null : p50 * 1000);
      push("p99", p99 === null ? null : p99 * 1000);
      const lookups = (cur.hits - prev.hits) + (cur.misses - prev.misses);
      push("hit", lookups > 0 ? 100 * (cur.hits - prev.hits) / lookups : null);
    }
    prev = cur;
    const lim = stats.limiter || {};
    push("limit", lim.enabled ? lim.limit : null);
    push("inflight", lim.in_flight !== undefined ? lim.in_flight : null);
    const last = a => a.length ? a[a.length - 1] : null;
    text("v-throughput", fmt(last(series.throughput), 1));
    text("v-p50", fmt(last(series.p50), 2));
    text("v-p99", fmt(last(series.p99), 2));
    text("v-hit", fmt(last(series.hit), 1));
    text("v-limit", lim.enabled ? String(lim.limit) : "off");
    text("v-inflight", String(lim.in_flight ?? "–"));
    text("h-limit", lim.enabled ? String(lim.limit) : "off");
    text("h-inflight", String(lim.in_flight ?? "–"));
    text("h-rejected", String(lim.rejected ?? "–"));
    draw("c-throughput", [{ data: series.throughput, color: "#3559e0" }]);
    draw("c-latency", [{ data: series.p50, color: "#3559e0" }, { data: series.p99, color: "#c4320a" }]);
    draw("c-hit", [{ data: series.hit, color: "#12805c" }]);
    draw("c-limit", [{ data: series.limit, color: "#3559e0" }, { data: series.inflight, color: "#b54708" }]);
    renderWorkers(stats);
    const j = await fetch("/ui/jobs", { headers, cache: "no-store" });
    let jb = null;
    try { jb = await j.json(); } catch (e) { jb = null; }
    renderJobs(j, jb || { jobs: [] });
    state.polls++;
    text("updated", new Date().toLocaleTimeString());
    text("error", "");
  } catch (e) {
    state.errors++;
    text("error", "cannot reach the gateway: " + e.message);
  }
  setTimeout(poll, interval);
}
poll();
</script>
</body>
</html>
)IMHTML";

}  // namespace

std::string_view StatusPageHtml() { return kPage; }

}  // namespace infermesh::gateway
