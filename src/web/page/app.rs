//! The page: small components, each reading the signals it shows and calling `actions`.

use leptos::html;
use leptos::prelude::*;

use super::actions;
use super::charts;
use super::link;
use super::state::{with_shown, Ui};
use crate::web::protocol::{DeviceChoice, Phase};
use crate::augment::{self, Augment};
use crate::config::{TrainConfig, BOOL_FIELDS, FORM_FIELDS, RECIPES};
use crate::metrics::{clock, crossings_summary, first_crossings, EpochStats, TARGETS};

/// Reads `?key=value` pairs of the page URL.
pub fn query_pairs() -> Vec<(String, String)> {
    let Some(search) = web_sys::window().and_then(|w| w.location().search().ok()) else { return vec![] };
    let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else { return vec![] };
    let mut out = Vec::new();
    if let Ok(iter) = js_sys::try_iter(&params) {
        for entry in iter.into_iter().flatten().flatten() {
            let pair = js_sys::Array::from(&entry);
            if let (Some(k), Some(v)) = (pair.get(0).as_string(), pair.get(1).as_string()) {
                out.push((k, v));
            }
        }
    }
    out
}

/// Applies the URL's settings to the UI (form fields, data URL, shard list, LR finder steps).
pub fn apply_query(ui: Ui, pairs: &[(String, String)]) {
    // Valid settings show as the config resolved them (a shorter run moves the peak too);
    // a bad value stays in its field, with its error beside it.
    let (config, errors) = TrainConfig::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let form: Vec<(String, String)> = FORM_FIELDS
        .iter()
        .map(|(k, _)| {
            let raw = pairs.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            let bad = errors.iter().any(|(key, _)| key == k);
            (k.to_string(), if bad { raw.unwrap_or_default() } else { config.field(k) })
        })
        .collect();
    for (k, v) in pairs {
        match k.as_str() {
            "data" => ui.data_url.set(v.clone()),
            "peak_epoch" => ui.peak_set.set(true),
            "shards" => ui.data_files.set(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()),
            "lr_steps" => {
                if let Ok(n) = v.parse::<usize>() {
                    ui.lr_steps.set(n.clamp(10, 1000));
                }
            }
            // An implementation choice, not a recipe setting: by default (or `?conv=auto`) the
            // fastest is timed on the visitor's GPU; `?conv=im2col` etc. lets a shared link
            // compare one algorithm with another. An unknown name counts as auto.
            "conv" => match crate::model::ConvAlgorithm::parse(v) {
                Some(algorithm) => {
                    ui.options.update(|o| o.conv = Some(algorithm.name().to_string()));
                    ui.conv_auto.set(false);
                    ui.conv_choice.set(format!("Convolutions: {} (set by the link)", algorithm.name()));
                }
                None => {
                    ui.options.update(|o| o.conv = None);
                    ui.conv_auto.set(true)
                }
            },
            // Test-only: makes the named self-test check fail, to test what the page does then.
            "selftest_fault" => ui.options.update(|o| o.selftest_fault = Some(v.clone())),
            // Test-only: destroys the GPU device during this epoch of the next run, as a driver
            // reset would, to test the way on from a lost device.
            "test_lose_device" => ui.options.update(|o| o.lose_device_in_epoch = v.parse().ok()),
            // Test-only: an uncaptured GPU error (an oversized buffer) during this epoch.
            "test_gpu_error" => ui.options.update(|o| o.gpu_error_in_epoch = v.parse().ok()),
            // Test-only: the storage-binding limit is at most this many MiB (micro-batches).
            "test_max_binding_mib" => ui.options.update(|o| o.max_binding_mib = v.parse().ok().filter(|&m: &u64| m > 0)),
            // The CPU engine's workers (the engine and its helpers); 1: the engine alone.
            "cpu_workers" => ui.options.update(|o| o.cpu_workers = v.parse().ok().filter(|&n: &usize| n > 0)),
            // Test-only: a CPU helper dies while it holds its slice of this step.
            "test_kill_cpu_worker" => ui.options.update(|o| o.kill_cpu_worker_at = v.parse().ok()),
            // Test-only: the GPU self-test waits until a GPU action waits for it.
            "test_hold_selftest" => ui.options.update(|o| o.hold_selftest = v == "1"),
            // Counts the page's WebGPU calls and long tasks for the benchmark's line: the GPU
            // calls where the engine runs, the long tasks on the page's thread.
            "count_gpu_calls" if v == "1" => {
                ui.options.update(|o| o.count_gpu_calls = true);
                crate::web::probe::install();
            }
            // `?worker=0`: the engine on the page's thread, as browsers without WebGPU in
            // workers run it.
            "worker" => ui.worker.set(v != "0"),
            // `?device=cpu` trains on the CPU where WebGPU works too (both stay tested);
            // `?device=gpu` refuses rather than falls back. Anything else: the GPU if any.
            "device" => ui.options.update(|o| o.device = DeviceChoice::parse(v).unwrap_or_default()),
            "bench_steps" => {
                if let Ok(n) = v.parse::<usize>() {
                    ui.bench_steps.set(n.clamp(1, 500));
                }
            }
            _ => {}
        }
    }
    ui.form.set(form);
    ui.form_errors.set(errors);
}

/// The whole app.
#[component]
pub fn App() -> impl IntoView {
    let ui = Ui::new();
    apply_query(ui, &query_pairs());
    link::start(ui, std::rc::Rc::new(move |update, attachments| actions::apply(ui, update, attachments)));
    view! {
        <main class="app">
            <header class="top">
                <div>
                    <h1>"ResNet-9 · CIFAR-10 · WebGPU"</h1>
                    <p class="sub">"Train the seed's ResNet-9 with One-Cycle SGD on your own GPU, in this tab."</p>
                </div>
                <div>
                    <WebGpuStatus ui=ui />
                    <SelfTestStatus ui=ui />
                    <ComputeDevice ui=ui />
                    <p data-testid="engine-thread" class="muted">{move || ui.engine_thread.get()}</p>
                </div>
            </header>
            <div class="grid">
                <DataPanel ui=ui />
                <HyperParams ui=ui />
                <LrFinder ui=ui />
                <TrainControls ui=ui />
                <Charts ui=ui />
                <MetricsTable ui=ui />
                <Mistakes ui=ui />
                <Weights ui=ui />
            </div>
        </main>
    }
}

/// Adapter name and limits, or what went wrong and what to do.
#[component]
pub fn WebGpuStatus(ui: Ui) -> impl IntoView {
    // Without WebGPU the visitor reads what is missing, what the page does instead and how to
    // get WebGPU; the browser's own message is one click away.
    let cpu = move || ui.compute.get().is_some_and(|c| c.cpu);
    view! {
        <div data-testid="webgpu-status" class=move || match ui.gpu.get() {
            None => "status pending",
            Some(Ok(_)) => "status ok",
            Some(Err(_)) if cpu() => "status warn",
            Some(Err(_)) => "status error",
        }>
            {move || match ui.gpu.get() {
                None => "Starting WebGPU…".to_string(),
                Some(Ok(s)) => s,
                Some(Err(e)) => e.plain,
            }}
            {move || ui.gpu.get().and_then(|r| r.err()).map(|e| view! {
                <details data-testid="webgpu-detail">
                    <summary>"Technical detail"</summary>
                    {e.detail}
                </details>
            })}
        </div>
    }
}

/// The device training runs on and why; on the CPU, a width and batch whose epoch takes
/// minutes, applied to the form only when the visitor asks.
#[component]
pub fn ComputeDevice(ui: Ui) -> impl IntoView {
    let suggestion = move || ui.compute.get().and_then(|c| c.suggestion);
    let differs = move || {
        suggestion().is_some_and(|s| {
            let form = ui.form.get();
            let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default();
            get("width").parse::<f64>().ok() != Some(s.width) || get("batch").parse::<usize>().ok() != Some(s.batch)
        })
    };
    let apply = move |_| {
        let Some(s) = suggestion() else { return };
        ui.form.update(|f| {
            for (k, v) in f.iter_mut() {
                match k.as_str() {
                    "width" => *v = s.width.to_string(),
                    "batch" => *v = s.batch.to_string(),
                    _ => {}
                }
            }
        });
        sync_recipe(ui, false);
        let _ = actions::form_config(ui);
    };
    view! {
        <p data-testid="compute-device" class="muted">
            {move || ui.compute.get().map(|c| c.line).unwrap_or_default()}
            {move || differs().then(|| {
                let s = suggestion();
                let why = s.as_ref().map(|s| s.why.clone()).unwrap_or_default();
                let label = s.map(|s| format!("Use width {}, batch {}", s.width, s.batch)).unwrap_or_default();
                view! {
                    " " {why} " "
                    <button data-testid="use-cpu-suggestion" on:click=apply>{label}</button>
                }
            })}
        </p>
    }
}

/// The GPU self-test's outcome: passed, or what failed and what the page does about it.
#[component]
pub fn SelfTestStatus(ui: Ui) -> impl IntoView {
    view! {
        <p data-testid="gpu-selftest" class=move || match ui.selftest.get() {
            None => "status pending",
            Some((true, _)) => "status ok",
            Some((false, _)) => "status error",
        }>
            {move || match ui.selftest.get() {
                None if matches!(ui.gpu.get(), Some(Err(_))) => String::new(),
                None => "Checking the GPU's results…".to_string(),
                Some((_, s)) => s,
            }}
        </p>
    }
}

fn files_of(input: &web_sys::HtmlInputElement) -> Vec<web_sys::File> {
    let Some(list) = input.files() else { return vec![] };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Data loading: URL, file (pick or drop), cache; progress, status, errors and the preview.
#[component]
pub fn DataPanel(ui: Ui) -> impl IntoView {
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        let files = ev
            .data_transfer()
            .and_then(|dt| dt.files())
            .map(|l| (0..l.length()).filter_map(|i| l.get(i)).collect())
            .unwrap_or_default();
        actions::load_files(ui, files);
    };
    view! {
        <section class="card data">
            <h2>"1 · Data"</h2>
            <div class="row">
                <input type="url" data-testid="data-url" prop:value=move || ui.data_url.get()
                    on:input=move |ev| ui.data_url.set(event_target_value(&ev)) />
                <button data-testid="data-load-url" on:click=move |_| actions::load_url(ui)>"Load from URL"</button>
            </div>
            <label class="drop" data-testid="data-drop"
                on:dragover=move |ev: leptos::ev::DragEvent| ev.prevent_default()
                on:drop=on_drop>
                "Drop cifar-10-binary.tar.gz or .bin shards here, or "
                <input type="file" multiple data-testid="data-file" accept=".gz,.tgz,.tar,.bin,.txt"
                    on:change=move |ev| {
                        let input: web_sys::HtmlInputElement = event_target(&ev);
                        actions::load_files(ui, files_of(&input));
                        input.set_value("");
                    } />
            </label>
            <div data-testid="data-progress" class="progress-block">
                {move || ui.progress.get().map(|p| view! {
                    <div>{format!("{} {}: {} of {} · {:.1} MB/s", p.phase, p.name, mb(p.loaded),
                        p.total.map(mb).unwrap_or("?".into()), p.mb_per_s)}</div>
                    <progress max="100" value=p.percent().unwrap_or(0.0)></progress>
                    <div>{format!("total {}{}", mb(p.all_loaded),
                        p.all_percent().map(|x| format!(" ({x:.0}%)")).unwrap_or_default())}</div>
                    {p.all_percent().map(|x| view! { <progress max="100" value=x></progress> })}
                })}
            </div>
            <p data-testid="data-status" class="ok">{move || ui.data_status.get().unwrap_or_else(|| "No data loaded.".into())}</p>
            <p data-testid="data-error" class="error">{move || ui.data_error.get().unwrap_or_default()}</p>
            <button data-testid="data-clear-cache" class="small" on:click=move |_| actions::clear_cache(ui)>"Clear cached data"</button>
            <Message testid="data-message" signal=ui.data_message />
            <SampleGrid ui=ui />
        </section>
    }
}

/// Train images beside the same images after augmentation: what the network sees.
#[component]
pub fn SampleGrid(ui: Ui) -> impl IntoView {
    let original = NodeRef::<html::Canvas>::new();
    let augmented = NodeRef::<html::Canvas>::new();
    Effect::new(move || {
        let _ = ui.data_version.get();
        let (Some(a), Some(b)) = (original.get(), augmented.get()) else { return };
        let Some((sample, norm, names)) = with_shown(|s| Some((s.sample.clone(), s.norm?, s.class_names.clone()))) else { return };
        let idx: Vec<usize> = (0..sample.len()).collect();
        let name = |c: u8| names.get(c as usize).cloned().unwrap_or_default();
        let captions: Vec<String> = idx.iter().map(|&i| name(sample.labels[i])).collect();
        charts::draw_grid(&a, &charts::images_of(&sample, &idx), &captions, 6, 2);
        let batch = augment::make_batch(&sample, &idx, Augment::FULL, &norm, &mut augment::rng(ui.data_version.get_untracked() as u64, 9));
        let aug: Vec<Vec<u8>> = batch.images.chunks_exact(crate::data::IMAGE_BYTES).map(|x| charts::denormalise(x, &norm)).collect();
        charts::draw_grid(&b, &aug, &captions, 6, 2);
    });
    view! {
        <div data-testid="sample-grid" class="samples">
            <figure><canvas node_ref=original width="0" height="0"></canvas><figcaption>"train images"</figcaption></figure>
            <figure><canvas node_ref=augmented width="0" height="0"></canvas><figcaption>"after crop, flip, cutout"</figcaption></figure>
        </div>
    }
}

/// Keeps the recipe selector and the fields in step: choosing a recipe fills every field it
/// sets (run settings such as width, subsets and seed stay); editing a field shows the recipe
/// the form now matches, or "custom".
fn sync_recipe(ui: Ui, recipe_changed: bool) {
    let form = ui.form.get_untracked();
    let recipe = form.iter().find(|(k, _)| k == "recipe").map(|(_, v)| v.clone()).unwrap_or_default();
    let others = form.iter().filter(|(k, _)| k != "recipe").map(|(k, v)| (k.as_str(), v.as_str()));
    let (mut config, errors) = TrainConfig::from_pairs(others);
    // A recipe that cannot apply, or an edit that leaves a bad value: nothing to sync.
    let unusable = if recipe_changed { config.set_field("recipe", &recipe).is_err() } else { !errors.is_empty() };
    if unusable {
        return;
    }
    ui.form.update(|f| {
        for (k, v) in f.iter_mut() {
            let bad = errors.iter().any(|(key, _)| key == k);
            if (recipe_changed && !bad) || k == "recipe" {
                *v = config.field(k);
            }
        }
    });
}

/// The hyper-parameter form, prefilled from the URL, with a shareable link.
#[component]
pub fn HyperParams(ui: Ui) -> impl IntoView {
    let link = RwSignal::new(String::new());
    let fields = FORM_FIELDS.iter().map(|(key, label)| {
        let key = key.to_string();
        let k1 = key.clone();
        let k2 = key.clone();
        let k3 = key.clone();
        let value = move || ui.form.get().iter().find(|(k, _)| *k == k1).map(|(_, v)| v.clone()).unwrap_or_default();
        let error = move || ui.form_errors.get().iter().find(|(k, _)| *k == k2).map(|(_, e)| e.clone());
        let on_input = move |ev: leptos::ev::Event| {
            let v = if BOOL_FIELDS.contains(&k3.as_str()) {
                let input: web_sys::HtmlInputElement = event_target(&ev);
                input.checked().to_string()
            } else {
                event_target_value(&ev)
            };
            // A typed peak stays; a chosen recipe brings its own, which then moves again.
            match k3.as_str() {
                "peak_epoch" => ui.peak_set.set(true),
                "recipe" => ui.peak_set.set(false),
                _ => {}
            }
            // Shorter or longer runs move the peak with them, as `?epochs=` does, unless the
            // visitor or the link set it.
            let moved_peak = (k3 == "epochs" && !ui.peak_set.get_untracked())
                .then(|| {
                    let mut c = TrainConfig::new();
                    c.set_field("epochs", &v).ok().map(|_| TrainConfig::scaled_peak(c.epochs).to_string())
                })
                .flatten();
            ui.form.update(|f| {
                if let Some(slot) = f.iter_mut().find(|(k, _)| *k == k3) {
                    slot.1 = v;
                }
                if let Some(peak) = moved_peak {
                    if let Some(slot) = f.iter_mut().find(|(k, _)| k == "peak_epoch") {
                        slot.1 = peak;
                    }
                }
            });
            sync_recipe(ui, k3 == "recipe");
            let _ = actions::form_config(ui);
        };
        let input = if key == "recipe" {
            let value = value.clone();
            let options = RECIPES
                .iter()
                .chain(["custom"].iter())
                .map(|r| {
                    let value = value.clone();
                    view! { <option value=*r prop:selected=move || value() == *r>{*r}</option> }
                })
                .collect_view();
            view! { <select data-testid="hp-recipe" on:change=on_input>{options}</select> }.into_any()
        } else if BOOL_FIELDS.contains(&key.as_str()) {
            let value = value.clone();
            view! { <input type="checkbox" data-testid=format!("hp-{key}") prop:checked=move || value() == "true" on:change=on_input /> }.into_any()
        } else {
            view! { <input type="text" inputmode="decimal" data-testid=format!("hp-{key}") prop:value=value on:input=on_input /> }.into_any()
        };
        view! {
            <label class="field">
                <span>{*label}</span>
                {input}
                <small class="error" data-testid=format!("hp-{key}-error")>{move || error().unwrap_or_default()}</small>
            </label>
        }
    }).collect_view();
    let copy = move |_| {
        let form = ui.form.get_untracked();
        let (config, _) = TrainConfig::from_pairs(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let Some(loc) = web_sys::window().map(|w| w.location()) else { return };
        let base = format!("{}{}", loc.origin().unwrap_or_default(), loc.pathname().unwrap_or_default());
        let mut q = config.to_query();
        let data = ui.data_url.get_untracked();
        if data != "data/cifar-10-batches-bin/" {
            q = format!("{q}{}data={}", if q.is_empty() { "" } else { "&" }, String::from(js_sys::encode_uri_component(&data)));
        }
        let url = if q.is_empty() { base } else { format!("{base}?{q}") };
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&url);
        }
        link.set(url);
    };
    view! {
        <section class="card" data-testid="hparams">
            <h2>"2 · Recipe"</h2>
            <div class="fields">{fields}</div>
            <div class="row">
                <button class="small" data-testid="copy-link" on:click=copy>"Copy link with these settings"</button>
                <input class="link" readonly data-testid="share-link" prop:value=move || link.get() />
            </div>
        </section>
    }
}

/// LR range test: run, plot, suggest, apply.
#[component]
pub fn LrFinder(ui: Ui) -> impl IntoView {
    let canvas = NodeRef::<html::Canvas>::new();
    Effect::new(move || {
        let points = ui.lr_points.get();
        let suggestion = ui.lr_suggestion.get();
        if let Some(c) = canvas.get() {
            if !points.is_empty() {
                let _ = charts::draw_lr_finder(&c, &points, suggestion);
            }
        }
    });
    let use_it = move |_| {
        if let Some(s) = ui.lr_suggestion.get_untracked() {
            ui.form.update(|f| {
                if let Some(slot) = f.iter_mut().find(|(k, _)| k == "max_lr") {
                    slot.1 = format!("{s:.4}");
                }
            });
            let _ = actions::form_config(ui);
        }
    };
    view! {
        <section class="card">
            <h2>"3 · Learning-rate finder"</h2>
            <button data-testid="lr-finder-run" disabled=move || ui.busy() on:click=move |_| actions::run_lr_finder(ui)>
                {move || if ui.phase.get() == Phase::FindingLr { "Finding…" } else { "Run LR range test" }}
            </button>
            <canvas data-testid="lr-finder-chart" node_ref=canvas width="560" height="240"></canvas>
            <p data-testid="lr-finder-suggestion">
                {move || ui.lr_suggestion.get().map(|s| format!("Suggested max LR: {s:.4}")).unwrap_or_default()}
                <button class="small" data-testid="lr-finder-use" disabled=move || ui.lr_suggestion.get().is_none() on:click=use_it>"Use it"</button>
            </p>
            <Message testid="lr-finder-message" signal=ui.lr_message />
        </section>
    }
}

/// Start, pause/resume, stop and the progress bar.
#[component]
pub fn TrainControls(ui: Ui) -> impl IntoView {
    let progress = move || {
        let spe = ui.steps_per_epoch.get().max(1);
        let total = ui.schedule.get().map(|s| s.total_steps).unwrap_or(0);
        let last = ui.batches.with(|b| b.last().cloned());
        let (step, elapsed, ips, epoch, batch) = last
            .map(|b| (b.step, b.elapsed_s, b.images_per_sec, b.epoch + 1, b.batch))
            .unwrap_or((0, 0.0, 0.0, 0, 0));
        // GPU memory in use after the last epoch (read when the queue is drained anyway).
        let memory = ui
            .epochs
            .with(|e| e.last().and_then(|e| e.gpu_mem_mib))
            .map(|m| format!(" · GPU memory {m:.1} MiB"))
            .unwrap_or_default();
        let eta = if step > 0 { elapsed / step as f64 * (total.saturating_sub(step)) as f64 } else { 0.0 };
        let pct = if total > 0 { 100.0 * step as f64 / total as f64 } else { 0.0 };
        (
            pct,
            format!(
                "epoch {epoch}/{} · batch {batch}/{spe} · step {step}/{total} · elapsed {} · ETA {} · {ips:.0} images/s{memory}",
                ui.total_epochs.get(),
                clock(elapsed),
                clock(eta)
            ),
        )
    };
    view! {
        <section class="card">
            <h2>"4 · Train"</h2>
            <div class="row">
                <button class="primary" data-testid="train-start" disabled=move || ui.busy() on:click=move |_| actions::start_training(ui)>
                    {move || format!("Train{}", waits_for_selftest(ui))}
                </button>
                <button data-testid="train-pause" disabled=move || !matches!(ui.phase.get(), Phase::Running | Phase::Paused)
                    on:click=move |_| actions::toggle_pause(ui)>
                    {move || if ui.phase.get() == Phase::Paused { "Resume" } else { "Pause" }}
                </button>
                <button data-testid="train-stop" disabled=move || !ui.busy() on:click=move |_| actions::stop(ui)>"Stop"</button>
                <span class="phase" data-testid="train-phase">{move || match (ui.phase.get(), ui.pausing.get()) {
                    (Phase::Paused, true) => "Paused (the engine finishes the step it is in)".to_string(),
                    (phase, _) => format!("{phase:?}"),
                }}</span>
            </div>
            <div data-testid="train-progress" class="progress-block">
                <progress max="100" value=move || progress().0></progress>
                <div>{move || progress().1}</div>
            </div>
            <Message testid="train-message" signal=ui.message />
            <DeviceLost ui=ui />
            <Benchmark ui=ui />
        </section>
    }
}

/// Shown while the GPU device is lost: why, and the way on without a reload.
#[component]
pub fn DeviceLost(ui: Ui) -> impl IntoView {
    move || {
        ui.device_lost.get().map(|reason| {
            view! {
                <div class="row error" data-testid="device-lost">
                    <span>{format!("GPU device failed: {reason}")}</span>
                    <button class="primary" data-testid="continue-new-device" disabled=move || ui.busy()
                        on:click=move |_| actions::continue_on_new_device(ui)>"Continue on a new device"</button>
                </div>
            }
        })
    }
}

/// Times the training step of the form's width and batch on this GPU (before or instead of a
/// run): the figure to compare across browsers, GPUs and the native build.
#[component]
pub fn Benchmark(ui: Ui) -> impl IntoView {
    view! {
        <div class="row bench">
            <button class="small" data-testid="bench-run" disabled=move || ui.busy() on:click=move |_| actions::run_benchmark(ui)>
                {move || if ui.phase.get() == Phase::Benchmarking { "Measuring…".to_string() } else { format!("Benchmark {} steps{}", ui.bench_steps.get(), waits_for_selftest(ui)) }}
            </button>
            <span data-testid="bench-result" class=move || match ui.bench.get() { Some(Err(_)) => "error", _ => "ok" }>
                {move || match ui.bench.get() {
                    None => String::new(),
                    Some(Ok(b)) => b.summary(),
                    Some(Err(e)) => e,
                }}
            </span>
        </div>
        <p class="muted" data-testid="conv-choice">{move || ui.conv_choice.get()}</p>
        <p class="muted" data-testid="micro-batch">{move || ui.split.get().unwrap_or_default()}</p>
    }
}

/// Schedule, loss and accuracy charts, redrawn as events arrive (a few times a second at most:
/// batch events come every `read_every` steps).
#[component]
pub fn Charts(ui: Ui) -> impl IntoView {
    let schedule = NodeRef::<html::Canvas>::new();
    let loss = NodeRef::<html::Canvas>::new();
    let accuracy = NodeRef::<html::Canvas>::new();
    Effect::new(move || {
        let Some(s) = ui.schedule.get() else { return };
        let step = ui.batches.with(|b| b.last().map(|b| b.step).unwrap_or(0));
        if let Some(c) = schedule.get() {
            let _ = charts::draw_schedule(&c, &s, step, ui.lookahead.get());
        }
    });
    Effect::new(move || {
        let total = ui.schedule.get().map(|s| s.total_steps).unwrap_or(1);
        ui.batches.with(|b| {
            if let (Some(c), false) = (loss.get(), b.is_empty()) {
                let _ = charts::draw_loss(&c, b, total);
            }
        });
    });
    Effect::new(move || {
        let total = ui.total_epochs.get();
        ui.epochs.with(|e| {
            if let (Some(c), false) = (accuracy.get(), e.is_empty()) {
                let _ = charts::draw_accuracy(&c, e, total);
            }
        });
    });
    view! {
        <section class="card wide charts">
            <h2>"5 · Live charts"</h2>
            <div class="chart-row">
                <canvas data-testid="chart-schedule" node_ref=schedule width="420" height="240"></canvas>
                <canvas data-testid="chart-loss" node_ref=loss width="420" height="240"></canvas>
                <canvas data-testid="chart-accuracy" node_ref=accuracy width="420" height="240"></canvas>
            </div>
        </section>
    }
}

/// One row per epoch in the seed's log format.
#[component]
pub fn MetricsTable(ui: Ui) -> impl IntoView {
    let mut headers: Vec<&str> = EpochStats::HEADER.split("  ").map(str::trim).filter(|s| !s.is_empty()).collect();
    headers.extend(["GPU MiB", "First reached"]);
    // Which targets this epoch's test accuracy reached first (the crossings of the whole log).
    let reached = move |epoch: usize| -> String {
        ui.epochs.with(|all| {
            first_crossings(all, &TARGETS)
                .iter()
                .filter_map(|(t, hit)| hit.filter(|c| c.epoch == epoch).map(|_| format!("{:.0}%", t * 100.0)))
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    view! {
        <section class="card wide">
            <h2>"Epoch log"</h2>
            <div class="table-wrap">
            <table data-testid="metrics-table">
                <thead><tr>{headers.into_iter().map(|h| view! { <th>{h}</th> }).collect_view()}</tr></thead>
                <tbody>
                    {move || ui.epochs.get().into_iter().map(|e| view! {
                        <tr>
                            <td>{e.epoch}</td>
                            <td>{format!("{:.4}", e.lr)}</td>
                            <td>{format!("{:.2}", e.train_time_s)}</td>
                            <td>{format!("{:.4}", e.train_loss)}</td>
                            <td>{format!("{:.4}", e.train_acc)}</td>
                            <td>{format!("{:.2}", e.test_time_s)}</td>
                            <td>{format!("{:.4}", e.test_loss)}</td>
                            <td>{format!("{:.4}", e.test_acc)}{(e.tta > 0).then(|| format!(" (TTA {} views)", crate::metrics::tta_views(e.tta)))}</td>
                            <td>{format!("{:.2}", e.total_time_s)}</td>
                            <td>{format!("{:.0}", e.images_per_sec)}</td>
                            <td>{e.gpu_mem_mib.map(|m| format!("{m:.1}")).unwrap_or_default()}</td>
                            <td>{reached(e.epoch)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            </div>
            <p class="muted" data-testid="time-to-target">
                "Test accuracy first reached: " {move || ui.epochs.with(|e| crossings_summary(e))}
            </p>
        </section>
    }
}

/// The most confident mistakes and the confusion matrix.
#[component]
pub fn Mistakes(ui: Ui) -> impl IntoView {
    let gallery = NodeRef::<html::Canvas>::new();
    let matrix = NodeRef::<html::Canvas>::new();
    Effect::new(move || {
        let Some(eval) = ui.evaluation.get() else { return };
        let (class_names, images) = with_shown(|s| (s.class_names.clone(), s.mistakes.clone()));
        let name = |c: usize| class_names.get(c).map(String::as_str).unwrap_or("?").to_string();
        if let Some(c) = gallery.get() {
            // The engine sent the first mistakes' images, in order, with the evaluation.
            let shown: Vec<Vec<u8>> = images.chunks_exact(crate::data::IMAGE_BYTES).map(<[u8]>::to_vec).collect();
            let captions: Vec<String> = eval
                .mistakes
                .iter()
                .take(shown.len())
                .map(|m| format!("{}\n→ {} {:.0}%", name(m.label), name(m.predicted), m.confidence * 100.0))
                .collect();
            // Scale 3: the captions ("→ automobile 97%") need ~100 px a cell.
            charts::draw_grid(&c, &shown, &captions, 8, 3);
        }
        if let Some(c) = matrix.get() {
            charts::draw_confusion(&c, &eval, &class_names);
        }
    });
    view! {
        <section class="card wide">
            <h2>"6 · Mistakes"</h2>
            <div class="mistakes">
                <div data-testid="misclassified">
                    <p data-testid="misclassified-count">{move || ui.evaluation.get().map(|e|
                        format!("{} misclassified of {} test images ({:.2}% accuracy); most confident mistakes:", e.wrong, e.images, e.accuracy * 100.0))
                        .unwrap_or_else(|| "Mistakes appear after the first evaluation.".into())}</p>
                    <canvas node_ref=gallery width="0" height="0"></canvas>
                </div>
                <div data-testid="confusion-matrix">
                    <canvas node_ref=matrix width="0" height="0"></canvas>
                </div>
            </div>
        </section>
    }
}

/// One card's message line: an error in red, information otherwise.
#[component]
pub fn Message(testid: &'static str, signal: RwSignal<Option<(bool, String)>>) -> impl IntoView {
    view! {
        <p data-testid=testid class=move || match signal.get() { Some((true, _)) => "error", _ => "ok" }>
            {move || signal.get().map(|(_, m)| m).unwrap_or_default()}
        </p>
    }
}

/// Downloads, import and prediction.
#[component]
pub fn Weights(ui: Ui) -> impl IntoView {
    let can_export = move || ui.exportable.get() && ui.phase.get() != Phase::Running;
    let has_metrics = move || !ui.epochs.get().is_empty();
    view! {
        <section class="card wide">
            <h2>"7 · Weights and prediction"</h2>
            <div class="row">
                <button data-testid="export-weights" disabled=move || !can_export() on:click=move |_| actions::export_weights(ui, false)>"Download weights (.bpk)"</button>
                <button data-testid="export-safetensors" disabled=move || !can_export() on:click=move |_| actions::export_weights(ui, true)>"Download .safetensors"</button>
                <button data-testid="export-metrics" disabled=move || !has_metrics() on:click=move |_| actions::export_metrics(ui, false)>"Metrics JSON"</button>
                <button data-testid="export-metrics-csv" disabled=move || !has_metrics() on:click=move |_| actions::export_metrics(ui, true)>"Metrics CSV"</button>
            </div>
            <div class="row">
                <label>"Import weights (.bpk or .safetensors): "
                    <input type="file" data-testid="import-weights" accept=".bpk,.safetensors"
                        on:change=move |ev| {
                            let input: web_sys::HtmlInputElement = event_target(&ev);
                            if let Some(f) = files_of(&input).into_iter().next() { actions::import_weights(ui, f); }
                            input.set_value("");
                        } />
                </label>
            </div>
            <div class="row">
                <label>"Classify an image: "
                    <input type="file" data-testid="predict-input" accept="image/*"
                        on:change=move |ev| {
                            let input: web_sys::HtmlInputElement = event_target(&ev);
                            if let Some(f) = files_of(&input).into_iter().next() { actions::predict_file(ui, f); }
                            input.set_value("");
                        } />
                </label>
                <span data-testid="predict-result" class=move || match ui.predict.get() { Some(Err(_)) => "error", _ => "ok" }>
                    {move || match ui.predict.get() { Some(Ok(s)) => s, Some(Err(e)) => e, None => String::new() }}
                </span>
            </div>
            <Message testid="weights-message" signal=ui.weights_message />
        </section>
    }
}

/// A GPU button's note while WebGPU starts or the self-test runs: a click then waits for the
/// self-test and runs as soon as it passes.
fn waits_for_selftest(ui: Ui) -> &'static str {
    if ui.compute.get().is_some_and(|c| c.cpu && !c.ready) {
        return " (after the CPU self-test)";
    }
    match (ui.gpu.get(), ui.selftest.get()) {
        (None, _) | (Some(Ok(_)), None) => " (after the GPU self-test)",
        _ => "",
    }
}
