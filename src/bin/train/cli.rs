//! Native CLI: trains the recipe, prints the seed's log, writes weights and metrics; with
//! `--bench N` it times the training step instead.

use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;
use cifar10_webgpu::bench::bench_steps;
use cifar10_webgpu::conv_choice::choose_conv;
use cifar10_webgpu::config::{TrainConfig, RECIPES};
use cifar10_webgpu::data;
use cifar10_webgpu::lr_finder::{find_lr, LrFinderConfig};
use cifar10_webgpu::metrics::{crossings_summary, EpochStats};
use cifar10_webgpu::model::{set_conv_algorithm, ConvAlgorithm};
use cifar10_webgpu::replicas::threads::ThreadHelpers;
use cifar10_webgpu::replicas::Helpers;
use cifar10_webgpu::train::{Control, Event, Host, TrainError, Trainer};
use cifar10_webgpu::weights;

const USAGE: &str = "usage: train --data <cifar-10-binary.tar.gz | folder>
  [--recipe seed|fast]  (a preset; the flags below override it)
  [--logit-scale 1] [--label-smoothing 0] [--alternating-flip 0|1] [--bn-freeze-scale 0|1]
  [--bn-bias-lr 1] [--lookahead 0|1] [--tta 0|1|2]  (the fast preset's tricks, see README)
  [--epochs 24] [--batch 512] [--max-lr 0.055] [--peak-epoch 5] [--weight-decay 5e-4]
  [--no-cutout] [--width 1.0] [--train-subset N] [--test-subset N] [--seed S]
  [--backend flex|wgpu|vulkan] [--out DIR] [--lr-find] [--bench N] [--read-every N]
  [--gpu-memory]  (query nvidia-smi after each epoch)
  [--max-minutes M]  (stop after the epoch that crosses M minutes)
  [--save-state DIR]  (after every epoch: weights, momentum and position, for --resume)
  [--resume DIR]  (go on from a saved state; the recipe comes from it)
  [--micro-batch N]  (at most N images a forward/backward pass: a bigger batch trains as the
                     fewest equal micro-batches, gradients summed into one step; for GPUs whose
                     buffers cannot hold the batch; may change on --resume)
  [--cpu-replicas N]  (flex only: N replicas of the model on N threads share each batch and
                     evaluation, gradients summed into one step, as micro-batches of
                     ceil(batch / N) on one thread; 1: this thread alone)
  [--conv burn|im2col|gemm|direct|auto]  (how the 3x3 convolutions are computed; same results; gemm: wgpu/vulkan only;
                             direct: our blocked CPU kernels, flex only;
                             auto: time a few steps with each on the device first and keep the fastest)
   or: train --self-test [--backend flex|wgpu|vulkan]
  (every operation training uses, on the device, against a CPU reference)
   or: train --bench-layers [--backend flex|wgpu|vulkan] [--width 1] [--batch 512] [--reps 3]
  (each ResNet-9 convolution's forward pass and both gradients, with every algorithm the
  device runs: ms and GFLOP/s)
   or: train --fuzz N [--fuzz-seed S] [--fuzz-only NAME] [--sample DIR]
  (N mutated cases per file parser; DIR holds train_2000.bin, test_500.bin, batches.meta.txt)";

/// Flags that set the recipe, which a resumed run must not change.
const RECIPE_FLAGS: [&str; 19] = [
    "--epochs", "--batch", "--max-lr", "--peak-epoch", "--weight-decay", "--no-cutout", "--width",
    "--train-subset", "--test-subset", "--seed", "--read-every", "--recipe", "--logit-scale",
    "--label-smoothing", "--alternating-flip", "--bn-freeze-scale", "--bn-bias-lr", "--lookahead", "--tta",
];

/// The trick flags and the config field each sets (through `TrainConfig::set_field`, so the
/// CLI, the form and the URL accept the same values).
const TRICK_FLAGS: [(&str, &str); 7] = [
    ("--logit-scale", "logit_scale"),
    ("--label-smoothing", "label_smoothing"),
    ("--alternating-flip", "alternating_flip"),
    ("--bn-freeze-scale", "bn_freeze_scale"),
    ("--bn-bias-lr", "bn_bias_lr"),
    ("--lookahead", "lookahead"),
    ("--tta", "tta"),
];

struct Args {
    data: PathBuf,
    config: TrainConfig,
    backend: String,
    out: PathBuf,
    lr_find: bool,
    bench: Option<usize>,
    gpu_memory: bool,
    max_minutes: Option<f64>,
    save_state: Option<PathBuf>,
    resume: Option<PathBuf>,
    /// `--conv auto`: time each algorithm on the device before the run.
    auto_conv: bool,
    /// `--micro-batch N`, kept apart from `config` because it also applies to a resumed run.
    micro_batch: Option<usize>,
    /// `--cpu-replicas N`: replicas on N threads (the main one and N - 1 helpers).
    cpu_replicas: usize,
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The preset first, wherever it stands, so every other flag overrides it.
    let mut c = match args.iter().position(|a| a == "--recipe") {
        Some(i) => {
            let name = args.get(i + 1).ok_or("--recipe needs a value")?;
            TrainConfig::preset(name).ok_or(format!("--recipe takes {}, not {name}", RECIPES.join(" or ")))?
        }
        None => TrainConfig::new(),
    };
    let mut it = args.into_iter();
    let mut data = None;
    let mut backend = "flex".to_string();
    let mut out = PathBuf::from("target/run");
    let (mut lr_find, mut bench, mut gpu_memory, mut max_minutes) = (false, None, false, None);
    let mut peak_given = false;
    let mut auto_conv = false;
    let mut micro_batch = None;
    let mut cpu_replicas = 1;
    let (mut save_state, mut resume, mut recipe_flag) = (None, None, None);
    fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        v.ok_or(format!("{flag} needs a value"))?
            .parse()
            .map_err(|_| format!("{flag}: not a valid number"))
    }
    while let Some(a) = it.next() {
        if RECIPE_FLAGS.contains(&a.as_str()) {
            recipe_flag = Some(a.clone());
        }
        match a.as_str() {
            "--data" => data = it.next().map(PathBuf::from),
            "--recipe" => {
                it.next();
            }
            flag if TRICK_FLAGS.iter().any(|(f, _)| *f == flag) => {
                let key = TRICK_FLAGS.iter().find(|(f, _)| *f == flag).map_or("", |(_, k)| *k);
                let value = it.next().ok_or(format!("{flag} needs a value"))?;
                c.set_field(key, &value).map_err(|e| format!("{flag}: {e}"))?;
            }
            "--epochs" => c.epochs = num(&a, it.next())?,
            "--batch" => c.batch_size = num(&a, it.next())?,
            "--max-lr" => c.max_lr = num(&a, it.next())?,
            "--peak-epoch" => {
                c.peak_epoch = num(&a, it.next())?;
                peak_given = true;
            }
            "--weight-decay" => c.weight_decay = num(&a, it.next())?,
            "--no-cutout" => c.cutout = false,
            "--width" => c.width = num(&a, it.next())?,
            "--train-subset" => c.train_subset = Some(num(&a, it.next())?),
            "--test-subset" => c.test_subset = Some(num(&a, it.next())?),
            "--seed" => c.seed = num(&a, it.next())?,
            "--read-every" => c.read_every = num(&a, it.next())?,
            "--micro-batch" => {
                let n: usize = num(&a, it.next())?;
                if n == 0 {
                    return Err("--micro-batch must be at least 1".into());
                }
                micro_batch = Some(n);
            }
            "--cpu-replicas" => {
                cpu_replicas = num(&a, it.next())?;
                if cpu_replicas == 0 {
                    return Err("--cpu-replicas must be at least 1".into());
                }
            }
            "--backend" => backend = it.next().ok_or("--backend needs a value")?,
            "--out" => out = it.next().map(PathBuf::from).ok_or("--out needs a value")?,
            "--lr-find" => lr_find = true,
            "--bench" => bench = Some(num(&a, it.next())?),
            "--gpu-memory" => gpu_memory = true,
            "--max-minutes" => max_minutes = Some(num(&a, it.next())?),
            "--save-state" => save_state = Some(it.next().map(PathBuf::from).ok_or("--save-state needs a folder")?),
            "--resume" => resume = Some(it.next().map(PathBuf::from).ok_or("--resume needs a folder")?),
            "--conv" => match it.next().as_deref() {
                Some("auto") => auto_conv = true,
                name => match name.and_then(ConvAlgorithm::parse) {
                    Some(algorithm) => {
                        auto_conv = false;
                        set_conv_algorithm(algorithm)
                    }
                    None => return Err("--conv takes burn, im2col, gemm, direct or auto".into()),
                },
            },
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if cpu_replicas > 1 && backend != "flex" {
        return Err(format!("--cpu-replicas splits the batch over CPU threads: it needs --backend flex, not {backend}"));
    }
    if let (Some(_), Some(flag)) = (&resume, &recipe_flag) {
        return Err(format!("{flag} cannot change a resumed run: --resume takes the recipe from the saved state"));
    }
    if !peak_given {
        // Keep the recipe's proportion (peak at 5 of 24) when only the length changes.
        c.peak_epoch = TrainConfig::scaled_peak(c.epochs);
    }
    c.micro_batch = micro_batch.or(c.micro_batch);
    c.validate()?;
    Ok(Args {
        data: data.ok_or(format!("--data is required\n{USAGE}"))?,
        config: c,
        backend,
        out,
        lr_find,
        bench,
        gpu_memory,
        max_minutes,
        save_state,
        resume,
        auto_conv,
        micro_batch,
        cpu_replicas,
    })
}

fn device(backend: &str) -> Result<Device, String> {
    match backend {
        "flex" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu_options().init().map_err(|e| format!("wgpu init failed: {e}")),
        // Pinned to Vulkan, which lets burn compile its kernels to SPIR-V.
        #[cfg(feature = "wgpu")]
        "vulkan" => Device::wgpu_options()
            .graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan)
            .init()
            .map_err(|e| format!("Vulkan init failed: {e}")),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" | "vulkan" => Err("this binary was built without the `wgpu` feature (cargo build --features wgpu)".into()),
        other => Err(format!("unknown backend {other} (flex, wgpu or vulkan)")),
    }
}

fn gpu_memory_mib() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

struct CliHost {
    start: Instant,
    gpu_memory: bool,
    deadline: Option<f64>,
    stop: bool,
    /// Helper threads of `--cpu-replicas`.
    helpers: Option<std::rc::Rc<ThreadHelpers>>,
}

impl Host for CliHost {
    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }
    fn control(&self) -> Control {
        if self.stop { Control::Stop } else { Control::Run }
    }
    fn event(&mut self, event: Event) {
        match event {
            Event::Started { parameters, steps_per_epoch, schedule } => {
                println!(
                    "parameters {parameters}, {steps_per_epoch} steps/epoch, {} steps, max lr {}",
                    schedule.total_steps, schedule.max_lr
                );
                println!("{}", EpochStats::HEADER);
            }
            Event::Epoch(e) => {
                let mem = if self.gpu_memory {
                    gpu_memory_mib().map(|m| format!("  gpu_mem_mib {m}")).unwrap_or_default()
                } else {
                    String::new()
                };
                println!("{}{mem}", e.log_line());
                if let Some(d) = self.deadline {
                    if self.now_ms() > d {
                        println!("time budget reached after epoch {}", e.epoch);
                        self.stop = true;
                    }
                }
            }
            Event::LrPoint { step, lr, loss } if step % 20 == 0 => {
                println!("lr-find step {step:>4}  lr {lr:.2e}  smoothed loss {loss:.4}");
            }
            _ => {}
        }
    }
    async fn yield_now(&mut self) {}
    async fn sleep_ms(&mut self, ms: u32) {
        std::thread::sleep(std::time::Duration::from_millis(ms as u64));
    }
    fn helpers(&self) -> Option<std::rc::Rc<dyn Helpers>> {
        self.helpers.clone().map(|h| h as std::rc::Rc<dyn Helpers>)
    }
}

/// Trains epoch by epoch until done or out of time, saving the state after each epoch.
fn train_epochs(
    trainer: &mut Trainer,
    data: &data::Cifar10,
    host: &mut CliHost,
    save_state: Option<&std::path::Path>,
) -> Result<(), TrainError> {
    let data = data.subset(trainer.config.train_subset, trainer.config.test_subset);
    trainer.announce(host);
    while !trainer.finished() {
        if host.stop {
            return Err(TrainError::Stopped);
        }
        pollster::block_on(trainer.run_epoch(&data, host))?;
        if let Some(dir) = save_state {
            let t = Instant::now();
            trainer.save_state(dir).map_err(TrainError::Invalid)?;
            println!("state saved to {} in {:.1}s", dir.display(), t.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

fn run() -> Result<(), String> {
    match std::env::args().nth(1).as_deref() {
        Some("--fuzz") => return fuzz(),
        Some("--self-test") => return self_test(),
        Some("--bench-layers") => return bench_layers(),
        _ => {}
    }
    let args = parse_args()?;
    // The device first: a backend that cannot run the chosen convolution fails before the data
    // is read.
    let device = device(&args.backend)?;
    let conv = cifar10_webgpu::model::conv_algorithm();
    if !conv.available(&device) {
        let needs = if conv == ConvAlgorithm::Direct { "the CPU backend (--backend flex)" } else { "a CubeCL backend (--backend wgpu or vulkan)" };
        return Err(format!("--conv {} needs {needs}, not {}", conv.name(), args.backend));
    }
    if conv == ConvAlgorithm::Direct {
        println!("direct kernels on {:?} (x86-64 levels: V4 AVX-512, V3 AVX2 + FMA, V2 SSE4.2; CIFAR10_SIMD picks a lower one)", cifar10_webgpu::kernels::direct::arch());
    }
    let t = Instant::now();
    let data = data::load_path(&args.data).map_err(|e| e.to_string())?;
    println!(
        "data: {} train, {} test, parsed in {:.2}s",
        data.train.len(),
        data.test.len(),
        t.elapsed().as_secs_f64()
    );
    let mut host = CliHost {
        start: Instant::now(),
        gpu_memory: args.gpu_memory,
        deadline: args.max_minutes.map(|m| m * 60_000.0),
        stop: false,
        helpers: (args.cpu_replicas > 1).then(|| std::rc::Rc::new(ThreadHelpers::start(args.cpu_replicas - 1, &device))),
    };
    if args.cpu_replicas > 1 {
        println!("{} replicas on CPU threads share each batch (slices of at least {} images)", args.cpu_replicas, cifar10_webgpu::replicas::MIN_SLICE);
    }
    if args.auto_conv {
        let candidates = ConvAlgorithm::available_on(&device);
        let choice = pollster::block_on(choose_conv(&args.config, &data.train, &device, &candidates, &mut host))
            .map_err(|e| format!("--conv auto: {e}"))?;
        println!(
            "conv auto: {} (timed on {} at width {}, batch {})",
            choice.summary(),
            args.backend,
            choice.width,
            choice.batch
        );
    }
    if let Some(steps) = args.bench {
        let r = pollster::block_on(bench_steps(&args.config, &data.train, &device, 3, steps, &mut host))
            .map_err(|e| e.to_string())?;
        println!(
            "bench backend={} {} (batch preparation {:.1} ms/step)",
            args.backend,
            r.summary(),
            r.prep_ms_per_step
        );
        return Ok(());
    }
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    if args.lr_find {
        let result = pollster::block_on(find_lr(
            &args.config,
            &LrFinderConfig::default(),
            &data,
            &device,
            &mut host,
        ))
        .map_err(|e| e.to_string())?;
        println!(
            "lr-find: steepest {:?}, min/10 {:?}, suggestion {:?}",
            result.steepest,
            result.min_over_10,
            result.suggestion()
        );
        let path = args.out.join("lr_find.json");
        std::fs::write(&path, serde_json::to_string_pretty(&result).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let mut trainer = match &args.resume {
        Some(dir) => {
            let mut t = Trainer::resume(dir, &data, &device)?;
            if args.micro_batch.is_some() {
                t.set_micro_batch(args.micro_batch).map_err(|e| e.to_string())?;
            }
            println!("resumed from {} after epoch {} (step {})", dir.display(), t.epoch, t.step);
            t
        }
        None => Trainer::new(args.config.clone(), &data, &device).map_err(|e| e.to_string())?,
    };
    if let Some(most) = trainer.config.micro_batch.filter(|&m| m < trainer.config.batch_size) {
        let split = cifar10_webgpu::micro::split_summary(trainer.config.batch_size, Some(most));
        println!("batch {split}: gradients of the micro-batches summed into one step (--micro-batch {most})");
    }
    let outcome = train_epochs(&mut trainer, &data, &mut host, args.save_state.as_deref());
    match &outcome {
        Err(TrainError::Stopped) if trainer.epoch < trainer.config.epochs => {
            println!("stopped after epoch {} of {}", trainer.epoch, trainer.config.epochs);
        }
        Err(e) => {
            println!("training ended early: {e}");
            trainer.log.notes.push(e.to_string());
        }
        Ok(()) => {}
    }
    println!("test accuracy first reached: {}", crossings_summary(&trainer.log.epochs));
    let model = if outcome.is_ok() || trainer.epoch > 0 { &trainer.last_good } else { &trainer.model };
    let snap = pollster::block_on(weights::snapshot(model)).map_err(|e| e.to_string())?;
    let bpk = snap.to_burnpack().map_err(|e| e.to_string())?;
    let st = snap.to_safetensors().map_err(|e| e.to_string())?;
    std::fs::write(args.out.join("resnet9.bpk"), bpk).map_err(|e| e.to_string())?;
    std::fs::write(args.out.join("resnet9.safetensors"), st).map_err(|e| e.to_string())?;
    std::fs::write(
        args.out.join("metrics.json"),
        serde_json::to_string_pretty(&trainer.log).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(args.out.join("metrics.csv"), trainer.log.to_csv()).map_err(|e| e.to_string())?;
    println!("wrote {}/resnet9.bpk, resnet9.safetensors, metrics.json, metrics.csv", args.out.display());
    match outcome {
        Ok(()) | Err(cifar10_webgpu::train::TrainError::Stopped) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

pub fn main() {
    if let Err(e) = run() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

/// `train --self-test`: the GPU self-test of the page (src/selftest.rs) on a native backend.
/// Exits non-zero when any check fails.
fn self_test() -> Result<(), String> {
    use cifar10_webgpu::selftest::{run, Fault};
    let mut it = std::env::args().skip(2);
    let mut backend = "flex".to_string();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => backend = it.next().ok_or("--backend needs a value")?,
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let device = device(&backend)?;
    let t = Instant::now();
    let report = pollster::block_on(run(&device, &Fault::default()))?;
    for c in &report.checks {
        println!("{:<32} relative error {:.1e}  {}", c.name, c.error, if c.passed() { "ok" } else { "FAILED" });
    }
    println!("{} ({:.2}s)", report.summary(&backend), t.elapsed().as_secs_f64());
    if report.passed() { Ok(()) } else { Err("self-test failed".into()) }
}

/// `train --bench-layers`: per-layer, per-pass figures of every convolution algorithm.
fn bench_layers() -> Result<(), String> {
    let mut it = std::env::args().skip(2);
    let (mut backend, mut width, mut batch, mut reps) = ("flex".to_string(), 1.0f64, 512usize, 3usize);
    while let Some(a) = it.next() {
        let value = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        let bad = format!("{a}: {value} is not a valid value");
        match a.as_str() {
            "--backend" => backend = value,
            "--width" => width = value.parse().map_err(|_| bad)?,
            "--batch" => batch = value.parse().map_err(|_| bad)?,
            "--reps" => reps = value.parse().map_err(|_| bad)?,
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !(width > 0.0 && width <= 4.0) || batch == 0 {
        return Err("--width must be in (0, 4] and --batch at least 1".into());
    }
    let device = device(&backend)?;
    let algorithms = ConvAlgorithm::available_on(&device);
    let mut host = CliHost { start: Instant::now(), gpu_memory: false, deadline: None, stop: false, helpers: None };
    let rows = pollster::block_on(cifar10_webgpu::bench::bench_layers(&algorithms, width, batch, reps, &device, &mut host))
        .map_err(|e| e.to_string())?;
    for r in rows {
        println!("layer backend={backend} {}", r.summary());
    }
    Ok(())
}

/// `train --fuzz N`: the seeded mutation fuzzer over every file parser (src/fuzz.rs), with
/// cases/s, failures and peak memory per parser. Exits non-zero on any failure.
fn fuzz() -> Result<(), String> {
    use cifar10_webgpu::fuzz::{Fuzzer, Parser};
    let mut it = std::env::args().skip(2);
    let cases: u64 = it.next().and_then(|n| n.parse().ok()).ok_or("--fuzz needs a number of cases")?;
    let (mut seed, mut only, mut sample) = (1u64, None, None);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--fuzz-seed" => seed = it.next().and_then(|s| s.parse().ok()).ok_or("--fuzz-seed needs a number")?,
            "--fuzz-only" => only = it.next(),
            "--sample" => sample = it.next().map(PathBuf::from),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    // The real sample files, where the tests find them.
    let sample = sample
        .or_else(|| std::env::var("CIFAR10_SHARED").ok().map(|d| PathBuf::from(d).join("sample")))
        .unwrap_or_else(|| PathBuf::from("../shared/cifar10/sample"));
    let t = Instant::now();
    let fuzzer = Fuzzer::new(&sample)?;
    println!("seed files built from {} in {:.1}s; seed {seed}, {cases} cases per parser", sample.display(), t.elapsed().as_secs_f64());
    let parsers: Vec<Parser> =
        Parser::ALL.into_iter().filter(|p| only.as_deref().is_none_or(|o| p.name().starts_with(o))).collect();
    let mut failed = 0;
    for parser in parsers {
        let report = fuzzer.run(parser, seed, cases);
        println!("{report}");
        for f in report.failures.iter().take(20) {
            println!("  FAIL seed {} case {}: {}", f.seed, f.case, f.message);
        }
        failed += report.failures.len();
    }
    if failed > 0 {
        return Err(format!("{failed} failing cases"));
    }
    Ok(())
}
