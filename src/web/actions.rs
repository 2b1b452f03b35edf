//! What the buttons do: each action drives the engine and turns its events into signal updates.

use std::rc::Rc;

use burn::prelude::*;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::gpu::GpuInfo;
use super::loader::{self, Progress};
use super::state::{control, with_engine, Phase, Place, Ui};
use crate::augment::Normalization;
use crate::data::IMAGE_BYTES;
use crate::config::TrainConfig;
use crate::data::{Cifar10, DataError};
use crate::lr_finder::{find_lr, LrFinderConfig};
use crate::conv_choice::choose_conv;
use crate::model::{max_batch_for, largest_activation_bytes, ConvAlgorithm, ResNet9};
use crate::train::{Control, Event, Host, TrainError, Trainer};
use crate::weights;

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

/// Reports engine events into the page's signals.
pub struct WebHost {
    pub ui: Ui,
}

impl Host for WebHost {
    fn now_ms(&self) -> f64 {
        now_ms()
    }
    fn control(&self) -> Control {
        control().get()
    }
    fn event(&mut self, event: Event) {
        let ui = self.ui;
        match event {
            Event::Started { schedule, steps_per_epoch, .. } => {
                ui.schedule.set(Some(schedule));
                ui.steps_per_epoch.set(steps_per_epoch);
            }
            Event::Batch(b) => {
                test_hooks(ui, b.epoch + 1);
                ui.batches.update(|v| v.push(b))
            }
            Event::Epoch(e) => {
                with_engine(|en| en.log.epochs.push(e.clone()));
                ui.epochs.update(|v| v.push(e));
            }
            Event::Evaluated { evaluation, .. } => {
                with_engine(|en| en.log.last_evaluation = Some(evaluation.clone()));
                ui.evaluation.set(Some(evaluation));
            }
            Event::LrPoint { lr, loss, .. } => ui.lr_points.update(|v| v.push((lr, loss))),
            Event::Paused => ui.phase.set(Phase::Paused),
            Event::Resumed => ui.phase.set(Phase::Running),
        }
    }
    async fn yield_now(&mut self) {
        // A macrotask: the page paints and handles clicks between batches.
        gloo::timers::future::TimeoutFuture::new(0).await;
    }
    async fn sleep_ms(&mut self, ms: u32) {
        gloo::timers::future::TimeoutFuture::new(ms).await;
    }
    fn checkpoint(&mut self, model: &ResNet9) {
        with_engine(|e| e.model = Some(model.checkpoint()));
        self.ui.exportable.set(true);
    }
    fn device_failure(&mut self) -> Option<String> {
        gpu_failure(self.ui)
    }
    fn probe(&mut self) -> Vec<crate::train::Probe> {
        super::probe::read()
    }
}

/// An uncaptured GPU error since the last look (some GPU work did not run), shown with the
/// "Continue on a new device" action.
fn gpu_failure(ui: Ui) -> Option<String> {
    let failure = format!("GPU error: {}", super::gpu::take_error()?);
    ui.device_lost.set(Some(failure.clone()));
    Some(failure)
}

/// Test-only faults (URL parameters `test_lose_device`, `test_gpu_error`), each fired once, in
/// the epoch it names.
fn test_hooks(ui: Ui, epoch: usize) {
    let gpu = || with_engine(|e| e.gpu.clone());
    if ui.lose_device_in_epoch.get_untracked() == Some(epoch) {
        ui.lose_device_in_epoch.set(None);
        log::warn!("test hook: destroying the GPU device during epoch {epoch}");
        gpu().inspect(super::gpu::destroy);
    }
    if ui.gpu_error_in_epoch.get_untracked() == Some(epoch) {
        ui.gpu_error_in_epoch.set(None);
        log::warn!("test hook: an uncaptured GPU error during epoch {epoch}");
        gpu().inspect(super::gpu::provoke_error);
    }
}

fn data_loaded(ui: Ui, data: Cifar10, source: &str) {
    let status = format!("{} train · {} test · from {source}", data.train.len(), data.test.len());
    let norm = Normalization::from_split(&data.train);
    with_engine(|e| {
        e.data = Some(Rc::new(data));
        e.norm = Some(norm);
    });
    ui.data_error.set(None);
    ui.progress.update(|p| {
        if let Some(p) = p {
            p.phase = "loaded".into();
        }
    });
    ui.data_status.set(Some(status));
    ui.data_version.update(|v| *v += 1);
}

fn data_failed(ui: Ui, e: DataError) {
    ui.progress.set(None);
    ui.data_error.set(Some(e.to_string()));
}

/// Loads shards from the URL field.
pub fn load_url(ui: Ui) {
    let url = ui.data_url.get_untracked();
    let files = ui.data_files.get_untracked();
    ui.data_error.set(None);
    leptos::task::spawn_local(async move {
        let r = loader::load_from_url(&url, &files, |p: &Progress| ui.progress.set(Some(p.clone()))).await;
        match r {
            Ok(data) => data_loaded(ui, data, &format!("URL {url}")),
            Err(e) => data_failed(ui, e),
        }
    });
}

/// Loads picked or dropped files.
pub fn load_files(ui: Ui, files: Vec<web_sys::File>) {
    if files.is_empty() {
        return;
    }
    ui.data_error.set(None);
    let names: Vec<String> = files.iter().map(|f| f.name()).collect();
    leptos::task::spawn_local(async move {
        let r = loader::load_from_files(files, |p: &Progress| ui.progress.set(Some(p.clone()))).await;
        match r {
            Ok(data) => data_loaded(ui, data, &format!("file {}", names.join(", "))),
            Err(e) => data_failed(ui, e),
        }
    });
}

/// Tries the browser cache; says so when it is used.
pub fn load_cache(ui: Ui) {
    leptos::task::spawn_local(async move {
        if let Some(data) = loader::load_from_cache().await {
            data_loaded(ui, data, "browser cache (no network used)");
        }
    });
}

/// Empties the cache.
pub fn clear_cache(ui: Ui) {
    leptos::task::spawn_local(async move {
        let ok = loader::clear_cache().await;
        ui.say_in(Place::Data, false, if ok { "Cache cleared." } else { "Nothing was cached." });
    });
}

/// The form as a config, or the per-field errors (also shown beside the fields).
pub fn form_config(ui: Ui) -> Option<TrainConfig> {
    let form = ui.form.get_untracked();
    let (config, errors) = TrainConfig::from_pairs(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    ui.form_errors.set(errors.clone());
    if errors.is_empty() { Some(config) } else { None }
}

/// What every GPU action needs: a valid form, a WebGPU device and a batch whose buffers fit
/// it; else a message.
fn gpu_ready(ui: Ui, place: Place) -> Option<(TrainConfig, Device)> {
    let Some(config) = form_config(ui) else {
        ui.say_in(place, true, "Fix the highlighted settings first.");
        return None;
    };
    let Some((device, limit)) =
        with_engine(|e| e.gpu.as_ref().map(|g| (g.device.clone(), g.max_storage_buffer_binding_size)))
    else {
        ui.say_in(place, true, "WebGPU is not available, so nothing can run on the GPU (see the status above).");
        return None;
    };
    let usable = with_engine(|e| e.selftest.as_ref().map(|r| r.as_ref().is_ok_and(|r| !r.usable_convs().is_empty())));
    match usable {
        None => {
            ui.say_in(place, true, "The GPU self-test is still running; try again in a moment.");
            return None;
        }
        Some(false) => {
            ui.say_in(place, true, "This GPU failed its self-test, so nothing runs on it (see the status above).");
            return None;
        }
        Some(true) => {}
    }
    check_limits(ui, place, &config, limit).then_some((config, device))
}

/// Runs the GPU self-test once WebGPU is up; a convolution algorithm that fails is replaced by
/// one that passed, and if the basics fail every GPU action is refused (`gpu_ready`).
pub async fn self_test(ui: Ui, gpu: GpuInfo) {
    let fault = crate::selftest::Fault(ui.selftest_fault.get_untracked());
    let report = match crate::selftest::run(&gpu.device, &fault).await {
        Ok(r) => r,
        Err(e) => {
            ui.selftest.set(Some((false, format!("GPU self-test could not run on {}: {e}", gpu.name))));
            with_engine(|en| en.selftest = Some(Err(e)));
            return;
        }
    };
    let usable = report.usable_convs();
    let current = crate::model::conv_algorithm();
    if !usable.contains(&current) {
        if let Some(&first) = usable.first() {
            crate::model::set_conv_algorithm(first);
            if !ui.conv_auto.get_untracked() {
                ui.conv_choice.set(format!(
                    "Convolutions: {} (the link's {} failed the GPU self-test)",
                    first.name(),
                    current.name()
                ));
            }
        }
    }
    ui.selftest.set(Some((report.passed(), report.summary(&gpu.name))));
    with_engine(|e| e.selftest = Some(Ok(report)));
}

/// Training and the LR finder need the data too.
fn ready(ui: Ui, place: Place) -> Option<(TrainConfig, Device, Rc<Cifar10>)> {
    let (config, device) = gpu_ready(ui, place)?;
    let Some(data) = with_engine(|e| e.data.clone()) else {
        ui.say_in(place, true, "Load CIFAR-10 first.");
        return None;
    };
    Some((config, device, data))
}

/// Refuses a batch whose largest activation exceeds the adapter's storage-binding limit.
fn check_limits(ui: Ui, place: Place, config: &TrainConfig, limit: u64) -> bool {
    let need = largest_activation_bytes(config.batch_size, config.width);
    if need > limit {
        ui.say_in(
            place,
            true,
            format!(
                "Batch {} needs a {} MiB buffer but this GPU allows {} MiB per binding \
                 (maxStorageBufferBindingSize). The largest batch that fits at width {} is {}{}.",
                config.batch_size,
                need >> 20,
                limit >> 20,
                config.width,
                max_batch_for(limit, config.width),
                if crate::model::conv_algorithm() == crate::model::ConvAlgorithm::Im2col {
                    " with im2col convolutions (?conv=im2col needs 4.5x the memory)"
                } else {
                    ""
                }
            ),
        );
        return false;
    }
    true
}

/// Starts a training run from the form.
pub fn start_training(ui: Ui) {
    if ui.busy() {
        return;
    }
    let Some((config, device, data)) = ready(ui, Place::Train) else { return };
    control().set(Control::Run);
    // Busy from the click on: the choice below may take seconds.
    let before = ui.phase.get_untracked();
    ui.phase.set(Phase::Benchmarking);
    leptos::task::spawn_local(async move {
        // The convolutions first (auto mode): the run then uses the fastest.
        if !choose_conv_if_auto(ui, &config, &device, &data.train).await {
            ui.phase.set(before);
            return;
        }
        ui.phase.set(before);
        begin_training(ui, config, device, data).await;
    });
}

/// Starts the run once the convolution algorithm is settled.
async fn begin_training(ui: Ui, config: TrainConfig, device: Device, data: Rc<Cifar10>) {
    let trainer = match Trainer::new(config.clone(), &data, &device) {
        Ok(t) => t,
        Err(e) => return ui.say(true, e.to_string()),
    };
    ui.batches.set(Vec::new());
    ui.epochs.set(Vec::new());
    ui.evaluation.set(None);
    ui.message.set(None);
    ui.total_epochs.set(config.epochs);
    ui.lookahead.set(config.lookahead);
    ui.phase.set(Phase::Running);
    with_engine(|e| {
        e.log = trainer.log.clone();
        e.saved = None;
    });
    drive(ui, trainer, data).await;
}

/// The key of a remembered convolution choice: the adapter, width and batch it was timed at.
fn conv_choice_key(adapter: &str, config: &TrainConfig) -> String {
    format!("cifar10-webgpu conv-choice {adapter} width {} batch {}", config.width, config.batch_size)
}

/// `localStorage`, reached through js-sys: web-sys's `Storage` feature would rebuild web-sys and
/// every crate on it (wgpu, cubecl, burn) for two calls.
fn local_storage() -> Option<wasm_bindgen::JsValue> {
    let storage = js_sys::Reflect::get(&js_sys::global(), &"localStorage".into()).ok()?;
    (!storage.is_undefined() && !storage.is_null()).then_some(storage)
}

/// `storage[method](args...)`; an error on any failure (storage refused, quota, no method).
fn storage_call(storage: &wasm_bindgen::JsValue, method: &str, args: &[&str]) -> Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
    let f: js_sys::Function = js_sys::Reflect::get(storage, &method.into())?.dyn_into()?;
    let args: js_sys::Array = args.iter().map(|a| wasm_bindgen::JsValue::from_str(a)).collect();
    f.apply(storage, &args)
}

/// A choice remembered in this session or in localStorage: (algorithm, its explanation).
fn remembered_conv(key: &str) -> Option<(ConvAlgorithm, String)> {
    if let Some(found) = with_engine(|e| e.conv_choices.get(key).cloned()) {
        return Some(found);
    }
    let stored = storage_call(&local_storage()?, "getItem", &[key]).ok()?.as_string()?;
    let value: serde_json::Value = serde_json::from_str(&stored).ok()?;
    let algorithm = ConvAlgorithm::parse(value.get("chosen")?.as_str()?)?;
    let summary = value.get("summary")?.as_str()?.to_string();
    Some((algorithm, summary))
}

fn remember_conv(key: &str, algorithm: ConvAlgorithm, summary: &str) {
    with_engine(|e| e.conv_choices.insert(key.to_string(), (algorithm, summary.to_string())));
    let value = serde_json::json!({ "chosen": algorithm.name(), "summary": summary });
    if let Some(storage) = local_storage() {
        // A full or refused storage only means the next visit times again.
        if let Err(e) = storage_call(&storage, "setItem", &[key, &value.to_string()]) {
            log::warn!("could not remember the convolution choice: {e:?}");
        }
    }
}

/// In auto mode, sets the fastest convolution algorithm for this GPU, width and batch: the
/// remembered one, or else each algorithm that passed the self-test and whose buffers fit is
/// timed on `train` (a few steps each; the phase shows "Measuring…" meanwhile). `false`: the
/// action should not go on (stopped, or nothing could be timed; the message says so).
async fn choose_conv_if_auto(ui: Ui, config: &TrainConfig, device: &Device, train: &crate::data::Split) -> bool {
    if !ui.conv_auto.get_untracked() {
        return true;
    }
    let (adapter, limit, usable) = with_engine(|e| {
        (
            e.gpu.as_ref().map(|g| g.name.clone()).unwrap_or_default(),
            e.gpu.as_ref().map_or(0, |g| g.max_storage_buffer_binding_size),
            e.selftest.as_ref().and_then(|r| r.as_ref().ok()).map(|r| r.usable_convs()).unwrap_or_default(),
        )
    });
    let at = format!("width {}, batch {}", config.width, config.batch_size);
    let key = conv_choice_key(&adapter, config);
    if let Some((algorithm, summary)) = remembered_conv(&key).filter(|(a, _)| usable.contains(a)) {
        crate::model::set_conv_algorithm(algorithm);
        ui.conv_choice.set(format!("Convolutions: {} (remembered for this GPU at {at}: {summary})", algorithm.name()));
        return true;
    }
    // An algorithm whose largest buffer exceeds the adapter's binding limit is not tried.
    let before = crate::model::conv_algorithm();
    let fits = |a: ConvAlgorithm| {
        crate::model::set_conv_algorithm(a);
        largest_activation_bytes(config.batch_size, config.width) <= limit
    };
    let candidates: Vec<ConvAlgorithm> = usable.iter().copied().filter(|&a| fits(a)).collect();
    crate::model::set_conv_algorithm(before);
    let excluded: String = ConvAlgorithm::ALL
        .iter()
        .filter(|a| !candidates.contains(a))
        .map(|a| {
            let why = if usable.contains(a) { "too large for this GPU's buffers" } else { "failed the GPU self-test" };
            format!(" · {} not tried ({why})", a.name())
        })
        .collect();
    let names: Vec<&str> = candidates.iter().map(|a| a.name()).collect();
    ui.conv_choice.set(format!("Convolutions: timing {} on this GPU at {at}…", names.join(", ")));
    ui.phase.set(Phase::Benchmarking);
    let mut host = WebHost { ui };
    match choose_conv(config, train, device, &candidates, &mut host).await {
        Ok(choice) => {
            let summary = choice.summary() + &excluded;
            ui.conv_choice.set(format!("Convolutions: {summary} (timed on this GPU at {at})"));
            remember_conv(&key, choice.chosen, &summary);
            true
        }
        Err(TrainError::Stopped) => {
            ui.conv_choice.set("Convolutions: timing stopped; the next Train or Benchmark times again".into());
            ui.say(false, "Stopped while timing the convolutions.");
            false
        }
        Err(e) => {
            ui.conv_choice.set(format!("Convolutions: could not be timed: {e}"));
            ui.say(true, format!("Timing the convolutions failed: {e}"));
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
async fn drive(ui: Ui, mut trainer: Trainer, data: Rc<Cifar10>) {
    let mut host = WebHost { ui };
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
            ui.phase.set(Phase::Finished);
            let acc = trainer.last_evaluation.as_ref().map(|e| e.accuracy * 100.0).unwrap_or(0.0);
            ui.say(false, format!("Finished {} epochs: {acc:.2}% test accuracy.", trainer.epoch));
        }
        Err(TrainError::Stopped) => {
            ui.phase.set(Phase::Stopped);
            ui.say(false, format!("Stopped after {} steps; the weights so far can be downloaded.", trainer.step));
        }
        Err(TrainError::Device(e)) => {
            ui.phase.set(Phase::Failed);
            // The model on the device is lost or suspect: exports take the saved copy.
            with_engine(|e| e.model = None);
            // Offered whatever the failure: a new device is the way on from a loss or an
            // out-of-memory alike.
            if ui.device_lost.get_untracked().is_none() {
                ui.device_lost.set(Some(e.clone()));
            }
            // The epoch log shows what is kept: an epoch that ended after the copy is not.
            let kept = with_engine(|e| e.saved.as_ref().map(|s| s.state.log.epochs.clone())).unwrap_or_default();
            ui.epochs.set(kept.clone());
            ui.say(
                true,
                format!(
                    "The GPU device failed during epoch {epoch}: {e}. The run as it stood after epoch {} is \
                     kept: download its weights, or press \"Continue on a new device\" to train on from there.",
                    kept.len()
                ),
            );
        }
        Err(e) => {
            ui.phase.set(Phase::Failed);
            ui.say(true, e.to_string());
        }
    }
}

/// Makes `gpu` the page's device: watches for its loss, then runs the self-test on it.
pub async fn use_gpu(ui: Ui, gpu: GpuInfo) {
    with_engine(|e| e.gpu = Some(gpu.clone()));
    super::gpu::watch_errors(&gpu);
    super::gpu::take_error();
    ui.gpu.set(Some(Ok(gpu.summary())));
    let watched = gpu.clone();
    leptos::task::spawn_local(async move {
        let Some(reason) = super::gpu::lost(&watched).await else { return };
        // A device already replaced is old news.
        let current = with_engine(|e| e.gpu.as_ref().is_some_and(|g| g.setup.device == watched.setup.device));
        if !current {
            return;
        }
        log::error!("the GPU device was lost: {reason}");
        ui.device_lost.set(Some(reason.clone()));
        if !ui.busy() {
            ui.say(true, format!("The GPU device was lost ({reason}). Press \"Continue on a new device\"."));
        }
    });
    ui.selftest.set(None);
    with_engine(|e| e.selftest = None);
    self_test(ui, gpu).await;
}

/// After a lost device: a new one, the self-test on it, the last saved weights loaded onto it,
/// and the interrupted run trained on from its last completed epoch, all without a reload.
pub fn continue_on_new_device(ui: Ui) {
    if ui.busy() {
        return;
    }
    ui.say(false, "Starting a new WebGPU device…");
    leptos::task::spawn_local(async move {
        let gpu = match super::gpu::replace().await {
            Ok(g) => g,
            Err(e) => return ui.say(true, format!("No new GPU device: {e}. Download the weights, then reload the page.")),
        };
        ui.device_lost.set(None);
        use_gpu(ui, gpu.clone()).await;
        let usable = with_engine(|e| e.selftest.as_ref().is_some_and(|r| r.as_ref().is_ok_and(|r| !r.usable_convs().is_empty())));
        if !usable {
            return ui.say(true, "The new GPU device failed its self-test (see the status above); download the weights.");
        }
        let Some(saved) = with_engine(|e| e.saved.clone()) else {
            return ui.say(false, "A new GPU device is ready.");
        };
        let epoch = saved.state.epoch;
        match saved.model.clone().into_model(&gpu.device) {
            Ok(model) => with_engine(|e| e.model = Some(model)),
            Err(e) => return ui.say(true, format!("The saved weights do not load on the new device: {e}")),
        }
        let data = with_engine(|e| e.data.clone());
        let (true, Phase::Failed, Some(data)) = (saved.unfinished(), ui.phase.get_untracked(), data) else {
            return ui.say(false, format!("A new GPU device is ready, holding the weights of epoch {epoch}."));
        };
        // The page shows the run as saved: an epoch that ended after the copy is trained again.
        ui.epochs.set(saved.state.log.epochs.clone());
        ui.batches.set(saved.state.log.batches.clone());
        with_engine(|e| e.log = saved.state.log.clone());
        let trainer = match Trainer::from_saved(saved, &data, &gpu.device) {
            Ok(t) => t,
            Err(e) => return ui.say(true, format!("The run cannot continue: {e}")),
        };
        control().set(Control::Run);
        ui.phase.set(Phase::Running);
        ui.say(false, format!("Continuing from epoch {epoch} on a new GPU device."));
        drive(ui, trainer, data).await;
    });
}

/// Pause or resume.
pub fn toggle_pause(ui: Ui) {
    let c = control();
    match (ui.phase.get_untracked(), c.get()) {
        (Phase::Running, _) => c.set(Control::Pause),
        (Phase::Paused, _) => c.set(Control::Run),
        _ => {}
    }
}

/// Stop after the current batch.
pub fn stop(ui: Ui) {
    if ui.busy() {
        control().set(Control::Stop);
    }
}

/// Times training steps at the form's width and batch; on random images when no data is loaded.
pub fn run_benchmark(ui: Ui) {
    if ui.busy() {
        return;
    }
    let Some((config, device)) = gpu_ready(ui, Place::Train) else { return };
    let data = with_engine(|e| e.data.clone());
    let steps = ui.bench_steps.get_untracked();
    control().set(Control::Run);
    ui.bench.set(None);
    // A finished or stopped run keeps showing as such once the benchmark is done.
    let phase_before = ui.phase.get_untracked();
    ui.phase.set(Phase::Benchmarking);
    leptos::task::spawn_local(async move {
        let synthetic;
        let train = match &data {
            Some(d) => &d.train,
            None => {
                synthetic = crate::bench::synthetic_split(config.batch_size * 4, config.seed);
                &synthetic
            }
        };
        if !choose_conv_if_auto(ui, &config, &device, train).await {
            ui.phase.set(phase_before);
            return;
        }
        ui.phase.set(Phase::Benchmarking);
        let mut host = WebHost { ui };
        let r = crate::bench::bench_steps(&config, train, &device, 5, steps, &mut host).await;
        ui.bench.set(Some(match r {
            Ok(mut b) => {
                b.synthetic = data.is_none();
                Ok(b)
            }
            Err(TrainError::Stopped) => Err("Benchmark stopped.".into()),
            Err(e) => Err(format!("Benchmark failed: {e}")),
        }));
        ui.phase.set(phase_before);
    });
}

/// Runs the LR range test with the form's settings.
pub fn run_lr_finder(ui: Ui) {
    if ui.busy() {
        return;
    }
    let Some((config, device, data)) = ready(ui, Place::LrFinder) else { return };
    control().set(Control::Run);
    ui.lr_message.set(None);
    ui.lr_points.set(Vec::new());
    ui.lr_suggestion.set(None);
    ui.phase.set(Phase::FindingLr);
    let finder = LrFinderConfig { steps: ui.lr_steps.get_untracked().max(10), ..Default::default() };
    leptos::task::spawn_local(async move {
        if !choose_conv_if_auto(ui, &config, &device, &data.train).await {
            ui.phase.set(Phase::Idle);
            return;
        }
        ui.phase.set(Phase::FindingLr);
        let mut host = WebHost { ui };
        match find_lr(&config, &finder, &data, &device, &mut host).await {
            Ok(r) => {
                ui.lr_suggestion.set(r.suggestion());
                ui.say_in(
                    Place::LrFinder,
                    false,
                    match r.suggestion() {
                        Some(s) => format!("LR finder suggests max LR {s:.4} (min/10: {:.4}).", r.min_over_10.unwrap_or(0.0)),
                        None => "LR finder: no clear descent; keep the recipe's LR.".into(),
                    },
                );
            }
            Err(e) => ui.say_in(Place::LrFinder, true, format!("LR finder: {e}")),
        }
        ui.phase.set(Phase::Idle);
    });
}

/// Offers bytes as a download.
pub fn download(name: &str, mime: &str, bytes: &[u8]) -> Result<(), String> {
    let array = js_sys::Uint8Array::from(bytes);
    let parts = js_sys::Array::of1(&array);
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts).map_err(|e| format!("{e:?}"))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))?;
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let a: web_sys::HtmlAnchorElement =
        document.create_element("a").map_err(|e| format!("{e:?}"))?.dyn_into().map_err(|_| "no anchor")?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    // Revoke later: the download has to start first.
    leptos::task::spawn_local(async move {
        gloo::timers::future::TimeoutFuture::new(60_000).await;
        let _ = web_sys::Url::revoke_object_url(&url);
    });
    Ok(())
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

/// Downloads the weights in burn's format (`safetensors = false`) or as `.safetensors`.
pub fn export_weights(ui: Ui, safetensors: bool) {
    leptos::task::spawn_local(async move {
        let result = async {
            let snap = export_snapshot().await?;
            if safetensors {
                let bytes = snap.to_safetensors().map_err(|e| e.to_string())?;
                download("resnet9-cifar10.safetensors", "application/octet-stream", &bytes)
            } else {
                let bytes = snap.to_burnpack().map_err(|e| e.to_string())?;
                download("resnet9-cifar10.bpk", "application/octet-stream", &bytes)
            }
        }
        .await;
        if let Err(e) = result {
            ui.say_in(Place::Weights, true, format!("Export failed: {e}"));
        }
    });
}

/// Downloads the metrics as JSON or CSV.
pub fn export_metrics(ui: Ui, csv: bool) {
    let log = with_engine(|e| e.log.clone());
    let r = if csv {
        download("metrics.csv", "text/csv", log.to_csv().as_bytes())
    } else {
        download(
            "metrics.json",
            "application/json",
            serde_json::to_string_pretty(&log).unwrap_or_default().as_bytes(),
        )
    };
    if let Err(e) = r {
        ui.say_in(Place::Weights, true, format!("Export failed: {e}"));
    }
}

/// Imports weights from a picked file (either format).
pub fn import_weights(ui: Ui, file: web_sys::File) {
    let Some(device) = with_engine(|e| e.gpu.as_ref().map(|g| g.device.clone())) else {
        return ui.say_in(Place::Weights, true, "WebGPU is not available: weights cannot be loaded onto the GPU.");
    };
    if ui.busy() {
        return ui.say_in(Place::Weights, true, "Stop training before importing weights.");
    }
    leptos::task::spawn_local(async move {
        let bytes = match JsFuture::from(file.array_buffer()).await {
            Ok(buf) => js_sys::Uint8Array::new(&buf).to_vec(),
            Err(e) => return ui.say_in(Place::Weights, true, format!("Could not read {}: {e:?}", file.name())),
        };
        match weights::import(&bytes, &device) {
            Ok(model) => {
                with_engine(|e| e.model = Some(model));
                ui.exportable.set(true);
                ui.say_in(Place::Weights, false, format!("Loaded weights from {}.", file.name()));
            }
            Err(e) => ui.say_in(Place::Weights, true, format!("{}: {e}", file.name())),
        }
    });
}

/// Decodes any image the browser can, draws it at 32x32 and returns planar RGB bytes.
async fn image_to_planar(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let bitmap = JsFuture::from(window.create_image_bitmap_with_blob(file).map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|_| format!("{} is not an image the browser can decode", file.name()))?;
    let bitmap: web_sys::ImageBitmap = bitmap.dyn_into().map_err(|_| "not an image")?;
    let document = window.document().ok_or("no document")?;
    let canvas: web_sys::HtmlCanvasElement =
        document.create_element("canvas").map_err(|e| format!("{e:?}"))?.dyn_into().map_err(|_| "no canvas")?;
    canvas.set_width(32);
    canvas.set_height(32);
    let ctx: web_sys::CanvasRenderingContext2d = canvas
        .get_context("2d")
        .ok()
        .flatten()
        .ok_or("no 2d context")?
        .dyn_into()
        .map_err(|_| "no 2d context")?;
    ctx.draw_image_with_image_bitmap_and_dw_and_dh(&bitmap, 0.0, 0.0, 32.0, 32.0)
        .map_err(|e| format!("{e:?}"))?;
    let rgba = ctx.get_image_data(0.0, 0.0, 32.0, 32.0).map_err(|e| format!("{e:?}"))?.data().0;
    let mut planar = vec![0u8; IMAGE_BYTES];
    for i in 0..1024 {
        for c in 0..3 {
            planar[c * 1024 + i] = rgba[i * 4 + c];
        }
    }
    Ok(planar)
}

/// Classifies a picked image with the current model: top-3 classes.
pub fn predict_file(ui: Ui, file: web_sys::File) {
    leptos::task::spawn_local(async move {
        let result = async {
            let (model, norm, names, device) = with_engine(|e| {
                (
                    e.model.clone(),
                    e.norm,
                    e.data.as_ref().map(|d| d.class_names.clone()),
                    e.gpu.as_ref().map(|g| g.device.clone()),
                )
            });
            let model = model.ok_or("train or import a model first")?;
            let device = device.ok_or("WebGPU is not available")?;
            let names = names.unwrap_or_else(|| crate::data::DEFAULT_CLASS_NAMES.iter().map(|s| s.to_string()).collect());
            // Without loaded data, fall back to CIFAR-10's well-known channel statistics.
            let norm = norm.unwrap_or(Normalization { mean: [125.3, 123.0, 113.9], std: [63.0, 62.1, 66.7] });
            let planar = image_to_planar(&file).await?;
            let batch = crate::augment::make_batch(
                &crate::data::Split { images: planar, labels: vec![0] },
                &[0],
                crate::augment::Augment::NONE,
                &norm,
                &mut crate::augment::rng(0, 0),
            );
            let (x, _) = crate::train::batch_tensors(batch, &device.without_autodiff());
            let probs = crate::train::predict(&model, x).await.map_err(|e| e.to_string())?;
            if let Some(failure) = gpu_failure(ui) {
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
        ui.predict.set(Some(result));
    });
}
