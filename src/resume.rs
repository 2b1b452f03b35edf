//! A training run saved at an epoch boundary and picked up again later, in another process:
//! the weights (burnpack, also importable by the page), the optimiser's momentum buffers
//! (burnpack, by parameter path), Lookahead's slow weights and where the run stands. The
//! contents are `saved::SavedRun`, which the page keeps in memory; this is its file form.
//!
//! It lets a long GPU run span several time-limited sessions (`train --save-state/--resume`).

use std::path::{Path, PathBuf};

use burn::prelude::Device;

use crate::data::Cifar10;
use crate::saved::{RunState, SavedRun};
use crate::train::Trainer;
use crate::weights::{self, Snapshot};

const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "state.json";
/// Lookahead's slow weights, only for a recipe that uses it.
const SLOW_FILE: &str = "slow.bpk";

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
        let saved = pollster::block_on(self.save_run()).map_err(|e| e.to_string())?;
        let fresh = sibling(dir, ".new");
        let old = sibling(dir, ".old");
        let _ = std::fs::remove_dir_all(&fresh);
        std::fs::create_dir_all(&fresh).map_err(|e| io(&fresh, e))?;
        let write = |name: &str, bytes: &[u8]| std::fs::write(fresh.join(name), bytes).map_err(|e| io(&fresh.join(name), e));
        write(MODEL_FILE, &saved.model.to_burnpack().map_err(|e| e.to_string())?)?;
        let momentum = weights::tensors_to_burnpack(&saved.momentum, &[("momentum", "cifar10-webgpu Nesterov SGD")])
            .map_err(|e| e.to_string())?;
        write(OPTIMIZER_FILE, &momentum)?;
        if let Some(slow) = &saved.slow {
            write(SLOW_FILE, &slow.to_burnpack().map_err(|e| e.to_string())?)?;
        }
        write(STATE_FILE, &serde_json::to_vec_pretty(&saved.state).map_err(|e| e.to_string())?)?;
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
        let slow = dir.join(SLOW_FILE).exists().then(|| read(SLOW_FILE)).transpose()?;
        Self::resume_from_bytes(&state, &model, &optimizer, slow.as_deref(), data, device)
            .map_err(|e| format!("{}: {e}", dir.display()))
    }

    /// [`Trainer::resume`] from the files' contents (`slow`: `slow.bpk`, if there is one).
    /// Every field a file controls is checked before it is used (`Trainer::from_saved`).
    pub fn resume_from_bytes(
        state: &[u8],
        model: &[u8],
        optimizer: &[u8],
        slow: Option<&[u8]>,
        data: &Cifar10,
        device: &Device,
    ) -> Result<Self, String> {
        let state: RunState = serde_json::from_slice(state)
            .map_err(|e| format!("{STATE_FILE}: not a saved training state ({e})"))?;
        let model = Snapshot::from_burnpack(model).map_err(|e| format!("{MODEL_FILE}: {e}"))?;
        let (_, momentum) = weights::tensors_from_burnpack(optimizer).map_err(|e| format!("{OPTIMIZER_FILE}: {e}"))?;
        let slow = slow
            .map(|bytes| Snapshot::from_burnpack(bytes).map_err(|e| format!("{SLOW_FILE}: {e}")))
            .transpose()?;
        Trainer::from_saved(SavedRun { state, model, momentum, slow }, data, device).map_err(|e| {
            // Name the file the complaint is about.
            let parts = [("state: ", STATE_FILE), ("weights: ", MODEL_FILE), ("momentum: ", OPTIMIZER_FILE), ("slow weights: ", SLOW_FILE)];
            match parts.iter().find_map(|(part, file)| e.strip_prefix(part).map(|rest| format!("{file}: {rest}"))) {
                Some(named) => named,
                None => e,
            }
        })
    }
}
