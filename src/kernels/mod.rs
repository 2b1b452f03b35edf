//! Our own kernels, reached through burn's backend extension: GPU kernels written in CubeCL
//! (`conv3x3.rs`, `extension.rs`) and CPU kernels for burn-flex (`direct.rs`,
//! `cpu_extension.rs`: the blocked direct convolution, natively and in the page's wasm).
//!
//! burn 0.22 runs every f32 3x3 convolution without cooperative matrices (all browsers) as a
//! direct, untiled kernel; `conv3x3.rs` is an implicit GEMM for the recipe's one shape.
//!
//! The kernels exist only where burn has a CubeCL backend: wasm32 (WebGPU) and native builds
//! with the `wgpu` feature. The native default build runs on burn's `flex` CPU backend, which
//! a CubeCL kernel cannot reach; there [`gemm_available`] is false and `ConvAlgorithm::Gemm`
//! is refused rather than replaced by another algorithm.

#[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
mod conv3x3;
#[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
mod extension;

#[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
pub use extension::{conv3x3_gemm, Conv3x3Gemm};

mod cpu_extension;
pub mod direct;
pub use cpu_extension::{conv3x3_direct, max_pool2x2_direct, Conv3x3Direct};

/// Whether the direct CPU convolution can run on `device`: burn-flex, with or without autodiff.
pub fn direct_available(device: &burn::prelude::Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// Rows and columns of the output tile of one workgroup.
pub const TILE: usize = 64;
/// Reduction step: rows of the staged tiles.
pub const STEP: usize = 16;

/// Whether the GEMM convolution kernels can run on `device`: a CubeCL device (WebGPU, Vulkan,
/// ...), with or without autodiff.
pub fn gemm_available(device: &burn::prelude::Device) -> bool {
    #[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
    {
        matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Cube(_))
    }
    #[cfg(not(any(target_arch = "wasm32", feature = "wgpu")))]
    {
        let _ = device;
        false
    }
}

/// How many pixel chunks the weight gradient's reduction is split into, and their length:
/// enough workgroups to fill a GPU (~512), each at least 256 pixels, and a partial buffer of
/// at most 32 MiB (well under WebGPU's 128 MiB minimum binding size).
pub fn weight_grad_split(pixels: usize, c_out: usize, c_in: usize) -> (usize, usize) {
    let outputs = c_out * c_in * 9;
    let tiles = (c_out.div_ceil(TILE) * (c_in * 9).div_ceil(TILE)).max(1);
    let by_occupancy = 512usize.div_ceil(tiles);
    let by_length = pixels.div_ceil(256);
    let by_memory = ((32 << 20) / 4 / outputs.max(1)).max(1);
    let wanted = by_occupancy.min(by_length).min(by_memory).max(1);
    // Chunks are whole reduction steps; recount so that no chunk is empty.
    let chunk = (pixels.div_ceil(wanted).div_ceil(STEP) * STEP).max(STEP);
    (pixels.div_ceil(chunk).max(1), chunk)
}

#[cfg(test)]
mod tests {
    use super::weight_grad_split;

    #[test]
    fn weight_grad_split_covers_every_pixel_with_nonempty_chunks() {
        for (pixels, c_out, c_in) in
            [(1024, 64, 3), (33 * 1024, 128, 64), (16, 512, 512), (1, 4, 3), (3 * 256, 256, 128), (33 * 64, 512, 256)]
        {
            let (splits, chunk) = weight_grad_split(pixels, c_out, c_in);
            assert!(splits >= 1 && chunk % 16 == 0, "{pixels} {c_out} {c_in}: {splits} x {chunk}");
            assert!(splits * chunk >= pixels && (splits - 1) * chunk < pixels, "{pixels}: {splits} x {chunk}");
            assert!(splits == 1 || splits * c_out * c_in * 9 * 4 <= 32 << 20, "{pixels}: {splits}");
        }
        // A small layer on a big batch is split; a big one on a small batch is not.
        assert!(weight_grad_split(33 * 1024, 64, 3).0 > 100);
        assert_eq!(weight_grad_split(16, 512, 512).0, 1);
    }

    #[test]
    fn gemm_is_unavailable_on_the_cpu_backend() {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let flex = burn::prelude::Device::flex();
            assert!(!super::gemm_available(&flex) && !super::gemm_available(&flex.autodiff()));
        }
    }
}
