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
//! The momentum lives in a shared cell so the training loop can set it before each step while
//! burn's `ModuleOptimizer` owns the optimiser.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use burn::optim::{ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::prelude::*;

/// Momentum velocity of one parameter.
#[derive(Clone)]
pub struct Velocity<const D: usize> {
    velocity: Tensor<D>,
}

impl<const D: usize> RecordState for Velocity<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        // Only reached by `train --save-state` (resume.rs), which is native: a sync read is fine
        // there and never happens in the browser.
        out.push_tensor(prefix, "velocity", self.velocity.clone().into_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let data = src.take_tensor(prefix, "velocity")?;
        Some(Self { velocity: Tensor::from_data(data, device) })
    }
}

/// The optimiser. Clone shares the momentum cell.
#[derive(Clone)]
pub struct NesterovSgd {
    momentum: Arc<AtomicU64>,
    weight_decay: f64,
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
    /// Builds the module optimiser and the handle that sets its momentum.
    pub fn init(momentum: f64, weight_decay: f64) -> (ModuleOptimizer, MomentumHandle) {
        let (optim, handle) = Self::new(momentum, weight_decay);
        (ModuleOptimizer::from(optim), handle)
    }

    /// The bare optimiser, for stepping single tensors (the GPU self-test).
    pub fn new(momentum: f64, weight_decay: f64) -> (Self, MomentumHandle) {
        let cell = Arc::new(AtomicU64::new(momentum.to_bits()));
        (NesterovSgd { momentum: cell.clone(), weight_decay }, MomentumHandle(cell))
    }
}

impl Optimizer for NesterovSgd {
    type State<const D: usize> = Velocity<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<<Self as Optimizer>::State<D>>,
    ) -> (Tensor<D>, Option<<Self as Optimizer>::State<D>>) {
        let mu = f64::from_bits(self.momentum.load(Ordering::Relaxed));
        let grad = if self.weight_decay > 0.0 {
            grad + tensor.clone().mul_scalar(self.weight_decay)
        } else {
            grad
        };
        let velocity = match state {
            Some(state) => state.velocity.mul_scalar(mu) + grad.clone(),
            None => grad.clone(),
        };
        let update = grad + velocity.clone().mul_scalar(mu);
        (tensor - update.mul_scalar(lr), Some(Velocity { velocity }))
    }

    fn to_device<const D: usize>(state: <Self as Optimizer>::State<D>, device: &Device) -> <Self as Optimizer>::State<D> {
        Velocity { velocity: state.velocity.to_device(device) }
    }
}
