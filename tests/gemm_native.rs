//! The implicit-GEMM convolution kernels (`ConvAlgorithm::Gemm`, src/kernels) against burn's
//! own conv2d on native Vulkan: forward, input gradient and weight gradient of every ResNet-9
//! convolution shape at full width, batches 1, 3 and 33, relative error <= 1e-4. The browser
//! suite (`gemm_conv_matches_burn_*` in tests/web.rs) checks the same on WebGPU.
//!
//! Needs a CubeCL device, so it builds only with `--features wgpu` and compiles to nothing
//! otherwise: `cargo test --release --features wgpu --test gemm_native -- --nocapture`
//! (lavapipe on a machine without a GPU: README.md).
#![cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]

mod values;

use burn::prelude::*;
use cifar10_webgpu::model::{conv3x3_with, ConvAlgorithm};
use values::{relative_error, test_values};

const TOLERANCE: f32 = 1e-4;

fn tensor(shape: [usize; 4], salt: u32, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(test_values(shape.iter().product(), salt), shape), device)
}

fn read(t: Tensor<4>) -> Vec<f32> {
    pollster::block_on(t.into_data_async()).expect("GPU read").try_to_vec::<f32>().expect("f32 data")
}

/// Output, input gradient and weight gradient of `algorithm`, from one backward pass of
/// sum(conv(x, w) * g).
fn conv_and_grads(algorithm: ConvAlgorithm, x: &Tensor<4>, w: &Tensor<4>, g: &Tensor<4>) -> [Vec<f32>; 3] {
    let x = x.clone().require_grad();
    let w = w.clone().require_grad();
    let y = conv3x3_with(algorithm, x.clone(), w.clone());
    let grads = (y.clone() * g.clone()).sum().backward();
    let dx = x.grad(&grads).expect("input gradient");
    let dw = w.grad(&grads).expect("weight gradient");
    [read(y), read(dx), read(dw)]
}

#[test]
fn gemm_matches_burn_on_every_resnet9_layer() {
    let device = Device::wgpu_options()
        .graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan)
        .init()
        .expect("a Vulkan adapter (lavapipe: mesa-vulkan-drivers, README.md)")
        .autodiff();
    assert!(ConvAlgorithm::Gemm.available(&device), "gemm should run on a CubeCL device");
    let layers = [(3, 64, 32), (64, 128, 32), (128, 128, 16), (128, 256, 16), (256, 512, 8), (512, 512, 4)];
    let mut failures = Vec::new();
    let mut worst = 0.0f32;
    for (i, &(c_in, c_out, size)) in layers.iter().enumerate() {
        for n in [1usize, 3, 33] {
            let salt = 1000 * i as u32 + 10 * n as u32;
            let x = tensor([n, c_in, size, size], salt, &device);
            let w = tensor([c_out, c_in, 3, 3], salt + 1, &device);
            let g = tensor([n, c_out, size, size], salt + 2, &device);
            let start = std::time::Instant::now();
            let reference = conv_and_grads(ConvAlgorithm::Burn, &x, &w, &g);
            let mid = std::time::Instant::now();
            let gemm = conv_and_grads(ConvAlgorithm::Gemm, &x, &w, &g);
            let end = std::time::Instant::now();
            // Not all zero: a kernel that writes nothing must not pass by comparing zeros.
            assert!(reference.iter().all(|r| r.iter().any(|v| *v != 0.0)), "degenerate reference");
            let errors: Vec<f32> = gemm.iter().zip(&reference).map(|(a, b)| relative_error(a, b)).collect();
            let shape = format!("{n}x{c_in}x{size}x{size} -> {c_out}");
            println!(
                "gemm vs burn, {shape}: forward {:.1e}, input grad {:.1e}, weight grad {:.1e} (burn {:.1} s, gemm {:.1} s)",
                errors[0],
                errors[1],
                errors[2],
                (mid - start).as_secs_f64(),
                (end - mid).as_secs_f64()
            );
            for (what, e) in ["forward", "input gradient", "weight gradient"].iter().zip(&errors) {
                // `!(e <= tol)` so that a NaN fails too.
                if !(*e <= TOLERANCE) {
                    failures.push(format!("{what} off by {e:e} on {shape}"));
                }
                worst = worst.max(*e);
            }
        }
    }
    println!("gemm vs burn, every ResNet-9 layer at batches 1, 3, 33: worst relative error {worst:.1e}");
    assert!(failures.is_empty(), "gemm differs from burn:\n{}", failures.join("\n"));
}
