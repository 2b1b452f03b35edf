//! The `fast` recipe's training tricks (Page's "How to train your ResNet", airbench), each
//! switched by its own `TrainConfig` field and all off in the seed recipe: the training loss
//! (logit scale, label smoothing), the BatchNorm gradient rules (frozen scales, bias LR
//! multiplier) and Lookahead. Test-time augmentation lives in `train::evaluate`, the
//! alternating flip in `augment`.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;

use crate::config::TrainConfig;
use crate::micro::split_sizes;
use crate::model::{param_ids, sync_running_stats, ResNet9};

/// The training loss and gradient rules of a recipe, shared by the trainer, the LR finder and
/// the step benchmark so all three optimise the same objective.
#[derive(Debug)]
pub struct Objective {
    logit_scale: f64,
    loss: CrossEntropyLoss,
    /// BatchNorm scales whose gradients are dropped (frozen), when `bn_freeze_scale`.
    frozen: Vec<ParamId>,
    /// BatchNorm biases whose gradients are multiplied by `bias_lr`.
    biases: Vec<ParamId>,
    bias_lr: f64,
}

impl Objective {
    pub fn new(config: &TrainConfig, model: &ResNet9, device: &Device) -> Self {
        let smoothing = (config.label_smoothing > 0.0).then_some(config.label_smoothing as f32);
        let ids = param_ids(model);
        let ids_ending = |suffix: &str| -> Vec<ParamId> {
            ids.iter().filter(|(path, _)| path.ends_with(suffix)).map(|(_, id)| ParamId::from(*id)).collect()
        };
        Self {
            logit_scale: config.logit_scale,
            loss: CrossEntropyLossConfig::new().with_smoothing(smoothing).init(device),
            frozen: if config.bn_freeze_scale { ids_ending("bn.gamma") } else { Vec::new() },
            biases: if config.bn_bias_lr != 1.0 { ids_ending("bn.beta") } else { Vec::new() },
            bias_lr: config.bn_bias_lr,
        }
    }

    /// The logits the loss sees: the model's, times the logit scale.
    pub fn logits(&self, model: &ResNet9, images: Tensor<4>) -> Tensor<2> {
        scale_logits(model.forward(images), self.logit_scale)
    }

    /// Mean (label-smoothed) cross-entropy of scaled logits.
    pub fn loss(&self, logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        self.loss.forward(logits, labels)
    }

    /// The forward and backward passes of one optimiser step over a batch: the batch's mean
    /// loss (detached), its logits as the loss saw them (detached) and the gradients of the
    /// mean loss, before [`Objective::adjust`]. With `micro_batch` below the batch's size the
    /// images go through in the fewest passes of at most that many (`micro::split_sizes`),
    /// each pass's loss weighted by its share of the batch so the gradients summed over the
    /// passes are those of the batch's mean loss, except for BatchNorm: each pass normalises
    /// with its own statistics and updates the running statistics once. Each pass's graph is
    /// freed by its backward before the next is built, which is what bounds the buffers.
    /// Otherwise: one pass, the operations of an unsplit step and nothing more.
    pub fn backward(
        &self,
        model: &ResNet9,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        micro_batch: Option<usize>,
    ) -> (Tensor<1>, Tensor<2>, GradientsParams) {
        self.backward_scaled(model, images, labels, micro_batch, 1.0)
    }

    /// [`Objective::backward`] of a slice of a larger batch whose loss counts `scale` times
    /// (its share of the batch): a data-parallel replica's part of a step (`replicas`). The
    /// loss returned is scaled too. At `scale` 1 nothing is multiplied.
    pub fn backward_scaled(
        &self,
        model: &ResNet9,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        micro_batch: Option<usize>,
        scale: f64,
    ) -> (Tensor<1>, Tensor<2>, GradientsParams) {
        let batch = images.dims()[0];
        let sizes = split_sizes(batch, micro_batch);
        if sizes.len() <= 1 {
            let logits = self.logits(model, images);
            let loss = self.loss(logits.clone(), labels);
            let loss = if scale == 1.0 { loss } else { loss.mul_scalar(scale) };
            let grads = GradientsParams::from_grads(loss.backward(), model);
            return (loss.detach(), logits.detach(), grads);
        }
        let mut accumulator = GradientsAccumulator::<ResNet9>::new();
        let (mut losses, mut all_logits) = (Vec::with_capacity(sizes.len()), Vec::with_capacity(sizes.len()));
        let mut start = 0;
        for size in sizes {
            let logits = self.logits(model, images.clone().narrow(0, start, size));
            let share = scale * size as f64 / batch as f64;
            let loss = self.loss(logits.clone(), labels.clone().narrow(0, start, size)).mul_scalar(share);
            accumulator.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
            losses.push(loss.detach());
            all_logits.push(logits.detach());
            start += size;
        }
        (Tensor::cat(losses, 0).sum(), Tensor::cat(all_logits, 0), accumulator.grads())
    }

    /// Applies the BatchNorm rules to a step's gradients: frozen scales lose their gradient (so
    /// the optimiser leaves them, weight decay included); bias gradients are multiplied by the
    /// bias LR multiplier before the optimiser adds `wd * p`, which is LR x m with decay / m.
    pub fn adjust(&self, mut grads: GradientsParams) -> GradientsParams {
        for id in &self.frozen {
            let _ = grads.remove::<1>(*id);
        }
        for id in &self.biases {
            if let Some(g) = grads.remove::<1>(*id) {
                grads.register(*id, g.mul_scalar(self.bias_lr));
            }
        }
        grads
    }
}

/// Logits times `scale` (no operation at 1, the seed recipe).
pub fn scale_logits(logits: Tensor<2>, scale: f64) -> Tensor<2> {
    if scale == 1.0 { logits } else { logits.mul_scalar(scale) }
}

/// Steps between Lookahead updates (airbench).
pub const LOOKAHEAD_EVERY: usize = 5;

/// airbench's Lookahead decay at a step: 0.95^5 x (step / total)^3, so the slow weights follow
/// the trained ones closely early and average over more steps as the LR falls.
pub fn lookahead_decay(step: usize, total: usize) -> f64 {
    0.95f64.powi(LOOKAHEAD_EVERY as i32) * (step as f64 / total.max(1) as f64).powi(3)
}

/// Every float tensor of a module, flattened, in visiting order (running statistics included).
struct Flatten(Vec<Tensor<1>>);

impl ModuleVisitor for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

/// Replaces each float tensor `t` of a module by `(1 - w) t + w o`, `o` the matching tensor of
/// another module of the same shape (same visiting order), keeping ids and gradient tracking.
struct Blend {
    others: std::vec::IntoIter<Tensor<1>>,
    weight: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, t, mapper) = param.consume();
        let Some(other) = self.others.next() else {
            return Param::from_mapped_value(id, t, mapper);
        };
        let tracked = t.is_require_grad();
        let other: Tensor<D> = other.reshape(t.dims()).detach();
        let blended = if self.weight >= 1.0 {
            other
        } else {
            t.detach().mul_scalar(1.0 - self.weight) + other.mul_scalar(self.weight)
        };
        // A fresh leaf (what the optimiser's own update returns), tracked if the original was.
        let blended = if tracked { Tensor::from_inner(blended.inner()).require_grad() } else { blended };
        Param::from_mapped_value(id, blended, mapper)
    }
}

fn flatten(model: &ResNet9) -> Vec<Tensor<1>> {
    sync_running_stats(model);
    let mut f = Flatten(Vec::new());
    model.visit(&mut f);
    f.0
}

fn blend(model: ResNet9, towards: &ResNet9, weight: f64) -> ResNet9 {
    let others = flatten(towards).into_iter();
    sync_running_stats(&model);
    model.map(&mut Blend { others, weight })
}

/// airbench's Lookahead: slow weights that trail the trained ones.
#[derive(Clone, Debug)]
pub struct Lookahead {
    /// The slow weights (running statistics too), never shared with the trained model.
    pub slow: ResNet9,
}

impl Lookahead {
    pub fn new(model: &ResNet9) -> Self {
        Self { slow: model.checkpoint() }
    }

    /// `slow = decay * slow + (1 - decay) * model`, then the model is reset to `slow`.
    pub fn update(&mut self, model: ResNet9, decay: f64) -> ResNet9 {
        // Mapping updates running statistics in place: the slow copy's own, never the model's.
        self.slow = blend(self.slow.clone(), &model, 1.0 - decay);
        blend(model, &self.slow, 1.0)
    }
}
