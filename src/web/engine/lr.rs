//! The LR range test with the form's settings.

use wasm_bindgen_futures::spawn_local;

use super::checks::*;
use super::conv::*;
use super::host::*;
use super::state::*;
use crate::lr_finder::{find_lr, LrFinderConfig};
use crate::train::Control;
use crate::web::protocol::{Job, Phase, Place, Update};

/// Runs the LR range test with the form's settings.
pub fn run_lr_finder(job: Job, steps: usize) {
    let Some((mut config, device, data)) = ready(&job, Place::LrFinder) else { return };
    control().set(Control::Run);
    emit(Update::Message { place: Place::LrFinder, message: None });
    emit(Update::LrReset);
    set_phase(Phase::FindingLr);
    let finder = LrFinderConfig { steps: steps.max(10), ..Default::default() };
    spawn_local(async move {
        if !choose_conv_if_auto(&job, &mut config, &device, &data.train).await {
            set_phase(Phase::Idle);
            return;
        }
        set_phase(Phase::FindingLr);
        match find_lr(&config, &finder, &data, &device, &mut WebHost).await {
            Ok(r) => {
                emit(Update::LrSuggestion(r.suggestion()));
                say(
                    Place::LrFinder,
                    false,
                    match r.suggestion() {
                        Some(s) => {
                            format!("LR finder suggests max LR {s:.4} (min/10: {:.4}).", r.min_over_10.unwrap_or(0.0))
                        }
                        None => "LR finder: no clear descent; keep the recipe's LR.".into(),
                    },
                );
            }
            Err(e) => say(Place::LrFinder, true, format!("LR finder: {e}")),
        }
        set_phase(Phase::Idle);
    });
}
