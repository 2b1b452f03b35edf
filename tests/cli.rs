//! The native CLI as a user runs it: `train --recipe fast` on the real tarball.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::process::Command;

#[test]
fn cli_trains_the_fast_recipe_and_names_bad_flags() {
    let out = std::env::temp_dir().join(format!("cifar10-cli-fast-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--data", &common::tarball().display().to_string(), "--recipe", "fast", "--epochs", "1"])
        .args(["--width", "0.0625", "--batch", "16", "--train-subset", "64", "--test-subset", "32", "--tta", "1"])
        .args(["--out", &out.display().to_string()])
        .output()
        .expect("train runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    // The preset's LR, the flag's override of its test-time augmentation, the targets line.
    assert!(stdout.contains("max lr 0.4"), "{stdout}");
    assert!(stdout.contains("(test-time augmentation: 2 views)"), "{stdout}");
    assert!(stdout.contains("test accuracy first reached: 90%: not yet"), "{stdout}");
    let log: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(log["config"]["logit_scale"], 0.125);
    assert_eq!(log["config"]["lookahead"], true);
    assert_eq!(log["config"]["tta"], 1);
    assert_eq!(log["epochs"][0]["tta"], 1);
    std::fs::remove_dir_all(&out).unwrap();

    // `--conv auto` times each algorithm flex runs (not gemm) and benchmarks with the fastest,
    // both in the micro-batches `--micro-batch` asks for.
    let run = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--data", &common::sample_dir().display().to_string(), "--conv", "auto"])
        .args(["--width", "0.0625", "--batch", "8", "--micro-batch", "4", "--bench", "1"])
        .output()
        .expect("train runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let line = stdout.lines().find(|l| l.starts_with("conv auto: burn ")).unwrap_or_else(|| panic!("{stdout}"));
    println!("{line}");
    // Three on the CPU: burn's, im2col and our direct kernels (each timed or capped at 3x).
    assert!(line.contains(" ms/step · im2col ") && line.contains(" · direct ") && !line.contains("gemm"), "{line}");
    let chosen = line.split("→ ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or_default();
    assert!(["burn", "im2col", "direct"].contains(&chosen), "{line}");
    assert!(stdout.contains(&format!("conv {chosen} ·")), "the benchmark runs with the choice: {stdout}");
    assert!(stdout.contains("batch 8 as 2 x 4 ·"), "the benchmark's step ran as two passes: {stdout}");

    for (args, expect) in [
        (&["--recipe", "turbo"][..], "--recipe takes seed or fast, not turbo"),
        (&["--label-smoothing", "2"][..], "--label-smoothing: at least 0 and below 1"),
        (&["--lookahead", "perhaps"][..], "--lookahead: true or false"),
        (&["--conv", "fastest"][..], "--conv takes burn, im2col, gemm, direct or auto"),
        (&["--micro-batch", "0"][..], "--micro-batch must be at least 1"),
        // Our GEMM kernels need a CubeCL device; flex refuses them instead of running another.
        (&["--conv", "gemm"][..], "--conv gemm needs a CubeCL backend (--backend wgpu or vulkan), not flex"),
    ] {
        let run = Command::new(env!("CARGO_BIN_EXE_train")).args(["--data", "x"]).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains(expect), "{args:?}: {stderr}");
    }
}

/// `train --bench-layers` times every ResNet-9 convolution shape's three passes with each
/// algorithm the device runs (flex: burn, im2col and our direct kernels; gemm needs a CubeCL
/// device).
#[test]
fn cli_benchmarks_each_layer_and_pass() {
    let run = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--bench-layers", "--width", "0.0625", "--batch", "2", "--reps", "1"])
        .output()
        .expect("train runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("layer backend=flex")).collect();
    // 6 shapes x 3 passes x 3 algorithms.
    assert_eq!(lines.len(), 54, "{stdout}");
    for pass in ["forward", "input gradient", "weight gradient"] {
        for algorithm in ["im2col", "direct"] {
            assert!(lines.iter().any(|l| l.contains("3->4@32") && l.contains(pass) && l.contains(algorithm)), "{pass}: {stdout}");
        }
    }
    assert!(!stdout.contains("gemm"), "{stdout}");
    for l in &lines {
        let gflops: f64 = l.split("ms").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(-1.0);
        assert!(gflops > 0.0 && gflops.is_finite(), "{l}");
    }
}
