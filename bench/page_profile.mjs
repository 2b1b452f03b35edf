// Where the page's own CPU goes during its step benchmark: opens a built site in headless
// Chromium (SwiftShader WebGPU) with ?count_gpu_calls=1 and runs the Benchmark button
// ($STEADY_STEPS timed steps, default 20). Over the timed steps only (from the benchmark's
// first reading of the page's counters, after the warm-up, to its last) it reads the CPU time
// of Chromium's processes from /proc: the renderer (the page: our wasm and the JS it calls)
// and the GPU process (SwiftShader doing the device's work), and runs the DevTools Protocol's
// sampling Profiler (in a second run: sampling costs the page CPU), which says which functions
// the page's thread spent its time in.
//
//   node bench/page_profile.mjs URL [out.json]
//   URL e.g. http://127.0.0.1:8000/?width=0.0625&batch=16   (count_gpu_calls and bench_steps are added)
//
// Needs playwright-core (npm, in $TOOLS_DIR/node_modules) and Debian's chromium; bench/profile.sh
// installs, builds and serves.
// For wasm function names, profile a site built with WASM_OPT=0 (wasm-opt drops the names).
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
// playwright-core lives in the build cache's tools folder (bench/profile.sh installs it there).
const { chromium } = createRequire(`${process.env.TOOLS_DIR || process.cwd()}/`)('playwright-core');
import { chromiumCpu } from './proc_cpu.mjs';

const [url, out] = process.argv.slice(2);
// Timed steps of the measured run.
const STEADY_STEPS = +(process.env.STEADY_STEPS || 20);
if (!url) { console.error('usage: node bench/page_profile.mjs URL [out.json]'); process.exit(2); }
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--enable-unsafe-webgpu', '--no-sandbox', '--disable-gpu-sandbox',
    '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic'],
});
const page = await browser.newPage();
page.on('pageerror', (e) => console.error('page error:', e.message));
const testid = (id) => page.locator(`[data-testid="${id}"]`);
async function bench(steps, profiled) {
  await page.goto(`${url}${url.includes('?') ? '&' : '?'}count_gpu_calls=1&bench_steps=${steps}`);
  await testid('gpu-selftest').filter({ hasText: /passed|failed|refused/ }).waitFor({ timeout: 600_000 });
  const cdp = profiled && await page.context().newCDPSession(page);
  await testid('bench-run').click();
  // The timed steps only: the 5 warm-up steps compile every kernel. The benchmark reads the
  // page's counters once the warm-up has drained (`reads`), and again at the end.
  await page.waitForFunction(() => globalThis.__cifarProbe.reads >= 1, null, { polling: 10, timeout: 1_800_000 });
  const before = chromiumCpu();
  if (cdp) {
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
    await cdp.send('Profiler.start');
  }
  await page.waitForFunction(() => globalThis.__cifarProbe.reads >= 2, null, { polling: 10, timeout: 1_800_000 });
  const after = chromiumCpu();
  await testid('bench-result').filter({ hasText: /./ }).waitFor({ timeout: 600_000 });
  const line = await testid('bench-result').innerText();
  console.log(`benchmark, ${steps} timed steps: ${line}`);
  const cpu = Object.fromEntries(Object.keys(after).map((k) => [k, Math.round(1000 * (after[k] - (before[k] || 0)) / steps)]));
  console.log(`  CPU ms per timed step by Chromium process (/proc): ${JSON.stringify(cpu)}`);
  return { line, cpu, profile: cdp && (await cdp.send('Profiler.stop')).profile };
}
// CPU figures from a run without the profiler (sampling costs the page CPU), then the profile.
const plain = await bench(STEADY_STEPS, false);
const steady = await bench(STEADY_STEPS, true);
const perStep = plain.cpu;
const line = plain.line;
const profile = steady.profile;

// Self time per node from the samples; inclusive time counts a function once per sample.
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children || []) parent.set(c, n.id);
const self = new Map(), inclusive = new Map();
let total = 0;
const name = (n) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url ? n.callFrame.url.split('/').pop().split('?')[0] : ''}`.trim();
profile.samples.forEach((id, i) => {
  const dt = (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i]) / 1000;
  const node = byId.get(id);
  const own = name(node);
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
  .map(([n, ms]) => ({ name: n, ms: Math.round(ms), share: +(100 * ms / total).toFixed(1) }));
const result = { url, benchmark: line, cpu_ms_per_step: perStep, busy_ms: Math.round(total), self: top(self, 30), inclusive: top(inclusive, 40) };
console.log(`busy (not idle) ms in the page's thread during the benchmark: ${result.busy_ms}`);
console.log('top self time:');
for (const r of result.self.slice(0, 20)) console.log(`  ${String(r.share).padStart(5)}%  ${r.ms} ms  ${r.name}`);
console.log('top inclusive time:');
for (const r of result.inclusive.slice(0, 30)) console.log(`  ${String(r.share).padStart(5)}%  ${r.ms} ms  ${r.name}`);
if (out) writeFileSync(out, JSON.stringify(result, null, 1));
await browser.close();
