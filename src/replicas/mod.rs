//! Data-parallel training on the CPU: N replicas of the model, each computing the gradients of
//! its slice of the batch, summed into one optimiser step that the main replica takes.
//!
//! Nothing is shared between replicas: a helper (a web worker holding its own instance of the
//! compiled module, or a native thread) receives the main replica's weights and a slice of
//! images, and answers with the gradients of its slice's loss, weighted by the slice's share of
//! the batch, and its BatchNorm running statistics. The main replica adds the gradients in
//! slice order, which is exactly what a micro-batched step (`Objective::backward` with
//! `micro_batch = ceil(batch / N)`) adds on one replica, so the two steps agree to rounding.
//!
//! - `layout.rs`: a model's tensors as one flat vector (weights out, gradients back);
//! - `replica.rs`: what a helper does with a job;
//! - `step.rs`: the main replica's side of a step and of an evaluation;
//! - `threads.rs`: helpers on native threads (`--cpu-replicas N`); the page's are workers
//!   (`web/engine/pool.rs`).
//!
//! What moves per step and helper: the weights and running statistics down, the gradients and
//! running statistics up (4 bytes a parameter each way), the slice's images down (12 KiB an
//! image), its loss and logits up. BENCHMARKS.md ("CPU workers") models when that dominates.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

pub mod layout;
pub mod replica;
pub mod step;
#[cfg(not(target_arch = "wasm32"))]
pub mod threads;

/// What a helper is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Task {
    /// Build a replica for this recipe (width, loss) with this convolution algorithm; its
    /// weights arrive with the next job.
    Setup { config: TrainConfig, conv: String },
    /// Forward and backward of `labels.len()` images (the job's `images`), the loss scaled by
    /// `share`: answers the gradients and running statistics (`layout::Layout` order), the
    /// scaled loss and the logits.
    Gradients { labels: Vec<i64>, share: f64, micro_batch: Option<usize> },
    /// Softmax probabilities of `n` images seen through `views.len()` views (the job's
    /// `images` holds each view's `n` images in turn), the views' logits weighted by `views`
    /// and multiplied by `logit_scale` before the softmax (`train::evaluate`).
    Probabilities { n: usize, views: Vec<f32>, logit_scale: f64 },
    /// Answers the replica's weights as it holds them (tests: replicas stay identical).
    Weights,
}

/// One message to a helper: the task, the main replica's weights when they changed since the
/// helper last received them (`layout::Layout` order), and the task's images
/// (`[n, 3, 32, 32]`, normalised).
#[derive(Clone, Debug)]
pub struct Job {
    pub task: Task,
    pub weights: Option<Vec<f32>>,
    pub images: Vec<f32>,
}

/// A helper's answer: `flat` holds the gradients and running statistics (`Gradients`), the
/// probabilities (`Probabilities`) or the weights (`Weights`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    /// The slice's loss, already scaled by its share.
    pub loss: f32,
    /// `[n, 10]` logits as the loss saw them (`Gradients`).
    pub logits: Vec<f32>,
    #[serde(skip)]
    pub flat: Vec<f32>,
    /// The helper's own time on the task, ms.
    pub compute_ms: f64,
}

/// A boxed future that answers a gather.
pub type Gathered<'a> = Pin<Box<dyn Future<Output = Vec<Result<Answer, String>>> + 'a>>;

/// The helpers a main replica hands slices to: worker threads of the page or of the CLI.
/// A helper that dies answers `Err` for the job it held and is retired: the main replica
/// computes that slice itself, and the following steps split over the helpers left.
pub trait Helpers {
    /// Helpers alive.
    fn count(&self) -> usize;
    /// Sends one job to each of the first `jobs.len()` helpers alive (the answers come back
    /// in the same order from [`Helpers::gather`]).
    fn send(&self, jobs: Vec<Job>);
    /// Waits for the answers of the jobs last sent.
    fn gather(&self) -> Gathered<'_>;
    /// The step about to be computed (the page's test hook kills a helper at a given step).
    fn at_step(&self, _step: usize) {}
    /// What the helpers' replicas were last built for (`step::setup`), if anything.
    fn configured(&self) -> Option<String>;
    fn set_configured(&self, key: String);
}

/// The split of `batch` images over `replicas` replicas: the sizes `Objective::backward` uses
/// for `micro_batch = ceil(batch / replicas)` (`micro::split_sizes`), largest first.
pub fn slices(batch: usize, replicas: usize) -> Vec<usize> {
    crate::micro::split_sizes(batch, Some(batch.div_ceil(replicas.max(1))))
}

/// The fewest images a replica's slice should hold: below it the fixed costs of a pass and of
/// the exchange of weights and gradients outweigh the slice's work and another replica adds
/// little.
///
/// Measured (BENCHMARKS.md, "CPU workers", this 2-core machine): one worker of the page's CPU
/// engine at width 0.125 trains 283, 304 and 319 images/s in passes of 16, 32 and 64 images,
/// so a slice of 16 keeps ~90% of a large pass's rate per image (native flex: 471, 554, 548;
/// at width 0.25 203, 209, 205: flat too); two workers at batch 32 (slices of 16) ran 1.67x one
/// worker, the exchange 3.4 ms of a 63 ms step. The exchange grows with the parameters and the
/// compute with the parameters times the images, both as the square of the width, so the
/// bound holds across widths; below 16 images a slice's BatchNorm statistics also get noisy
/// (16 x 4 x 4 = 256 values a channel in the last layers). Hence a limit on images, not on
/// width.
pub const MIN_SLICE: usize = 16;

/// How many replicas to use for `batch` images when `available` can run: every one of them,
/// as long as each slice keeps at least [`MIN_SLICE`] images (batch 64 uses at most 4).
pub fn replicas_for(batch: usize, available: usize) -> usize {
    (batch / MIN_SLICE).clamp(1, available.max(1))
}
