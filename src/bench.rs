//! Step benchmark: times the recipe's training step (augment, upload, forward, backward, Nesterov
//! update) on whatever device it is given. The CLI's `--bench` and the page's Benchmark button
//! both call it, so native and browser figures measure the same work.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::{self, Augment, Normalization};
use crate::config::TrainConfig;
use crate::data::{Split, IMAGE_BYTES};
use crate::model::ResNet9;
use crate::optim::NesterovSgd;
use crate::tricks::Objective;
use crate::train::{backward_on, device_error, proceed, Host, Probe, TrainError};

/// What one benchmark measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepBench {
    pub width: f64,
    pub batch: usize,
    /// The most images a pass took (`TrainConfig::micro_batch`; None: the whole batch).
    #[serde(default)]
    pub micro_batch: Option<usize>,
    /// Timed steps (after the warm-up).
    pub steps: usize,
    /// Warm-up steps: kernel compilation and autotuning happen here.
    pub warmup_steps: usize,
    /// Wall time of the warm-up, ms.
    pub warmup_ms: f64,
    /// Mean wall time of a timed step, ms (the device is drained before and after).
    pub ms_per_step: f64,
    pub images_per_sec: f64,
    /// Host time spent building batches (crop, flip, cutout, normalise), ms per step.
    pub prep_ms_per_step: f64,
    /// Host (CPU) time of a step outside any wait on the GPU, ms: batch building, upload,
    /// recording forward, backward and update (burn's graph, fusion, kernel launches). On a
    /// real GPU the step cannot be faster than this; in the page it is the wasm's own cost.
    #[serde(default)]
    pub host_ms_per_step: f64,
    /// The host's own counters over the timed steps (the page with `?count_gpu_calls=1`:
    /// WebGPU dispatches, submits, bind groups per step, its longest main-thread task in ms).
    #[serde(default)]
    pub probes: Vec<(String, f64)>,
    /// How the convolutions were computed.
    pub conv: String,
    /// Whether the images were random bytes (no data set loaded).
    pub synthetic: bool,
    /// Replicas that shared each step (the CPU's workers; 1: this thread alone).
    #[serde(default = "one")]
    pub workers: usize,
    /// Where a step's time went across the workers, per timed step.
    #[serde(default)]
    pub replicas: Option<crate::replicas::step::StepTimes>,
}

fn one() -> usize {
    1
}

impl StepBench {
    /// One line, the same in the CLI and the page.
    pub fn summary(&self) -> String {
        format!(
            "{:.1} ms/step · {:.prec$} images/s · CPU {:.1} ms/step · width {} · batch {} · conv {} · {} steps after {} warm-up ({:.1} s){}",
            self.ms_per_step,
            self.images_per_sec,
            self.host_ms_per_step,
            self.width,
            crate::micro::split_summary(self.batch, self.micro_batch),
            self.conv,
            self.steps,
            self.warmup_steps,
            self.warmup_ms / 1000.0,
            if self.synthetic { " · synthetic images" } else { "" },
            prec = if self.images_per_sec < 100.0 { 1 } else { 0 }
        ) + &self.probes.iter().map(|(name, value)| format!(" · {name} {value:.1}")).collect::<String>()
            + &self.replicas.as_ref().map(|r| format!(" · {}", r.summary())).unwrap_or_default()
    }
}

/// Random images and labels: lets the page measure a GPU before any data is loaded (the step
/// does the same work whatever the pixels are).
pub fn synthetic_split(n: usize, seed: u64) -> Split {
    use rand::Rng;
    let mut rng = augment::rng(seed, 77);
    let mut images = vec![0u8; n * IMAGE_BYTES];
    rng.fill(&mut images[..]);
    let labels = (0..n).map(|_| rng.random_range(0..10u8)).collect();
    Split { images, labels }
}

/// Runs `warmup + steps` training steps of a fresh model at the config's width and batch and
/// times the last `steps`. Reads back once after the warm-up and once at the end, so queued
/// work is counted where it runs. Stops early (with `TrainError::Stopped`) when the host asks.
pub async fn bench_steps<H: Host>(
    config: &TrainConfig,
    train: &Split,
    device: &Device,
    warmup: usize,
    steps: usize,
    host: &mut H,
) -> Result<StepBench, TrainError> {
    config.validate().map_err(TrainError::Invalid)?;
    if train.is_empty() || steps == 0 {
        return Err(TrainError::Invalid("the benchmark needs images and at least one step".into()));
    }
    let device = device.clone().autodiff();
    let mut model = ResNet9::seeded(config.width, config.seed, &device);
    // The step's cost does not depend on the momentum: the recipe's base value, held fixed.
    let (mut optim, _) = NesterovSgd::init(config.base_momentum, config.weight_decay);
    let norm = Normalization::from_split(train);
    let objective = Objective::new(config, &model, &device);
    let aug = Augment { cutout: config.cutout, ..Augment::FULL };
    let mut rng = augment::rng(config.seed, 5);
    let lr = config.max_lr * 0.1;

    let start = host.now_ms();
    let mut timed_start = start;
    let mut warmup_ms = 0.0;
    let mut prep_ms = 0.0;
    let mut host_ms = 0.0;
    let mut probes_start = Vec::new();
    let mut replica_times: Option<crate::replicas::step::StepTimes> = None;
    for step in 0..warmup + steps {
        proceed(host)?;
        if step == warmup {
            // Drain the queue so the timed steps start from an idle device.
            drain(model.fc.weight.val()).await?;
            timed_start = host.now_ms();
            warmup_ms = timed_start - start;
            prep_ms = 0.0;
            host_ms = 0.0;
            probes_start = host.probe();
        }
        let prep_start = host.now_ms();
        let indices: Vec<usize> =
            (0..config.batch_size).map(|i| (step * config.batch_size + i) % train.len()).collect();
        let batch = augment::make_batch(train, &indices, aug, &norm, &mut rng);
        prep_ms += host.now_ms() - prep_start;
        // Split as training splits it: the step timed is the step trained (over the CPU's
        // workers too, when the host has them).
        let (_, _, _, grads, stepped, times) = backward_on(&objective, model, batch, config, step, host, &device).await?;
        model = stepped;
        if let Some(times) = times.filter(|_| step >= warmup) {
            replica_times.get_or_insert_with(Default::default).add(&times);
        }
        model = optim.step(lr, model, objective.adjust(grads));
        // Everything above ran on this thread without waiting for the GPU: nothing is read.
        host_ms += host.now_ms() - prep_start;
        host.yield_now().await;
    }
    // The last update of the classifier depends on the whole last backward pass.
    drain(model.fc.weight.val()).await?;
    let elapsed = (host.now_ms() - timed_start).max(1e-3);
    let probes = per_step(&probes_start, &host.probe(), steps);
    Ok(StepBench {
        width: config.width,
        batch: config.batch_size,
        micro_batch: config.micro_batch,
        steps,
        warmup_steps: warmup,
        warmup_ms,
        ms_per_step: elapsed / steps as f64,
        images_per_sec: (steps * config.batch_size) as f64 / (elapsed / 1000.0),
        prep_ms_per_step: prep_ms / steps as f64,
        host_ms_per_step: host_ms / steps as f64,
        probes,
        conv: format!("{:?}", crate::model::conv_algorithm()).to_lowercase(),
        synthetic: false,
        workers: replica_times.as_ref().map_or(1, |t| t.replicas),
        replicas: replica_times.map(|t| t.per_step(steps)),
    })
}

/// The growth of each running total per step, and each maximum as read at the end.
fn per_step(start: &[Probe], end: &[Probe], steps: usize) -> Vec<(String, f64)> {
    end.iter()
        .map(|p| {
            let before = start.iter().find(|s| s.name == p.name).map_or(0.0, |s| s.value);
            let value = if p.total { (p.value - before) / steps as f64 } else { p.value };
            (p.name.to_string(), value)
        })
        .collect()
}

/// Waits until `t` (and all the work queued before it) is computed, by reading it back and
/// touching the bytes: natively `into_data_async` is lazy (cubecl's `read_lazy_async` copies
/// on first access), so a read whose bytes are never touched waits for nothing and a clock
/// would stop at the launch. In the browser the read itself waits.
async fn drain<const D: usize>(t: Tensor<D>) -> Result<(), TrainError> {
    t.into_data_async().await.map_err(device_error)?.try_to_vec::<f32>().map_err(device_error)?;
    Ok(())
}

/// One pass of one convolution layer, timed with one algorithm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerBench {
    /// `c_in->c_out@side` (e.g. `64->128@32`).
    pub layer: String,
    /// `forward`, `input gradient` or `weight gradient`.
    pub pass: String,
    pub conv: String,
    pub batch: usize,
    /// Mean wall time of the pass and one read-back of its sum, ms (a gradient's clock starts
    /// once the forward pass has been read back).
    pub ms: f64,
    /// 2 x batch x side^2 x c_out x c_in x 9 over `ms`.
    pub gflops: f64,
}

impl LayerBench {
    pub fn summary(&self) -> String {
        format!("{:<14} {:<15} {:<7} batch {:>4}: {:>9.2} ms  {:>9.2} GFLOP/s", self.layer, self.pass, self.conv, self.batch, self.ms, self.gflops)
    }
}

/// The ResNet-9's distinct 3x3 convolutions at `width`: (c_in, c_out, side), one per shape.
pub fn layer_shapes(width: f64) -> Vec<(usize, usize, usize)> {
    let [c0, c1, c2, c3] = crate::model::channels(width);
    vec![(3, c0, 32), (c0, c1, 32), (c1, c1, 16), (c1, c2, 16), (c2, c3, 8), (c3, c3, 4)]
}

/// Times each layer shape's forward pass, input gradient and weight gradient with each of
/// `algorithms` (`reps` timed repetitions after one warm-up), reading back once per timing
/// so queued work is counted. The gradients come from burn's autodiff with only the input
/// (or only the weight) tracked, timed from the forward pass's read-back.
pub async fn bench_layers<H: Host>(
    algorithms: &[crate::model::ConvAlgorithm],
    width: f64,
    batch: usize,
    reps: usize,
    device: &Device,
    host: &mut H,
) -> Result<Vec<LayerBench>, TrainError> {
    use crate::model::conv3x3_with;
    let device = device.clone().autodiff();
    let reps = reps.max(1);
    let mut out = Vec::new();
    for (c_in, c_out, side) in layer_shapes(width) {
        let x = Tensor::<4>::random([batch, c_in, side, side], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<4>::random([c_out, c_in, 3, 3], burn::tensor::Distribution::Normal(0.0, 0.1), &device);
        let flops = 2.0 * (batch * side * side * c_out * c_in * 9) as f64;
        for &algorithm in algorithms {
            // 0: forward only; 1: input gradient; 2: weight gradient.
            let mut ms = [0.0f64; 3];
            for (pass, slot) in ms.iter_mut().enumerate() {
                let mut total = 0.0;
                for rep in 0..=reps {
                    proceed(host)?;
                    let (xi, wi) = match pass {
                        1 => (x.clone().detach().require_grad(), w.clone().detach()),
                        2 => (x.clone().detach(), w.clone().detach().require_grad()),
                        _ => (x.clone().detach(), w.clone().detach()),
                    };
                    // An eager backend (flex) computes here, a lazy one (cubecl) at the read.
                    let mut start = host.now_ms();
                    let y = conv3x3_with(algorithm, xi.clone(), wi.clone()).sum();
                    if pass == 0 {
                        drain(y).await?;
                    } else {
                        // The forward pass first, untimed: the clock covers the backward only.
                        drain(y.clone()).await?;
                        start = host.now_ms();
                        let grads = y.backward();
                        let g = if pass == 1 { xi.grad(&grads) } else { wi.grad(&grads) };
                        match g {
                            Some(g) => drain(g.sum()).await?,
                            None => return Err(TrainError::Invalid("no gradient for the layer benchmark".into())),
                        }
                    }
                    // The first repetition compiles the kernels.
                    if rep > 0 {
                        total += host.now_ms() - start;
                    }
                    host.yield_now().await;
                }
                *slot = total / reps as f64;
            }
            let passes = [("forward", ms[0]), ("input gradient", ms[1]), ("weight gradient", ms[2])];
            for (pass, t) in passes {
                let t = t.max(1e-3);
                out.push(LayerBench {
                    layer: format!("{c_in}->{c_out}@{side}"),
                    pass: pass.into(),
                    conv: algorithm.name().into(),
                    batch,
                    ms: t,
                    gflops: flops / (t * 1e6),
                });
            }
        }
    }
    Ok(out)
}
