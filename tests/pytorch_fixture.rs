//! Learning parity with PyTorch, proven on a fixture made by PyTorch (`bench/make_fixture.py`):
//! logits, loss, every gradient, BatchNorm running statistics and three optimiser steps of a
//! narrow ResNet-9 must match, for every convolution algorithm that runs on burn's `flex` CPU
//! backend (and, built with `--features wgpu`, on native Vulkan). The browser suite
//! (`tests/web.rs`) runs the same checks on WebGPU.
#![cfg(not(target_arch = "wasm32"))]

mod fixture;

use burn::prelude::*;
use cifar10_webgpu::model::{set_conv_algorithm, ConvAlgorithm};

/// The devices to check: flex always; with `--features wgpu` also native Vulkan (Debian's
/// lavapipe on the development machines, a real GPU elsewhere), where gemm runs too:
/// `cargo test --release --features wgpu --test pytorch_fixture`.
fn devices() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)]
    let mut devices = vec![("flex", Device::flex())];
    #[cfg(feature = "wgpu")]
    devices.push((
        "vulkan",
        Device::wgpu_options()
            .graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan)
            .init()
            .expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)"),
    ));
    devices
}

#[test]
fn pytorch_fixture() {
    let mut failures = Vec::new();
    // One test for all devices and algorithms: the choice is process-wide, tests in one binary
    // run in parallel.
    for (name, device) in devices() {
        for algorithm in ConvAlgorithm::available_on(&device) {
            set_conv_algorithm(algorithm);
            let report = pollster::block_on(fixture::run(&device)).expect("fixture runs");
            println!("{name}, {algorithm:?}: {}", report.summary());
            let fast = pollster::block_on(fixture::run_fast(&device)).expect("fast fixture runs");
            println!("{name}, {algorithm:?}, fast preset: {}", fast.fast_summary());
            for c in report.failures().into_iter().chain(fast.failures()) {
                failures.push(format!("{name}, {algorithm:?}: {} off by {:.2e} (tolerance {:.0e})", c.what, c.error, c.tolerance));
            }
        }
    }
    set_conv_algorithm(ConvAlgorithm::Burn);
    assert!(failures.is_empty(), "differences from PyTorch:\n{}", failures.join("\n"));
}

