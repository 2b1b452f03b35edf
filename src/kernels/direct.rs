//! Our CPU convolutions: the recipe's one shape (3x3, stride 1, pad 1, no bias, f32, NCHW)
//! as blocked direct kernels over plain slices, for burn-flex (`cpu_extension.rs`) natively and
//! in the page's wasm (SIMD128).
//!
//! Output channels are vectorised: weights are packed `[c_out / 8][c_in][9][8]`, so for each
//! input channel and tap one 8-float load feeds 8 output channels, and a tile of `TILE_X`
//! neighbouring pixels x 16 output channels stays in registers while every
//! input channel and tap is added in; each input value is a broadcast from the zero-padded
//! plane. No im2col matrix is built. The input gradient is the same kernel on the weights
//! transposed and flipped; the weight gradient is a reduction over pixels of the output
//! gradient (packed pixel-major, 8 channels a vector) times 9 broadcast input values.
//!
//! The lanes are `[f32; 8]` arrays that LLVM keeps in vector registers: 1 AVX2 register, or
//! 2 SIMD128 registers in wasm. Natively the kernels are compiled twice, once with AVX2 + FMA
//! enabled and chosen at run time where the CPU has them (`is_x86_feature_detected!`), once
//! portable.

/// Lanes of one vector of output channels.
pub const LANES: usize = 8;
/// Vectors of output channels a tile holds: two (12 vectors of accumulators). One a tile in
/// wasm (fewer SIMD128 registers live) measured no faster in Chromium (415 against 437
/// images/s at width 0.125, batch 64), so both targets use two.
const CO_VECS: usize = 2;
/// Output channels a tile holds.
const CO_TILE: usize = CO_VECS * LANES;
/// Neighbouring pixels a tile holds.
const TILE_X: usize = 6;

type V = [f32; LANES];

#[inline(always)]
fn fma(acc: &mut V, w: &V, x: f32, fused: bool) {
    for l in 0..LANES {
        acc[l] = if fused { w[l].mul_add(x, acc[l]) } else { acc[l] + w[l] * x };
    }
}

/// Weights `[c_out, c_in, 3, 3]` packed `[ceil(c_out / 8)][c_in][9][8]`, zero beyond c_out;
/// `flip_transpose`: the input gradient's weights (`[c_in, c_out]` swapped, taps reversed).
pub fn pack_weights(weight: &[f32], c_out: usize, c_in: usize, flip_transpose: bool) -> (Vec<f32>, usize, usize) {
    let (co, ci) = if flip_transpose { (c_in, c_out) } else { (c_out, c_in) };
    let blocks = co.div_ceil(LANES);
    let mut packed = vec![0f32; blocks * ci * 9 * LANES];
    for o in 0..co {
        for i in 0..ci {
            for k in 0..9 {
                let v = if flip_transpose { weight[(i * c_in + o) * 9 + (8 - k)] } else { weight[(o * c_in + i) * 9 + k] };
                packed[((o / LANES * ci + i) * 9 + k) * LANES + o % LANES] = v;
            }
        }
    }
    (packed, co, ci)
}

/// One image's planes `[c][h][w]` zero-padded by one pixel into `[c][h + 2][w + 2]`.
fn pad_into(src: &[f32], c: usize, h: usize, w: usize, dst: &mut Vec<f32>) {
    let (hp, wp) = (h + 2, w + 2);
    dst.clear();
    dst.resize(c * hp * wp, 0.0);
    for ch in 0..c {
        for y in 0..h {
            let from = &src[(ch * h + y) * w..(ch * h + y + 1) * w];
            dst[(ch * hp + y + 1) * wp + 1..(ch * hp + y + 1) * wp + 1 + w].copy_from_slice(from);
        }
    }
}

macro_rules! kernels {
    ($forward:ident, $weight_grad:ident, $fused:expr $(, #[$attr:meta])?) => {
        /// `out [n, co, h, w] = conv(x [n, ci, h, w])` with `packed` from [`pack_weights`].
        /// A tile is `TILE_X` consecutive pixels of the image (across rows where the map is
        /// narrow: each input value is a broadcast, so its address need not be contiguous).
        $(#[$attr])?
        unsafe fn $forward(x: &[f32], n: usize, ci: usize, h: usize, w: usize, packed: &[f32], co: usize, out: &mut [f32]) {
            let (hp, wp) = (h + 2, w + 2);
            let pixels = h * w;
            let mut padded = Vec::new();
            // A block's outputs pixel-major (`[pixel][16]`), written to the channel planes once
            // the block is done: tiles written straight into planes 4 KiB apart (a 32x32 map)
            // all fall in one cache set and evict each other.
            let mut staged = vec![0f32; pixels * CO_TILE];
            let blocks = co.div_ceil(LANES);
            for img in 0..n {
                pad_into(&x[img * ci * pixels..(img + 1) * ci * pixels], ci, h, w, &mut padded);
                let out_img = &mut out[img * co * pixels..(img + 1) * co * pixels];
                let mut b0 = 0;
                while b0 < blocks {
                    let nb = (blocks - b0).min(CO_TILE / LANES);
                    let mut p0 = 0;
                    while p0 < pixels {
                        let np = (pixels - p0).min(TILE_X);
                        // Each pixel's top-left tap in the padded plane.
                        let mut base = [0usize; TILE_X];
                        for (j, b) in base.iter_mut().enumerate() {
                            let p = p0 + j.min(np - 1);
                            *b = (p / w) * wp + p % w;
                        }
                        let mut acc = [[[0f32; LANES]; 2]; TILE_X];
                        // The hot loop reads through raw pointers: every index below is within
                        // its buffer by construction (`base` + a tap stays inside the padded
                        // plane; `packed` holds `blocks * ci * 9` vectors), and bounds checks
                        // there cost as much as the arithmetic.
                        let taps = [0, 1, 2, wp, wp + 1, wp + 2, 2 * wp, 2 * wp + 1, 2 * wp + 2];
                        for i in 0..ci {
                            let plane = padded.as_ptr().add(i * hp * wp);
                            let w0p = packed.as_ptr().add((b0 * ci + i) * 9 * LANES) as *const V;
                            if nb == 2 {
                                let w1p = packed.as_ptr().add(((b0 + 1) * ci + i) * 9 * LANES) as *const V;
                                for (k, off) in taps.iter().enumerate() {
                                    let (w0, w1) = (&*w0p.add(k), &*w1p.add(k));
                                    for j in 0..TILE_X {
                                        let v = *plane.add(base[j] + off);
                                        fma(&mut acc[j][0], w0, v, $fused);
                                        fma(&mut acc[j][1], w1, v, $fused);
                                    }
                                }
                            } else {
                                for (k, off) in taps.iter().enumerate() {
                                    let w0 = &*w0p.add(k);
                                    for j in 0..TILE_X {
                                        fma(&mut acc[j][0], w0, *plane.add(base[j] + off), $fused);
                                    }
                                }
                            }
                        }
                        for (j, a) in acc.iter().enumerate().take(np) {
                            let at = &mut staged[(p0 + j) * CO_TILE..(p0 + j + 1) * CO_TILE];
                            for (v, lanes) in a.iter().enumerate().take(CO_VECS) {
                                at[v * LANES..(v + 1) * LANES].copy_from_slice(lanes);
                            }
                        }
                        p0 += np;
                    }
                    for o in b0 * LANES..((b0 + nb) * LANES).min(co) {
                        let c = o - b0 * LANES;
                        for (p, value) in out_img[o * pixels..(o + 1) * pixels].iter_mut().enumerate() {
                            *value = staged[p * CO_TILE + c];
                        }
                    }
                    b0 += nb;
                }
            }
        }

        /// `dw [co, ci, 3, 3]` (packed `[ceil(co / 8)][ci][9][8]`) from `x [n, ci, h, w]` and
        /// the output gradient `g [n, co, h, w]`.
        $(#[$attr])?
        unsafe fn $weight_grad(x: &[f32], g: &[f32], n: usize, ci: usize, co: usize, h: usize, w: usize, dw: &mut [f32]) {
            let (hp, wp) = (h + 2, w + 2);
            let blocks = co.div_ceil(LANES);
            let mut padded = Vec::new();
            // The output gradient pixel-major: [block][y][x][8].
            let mut gt = vec![0f32; blocks * h * w * LANES];
            for img in 0..n {
                pad_into(&x[img * ci * h * w..(img + 1) * ci * h * w], ci, h, w, &mut padded);
                let g_img = &g[img * co * h * w..(img + 1) * co * h * w];
                for o in 0..co {
                    let (b, l) = (o / LANES, o % LANES);
                    for p in 0..h * w {
                        gt[(b * h * w + p) * LANES + l] = g_img[o * h * w + p];
                    }
                }
                for b in 0..blocks {
                    let gb = &gt[b * h * w * LANES..(b + 1) * h * w * LANES];
                    for i in 0..ci {
                        let plane = &padded[i * hp * wp..(i + 1) * hp * wp];
                        let mut acc = [[0f32; LANES]; 9];
                        let taps = [0, 1, 2, wp, wp + 1, wp + 2, 2 * wp, 2 * wp + 1, 2 * wp + 2];
                        // Raw reads as in the forward kernel: in bounds by construction.
                        let (gp, pp) = (gb.as_ptr() as *const V, plane.as_ptr());
                        for y in 0..h {
                            for xx in 0..w {
                                let gv = &*gp.add(y * w + xx);
                                let at = pp.add(y * wp + xx);
                                for k in 0..9 {
                                    fma(&mut acc[k], gv, *at.add(taps[k]), $fused);
                                }
                            }
                        }
                        let at = &mut dw[(b * ci + i) * 9 * LANES..(b * ci + i + 1) * 9 * LANES];
                        for k in 0..9 {
                            for l in 0..LANES {
                                at[k * LANES + l] += acc[k][l];
                            }
                        }
                    }
                }
            }
        }
    };
}

kernels!(forward_portable, weight_grad_portable, false);
#[cfg(target_arch = "x86_64")]
kernels!(forward_avx2, weight_grad_avx2, true, #[target_feature(enable = "avx2,fma")]);

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The convolution of `x [n, c_in, h, w]` by `weight [c_out, c_in, 3, 3]`: `[n, c_out, h, w]`.
/// `transposed`: by the weights transposed and flipped (the input gradient of a convolution by
/// `weight`, for `x` an output gradient `[n, c_out, h, w]`; the result is `[n, c_in, h, w]`).
pub fn conv3x3(x: &[f32], n: usize, h: usize, w: usize, weight: &[f32], c_out: usize, c_in: usize, transposed: bool) -> Vec<f32> {
    let (packed, co, ci) = pack_weights(weight, c_out, c_in, transposed);
    assert_eq!(x.len(), n * ci * h * w, "the input does not match its shape");
    let mut out = vec![0f32; n * co * h * w];
    // SAFETY: the AVX2 variant runs only where the CPU has AVX2 and FMA.
    unsafe {
        if avx2() {
            #[cfg(target_arch = "x86_64")]
            forward_avx2(x, n, ci, h, w, &packed, co, &mut out);
        } else {
            forward_portable(x, n, ci, h, w, &packed, co, &mut out);
        }
    }
    out
}

/// The weight gradient `[c_out, c_in, 3, 3]` of the convolution of `x [n, c_in, h, w]`, for the
/// output gradient `g [n, c_out, h, w]`.
pub fn conv3x3_weight_grad(x: &[f32], g: &[f32], n: usize, c_in: usize, c_out: usize, h: usize, w: usize) -> Vec<f32> {
    assert_eq!((x.len(), g.len()), (n * c_in * h * w, n * c_out * h * w), "inputs do not match their shapes");
    let blocks = c_out.div_ceil(LANES);
    let mut packed = vec![0f32; blocks * c_in * 9 * LANES];
    // SAFETY: as in `conv3x3`.
    unsafe {
        if avx2() {
            #[cfg(target_arch = "x86_64")]
            weight_grad_avx2(x, g, n, c_in, c_out, h, w, &mut packed);
        } else {
            weight_grad_portable(x, g, n, c_in, c_out, h, w, &mut packed);
        }
    }
    let mut dw = vec![0f32; c_out * c_in * 9];
    for o in 0..c_out {
        for i in 0..c_in {
            for k in 0..9 {
                dw[(o * c_in + i) * 9 + k] = packed[((o / LANES * c_in + i) * 9 + k) * LANES + o % LANES];
            }
        }
    }
    dw
}

/// The recipe's 2x2, stride 2 max-pool of `x [n, c, h, w]` (h, w even): `[n, c, h/2, w/2]`.
/// burn-flex runs every pool through one generic 3-d loop with indices (11% of the page's step
/// with the direct convolutions); this is the one shape, without indices (the backward pass
/// finds the maximum again from the input it keeps).
pub fn max_pool2x2(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let mut out = vec![0f32; n * c * ho * wo];
    for (plane, o) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(ho * wo)) {
        for y in 0..ho {
            let (r0, r1) = (&plane[2 * y * w..(2 * y + 1) * w], &plane[(2 * y + 1) * w..(2 * y + 2) * w]);
            for (xo, v) in o[y * wo..(y + 1) * wo].iter_mut().enumerate() {
                *v = window_max(r0[2 * xo], r0[2 * xo + 1], r1[2 * xo], r1[2 * xo + 1]).0;
            }
        }
    }
    out
}

/// The maximum of a window read row by row and its position (0..4): the first maximum, a NaN
/// winning, as PyTorch's and burn's pools choose.
#[inline(always)]
fn window_max(a: f32, b: f32, c: f32, d: f32) -> (f32, usize) {
    let mut best = (a, 0);
    for (i, v) in [b, c, d].into_iter().enumerate() {
        if v > best.0 || (v.is_nan() && !best.0.is_nan()) {
            best = (v, i + 1);
        }
    }
    best
}

/// The input gradient of [`max_pool2x2`]: each window's output gradient `g [n, c, h/2, w/2]`
/// goes to the position of its maximum in `x`, zeros elsewhere.
pub fn max_pool2x2_backward(x: &[f32], g: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let mut dx = vec![0f32; n * c * h * w];
    for ((plane, d), gp) in x.chunks_exact(h * w).zip(dx.chunks_exact_mut(h * w)).zip(g.chunks_exact(ho * wo)) {
        for y in 0..ho {
            for xo in 0..wo {
                let (i0, i1) = (2 * y * w + 2 * xo, (2 * y + 1) * w + 2 * xo);
                let (_, at) = window_max(plane[i0], plane[i0 + 1], plane[i1], plane[i1 + 1]);
                d[if at < 2 { i0 + at } else { i1 + at - 2 }] = gp[y * wo + xo];
            }
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], n: usize, ci: usize, h: usize, w: usize, weight: &[f32], co: usize) -> Vec<f32> {
        let mut out = vec![0f32; n * co * h * w];
        for img in 0..n {
            for o in 0..co {
                for y in 0..h {
                    for xx in 0..w {
                        let mut s = 0f64;
                        for i in 0..ci {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (yy, xs) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                    if yy >= 0 && xs >= 0 && (yy as usize) < h && (xs as usize) < w {
                                        s += weight[(o * ci + i) * 9 + ky * 3 + kx] as f64
                                            * x[((img * ci + i) * h + yy as usize) * w + xs as usize] as f64;
                                    }
                                }
                            }
                        }
                        out[((img * co + o) * h + y) * w + xx] = s as f32;
                    }
                }
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The pool against a plain reference, ties included (the first maximum takes the
    /// gradient), on 2 images x 3 channels of 4x6.
    #[test]
    fn max_pool_takes_the_first_maximum_and_sends_it_the_gradient() {
        let (n, c, h, w) = (2, 3, 4, 6);
        let mut x = values(n * c * h * w, 7);
        (x[0], x[1]) = (10.0, 10.0); // a tie for the first window's maximum: the first value wins
        let g = values(n * c * (h / 2) * (w / 2), 8);
        let (out, dx) = (max_pool2x2(&x, n, c, h, w), max_pool2x2_backward(&x, &g, n, c, h, w));
        let mut expected_dx = vec![0f32; x.len()];
        for p in 0..n * c {
            for y in 0..h / 2 {
                for xo in 0..w / 2 {
                    let idx = [(2 * y, 2 * xo), (2 * y, 2 * xo + 1), (2 * y + 1, 2 * xo), (2 * y + 1, 2 * xo + 1)]
                        .map(|(r, col)| p * h * w + r * w + col);
                    let mut best = idx[0];
                    for &i in &idx[1..] {
                        if x[i] > x[best] {
                            best = i;
                        }
                    }
                    let o = (p * (h / 2) + y) * (w / 2) + xo;
                    assert_eq!(out[o], x[best]);
                    expected_dx[best] = g[o];
                }
            }
        }
        assert_eq!(dx, expected_dx);
        assert_eq!(dx[0], g[0]);
        assert_eq!(dx[1], 0.0);
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// Forward, input gradient and weight gradient against a float64 reference, on shapes that
    /// leave partial tiles everywhere: 1 image, 3 input channels, 4x4 and 5x7 maps, channel
    /// counts not multiples of 8 or 16.
    #[test]
    fn direct_kernels_match_a_reference_on_odd_shapes() {
        for (n, ci, co, h, w) in [(1, 3, 8, 4, 4), (2, 5, 3, 5, 7), (3, 16, 24, 8, 8), (1, 1, 1, 1, 1), (2, 8, 17, 32, 32), (1, 64, 64, 4, 4)] {
            let x = values(n * ci * h * w, 1);
            let weight = values(co * ci * 9, 2);
            let g = values(n * co * h * w, 3);
            let out = conv3x3(&x, n, h, w, &weight, co, ci, false);
            let err = worst(&out, &reference(&x, n, ci, h, w, &weight, co));
            assert!(err < 1e-5, "forward {n}x{ci}->{co} {h}x{w}: {err:.2e}");
            // Input gradient: the convolution by the transposed, flipped weights.
            let mut flipped = vec![0f32; ci * co * 9];
            for o in 0..co {
                for i in 0..ci {
                    for k in 0..9 {
                        flipped[(i * co + o) * 9 + 8 - k] = weight[(o * ci + i) * 9 + k];
                    }
                }
            }
            let dx = conv3x3(&g, n, h, w, &weight, co, ci, true);
            let err = worst(&dx, &reference(&g, n, co, h, w, &flipped, ci));
            assert!(err < 1e-5, "input grad {n}x{ci}->{co} {h}x{w}: {err:.2e}");
            // Weight gradient: dw[o, i, ky, kx] = sum g[o] * shifted x[i].
            let dw = conv3x3_weight_grad(&x, &g, n, ci, co, h, w);
            let mut expected = vec![0f32; co * ci * 9];
            for o in 0..co {
                for i in 0..ci {
                    for k in 0..9 {
                        let (ky, kx) = (k / 3, k % 3);
                        let mut s = 0f64;
                        for img in 0..n {
                            for y in 0..h {
                                for xx in 0..w {
                                    let (yy, xs) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                    if yy >= 0 && xs >= 0 && (yy as usize) < h && (xs as usize) < w {
                                        s += g[((img * co + o) * h + y) * w + xx] as f64
                                            * x[((img * ci + i) * h + yy as usize) * w + xs as usize] as f64;
                                    }
                                }
                            }
                        }
                        expected[(o * ci + i) * 9 + k] = s as f32;
                    }
                }
            }
            let err = worst(&dw, &expected);
            assert!(err < 1e-5, "weight grad {n}x{ci}->{co} {h}x{w}: {err:.2e}");
        }
    }
}
