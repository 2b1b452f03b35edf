//! The automatic choice of the convolution algorithm (no `?conv=`): the one remembered for
//! this device, width and batch, or each usable one timed on a few steps.

use burn::prelude::*;

use super::device;
use super::host::*;
use super::limits::*;
use super::state::*;
use crate::config::TrainConfig;
use crate::conv_choice::choose_conv_within;
use crate::model::ConvAlgorithm;
use crate::train::TrainError;
use crate::web::protocol::{Job, Phase, Place, Update};

/// In auto mode, sets the fastest convolution algorithm for this GPU, width and batch: the one
/// the page remembers, or else each algorithm that passed the self-test and whose buffers fit
/// is timed on `train` (a few steps each; the phase shows "Measuring…" meanwhile). `false`:
/// the action should not go on (stopped, or nothing could be timed; the message says so).
pub async fn choose_conv_if_auto(
    job: &Job,
    config: &mut TrainConfig,
    device: &Device,
    train: &crate::data::Split,
) -> bool {
    if !with_engine(|e| e.conv_auto) {
        return true;
    }
    let (device_key, adapter_limit, usable) = with_engine(|e| {
        (
            match &e.gpu {
                Some(g) => g.key.clone(),
                None => device::cpu_key(),
            },
            e.gpu.as_ref().map(|g| g.max_storage_buffer_binding_size),
            e.selftest.as_ref().and_then(|r| r.as_ref().ok()).map(|r| r.usable_convs()).unwrap_or_default(),
        )
    });
    let limit = binding_limit(adapter_limit);
    let at = format!("width {}, batch {}", config.width, config.batch_size);
    let here = if adapter_limit.is_some() { "this GPU" } else { "the CPU" };
    let remembered = job
        .remembered_conv
        .as_ref()
        .and_then(|(name, summary)| Some((ConvAlgorithm::parse(name)?, summary.clone())))
        .filter(|(a, _)| usable.contains(a));
    if let Some((algorithm, summary)) = remembered {
        crate::model::set_conv_algorithm(algorithm);
        emit(Update::ConvChoice(format!(
            "Convolutions: {} (remembered for {here} at {at}: {summary})",
            algorithm.name()
        )));
        return split_batch(Place::Train, config, limit);
    }
    // Each algorithm is timed in the micro-batches its own buffers need under the binding
    // limit; one that cannot fit even single images is reported, not timed.
    let candidates = usable.clone();
    // A GPU kernel is named on the CPU (as not tried); our CPU kernels go unmentioned on a GPU.
    let excluded: String = ConvAlgorithm::ALL
        .iter()
        .filter(|a| !candidates.contains(a) && (a.available(device) || **a != ConvAlgorithm::Direct))
        .map(|a| {
            let why = if a.available(device) { "failed the self-test" } else { "a GPU kernel" };
            format!(" · {} not tried ({why})", a.name())
        })
        .collect();
    let names: Vec<&str> = candidates.iter().map(|a| a.name()).collect();
    emit(Update::ConvChoice(format!("Convolutions: timing {} on {here} at {at}…", names.join(", "))));
    set_phase(Phase::Benchmarking);
    match choose_conv_within(config, train, device, &candidates, limit, &mut WebHost).await {
        Ok(choice) => {
            if !split_batch(Place::Train, config, limit) {
                return false;
            }
            let summary = choice.summary() + &excluded;
            emit(Update::ConvChoice(format!("Convolutions: {summary} (timed on {here} at {at})")));
            emit(Update::ConvChosen {
                device_key,
                width: config.width,
                batch: config.batch_size,
                algorithm: choice.chosen.name().to_string(),
                summary,
            });
            true
        }
        Err(TrainError::Stopped) => {
            emit(Update::ConvChoice("Convolutions: timing stopped; the next Train or Benchmark times again".into()));
            say(Place::Train, false, "Stopped while timing the convolutions.");
            false
        }
        Err(e) => {
            emit(Update::ConvChoice(format!("Convolutions: could not be timed: {e}")));
            say(Place::Train, true, format!("Timing the convolutions failed: {e}"));
            false
        }
    }
}
