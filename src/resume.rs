//! A training run saved at an epoch boundary and picked up again later, in another process:
//! the weights (burnpack, also importable by the page), the optimiser's momentum buffers and
//! where the run stands. Resuming gives the same weights as never stopping, because every
//! epoch's shuffle and augmentation are seeded by the epoch number.
//!
//! Native only: burn's optimiser record reads its tensors synchronously, which WebGPU forbids.
//! It lets a long GPU run span several time-limited sessions (`train --save-state/--resume`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::ParamId;
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::Cifar10;
use crate::metrics::RunLog;
use crate::model::param_ids;
use crate::train::Trainer;
use crate::weights::{self, Snapshot};

const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "state.json";

/// Where the run stands (`state.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    pub config: TrainConfig,
    pub epoch: usize,
    pub step: usize,
    pub elapsed_ms: f64,
    /// The optimiser keys its momentum by parameter id: the resumed model gets the same ids.
    pub param_ids: BTreeMap<String, u64>,
    pub log: RunLog,
}

fn io(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    dir.with_file_name(name)
}

impl Trainer {
    /// Writes the run's state into `dir`, replacing what was there only once the new state is
    /// complete (a run killed while saving leaves the previous epoch's state readable).
    pub fn save_state(&self, dir: &Path) -> Result<(), String> {
        // The momentum buffers belong to the current model: only an epoch boundary pairs them
        // with a position the loop can restart from.
        if self.step != self.epoch * self.steps_per_epoch {
            return Err(format!("not at the end of an epoch (step {}), nothing saved", self.step));
        }
        let snapshot = pollster::block_on(weights::snapshot(&self.model)).map_err(|e| e.to_string())?;
        let state = RunState {
            config: self.config.clone(),
            epoch: self.epoch,
            step: self.step,
            elapsed_ms: self.elapsed_ms,
            param_ids: param_ids(&self.model),
            log: self.log.clone(),
        };
        let fresh = sibling(dir, ".new");
        let old = sibling(dir, ".old");
        let _ = std::fs::remove_dir_all(&fresh);
        std::fs::create_dir_all(&fresh).map_err(|e| io(&fresh, e))?;
        let model = snapshot.to_burnpack().map_err(|e| e.to_string())?;
        std::fs::write(fresh.join(MODEL_FILE), model).map_err(|e| io(&fresh, e))?;
        self.optim.save(fresh.join(OPTIMIZER_FILE)).map_err(|e| io(&fresh, format!("{e:?}")))?;
        let json = serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())?;
        std::fs::write(fresh.join(STATE_FILE), json).map_err(|e| io(&fresh, e))?;
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(|e| io(dir, e))?;
        }
        std::fs::rename(&fresh, dir).map_err(|e| io(dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Rebuilds a trainer from a state written by [`Trainer::save_state`], on `device`, for the
    /// same data. The recipe comes from the state, never from the caller.
    pub fn resume(dir: &Path, data: &Cifar10, device: &Device) -> Result<Self, String> {
        // A save interrupted between its two renames leaves only the previous state.
        let dir = match (dir.join(STATE_FILE).exists(), sibling(dir, ".old")) {
            (true, _) => dir.to_path_buf(),
            (false, old) if old.join(STATE_FILE).exists() => old,
            _ => return Err(format!("{}: no saved training state there (train --save-state writes one)", dir.display())),
        };
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| io(&dir.join(name), e));
        let state: RunState = serde_json::from_slice(&read(STATE_FILE)?)
            .map_err(|e| format!("{}: not a saved training state ({e})", dir.join(STATE_FILE).display()))?;
        let mut trainer = Trainer::new(state.config.clone(), data, device).map_err(|e| e.to_string())?;
        if state.step != state.epoch * trainer.steps_per_epoch {
            return Err(format!(
                "saved state is at step {} of epoch {}, but this data gives {} steps an epoch: \
                 resume with the same data and subsets",
                state.step, state.epoch, trainer.steps_per_epoch
            ));
        }
        let snapshot = Snapshot::from_burnpack(&read(MODEL_FILE)?).map_err(|e| e.to_string())?;
        let ids = state.param_ids.iter().map(|(k, &v)| (k.clone(), ParamId::from(v))).collect();
        let model = weights::apply_with_ids(trainer.model.clone(), snapshot.tensors, Some(ids))
            .map_err(|e| e.to_string())?;
        trainer.optim = trainer
            .optim
            .clone()
            .load(dir.join(OPTIMIZER_FILE))
            .map_err(|e| format!("{}: {e:?}", dir.join(OPTIMIZER_FILE).display()))?;
        trainer.last_good = model.checkpoint();
        trainer.model = model;
        trainer.epoch = state.epoch;
        trainer.step = state.step;
        trainer.elapsed_ms = state.elapsed_ms;
        trainer.log = state.log;
        Ok(trainer)
    }
}
