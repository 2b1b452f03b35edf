//! A training run: started from the form, driven epoch by epoch with a CPU copy saved after
//! each, and its ending (finished, stopped, diverged, a failed device) told to the page.

use std::rc::Rc;

use burn::prelude::*;
use wasm_bindgen_futures::spawn_local;

use super::checks::*;
use super::conv::*;
use super::host::*;
use super::state::*;
use crate::config::TrainConfig;
use crate::data::Cifar10;
use crate::train::{Control, TrainError, Trainer};
use crate::web::protocol::{Job, Phase, Place, Update};

/// Starts a training run.
pub fn start_training(job: Job) {
    let Some((mut config, device, data)) = ready(&job, Place::Train) else { return };
    control().set(Control::Run);
    // Busy from the click on: the choice below may take seconds.
    let before = phase();
    set_phase(Phase::Benchmarking);
    spawn_local(async move {
        // The convolutions first (auto mode): the run then uses the fastest.
        if !choose_conv_if_auto(&job, &mut config, &device, &data.train).await {
            set_phase(before);
            return;
        }
        set_phase(before);
        begin_training(config, device, data).await;
    });
}

/// Starts the run once the convolution algorithm is settled.
pub async fn begin_training(config: TrainConfig, device: Device, data: Rc<Cifar10>) {
    let trainer = match Trainer::new(config.clone(), &data, &device) {
        Ok(t) => t,
        Err(e) => return say(Place::Train, true, e.to_string()),
    };
    emit(Update::RunStarted { total_epochs: config.epochs, lookahead: config.lookahead });
    set_phase(Phase::Running);
    with_engine(|e| {
        e.log = trainer.log.clone();
        e.saved = None;
    });
    drive(trainer, data).await;
}

/// Keeps a CPU copy of the run (weights, momentum, position): a lost device cannot take it.
pub async fn save(trainer: &Trainer) -> Result<(), TrainError> {
    let saved = trainer.save_run().await?;
    with_engine(|e| e.saved = Some(saved));
    Ok(())
}

/// Trains to the end (or a stop, divergence or device failure), saving after every epoch.
pub async fn drive(mut trainer: Trainer, data: Rc<Cifar10>) {
    let mut host = WebHost;
    let data = data.subset(trainer.config.train_subset, trainer.config.test_subset);
    trainer.announce(&mut host);
    let mut outcome = save(&trainer).await;
    let mut epoch = trainer.epoch + 1;
    while outcome.is_ok() && !trainer.finished() {
        epoch = trainer.epoch + 1;
        outcome = trainer.run_epoch(&data, &mut host).await;
        if outcome.is_ok() {
            outcome = save(&trainer).await;
        }
    }
    with_engine(|e| e.log.batches = trainer.log.batches.clone());
    match outcome {
        Ok(()) => {
            set_phase(Phase::Finished);
            let acc = trainer.last_evaluation.as_ref().map(|e| e.accuracy * 100.0).unwrap_or(0.0);
            say(Place::Train, false, format!("Finished {} epochs: {acc:.2}% test accuracy.", trainer.epoch));
        }
        Err(TrainError::Stopped) => {
            set_phase(Phase::Stopped);
            say(
                Place::Train,
                false,
                format!("Stopped after {} steps; the weights so far can be downloaded.", trainer.step),
            );
        }
        Err(TrainError::Device(e)) => {
            set_phase(Phase::Failed);
            // The model on the device is lost or suspect: exports take the saved copy.
            with_engine(|e| e.model = None);
            // Offered whatever the failure: a new device is the way on from a loss or an
            // out-of-memory alike.
            if !device_lost() {
                set_device_lost(Some(e.clone()));
            }
            // The epoch log shows what is kept: an epoch that ended after the copy is not.
            let kept = with_engine(|e| e.saved.as_ref().map(|s| s.state.log.epochs.clone())).unwrap_or_default();
            let kept_epochs = kept.len();
            emit(Update::RunLog { epochs: kept, batches: None });
            say(
                Place::Train,
                true,
                format!(
                    "The GPU device failed during epoch {epoch}: {e}. The run as it stood after epoch {kept_epochs} is \
                     kept: download its weights, or press \"Continue on a new device\" to train on from there."
                ),
            );
        }
        Err(e) => {
            set_phase(Phase::Failed);
            say(Place::Train, true, e.to_string());
        }
    }
}
