//! The seeded mutation fuzzer over every file parser (src/fuzz.rs), a few thousand cases each,
//! and the minimal inputs of the bugs it found.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::io::Read;

use burn::prelude::Device;
use cifar10_webgpu::data::{self, DataError};
use cifar10_webgpu::fuzz::{Fuzzer, Parser};
use cifar10_webgpu::train::Trainer;
use cifar10_webgpu::weights::{self, Snapshot};

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


/// A weights file whose width (from its metadata, or inferred from its first convolution)
/// needs far more values than it holds is refused before a model of that width is built.
/// Found by reading the importer while writing the fuzzer: an inferred width was unchecked,
/// so 700 KB of safetensors claiming width 100 asked for a 65-billion-parameter model.
#[test]
fn weights_claiming_a_width_they_cannot_fill_are_refused_before_allocating() {
    let device = Device::flex();
    let prep = |c: usize| ("prep.conv.weight".to_string(), vec![c, 3, 3, 3], vec![0.5f32; c * 27]);
    // Inferred: 6400 channels / 64 = width 100.
    let st = Snapshot { width: 100.0, tensors: vec![prep(6400)] }.to_safetensors().unwrap();
    let stripped = strip_width(&st);
    let err = weights::import(&stripped, &device).err().unwrap();
    assert!(err.to_string().contains("width 100"), "{err}");
    // Stated: width 4 in the metadata with one tiny tensor.
    let bpk = Snapshot { width: 4.0, tensors: vec![prep(4)] }.to_burnpack().unwrap();
    let err = weights::import(&bpk, &device).err().unwrap();
    assert!(err.to_string().contains("at least"), "{err}");
}

/// The same safetensors file without its `width` metadata entry (the width is then inferred).
fn strip_width(st: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&st[8..8 + n]).unwrap();
    header["__metadata__"].as_object_mut().unwrap().remove("width");
    let mut json = serde_json::to_vec(&header).unwrap();
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&st[8 + n..]);
    out
}

/// An `optimizer.bpk` holding one tensor of zeros, replacing the real one.
fn optimizer_with(name: &str, dtype: burn::tensor::DType, shape: Vec<usize>) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let bytes = burn::tensor::Bytes::from_bytes_vec(vec![0u8; n * dtype.size()]);
    let tensor = burn_pack::Tensor::new(name.to_string(), dtype, shape, None, bytes);
    burn_pack::Writer::new(vec![tensor]).into_bytes().unwrap().to_vec()
}

/// burn's optimiser loader panicked on a momentum tensor without a parameter id and on a rank
/// it could not dispatch; a velocity of the wrong shape loaded and panicked at the first step.
/// The momentum is now our own file, by parameter path, checked against the model first.
#[test]
fn a_corrupt_optimizer_file_is_refused_not_a_panic() {
    use burn::tensor::DType;
    let fuzzer = Fuzzer::new(&common::sample_dir()).unwrap();
    let (files, data, device) = fuzzer.resume_seed();
    let resume = |optimizer: &[u8]| Trainer::resume_from_bytes(&files[0], &files[1], optimizer, None, data, device);
    assert!(resume(&files[2]).is_ok());
    let shape = weights::Snapshot::from_burnpack(&files[1]).unwrap().tensors[0].1.clone();
    for (what, optimizer) in [
        ("burn's old record", optimizer_with("17.velocity", DType::F32, vec![4, 3, 3, 3])),
        ("wrong shape", optimizer_with("prep.conv.weight", DType::F32, vec![4, 3, 9])),
        ("a running statistic", optimizer_with("prep.bn.running_mean", DType::F32, vec![shape[0]])),
        ("F64", optimizer_with("prep.conv.weight", DType::F64, shape.clone())),
    ] {
        let err = resume(&optimizer).err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(err.contains("optimizer.bpk"), "{what}: {err}");
    }
}

/// `epoch * steps_per_epoch` overflowed (a panic in debug builds; in release it wrapped, and
/// epoch 2^63 with 2 steps an epoch passed as step 0).
#[test]
fn a_state_whose_position_overflows_is_refused() {
    let fuzzer = Fuzzer::new(&common::sample_dir()).unwrap();
    let (files, data, device) = fuzzer.resume_seed();
    let mut state: serde_json::Value = serde_json::from_slice(&files[0]).unwrap();
    state["epoch"] = serde_json::json!(1u64 << 63);
    state["step"] = serde_json::json!(0);
    let state = serde_json::to_vec(&state).unwrap();
    let err = Trainer::resume_from_bytes(&state, &files[1], &files[2], None, data, device).err().unwrap();
    assert!(err.contains("steps an epoch"), "{err}");
}

/// Each tar entry was capped at one shard, but not their number: a small tar.gz of many
/// zero-filled entries (valid label-0 records) filled memory one shard at a time. The whole
/// inflated stream is now capped at `MAX_ARCHIVE_BYTES`.
#[test]
fn a_tarball_of_many_capped_entries_is_refused() {
    // Streamed into the compressor: the test holds only the ~250 KB compressed bomb.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for i in 0..8 {
        let mut header = tar::Header::new_gnu();
        header.set_size(data::SHARD_BYTES as u64);
        header.set_mode(0o644);
        let zeros = std::io::repeat(0).take(data::SHARD_BYTES as u64);
        builder.append_data(&mut header, format!("train_{i}.bin"), zeros).unwrap();
    }
    let bomb = builder.into_inner().unwrap().finish().unwrap();
    assert!(bomb.len() < 2_000_000, "{}", bomb.len());
    let err = data::read_tarball(bomb.as_slice(), |_| {}).err().unwrap();
    assert_eq!(err, DataError::ArchiveTooLarge);
}
