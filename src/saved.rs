//! A training run at an epoch boundary, copied to the CPU: the weights, the optimiser's
//! momentum, Lookahead's slow weights and where the run stands. Rebuilding a trainer from it
//! on any device continues the run exactly as if it had never stopped (every epoch's shuffle
//! and augmentation are seeded by the epoch number).
//!
//! The page keeps one after every epoch, so a lost GPU device does not take the run with it
//! ("Continue on a new device"); natively `train --save-state` writes one to disk (`resume.rs`).
//! Every read is asynchronous, so both hosts share this code.

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::Cifar10;
use crate::metrics::RunLog;
use crate::train::{TrainError, Trainer};
use crate::weights::{self, Snapshot};

/// Where the run stands (`state.json` on disk).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    pub config: TrainConfig,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps done (`epoch` x steps an epoch).
    pub step: usize,
    /// Training and evaluation time so far, milliseconds.
    pub elapsed_ms: f64,
    pub log: RunLog,
}

/// Everything a run needs to go on, on the CPU.
#[derive(Clone, Debug)]
pub struct SavedRun {
    pub state: RunState,
    pub model: Snapshot,
    /// Each parameter's momentum velocity by path; a parameter not yet updated has none.
    pub momentum: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Lookahead's slow weights, for a recipe that uses it.
    pub slow: Option<Snapshot>,
}

impl SavedRun {
    /// Whether the run has epochs left.
    pub fn unfinished(&self) -> bool {
        self.state.epoch < self.state.config.epochs
    }
}

impl Trainer {
    /// Copies the run to the CPU without blocking. Only at an epoch boundary: the momentum
    /// belongs to the current weights, and only there can the loop restart.
    pub async fn save_run(&self) -> Result<SavedRun, TrainError> {
        if self.step != self.epoch * self.steps_per_epoch {
            return Err(TrainError::Invalid(format!("not at the end of an epoch (step {})", self.step)));
        }
        let model = weights::snapshot(&self.model).await?;
        let momentum = self.optim.velocities(&self.model).await.map_err(TrainError::Device)?;
        let slow = match &self.lookahead {
            Some(lookahead) => Some(weights::snapshot(&lookahead.slow).await?),
            None => None,
        };
        let state = RunState {
            config: self.config.clone(),
            epoch: self.epoch,
            step: self.step,
            elapsed_ms: self.elapsed_ms,
            log: self.log.clone(),
        };
        Ok(SavedRun { state, model, momentum, slow })
    }

    /// Rebuilds the trainer of a saved run on `device`, for the same data. The recipe comes
    /// from the saved state, never from the caller. Everything is checked before it is used:
    /// the state may come from a file.
    pub fn from_saved(saved: SavedRun, data: &Cifar10, device: &burn::prelude::Device) -> Result<Self, String> {
        let SavedRun { state, model, momentum, slow } = saved;
        // Validate before building anything: the model's size comes from the recipe's width.
        state.config.validate().map_err(|e| format!("state: {e}"))?;
        // Weights too few for the recipe's width are refused before that model is built: a
        // state claiming width 4 would otherwise cost a gigabyte.
        model.check_size(state.config.width).map_err(|e| format!("weights: {e}"))?;
        let mut trainer = Trainer::new(state.config.clone(), data, device).map_err(|e| e.to_string())?;
        if state.epoch.checked_mul(trainer.steps_per_epoch) != Some(state.step) || state.epoch > state.config.epochs {
            return Err(format!(
                "saved state is at step {} of epoch {}, but this data gives {} steps an epoch: \
                 resume with the same data and subsets",
                state.step, state.epoch, trainer.steps_per_epoch
            ));
        }
        // `apply` checks every name and shape and keeps the model's parameter ids, which the
        // momentum is then keyed by.
        let model = weights::apply(trainer.model.clone(), model.tensors).map_err(|e| format!("weights: {e}"))?;
        trainer.optim.load_velocities(&model, momentum, &trainer.device).map_err(|e| format!("momentum: {e}"))?;
        match (trainer.lookahead.is_some(), slow) {
            (true, Some(slow)) => trainer.restore_slow(slow).map_err(|e| format!("slow weights: {e}"))?,
            (true, None) => return Err("the recipe uses Lookahead but its slow weights are missing".into()),
            (false, _) => {}
        }
        trainer.last_good = model.checkpoint();
        trainer.model = model;
        trainer.epoch = state.epoch;
        trainer.step = state.step;
        trainer.elapsed_ms = state.elapsed_ms;
        trainer.log = state.log;
        Ok(trainer)
    }

    /// Loads Lookahead's slow weights (checked against the model like any weights file).
    pub fn restore_slow(&mut self, slow: Snapshot) -> Result<(), String> {
        let Some(lookahead) = self.lookahead.as_mut() else {
            return Err("this recipe has no Lookahead".into());
        };
        slow.check_size(self.config.width).map_err(|e| e.to_string())?;
        let slow = weights::apply(lookahead.slow.clone(), slow.tensors).map_err(|e| e.to_string())?;
        lookahead.slow = slow.checkpoint();
        Ok(())
    }
}
