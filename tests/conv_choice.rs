//! The automatic convolution choice on burn's flex CPU backend: both CPU algorithms are timed,
//! gemm (CubeCL only) is excluded, and the faster as measured becomes the process's algorithm.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::prelude::*;
use cifar10_webgpu::config::TrainConfig;
use cifar10_webgpu::conv_choice::{choose_conv, choose_conv_within, TIMED_STEPS};
use cifar10_webgpu::data::Split;
use cifar10_webgpu::model::{conv_algorithm, set_conv_algorithm, ConvAlgorithm};
use cifar10_webgpu::train::{Control, Event, Host, TrainError};

struct TestHost {
    start: std::time::Instant,
    stop: bool,
}

impl Host for TestHost {
    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }
    fn control(&self) -> Control {
        if self.stop { Control::Stop } else { Control::Run }
    }
    fn event(&mut self, _event: Event) {}
    async fn yield_now(&mut self) {}
    async fn sleep_ms(&mut self, _ms: u32) {}
}

// One test: the algorithm is process-wide, so parallel tests would race on it.
#[test]
fn auto_choice_times_burn_and_im2col_on_flex_and_keeps_the_faster() {
    let train = Split::parse("train_2000.bin", &common::read_sample("train_2000.bin")).unwrap();
    let config = TrainConfig::new().with_batch_size(8).with_width(0.0625);
    let device = Device::flex();
    let mut host = TestHost { start: std::time::Instant::now(), stop: false };

    // A user stop ends the choice and leaves the algorithm as it was.
    set_conv_algorithm(ConvAlgorithm::Im2col);
    host.stop = true;
    let stopped = pollster::block_on(choose_conv(&config, &train, &device, &ConvAlgorithm::ALL, &mut host));
    assert!(matches!(stopped, Err(TrainError::Stopped)), "{stopped:?}");
    assert_eq!(conv_algorithm(), ConvAlgorithm::Im2col);

    host.stop = false;
    set_conv_algorithm(ConvAlgorithm::Gemm);
    let choice =
        pollster::block_on(choose_conv(&config, &train, &device, &ConvAlgorithm::ALL, &mut host)).unwrap();
    println!("conv choice on flex: {}", choice.summary());
    assert_eq!((choice.width, choice.batch), (0.0625, 8));
    let algorithms: Vec<ConvAlgorithm> = choice.timings.iter().map(|t| t.algorithm).collect();
    assert_eq!(algorithms, ConvAlgorithm::ALL);
    let gemm = &choice.timings[2].ms_per_step;
    assert_eq!(gemm, &Err("not on this device".to_string()));
    // Three on the CPU: burn, im2col and our direct kernels (gemm is a GPU kernel). Each is
    // timed, or stopped by the cap (over 3x the fastest so far), and the fastest chosen.
    let burn = choice.ms_per_step(ConvAlgorithm::Burn).expect("burn timed");
    assert!(burn > 0.0, "{choice:?}");
    let figures: Vec<(ConvAlgorithm, f64)> = [ConvAlgorithm::Burn, ConvAlgorithm::Im2col, ConvAlgorithm::Direct]
        .into_iter()
        .filter_map(|a| choice.ms_per_step(a).map(|ms| (a, ms)))
        .collect();
    for t in choice.timings.iter().filter(|t| t.algorithm != ConvAlgorithm::Gemm) {
        assert!(t.ms_per_step.is_ok() || t.ms_per_step.as_ref().is_err_and(|e| e.contains("over 3x")), "{choice:?}");
    }
    let fastest = figures.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map(|f| f.0).unwrap();
    assert_eq!(choice.chosen, fastest);
    assert_eq!(conv_algorithm(), fastest, "the choice is set");
    assert!(choice.summary().ends_with(&format!("→ {}", fastest.name())), "{}", choice.summary());
    assert!(TIMED_STEPS >= 1);

    // Only gemm asked for on flex: nothing can be timed, an error, and the algorithm unchanged.
    let none = pollster::block_on(choose_conv(&config, &train, &device, &[ConvAlgorithm::Gemm], &mut host));
    assert!(matches!(&none, Err(TrainError::Device(m)) if m.contains("gemm: not on this device")), "{none:?}");
    assert_eq!(conv_algorithm(), fastest);

    // Under a binding limit each candidate steps in the micro-batches it needs. 64 KiB holds
    // two images' 8 x 32 x 32 floats with burn's convolutions (32 KiB an image at this width)
    // but not one image's im2col columns (36 floats a pixel, 144 KiB): im2col is refused with
    // the figures, burn timed in 4 passes of 2 and chosen.
    let within = pollster::block_on(choose_conv_within(
        &config,
        &train,
        &device,
        &[ConvAlgorithm::Im2col, ConvAlgorithm::Burn],
        Some(64 << 10),
        &mut host,
    ))
    .unwrap();
    println!("conv choice within 64 KiB: {}", within.summary());
    let refused = within.timings[0].ms_per_step.clone().unwrap_err();
    assert!(refused.contains("0.14 MiB buffer") && refused.contains("0.06 MiB per binding"), "{refused}");
    assert!(within.ms_per_step(ConvAlgorithm::Burn).is_some_and(|ms| ms > 0.0), "{within:?}");
    assert_eq!((within.chosen, conv_algorithm()), (ConvAlgorithm::Burn, ConvAlgorithm::Burn));
}

/// Remembered choices are keyed by what the page sees of the device (issue 31): Firefox names
/// every adapter "unnamed adapter" and gives no vendor, so two GPUs there differ only in their
/// limits and features, and must not share a choice.
#[test]
fn device_keys_tell_unnamed_adapters_apart_by_limits_and_features() {
    use cifar10_webgpu::conv_choice::device_key;
    let unnamed = [("vendor", ""), ("architecture", ""), ("device", ""), ("description", ""), ("name", "")];
    let lavapipe = "Limits { max_storage_buffer_binding_size: 134217728, max_compute_workgroup_storage_size: 32768 }";
    let discrete = "Limits { max_storage_buffer_binding_size: 2147483644, max_compute_workgroup_storage_size: 32768 }";
    let features = "Features(SHADER_F16 | TIMESTAMP_QUERY)";
    let a = device_key(&unnamed, lavapipe, features);
    assert_eq!(a, device_key(&unnamed, lavapipe, features), "the same device keeps its key across visits");
    assert_ne!(a, device_key(&unnamed, discrete, features), "other limits, another device");
    assert_ne!(a, device_key(&unnamed, lavapipe, "Features(TIMESTAMP_QUERY)"), "other features, another device");
    // What the browser names is in the key, in words; what it keeps to itself leaves no trace.
    let named = [("vendor", "intel"), ("architecture", "gen-12lp"), ("device", ""), ("description", "")];
    let b = device_key(&named, lavapipe, features);
    assert!(b.starts_with("vendor=intel architecture=gen-12lp limits="), "{b}");
    assert!(a.starts_with("limits="), "{a}");
    assert_ne!(b, device_key(&[("vendor", "nvidia"), ("architecture", "gen-12lp")], lavapipe, features));
}
