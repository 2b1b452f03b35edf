//! Implicit-GEMM CubeCL kernels for the recipe's convolution: 3x3, stride 1, pad 1, no bias,
//! f32, NCHW. No im2col buffer in global memory: each workgroup gathers its slice of the
//! im2col matrix into workgroup memory on the fly, zero outside the image.
//!
//! Both kernels compute a 64 x 64 tile of a matrix product per workgroup of 16 x 16
//! invocations, each invocation a 4 x 4 register tile, stepping through the reduction 16 at a
//! time. Workgroup memory: two 16 x 65 f32 tiles (8,320 bytes; the 65th column keeps the
//! transposing stores off a single memory bank), within WebGPU's guaranteed 16 KiB and 256
//! invocations. The tile sizes are literals in the kernels and in `TILE` below.
//!
//! * `forward`: out[c_out, n*h*w] = W[c_out, c_in*9] x im2col(x)[c_in*9, n*h*w]. With `flip`
//!   it is the input gradient: the same product of grad_out with the weight flipped 180 degrees
//!   and its channel axes swapped, indexed so inside the kernel (no flipped copy).
//! * `weight_grad`: dW[c_out, c_in*9] = grad_out[c_out, n*h*w] x im2col(x)^T, the reduction
//!   over n*h*w split across workgroups (z) into a partial buffer summed afterwards.

use burn::tensor::{DType, Shape};
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::{weight_grad_split, TILE};

/// One workgroup: 64 x 64 outputs, 16 x 16 invocations, 4 x 4 each (x: columns, y: rows).
#[cube(launch)]
fn conv3x3_gemm_kernel(
    input: &[f32],
    weight: &[f32],
    output: &mut [f32],
    batch: u32,
    c_in: u32,
    c_out: u32,
    height: u32,
    width: u32,
    #[comptime] flip: bool,
) {
    let tx = UNIT_POS_X as usize;
    let ty = UNIT_POS_Y as usize;
    let t = UNIT_POS as usize;
    let h = height as usize;
    let w = width as usize;
    let hw = h * w;
    let cin = c_in as usize;
    let rows = c_out as usize; // M
    let cols = batch as usize * hw; // N
    let depth = cin * 9; // K
    let m0 = CUBE_POS_Y as usize * 64;
    let n0 = CUBE_POS_X as usize * 64;

    // a_tile[k * 65 + m] (weights), b_tile[k * 65 + n] (gathered input).
    let mut a_tile = Shared::<[f32]>::new_slice(16usize * 65usize);
    let mut b_tile = Shared::<[f32]>::new_slice(16usize * 65usize);
    let mut acc = Array::<f32>::new(16usize);

    // This invocation always gathers the same column of B: decode its pixel once.
    let b_col = t % 64;
    let b_row0 = t / 64;
    let p = n0 + b_col;
    let p_ok = p < cols;
    let image = p / hw;
    let pixel = p % hw;
    let py = pixel / w;
    let px = pixel % w;
    let in_base = image * cin * hw;
    // And the same reduction column of A.
    let a_k = t % 16;
    let a_row0 = t / 16;

    let steps = (depth + 15) / 16;
    for s in 0..steps {
        let k0 = s * 16;
        #[unroll]
        for r in 0..4usize {
            let mm = a_row0 + r * 16;
            let m = m0 + mm;
            let k = k0 + a_k;
            let mut v = 0.0f32;
            if m < rows && k < depth {
                if comptime!(flip) {
                    // Weight [depth/9, rows, 3, 3]: channels swapped, taps reversed.
                    v = weight[((k / 9) * rows + m) * 9 + 8 - k % 9];
                } else {
                    v = weight[m * depth + k];
                }
            }
            a_tile[a_k * 65 + mm] = v;
        }
        #[unroll]
        for r in 0..4usize {
            let kk = b_row0 + r * 4;
            let k = k0 + kk;
            let mut v = 0.0f32;
            if p_ok && k < depth {
                let ci = k / 9;
                let tap = k % 9;
                // Unsigned: row y + ky - 1 is inside when y + ky is in 1..=h.
                let iy = py + tap / 3;
                let ix = px + tap % 3;
                if iy >= 1 && iy <= h && ix >= 1 && ix <= w {
                    v = input[in_base + ci * hw + (iy - 1) * w + ix - 1];
                }
            }
            b_tile[kk * 65 + b_col] = v;
        }
        sync_cube();
        #[unroll]
        for kk in 0..16usize {
            let mut a = Array::<f32>::new(4usize);
            let mut b = Array::<f32>::new(4usize);
            #[unroll]
            for i in 0..4usize {
                a[i] = a_tile[kk * 65 + ty + i * 16];
                b[i] = b_tile[kk * 65 + tx + i * 16];
            }
            #[unroll]
            for i in 0..4usize {
                #[unroll]
                for j in 0..4usize {
                    acc[i * 4 + j] += a[i] * b[j];
                }
            }
        }
        sync_cube();
    }

    #[unroll]
    for i in 0..4usize {
        let m = m0 + ty + i * 16;
        #[unroll]
        for j in 0..4usize {
            let p = n0 + tx + j * 16;
            if m < rows && p < cols {
                output[((p / hw) * rows + m) * hw + p % hw] = acc[i * 4 + j];
            }
        }
    }
}

/// One workgroup: a 64 x 64 tile of dW[c_out, c_in * 9] over pixels
/// `[z * chunk, (z + 1) * chunk)` of the batch, written to partial[z].
#[cube(launch)]
fn conv3x3_weight_grad_kernel(
    input: &[f32],
    grad: &[f32],
    partial: &mut [f32],
    batch: u32,
    c_in: u32,
    c_out: u32,
    height: u32,
    width: u32,
    chunk: u32,
) {
    let tx = UNIT_POS_X as usize;
    let ty = UNIT_POS_Y as usize;
    let t = UNIT_POS as usize;
    let h = height as usize;
    let w = width as usize;
    let hw = h * w;
    let cin = c_in as usize;
    let rows = c_out as usize; // M
    let cols = cin * 9; // N
    let pixels = batch as usize * hw; // reduction
    let m0 = CUBE_POS_Y as usize * 64;
    let n0 = CUBE_POS_X as usize * 64;
    let z = CUBE_POS_Z as usize;
    let p_begin = z * chunk as usize;
    let mut p_end = p_begin + chunk as usize;
    if p_end > pixels {
        p_end = pixels;
    }

    // a_tile[p * 65 + m] (grad_out), b_tile[p * 65 + n] (gathered input).
    let mut a_tile = Shared::<[f32]>::new_slice(16usize * 65usize);
    let mut b_tile = Shared::<[f32]>::new_slice(16usize * 65usize);
    let mut acc = Array::<f32>::new(16usize);

    // Both loaders read pixel p0 + t % 16 (consecutive invocations, consecutive pixels).
    let lane = t % 16;
    let row0 = t / 16;

    let steps = (p_end - p_begin + 15) / 16;
    for s in 0..steps {
        let p = p_begin + s * 16 + lane;
        let p_ok = p < p_end;
        let image = p / hw;
        let pixel = p % hw;
        let py = pixel / w;
        let px = pixel % w;
        #[unroll]
        for r in 0..4usize {
            let mm = row0 + r * 16;
            let m = m0 + mm;
            let mut v = 0.0f32;
            if p_ok && m < rows {
                v = grad[(image * rows + m) * hw + pixel];
            }
            a_tile[lane * 65 + mm] = v;
        }
        #[unroll]
        for r in 0..4usize {
            let nn = row0 + r * 16;
            let k = n0 + nn;
            let mut v = 0.0f32;
            if p_ok && k < cols {
                let ci = k / 9;
                let tap = k % 9;
                let iy = py + tap / 3;
                let ix = px + tap % 3;
                if iy >= 1 && iy <= h && ix >= 1 && ix <= w {
                    v = input[(image * cin + ci) * hw + (iy - 1) * w + ix - 1];
                }
            }
            b_tile[lane * 65 + nn] = v;
        }
        sync_cube();
        #[unroll]
        for kk in 0..16usize {
            let mut a = Array::<f32>::new(4usize);
            let mut b = Array::<f32>::new(4usize);
            #[unroll]
            for i in 0..4usize {
                a[i] = a_tile[kk * 65 + ty + i * 16];
                b[i] = b_tile[kk * 65 + tx + i * 16];
            }
            #[unroll]
            for i in 0..4usize {
                #[unroll]
                for j in 0..4usize {
                    acc[i * 4 + j] += a[i] * b[j];
                }
            }
        }
        sync_cube();
    }

    #[unroll]
    for i in 0..4usize {
        let m = m0 + ty + i * 16;
        #[unroll]
        for j in 0..4usize {
            let k = n0 + tx + j * 16;
            if m < rows && k < cols {
                partial[(z * rows + m) * cols + k] = acc[i * 4 + j];
            }
        }
    }
}

fn dims4(t: &CubeTensor) -> [usize; 4] {
    let shape = t.meta.shape();
    assert_eq!(shape.num_dims(), 4, "conv3x3 gemm: NCHW tensors only");
    [shape[0], shape[1], shape[2], shape[3]]
}

fn f32_contiguous(t: CubeTensor, what: &str) -> CubeTensor {
    // The model is f32 throughout; another dtype here is a programming error.
    assert_eq!(t.dtype, DType::F32, "conv3x3 gemm: {what} must be f32");
    into_contiguous(t)
}

/// Workgroups along one grid axis; WebGPU guarantees 65,535 per dimension (batch 4,096 at
/// 32x32 fits; beyond that the launch is refused here rather than by the driver).
fn tiles(n: usize) -> u32 {
    let count = n.div_ceil(TILE);
    assert!(count <= 65_535, "conv3x3 gemm: {n} rows or columns need {count} workgroups, over 65,535");
    count as u32
}

fn u32_of(n: usize, what: &str) -> u32 {
    u32::try_from(n).unwrap_or_else(|_| panic!("conv3x3 gemm: {what} = {n} does not fit in u32"))
}

/// `x [n, c_in, h, w]` convolved with `weight [c_out, c_in, 3, 3]` -> `[n, c_out, h, w]`; with
/// `flip`, `weight` is read as `[c_in_of_x ... ]` swapped: see the module docs.
pub fn forward(x: CubeTensor, weight: CubeTensor, flip: bool) -> CubeTensor {
    let x = f32_contiguous(x, "input");
    let weight = f32_contiguous(weight, "weight");
    let [n, c_in, h, w] = dims4(&x);
    let [wa, wb, kh, kw] = dims4(&weight);
    assert_eq!((kh, kw), (3, 3), "conv3x3 gemm: 3x3 kernels only");
    // Forward: weight [c_out, c_in]; flipped (input gradient): weight [c_in_of_x, c_out].
    let (c_out, c_in_w) = if flip { (wb, wa) } else { (wa, wb) };
    assert_eq!(c_in_w, c_in, "conv3x3 gemm: weight and input channels differ");
    // The kernel indexes with u32 arithmetic (WGSL has no 64-bit integers).
    u32_of(n * c_in.max(c_out) * h * w, "elements");
    let out = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([n, c_out, h, w]), DType::F32);
    if out.meta.shape().num_elements() == 0 {
        return out;
    }
    let client = x.client.clone();
    conv3x3_gemm_kernel::launch(
        &client,
        CubeCount::Static(tiles(n * h * w), tiles(c_out), 1),
        CubeDim::new_2d(16, 16),
        x.into_buffer_arg(),
        weight.into_buffer_arg(),
        out.clone().into_buffer_arg(),
        u32_of(n, "batch"),
        u32_of(c_in, "c_in"),
        u32_of(c_out, "c_out"),
        u32_of(h, "height"),
        u32_of(w, "width"),
        flip,
    );
    out
}

/// dW `[c_out, c_in, 3, 3]` of `x [n, c_in, h, w]` and `grad [n, c_out, h, w]`, as
/// `[splits, c_out, c_in * 9]` partial sums (the caller sums axis 0); `None` when there is no
/// pixel or no output (the gradient is then all zeros, or empty).
pub fn weight_grad_partial(x: CubeTensor, grad: CubeTensor) -> Option<CubeTensor> {
    let x = f32_contiguous(x, "input");
    let grad = f32_contiguous(grad, "output gradient");
    let [n, c_in, h, w] = dims4(&x);
    let [gn, c_out, gh, gw] = dims4(&grad);
    assert_eq!((gn, gh, gw), (n, h, w), "conv3x3 gemm: input and output gradient shapes differ");
    let pixels = n * h * w;
    if pixels == 0 || c_out == 0 || c_in == 0 {
        return None;
    }
    u32_of(n * c_in.max(c_out) * h * w, "elements");
    let (splits, chunk) = weight_grad_split(pixels, c_out, c_in);
    let cols = c_in * 9;
    u32_of(splits * c_out * cols, "partial elements");
    let partial =
        empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([splits, c_out, cols]), DType::F32);
    let client = x.client.clone();
    // Every element of `partial` is written: each (split, row, column) has one invocation.
    conv3x3_weight_grad_kernel::launch(
        &client,
        CubeCount::Static(tiles(cols), tiles(c_out), u32_of(splits, "splits")),
        CubeDim::new_2d(16, 16),
        x.into_buffer_arg(),
        grad.into_buffer_arg(),
        partial.clone().into_buffer_arg(),
        u32_of(n, "batch"),
        u32_of(c_in, "c_in"),
        u32_of(c_out, "c_out"),
        u32_of(h, "height"),
        u32_of(w, "width"),
        u32_of(chunk, "chunk"),
    );
    Some(partial)
}
