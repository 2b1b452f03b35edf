//! Shared helpers of the native tests: where the real CIFAR-10 files are.
#![allow(dead_code)] // each test file uses a different part

use std::path::PathBuf;

/// `../shared/cifar10` beside the checkout, or `$CIFAR10_SHARED`. Tests fail loudly when the
/// real files are missing: they never fall back to synthetic data.
pub fn shared_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CIFAR10_SHARED") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/cifar10");
    assert!(
        dir.join("sample/train_2000.bin").exists(),
        "CIFAR-10 samples not found at {}; set CIFAR10_SHARED",
        dir.display()
    );
    dir
}

pub fn sample_dir() -> PathBuf {
    shared_dir().join("sample")
}

pub fn read_sample(name: &str) -> Vec<u8> {
    std::fs::read(sample_dir().join(name)).expect("sample shard readable")
}

/// The full tarball built by `../shared/cifar10/build.sh` (the test script builds it first).
pub fn tarball() -> PathBuf {
    if let Ok(p) = std::env::var("CIFAR10_TARBALL") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = PathBuf::from(home).join(".cache/cifar10-data/cifar-10-binary.tar.gz");
    assert!(p.exists(), "{} missing: run ../shared/cifar10/build.sh", p.display());
    p
}
