//! Our CPU convolutions: the recipe's one shape (3x3, stride 1, pad 1, no bias, f32, NCHW)
//! as blocked direct kernels over plain slices, for burn-flex (`cpu_extension.rs`) natively and
//! in the page's wasm (SIMD128).
//!
//! Output channels are vectorised: weights are packed `[c_out / L][c_in][9][L]` for vectors of
//! `L` lanes, so for each input channel and tap one vector load feeds `L` output channels, and a
//! tile of neighbouring pixels x a few vectors of output channels stays in registers while every
//! input channel and tap is added in; each input value is a broadcast from the zero-padded
//! plane. No im2col matrix is built. The input gradient is the same kernel on the weights
//! transposed and flipped; the weight gradient is a reduction over pixels of the output
//! gradient (packed pixel-major, `L` channels a vector) times 9 broadcast input values.
//!
//! SIMD through macerator (burn-flex's own SIMD crate): each kernel is written once over its
//! `Simd` and compiled for every instruction set of the target, the best one chosen at run time
//! (`Arch::detect`): AVX-512 (16 lanes, 32 registers), AVX2 + FMA (8, 16), SSE4.2 (4) natively;
//! SIMD128 (4 lanes, no FMA) in wasm, where the module is built with `+simd128`. The tile shapes
//! follow each set's register file ([`Forward`], [`WeightGrad`]).

use macerator::{vload_unaligned, vstore_unaligned, Arch, Scalar, Simd, Vector, WithSimd};

/// The 9 taps' offsets in a padded plane `wp` wide, row by row.
fn taps(wp: usize) -> [usize; 9] {
    [0, 1, 2, wp, wp + 1, wp + 2, 2 * wp, 2 * wp + 1, 2 * wp + 2]
}

/// Weights `[c_out, c_in, 3, 3]` packed `[ceil(c_out / lanes)][c_in][9][lanes]`, zero beyond
/// c_out; `flip_transpose`: the input gradient's weights (`[c_in, c_out]` swapped, taps reversed).
fn pack_weights(weight: &[f32], c_out: usize, c_in: usize, flip_transpose: bool, lanes: usize) -> (Vec<f32>, usize, usize) {
    let (co, ci) = if flip_transpose { (c_in, c_out) } else { (c_out, c_in) };
    let blocks = co.div_ceil(lanes);
    let mut packed = vec![0f32; blocks * ci * 9 * lanes];
    for o in 0..co {
        for i in 0..ci {
            for k in 0..9 {
                let v = if flip_transpose { weight[(i * c_in + o) * 9 + (8 - k)] } else { weight[(o * c_in + i) * 9 + k] };
                packed[((o / lanes * ci + i) * 9 + k) * lanes + o % lanes] = v;
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

/// The convolution of `x [n, ci, h, w]` by `weight [c_out, c_in, 3, 3]` (transposed and flipped
/// when `transposed`) into `out [n, co, h, w]`, on one instruction set.
struct Forward<'a> {
    x: &'a [f32],
    n: usize,
    h: usize,
    w: usize,
    weight: &'a [f32],
    c_out: usize,
    c_in: usize,
    transposed: bool,
    out: &'a mut [f32],
}

impl WithSimd for Forward<'_> {
    type Output = ();

    /// Tiles (vectors of output channels x pixels) that leave a register or three for the
    /// weights and the broadcast input, measured per layer (`train --bench-layers`) and per step:
    /// AVX-512 4 x 4 (64 channels, 16 of 32 registers: a step 1.17x the 2 x 12 first tried, width
    /// 0.25), AVX2 2 x 6 (12 of 16), 4 lanes 3 x 4 (12 of 16; V8 keeps one of wasm's for itself).
    /// The first portable kernel held 16 channels x 6 pixels as `[f32; 8]` arrays in every
    /// target, in wasm 24 SIMD128 accumulators for 16 registers. Wider pixel tiles for narrow
    /// blocks, tried with the pixel loop inside the tile's function, cost the page 10%.
    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        // SAFETY: `forward` reads within its buffers by construction (see there).
        unsafe {
            match f32::lanes::<S>() {
                16.. => forward::<S, 4, 4>(self),
                8 => forward::<S, 2, 6>(self),
                _ => forward::<S, 3, 4>(self),
            }
        }
    }
}

/// `NV` vectors of output channels x `TX` pixels a tile. A tile is `TX` consecutive pixels of the
/// image (across rows where the map is narrow: each input value is a broadcast, so its address
/// need not be contiguous).
#[inline(always)]
unsafe fn forward<S: Simd, const NV: usize, const TX: usize>(a: Forward<'_>) {
    const { assert!(NV >= 1 && NV <= 6) };
    let lanes = f32::lanes::<S>();
    let (packed, co, ci) = pack_weights(a.weight, a.c_out, a.c_in, a.transposed, lanes);
    let (n, h, w) = (a.n, a.h, a.w);
    assert_eq!(a.x.len(), n * ci * h * w, "the input does not match its shape");
    assert_eq!(a.out.len(), n * co * h * w, "the output does not match its shape");
    let (hp, wp) = (h + 2, w + 2);
    let pixels = h * w;
    let tile_co = NV * lanes;
    let taps = taps(wp);
    let mut padded = Vec::new();
    // A block's outputs pixel-major (`[pixel][NV * lanes]`), written to the channel planes once
    // the block is done: tiles written straight into planes 4 KiB apart (a 32x32 map) all fall
    // in one cache set and evict each other.
    let mut staged = vec![0f32; pixels * tile_co];
    let blocks = co.div_ceil(lanes);
    for img in 0..n {
        pad_into(&a.x[img * ci * pixels..(img + 1) * ci * pixels], ci, h, w, &mut padded);
        let out_img = &mut a.out[img * co * pixels..(img + 1) * co * pixels];
        let mut b0 = 0;
        while b0 < blocks {
            let nb = (blocks - b0).min(NV);
            let weights = packed.as_ptr().add(b0 * ci * 9 * lanes);
            let mut p0 = 0;
            while p0 < pixels {
                let np = (pixels - p0).min(TX);
                // Each pixel's top-left tap in the padded plane (a partial tile repeats its last).
                let mut base = [0usize; TX];
                for (j, b) in base.iter_mut().enumerate() {
                    let p = p0 + j.min(np - 1);
                    *b = (p / w) * wp + p % w;
                }
                let t = Tile { padded: padded.as_ptr(), plane: hp * wp, ci, weights, block: ci * 9 * lanes, taps, np };
                let at = staged.as_mut_ptr().add(p0 * tile_co);
                // The last block of a layer may hold fewer vectors than a tile (NV <= 6).
                match nb {
                    1 => t.run::<S, 1, TX>(&base, at, tile_co),
                    2 => t.run::<S, 2, TX>(&base, at, tile_co),
                    3 => t.run::<S, 3, TX>(&base, at, tile_co),
                    4 => t.run::<S, 4, TX>(&base, at, tile_co),
                    5 => t.run::<S, 5, TX>(&base, at, tile_co),
                    _ => t.run::<S, 6, TX>(&base, at, tile_co),
                }
                p0 += np;
            }
            for o in b0 * lanes..((b0 + nb) * lanes).min(co) {
                let c = o - b0 * lanes;
                for (p, value) in out_img[o * pixels..(o + 1) * pixels].iter_mut().enumerate() {
                    *value = staged[p * tile_co + c];
                }
            }
            b0 += nb;
        }
    }
}

/// One tile's inputs: the padded image, its planes' size, the block's packed weights and the
/// distance between two blocks' weights.
struct Tile {
    padded: *const f32,
    plane: usize,
    ci: usize,
    weights: *const f32,
    block: usize,
    taps: [usize; 9],
    np: usize,
}

impl Tile {
    /// `NB` vectors of output channels x `TX` pixels, every input channel and tap added in
    /// registers, then stored pixel-major at `at` (`stride` floats a pixel).
    ///
    /// The hot loop reads through raw pointers: every index is within its buffer by
    /// construction (`base` + a tap stays inside the padded plane; the weights hold `NB` blocks
    /// of `ci * 9` vectors), and bounds checks there cost as much as the arithmetic.
    #[inline(always)]
    unsafe fn run<S: Simd, const NB: usize, const TX: usize>(&self, base: &[usize; TX], at: *mut f32, stride: usize) {
        let lanes = f32::lanes::<S>();
        let zero: Vector<S, f32> = 0f32.splat();
        let mut acc = [[zero; NB]; TX];
        for i in 0..self.ci {
            let plane = self.padded.add(i * self.plane);
            let wi = self.weights.add(i * 9 * lanes);
            for (k, off) in self.taps.iter().enumerate() {
                let mut wv = [zero; NB];
                for (b, v) in wv.iter_mut().enumerate() {
                    *v = vload_unaligned(wi.add(b * self.block + k * lanes));
                }
                for j in 0..TX {
                    let x: Vector<S, f32> = (*plane.add(base[j] + off)).splat();
                    for b in 0..NB {
                        acc[j][b] = wv[b].mul_add(x, acc[j][b]);
                    }
                }
            }
        }
        for (j, a) in acc.iter().enumerate().take(self.np) {
            for (b, v) in a.iter().enumerate() {
                vstore_unaligned(at.add(j * stride + b * lanes), *v);
            }
        }
    }
}

/// The weight gradient of the convolution of `x [n, ci, h, w]` for the output gradient
/// `g [n, co, h, w]`, into `dw [co, ci, 3, 3]`, on one instruction set.
struct WeightGrad<'a> {
    x: &'a [f32],
    g: &'a [f32],
    n: usize,
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    dw: &'a mut [f32],
}

impl WithSimd for WeightGrad<'_> {
    type Output = ();

    /// 9 taps x `NG` vectors of output channels a tile: 2 with AVX-512's 32 registers (18
    /// accumulators), 1 elsewhere (9 of 16).
    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        // SAFETY: `weight_grad` reads within its buffers by construction (see there).
        unsafe {
            match f32::lanes::<S>() {
                16.. => weight_grad::<S, 2>(self),
                _ => weight_grad::<S, 1>(self),
            }
        }
    }
}

#[inline(always)]
unsafe fn weight_grad<S: Simd, const NG: usize>(a: WeightGrad<'_>) {
    let lanes = f32::lanes::<S>();
    let WeightGrad { x, g, n, ci, co, h, w, dw } = a;
    assert_eq!((x.len(), g.len(), dw.len()), (n * ci * h * w, n * co * h * w, co * ci * 9), "inputs do not match their shapes");
    let (hp, wp) = (h + 2, w + 2);
    let pixels = h * w;
    let blocks = co.div_ceil(lanes);
    let taps = taps(wp);
    let mut padded = Vec::new();
    // The output gradient pixel-major: [block][y][x][lanes].
    let mut gt = vec![0f32; blocks * pixels * lanes];
    // The gradient packed `[block][ci][9][lanes]`, summed over images.
    let mut packed = vec![0f32; blocks * ci * 9 * lanes];
    for img in 0..n {
        pad_into(&x[img * ci * pixels..(img + 1) * ci * pixels], ci, h, w, &mut padded);
        let g_img = &g[img * co * pixels..(img + 1) * co * pixels];
        for o in 0..co {
            let (b, l) = (o / lanes, o % lanes);
            for p in 0..pixels {
                gt[(b * pixels + p) * lanes + l] = g_img[o * pixels + p];
            }
        }
        let mut b0 = 0;
        while b0 < blocks {
            let nb = (blocks - b0).min(NG);
            let t = GradTile { gt: gt.as_ptr().add(b0 * pixels * lanes), block: pixels * lanes, w, wp, pixels, taps };
            for i in 0..ci {
                let plane = padded.as_ptr().add(i * hp * wp);
                let at = packed.as_mut_ptr().add((b0 * ci + i) * 9 * lanes);
                let stride = ci * 9 * lanes;
                match nb {
                    1 => t.run::<S, 1>(plane, at, stride),
                    _ => t.run::<S, 2>(plane, at, stride),
                }
            }
            b0 += nb;
        }
    }
    for o in 0..co {
        for i in 0..ci {
            for k in 0..9 {
                dw[(o * ci + i) * 9 + k] = packed[((o / lanes * ci + i) * 9 + k) * lanes + o % lanes];
            }
        }
    }
}

/// One image's output gradient, pixel-major from a block on (`block` floats a block).
struct GradTile {
    gt: *const f32,
    block: usize,
    w: usize,
    wp: usize,
    pixels: usize,
    taps: [usize; 9],
}

impl GradTile {
    /// Adds `sum over pixels g[pixel] x plane[pixel + tap]` for the 9 taps x `NB` blocks to the
    /// packed gradient at `at` (`stride` floats a block). Raw reads as in [`Tile::run`]: in
    /// bounds by construction.
    #[inline(always)]
    unsafe fn run<S: Simd, const NB: usize>(&self, plane: *const f32, at: *mut f32, stride: usize) {
        let lanes = f32::lanes::<S>();
        let zero: Vector<S, f32> = 0f32.splat();
        let mut acc = [[zero; NB]; 9];
        // Row by row: no division per pixel (in wasm one costs as much as several products).
        for y in 0..self.pixels / self.w {
            let row = plane.add(y * self.wp);
            let g_row = self.gt.add(y * self.w * lanes);
            for xx in 0..self.w {
                let src = row.add(xx);
                let mut gv = [zero; NB];
                for (b, v) in gv.iter_mut().enumerate() {
                    *v = vload_unaligned(g_row.add(b * self.block + xx * lanes));
                }
                for k in 0..9 {
                    let x: Vector<S, f32> = (*src.add(self.taps[k])).splat();
                    for b in 0..NB {
                        acc[k][b] = gv[b].mul_add(x, acc[k][b]);
                    }
                }
            }
        }
        for (k, a) in acc.iter().enumerate() {
            for (b, v) in a.iter().enumerate() {
                let to = at.add(b * stride + k * lanes);
                vstore_unaligned(to, vload_unaligned::<S, f32>(to) + *v);
            }
        }
    }
}

/// The instruction set the kernels run on: the best this CPU (or the wasm module) has, or
/// natively a lower x86-64 level named by the environment's `CIFAR10_SIMD` (`scalar`, `v2`, `v3`
/// AVX2 + FMA, `v4` AVX-512: to measure one against another; a level the CPU lacks is ignored).
pub fn arch() -> Arch {
    static CHOSEN: std::sync::OnceLock<Arch> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let best = Arch::detect();
        #[cfg(target_arch = "x86_64")]
        if let Ok(name) = std::env::var("CIFAR10_SIMD") {
            let levels = x86_levels(best);
            match levels.iter().find(|a| format!("{a:?}").eq_ignore_ascii_case(name.trim())) {
                Some(level) => return *level,
                None => log::warn!("CIFAR10_SIMD={name}: not one of {levels:?} (what this CPU has); using {best:?}"),
            }
        }
        best
    })
}

/// The x86-64 levels up to `best`, lowest first (each includes the ones below it).
#[cfg(target_arch = "x86_64")]
pub fn x86_levels(best: Arch) -> Vec<Arch> {
    let levels = [Arch::Scalar, Arch::V2, Arch::V3, Arch::V4];
    let at = levels.iter().position(|a| format!("{a:?}") == format!("{best:?}")).unwrap_or(0);
    levels[..=at].to_vec()
}

/// The convolution of `x [n, c_in, h, w]` by `weight [c_out, c_in, 3, 3]`: `[n, c_out, h, w]`.
/// `transposed`: by the weights transposed and flipped (the input gradient of a convolution by
/// `weight`, for `x` an output gradient `[n, c_out, h, w]`; the result is `[n, c_in, h, w]`).
pub fn conv3x3(x: &[f32], n: usize, h: usize, w: usize, weight: &[f32], c_out: usize, c_in: usize, transposed: bool) -> Vec<f32> {
    // SAFETY: `arch()` is what this CPU has.
    unsafe { conv3x3_on(arch(), x, n, h, w, weight, c_out, c_in, transposed) }
}

/// [`conv3x3`] on a given instruction set.
///
/// # Safety
/// The CPU must have `arch`'s instructions (any set up to [`arch`]).
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv3x3_on(
    arch: Arch,
    x: &[f32],
    n: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    c_out: usize,
    c_in: usize,
    transposed: bool,
) -> Vec<f32> {
    let co = if transposed { c_in } else { c_out };
    let mut out = vec![0f32; n * co * h * w];
    arch.dispatch(Forward { x, n, h, w, weight, c_out, c_in, transposed, out: &mut out });
    out
}

/// The weight gradient `[c_out, c_in, 3, 3]` of the convolution of `x [n, c_in, h, w]`, for the
/// output gradient `g [n, c_out, h, w]`.
pub fn conv3x3_weight_grad(x: &[f32], g: &[f32], n: usize, c_in: usize, c_out: usize, h: usize, w: usize) -> Vec<f32> {
    // SAFETY: as in `conv3x3`.
    unsafe { conv3x3_weight_grad_on(arch(), x, g, n, c_in, c_out, h, w) }
}

/// [`conv3x3_weight_grad`] on a given instruction set.
///
/// # Safety
/// As [`conv3x3_on`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv3x3_weight_grad_on(
    arch: Arch,
    x: &[f32],
    g: &[f32],
    n: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
) -> Vec<f32> {
    let mut dw = vec![0f32; c_out * c_in * 9];
    arch.dispatch(WeightGrad { x, g, n, ci: c_in, co: c_out, h, w, dw: &mut dw });
    dw
}

/// The recipe's 2x2, stride 2 max-pool of `x [n, c, h, w]` (h, w even): `[n, c, h/2, w/2]`.
/// burn-flex runs every pool through one generic 3-d loop with indices (11% of the page's step
/// with the direct convolutions); this is the one shape, without indices (the backward pass
/// finds the maximum again from the input it keeps). Written branch-free over pairs of a row so
/// that LLVM vectorises it (SIMD128 in wasm, AVX-512 natively): a loop that tracked the
/// maximum's index took 13% of a native step.
pub fn max_pool2x2(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    let mut out = vec![0f32; n * c * ho * wo];
    for (plane, o) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(ho * wo)) {
        for (rows, o_row) in plane.chunks_exact(2 * w).zip(o.chunks_exact_mut(wo)) {
            let (r0, r1) = rows.split_at(w);
            for ((v, p0), p1) in o_row.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                *v = max2(max2(p0[0], p0[1]), max2(p1[0], p1[1]));
            }
        }
    }
    out
}

/// The larger of two values, a NaN winning (as PyTorch's and burn's pools).
#[inline(always)]
fn max2(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() {
        a
    } else {
        b
    }
}

/// Whether `v` is the window's pick for its maximum `m`: equal to it, or a NaN (`m` is NaN then).
#[inline(always)]
fn picks(v: f32, m: f32) -> bool {
    v == m || v.is_nan()
}

/// The input gradient of [`max_pool2x2`]: each window's output gradient `g [n, c, h/2, w/2]`
/// goes to the position of its maximum in `x` (the first maximum read row by row, or the first
/// NaN, as PyTorch's and burn's pools choose), zeros elsewhere.
pub fn max_pool2x2_backward(x: &[f32], g: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    // SAFETY: `arch()` is what this CPU has.
    unsafe { max_pool2x2_backward_on(arch(), x, g, n, c, h, w) }
}

/// [`max_pool2x2_backward`] on a given instruction set.
///
/// # Safety
/// As [`conv3x3_on`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn max_pool2x2_backward_on(arch: Arch, x: &[f32], g: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    assert_eq!((x.len(), g.len()), (n * c * h * w, n * c * (h / 2) * (w / 2)), "inputs do not match their shapes");
    let mut dx = vec![0f32; n * c * h * w];
    arch.dispatch(PoolBackward { x, g, h, w, dx: &mut dx });
    dx
}

/// The pool's backward pass on one instruction set, a pair of rows at a time, in vectors of the
/// input's resolution: each lane finds its window's other column by a select between its right
/// neighbour (even lanes) and its left (odd lanes), so no lane shuffles (which macerator does
/// not have) and no branch on which position holds the maximum (random: a scalar loop of such
/// branches took 8-9% of a native step). A vector with a NaN, and a row's last few windows, take
/// the scalar path.
struct PoolBackward<'a> {
    x: &'a [f32],
    g: &'a [f32],
    h: usize,
    w: usize,
    dx: &'a mut [f32],
}

impl WithSimd for PoolBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self) {
        let PoolBackward { x, g, h, w, dx } = self;
        let (ho, wo) = (h / 2, w / 2);
        let lanes = f32::lanes::<S>();
        // The vector path needs whole windows in a vector.
        let vector = lanes >= 2 && lanes % 2 == 0;
        let zero: Vector<S, f32> = 0f32.splat();
        // 1 in even lanes, 0 in odd ones; `even()` the mask of it (a mask is not `Copy`: one
        // comparison makes it again where it is needed).
        let parity: Vec<f32> = (0..lanes).map(|l| if l % 2 == 0 { 1.0 } else { 0.0 }).collect();
        // SAFETY: `parity` holds a vector's lanes.
        let parity = unsafe { vload_unaligned::<S, f32>(parity.as_ptr()) };
        let even = || parity.gt(zero);
        // The two rows with a zero on either side (so that every lane's neighbours are in
        // bounds) and the output gradient repeated for both columns of its window.
        let (mut p0, mut p1, mut gx) = (vec![0f32; w + 2], vec![0f32; w + 2], vec![0f32; w]);
        for ((plane, d), gp) in x.chunks_exact(h * w).zip(dx.chunks_exact_mut(h * w)).zip(g.chunks_exact(ho * wo)) {
            for ((rows, d_rows), g_row) in plane.chunks_exact(2 * w).zip(d.chunks_exact_mut(2 * w)).zip(gp.chunks_exact(wo)) {
                let (r0, r1) = rows.split_at(w);
                let (d0, d1) = d_rows.split_at_mut(w);
                let mut xo = 0;
                if vector {
                    p0[1..w + 1].copy_from_slice(r0);
                    p1[1..w + 1].copy_from_slice(r1);
                    for (pair, &v) in gx.chunks_exact_mut(2).zip(g_row) {
                        pair.fill(v);
                    }
                    while 2 * xo + lanes <= w {
                        let at = 2 * xo;
                        // SAFETY: `at + lanes <= w`, and the padded rows hold `w + 2` values.
                        let (a, c, neighbour_a, neighbour_c) = unsafe {
                            let (q0, q1) = (p0.as_ptr().add(at), p1.as_ptr().add(at));
                            (
                                vload_unaligned::<S, f32>(q0.add(1)),
                                vload_unaligned::<S, f32>(q1.add(1)),
                                even().select(vload_unaligned(q0.add(2)), vload_unaligned(q0)),
                                even().select(vload_unaligned(q1.add(2)), vload_unaligned(q1)),
                            )
                        };
                        if (a.ne(a).or(c.ne(c))).any() {
                            break; // a NaN: this row's remaining windows on the scalar path
                        }
                        let m = a.max(neighbour_a).max(c.max(neighbour_c));
                        // Row 0: an even lane is its window's first position; an odd lane comes
                        // after its left neighbour. Row 1: after both of row 0, and an odd lane
                        // after its left neighbour in row 1 too.
                        let top = a.eq(m).and(even().or(neighbour_a.ne(m)));
                        let bottom = c.eq(m).and(a.ne(m)).and(neighbour_a.ne(m)).and(even().or(neighbour_c.ne(m)));
                        // SAFETY: as the loads above; `gx` and the rows of `d` hold `w` values.
                        unsafe {
                            let gv = vload_unaligned::<S, f32>(gx.as_ptr().add(at));
                            vstore_unaligned(d0.as_mut_ptr().add(at), top.select(gv, zero));
                            vstore_unaligned(d1.as_mut_ptr().add(at), bottom.select(gv, zero));
                        }
                        xo += lanes / 2;
                    }
                }
                for xo in xo..wo {
                    let (a, b, c, e) = (r0[2 * xo], r0[2 * xo + 1], r1[2 * xo], r1[2 * xo + 1]);
                    let (gv, m) = (g_row[xo], max2(max2(a, b), max2(c, e)));
                    let sa = picks(a, m);
                    let sb = !sa && picks(b, m);
                    let sc = !sa && !sb && picks(c, m);
                    let se = !sa && !sb && !sc;
                    d0[2 * xo] = if sa { gv } else { 0.0 };
                    d0[2 * xo + 1] = if sb { gv } else { 0.0 };
                    d1[2 * xo] = if sc { gv } else { 0.0 };
                    d1[2 * xo + 1] = if se { gv } else { 0.0 };
                }
            }
        }
    }
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

    /// The pool's rule, plainly: each window's pick (the first maximum read row by row, or the
    /// first NaN), as an index into `x`, and the input gradient it implies.
    fn pool_rule(x: &[f32], g: &[f32], n: usize, c: usize, h: usize, w: usize) -> (Vec<usize>, Vec<f32>) {
        let (mut picked, mut dx) = (Vec::new(), vec![0f32; x.len()]);
        for p in 0..n * c {
            for y in 0..h / 2 {
                for xo in 0..w / 2 {
                    let idx = [(2 * y, 2 * xo), (2 * y, 2 * xo + 1), (2 * y + 1, 2 * xo), (2 * y + 1, 2 * xo + 1)]
                        .map(|(r, col)| p * h * w + r * w + col);
                    let mut best = idx[0];
                    for &i in &idx[1..] {
                        if x[i] > x[best] || (x[i].is_nan() && !x[best].is_nan()) {
                            best = i;
                        }
                    }
                    dx[best] = g[picked.len()];
                    picked.push(best);
                }
            }
        }
        (picked, dx)
    }

    /// The pool against a plain reference, ties included (the first maximum takes the
    /// gradient), on 2 images x 3 channels of 4x6.
    #[test]
    fn max_pool_takes_the_first_maximum_and_sends_it_the_gradient() {
        let (n, c, h, w) = (2, 3, 4, 6);
        let mut x = values(n * c * h * w, 7);
        // A tie for the first window's maximum: the first value wins.
        (x[0], x[1]) = (10.0, 10.0);
        // NaNs win, the first of them (as PyTorch's pool): the second window's top right, and
        // both bottom values of the third window.
        let nan_at = [3, w + 4, w + 5];
        for &i in &nan_at {
            x[i] = f32::NAN;
        }
        let g = values(n * c * (h / 2) * (w / 2), 8);
        let (out, dx) = (max_pool2x2(&x, n, c, h, w), max_pool2x2_backward(&x, &g, n, c, h, w));
        let (picked, expected_dx) = pool_rule(&x, &g, n, c, h, w);
        for (o, &best) in picked.iter().enumerate() {
            assert!(out[o] == x[best] || (out[o].is_nan() && x[best].is_nan()), "window {o}: {} against {}", out[o], x[best]);
        }
        assert_eq!(dx, expected_dx);
        assert_eq!(dx[0], g[0]);
        assert_eq!(dx[1], 0.0);
        assert!(out[1].is_nan() && out[2].is_nan(), "a window with a NaN pools to NaN");
        assert_eq!((dx[3], dx[2], dx[w + 2], dx[w + 3]), (g[1], 0.0, 0.0, 0.0), "the NaN takes the gradient");
        assert_eq!((dx[w + 4], dx[w + 5]), (g[2], 0.0), "the first of two NaNs takes it");
    }

    /// The backward pass on every instruction set the CPU has, on rows wide enough for its
    /// vectors (and a few windows past them), against the rule: ties everywhere (values from
    /// three levels), NaNs in even and odd columns of both rows, one NaN-free row after them.
    #[test]
    fn max_pool_backward_matches_the_rule_on_every_instruction_set() {
        for (n, c, h, w) in [(1, 2, 4, 32), (2, 1, 2, 36), (1, 3, 6, 20), (1, 1, 2, 2), (1, 1, 4, 70)] {
            let mut x: Vec<f32> = values(n * c * h * w, 11).into_iter().map(|v| (v * 1.5).round()).collect();
            let len = x.len();
            for i in [5, w + 8, 2 * w + 3, w + 17].into_iter().filter(|&i| i < len) {
                x[i] = f32::NAN;
            }
            let g = values(n * c * (h / 2) * (w / 2), 12);
            let (_, expected) = pool_rule(&x, &g, n, c, h, w);
            for arch in arches() {
                // SAFETY: `arches` lists only what this CPU has.
                let dx = unsafe { max_pool2x2_backward_on(arch, &x, &g, n, c, h, w) };
                assert_eq!(dx, expected, "{arch:?}, {n}x{c}x{h}x{w}");
            }
        }
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// Forward, input gradient and weight gradient against a float64 reference, on shapes that
    /// leave partial tiles everywhere: 1 image, 3 input channels, 4x4 and 5x7 maps, channel
    /// counts not multiples of 8 or 16.
    /// Every instruction set this CPU has, up to the best (the kernels' tile shapes differ
    /// between them).
    fn arches() -> Vec<Arch> {
        #[cfg(target_arch = "x86_64")]
        return x86_levels(Arch::detect());
        #[cfg(not(target_arch = "x86_64"))]
        return vec![Arch::Scalar, Arch::detect()];
    }

    #[test]
    fn direct_kernels_match_a_reference_on_odd_shapes() {
        let arches = arches();
        eprintln!("instruction sets: {arches:?} (best {:?})", Arch::detect());
        for arch in arches {
            // SAFETY: `arches` lists only what this CPU has.
            let conv3x3 = |x: &[f32], n, h, w, weight: &[f32], co, ci, t| unsafe { conv3x3_on(arch, x, n, h, w, weight, co, ci, t) };
            let conv3x3_weight_grad =
                |x: &[f32], g: &[f32], n, ci, co, h, w| unsafe { conv3x3_weight_grad_on(arch, x, g, n, ci, co, h, w) };
            odd_shapes(&format!("{arch:?}"), conv3x3, conv3x3_weight_grad);
        }
    }

    fn odd_shapes(
        arch: &str,
        conv3x3: impl Fn(&[f32], usize, usize, usize, &[f32], usize, usize, bool) -> Vec<f32>,
        conv3x3_weight_grad: impl Fn(&[f32], &[f32], usize, usize, usize, usize, usize) -> Vec<f32>,
    ) {
        for (n, ci, co, h, w) in
            [(1, 3, 8, 4, 4), (2, 5, 3, 5, 7), (3, 16, 24, 8, 8), (1, 1, 1, 1, 1), (2, 8, 17, 32, 32), (1, 64, 64, 4, 4), (1, 4, 40, 6, 5)]
        {
            let x = values(n * ci * h * w, 1);
            let weight = values(co * ci * 9, 2);
            let g = values(n * co * h * w, 3);
            let out = conv3x3(&x, n, h, w, &weight, co, ci, false);
            let err = worst(&out, &reference(&x, n, ci, h, w, &weight, co));
            assert!(err < 1e-5, "{arch} forward {n}x{ci}->{co} {h}x{w}: {err:.2e}");
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
            assert!(err < 1e-5, "{arch} input grad {n}x{ci}->{co} {h}x{w}: {err:.2e}");
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
            assert!(err < 1e-5, "{arch} weight grad {n}x{ci}->{co} {h}x{w}: {err:.2e}");
        }
    }
}
