//! The GPU actions (train, benchmark, LR finder): run now, wait for the self-test, or say why
//! not; the one that waited runs once the self-test ends.

use super::bench::*;
use super::checks::*;
use super::lr::*;
use super::state::*;
use super::training::*;
use crate::web::protocol::{Command, Update};

/// Train, benchmark or LR finder: run now, wait for the self-test, or say why not.
pub fn gpu_action(command: Command) {
    if busy() {
        return;
    }
    let place = place_of(&command);
    let waiting = with_engine(|e| !e.gpu_settled || ((e.gpu.is_some() || e.cpu.is_some()) && e.selftest.is_none()));
    if waiting {
        let what = match command {
            Command::Train(_) => "Training",
            Command::Benchmark { .. } => "The benchmark",
            _ => "The LR finder",
        };
        with_engine(|e| e.waiting = Some(command));
        let test = if with_engine(|e| e.cpu.is_some()) { "CPU self-test" } else { "GPU self-test" };
        return say(place, false, format!("{what} starts as soon as the {test} passes…"));
    }
    match command {
        Command::Train(job) => start_training(job),
        Command::Benchmark { job, steps } => run_benchmark(job, steps),
        Command::FindLr { job, steps } => run_lr_finder(job, steps),
        _ => {}
    }
}

/// The GPU action that waited for the self-test: it runs, or is refused with the reason.
pub fn run_waiting() {
    if let Some(command) = with_engine(|e| e.waiting.take()) {
        emit(Update::Message { place: place_of(&command), message: None });
        gpu_action(command);
    }
}
