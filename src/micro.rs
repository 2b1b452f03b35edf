//! Micro-batches: a batch whose largest buffer does not fit the device is trained as several
//! forward/backward passes whose gradients are summed before one optimiser step.
//!
//! WebGPU refuses to bind a storage buffer larger than the adapter's
//! `maxStorageBufferBindingSize` (128 MiB is the guaranteed minimum; many adapters allow 2 or
//! 4 GiB, some mobile ones only the minimum). Every activation of the ResNet-9 grows linearly
//! with the images in a pass, so a batch too big for one binding is still trainable as passes
//! over fewer images. Each pass's loss is weighted by its share of the batch, so the summed
//! gradients are those of the batch's mean loss, and the step, learning rate and schedule are
//! the batch's. What changes is BatchNorm: each pass normalises with its own statistics.

use crate::model::{largest_activation_bytes_with, ConvAlgorithm};

/// How a batch is split into passes: `count` micro-batches of `size` or `size - 1` images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MicroBatches {
    /// Images per optimiser step.
    pub batch: usize,
    /// Forward/backward passes per step (1: not split).
    pub count: usize,
    /// Images in the largest pass, `ceil(batch / count)`.
    pub size: usize,
}

impl MicroBatches {
    /// The value of `TrainConfig::micro_batch` that trains this split: `None` when the batch
    /// runs whole (the unsplit path, with no extra operations).
    pub fn micro_batch(&self) -> Option<usize> {
        (self.count > 1).then_some(self.size)
    }

    /// "512 as 2 x 256" (see [`split_summary`]).
    pub fn summary(&self) -> String {
        split_summary(self.batch, Some(self.size))
    }
}

/// A batch and its passes in words: "512" whole, "512 as 2 x 256", "500 as 3 x 166-167" when
/// the passes differ by one image.
pub fn split_summary(batch: usize, most: Option<usize>) -> String {
    let sizes = split_sizes(batch, most);
    match (sizes.len(), sizes.first(), sizes.last()) {
        (n, Some(big), Some(small)) if n > 1 && big != small => format!("{batch} as {n} x {small}-{big}"),
        (n, Some(big), _) if n > 1 => format!("{batch} as {n} x {big}"),
        _ => batch.to_string(),
    }
}

/// A size in MiB with two decimals: one image's buffer at a narrow width is well under 1 MiB.
pub fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The fewest micro-batches of `batch` images whose largest buffer, with `algorithm`'s
/// convolutions at `width`, fits in `limit` bytes (the adapter's `maxStorageBufferBindingSize`,
/// or less). The largest buffer is `model::largest_activation_bytes_with`: layer1's
/// convolution output (`c1` floats a pixel), or with im2col its column matrix (`9 c0 = 4.5 c1`
/// floats a pixel), so im2col needs 4.5 times the passes.
///
/// The split is by count: first the fewest passes `k = ceil(batch / m)` (`m` the most images
/// one binding holds), then the images are dealt out evenly, `ceil(batch / k)` or one fewer
/// each. Cutting full passes of `m` images and leaving the rest takes as many passes but can
/// leave a small last one (512 with `m` = 200: 200 + 200 + 112 instead of 171 + 171 + 170),
/// whose BatchNorm statistics are noisier than the others' and whose pass keeps the GPU
/// less busy for the same fixed cost.
///
/// Err (with the figures) when one image alone exceeds `limit`: no split can fit that.
pub fn micro_batches(batch: usize, width: f64, algorithm: ConvAlgorithm, limit: u64) -> Result<MicroBatches, String> {
    if batch == 0 {
        return Err("the batch must hold at least one image".into());
    }
    let per_image = largest_activation_bytes_with(algorithm, 1, width).max(1);
    let most = (limit / per_image) as usize;
    if most == 0 {
        let im2col = algorithm == ConvAlgorithm::Im2col;
        return Err(format!(
            "even one image needs a {} buffer at width {width} with {} convolutions, but this GPU \
             allows {} per binding (maxStorageBufferBindingSize): no split of the batch fits. \
             A narrower net fits{}.",
            mib(per_image),
            algorithm.name(),
            mib(limit),
            if im2col {
                format!(
                    "; so do burn's convolutions, which need {} an image (im2col needs 4.5x)",
                    mib(largest_activation_bytes_with(ConvAlgorithm::Burn, 1, width))
                )
            } else {
                String::new()
            }
        ));
    }
    let count = batch.div_ceil(most);
    Ok(MicroBatches { batch, count, size: batch.div_ceil(count) })
}

/// The images of each pass when a batch of `batch` runs in passes of at most `most` images
/// (`None`, or at least `batch`: one pass): the fewest passes, sizes as equal as possible,
/// larger ones first (see [`micro_batches`] for why by count).
pub fn split_sizes(batch: usize, most: Option<usize>) -> Vec<usize> {
    let count = match most {
        Some(m) if m > 0 && m < batch => batch.div_ceil(m),
        _ => return vec![batch],
    };
    let (base, extra) = (batch / count, batch % count);
    (0..count).map(|i| base + usize::from(i < extra)).collect()
}
