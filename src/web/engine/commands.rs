//! The engine's side of the page: data, the compute device, training, the LR finder, the
//! benchmark, evaluation, the self-test, prediction and exports. It runs in a dedicated worker
//! (`worker.rs`) or, with `?worker=0`, on the page's thread; either way it takes `Command`s
//! and reports `Update`s through one sink, and knows nothing of the page's signals.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};

use super::device;
use super::gpu::{GpuInfo, HOW_TO_GET_WEBGPU};
use super::loader;
use crate::web::protocol::{
    Command, ComputeView, DeviceChoice, GpuUnavailable, GpuView, Job, Phase, Place, Progress, StartOptions, Update,
    GALLERY, PREVIEW,
};
use crate::augment::Normalization;
use crate::config::TrainConfig;
use crate::conv_choice::choose_conv_within;
use crate::data::{Cifar10, DataError, IMAGE_BYTES};
use crate::lr_finder::{find_lr, LrFinderConfig};
use crate::model::{ConvAlgorithm, ResNet9};
use crate::saved::SavedRun;
use crate::train::{Control, Event, Host, TrainError, Trainer};
use crate::replicas::Helpers as _;
use crate::weights;

/// Where updates go: posted to the page (worker) or applied to its signals (same thread).
pub type Sink = Rc<dyn Fn(Update, Vec<JsValue>)>;

/// Engine objects: large, and only ever touched on the engine's thread.
#[derive(Default)]
pub struct Engine {
    pub gpu: Option<GpuInfo>,
    /// Why the engine computes on the CPU (`device::cpu`), when it does; `gpu` is then `None`.
    pub cpu: Option<String>,
    /// The GPU self-test's outcome (`None` while it runs; `Err` when the device did not answer).
    pub selftest: Option<Result<crate::selftest::Report, String>>,
    pub data: Option<Rc<Cifar10>>,
    pub norm: Option<Normalization>,
    /// The latest consistent model on the GPU (epoch end, pause, stop or import).
    pub model: Option<ResNet9>,
    /// The run at its last completed epoch (weights, momentum, position), on the CPU: it
    /// survives a lost device, stays exportable and continues on a new one.
    pub saved: Option<SavedRun>,
    pub log: crate::metrics::RunLog,
    pub options: StartOptions,
    /// Whether the link left the convolutions to be timed (no `?conv=`).
    pub conv_auto: bool,
    /// Whether WebGPU's start-up has ended (with a device or an error).
    pub gpu_settled: bool,
    /// A GPU action clicked before the self-test ended: it runs once the self-test passes.
    pub waiting: Option<Command>,
    /// On the CPU: the helper workers that share each batch (`pool.rs`), when there are any.
    pub pool: Option<Rc<super::pool::Pool>>,
}

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::default());
    static CONTROL: Rc<Cell<Control>> = Rc::new(Cell::new(Control::Run));
    static PHASE: Cell<Phase> = const { Cell::new(Phase::Idle) };
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
    static DEVICE_LOST: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the engine (never hold this across an `.await`, nor while emitting).
pub fn with_engine<R>(f: impl FnOnce(&mut Engine) -> R) -> R {
    ENGINE.with(|e| f(&mut e.borrow_mut()))
}

/// The pause/stop switch read by the training loop between batches.
pub fn control() -> Rc<Cell<Control>> {
    CONTROL.with(|c| c.clone())
}

/// Where updates go from now on.
pub fn set_sink(sink: Sink) {
    SINK.with(|s| *s.borrow_mut() = Some(sink));
}

/// Reports an update with attachments (files, byte arrays).
pub fn emit_with(update: Update, attachments: Vec<JsValue>) {
    let sink = SINK.with(|s| s.borrow().clone());
    match sink {
        Some(sink) => sink(update, attachments),
        None => log::warn!("engine update with nowhere to go: {update:?}"),
    }
}

pub fn emit(update: Update) {
    emit_with(update, Vec::new());
}

fn say(place: Place, error: bool, text: impl Into<String>) {
    emit(Update::Message { place, message: Some((error, text.into())) });
}

fn set_phase(phase: Phase) {
    PHASE.with(|p| p.set(phase));
    emit(Update::Phase(phase));
}

fn phase() -> Phase {
    PHASE.with(|p| p.get())
}

/// Whether a run, the LR finder or the benchmark is using the GPU.
fn busy() -> bool {
    matches!(phase(), Phase::Running | Phase::Paused | Phase::FindingLr | Phase::Benchmarking)
}

fn set_device_lost(reason: Option<String>) {
    DEVICE_LOST.with(|d| d.set(reason.is_some()));
    emit(Update::DeviceLost(reason));
}

fn bytes(data: &[u8]) -> JsValue {
    js_sys::Uint8Array::from(data).into()
}

/// Acts on one command from the page.
pub fn handle(command: Command, attachments: Vec<JsValue>) {
    match command {
        Command::Start(options) => spawn_local(start(options)),
        Command::LoadUrl { url, files } => load_url(url, files),
        Command::LoadFiles => load_files(attachments.into_iter().filter_map(|f| f.dyn_into().ok()).collect()),
        Command::ClearCache => spawn_local(async {
            let ok = loader::clear_cache().await;
            say(Place::Data, false, if ok { "Cache cleared." } else { "Nothing was cached." });
        }),
        Command::Train(_) | Command::Benchmark { .. } | Command::FindLr { .. } => gpu_action(command),
        Command::Pause => {
            if phase() == Phase::Running {
                control().set(Control::Pause);
            }
        }
        Command::Resume => {
            if phase() == Phase::Paused || control().get() == Control::Pause {
                control().set(Control::Run);
            }
        }
        Command::Stop => {
            if busy() {
                control().set(Control::Stop);
            }
        }
        Command::ContinueOnNewDevice => continue_on_new_device(),
        Command::ExportWeights { safetensors } => spawn_local(export_weights(safetensors)),
        Command::ExportMetrics { csv } => export_metrics(csv),
        Command::ImportWeights => {
            if let Some(file) = attachments.into_iter().find_map(|f| f.dyn_into::<web_sys::File>().ok()) {
                import_weights(file);
            }
        }
        Command::Predict { planar } => spawn_local(predict(planar)),
    }
}

/// WebGPU, its self-test, and the data of an earlier visit from the browser cache.
async fn start(options: StartOptions) {
    crate::ctors::run_once();
    if options.count_gpu_calls {
        crate::web::probe::install();
    }
    let conv = options.conv.as_deref().and_then(ConvAlgorithm::parse);
    if let Some(algorithm) = conv {
        crate::model::set_conv_algorithm(algorithm);
    }
    with_engine(|e| {
        e.conv_auto = conv.is_none();
        e.options = options;
    });
    spawn_local(load_cache());
    let choice = with_engine(|e| e.options.device);
    if choice == DeviceChoice::Cpu {
        emit(Update::Gpu(Err(GpuUnavailable {
            plain: "WebGPU is not used: this link asks for the CPU (?device=cpu).".into(),
            reason: "this link asks for it (?device=cpu)".into(),
            detail: "?device=cpu".into(),
        })));
        return use_cpu("this link asks for it (?device=cpu)".into()).await;
    }
    match super::gpu::init().await {
        Ok(g) => {
            emit(Update::Gpu(Ok(GpuView { name: g.name.clone(), summary: g.summary() })));
            use_gpu(g).await
        }
        Err(why) if choice == DeviceChoice::Gpu => {
            let plain = format!("{} This link asks for the GPU only (?device=gpu), so nothing trains. {HOW_TO_GET_WEBGPU}", why.plain);
            emit(Update::Gpu(Err(GpuUnavailable { plain, ..why })));
            emit(Update::Compute(ComputeView {
                cpu: false,
                ready: true,
                line: "Nothing trains: this link asks for the GPU only (?device=gpu) and WebGPU is not available.".into(),
                device_key: String::new(),
                suggestion: None,
            }));
            with_engine(|e| e.gpu_settled = true);
            run_waiting();
        }
        Err(why) => {
            let plain = format!("{} This page trains on your CPU instead (slower). {HOW_TO_GET_WEBGPU}", why.plain);
            let reason = why.reason.clone();
            emit(Update::Gpu(Err(GpuUnavailable { plain, ..why })));
            use_cpu(reason).await
        }
    }
}

/// Makes the CPU the engine's device (`reason`: why, in a few words) and runs the self-test on
/// it: wasm's float arithmetic and burn-flex's kernels are checked like a GPU's. Its outcome
/// shows in the compute device's line; the GPU self-test's line keeps what the GPU did.
async fn use_cpu(reason: String) {
    with_engine(|e| {
        e.gpu = None;
        e.cpu = Some(reason.clone());
        e.selftest = None;
        e.gpu_settled = true;
    });
    let wanted = with_engine(|e| device::cpu_workers(e.options.cpu_workers));
    emit(Update::Compute(device::cpu_view(&reason, wanted, None)));
    // The fault hook corrupts the GPU's results only: a CPU that takes over from a failed GPU
    // must not fail the same way.
    let report = crate::selftest::run(&device::cpu(), &crate::selftest::Fault(None)).await;
    let mut line = match &report {
        Ok(r) => {
            // A link's `?conv=gemm` names a GPU kernel: the CPU takes one that passed.
            let usable = r.usable_convs();
            if let Some(&first) = usable.first().filter(|_| !usable.contains(&crate::model::conv_algorithm())) {
                crate::model::set_conv_algorithm(first);
            }
            r.summary_on("Self-test", "the CPU")
        }
        Err(e) => format!("The self-test could not run on the CPU: {e}"),
    };
    if report.is_ok() && wanted > 1 {
        line += &start_helpers(wanted - 1).await;
    }
    let workers = 1 + with_engine(|e| e.pool.as_ref().map_or(0, |p| p.count()));
    emit(Update::Compute(device::cpu_view(&reason, workers, Some(&line))));
    with_engine(|e| e.selftest = Some(report));
    run_waiting();
}

/// Starts `n` helper workers beside the engine; returns what the compute line adds when some
/// did not start.
async fn start_helpers(n: usize) -> String {
    if let Some(old) = with_engine(|e| e.pool.take()) {
        old.stop();
    }
    let kill_at = with_engine(|e| e.options.kill_cpu_worker_at);
    let on_retire: Rc<dyn Fn(String, usize)> = Rc::new(|why: String, left: usize| {
        let reason = with_engine(|e| e.cpu.clone()).unwrap_or_default();
        let line = format!(
            "A CPU worker stopped ({why}); training goes on with {} (the step it was in was computed by the others).",
            device::cpu_name(left + 1)
        );
        say(Place::Train, false, line.clone());
        emit(Update::Compute(device::cpu_view(&reason, left + 1, Some(&line))));
    });
    let (pool, failures) = super::pool::Pool::start(n, kill_at, on_retire).await;
    with_engine(|e| e.pool = Some(Rc::new(pool)));
    if failures.is_empty() {
        String::new()
    } else {
        format!(" {} of {n} CPU helper workers did not start ({}).", failures.len(), failures.join("; "))
    }
}

/// The device GPU actions use, with the storage-binding limit that bounds a buffer (none on
/// the CPU), or the message that says why there is none.
fn compute_device() -> Result<(Device, Option<u64>), &'static str> {
    with_engine(|e| match (&e.gpu, &e.cpu) {
        (Some(g), _) => Ok((g.device.clone(), Some(g.max_storage_buffer_binding_size))),
        (None, Some(_)) => Ok((device::cpu(), None)),
        (None, None) => Err("WebGPU is not available and this link asks for the GPU only (?device=gpu): nothing can train (see the status above)."),
    })
}

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
fn gpu_failure() -> Option<String> {
    let failure = format!("GPU error: {}", super::gpu::take_error()?);
    set_device_lost(Some(failure.clone()));
    Some(failure)
}

/// Test-only faults (URL parameters `test_lose_device`, `test_gpu_error`), each fired once, in
/// the epoch it names.
fn test_hooks(epoch: usize) {
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

fn data_loaded(data: Cifar10, source: &str) {
    let status = format!("{} train · {} test · from {source}", data.train.len(), data.test.len());
    let norm = Normalization::from_split(&data.train);
    let shown = PREVIEW.min(data.train.len());
    let sample: Vec<u8> = (0..shown).flat_map(|i| data.train.image(i).iter().copied()).collect();
    let update = Update::DataLoaded {
        status,
        class_names: data.class_names.clone(),
        norm,
        sample_labels: data.train.labels[..shown].to_vec(),
    };
    with_engine(|e| {
        e.data = Some(Rc::new(data));
        e.norm = Some(norm);
    });
    emit_with(update, vec![bytes(&sample)]);
}

fn data_failed(e: DataError) {
    emit(Update::DataProgress(None));
    emit(Update::DataError(Some(e.to_string())));
}

fn progress(p: &Progress) {
    emit(Update::DataProgress(Some(p.clone())));
}

fn load_url(url: String, files: Vec<String>) {
    emit(Update::DataError(None));
    spawn_local(async move {
        match loader::load_from_url(&url, &files, progress).await {
            Ok(data) => data_loaded(data, &format!("URL {url}")),
            Err(e) => data_failed(e),
        }
    });
}

fn load_files(files: Vec<web_sys::File>) {
    if files.is_empty() {
        return;
    }
    emit(Update::DataError(None));
    let names: Vec<String> = files.iter().map(|f| f.name()).collect();
    spawn_local(async move {
        match loader::load_from_files(files, progress).await {
            Ok(data) => data_loaded(data, &format!("file {}", names.join(", "))),
            Err(e) => data_failed(e),
        }
    });
}

async fn load_cache() {
    if let Some(data) = loader::load_from_cache().await {
        data_loaded(data, "browser cache (no network used)");
    }
}

/// Train, benchmark or LR finder: run now, wait for the self-test, or say why not.
fn gpu_action(command: Command) {
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

/// The card where a GPU action's messages show.
fn place_of(command: &Command) -> Place {
    if matches!(command, Command::FindLr { .. }) { Place::LrFinder } else { Place::Train }
}

/// What every GPU action needs: a valid form, a device (WebGPU, or the CPU) that passed its
/// self-test and a batch whose buffers fit it; else a message.
fn gpu_ready(job: &Job, place: Place) -> Option<(TrainConfig, Device)> {
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
fn ready(job: &Job, place: Place) -> Option<(TrainConfig, Device, Rc<Cifar10>)> {
    let (config, device) = gpu_ready(job, place)?;
    let Some(data) = with_engine(|e| e.data.clone()) else {
        say(place, true, "Load CIFAR-10 first.");
        return None;
    };
    Some((config, device, data))
}

/// Splits the batch into the fewest micro-batches whose largest buffer fits the device's
/// binding limit (`config.micro_batch`; gradients accumulate, one optimiser step per batch) and
/// says so in `micro-batch`; refuses (with the figures) only what does not fit as single images.
fn split_batch(place: Place, config: &mut TrainConfig, limit: Option<u64>) -> bool {
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
fn binding_limit(adapter: Option<u64>) -> Option<u64> {
    let test = with_engine(|e| e.options.max_binding_mib).map(|mib| mib << 20);
    match (adapter, test) {
        (Some(a), Some(t)) => Some(a.min(t)),
        (a, t) => a.or(t),
    }
}

/// Runs the GPU self-test once WebGPU is up; a convolution algorithm that fails is replaced by
/// one that passed, and if the basics fail every GPU action is refused (`gpu_ready`). A GPU
/// action clicked meanwhile runs once it passes.
async fn self_test(gpu: GpuInfo) {
    let fault = crate::selftest::Fault(with_engine(|e| e.options.selftest_fault.clone()));
    let report = match crate::selftest::run(&gpu.device, &fault).await {
        Ok(r) => r,
        Err(e) => {
            emit(Update::SelfTest(Some((false, format!("GPU self-test could not run on {}: {e}", gpu.name)))));
            with_engine(|en| en.selftest = Some(Err(e)));
            if with_engine(|e| e.options.device) != DeviceChoice::Gpu {
                return use_cpu("the GPU did not answer its self-test (see above)".into()).await;
            }
            return run_waiting();
        }
    };
    let usable = report.usable_convs();
    let current = crate::model::conv_algorithm();
    if !usable.contains(&current) {
        if let Some(&first) = usable.first() {
            crate::model::set_conv_algorithm(first);
            if !with_engine(|e| e.conv_auto) {
                emit(Update::ConvChoice(format!(
                    "Convolutions: {} (the link's {} failed the GPU self-test)",
                    first.name(),
                    current.name()
                )));
            }
        }
    }
    emit(Update::SelfTest(Some((report.passed(), report.summary(&gpu.name)))));
    let unusable = !report.basics_ok() || usable.is_empty();
    with_engine(|e| e.selftest = Some(Ok(report)));
    // Wrong basics would train garbage: the CPU takes over, unless the link wants the GPU only.
    if unusable && with_engine(|e| e.options.device) != DeviceChoice::Gpu {
        return use_cpu("this GPU failed its self-test (see above)".into()).await;
    }
    emit(Update::Compute(device::gpu_view(&gpu.name, &gpu.key)));
    run_waiting();
}

/// The GPU action that waited for the self-test: it runs, or is refused with the reason.
fn run_waiting() {
    if let Some(command) = with_engine(|e| e.waiting.take()) {
        emit(Update::Message { place: place_of(&command), message: None });
        gpu_action(command);
    }
}

/// Starts a training run.
fn start_training(job: Job) {
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
async fn begin_training(config: TrainConfig, device: Device, data: Rc<Cifar10>) {
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

/// In auto mode, sets the fastest convolution algorithm for this GPU, width and batch: the one
/// the page remembers, or else each algorithm that passed the self-test and whose buffers fit
/// is timed on `train` (a few steps each; the phase shows "Measuring…" meanwhile). `false`:
/// the action should not go on (stopped, or nothing could be timed; the message says so).
async fn choose_conv_if_auto(job: &Job, config: &mut TrainConfig, device: &Device, train: &crate::data::Split) -> bool {
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
        emit(Update::ConvChoice(format!("Convolutions: {} (remembered for {here} at {at}: {summary})", algorithm.name())));
        return split_batch(Place::Train, config, limit);
    }
    // Each algorithm is timed in the micro-batches its own buffers need under the binding
    // limit; one that cannot fit even single images is reported, not timed.
    let candidates = usable.clone();
    let excluded: String = ConvAlgorithm::ALL
        .iter()
        .filter(|a| !candidates.contains(a))
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

/// Keeps a CPU copy of the run (weights, momentum, position): a lost device cannot take it.
async fn save(trainer: &Trainer) -> Result<(), TrainError> {
    let saved = trainer.save_run().await?;
    with_engine(|e| e.saved = Some(saved));
    Ok(())
}

/// Trains to the end (or a stop, divergence or device failure), saving after every epoch.
async fn drive(mut trainer: Trainer, data: Rc<Cifar10>) {
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
            say(Place::Train, false, format!("Stopped after {} steps; the weights so far can be downloaded.", trainer.step));
        }
        Err(TrainError::Device(e)) => {
            set_phase(Phase::Failed);
            // The model on the device is lost or suspect: exports take the saved copy.
            with_engine(|e| e.model = None);
            // Offered whatever the failure: a new device is the way on from a loss or an
            // out-of-memory alike.
            if !DEVICE_LOST.with(|d| d.get()) {
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

/// Makes `gpu` the engine's device: watches for its loss, then runs the self-test on it.
async fn use_gpu(gpu: GpuInfo) {
    with_engine(|e| {
        e.gpu = Some(gpu.clone());
        e.gpu_settled = true;
    });
    super::gpu::watch_errors(&gpu);
    super::gpu::take_error();
    let watched = gpu.clone();
    spawn_local(async move {
        let Some(reason) = super::gpu::lost(&watched).await else { return };
        // A device already replaced is old news.
        let current = with_engine(|e| e.gpu.as_ref().is_some_and(|g| g.setup.device == watched.setup.device));
        if !current {
            return;
        }
        log::error!("the GPU device was lost: {reason}");
        set_device_lost(Some(reason.clone()));
        if !busy() {
            say(Place::Train, true, format!("The GPU device was lost ({reason}). Press \"Continue on a new device\"."));
        }
    });
    emit(Update::SelfTest(None));
    with_engine(|e| e.selftest = None);
    if with_engine(|e| e.options.hold_selftest) {
        while with_engine(|e| e.waiting.is_none()) {
            gloo::timers::future::TimeoutFuture::new(50).await;
        }
    }
    self_test(gpu).await;
}

/// After a lost device: a new one, the self-test on it, the last saved weights loaded onto it,
/// and the interrupted run trained on from its last completed epoch, all without a reload.
fn continue_on_new_device() {
    if busy() {
        return;
    }
    say(Place::Train, false, "Starting a new WebGPU device…");
    spawn_local(async move {
        let gpu = match super::gpu::replace().await {
            Ok(g) => g,
            Err(e) => {
                return say(Place::Train, true, format!("No new GPU device: {e}. Download the weights, then reload the page."))
            }
        };
        set_device_lost(None);
        emit(Update::Gpu(Ok(GpuView { name: gpu.name.clone(), summary: gpu.summary() })));
        use_gpu(gpu.clone()).await;
        let usable = with_engine(|e| e.selftest.as_ref().is_some_and(|r| r.as_ref().is_ok_and(|r| !r.usable_convs().is_empty())));
        if !usable {
            return say(Place::Train, true, "The new GPU device failed its self-test (see the status above); download the weights.");
        }
        let Some(saved) = with_engine(|e| e.saved.clone()) else {
            return say(Place::Train, false, "A new GPU device is ready.");
        };
        let epoch = saved.state.epoch;
        match saved.model.clone().into_model(&gpu.device) {
            Ok(model) => with_engine(|e| e.model = Some(model)),
            Err(e) => return say(Place::Train, true, format!("The saved weights do not load on the new device: {e}")),
        }
        let data = with_engine(|e| e.data.clone());
        let (true, Phase::Failed, Some(data)) = (saved.unfinished(), phase(), data) else {
            return say(Place::Train, false, format!("A new GPU device is ready, holding the weights of epoch {epoch}."));
        };
        // The page shows the run as saved: an epoch that ended after the copy is trained again.
        emit(Update::RunLog { epochs: saved.state.log.epochs.clone(), batches: Some(saved.state.log.batches.clone()) });
        with_engine(|e| e.log = saved.state.log.clone());
        let mut trainer = match Trainer::from_saved(saved, &data, &gpu.device) {
            Ok(t) => t,
            Err(e) => return say(Place::Train, true, format!("The run cannot continue: {e}")),
        };
        // The new device may bind less per buffer than the old one: its own split.
        let mut config = trainer.config.clone();
        if !split_batch(Place::Train, &mut config, binding_limit(Some(gpu.max_storage_buffer_binding_size))) {
            return;
        }
        if let Err(e) = trainer.set_micro_batch(config.micro_batch) {
            return say(Place::Train, true, format!("The run cannot continue: {e}"));
        }
        control().set(Control::Run);
        set_phase(Phase::Running);
        say(Place::Train, false, format!("Continuing from epoch {epoch} on a new GPU device."));
        drive(trainer, data).await;
    });
}

/// Times training steps at the form's width and batch; on random images when no data is loaded.
fn run_benchmark(job: Job, steps: usize) {
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

/// Runs the LR range test with the form's settings.
fn run_lr_finder(job: Job, steps: usize) {
    let Some((mut config, device, data)) = ready(&job, Place::LrFinder) else { return };
    control().set(Control::Run);
    emit(Update::Message { place: Place::LrFinder, message: None });
    emit(Update::LrReset);
    set_phase(Phase::FindingLr);
    let finder = LrFinderConfig { steps: steps.max(10), ..Default::default() };
    spawn_local(async move {
        if !choose_conv_if_auto(&job, &mut config, &device, &data.train).await {
            set_phase(Phase::Idle);
            return;
        }
        set_phase(Phase::FindingLr);
        match find_lr(&config, &finder, &data, &device, &mut WebHost).await {
            Ok(r) => {
                emit(Update::LrSuggestion(r.suggestion()));
                say(
                    Place::LrFinder,
                    false,
                    match r.suggestion() {
                        Some(s) => format!("LR finder suggests max LR {s:.4} (min/10: {:.4}).", r.min_over_10.unwrap_or(0.0)),
                        None => "LR finder: no clear descent; keep the recipe's LR.".into(),
                    },
                );
            }
            Err(e) => say(Place::LrFinder, true, format!("LR finder: {e}")),
        }
        set_phase(Phase::Idle);
    });
}

/// Which weights to export: the GPU model if it reads back, else the last epoch's CPU copy.
async fn export_snapshot() -> Result<weights::Snapshot, String> {
    let model = with_engine(|e| e.model.clone());
    if let Some(model) = model {
        match weights::snapshot(&model).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                if let Some(s) = with_engine(|e| e.saved.as_ref().map(|s| s.model.clone())) {
                    log::warn!("reading the GPU model failed ({e}); exporting the last epoch's copy");
                    return Ok(s);
                }
                return Err(e.to_string());
            }
        }
    }
    with_engine(|e| e.saved.as_ref().map(|s| s.model.clone())).ok_or_else(|| "no trained weights yet".to_string())
}

fn download(name: &str, mime: &str, data: &[u8]) {
    emit_with(Update::Download { name: name.into(), mime: mime.into() }, vec![bytes(data)]);
}

/// The weights in burn's format (`safetensors = false`) or as `.safetensors`, as a download.
async fn export_weights(safetensors: bool) {
    let result = async {
        let snap = export_snapshot().await?;
        if safetensors {
            let data = snap.to_safetensors().map_err(|e| e.to_string())?;
            download("resnet9-cifar10.safetensors", "application/octet-stream", &data);
        } else {
            let data = snap.to_burnpack().map_err(|e| e.to_string())?;
            download("resnet9-cifar10.bpk", "application/octet-stream", &data);
        }
        Ok::<(), String>(())
    }
    .await;
    if let Err(e) = result {
        say(Place::Weights, true, format!("Export failed: {e}"));
    }
}

/// The metrics as JSON or CSV, as a download.
fn export_metrics(csv: bool) {
    let log = with_engine(|e| e.log.clone());
    if csv {
        download("metrics.csv", "text/csv", log.to_csv().as_bytes());
    } else {
        match serde_json::to_string_pretty(&log) {
            Ok(json) => download("metrics.json", "application/json", json.as_bytes()),
            Err(e) => say(Place::Weights, true, format!("Export failed: {e}")),
        }
    }
}

/// Imports weights from a picked file (either format).
fn import_weights(file: web_sys::File) {
    let device = match compute_device() {
        Ok((d, _)) => d,
        Err(why) => return say(Place::Weights, true, format!("Weights cannot be loaded: {why}")),
    };
    if busy() {
        return say(Place::Weights, true, "Stop training before importing weights.");
    }
    spawn_local(async move {
        let data = match JsFuture::from(file.array_buffer()).await {
            Ok(buf) => js_sys::Uint8Array::new(&buf).to_vec(),
            Err(e) => return say(Place::Weights, true, format!("Could not read {}: {e:?}", file.name())),
        };
        match weights::import(&data, &device) {
            Ok(model) => {
                with_engine(|e| e.model = Some(model));
                emit(Update::Exportable(true));
                say(Place::Weights, false, format!("Loaded weights from {}.", file.name()));
            }
            Err(e) => say(Place::Weights, true, format!("{}: {e}", file.name())),
        }
    });
}

/// Classifies a decoded image with the current model: top-3 classes.
async fn predict(planar: Vec<u8>) {
    let result = async {
        if planar.len() != IMAGE_BYTES {
            return Err(format!("expected a 32x32 RGB image ({IMAGE_BYTES} bytes), got {} bytes", planar.len()));
        }
        let (model, norm, names) = with_engine(|e| {
            (
                e.model.clone(),
                e.norm,
                e.data.as_ref().map(|d| d.class_names.clone()),
            )
        });
        let device = compute_device().ok().map(|(d, _)| d);
        let model = model.ok_or("train or import a model first")?;
        let device = device.ok_or("no device to compute on (see the status above)")?;
        let names = names.unwrap_or_else(|| crate::data::DEFAULT_CLASS_NAMES.iter().map(|s| s.to_string()).collect());
        // Without loaded data, fall back to CIFAR-10's well-known channel statistics.
        let norm = norm.unwrap_or(Normalization { mean: [125.3, 123.0, 113.9], std: [63.0, 62.1, 66.7] });
        let batch = crate::augment::make_batch(
            &crate::data::Split { images: planar, labels: vec![0] },
            &[0],
            crate::augment::Augment::NONE,
            &norm,
            &mut crate::augment::rng(0, 0),
        );
        let (x, _) = crate::train::batch_tensors(batch, &device.without_autodiff());
        let probs = crate::train::predict(&model, x).await.map_err(|e| e.to_string())?;
        if let Some(failure) = gpu_failure() {
            return Err(format!("{failure} (during the prediction)"));
        }
        let p = probs.first().ok_or("no output")?;
        let mut ranked: Vec<(usize, f32)> = p.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok::<String, String>(
            ranked
                .iter()
                .take(3)
                .map(|(c, p)| format!("{} {:.1}%", names.get(*c).map(String::as_str).unwrap_or("?"), p * 100.0))
                .collect::<Vec<_>>()
                .join(" · "),
        )
    }
    .await;
    emit(Update::Predicted(result));
}
