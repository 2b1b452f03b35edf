//! What bounds a pass: the storage-binding limit of the adapter (or the test-only one) and the
//! micro-batches a batch is split into to fit it.

use super::state::*;
use crate::config::TrainConfig;
use crate::web::protocol::{Place, Update};

/// Splits the batch into the fewest micro-batches whose largest buffer fits the device's
/// binding limit (`config.micro_batch`; gradients accumulate, one optimiser step per batch) and
/// says so in `micro-batch`; refuses (with the figures) only what does not fit as single images.
pub fn split_batch(place: Place, config: &mut TrainConfig, limit: Option<u64>) -> bool {
    let Some(limit) = limit else {
        config.micro_batch = None;
        emit(Update::Split(None));
        return true;
    };
    match crate::micro::micro_batches(config.batch_size, config.width, crate::model::conv_algorithm(), limit) {
        Ok(split) => {
            config.micro_batch = split.micro_batch();
            let device = if with_engine(|e| e.gpu.is_some()) { "this GPU" } else { "this device" };
            emit(Update::Split(config.micro_batch.map(|_| {
                format!("Batch {}: {device} allows {} MiB per binding (maxStorageBufferBindingSize); gradients of the passes add up to one optimiser step, BatchNorm normalises each pass with its own statistics.", split.summary(), limit >> 20)
            })));
            true
        }
        Err(e) => {
            emit(Update::Split(None));
            say(place, true, e);
            false
        }
    }
}

/// The storage-binding limit that bounds one buffer: the adapter's, lowered by the test-only
/// `?test_max_binding_mib=N` (on the CPU, which has none, that alone).
pub fn binding_limit(adapter: Option<u64>) -> Option<u64> {
    let test = with_engine(|e| e.options.max_binding_mib).map(|mib| mib << 20);
    match (adapter, test) {
        (Some(a), Some(t)) => Some(a.min(t)),
        (a, t) => a.or(t),
    }
}
