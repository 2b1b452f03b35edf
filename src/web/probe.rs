//! Counters of the page's own cost, on request (`?count_gpu_calls=1`): every WebGPU dispatch,
//! submit, bind group, buffer and buffer write, counted by wrapping the `GPU*` prototypes
//! (wgpu looks the methods up at each call, so wrapping after load counts them all), and the
//! main thread's long tasks (`PerformanceObserver`, tasks over 50 ms). The benchmark reads
//! them around its timed steps (`Host::probe`), so its line says what a step costs the page.

use wasm_bindgen::JsValue;

use crate::train::Probe;

/// Installs the wrappers and the long-task observer once per page.
const INSTALL: &str = r#"
if (globalThis.__cifarProbe) return;
const p = globalThis.__cifarProbe = { reads: 0, dispatches: 0, submits: 0, bindGroups: 0, buffers: 0, writes: 0, longest: 0, longTotal: 0 };
const wrap = (cls, name, key) => {
  const proto = globalThis[cls] && globalThis[cls].prototype;
  if (!proto || typeof proto[name] !== 'function') return;
  const inner = proto[name];
  proto[name] = function (...args) { p[key]++; return inner.apply(this, args); };
};
wrap('GPUComputePassEncoder', 'dispatchWorkgroups', 'dispatches');
wrap('GPUComputePassEncoder', 'dispatchWorkgroupsIndirect', 'dispatches');
wrap('GPUQueue', 'submit', 'submits');
wrap('GPUQueue', 'writeBuffer', 'writes');
wrap('GPUDevice', 'createBindGroup', 'bindGroups');
wrap('GPUDevice', 'createBuffer', 'buffers');
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) { p.longest = Math.max(p.longest, e.duration); p.longTotal += e.duration; }
  }).observe({ type: 'longtask', buffered: false });
} catch (e) { /* no long-task timing in this browser: the longest task reads 0 */ }
"#;

/// Starts counting (before the GPU is set up, so nothing is missed).
pub fn install() {
    if let Err(e) = js_sys::Function::new_no_args(INSTALL).call0(&JsValue::NULL) {
        log::warn!("GPU call counters not installed: {e:?}");
    }
}

/// The counters now, empty unless [`install`] ran. The longest task is the longest since the
/// previous reading.
pub fn read() -> Vec<Probe> {
    let Ok(p) = js_sys::Reflect::get(&js_sys::global(), &"__cifarProbe".into()) else { return Vec::new() };
    if p.is_undefined() {
        return Vec::new();
    }
    let get = |k: &str| js_sys::Reflect::get(&p, &k.into()).ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
    let longest = get("longest");
    let _ = js_sys::Reflect::set(&p, &"longest".into(), &0.into());
    // How often the counters were read: bench/page_profile.mjs starts profiling at the first
    // reading, where the benchmark's timed steps begin.
    let _ = js_sys::Reflect::set(&p, &"reads".into(), &(get("reads") + 1.0).into());
    let total = |name, value| Probe { name, value, total: true };
    vec![
        total("dispatches", get("dispatches")),
        total("submits", get("submits")),
        total("bind groups", get("bindGroups")),
        total("buffers", get("buffers")),
        total("buffer writes", get("writes")),
        total("long-task ms", get("longTotal")),
        Probe { name: "longest task ms", value: longest, total: false },
        Probe { name: "constructor runs", value: crate::ctors::runs() as f64, total: false },
    ]
}
