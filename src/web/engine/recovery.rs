//! After a lost device: a new one, its self-test, the saved weights loaded onto it and the
//! interrupted run trained on from its last completed epoch, without a reload.

use wasm_bindgen_futures::spawn_local;

use super::limits::*;
use super::startup::*;
use super::state::*;
use super::training::*;
use crate::train::{Control, Trainer};
use crate::web::protocol::{GpuView, Phase, Place, Update};

/// After a lost device: a new one, the self-test on it, the last saved weights loaded onto it,
/// and the interrupted run trained on from its last completed epoch, all without a reload.
pub fn continue_on_new_device() {
    if busy() {
        return;
    }
    say(Place::Train, false, "Starting a new WebGPU device…");
    spawn_local(async move {
        let gpu = match super::gpu::replace().await {
            Ok(g) => g,
            Err(e) => {
                return say(
                    Place::Train,
                    true,
                    format!("No new GPU device: {e}. Download the weights, then reload the page."),
                )
            }
        };
        set_device_lost(None);
        emit(Update::Gpu(Ok(GpuView { name: gpu.name.clone(), summary: gpu.summary() })));
        use_gpu(gpu.clone()).await;
        let usable = with_engine(|e| {
            e.selftest.as_ref().is_some_and(|r| r.as_ref().is_ok_and(|r| !r.usable_convs().is_empty()))
        });
        if !usable {
            return say(
                Place::Train,
                true,
                "The new GPU device failed its self-test (see the status above); download the weights.",
            );
        }
        let Some(saved) = with_engine(|e| e.saved.clone()) else {
            return say(Place::Train, false, "A new GPU device is ready.");
        };
        let epoch = saved.state.epoch;
        match saved.model.clone().into_model(&gpu.device) {
            Ok(model) => with_engine(|e| e.model = Some(model)),
            Err(e) => return say(Place::Train, true, format!("The saved weights do not load on the new device: {e}")),
        }
        let data = with_engine(|e| e.data.clone());
        let (true, Phase::Failed, Some(data)) = (saved.unfinished(), phase(), data) else {
            return say(
                Place::Train,
                false,
                format!("A new GPU device is ready, holding the weights of epoch {epoch}."),
            );
        };
        // The page shows the run as saved: an epoch that ended after the copy is trained again.
        emit(Update::RunLog { epochs: saved.state.log.epochs.clone(), batches: Some(saved.state.log.batches.clone()) });
        with_engine(|e| e.log = saved.state.log.clone());
        let mut trainer = match Trainer::from_saved(saved, &data, &gpu.device) {
            Ok(t) => t,
            Err(e) => return say(Place::Train, true, format!("The run cannot continue: {e}")),
        };
        // The new device may bind less per buffer than the old one: its own split.
        let mut config = trainer.config.clone();
        if !split_batch(Place::Train, &mut config, binding_limit(Some(gpu.max_storage_buffer_binding_size))) {
            return;
        }
        if let Err(e) = trainer.set_micro_batch(config.micro_batch) {
            return say(Place::Train, true, format!("The run cannot continue: {e}"));
        }
        control().set(Control::Run);
        set_phase(Phase::Running);
        say(Place::Train, false, format!("Continuing from epoch {epoch} on a new GPU device."));
        drive(trainer, data).await;
    });
}
