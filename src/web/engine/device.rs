//! Where the engine computes: the WebGPU device (`gpu.rs`), or burn's `flex` backend compiled
//! to WebAssembly with SIMD128 on the CPU, where the browser has no WebGPU, no adapter, a
//! device that does not start or one whose self-test leaves nothing usable (`?device=cpu`
//! forces it). The same engine code runs on both: burn 0.22 picks the backend at run time.

use burn::prelude::*;

use crate::web::protocol::{ComputeView, CpuSuggestion};

/// What the page shows for the CPU device with `workers` workers (the engine and its helpers,
/// `pool.rs`): wasm32 has no threads inside one instance without cross-origin isolation and
/// atomics (BENCHMARKS.md says why this build has none), so each core gets its own instance.
pub fn cpu_name(workers: usize) -> String {
    format!("CPU (WebAssembly SIMD, {workers} worker{})", if workers == 1 { "" } else { "s" })
}

/// The most workers the engine starts by default: each holds a replica and its activations
/// (tens of MB at the CPU's widths, hundreds at width 1), so a phone's memory is not filled.
pub const MOST_WORKERS: usize = 8;

/// The most workers a link may ask for (`?cpu_workers=N`).
pub const MOST_ASKED: usize = 32;

/// How many workers the CPU engine uses: the link's `?cpu_workers=N` (at most [`MOST_ASKED`]), else one a core the
/// browser reports (`navigator.hardwareConcurrency`), at most [`MOST_WORKERS`], and at most
/// 2 where the browser reports 2 GB of memory or less (`navigator.deviceMemory`, Chromium).
pub fn cpu_workers(asked: Option<usize>) -> usize {
    if let Some(n) = asked {
        // A link sets it, so it is bounded: each worker is a whole wasm instance.
        return n.clamp(1, MOST_ASKED);
    }
    let navigator = crate::web::js::global("navigator");
    let read = |key: &str| navigator.as_ref().and_then(|n| js_sys::Reflect::get(n, &key.into()).ok()).and_then(|v| v.as_f64());
    let cores = read("hardwareConcurrency").map_or(1, |c| c.max(1.0) as usize);
    let most = match read("deviceMemory") {
        Some(gb) if gb <= 2.0 => 2,
        _ => MOST_WORKERS,
    };
    cores.min(most)
}

/// The CPU's key for remembered choices (`conv_choice::device_key`).
pub fn cpu_key() -> String {
    crate::conv_choice::device_key(&[("cpu", "wasm32 simd128")], "", "")
}

/// The CPU device.
pub fn cpu() -> Device {
    Device::flex()
}

/// A width and batch whose epoch takes minutes on the CPU's workers. The seed's net (width 1)
/// costs about 64 times the work of width 0.125 (the work grows with the square of the
/// width): ~5 hours an epoch at the ~5 GFLOP/s one wasm thread gives, against ~5 minutes.
/// Batch 64 keeps BatchNorm's statistics steady at that width without a long step; with more
/// workers, 32 images each (`replicas::MIN_SLICE` is the least a slice gets), up to 256.
pub fn suggestion(workers: usize) -> CpuSuggestion {
    let batch = (32 * workers).clamp(64, 256);
    CpuSuggestion {
        width: 0.125,
        batch,
        why: format!(
            "On the CPU the full-width net takes hours per epoch; width 0.125 with batch {batch} \
             takes minutes (about 1/64 of the work){}.",
            if workers > 1 { format!(", {} images for each of the {workers} workers", batch / workers) } else { String::new() }
        ),
    }
}

/// The read-out for the CPU device with `workers` workers, with why it is used and, once run,
/// its self-test (and what became of the workers).
pub fn cpu_view(reason: &str, workers: usize, selftest: Option<&str>) -> ComputeView {
    let line = format!(
        "Training runs on the {}: {reason}. {}",
        cpu_name(workers),
        selftest.unwrap_or("Checking its results…")
    );
    ComputeView { cpu: true, ready: selftest.is_some(), line, device_key: cpu_key(), suggestion: Some(suggestion(workers)) }
}

/// The read-out for a WebGPU device.
pub fn gpu_view(name: &str, key: &str) -> ComputeView {
    ComputeView {
        cpu: false,
        ready: true,
        line: format!("Training runs on the GPU: {name} (WebGPU)."),
        device_key: key.to_string(),
        suggestion: None,
    }
}
