//! SGD with Nesterov momentum, dampening 0 and L2 weight decay, whose momentum changes every step.
//!
//! burn's `Sgd` fixes its momentum at construction (and defaults to dampening 0.1), so the
//! One-Cycle momentum could not be applied through it. This is the same per-parameter update
//! as PyTorch's `torch.optim.SGD(nesterov=True, dampening=0)`:
//!
//! ```text
//! g = grad + wd * p
//! v = mu * v + g            (v = g at the first step)
//! p = p - lr * (g + mu * v)
//! ```
//!
//! The velocities are our own map rather than burn's `ModuleOptimizer` state: that state can
//! only be read synchronously, which WebGPU forbids, and the page must copy the momentum to
//! the CPU at every epoch end so a lost device does not take it along (`saved.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::model::{param_ids, TensorAny};

/// The optimiser and its state. Clone copies the velocities (cheap handles) and shares the
/// momentum cell.
#[derive(Clone)]
pub struct NesterovSgd {
    momentum: Arc<AtomicU64>,
    weight_decay: f64,
    /// Each parameter's velocity, flattened (reshaping a contiguous tensor costs nothing), on
    /// the device without autodiff.
    velocity: HashMap<ParamId, Tensor<1>>,
}

/// Handle to change the momentum of an optimiser owned elsewhere.
#[derive(Clone)]
pub struct MomentumHandle(Arc<AtomicU64>);

impl MomentumHandle {
    pub fn set(&self, momentum: f64) {
        self.0.store(momentum.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl NesterovSgd {
    /// The optimiser with no momentum yet, and the handle that sets its momentum.
    pub fn init(momentum: f64, weight_decay: f64) -> (Self, MomentumHandle) {
        let cell = Arc::new(AtomicU64::new(momentum.to_bits()));
        (NesterovSgd { momentum: cell.clone(), weight_decay, velocity: HashMap::new() }, MomentumHandle(cell))
    }

    /// One update of one tensor: returns the new parameter and velocity.
    pub fn update<const D: usize>(
        &self,
        lr: f64,
        param: Tensor<D>,
        grad: Tensor<D>,
        velocity: Option<Tensor<D>>,
    ) -> (Tensor<D>, Tensor<D>) {
        let mu = f64::from_bits(self.momentum.load(Ordering::Relaxed));
        let grad = if self.weight_decay > 0.0 { grad + param.clone().mul_scalar(self.weight_decay) } else { grad };
        let velocity = match velocity {
            Some(v) => v.mul_scalar(mu) + grad.clone(),
            None => grad.clone(),
        };
        let update = grad + velocity.clone().mul_scalar(mu);
        (param - update.mul_scalar(lr), velocity)
    }

    /// Updates every parameter of `module` that has a gradient (one without, like a frozen
    /// BatchNorm scale, keeps its value and has no velocity).
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        let mut mapper = Stepper { optim: self, grads, lr };
        module.map(&mut mapper)
    }

    /// Copies the velocities to the CPU without blocking, by parameter path (`layer1.conv.weight`).
    pub async fn velocities<M: Module>(&self, module: &M) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, String> {
        let shapes: BTreeMap<String, Vec<usize>> =
            crate::model::named_tensors(module).into_iter().map(|(p, t)| (p, t.dims())).collect();
        let (mut flat, mut dims) = (Vec::new(), Vec::new());
        for (path, id) in param_ids(module) {
            let (Some(v), Some(shape)) = (self.velocity.get(&ParamId::from(id)), shapes.get(&path)) else { continue };
            flat.push((path, TensorAny::R1(v.clone())));
            dims.push(shape.clone());
        }
        // Stored flat; returned with each parameter's shape.
        let read = crate::model::read_tensors(flat).await?;
        Ok(read.into_iter().zip(dims).map(|((path, _, values), shape)| (path, shape, values)).collect())
    }

    /// Replaces the velocities by `tensors` (by path), checked against `module`'s trainable
    /// parameters: each names one, with its shape. A parameter left out has no velocity yet.
    pub fn load_velocities<M: Module>(
        &mut self,
        module: &M,
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
        device: &Device,
    ) -> Result<(), String> {
        let shapes: BTreeMap<String, Vec<usize>> =
            crate::model::named_tensors(module).into_iter().map(|(p, t)| (p, t.dims())).collect();
        let ids = param_ids(module);
        let device = device.clone().without_autodiff();
        let mut velocity = HashMap::new();
        for (path, shape, values) in tensors {
            let (Some(expected), Some(&id)) = (shapes.get(&path), ids.get(&path)) else {
                return Err(format!("{path}: momentum of no parameter of this model"));
            };
            if crate::model::is_buffer(&path) {
                return Err(format!("{path}: a running statistic has no momentum"));
            }
            if &shape != expected || values.len() != shape.iter().product::<usize>() {
                return Err(format!("{path}: momentum of shape {shape:?}, its parameter has {expected:?}"));
            }
            let n = values.len();
            if velocity.insert(ParamId::from(id), Tensor::<1>::from_data(TensorData::new(values, [n]), &device)).is_some() {
                return Err(format!("{path}: two momentum buffers"));
            }
        }
        self.velocity = velocity;
        Ok(())
    }
}

struct Stepper<'a> {
    optim: &'a mut NesterovSgd,
    grads: GradientsParams,
    lr: f64,
}

impl ModuleMapper for Stepper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        // The update runs without autodiff; the result becomes a fresh leaf again.
        let require_grad = tensor.is_require_grad();
        let shape = grad.shape();
        let velocity = self.optim.velocity.remove(&id).map(|v| v.reshape(shape.clone()));
        let (updated, velocity) = self.optim.update(self.lr, tensor.inner(), grad, velocity);
        self.optim.velocity.insert(id, velocity.reshape([shape.num_elements()]));
        let mut tensor = Tensor::from_inner(updated);
        if require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}
