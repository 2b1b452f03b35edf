//! The main replica's side: a data-parallel forward/backward over a batch, and the
//! probabilities of an evaluation chunk, each split over the helpers and this thread.

use burn::optim::GradientsParams;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::layout::Layout;
use super::{replicas_for, slices, Answer, Helpers, Job, Task};
use crate::augment::Batch;
use crate::config::TrainConfig;
use crate::data::IMAGE_BYTES;
use crate::model::ResNet9;
use crate::pass::{batch_tensors, device_error, view_logits_of, TrainError};
use crate::tricks::{scale_logits, Objective};

/// Where a data-parallel step's time went, ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTimes {
    /// Replicas that computed a slice (this thread included).
    pub replicas: usize,
    /// This thread's forward and backward of its own slice (and of any slice a retired helper
    /// left).
    pub main_ms: f64,
    /// Each helper's own time on its slice, as it measured it.
    pub helper_ms: Vec<f64>,
    /// This thread's share of the exchange: reading and sending the weights, reading its own
    /// gradients, adding the helpers' and building the step's gradients.
    pub exchange_ms: f64,
    /// This thread waiting for the slowest helper after its own slice.
    pub idle_ms: f64,
}

impl StepTimes {
    /// Adds another step's times (the benchmark sums, then divides).
    pub fn add(&mut self, other: &StepTimes) {
        self.replicas = self.replicas.max(other.replicas);
        self.main_ms += other.main_ms;
        self.exchange_ms += other.exchange_ms;
        self.idle_ms += other.idle_ms;
        if self.helper_ms.len() < other.helper_ms.len() {
            self.helper_ms.resize(other.helper_ms.len(), 0.0);
        }
        for (a, b) in self.helper_ms.iter_mut().zip(&other.helper_ms) {
            *a += b;
        }
    }

    /// Each figure divided by `steps`.
    pub fn per_step(&self, steps: usize) -> StepTimes {
        let d = steps.max(1) as f64;
        StepTimes {
            replicas: self.replicas,
            main_ms: self.main_ms / d,
            helper_ms: self.helper_ms.iter().map(|h| h / d).collect(),
            exchange_ms: self.exchange_ms / d,
            idle_ms: self.idle_ms / d,
        }
    }

    /// "2 workers: compute 96 | 94 ms · exchange 1.2 ms · idle 0.4 ms".
    pub fn summary(&self) -> String {
        let compute: Vec<String> =
            std::iter::once(self.main_ms).chain(self.helper_ms.iter().copied()).map(|ms| format!("{ms:.0}")).collect();
        format!(
            "{} workers: compute {} ms · exchange {:.1} ms · idle {:.1} ms",
            self.replicas,
            compute.join(" | "),
            self.exchange_ms,
            self.idle_ms
        )
    }
}

/// Builds every helper's replica for `config` (width, loss) and this process's convolution
/// algorithm, unless they hold one for the same already. Helpers that fail are retired.
pub async fn setup(helpers: &dyn Helpers, config: &TrainConfig) {
    let conv = crate::model::conv_algorithm().name().to_string();
    let key = format!("{conv} {}", serde_json::to_string(config).unwrap_or_default());
    if helpers.configured().as_deref() == Some(key.as_str()) {
        return;
    }
    let task = Task::Setup { config: config.clone(), conv };
    let jobs = (0..helpers.count()).map(|_| Job { task: task.clone(), weights: None, images: Vec::new() }).collect();
    helpers.send(jobs);
    let _ = helpers.gather().await;
    helpers.set_configured(key);
}

/// Whether a batch of `batch` images would be split at all over these helpers.
pub fn splits(batch: usize, helpers: &dyn Helpers) -> bool {
    slices(batch, replicas_for(batch, helpers.count() + 1)).len() > 1
}

/// The forward and backward passes of one optimiser step, split over the helpers and this
/// thread: as [`Objective::backward`] with `micro_batch = ceil(batch / replicas)`, whose
/// passes are these slices, in this order. The helpers take the first slices, this thread the
/// last. Returns the batch's loss and logits (detached), the summed gradients, the model with
/// its running statistics set to the mean of the replicas' (each replica updated them from
/// its own slice), and where the time went.
///
/// A helper that fails costs this step its slice's time only: this thread computes the slice.
#[allow(clippy::too_many_arguments)]
pub async fn backward(
    objective: &Objective,
    model: ResNet9,
    batch: Batch,
    micro_batch: Option<usize>,
    helpers: &dyn Helpers,
    device: &Device,
    now: &dyn Fn() -> f64,
) -> Result<(Tensor<1>, Tensor<2>, GradientsParams, ResNet9, StepTimes), TrainError> {
    let n = batch.len();
    let sizes = slices(n, replicas_for(n, helpers.count() + 1));
    let layout = Layout::of(&model);
    let mut times = StepTimes { replicas: sizes.len(), ..Default::default() };
    let t0 = now();
    let weights = layout.read(&model).await.map_err(TrainError::Device)?;
    let mut starts = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &size in &sizes {
        starts.push(start);
        start += size;
    }
    let slice_of = |i: usize| -> (Vec<f32>, Vec<i64>, f64) {
        let (s, len) = (starts[i], sizes[i]);
        (
            batch.images[s * IMAGE_BYTES..(s + len) * IMAGE_BYTES].to_vec(),
            batch.labels[s..s + len].to_vec(),
            len as f64 / n as f64,
        )
    };
    let own = sizes.len() - 1;
    let jobs: Vec<Job> = (0..own)
        .map(|i| {
            let (images, labels, share) = slice_of(i);
            Job { task: Task::Gradients { labels, share, micro_batch }, weights: Some(weights.clone()), images }
        })
        .collect();
    helpers.send(jobs);
    let t1 = now();
    times.exchange_ms += t1 - t0;

    // This thread's slice.
    let local = |i: usize, model: &ResNet9| {
        let (images, labels, share) = slice_of(i);
        let (x, y) = batch_tensors(Batch { images, labels }, device);
        objective.backward_scaled(model, x, y, micro_batch, share)
    };
    let (loss, logits, grads) = local(own, &model);
    // burn-flex computes as the operations are recorded: the slice is done here.
    let t2 = now();
    times.main_ms += t2 - t1;
    let own_answer = answer_of(&layout, loss, logits, &grads, &model).await?;
    // A slice computed here for a failed helper starts from the step's running statistics,
    // as the helper's would have, not from this thread's updated ones.
    let local = |i: usize, model: &mut ResNet9| -> Result<_, TrainError> {
        *model = layout.load_buffers(model.clone(), &weights).map_err(TrainError::Device)?;
        Ok(local(i, model))
    };
    let mut model = model;
    let t3 = now();
    times.exchange_ms += t3 - t2;

    let gathered = helpers.gather().await;
    let t4 = now();
    times.idle_ms += t4 - t3;
    let mut answers: Vec<Answer> = Vec::with_capacity(sizes.len());
    for (i, answer) in gathered.into_iter().enumerate().take(own) {
        match answer {
            Ok(a) if a.flat.len() == layout.total => {
                times.helper_ms.push(a.compute_ms);
                answers.push(a);
            }
            failed => {
                // The helper is gone (or answered nonsense): its slice is computed here.
                if let Err(e) = &failed {
                    log::warn!("a helper failed its slice: {e}");
                }
                let t = now();
                let (loss, logits, grads) = local(i, &mut model)?;
                answers.push(answer_of(&layout, loss, logits, &grads, &model).await?);
                times.main_ms += now() - t;
            }
        }
    }
    // A gather that answered fewer jobs than were sent: the missing slices are computed here.
    for i in answers.len()..own {
        let t = now();
        let (loss, logits, grads) = local(i, &mut model)?;
        answers.push(answer_of(&layout, loss, logits, &grads, &model).await?);
        times.main_ms += now() - t;
    }
    let t5 = now();
    answers.push(own_answer);

    // Gradients add up in slice order (as micro-batches' do). Running statistics: the mean of
    // the replicas' updates weighted by their slices' shares, which is one update with the
    // batch's mean (and the slices' mean variance, a little below the batch's).
    let mut sum = vec![0f32; layout.total];
    for (a, &size) in answers.iter().zip(&sizes) {
        let share = size as f32 / n as f32;
        for e in &layout.entries {
            let (sums, values) = (&mut sum[e.offset..e.offset + e.len], &a.flat[e.offset..e.offset + e.len]);
            if e.buffer {
                sums.iter_mut().zip(values).for_each(|(s, v)| *s += share * v);
            } else {
                sums.iter_mut().zip(values).for_each(|(s, v)| *s += v);
            }
        }
    }
    let grads = layout.gradients(&sum, device);
    let model = layout.load_buffers(model, &sum).map_err(TrainError::Device)?;
    let loss: f32 = answers.iter().map(|a| a.loss).sum();
    let logits: Vec<f32> = answers.iter().flat_map(|a| a.logits.iter().copied()).collect();
    // On the step's device, untracked, like the detached values of an unsplit step.
    let loss = Tensor::<1>::from_data(TensorData::new(vec![loss], [1]), device);
    let logits = Tensor::<2>::from_data(TensorData::new(logits, [n, 10]), device);
    times.exchange_ms += now() - t5;
    Ok((loss, logits, grads, model, times))
}

/// This thread's slice as a helper would answer it.
async fn answer_of(
    layout: &Layout,
    loss: Tensor<1>,
    logits: Tensor<2>,
    grads: &GradientsParams,
    model: &ResNet9,
) -> Result<Answer, TrainError> {
    let flat = layout.read_gradients(grads, model).await.map_err(TrainError::Device)?;
    let loss = loss.into_data_async().await.map_err(device_error)?.iter::<f32>().next().unwrap_or(f32::NAN);
    let logits = logits.into_data_async().await.map_err(device_error)?.iter::<f32>().collect();
    Ok(Answer { loss, logits, flat, compute_ms: 0.0 })
}

/// The softmax probabilities (`[n, 10]`, flat) of one evaluation chunk, whose views' images
/// are `batches` (one `[n, 3, 32, 32]` batch a view) weighted by `views`: the images split
/// over the helpers and this thread. `weights`: the model's flat weights when the helpers do
/// not hold them yet (the first chunk of an evaluation). `model` is in evaluation mode.
#[allow(clippy::too_many_arguments)]
pub async fn probabilities(
    model: &ResNet9,
    batches: Vec<Vec<f32>>,
    views: &[f32],
    logit_scale: f64,
    weights: Option<Vec<f32>>,
    helpers: &dyn Helpers,
    device: &Device,
) -> Result<Vec<f32>, TrainError> {
    let n = batches.first().map_or(0, |b| b.len() / IMAGE_BYTES);
    let sizes = slices(n, replicas_for(n, helpers.count() + 1));
    let mut starts = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &size in &sizes {
        starts.push(start);
        start += size;
    }
    let part = |i: usize| -> Vec<Vec<f32>> {
        let (s, len) = (starts[i], sizes[i]);
        batches.iter().map(|b| b[s * IMAGE_BYTES..(s + len) * IMAGE_BYTES].to_vec()).collect()
    };
    let own = sizes.len() - 1;
    let jobs: Vec<Job> = (0..own)
        .map(|i| Job {
            task: Task::Probabilities { n: sizes[i], views: views.to_vec(), logit_scale },
            weights: weights.clone(),
            images: part(i).concat(),
        })
        .collect();
    helpers.send(jobs);
    let sizes = &sizes;
    let part = &part;
    let local = |i: usize| async move {
        let logits = view_logits_of(model, part(i), views, sizes[i], device);
        let probs = burn::tensor::activation::softmax(scale_logits(logits, logit_scale), 1);
        Ok::<Vec<f32>, TrainError>(probs.into_data_async().await.map_err(device_error)?.iter::<f32>().collect())
    };
    let mine = local(own).await?;
    let gathered = helpers.gather().await;
    let mut out = Vec::with_capacity(n * 10);
    for i in 0..own {
        match gathered.get(i) {
            Some(Ok(a)) if a.flat.len() == sizes[i] * 10 => out.extend_from_slice(&a.flat),
            _ => out.extend(local(i).await?),
        }
    }
    out.extend(mine);
    Ok(out)
}
