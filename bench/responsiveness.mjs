// How the page's main thread fares while the engine works (issue 23): for the engine in its
// worker (default) and on the page's thread (`worker=0`), the step benchmark and a short
// training run, each with the main thread's long tasks (PerformanceObserver, tasks > 50 ms:
// the longest one bounds how long a click waits) and the step time.
//   node bench/responsiveness.mjs BASE_URL 'width=0.0625&batch=16' [bench steps] [train subset]
// BASE_URL serves the site at / and the sample shards at /samples/.
import { createRequire } from 'node:module';
const { chromium } = createRequire(`${process.env.TOOLS_DIR || process.cwd()}/`)('playwright-core');

const [base, query, benchSteps = '10', subset = '256'] = process.argv.slice(2);
if (!base || !query) { console.error('usage: node bench/responsiveness.mjs BASE_URL QUERY [bench steps] [train subset]'); process.exit(2); }
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--enable-unsafe-webgpu', '--no-sandbox', '--disable-gpu-sandbox',
    '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic'],
});
// An observer of its own: the page's counters reset their longest task at each reading.
const observe = `(() => { if (globalThis.__resp) return; const r = globalThis.__resp = { longest: 0, total: 0 };
  new PerformanceObserver((l) => { for (const e of l.getEntries()) { r.longest = Math.max(r.longest, e.duration); r.total += e.duration; } })
    .observe({ type: 'longtask' }); })()`;
const reset = 'globalThis.__resp.longest = 0';
const longTasks = `(() => { const r = globalThis.__resp; return { longest: r.longest, total: r.total, now: performance.now() }; })()`;
const share = (a, b) => ((b.total - a.total) / (b.now - a.now) * 100).toFixed(1);

async function measure(worker) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  const testid = (id) => page.locator(`[data-testid="${id}"]`);
  const data = 'data=/samples/&shards=train_2000.bin,test_500.bin,batches.meta.txt';
  await page.goto(`${base}/?${query}&${data}&conv=burn&count_gpu_calls=1&bench_steps=${benchSteps}` +
    `&epochs=1&train_subset=${subset}&test_subset=500${worker ? '' : '&worker=0'}`);
  await testid('gpu-selftest').filter({ hasText: /passed|FAILED|could not/ }).waitFor({ timeout: 600_000 });
  const thread = await testid('engine-thread').innerText();
  await page.evaluate(observe);
  // The benchmark (random images: no data loaded yet).
  await page.evaluate(reset);
  let a = await page.evaluate(longTasks);
  await testid('bench-run').click();
  await testid('bench-result').filter({ hasText: /./ }).waitFor({ timeout: 1_800_000 });
  let b = await page.evaluate(longTasks);
  const bench = await testid('bench-result').innerText();
  const benchLine = `benchmark: longest main-thread task ${b.longest.toFixed(0)} ms, long tasks ${share(a, b)}% of ${((b.now - a.now) / 1000).toFixed(1)} s; ${bench}`;
  // Training: one epoch on the sample shards, evaluation included.
  await testid('data-load-url').click();
  await testid('data-status').filter({ hasText: /train ·/ }).waitFor({ timeout: 120_000 });
  await page.evaluate(reset);
  a = await page.evaluate(longTasks);
  await testid('train-start').click();
  await testid('train-phase').filter({ hasText: /^(Finished|Failed|Stopped)$/ }).waitFor({ timeout: 1_800_000 });
  b = await page.evaluate(longTasks);
  const progress = await testid('train-progress').innerText();
  const trainLine = `training: longest main-thread task ${b.longest.toFixed(0)} ms, long tasks ${share(a, b)}% of ${((b.now - a.now) / 1000).toFixed(1)} s; ${progress.replace(/\n/g, ' ')}`;
  console.log(`${query} · ${thread}\n  ${benchLine}\n  ${trainLine}`);
  await page.close();
}
for (const worker of (process.env.MODES || '1,0').split(',').map(Number)) await measure(worker === 1);
await browser.close();
