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

/// An `optimizer.bpk` holding one tensor, replacing the real one.
fn optimizer_with(name: &str, param_id: Option<u64>, shape: Vec<usize>, rank: Option<u64>) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let tensor = burn_pack::Tensor::new(
        name.to_string(),
        burn::tensor::DType::F32,
        shape,
        param_id,
        burn::tensor::Bytes::from_bytes_vec(vec![0u8; n * 4]),
    );
    let mut writer = burn_pack::Writer::new(vec![tensor]);
    if let (Some(id), Some(rank)) = (param_id, rank) {
        writer = writer.with_scalar(&format!("{id}.__rank"), burn_pack::Scalar::UInt(rank));
    }
    writer.into_bytes().unwrap().to_vec()
}

/// burn's optimiser loader panics on a momentum tensor without a parameter id
/// (`expect("Optimizer record tensors should carry a parameter id.")`) and on a rank it
/// cannot dispatch; a velocity of the wrong shape loads and panics at the first step. The
/// resume state now checks the optimiser file first.
#[test]
fn a_corrupt_optimizer_file_is_refused_not_a_panic() {
    let fuzzer = Fuzzer::new(&common::sample_dir()).unwrap();
    let (files, data, device) = fuzzer.resume_seed();
    let state: serde_json::Value = serde_json::from_slice(&files[0]).unwrap();
    let id = state["param_ids"]["prep.conv.weight"].as_u64().unwrap();
    let resume = |optimizer: &[u8]| Trainer::resume_from_bytes(&files[0], &files[1], optimizer, data, device);
    assert!(resume(&files[2]).is_ok());
    let velocity = format!("{id}.velocity");
    for (what, optimizer) in [
        ("no param id", optimizer_with(&velocity, None, vec![4, 3, 3, 3], None)),
        ("rank 9", optimizer_with(&velocity, Some(id), vec![4, 3, 3, 3], Some(9))),
        ("wrong shape", optimizer_with(&velocity, Some(id), vec![4, 3, 9], None)),
        ("unknown id", optimizer_with("7.velocity", Some(u64::MAX), vec![1], None)),
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
    let err = Trainer::resume_from_bytes(&state, &files[1], &files[2], data, device).err().unwrap();
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
