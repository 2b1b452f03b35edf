//! Learning parity with PyTorch, proven on a fixture made by PyTorch (`bench/make_fixture.py`):
//! logits, loss, every gradient, BatchNorm running statistics and three optimiser steps of a
//! narrow ResNet-9 must match, for every convolution algorithm that runs on burn's `flex` CPU
//! backend. The browser suite (`tests/web.rs`) runs the same checks on WebGPU.
#![cfg(not(target_arch = "wasm32"))]

mod fixture;

use burn::prelude::*;
use cifar10_webgpu::model::{set_conv_algorithm, ConvAlgorithm};

#[test]
fn pytorch_fixture() {
    let device = Device::flex();
    let mut failures = Vec::new();
    // One test for all algorithms: the choice is process-wide, tests in one binary run in parallel.
    for algorithm in ConvAlgorithm::available_on(&device) {
        set_conv_algorithm(algorithm);
        let report = pollster::block_on(fixture::run(&device)).expect("fixture runs");
        println!("flex, {algorithm:?}: {}", report.summary());
        let fast = pollster::block_on(fixture::run_fast(&device)).expect("fast fixture runs");
        println!("flex, {algorithm:?}, fast preset: {}", fast.fast_summary());
        for c in report.failures().into_iter().chain(fast.failures()) {
            failures.push(format!("{algorithm:?}: {} off by {:.2e} (tolerance {:.0e})", c.what, c.error, c.tolerance));
        }
    }
    set_conv_algorithm(ConvAlgorithm::Burn);
    assert!(failures.is_empty(), "differences from PyTorch:\n{}", failures.join("\n"));
}
