//! Where the engine computes: the WebGPU device (`gpu.rs`), or burn's `flex` backend compiled
//! to WebAssembly with SIMD128 on the CPU, where the browser has no WebGPU, no adapter, a
//! device that does not start or one whose self-test leaves nothing usable (`?device=cpu`
//! forces it). The same engine code runs on both: burn 0.22 picks the backend at run time.

use burn::prelude::*;

use crate::web::protocol::{ComputeView, CpuSuggestion};

/// What the page shows for the CPU device: wasm32 has no threads without cross-origin
/// isolation and atomics (BENCHMARKS.md says why this build has none).
pub const CPU_NAME: &str = "CPU (WebAssembly SIMD, 1 thread)";

/// The CPU's key for remembered choices (`conv_choice::device_key`).
pub fn cpu_key() -> String {
    crate::conv_choice::device_key(&[("cpu", "wasm32 simd128")], "", "")
}

/// The CPU device.
pub fn cpu() -> Device {
    Device::flex()
}

/// A width and batch whose epoch takes minutes on one CPU thread. The seed's net (width 1)
/// costs about 64 times the work of width 0.125 (the work grows with the square of the
/// width): ~5 hours an epoch at the ~5 GFLOP/s one wasm thread gives, against ~5 minutes.
/// Batch 64 keeps BatchNorm's statistics steady at that width without a long step.
pub fn suggestion() -> CpuSuggestion {
    CpuSuggestion {
        width: 0.125,
        batch: 64,
        why: "On the CPU the full-width net takes hours per epoch; width 0.125 with batch 64 \
              takes minutes (about 1/64 of the work)."
            .into(),
    }
}

/// The read-out for the CPU device, with why it is used and, once run, its self-test.
pub fn cpu_view(reason: &str, selftest: Option<&str>) -> ComputeView {
    let line = format!(
        "Training runs on the {CPU_NAME}: {reason}. {}",
        selftest.unwrap_or("Checking its results…")
    );
    ComputeView { cpu: true, ready: selftest.is_some(), line, device_key: cpu_key(), suggestion: Some(suggestion()) }
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
