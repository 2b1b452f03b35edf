//! The training loop, written once for every backend and host.
//!
//! It is `async` and never reads the device synchronously, so the same code runs natively
//! (driven by `pollster`) and in the browser on WebGPU. The host (CLI or UI) receives events,
//! answers pause/stop requests between batches and provides a clock and a way to yield.

use std::future::Future;

use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::augment::{self, Augment, Normalization};
use crate::config::TrainConfig;
use crate::data::{Cifar10, Split};
use crate::metrics::{BatchStats, EpochStats, Evaluation, RunLog};
use crate::model::{trainable_params, ResNet9};
use crate::optim::{MomentumHandle, NesterovSgd};
use crate::schedule::OneCycle;
use crate::tricks::{lookahead_decay, scale_logits, Lookahead, Objective, LOOKAHEAD_EVERY};

pub use crate::pass::{batch_tensors, device_error, view_logits_of, TrainError};
use crate::replicas::step::StepTimes;

/// What the host wants the loop to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Run,
    Pause,
    Stop,
}

/// What the loop tells the host.
#[derive(Clone, Debug)]
pub enum Event {
    Started { schedule: OneCycle, steps_per_epoch: usize, parameters: usize },
    Batch(BatchStats),
    Epoch(EpochStats),
    Evaluated { epoch: usize, evaluation: Evaluation },
    /// One point of the LR range test (smoothed loss).
    LrPoint { step: usize, lr: f64, loss: f32 },
    Paused,
    Resumed,
}

/// The environment the loop runs in.
pub trait Host {
    /// Milliseconds from an arbitrary origin.
    fn now_ms(&self) -> f64;
    /// The current request.
    fn control(&self) -> Control;
    /// Receives progress.
    fn event(&mut self, event: Event);
    /// Lets the host breathe (browser: a macrotask so the page stays interactive).
    fn yield_now(&mut self) -> impl Future<Output = ()>;
    /// Waits while paused.
    fn sleep_ms(&mut self, ms: u32) -> impl Future<Output = ()>;
    /// Receives the model whenever it is in a consistent state worth keeping: at the end of
    /// each epoch, on pause and stop, and (rolled back) after divergence. Cloning is cheap.
    fn checkpoint(&mut self, _model: &ResNet9) {}
    /// A GPU failure reported out of band since the last call, which no GPU call returns (the
    /// page: an uncaptured WebGPU error). Training, the LR finder and the benchmark end with
    /// [`TrainError::Device`] at the next batch; an epoch during which one arrived is not kept.
    fn device_failure(&mut self) -> Option<String> {
        None
    }
    /// Counters the host keeps of its own accord (the page, on request: its WebGPU calls and
    /// its main thread's longest task), read where the benchmark's timed steps start and end.
    fn probe(&mut self) -> Vec<Probe> {
        Vec::new()
    }
    /// Replicas of the model on other threads (the CPU's workers) that share each batch's
    /// forward and backward passes and each evaluation (`replicas`); `None`: this thread
    /// computes everything.
    fn helpers(&self) -> Option<std::rc::Rc<dyn crate::replicas::Helpers>> {
        None
    }
}

/// One reading of a host counter.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub name: &'static str,
    pub value: f64,
    /// `true`: a running total (the benchmark reports its growth per step); `false`: the
    /// largest value since the previous reading (reported as read at the end).
    pub total: bool,
}

/// Between two batches: ends a loop on an out-of-band GPU failure or a stop request.
pub(crate) fn proceed<H: Host>(host: &mut H) -> Result<(), TrainError> {
    if let Some(failure) = host.device_failure() {
        return Err(TrainError::Device(failure));
    }
    match host.control() {
        Control::Stop => Err(TrainError::Stopped),
        _ => Ok(()),
    }
}

/// What [`backward_on`] returns: the batch's loss and logits (detached), its labels, the
/// gradients, the model (with the replicas' running statistics when split) and, when split,
/// where the time went.
pub type Backward = (Tensor<1>, Tensor<2>, Tensor<1, Int>, GradientsParams, ResNet9, Option<StepTimes>);

/// The forward and backward passes of optimiser step `step` over a batch still in host
/// memory, as training, the LR finder and the benchmark all take them: split over the host's
/// helpers (the CPU's workers, `replicas`) when it has any and the batch is large enough to
/// share, else uploaded and run here (`Objective::backward`, in `config.micro_batch` passes).
pub async fn backward_on<H: Host>(
    objective: &Objective,
    model: ResNet9,
    batch: augment::Batch,
    config: &TrainConfig,
    step: usize,
    host: &H,
    device: &Device,
) -> Result<Backward, TrainError> {
    let Some(helpers) = host.helpers().filter(|h| crate::replicas::step::splits(batch.len(), &**h)) else {
        let (images, labels) = batch_tensors(batch, device);
        let (loss, logits, grads) = objective.backward(&model, images, labels.clone(), config.micro_batch);
        return Ok((loss, logits, labels, grads, model, None));
    };
    crate::replicas::step::setup(&*helpers, config).await;
    helpers.at_step(step);
    let n = batch.len();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [n]), device);
    let clock = || host.now_ms();
    let (loss, logits, grads, model, times) =
        crate::replicas::step::backward(objective, model, batch, config.micro_batch, &*helpers, device, &clock).await?;
    Ok((loss, logits, labels, grads, model, Some(times)))
}

/// Owns the model and optimiser state across epochs, pauses and stops.
pub struct Trainer {
    pub config: TrainConfig,
    pub device: Device,
    /// The model being trained (on the autodiff device).
    pub model: ResNet9,
    /// The model at the end of the last completed epoch (or the initial one): what is
    /// exported when training diverges or the device is lost.
    pub last_good: ResNet9,
    /// The optimiser and its momentum velocities.
    pub(crate) optim: NesterovSgd,
    momentum: MomentumHandle,
    /// The recipe's loss and BatchNorm gradient rules.
    objective: Objective,
    /// The slow weights, when the recipe uses Lookahead.
    pub lookahead: Option<Lookahead>,
    pub schedule: OneCycle,
    pub steps_per_epoch: usize,
    /// Optimiser steps done.
    pub step: usize,
    /// Epochs completed.
    pub epoch: usize,
    pub norm: Normalization,
    pub log: RunLog,
    pub last_evaluation: Option<Evaluation>,
    pub(crate) elapsed_ms: f64,
    /// Where the data-parallel steps' time went, summed since the run started (CPU workers).
    pub replica_times: StepTimes,
}

impl Trainer {
    /// Builds the model on `device` (autodiff is added here) for the given data.
    pub fn new(config: TrainConfig, data: &Cifar10, device: &Device) -> Result<Self, TrainError> {
        config.validate().map_err(TrainError::Invalid)?;
        if data.train.is_empty() || data.test.is_empty() {
            return Err(TrainError::Invalid("no data loaded".into()));
        }
        let device = device.clone().autodiff();
        let model = ResNet9::seeded(config.width, config.seed, &device);
        let n_train = config.train_subset.map_or(data.train.len(), |n| n.min(data.train.len()));
        let steps_per_epoch = augment::steps_per_epoch(n_train, config.batch_size);
        let norm = Normalization::from_split(&data.train);
        Ok(Self::with_model(config, model, &device, steps_per_epoch, norm))
    }

    /// A trainer for a given model, before its first step (the PyTorch fixture test starts
    /// from PyTorch's initial weights this way). `model` must live on `device.autodiff()`.
    pub fn with_model(
        config: TrainConfig,
        model: ResNet9,
        device: &Device,
        steps_per_epoch: usize,
        norm: Normalization,
    ) -> Self {
        let device = device.clone().autodiff();
        let mut schedule =
            OneCycle::recipe(config.epochs, steps_per_epoch, config.max_lr, config.peak_epoch);
        schedule.base_momentum = config.base_momentum;
        schedule.max_momentum = config.max_momentum;
        let (optim, momentum) = NesterovSgd::init(config.max_momentum, config.weight_decay);
        let objective = Objective::new(&config, &model, &device);
        let lookahead = config.lookahead.then(|| Lookahead::new(&model));
        let log = RunLog {
            config: serde_json::to_value(&config).unwrap_or_default(),
            parameters: trainable_params(&model),
            ..Default::default()
        };
        Self {
            last_good: model.checkpoint(),
            model,
            optim,
            momentum,
            objective,
            lookahead,
            schedule,
            steps_per_epoch,
            step: 0,
            epoch: 0,
            norm,
            log,
            last_evaluation: None,
            elapsed_ms: 0.0,
            replica_times: Default::default(),
            config,
            device,
        }
    }

    /// One optimiser step of the recipe on a batch already on the device, at the schedule's
    /// LR and momentum for `self.step`: forward in training mode (BatchNorm on batch
    /// statistics, running statistics updated), mean cross-entropy (of scaled logits, label
    /// smoothed, when the recipe says so), backward, Nesterov SGD.
    /// With `config.micro_batch` smaller than the batch, forward and backward run in
    /// micro-batches whose gradients are summed into the one step (`Objective::backward`).
    /// Returns the batch's loss and the detached logits, still on the device, and the LR used.
    pub fn train_step(&mut self, images: Tensor<4>, labels: Tensor<1, Int>) -> (Tensor<1>, Tensor<2>, f64, f64) {
        let (loss, logits, grads) = self.objective.backward(&self.model, images, labels, self.config.micro_batch);
        let (lr, momentum) = self.apply_gradients(grads);
        (loss, logits, lr, momentum)
    }

    /// [`Trainer::train_step`] on a batch still in host memory, split over the host's helpers
    /// (the CPU's workers, `replicas`) when it has any and the batch is large enough to share;
    /// else uploaded and stepped here. Returns the loss, logits and labels on the device, and
    /// the LR and momentum used.
    pub async fn step_on<H: Host>(
        &mut self,
        batch: augment::Batch,
        host: &H,
    ) -> Result<(Tensor<1>, Tensor<2>, Tensor<1, Int>, f64, f64), TrainError> {
        let (loss, logits, labels, grads, model, times) =
            backward_on(&self.objective, self.model.clone(), batch, &self.config, self.step, host, &self.device).await?;
        if let Some(times) = times {
            self.replica_times.add(&times);
        }
        self.model = model;
        let (lr, momentum) = self.apply_gradients(grads);
        Ok((loss, logits, labels, lr, momentum))
    }

    /// The optimiser half of [`Trainer::train_step`]: the recipe's BatchNorm gradient rules,
    /// Nesterov SGD with the schedule's LR and momentum for `self.step`, then the step counter
    /// moves on, and Lookahead every 5 steps (and after the last). Returns (LR, momentum) used.
    pub fn apply_gradients(&mut self, grads: GradientsParams) -> (f64, f64) {
        let (lr, momentum) = self.schedule.at(self.step);
        self.momentum.set(momentum);
        let grads = self.objective.adjust(grads);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.step += 1;
        let total = self.config.epochs * self.steps_per_epoch;
        if let Some(lookahead) = self.lookahead.as_mut() {
            if self.step % LOOKAHEAD_EVERY == 0 {
                self.model = lookahead.update(self.model.clone(), lookahead_decay(self.step, total));
            }
            if self.step == total {
                // The run ends on the slow weights.
                self.model = lookahead.update(self.model.clone(), 1.0);
            }
        }
        (lr, momentum)
    }

    /// Sets the most images one pass takes (`TrainConfig::micro_batch`) for the steps to come:
    /// a device's limits, not the recipe, so a run resumed on another device may need another
    /// split. The run log's config records it.
    pub fn set_micro_batch(&mut self, micro_batch: Option<usize>) -> Result<(), TrainError> {
        let config = self.config.clone().with_micro_batch(micro_batch);
        config.validate().map_err(TrainError::Invalid)?;
        if let Some(logged) = self.log.config.as_object_mut() {
            logged.insert("micro_batch".into(), serde_json::json!(micro_batch));
        }
        self.config = config;
        Ok(())
    }

    /// Whether all epochs are done.
    pub fn finished(&self) -> bool {
        self.epoch >= self.config.epochs
    }

    /// Trains the remaining epochs (resumable after a stop).
    pub async fn run<H: Host>(&mut self, data: &Cifar10, host: &mut H) -> Result<(), TrainError> {
        let data = data.subset(self.config.train_subset, self.config.test_subset);
        self.announce(host);
        while !self.finished() {
            self.run_epoch(&data, host).await?;
        }
        Ok(())
    }

    /// Tells the host the schedule and sizes (emitted once at the start of [`Trainer::run`]).
    pub fn announce<H: Host>(&self, host: &mut H) {
        host.event(Event::Started {
            schedule: self.schedule,
            steps_per_epoch: self.steps_per_epoch,
            parameters: self.log.parameters,
        });
    }

    async fn wait_if_paused<H: Host>(&mut self, host: &mut H) -> Result<(), TrainError> {
        if let Some(failure) = host.device_failure() {
            return Err(TrainError::Device(failure));
        }
        match host.control() {
            Control::Run => Ok(()),
            Control::Stop => {
                host.checkpoint(&self.model);
                Err(TrainError::Stopped)
            }
            Control::Pause => {
                host.checkpoint(&self.model);
                host.event(Event::Paused);
                loop {
                    host.sleep_ms(50).await;
                    match host.control() {
                        Control::Pause => continue,
                        Control::Stop => return Err(TrainError::Stopped),
                        Control::Run => {
                            host.event(Event::Resumed);
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// One epoch of training followed by an evaluation of the test split.
    pub async fn run_epoch<H: Host>(&mut self, data: &Cifar10, host: &mut H) -> Result<(), TrainError> {
        let cfg = self.config.clone();
        let aug = Augment {
            crop: true,
            flip: true,
            cutout: cfg.cutout,
            alternating: cfg.alternating_flip.then_some((cfg.seed, self.epoch)),
        };
        let batches = augment::epoch_batches(data.train.len(), cfg.batch_size, cfg.seed, self.epoch);
        let mut rng = augment::rng(cfg.seed, 2_000 + self.epoch as u64);

        let epoch_start = host.now_ms();
        let mut window_start = epoch_start;
        let mut window_images = 0usize;
        // [loss x images, correct predictions] accumulate on the device between read-backs:
        // one read per window instead of one per batch keeps the GPU queue full.
        let mut stats_acc: Option<Tensor<1>> = None;
        let mut window_batches = 0usize;
        let (mut epoch_loss, mut epoch_correct, mut epoch_images) = (0f64, 0f64, 0usize);
        let mut lr = 0.0;

        for (b, indices) in batches.iter().enumerate() {
            self.wait_if_paused(host).await.inspect_err(|_| {
                self.elapsed_ms += host.now_ms() - epoch_start;
            })?;
            let batch = augment::make_batch(&data.train, indices, aug, &self.norm, &mut rng);
            let batch_len = batch.len();
            let (loss, logits, labels, step_lr, momentum) = self.step_on(batch, host).await?;
            lr = step_lr;
            let correct = logits.argmax(1).reshape([batch_len]).equal(labels).float().sum();

            let stats = Tensor::cat(vec![loss.mul_scalar(batch_len as f64), correct], 0);
            stats_acc = Some(match stats_acc.take() {
                Some(acc) => acc + stats,
                None => stats,
            });
            window_batches += 1;
            window_images += batch_len;

            let last = b + 1 == batches.len();
            if window_batches >= cfg.read_every || last {
                let read = match stats_acc.take() {
                    Some(t) => t.into_data_async().await.map_err(device_error)?.iter::<f32>().collect(),
                    None => Vec::new(),
                };
                let (loss_sum, correct) = (read.first().copied().unwrap_or(f32::NAN), read.get(1).copied().unwrap_or(0.0));
                let now = host.now_ms();
                let mean = loss_sum / window_images as f32;
                if !mean.is_finite() {
                    self.model = self.last_good.checkpoint();
                    host.checkpoint(&self.model);
                    return Err(TrainError::Diverged { epoch: self.epoch, step: self.step, lr });
                }
                epoch_loss += loss_sum as f64;
                epoch_correct += correct as f64;
                epoch_images += window_images;
                let stats = BatchStats {
                    epoch: self.epoch,
                    step: self.step,
                    batch: b + 1,
                    batches_per_epoch: batches.len(),
                    loss: mean,
                    lr,
                    momentum,
                    images_per_sec: window_images as f64 / ((now - window_start).max(1e-3) / 1000.0),
                    elapsed_s: (self.elapsed_ms + now - epoch_start) / 1000.0,
                };
                self.log.batches.push(stats.clone());
                host.event(Event::Batch(stats));
                window_start = now;
                window_images = 0;
                window_batches = 0;
            }
            host.yield_now().await;
        }
        let train_end = host.now_ms();
        // Test-time augmentation costs up to 6 passes: only the final evaluation pays it.
        let tta = if self.epoch + 1 == cfg.epochs { cfg.tta } else { 0 };
        let view = EvalView { logit_scale: cfg.logit_scale, tta };
        if let Some(helpers) = host.helpers() {
            crate::replicas::step::setup(&*helpers, &cfg).await;
        }
        let evaluation =
            evaluate(&self.model, &data.test, &self.norm, cfg.eval_pass(), cfg.mistakes, view, &self.device, host)
                .await?;
        let end = host.now_ms();
        self.elapsed_ms += end - epoch_start;
        // The training loss can stay finite while BatchNorm's running variance overflows
        // (training uses batch statistics, and an infinite variance still evaluates to finite
        // outputs): check the weights themselves before calling this epoch good.
        let finite = crate::model::is_finite(&self.model).await.map_err(TrainError::Device)?;
        if let Some(failure) = host.device_failure() {
            return Err(TrainError::Device(failure));
        }
        if !finite || !evaluation.loss.is_finite() {
            self.model = self.last_good.checkpoint();
            host.checkpoint(&self.model);
            return Err(TrainError::Diverged { epoch: self.epoch, step: self.step, lr });
        }
        let train_time = (train_end - epoch_start) / 1000.0;
        let stats = EpochStats {
            epoch: self.epoch + 1,
            lr,
            train_time_s: train_time,
            train_loss: (epoch_loss / epoch_images.max(1) as f64) as f32,
            train_acc: (epoch_correct / epoch_images.max(1) as f64) as f32,
            test_time_s: (end - train_end) / 1000.0,
            test_loss: evaluation.loss,
            test_acc: evaluation.accuracy,
            total_time_s: self.elapsed_ms / 1000.0,
            images_per_sec: epoch_images as f64 / train_time.max(1e-6),
            // After the read-backs above, so the queue is drained and the figure is current.
            gpu_mem_mib: self.device.memory_pool_usage().map(|u| u.bytes_in_use as f64 / (1u64 << 20) as f64),
            tta,
        };
        self.epoch += 1;
        self.last_good = self.model.checkpoint();
        host.checkpoint(&self.model);
        self.log.epochs.push(stats.clone());
        self.log.last_evaluation = Some(evaluation.clone());
        self.last_evaluation = Some(evaluation.clone());
        host.event(Event::Evaluated { epoch: self.epoch, evaluation });
        host.event(Event::Epoch(stats));
        Ok(())
    }
}

/// How an evaluation turns images into probabilities: the recipe's logit scale and its
/// test-time augmentation level (`TrainConfig::tta`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalView {
    pub logit_scale: f64,
    pub tta: usize,
}

impl EvalView {
    /// The views averaged, as (crop offset y, x in the reflect-padded image, mirrored, weight):
    /// the image; with its mirror; and those shifted one pixel up-left and down-right.
    pub fn views(&self) -> Vec<(usize, usize, bool, f32)> {
        let p = augment::PAD;
        match self.tta {
            0 => vec![(p, p, false, 1.0)],
            1 => vec![(p, p, false, 0.5), (p, p, true, 0.5)],
            _ => {
                let mut v = vec![(p, p, false, 0.25), (p, p, true, 0.25)];
                for o in [p - 1, p + 1] {
                    v.extend([(o, o, false, 0.125), (o, o, true, 0.125)]);
                }
                v
            }
        }
    }
}

/// The logits of some images under test-time augmentation: the views' logits, weighted and
/// summed (unscaled: the logit scale is applied by the caller, as to any logits). `model` is in
/// evaluation mode on a device without autodiff.
pub fn view_logits(
    model: &ResNet9,
    split: &Split,
    indices: &[usize],
    norm: &Normalization,
    view: EvalView,
    device: &Device,
) -> Tensor<2> {
    let (batches, weights) = view_batches(split, indices, norm, view);
    view_logits_of(model, batches, &weights, indices.len(), device)
}

/// The images of each view of some images (`[n, 3, 32, 32]`, normalised) and the views' weights.
pub fn view_batches(split: &Split, indices: &[usize], norm: &Normalization, view: EvalView) -> (Vec<Vec<f32>>, Vec<f32>) {
    let views = view.views();
    let mut rng = augment::rng(0, 0);
    views
        .iter()
        .map(|&(dy, dx, mirror, weight)| {
            let batch = if views.len() == 1 {
                augment::make_batch(split, indices, Augment::NONE, norm, &mut rng)
            } else {
                augment::view_batch(split, indices, dy, dx, mirror, norm)
            };
            (batch.images, weight)
        })
        .unzip()
}

/// Evaluates `model` on a split: loss, accuracy, confusion matrix and the most confident
/// mistakes. The softmax probabilities (10 floats an image) stay on the device until the last
/// batch is queued, then come back in one read: no batch waits for the one before it.
/// With test-time augmentation, the logits of the views are averaged before the softmax.
#[allow(clippy::too_many_arguments)]
pub async fn evaluate<H: Host>(
    model: &ResNet9,
    split: &Split,
    norm: &Normalization,
    eval_batch: usize,
    keep_mistakes: usize,
    view: EvalView,
    device: &Device,
    host: &mut H,
) -> Result<Evaluation, TrainError> {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut eval = Evaluation::new();
    if split.is_empty() {
        return Ok(eval);
    }
    let indices: Vec<usize> = (0..split.len()).collect();
    // Helpers built for this model by the run's steps (`replicas::step::setup`).
    let helpers = host.helpers().filter(|h| h.configured().is_some() && crate::replicas::step::splits(eval_batch.max(1), &**h));
    if let Some(helpers) = helpers {
        // The CPU's workers each take a part of every chunk; they get the weights once.
        let mut weights = Some(crate::replicas::layout::Layout::of(&model).read(&model).await.map_err(TrainError::Device)?);
        let mut probs = Vec::with_capacity(split.len() * 10);
        for chunk in indices.chunks(eval_batch.max(1)) {
            let (batches, views) = view_batches(split, chunk, norm, view);
            let part = crate::replicas::step::probabilities(
                &model,
                batches,
                &views,
                view.logit_scale,
                weights.take(),
                &*helpers,
                &device,
            )
            .await?;
            probs.extend(part);
            host.yield_now().await;
        }
        eval.add(&probs, &split.labels, 0, keep_mistakes);
        return Ok(eval);
    }
    let mut probs = Vec::new();
    for chunk in indices.chunks(eval_batch.max(1)) {
        let logits = view_logits(&model, split, chunk, norm, view, &device);
        probs.push(burn::tensor::activation::softmax(scale_logits(logits, view.logit_scale), 1));
        host.yield_now().await;
    }
    let probs = Tensor::cat(probs, 0).into_data_async().await.map_err(device_error)?;
    let probs: Vec<f32> = probs.iter::<f32>().collect();
    eval.add(&probs, &split.labels, 0, keep_mistakes);
    Ok(eval)
}

/// Class probabilities for a batch of already-normalised images, read back asynchronously.
pub async fn predict(model: &ResNet9, images: Tensor<4>) -> Result<Vec<[f32; 10]>, TrainError> {
    let model = model.valid();
    let probs = burn::tensor::activation::softmax(model.forward(images), 1)
        .into_data_async()
        .await
        .map_err(device_error)?;
    let flat: Vec<f32> = probs.iter::<f32>().collect();
    Ok(flat
        .chunks_exact(10)
        .map(|c| {
            let mut a = [0f32; 10];
            a.copy_from_slice(c);
            a
        })
        .collect())
}
