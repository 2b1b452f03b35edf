//! What every GPU action (train, benchmark, LR finder) needs before it starts: a valid form, a
//! device that passed its self-test, a batch that fits, the data.

use std::rc::Rc;

use burn::prelude::*;

use super::limits::*;
use super::state::*;
use crate::config::TrainConfig;
use crate::data::Cifar10;
use crate::web::protocol::{Command, Job, Place};

/// The card where a GPU action's messages show.
pub fn place_of(command: &Command) -> Place {
    if matches!(command, Command::FindLr { .. }) {
        Place::LrFinder
    } else {
        Place::Train
    }
}

/// What every GPU action needs: a valid form, a device (WebGPU, or the CPU) that passed its
/// self-test and a batch whose buffers fit it; else a message.
pub fn gpu_ready(job: &Job, place: Place) -> Option<(TrainConfig, Device)> {
    let (config, errors) = TrainConfig::from_pairs(job.form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if !errors.is_empty() {
        say(place, true, "Fix the highlighted settings first.");
        return None;
    }
    let (device, limit) = match compute_device() {
        Ok((device, limit)) => (device, binding_limit(limit)),
        Err(why) => {
            say(place, true, why);
            return None;
        }
    };
    let usable = with_engine(|e| e.selftest.as_ref().map(|r| r.as_ref().is_ok_and(|r| !r.usable_convs().is_empty())));
    if usable != Some(true) {
        say(place, true, "This GPU failed its self-test, so nothing runs on it (see the status above).");
        return None;
    }
    let mut config = config;
    split_batch(place, &mut config, limit).then_some((config, device))
}

/// Training and the LR finder need the data too.
pub fn ready(job: &Job, place: Place) -> Option<(TrainConfig, Device, Rc<Cifar10>)> {
    let (config, device) = gpu_ready(job, place)?;
    let Some(data) = with_engine(|e| e.data.clone()) else {
        say(place, true, "Load CIFAR-10 first.");
        return None;
    };
    Some((config, device, data))
}
