//! What the buttons do on the page's side: each sends a command to the engine (`link`), and
//! `apply` turns the engine's updates into signal updates.

use leptos::prelude::*;
use leptos::prelude::Update as _;
use wasm_bindgen::{JsCast, JsValue};

use wasm_bindgen_futures::JsFuture;

use super::link;
use super::state::{with_shown, Ui};
use crate::web::protocol::{Command, Job, Phase, Place, Update};
use crate::config::TrainConfig;
use crate::data::{Split, IMAGE_BYTES};

/// The bytes of an attachment (a `Uint8Array`), empty if it is not one.
fn attachment_bytes(attachments: &[JsValue], i: usize) -> Vec<u8> {
    attachments
        .get(i)
        .and_then(|a| a.dyn_ref::<js_sys::Uint8Array>())
        .map(|a| a.to_vec())
        .unwrap_or_default()
}

/// Shows one engine update.
pub fn apply(ui: Ui, update: Update, attachments: Vec<JsValue>) {
    match update {
        Update::NoWebGpuInWorker => link::fall_back(ui, "this browser has no WebGPU in workers"),
        Update::Gpu(r) => ui.gpu.set(Some(r.map(|g| g.summary))),
        Update::Compute(view) => {
            with_shown(|s| s.device_key = view.device_key.clone());
            ui.compute.set(Some(view))
        }
        Update::Split(line) => ui.split.set(line),
        Update::SelfTest(s) => ui.selftest.set(s),
        Update::ConvChoice(line) => ui.conv_choice.set(line),
        Update::ConvChosen { device_key, width, batch, algorithm, summary } => {
            remember_conv(&conv_choice_key(&device_key, width, batch), &algorithm, &summary)
        }
        Update::Phase(p) => {
            ui.pausing.set(false);
            ui.phase.set(p)
        }
        Update::Message { place, message } => match message {
            Some((error, text)) => ui.say_in(place, error, text),
            None => ui.clear(place),
        },
        Update::DataError(e) => ui.data_error.set(e),
        Update::DataProgress(p) => ui.progress.set(p),
        Update::DataLoaded { status, class_names, norm, sample_labels } => {
            let images = attachment_bytes(&attachments, 0);
            let whole = (images.len() / IMAGE_BYTES).min(sample_labels.len());
            with_shown(|s| {
                s.class_names = class_names;
                s.norm = Some(norm);
                s.sample = Split { images: images[..whole * IMAGE_BYTES].to_vec(), labels: sample_labels[..whole].to_vec() };
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
        Update::RunStarted { total_epochs, lookahead } => {
            ui.batches.set(Vec::new());
            ui.epochs.set(Vec::new());
            ui.evaluation.set(None);
            ui.message.set(None);
            ui.total_epochs.set(total_epochs);
            ui.lookahead.set(lookahead);
        }
        Update::Schedule { schedule, steps_per_epoch } => {
            ui.schedule.set(Some(schedule));
            ui.steps_per_epoch.set(steps_per_epoch);
        }
        Update::Batch(b) => ui.batches.update(|v| v.push(b)),
        Update::Epoch(e) => ui.epochs.update(|v| v.push(e)),
        Update::RunLog { epochs, batches } => {
            ui.epochs.set(epochs);
            if let Some(b) = batches {
                ui.batches.set(b);
            }
        }
        Update::Evaluated(evaluation) => {
            with_shown(|s| s.mistakes = attachment_bytes(&attachments, 0));
            ui.evaluation.set(Some(evaluation));
        }
        Update::LrReset => {
            ui.lr_points.set(Vec::new());
            ui.lr_suggestion.set(None);
        }
        Update::LrPoint { lr, loss } => ui.lr_points.update(|v| v.push((lr, loss))),
        Update::LrSuggestion(s) => ui.lr_suggestion.set(s),
        Update::Exportable(e) => ui.exportable.set(e),
        Update::Predicted(r) => ui.predict.set(Some(r)),
        Update::Bench(b) => ui.bench.set(b.map(|r| r.map(|mut b| {
            page_probes(&mut b);
            b
        }))),
        Update::DeviceLost(reason) => ui.device_lost.set(reason),
        Update::ProbeMark => {
            // Same thread: the engine's reading already holds the page's long tasks.
            if link::in_worker() {
                let marks = crate::web::probe::read();
                with_shown(|s| s.probe_marks.push(marks));
            }
        }
        Update::Download { name, mime } => {
            if let Err(e) = download(&name, &mime, &attachment_bytes(&attachments, 0)) {
                ui.say_in(Place::Weights, true, format!("Download failed: {e}"));
            }
        }
        Update::Panic(message) => super::panic::show(&message),
    }
}

/// With the engine in a worker, its counters know nothing of the page's thread: the page's
/// long tasks between the benchmark's two readings replace them, and the page's own
/// constructor runs are added.
fn page_probes(bench: &mut crate::bench::StepBench) {
    let marks = with_shown(|s| std::mem::take(&mut s.probe_marks));
    // No marks, or empty ones: the page counts nothing (no `?count_gpu_calls=1`).
    let [.., start, end] = marks.as_slice() else { return };
    if end.is_empty() {
        return;
    }
    let get = |probes: &[crate::train::Probe], name: &str| probes.iter().find(|p| p.name == name).map_or(0.0, |p| p.value);
    let steps = bench.steps.max(1) as f64;
    for (name, value) in bench.probes.iter_mut() {
        match name.as_str() {
            "long-task ms" => *value = (get(end, "long-task ms") - get(start, "long-task ms")) / steps,
            "longest task ms" => *value = get(end, "longest task ms"),
            _ => {}
        }
    }
    bench.probes.push(("page constructor runs".into(), get(end, "constructor runs")));
}

/// The form as a config, or the per-field errors (also shown beside the fields).
pub fn form_config(ui: Ui) -> Option<TrainConfig> {
    let form = ui.form.get_untracked();
    let (config, errors) = TrainConfig::from_pairs(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    ui.form_errors.set(errors.clone());
    if errors.is_empty() { Some(config) } else { None }
}

/// A GPU action's settings, or `None` (with a message) when the form has errors.
fn job(ui: Ui, place: Place) -> Option<Job> {
    let Some(config) = form_config(ui) else {
        ui.say_in(place, true, "Fix the highlighted settings first.");
        return None;
    };
    let remembered_conv = if ui.conv_auto.get_untracked() {
        let device_key = with_shown(|s| s.device_key.clone());
        remembered_conv(&conv_choice_key(&device_key, config.width, config.batch_size))
    } else {
        None
    };
    Some(Job { form: ui.form.get_untracked(), remembered_conv })
}

/// Loads shards from the URL field (resolved against the page: the worker has no base URL).
pub fn load_url(ui: Ui) {
    let url = ui.data_url.get_untracked();
    let base = web_sys::window().and_then(|w| w.document()).and_then(|d| d.base_uri().ok().flatten());
    let url = base.and_then(|b| web_sys::Url::new_with_base(&url, &b).ok()).map(|u| u.href()).unwrap_or(url);
    ui.data_error.set(None);
    link::send(Command::LoadUrl { url, files: ui.data_files.get_untracked() }, Vec::new());
}

/// Loads picked or dropped files (the engine reads them).
pub fn load_files(ui: Ui, files: Vec<web_sys::File>) {
    if files.is_empty() {
        return;
    }
    ui.data_error.set(None);
    link::send(Command::LoadFiles, files.into_iter().map(JsValue::from).collect());
}

/// Empties the cache.
pub fn clear_cache(_ui: Ui) {
    link::send(Command::ClearCache, Vec::new());
}

/// Starts a training run from the form.
pub fn start_training(ui: Ui) {
    if ui.busy() {
        return;
    }
    if let Some(job) = job(ui, Place::Train) {
        link::send(Command::Train(job), Vec::new());
    }
}

/// Times training steps at the form's width and batch.
pub fn run_benchmark(ui: Ui) {
    if ui.busy() {
        return;
    }
    ui.bench.set(None);
    if let Some(job) = job(ui, Place::Train) {
        link::send(Command::Benchmark { job, steps: ui.bench_steps.get_untracked() }, Vec::new());
    }
}

/// Runs the LR range test with the form's settings.
pub fn run_lr_finder(ui: Ui) {
    if ui.busy() {
        return;
    }
    if let Some(job) = job(ui, Place::LrFinder) {
        link::send(Command::FindLr { job, steps: ui.lr_steps.get_untracked() }, Vec::new());
    }
}

/// Pause or resume. The page shows "Paused" at once: the engine pauses after the step it is
/// in (seconds on a slow GPU), and says so when it has.
pub fn toggle_pause(ui: Ui) {
    match ui.phase.get_untracked() {
        Phase::Running => {
            ui.pausing.set(true);
            ui.phase.set(Phase::Paused);
            link::send(Command::Pause, Vec::new());
        }
        Phase::Paused => {
            ui.pausing.set(false);
            ui.phase.set(Phase::Running);
            link::send(Command::Resume, Vec::new());
        }
        _ => {}
    }
}

/// Stop after the current batch.
pub fn stop(ui: Ui) {
    if ui.busy() {
        link::send(Command::Stop, Vec::new());
    }
}

/// After a lost device: a new one, and the run on from its last saved epoch.
pub fn continue_on_new_device(ui: Ui) {
    if !ui.busy() {
        link::send(Command::ContinueOnNewDevice, Vec::new());
    }
}

/// Downloads the weights in burn's format (`safetensors = false`) or as `.safetensors`.
pub fn export_weights(_ui: Ui, safetensors: bool) {
    link::send(Command::ExportWeights { safetensors }, Vec::new());
}

/// Downloads the metrics as JSON or CSV.
pub fn export_metrics(_ui: Ui, csv: bool) {
    link::send(Command::ExportMetrics { csv }, Vec::new());
}

/// Imports weights from a picked file (either format).
pub fn import_weights(_ui: Ui, file: web_sys::File) {
    link::send(Command::ImportWeights, vec![file.into()]);
}

/// Classifies a picked image: decoded here (the engine has no canvas), classified there.
pub fn predict_file(ui: Ui, file: web_sys::File) {
    leptos::task::spawn_local(async move {
        match image_to_planar(&file).await {
            Ok(planar) => link::send(Command::Predict { planar }, Vec::new()),
            Err(e) => ui.predict.set(Some(Err(e))),
        }
    });
}

/// The key of a remembered convolution choice: the device (what the page sees of it), width
/// and batch it was timed at.
fn conv_choice_key(device_key: &str, width: f64, batch: usize) -> String {
    format!("cifar10-webgpu conv-choice {device_key} width {width} batch {batch}")
}

/// A choice remembered in this session or in localStorage: (algorithm, its explanation).
fn remembered_conv(key: &str) -> Option<(String, String)> {
    if let Some(found) = with_shown(|s| s.conv_choices.get(key).cloned()) {
        return Some(found);
    }
    let stored = storage_call(&local_storage()?, "getItem", &[key]).ok()?.as_string()?;
    let value: serde_json::Value = serde_json::from_str(&stored).ok()?;
    let algorithm = value.get("chosen")?.as_str()?.to_string();
    let summary = value.get("summary")?.as_str()?.to_string();
    Some((algorithm, summary))
}

fn remember_conv(key: &str, algorithm: &str, summary: &str) {
    with_shown(|s| s.conv_choices.insert(key.to_string(), (algorithm.to_string(), summary.to_string())));
    let value = serde_json::json!({ "chosen": algorithm, "summary": summary });
    if let Some(storage) = local_storage() {
        // A full or refused storage only means the next visit times again.
        if let Err(e) = storage_call(&storage, "setItem", &[key, &value.to_string()]) {
            log::warn!("could not remember the convolution choice: {e:?}");
        }
    }
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

