//! LR range test: an exponential sweep of the learning rate over a few hundred steps on a fresh
//! copy of the model, recording the smoothed loss.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::{self, Augment, Normalization};
use crate::config::TrainConfig;
use crate::data::Cifar10;
use crate::model::ResNet9;
use crate::optim::NesterovSgd;
use crate::tricks::Objective;
use crate::train::{backward_on, device_error, proceed, Event, Host, TrainError};

/// Settings of the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrFinderConfig {
    pub start_lr: f64,
    pub end_lr: f64,
    pub steps: usize,
    /// Weight of the exponential moving average of the loss (fastai: 0.98).
    pub smoothing: f64,
    /// Stop once the smoothed loss exceeds this multiple of the best.
    pub divergence: f64,
    /// Losses read back every N steps (each read drains the GPU queue).
    pub read_every: usize,
}

impl Default for LrFinderConfig {
    fn default() -> Self {
        Self { start_lr: 1e-5, end_lr: 1.0, steps: 200, smoothing: 0.98, divergence: 4.0, read_every: 10 }
    }
}

/// The sweep's curve and suggestions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LrFinderResult {
    pub lrs: Vec<f64>,
    pub losses: Vec<f32>,
    pub smoothed: Vec<f32>,
    /// LR of the steepest descent of the smoothed loss (per log-LR).
    pub steepest: Option<f64>,
    /// LR of the minimum smoothed loss divided by 10.
    pub min_over_10: Option<f64>,
    /// Whether the sweep ended early because the loss diverged.
    pub diverged: bool,
}

impl LrFinderResult {
    /// The suggestion: steepest descent, else min/10.
    pub fn suggestion(&self) -> Option<f64> {
        self.steepest.or(self.min_over_10)
    }

    fn analyse(&mut self) {
        let n = self.smoothed.len();
        if n < 3 {
            return;
        }
        // Ignore the last few points of a divergent run: they are the blow-up itself.
        let usable = if self.diverged { n.saturating_sub(n / 10).max(3) } else { n };
        let (imin, _) = self.smoothed[..usable]
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &0.0));
        self.min_over_10 = Some(self.lrs[imin] / 10.0);
        // Steepest descent before the minimum, skipping the noisy first tenth.
        let start = (n / 10).max(1);
        let mut best: Option<(usize, f64)> = None;
        for i in start..imin.max(start) {
            let dl = (self.smoothed[i + 1] - self.smoothed[i - 1]) as f64;
            let dx = self.lrs[i + 1].ln() - self.lrs[i - 1].ln();
            let slope = dl / dx;
            if best.is_none_or(|(_, s)| slope < s) {
                best = Some((i, slope));
            }
        }
        self.steepest = best.filter(|(_, s)| *s < 0.0).map(|(i, _)| self.lrs[i]);
    }
}

/// Runs the range test with the recipe's optimiser (momentum at its peak-LR value) on a new
/// model built like the trainer's.
pub async fn find_lr<H: Host>(
    train: &TrainConfig,
    finder: &LrFinderConfig,
    data: &Cifar10,
    device: &Device,
    host: &mut H,
) -> Result<LrFinderResult, TrainError> {
    train.validate().map_err(TrainError::Invalid)?;
    let data = data.subset(train.train_subset, None);
    let device = device.clone().autodiff();
    let mut model = ResNet9::seeded(train.width, train.seed, &device);
    let (mut optim, _momentum) = NesterovSgd::init(train.base_momentum, train.weight_decay);
    let norm = Normalization::from_split(&data.train);
    // The recipe's own loss (logit scale, smoothing) and BatchNorm rules: the LR it finds is for them.
    let objective = Objective::new(train, &model, &device);
    let aug = Augment { cutout: train.cutout, ..Augment::FULL };
    let mut rng = augment::rng(train.seed, 77);
    let steps = finder.steps.max(2);
    let ratio = (finder.end_lr / finder.start_lr).ln();
    let mut result = LrFinderResult::default();
    let mut pending: Vec<Tensor<1>> = Vec::new();
    let mut avg = 0f64;
    let mut best = f64::INFINITY;
    let mut order = Vec::new();
    'sweep: for step in 0..steps {
        proceed(host)?;
        if order.is_empty() {
            order = augment::epoch_batches(data.train.len(), train.batch_size, train.seed, 10_000 + step);
        }
        let indices = order.pop().unwrap_or_default();
        let batch = augment::make_batch(&data.train, &indices, aug, &norm, &mut rng);
        let lr = finder.start_lr * (ratio * step as f64 / (steps - 1) as f64).exp();
        // Split as training splits it (micro-batches, the CPU's workers), so the LR found is
        // for the steps training will take.
        let (loss, _, _, grads, stepped, _) = backward_on(&objective, model, batch, train, step, host, &device).await?;
        model = stepped;
        pending.push(loss);
        result.lrs.push(lr);
        model = optim.step(lr, model, objective.adjust(grads));

        if pending.len() >= finder.read_every || step + 1 == steps {
            let losses = Tensor::cat(std::mem::take(&mut pending), 0)
                .into_data_async()
                .await
                .map_err(device_error)?;
            for loss in losses.iter::<f32>() {
                let i = result.losses.len();
                result.losses.push(loss);
                let l = if loss.is_finite() { loss as f64 } else { f64::INFINITY };
                avg = finder.smoothing * avg + (1.0 - finder.smoothing) * l;
                let smoothed = avg / (1.0 - finder.smoothing.powi(i as i32 + 1));
                result.smoothed.push(smoothed as f32);
                host.event(Event::LrPoint { step: i, lr: result.lrs[i], loss: smoothed as f32 });
                if smoothed < best {
                    best = smoothed;
                }
                if !smoothed.is_finite() || (i > 10 && smoothed > finder.divergence * best) {
                    result.diverged = true;
                    result.lrs.truncate(result.losses.len());
                    break 'sweep;
                }
            }
        }
        host.yield_now().await;
    }
    result.lrs.truncate(result.losses.len());
    result.analyse();
    Ok(result)
}
