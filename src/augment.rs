//! Augmentation and batch building, shared by the CLI and the browser.
//!
//! Order, as in the recipe: random 32x32 crop of the image reflect-padded by 4, horizontal flip
//! with p = 0.5, per-channel normalisation, then cutout of one 8x8 square (set to 0, i.e. to the
//! channel mean, as in Page's and airbench's code). Everything is a pure function of the seed.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::data::{Split, IMAGE_BYTES};

/// Padding of the random crop, pixels.
pub const PAD: usize = 4;
/// Side of the cutout square, pixels.
pub const CUTOUT: usize = 8;
const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;

/// Per-channel mean and standard deviation, in pixel units (0..255).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// Computes mean and std per channel over a split (use the train split).
    pub fn from_split(split: &Split) -> Self {
        let mut sum = [0f64; 3];
        let mut sq = [0f64; 3];
        for img in split.images.chunks_exact(IMAGE_BYTES) {
            for c in 0..3 {
                for &p in &img[c * PLANE..(c + 1) * PLANE] {
                    let p = p as f64;
                    sum[c] += p;
                    sq[c] += p * p;
                }
            }
        }
        let n = (split.len() * PLANE).max(1) as f64;
        let mut norm = Normalization { mean: [0.0; 3], std: [1.0; 3] };
        for c in 0..3 {
            let mean = sum[c] / n;
            norm.mean[c] = mean as f32;
            norm.std[c] = ((sq[c] / n - mean * mean).max(1e-6)).sqrt() as f32;
        }
        norm
    }
}

/// Which augmentations to apply.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    pub crop: bool,
    pub flip: bool,
    pub cutout: bool,
    /// Alternating flip (with `flip`): `Some((seed, epoch))` flips each image by its own fixed
    /// random bit in even epochs and by the opposite in odd ones; `None` tosses a coin.
    pub alternating: Option<(u64, usize)>,
}

impl Augment {
    /// The recipe: crop, flip and cutout.
    pub const FULL: Augment = Augment { crop: true, flip: true, cutout: true, alternating: None };
    /// Evaluation: none.
    pub const NONE: Augment = Augment { crop: false, flip: false, cutout: false, alternating: None };
}

/// The fixed flip bit of training image `index` under the alternating flip (a splitmix64 hash
/// of seed and index: the same on every platform, and independent of the epoch's RNG).
pub fn flip_bit(seed: u64, index: usize) -> bool {
    let mut z = seed.wrapping_add((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & 1 == 1
}

/// Mirrors an index into 0..32 as numpy's `reflect` padding does (edge not repeated).
fn reflect(i: isize) -> usize {
    let n = SIDE as isize;
    let r = if i < 0 { -i } else if i >= n { 2 * (n - 1) - i } else { i };
    r as usize
}

/// Crops the 32x32 window at offset (dy, dx) (each 0..=8) of the image reflect-padded by 4, then
/// mirrors it horizontally when `flip`. Planar layout in and out.
pub fn crop_flip(src: &[u8], dy: usize, dx: usize, flip: bool, out: &mut [u8]) {
    debug_assert!(dy <= 2 * PAD && dx <= 2 * PAD);
    for c in 0..3 {
        let plane = &src[c * PLANE..(c + 1) * PLANE];
        for y in 0..SIDE {
            let sy = reflect(y as isize + dy as isize - PAD as isize);
            let row = &plane[sy * SIDE..(sy + 1) * SIDE];
            for x in 0..SIDE {
                let ox = if flip { SIDE - 1 - x } else { x };
                let sx = reflect(ox as isize + dx as isize - PAD as isize);
                out[c * PLANE + y * SIDE + x] = row[sx];
            }
        }
    }
}

/// The cutout window for a square centred at (cy, cx), clipped to the image: (y0, y1, x0, x1),
/// half-open. The centre may be anywhere in the image, so the square may lie partly outside.
pub fn cutout_window(cy: usize, cx: usize) -> (usize, usize, usize, usize) {
    let h = CUTOUT / 2;
    (cy.saturating_sub(h), (cy + h).min(SIDE), cx.saturating_sub(h), (cx + h).min(SIDE))
}

/// Writes one augmented, normalised image (3x32x32 floats) into `out`.
pub fn augment_into(
    src: &[u8],
    index: usize,
    aug: Augment,
    norm: &Normalization,
    rng: &mut impl Rng,
    scratch: &mut [u8; IMAGE_BYTES],
    out: &mut [f32],
) {
    let (dy, dx) = if aug.crop {
        (rng.random_range(0..=2 * PAD), rng.random_range(0..=2 * PAD))
    } else {
        (PAD, PAD)
    };
    let flip = match aug.alternating {
        _ if !aug.flip => false,
        Some((seed, epoch)) => flip_bit(seed, index) ^ (epoch % 2 == 1),
        None => rng.random_bool(0.5),
    };
    crop_flip(src, dy, dx, flip, scratch);
    normalize(scratch, norm, out);
    if aug.cutout {
        let (y0, y1, x0, x1) = cutout_window(rng.random_range(0..SIDE), rng.random_range(0..SIDE));
        for c in 0..3 {
            for y in y0..y1 {
                out[c * PLANE + y * SIDE + x0..c * PLANE + y * SIDE + x1].fill(0.0);
            }
        }
    }
}

/// Pixels (planar bytes) to normalised floats.
fn normalize(pixels: &[u8], norm: &Normalization, out: &mut [f32]) {
    for c in 0..3 {
        let (m, s) = (norm.mean[c], 1.0 / norm.std[c]);
        for (o, &p) in out[c * PLANE..(c + 1) * PLANE].iter_mut().zip(&pixels[c * PLANE..]) {
            *o = (p as f32 - m) * s;
        }
    }
}

/// One fixed view of each image, for test-time augmentation: the 32x32 window at (dy, dx) of
/// the reflect-padded image (4, 4: the image itself), mirrored when `mirror`, normalised.
pub fn view_batch(split: &Split, indices: &[usize], dy: usize, dx: usize, mirror: bool, norm: &Normalization) -> Batch {
    let mut images = vec![0f32; indices.len() * IMAGE_BYTES];
    let mut scratch = [0u8; IMAGE_BYTES];
    for (k, &i) in indices.iter().enumerate() {
        crop_flip(split.image(i), dy, dx, mirror, &mut scratch);
        normalize(&scratch, norm, &mut images[k * IMAGE_BYTES..(k + 1) * IMAGE_BYTES]);
    }
    let labels = indices.iter().map(|&i| split.labels[i] as i64).collect();
    Batch { images, labels }
}

/// A batch ready for upload: `[n, 3, 32, 32]` floats and `n` labels.
#[derive(Clone, Debug)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Builds a batch from the given image indices.
pub fn make_batch(
    split: &Split,
    indices: &[usize],
    aug: Augment,
    norm: &Normalization,
    rng: &mut impl Rng,
) -> Batch {
    let mut images = vec![0f32; indices.len() * IMAGE_BYTES];
    let mut scratch = [0u8; IMAGE_BYTES];
    for (k, &i) in indices.iter().enumerate() {
        augment_into(
            split.image(i),
            i,
            aug,
            norm,
            rng,
            &mut scratch,
            &mut images[k * IMAGE_BYTES..(k + 1) * IMAGE_BYTES],
        );
    }
    let labels = indices.iter().map(|&i| split.labels[i] as i64).collect();
    Batch { images, labels }
}

/// The seeded RNG used everywhere, the same on every platform.
pub fn rng(seed: u64, stream: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The shuffled order of one epoch, cut into batches. The last partial batch is dropped so every
/// step sees the same batch size (BatchNorm statistics and the schedule's step count stay exact).
pub fn epoch_batches(n: usize, batch: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng(seed, 1_000 + epoch as u64));
    if n < batch {
        return vec![order];
    }
    order.chunks_exact(batch.max(1)).map(|c| c.to_vec()).collect()
}

/// Steps per epoch for `n` images (at least one so tiny subsets still train).
pub fn steps_per_epoch(n: usize, batch: usize) -> usize {
    (n / batch.max(1)).max(1)
}
