//! One-Cycle learning rate and momentum as pure functions of the step.
//!
//! The formula is PyTorch's `OneCycleLR(anneal_strategy='linear', three_phase=False)`: a linear
//! rise from `max_lr / div_factor` to `max_lr` over the first `pct_start` of the steps, then a
//! linear fall to `max_lr / div_factor / final_div_factor` at the last step; momentum moves the
//! other way between `max_momentum` and `base_momentum`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneCycle {
    /// Total optimiser steps (epochs x steps per epoch).
    pub total_steps: usize,
    /// Peak learning rate.
    pub max_lr: f64,
    /// Fraction of the steps spent rising (recipe: 5 / 24).
    pub pct_start: f64,
    /// Initial LR is `max_lr / div_factor`.
    pub div_factor: f64,
    /// Final LR is the initial LR / `final_div_factor`.
    pub final_div_factor: f64,
    /// Momentum at the peak LR.
    pub base_momentum: f64,
    /// Momentum at the start and the end.
    pub max_momentum: f64,
}

impl OneCycle {
    /// The recipe's schedule: peak at `peak_epoch` of `epochs`, momentum 0.95 -> 0.85 -> 0.95.
    pub fn recipe(epochs: usize, steps_per_epoch: usize, max_lr: f64, peak_epoch: f64) -> Self {
        Self {
            total_steps: (epochs * steps_per_epoch).max(2),
            max_lr,
            pct_start: (peak_epoch / epochs.max(1) as f64).clamp(0.0, 1.0),
            div_factor: 25.0,
            final_div_factor: 1e4,
            base_momentum: 0.85,
            max_momentum: 0.95,
        }
    }

    fn phase_end(&self) -> f64 {
        // PyTorch: float(pct_start * total_steps) - 1, kept above 0 so tiny runs still rise.
        (self.pct_start * self.total_steps as f64 - 1.0).max(1e-9)
    }

    fn initial_lr(&self) -> f64 {
        self.max_lr / self.div_factor
    }

    fn min_lr(&self) -> f64 {
        self.initial_lr() / self.final_div_factor
    }

    /// (learning rate, momentum) at optimiser step `step` (0-based).
    pub fn at(&self, step: usize) -> (f64, f64) {
        let s = step.min(self.total_steps - 1) as f64;
        let end1 = self.phase_end();
        let end2 = (self.total_steps - 1) as f64;
        if s <= end1 {
            let p = s / end1;
            (
                lerp(self.initial_lr(), self.max_lr, p),
                lerp(self.max_momentum, self.base_momentum, p),
            )
        } else {
            let p = if end2 > end1 { (s - end1) / (end2 - end1) } else { 1.0 };
            (lerp(self.max_lr, self.min_lr(), p), lerp(self.base_momentum, self.max_momentum, p))
        }
    }

    /// Learning rate at `step`.
    pub fn lr(&self, step: usize) -> f64 {
        self.at(step).0
    }

    /// Momentum at `step`.
    pub fn momentum(&self, step: usize) -> f64 {
        self.at(step).1
    }
}

fn lerp(a: f64, b: f64, p: f64) -> f64 {
    a + p * (b - a)
}
