//! The engine's `Host` for the training loop, the LR finder and the benchmark: events become
//! updates, pause/stop come from the switch, GPU errors end a loop, the CPU's helpers share the
//! steps; and the test-only faults fired during a given epoch.

use std::rc::Rc;

use super::state::*;
use crate::model::ResNet9;
use crate::replicas::Helpers as _;
use crate::train::{Control, Event, Host};
use crate::web::protocol::{Phase, Update, GALLERY};

/// Reports engine events as updates.
pub struct WebHost;

impl Host for WebHost {
    fn now_ms(&self) -> f64 {
        crate::web::js::now_ms()
    }
    fn control(&self) -> Control {
        control().get()
    }
    fn event(&mut self, event: Event) {
        match event {
            Event::Started { schedule, steps_per_epoch, .. } => emit(Update::Schedule { schedule, steps_per_epoch }),
            Event::Batch(b) => {
                test_hooks(b.epoch + 1);
                emit(Update::Batch(b))
            }
            Event::Epoch(e) => {
                with_engine(|en| en.log.epochs.push(e.clone()));
                emit(Update::Epoch(e));
            }
            Event::Evaluated { evaluation, .. } => {
                let images: Vec<u8> = with_engine(|en| {
                    en.log.last_evaluation = Some(evaluation.clone());
                    let Some(data) = &en.data else { return Vec::new() };
                    evaluation
                        .mistakes
                        .iter()
                        .take(GALLERY)
                        .filter(|m| m.index < data.test.len())
                        .flat_map(|m| data.test.image(m.index).iter().copied())
                        .collect()
                });
                emit_with(Update::Evaluated(evaluation), vec![bytes(&images)]);
            }
            Event::LrPoint { lr, loss, .. } => emit(Update::LrPoint { lr, loss }),
            Event::Paused => set_phase(Phase::Paused),
            Event::Resumed => set_phase(Phase::Running),
        }
    }
    async fn yield_now(&mut self) {
        // A macrotask: commands (pause, stop) are handled between batches.
        gloo::timers::future::TimeoutFuture::new(0).await;
    }
    async fn sleep_ms(&mut self, ms: u32) {
        gloo::timers::future::TimeoutFuture::new(ms).await;
    }
    fn checkpoint(&mut self, model: &ResNet9) {
        with_engine(|e| e.model = Some(model.checkpoint()));
        emit(Update::Exportable(true));
    }
    fn device_failure(&mut self) -> Option<String> {
        gpu_failure()
    }
    fn probe(&mut self) -> Vec<crate::train::Probe> {
        let probes = crate::web::probe::read();
        if !probes.is_empty() {
            emit(Update::ProbeMark);
        }
        probes
    }
    fn helpers(&self) -> Option<Rc<dyn crate::replicas::Helpers>> {
        with_engine(|e| match (&e.gpu, &e.pool) {
            (None, Some(pool)) if pool.count() > 0 => Some(pool.clone() as Rc<dyn crate::replicas::Helpers>),
            _ => None,
        })
    }
}

/// An uncaptured GPU error since the last look (some GPU work did not run), shown with the
/// "Continue on a new device" action.
pub fn gpu_failure() -> Option<String> {
    let failure = format!("GPU error: {}", super::gpu::take_error()?);
    set_device_lost(Some(failure.clone()));
    Some(failure)
}

/// Test-only faults (URL parameters `test_lose_device`, `test_gpu_error`), each fired once, in
/// the epoch it names.
pub fn test_hooks(epoch: usize) {
    let (lose, error, gpu) = with_engine(|e| {
        let lose = e.options.lose_device_in_epoch == Some(epoch);
        let error = e.options.gpu_error_in_epoch == Some(epoch);
        if lose {
            e.options.lose_device_in_epoch = None;
        }
        if error {
            e.options.gpu_error_in_epoch = None;
        }
        (lose, error, e.gpu.clone())
    });
    if lose {
        log::warn!("test hook: destroying the GPU device during epoch {epoch}");
        gpu.as_ref().inspect(|g| super::gpu::destroy(g));
    }
    if error {
        log::warn!("test hook: an uncaptured GPU error during epoch {epoch}");
        gpu.as_ref().inspect(|g| super::gpu::provoke_error(g));
    }
}
