// One step benchmark of a page in headless Chromium, for bench/cpu.sh (issue 28): the app (its
// CPU engine: no WebGPU, or ?device=cpu) or bench/peer/tfjs.html (?backend=cpu), which share
// the test ids. Presses the Benchmark button once the page is ready (not "after the ... self-test"),
// waits for `bench-result` and prints it with the CPU time of Chromium's processes (/proc) over
// the timed steps: from the benchmark's first reading of the page's counters (?count_gpu_calls=1,
// after the warm-up) to its last, as bench/page_profile.mjs does. With PROFILE=1 it also records
// a DevTools CPU profile of the timed steps on the thread that runs the engine (the engine's
// worker when there is one, else the page's thread) and prints the top self and inclusive times.
//
//   node bench/cpu_page.mjs URL [out.json]
//   URL: the full query, e.g. http://127.0.0.1:8000/?device=cpu&width=0.125&batch=32&bench_steps=20&conv=burn
//   env: WEBGPU=1 adds --enable-unsafe-webgpu (default: none, so the page has no WebGPU);
//        PROFILE=1; TOOLS_DIR (playwright-core in its node_modules); CHROMIUM (default /usr/bin/chromium)
// For wasm function names in the profile, serve a site built with WASM_OPT=0.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
const { chromium } = createRequire(`${process.env.TOOLS_DIR || process.cwd()}/`)('playwright-core');
import { chromiumCpu } from './proc_cpu.mjs';

const [url, out] = process.argv.slice(2);
if (!url) { console.error('usage: node bench/cpu_page.mjs URL [out.json]'); process.exit(2); }
const steps = +(new URL(url).searchParams.get('bench_steps') || 20);
const LONG = 3_600_000;
const args = ['--headless=new', '--no-sandbox', '--disable-gpu-sandbox', '--disable-dev-shm-usage', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];
if (process.env.WEBGPU === '1') args.push('--enable-unsafe-webgpu');
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args });
const page = await browser.newPage();
page.on('pageerror', (e) => console.error('page error:', e.message));
const testid = (id) => page.locator(`[data-testid="${id}"]`);
const text = async (id) => (await testid(id).count()) ? (await testid(id).first().innerText()).trim() : null;

await page.goto(`${url}${url.includes('count_gpu_calls') ? '' : '&count_gpu_calls=1'}`);
// Ready: the button is enabled and no longer waits for a self-test (a click then would be kept
// and run later, with the self-test inside our window).
await page.waitForFunction(() => {
  const b = document.querySelector('[data-testid="bench-run"]');
  return b && !b.disabled && !/after the/i.test(b.textContent);
}, null, { polling: 100, timeout: 900_000 });
const ready = {
  webgpu_status: await text('webgpu-status'), selftest: await text('gpu-selftest'),
  compute_device: await text('compute-device'), engine_thread: await text('engine-thread'),
};
for (const [k, v] of Object.entries(ready)) if (v) console.log(`  ${k}: ${v.replace(/\s+/g, ' ')}`);

// The profiler on the engine's thread: a dedicated worker of this page if there is one (attached
// from a browser session, messages relayed through Target.sendMessageToTarget), else the page.
async function engineProfiler() {
  const bs = await browser.newBrowserCDPSession();
  const { targetInfos } = await bs.send('Target.getTargets');
  const worker = targetInfos.find((t) => t.type === 'worker');
  if (!worker) {
    const cdp = await page.context().newCDPSession(page);
    return { thread: 'page', send: (m, p) => cdp.send(m, p) };
  }
  const { sessionId } = await bs.send('Target.attachToTarget', { targetId: worker.targetId, flatten: false });
  let next = 0;
  const pending = new Map();
  bs.on('Target.receivedMessageFromTarget', (e) => {
    if (e.sessionId !== sessionId) return;
    const m = JSON.parse(e.message);
    if (m.id && pending.has(m.id)) { pending.get(m.id)(m); pending.delete(m.id); }
  });
  const send = (method, params = {}) => new Promise((resolve, reject) => {
    const id = ++next;
    pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
    bs.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) }).catch(reject);
  });
  return { thread: `worker ${worker.url.slice(0, 60)}`, send };
}
const profiler = process.env.PROFILE === '1' ? await engineProfiler() : null;
if (profiler) {
  await profiler.send('Profiler.enable');
  await profiler.send('Profiler.setSamplingInterval', { interval: 500 });
}

const reads = () => page.evaluate(() => globalThis.__cifarProbe?.reads ?? 0);
const finished = async () => (await testid('bench-result').innerText()).trim() !== '';
const t0 = Date.now();
// Clicked from a timer: a page that computes on its own thread (TF.js cpu, ?worker=0) would
// block Playwright's click until the first steps are done.
await page.evaluate(() => { setTimeout(() => document.querySelector('[data-testid="bench-run"]').click(), 0); });
// The timed steps begin at the benchmark's first reading of the counters (after the warm-up).
let marked = true;
await page.waitForFunction(() => (globalThis.__cifarProbe?.reads ?? 0) >= 1 ||
  document.querySelector('[data-testid="bench-result"]').textContent.trim() !== '', null, { polling: 10, timeout: LONG });
if (await finished() && (await reads()) < 1) marked = false;
const before = chromiumCpu();
const tStart = Date.now();
if (profiler && marked) await profiler.send('Profiler.start');
await page.waitForFunction(() => (globalThis.__cifarProbe?.reads ?? 0) >= 2 ||
  document.querySelector('[data-testid="bench-result"]').textContent.trim() !== '', null, { polling: 10, timeout: LONG });
const after = chromiumCpu();
const tEnd = Date.now();
const profile = profiler && marked ? (await profiler.send('Profiler.stop')).profile : null;
await page.waitForFunction(() => document.querySelector('[data-testid="bench-result"]').textContent.trim() !== '', null, { polling: 50, timeout: LONG });
const line = (await testid('bench-result').innerText()).trim();
const ms = +(line.match(/([\d.]+) ms\/step/) || [])[1];
const ips = +((line.match(/([\d.]+) images\/s/) || [])[1] ?? NaN);
console.log(`benchmark: ${line}`);
const cpu = marked
  ? Object.fromEntries(Object.keys(after).map((k) => [k, Math.round(1000 * (after[k] - (before[k] || 0)) / steps)]))
  : null;
if (cpu) console.log(`  CPU ms per timed step by Chromium process (/proc): ${JSON.stringify(cpu)}; wall ${((tEnd - tStart) / steps).toFixed(0)} ms/step`);
else console.log('  (the page gave no counter readings: no /proc window, no profile)');
console.log(`  whole benchmark (warm-up included) ${((Date.now() - t0) / 1000).toFixed(1)} s`);

const result = { url, benchmark: line, ms_per_step: ms, images_per_sec: ips, ok: Number.isFinite(ips), ...ready, cpu_ms_per_step: cpu };
if (profile) {
  // Self time per function from the samples; inclusive time counts a function once per sample.
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children || []) parent.set(c, n.id);
  const self = new Map(), inclusive = new Map();
  let total = 0;
  const name = (n) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url ? n.callFrame.url.split('/').pop().split('?')[0] : ''}`.trim();
  profile.samples.forEach((id, i) => {
    const dt = (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i]) / 1000;
    const own = name(byId.get(id));
    if (own.startsWith('(idle)') || own.startsWith('(program)')) return;
    total += dt;
    self.set(own, (self.get(own) || 0) + dt);
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const nm = name(byId.get(cur));
      if (!seen.has(nm)) { seen.add(nm); inclusive.set(nm, (inclusive.get(nm) || 0) + dt); }
    }
  });
  const top = (m, k) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, k)
    .map(([n, t]) => ({ name: n, ms: Math.round(t), share: +(100 * t / total).toFixed(1) }));
  result.profile = { thread: profiler.thread, busy_ms: Math.round(total), steps, self: top(self, 40), inclusive: top(inclusive, 40) };
  console.log(`profile of the timed steps on the engine's thread (${profiler.thread}): busy ${result.profile.busy_ms} ms over ${steps} steps`);
  console.log('top self time:');
  for (const r of result.profile.self.slice(0, 25)) console.log(`  ${String(r.share).padStart(5)}%  ${String(r.ms).padStart(6)} ms  ${r.name}`);
  console.log('top inclusive time:');
  for (const r of result.profile.inclusive.slice(0, 25)) console.log(`  ${String(r.share).padStart(5)}%  ${String(r.ms).padStart(6)} ms  ${r.name}`);
  if (out) writeFileSync(out.replace(/\.json$/, '') + '.cpuprofile.gz', gzipSync(JSON.stringify(profile)));
}
if (out) writeFileSync(out, JSON.stringify(result, null, 1));
await browser.close();
if (!result.ok) process.exit(1);
