//! The Benchmark button: training steps timed at the form's width and batch, on the data or on
//! random images.

use wasm_bindgen_futures::spawn_local;

use super::checks::*;
use super::conv::*;
use super::host::*;
use super::state::*;
use crate::train::{Control, TrainError};
use crate::web::protocol::{Job, Phase, Place, Update};

/// Times training steps at the form's width and batch; on random images when no data is loaded.
pub fn run_benchmark(job: Job, steps: usize) {
    let Some((mut config, device)) = gpu_ready(&job, Place::Train) else { return };
    let data = with_engine(|e| e.data.clone());
    control().set(Control::Run);
    emit(Update::Bench(None));
    // A finished or stopped run keeps showing as such once the benchmark is done.
    let phase_before = phase();
    set_phase(Phase::Benchmarking);
    spawn_local(async move {
        let synthetic;
        let train = match &data {
            Some(d) => &d.train,
            None => {
                synthetic = crate::bench::synthetic_split(config.batch_size * 4, config.seed);
                &synthetic
            }
        };
        if !choose_conv_if_auto(&job, &mut config, &device, train).await {
            set_phase(phase_before);
            return;
        }
        set_phase(Phase::Benchmarking);
        let r = crate::bench::bench_steps(&config, train, &device, 5, steps, &mut WebHost).await;
        emit(Update::Bench(Some(match r {
            Ok(mut b) => {
                b.synthetic = data.is_none();
                Ok(b)
            }
            Err(TrainError::Stopped) => Err("Benchmark stopped.".into()),
            Err(e) => Err(format!("Benchmark failed: {e}")),
        })));
        set_phase(phase_before);
    });
}
