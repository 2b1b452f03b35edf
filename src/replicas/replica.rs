//! A helper's replica: the model at the main replica's weights, and what it does with a job.
//! The same code answers in a page's worker (`web/engine/helper.rs`) and on a native thread
//! (`threads.rs`).

use burn::prelude::*;

use super::layout::Layout;
use super::{Answer, Job, Task};
use crate::model::{ConvAlgorithm, ResNet9};
use crate::pass::{batch_tensors, view_logits_of};
use crate::tricks::{scale_logits, Objective};

/// A helper's model, objective and layout, built by `Task::Setup`.
pub struct Replica {
    device: Device,
    model: ResNet9,
    objective: Objective,
    layout: Layout,
}

/// A helper's state: nothing until the first `Setup`.
pub struct Helper {
    device: Device,
    replica: Option<Replica>,
    clock: fn() -> f64,
}

impl Helper {
    /// A helper computing on `device` (the CPU), timing its work with `clock` (ms).
    pub fn new(device: Device, clock: fn() -> f64) -> Self {
        Self { device, replica: None, clock }
    }

    /// Does one job. The weights, when sent, are loaded first.
    pub async fn handle(&mut self, job: Job) -> Result<Answer, String> {
        let start = (self.clock)();
        let Job { task, weights, images } = job;
        if let Task::Setup { config, conv } = &task {
            if let Some(algorithm) = ConvAlgorithm::parse(conv) {
                crate::model::set_conv_algorithm(algorithm);
            }
            let device = self.device.clone().autodiff();
            let model = ResNet9::new(config.width, &device);
            let objective = Objective::new(config, &model, &device);
            self.replica = Some(Replica { layout: Layout::of(&model), device, model, objective });
        }
        let r = self.replica.as_mut().ok_or("a helper got a job before its set-up")?;
        if let Some(weights) = weights {
            r.model = r.layout.load(r.model.clone(), &weights)?;
        }
        let mut answer = match task {
            Task::Setup { .. } => Answer::default(),
            Task::Gradients { labels, share, micro_batch } => {
                let n = labels.len();
                if images.len() != n * crate::data::IMAGE_BYTES {
                    return Err(format!("{} values for {n} images", images.len()));
                }
                let batch = crate::augment::Batch { images, labels };
                let (x, y) = batch_tensors(batch, &r.device);
                let (loss, logits, grads) = r.objective.backward_scaled(&r.model, x, y, micro_batch, share);
                let flat = r.layout.read_gradients(&grads, &r.model).await?;
                let loss = loss.into_data_async().await.map_err(|e| format!("{e:?}"))?.iter::<f32>().next().unwrap_or(f32::NAN);
                let logits = logits.into_data_async().await.map_err(|e| format!("{e:?}"))?.iter::<f32>().collect();
                Answer { loss, logits, flat, compute_ms: 0.0 }
            }
            Task::Probabilities { n, views, logit_scale } => {
                let per_view = n * crate::data::IMAGE_BYTES;
                if images.len() != per_view * views.len() {
                    return Err(format!("{} values for {n} images in {} views", images.len(), views.len()));
                }
                let model = r.model.valid();
                let device = r.device.clone().without_autodiff();
                let batches: Vec<Vec<f32>> = images.chunks(per_view.max(1)).map(<[f32]>::to_vec).collect();
                let logits = view_logits_of(&model, batches, &views, n, &device);
                let probs = burn::tensor::activation::softmax(scale_logits(logits, logit_scale), 1);
                let flat = probs.into_data_async().await.map_err(|e| format!("{e:?}"))?.iter::<f32>().collect();
                Answer { flat, ..Answer::default() }
            }
            Task::Weights => Answer { flat: r.layout.read(&r.model).await?, ..Answer::default() },
        };
        answer.compute_ms = (self.clock)() - start;
        Ok(answer)
    }
}
