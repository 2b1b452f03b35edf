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
/// Lookahead's slow weights, only for a recipe that uses it.
const SLOW_FILE: &str = "slow.bpk";

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
        if let Some(lookahead) = &self.lookahead {
            let slow = pollster::block_on(weights::snapshot(&lookahead.slow)).map_err(|e| e.to_string())?;
            std::fs::write(fresh.join(SLOW_FILE), slow.to_burnpack().map_err(|e| e.to_string())?)
                .map_err(|e| io(&fresh, e))?;
        }
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
        let (state, model, optimizer) = (read(STATE_FILE)?, read(MODEL_FILE)?, read(OPTIMIZER_FILE)?);
        let mut trainer = Self::resume_from_bytes(&state, &model, &optimizer, data, device)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        if trainer.lookahead.is_some() {
            trainer.restore_slow(&read(SLOW_FILE)?).map_err(|e| format!("{}: {SLOW_FILE}: {e}", dir.display()))?;
        }
        Ok(trainer)
    }

    /// Loads Lookahead's slow weights (checked against the model like any weights file).
    pub fn restore_slow(&mut self, bytes: &[u8]) -> Result<(), String> {
        let Some(lookahead) = self.lookahead.as_mut() else {
            return Err("this recipe has no Lookahead".into());
        };
        let snapshot = Snapshot::from_burnpack(bytes).map_err(|e| e.to_string())?;
        snapshot.check_size(self.config.width).map_err(|e| e.to_string())?;
        let slow = weights::apply_with_ids(lookahead.slow.clone(), snapshot.tensors, None).map_err(|e| e.to_string())?;
        lookahead.slow = slow.checkpoint();
        Ok(())
    }

    /// [`Trainer::resume`] from the three files' contents. Every field a file controls is
    /// checked before burn sees it: burn's optimiser loader panics on a momentum tensor without
    /// a parameter id or with a rank it cannot dispatch, and a momentum buffer whose shape
    /// differs from its parameter's would panic at the first step.
    pub fn resume_from_bytes(
        state: &[u8],
        model: &[u8],
        optimizer: &[u8],
        data: &Cifar10,
        device: &Device,
    ) -> Result<Self, String> {
        let state: RunState = serde_json::from_slice(state)
            .map_err(|e| format!("{STATE_FILE}: not a saved training state ({e})"))?;
        // Validate before building anything: the model's size comes from the recipe's width.
        state.config.validate().map_err(|e| format!("{STATE_FILE}: {e}"))?;
        // The model file must be large enough for the recipe's width before that model is
        // built: a few bytes of state.json saying width 4 would otherwise cost a gigabyte.
        let snapshot = Snapshot::from_burnpack(model).map_err(|e| format!("{MODEL_FILE}: {e}"))?;
        snapshot.check_size(state.config.width).map_err(|e| format!("{MODEL_FILE}: {e}"))?;
        let mut trainer = Trainer::new(state.config.clone(), data, device).map_err(|e| e.to_string())?;
        if state.epoch.checked_mul(trainer.steps_per_epoch) != Some(state.step) {
            return Err(format!(
                "saved state is at step {} of epoch {}, but this data gives {} steps an epoch: \
                 resume with the same data and subsets",
                state.step, state.epoch, trainer.steps_per_epoch
            ));
        }
        let shapes: BTreeMap<String, Vec<usize>> =
            snapshot.tensors.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect();
        check_param_ids(&state.param_ids, &param_ids(&trainer.model))?;
        // `apply_with_ids` checks every name and shape against the model, so after it `shapes`
        // is the model's own.
        let ids = state.param_ids.iter().map(|(k, &v)| (k.clone(), ParamId::from(v))).collect();
        let model = weights::apply_with_ids(trainer.model.clone(), snapshot.tensors, Some(ids))
            .map_err(|e| format!("{MODEL_FILE}: {e}"))?;
        check_optimizer(optimizer, &state.param_ids, &shapes).map_err(|e| format!("{OPTIMIZER_FILE}: {e}"))?;
        trainer.optim = trainer
            .optim
            .clone()
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(optimizer.to_vec()))
            .map_err(|e| format!("{OPTIMIZER_FILE}: {e:?}"))?;
        trainer.last_good = model.checkpoint();
        trainer.model = model;
        trainer.epoch = state.epoch;
        trainer.step = state.step;
        trainer.elapsed_ms = state.elapsed_ms;
        trainer.log = state.log;
        Ok(trainer)
    }
}

/// The saved ids must name exactly the model's tensors, each with its own id: two parameters
/// sharing an id would share (and mis-shape) one momentum buffer.
fn check_param_ids(saved: &BTreeMap<String, u64>, model: &BTreeMap<String, u64>) -> Result<(), String> {
    if saved.keys().ne(model.keys()) {
        return Err(format!("{STATE_FILE}: its parameter ids do not name this model's tensors"));
    }
    let distinct: std::collections::BTreeSet<u64> = saved.values().copied().collect();
    if distinct.len() != saved.len() {
        return Err(format!("{STATE_FILE}: two tensors share one parameter id"));
    }
    Ok(())
}

/// Checks the optimiser file before burn loads it: every tensor is the `velocity` of a known
/// parameter, carries that parameter's id, and has its dtype (F32) and shape; every `__rank`
/// scalar names a known parameter with its rank.
fn check_optimizer(
    bytes: &[u8],
    ids: &BTreeMap<String, u64>,
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<(), String> {
    let by_id: BTreeMap<u64, &Vec<usize>> =
        ids.iter().filter_map(|(name, id)| shapes.get(name).map(|s| (*id, s))).collect();
    let reader = burn_pack::Reader::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| e.to_string())?;
    for (key, value) in reader.scalars() {
        let Some(id) = key.strip_suffix(".__rank") else { continue };
        let shape = id.parse::<u64>().ok().and_then(|id| by_id.get(&id));
        let rank = usize::try_from(*value).ok();
        if shape.map(|s| s.len()) != rank || rank.is_none() {
            return Err(format!("{key}: not the rank of a parameter of this model"));
        }
    }
    for tensor in reader.into_tensors().map_err(|e| e.to_string())? {
        let name = tensor.name.clone();
        let shape = tensor.param_id.and_then(|id| by_id.get(&id).map(|s| (id, s)));
        let Some((id, shape)) = shape else {
            return Err(format!("{name}: momentum of no parameter of this model"));
        };
        if name != format!("{id}.velocity") || tensor.dtype != burn::tensor::DType::F32 {
            return Err(format!("{name}: not an F32 momentum buffer"));
        }
        if tensor.shape.to_vec() != **shape {
            return Err(format!("{name}: shape {:?}, its parameter has {shape:?}", tensor.shape));
        }
    }
    Ok(())
}
