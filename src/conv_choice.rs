//! Automatic convolution choice: times a few warm training steps with each candidate
//! [`ConvAlgorithm`] on the device at the config's width and batch, and keeps the fastest.
//! The page (`?conv=auto`, the default) and the CLI (`--conv auto`) both call it, so the choice
//! is measured the same way everywhere. No UI knowledge here.

use burn::prelude::*;

use crate::bench::bench_steps;
use crate::config::TrainConfig;
use crate::data::Split;
use crate::micro::micro_batches;
use crate::model::{conv_algorithm, set_conv_algorithm, ConvAlgorithm};
use crate::train::{Control, Event, Host, Probe, TrainError};

/// Warm-up steps per candidate: kernel compilation and the first allocations happen here.
pub const WARMUP_STEPS: usize = 2;
/// Timed steps per candidate (after the warm-up).
pub const TIMED_STEPS: usize = 2;
/// A candidate still running after this many times the fastest so far's whole measurement
/// (warm-up + timed steps) is stopped: it cannot win by enough to matter, and it bounds the
/// choice's cost to about (1 + 3 x (candidates - 1)) times the fastest's measurement.
pub const CAP_FACTOR: f64 = 3.0;

/// The name under which a device's choice is remembered (the page keeps it in localStorage,
/// beside the width and batch): what the page can see of the device, so that one GPU's timing
/// is not reused on another. Browsers give `GPUAdapterInfo`'s vendor, architecture, device and
/// description where they choose to (Firefox gives none: every adapter is "unnamed"), and
/// always the adapter's limits and features, which differ between GPUs and drivers; those two
/// go in as a short hash of their text.
pub fn device_key(info: &[(&str, &str)], limits: &str, features: &str) -> String {
    let named: Vec<String> =
        info.iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, v)| format!("{k}={}", v.trim())).collect();
    format!("{} limits={:08x} features={:08x}", named.join(" "), fnv1a(limits), fnv1a(features)).trim().to_string()
}

/// 32-bit FNV-1a: short, stable across builds and platforms (std's hashers are neither).
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

/// One candidate's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub algorithm: ConvAlgorithm,
    /// Mean ms per timed step, or why the candidate has no figure.
    pub ms_per_step: Result<f64, String>,
}

/// What the choice measured and what it chose.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvChoice {
    pub width: f64,
    pub batch: usize,
    /// Every candidate, in the order timed.
    pub timings: Vec<Timing>,
    /// The fastest measured; now the process's algorithm.
    pub chosen: ConvAlgorithm,
}

impl ConvChoice {
    /// "burn 1,702 ms/step · im2col 11,406 · gemm 1,523 → gemm" (the same in the CLI and page).
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .timings
            .iter()
            .enumerate()
            .map(|(i, t)| match &t.ms_per_step {
                Ok(ms) => format!("{} {}{}", t.algorithm.name(), thousands(*ms), if i == 0 { " ms/step" } else { "" }),
                Err(why) => format!("{} ({why})", t.algorithm.name()),
            })
            .collect();
        format!("{} → {}", parts.join(" · "), self.chosen.name())
    }

    /// The measured ms/step of `algorithm`, if it was timed to the end.
    pub fn ms_per_step(&self, algorithm: ConvAlgorithm) -> Option<f64> {
        self.timings.iter().find(|t| t.algorithm == algorithm).and_then(|t| t.ms_per_step.clone().ok())
    }
}

/// Rounds to whole ms with thousands separators below 10 ms shown with one decimal.
fn thousands(ms: f64) -> String {
    if ms < 10.0 {
        return format!("{ms:.1}");
    }
    let digits = format!("{:.0}", ms);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Passes everything to the caller's host, and asks the benchmark to stop once `deadline_ms`
/// has passed (`capped` then says the stop was ours, not the user's).
struct Capped<'a, H: Host> {
    host: &'a mut H,
    deadline_ms: f64,
    capped: std::cell::Cell<bool>,
}

impl<H: Host> Host for Capped<'_, H> {
    fn now_ms(&self) -> f64 {
        self.host.now_ms()
    }
    fn control(&self) -> Control {
        match self.host.control() {
            Control::Stop => Control::Stop,
            _ if self.host.now_ms() > self.deadline_ms => {
                self.capped.set(true);
                Control::Stop
            }
            c => c,
        }
    }
    fn event(&mut self, event: Event) {
        self.host.event(event)
    }
    async fn yield_now(&mut self) {
        self.host.yield_now().await
    }
    async fn sleep_ms(&mut self, ms: u32) {
        self.host.sleep_ms(ms).await
    }
    fn device_failure(&mut self) -> Option<String> {
        self.host.device_failure()
    }
    fn probe(&mut self) -> Vec<Probe> {
        Vec::new()
    }
}

/// Times `WARMUP_STEPS + TIMED_STEPS` steps with each of `candidates` that runs on `device` (the
/// caller passes those that passed its self-test), in order, and sets the fastest with
/// [`set_conv_algorithm`]. A candidate still running `CAP_FACTOR` times the fastest so far's
/// whole measurement after it started is stopped and reported as such; one that fails (a
/// kernel refused by the device) is reported with its error. A user stop ends the choice with
/// `TrainError::Stopped` and leaves the algorithm as it was; so does an error when no candidate
/// could be timed. Every candidate steps in `config.micro_batch` passes as given.
pub async fn choose_conv<H: Host>(
    config: &TrainConfig,
    train: &Split,
    device: &Device,
    candidates: &[ConvAlgorithm],
    host: &mut H,
) -> Result<ConvChoice, TrainError> {
    choose_conv_within(config, train, device, candidates, None, host).await
}

/// [`choose_conv`] on a device whose storage bindings hold at most `limit` bytes (the
/// adapter's `maxStorageBufferBindingSize`): each candidate is timed in the micro-batches it
/// would train in (`micro::micro_batches`; im2col's 4.5x larger buffer can mean more passes
/// than the others need, and that cost is part of its time), or in `config.micro_batch`
/// passes where those are smaller. A candidate that cannot fit even one image is reported
/// with the figures, not timed. `None`: as [`choose_conv`].
pub async fn choose_conv_within<H: Host>(
    config: &TrainConfig,
    train: &Split,
    device: &Device,
    candidates: &[ConvAlgorithm],
    limit: Option<u64>,
    host: &mut H,
) -> Result<ConvChoice, TrainError> {
    let before = conv_algorithm();
    // The images the steps use, no more: the benchmark's normalisation pass over a whole
    // training set would cost more than the steps at small widths.
    let train = &train.take(config.batch_size * (WARMUP_STEPS + TIMED_STEPS));
    let mut timings = Vec::new();
    // (algorithm, ms/step, whole measurement in ms) of the fastest so far.
    let mut best: Option<(ConvAlgorithm, f64, f64)> = None;
    for &algorithm in candidates {
        if timings.iter().any(|t: &Timing| t.algorithm == algorithm) {
            continue;
        }
        if !algorithm.available(device) {
            timings.push(Timing { algorithm, ms_per_step: Err("not on this device".into()) });
            continue;
        }
        let split_config = match limit.map(|l| micro_batches(config.batch_size, config.width, algorithm, l)) {
            None => config.clone(),
            Some(Ok(split)) => {
                let most = match (split.micro_batch(), config.micro_batch) {
                    (Some(fit), Some(given)) => Some(fit.min(given)),
                    (fit, given) => fit.or(given),
                };
                config.clone().with_micro_batch(most)
            }
            Some(Err(why)) => {
                timings.push(Timing { algorithm, ms_per_step: Err(why) });
                continue;
            }
        };
        set_conv_algorithm(algorithm);
        let start = host.now_ms();
        let cap = best.map(|(_, _, total)| total * CAP_FACTOR);
        let mut capped = Capped { host: &mut *host, deadline_ms: cap.map_or(f64::INFINITY, |c| start + c), capped: std::cell::Cell::new(false) };
        let result = bench_steps(&split_config, train, device, WARMUP_STEPS, TIMED_STEPS, &mut capped).await;
        let was_capped = capped.capped.get();
        let total = host.now_ms() - start;
        let ms_per_step = match result {
            Ok(b) => Ok(b.ms_per_step),
            Err(TrainError::Stopped) if was_capped => {
                Err(format!("stopped after {}, over {CAP_FACTOR}x the fastest", seconds(total)))
            }
            Err(TrainError::Stopped) => {
                set_conv_algorithm(before);
                return Err(TrainError::Stopped);
            }
            Err(e) => Err(e.to_string()),
        };
        if let Ok(ms) = ms_per_step {
            if best.is_none_or(|(_, b, _)| ms < b) {
                best = Some((algorithm, ms, total));
            }
        }
        timings.push(Timing { algorithm, ms_per_step });
    }
    let Some((chosen, _, _)) = best else {
        set_conv_algorithm(before);
        let why: Vec<String> =
            timings.iter().map(|t| format!("{}: {}", t.algorithm.name(), t.ms_per_step.clone().err().unwrap_or_default())).collect();
        return Err(TrainError::Device(format!("no convolution algorithm could be timed ({})", why.join("; "))));
    };
    set_conv_algorithm(chosen);
    Ok(ConvChoice { width: config.width, batch: config.batch_size, timings, chosen })
}

fn seconds(ms: f64) -> String {
    format!("{:.1} s", ms / 1000.0)
}
