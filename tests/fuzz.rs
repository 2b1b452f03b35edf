//! The seeded mutation fuzzer over every file parser (src/fuzz.rs), a few thousand cases each,
//! and the minimal inputs of the bugs it found.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::io::Write;

use burn::prelude::Device;
use cifar10_webgpu::data::{self, DataError};
use cifar10_webgpu::fuzz::{Fuzzer, Parser};

/// Cases per parser in CI; `train --fuzz N` runs the benchmark (BENCHMARKS.md).
const CI_CASES: u64 = 2_000;

#[test]
fn fuzzed_parsers_never_panic() {
    let fuzzer = Fuzzer::new(&common::sample_dir()).unwrap();
    let mut failures = Vec::new();
    for parser in Parser::ALL {
        let report = fuzzer.run(parser, 13, CI_CASES);
        println!("{report}");
        // Every parser must accept some mutants and refuse others, or the mutations miss it.
        assert!(report.rejected > 0, "{}: nothing rejected", parser.name());
        failures.extend(report.failures);
    }
    for f in &failures {
        println!("{:?} seed {} case {}: {}", f.parser, f.seed, f.case, f.message);
    }
    assert!(failures.is_empty(), "{} failing cases", failures.len());
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}
