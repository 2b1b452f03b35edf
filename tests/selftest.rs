//! The GPU self-test (src/selftest.rs) on flex: every check passes, and a deliberately wrong
//! result (the test-only `Fault` hook) is reported and excludes what it belongs to. The same
//! checks run on SwiftShader's WebGPU in tests/web.rs and in the page.
#![cfg(not(target_arch = "wasm32"))]

use burn::prelude::*;
use cifar10_webgpu::model::ConvAlgorithm;
use cifar10_webgpu::selftest::{run, Fault, TOLERANCE};

fn report(fault: Option<&str>) -> cifar10_webgpu::selftest::Report {
    pollster::block_on(run(&Device::flex(), &Fault(fault.map(String::from)))).expect("flex answers")
}

#[test]
fn every_check_passes_on_flex() {
    let r = report(None);
    // gemm needs a CubeCL device: flex checks burn, im2col and our direct CPU kernels.
    let convs = ConvAlgorithm::available_on(&Device::flex());
    assert_eq!(convs, [ConvAlgorithm::Burn, ConvAlgorithm::Im2col, ConvAlgorithm::Direct]);
    assert_eq!(r.checks.len(), 3 * convs.len() + 9, "{r:?}");
    for c in &r.checks {
        assert!(c.passed(), "{} off by {:e}", c.name, c.error);
    }
    assert_eq!(r.usable_convs(), convs);
    assert!(!r.conv_ok(ConvAlgorithm::Gemm) && !r.conv_failed(ConvAlgorithm::Gemm));
    assert!(r.summary("flex").starts_with("GPU self-test passed on flex"), "{}", r.summary("flex"));
}

#[test]
fn a_wrong_convolution_is_reported_and_excluded() {
    let r = report(Some("conv im2col weight gradient"));
    let bad: Vec<&str> = r.failures().map(|c| c.name.as_str()).collect();
    assert_eq!(bad, ["conv im2col weight gradient"]);
    assert!(r.failures().all(|c| c.error > TOLERANCE && c.error.is_finite()));
    assert!(r.basics_ok());
    assert_eq!(r.usable_convs(), [ConvAlgorithm::Burn, ConvAlgorithm::Direct]);
    let s = r.summary("flex");
    assert!(s.contains("FAILED") && s.contains("im2col convolutions will not be used") && s.contains("uses burn, direct"), "{s}");
    // Our direct kernels are checked like the others: a wrong weight gradient excludes them.
    let r = report(Some("conv direct weight gradient"));
    assert_eq!(r.failures().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["conv direct weight gradient"]);
    assert_eq!(r.usable_convs(), [ConvAlgorithm::Burn, ConvAlgorithm::Im2col]);
}

#[test]
fn a_wrong_basic_refuses_the_gpu() {
    let r = report(Some("batch-norm input gradient"));
    assert!(!r.basics_ok());
    assert!(r.usable_convs().is_empty());
    assert!(r.summary("flex").contains("nothing will run on this GPU"), "{}", r.summary("flex"));
}
