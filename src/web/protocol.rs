//! The messages between the page (Leptos UI, canvases) and the engine (data, GPU, training),
//! which runs in a dedicated worker by default and on the page's thread with `?worker=0`, and
//! the types both sides name in them. The one file `page/` and `engine/` share.
//!
//! Both travel as JSON beside a list of attachments: `File`s the user picked (cloned handles)
//! and byte arrays (downloads, gallery images, sample images), whose buffers are transferred,
//! not copied, when they cross to another thread.

use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};

use crate::augment::Normalization;
use crate::bench::StepBench;
use crate::metrics::{BatchStats, EpochStats, Evaluation};
use crate::schedule::OneCycle;

/// What the page asks of the engine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    /// The first command: set up WebGPU, run the self-test, look in the browser cache.
    Start(StartOptions),
    LoadUrl { url: String, files: Vec<String> },
    /// Attachments: the picked or dropped `File`s.
    LoadFiles,
    ClearCache,
    Train(Job),
    Benchmark { job: Job, steps: usize },
    FindLr { job: Job, steps: usize },
    Pause,
    Resume,
    Stop,
    ContinueOnNewDevice,
    ExportWeights { safetensors: bool },
    ExportMetrics { csv: bool },
    /// Attachment: the picked weights `File`.
    ImportWeights,
    /// An image the page decoded to 32x32 planar RGB.
    Predict { planar: Vec<u8> },
}

/// Settings of the page's link that the engine acts on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StartOptions {
    /// `?conv=NAME`: the algorithm the link sets; `None` times them (auto).
    pub conv: Option<String>,
    /// Test-only (`?selftest_fault=`): the self-test check whose GPU result is corrupted.
    pub selftest_fault: Option<String>,
    /// Test-only (`?test_lose_device=N`): destroy the device during epoch N of the next run.
    pub lose_device_in_epoch: Option<usize>,
    /// Test-only (`?test_gpu_error=N`): an uncaptured GPU error during epoch N.
    pub gpu_error_in_epoch: Option<usize>,
    /// Test-only (`?test_hold_selftest=1`): the GPU self-test starts only once a GPU action
    /// waits for it, so a test's click lands while it runs, however slow the machine.
    pub hold_selftest: bool,
    /// `?count_gpu_calls=1`: count WebGPU calls where the GPU is used.
    pub count_gpu_calls: bool,
    /// `?device=`: the GPU where there is one (default), the CPU, or the GPU only.
    pub device: DeviceChoice,
    /// Test-only (`?test_max_binding_mib=N`): the storage-binding limit is at most N MiB, so a
    /// narrow net exercises the micro-batches a small adapter needs.
    pub max_binding_mib: Option<u64>,
    /// `?cpu_workers=N`: on the CPU, train on N workers (the engine and N - 1 helpers); `None`:
    /// as many as the browser reports cores, at most `device::MOST_WORKERS`; 1: the engine alone.
    pub cpu_workers: Option<usize>,
    /// Test-only (`?test_kill_cpu_worker=STEP`): a CPU helper is killed while it holds its
    /// slice of this step (counted from 0 in each run).
    pub kill_cpu_worker_at: Option<usize>,
    /// Whether the page's own thread has `navigator.gpu`: a worker without it then hands the
    /// engine to the page (GPU there) instead of training on the CPU.
    pub page_has_webgpu: bool,
}

/// Which device the engine computes on (`?device=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceChoice {
    /// WebGPU where it works, else the CPU.
    #[default]
    Auto,
    /// The CPU even where WebGPU works (`?device=cpu`).
    Cpu,
    /// WebGPU or nothing (`?device=gpu`): refuses rather than falls back.
    Gpu,
}

impl DeviceChoice {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "auto" => Some(Self::Auto),
            "cpu" => Some(Self::Cpu),
            "gpu" => Some(Self::Gpu),
            _ => None,
        }
    }
}

/// Why WebGPU is not used: one sentence for anyone, and the browser's own words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuUnavailable {
    /// The sentences the status shows: what is missing, what the page does, how to get WebGPU.
    pub plain: String,
    /// A few words, for the compute device's line ("this browser has no WebGPU").
    pub reason: String,
    /// The browser's or wgpu's own message, one click away on the page.
    pub detail: String,
}

/// The device the engine computes on, as the page shows it (`data-testid="compute-device"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeView {
    pub cpu: bool,
    /// Whether its self-test has ended (GPU actions clicked before wait for it).
    pub ready: bool,
    /// "GPU: …" or "CPU (WebAssembly SIMD, 1 thread): why".
    pub line: String,
    /// What the page can see of the device (`conv_choice::device_key`): the page remembers
    /// convolution choices under it.
    pub device_key: String,
    /// On the CPU: a width and batch whose epoch takes minutes, offered, never imposed.
    pub suggestion: Option<CpuSuggestion>,
}

/// Settings the page offers for the CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuSuggestion {
    pub width: f64,
    pub batch: usize,
    pub why: String,
}

/// A GPU action's settings: the form as typed, and a convolution choice the page remembers
/// (localStorage lives on the page's thread) for this adapter, width and batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub form: Vec<(String, String)>,
    /// (algorithm name, the line that explains it).
    pub remembered_conv: Option<(String, String)>,
}

/// The adapter, as the page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuView {
    pub name: String,
    pub summary: String,
}

/// What the engine tells the page; each mostly sets one read-out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Update {
    /// The worker runs, but this browser has no WebGPU in workers: the page takes the engine
    /// onto its own thread.
    NoWebGpuInWorker,
    Gpu(Result<GpuView, GpuUnavailable>),
    /// The device training runs on, and why.
    Compute(ComputeView),
    /// How the batch is split to fit the binding limit (`None`: whole).
    Split(Option<String>),
    SelfTest(Option<(bool, String)>),
    ConvChoice(String),
    /// A timed choice, for the page to remember per device (`ComputeView::device_key`), width
    /// and batch.
    ConvChosen { device_key: String, width: f64, batch: usize, algorithm: String, summary: String },
    Phase(Phase),
    Message { place: Place, message: Option<(bool, String)> },
    DataError(Option<String>),
    DataProgress(Option<Progress>),
    /// Attachment: the first train images (`IMAGE_BYTES` each) for the preview.
    DataLoaded { status: String, class_names: Vec<String>, norm: Normalization, sample_labels: Vec<u8> },
    /// A new run: the read-outs of the previous one are cleared.
    RunStarted { total_epochs: usize, lookahead: bool },
    Schedule { schedule: OneCycle, steps_per_epoch: usize },
    Batch(BatchStats),
    Epoch(EpochStats),
    /// The run as kept (after a failed device, or continued on a new one).
    RunLog { epochs: Vec<EpochStats>, batches: Option<Vec<BatchStats>> },
    /// Attachment: the images of the first mistakes shown in the gallery.
    Evaluated(Evaluation),
    LrReset,
    LrPoint { lr: f64, loss: f32 },
    LrSuggestion(Option<f64>),
    Exportable(bool),
    Predicted(Result<String, String>),
    Bench(Option<Result<StepBench, String>>),
    DeviceLost(Option<String>),
    /// The benchmark read the engine's counters (`Host::probe`): the page reads its own.
    ProbeMark,
    /// Attachment: the bytes to offer as a download.
    Download { name: String, mime: String },
    /// The engine panicked (in the worker): the page shows it.
    Panic(String),
}

/// How many mistakes the gallery shows (their images travel with the evaluation).
pub const GALLERY: usize = 24;
/// How many train images the data preview shows.
pub const PREVIEW: usize = 12;

/// Where the training run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Idle,
    FindingLr,
    Benchmarking,
    Running,
    Paused,
    Stopped,
    Finished,
    Failed,
}

/// The card a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Place {
    Data,
    LrFinder,
    Train,
    Weights,
}

/// Progress of one download or file read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub name: String,
    pub loaded: u64,
    pub total: Option<u64>,
    /// Total bytes of every file so far, and the expected total when known.
    pub all_loaded: u64,
    pub all_total: Option<u64>,
    pub mb_per_s: f64,
    pub phase: String,
}

impl Progress {
    pub fn percent(&self) -> Option<f64> {
        self.total.filter(|t| *t > 0).map(|t| 100.0 * self.loaded as f64 / t as f64)
    }
    pub fn all_percent(&self) -> Option<f64> {
        self.all_total.filter(|t| *t > 0).map(|t| 100.0 * self.all_loaded as f64 / t as f64)
    }
}

/// `{ json, attachments }`: the message as it crosses between threads.
pub fn encode<T: Serialize>(body: &T, attachments: &[JsValue]) -> JsValue {
    let message = js_sys::Object::new();
    let json = serde_json::to_string(body).unwrap_or_default();
    let _ = js_sys::Reflect::set(&message, &"json".into(), &json.into());
    let list: js_sys::Array = attachments.iter().collect();
    let _ = js_sys::Reflect::set(&message, &"attachments".into(), &list);
    message.into()
}

/// The body and attachments of a message made by [`encode`].
pub fn decode<T: serde::de::DeserializeOwned>(message: &JsValue) -> Result<(T, Vec<JsValue>), String> {
    let json = js_sys::Reflect::get(message, &"json".into())
        .ok()
        .and_then(|j| j.as_string())
        .ok_or("a message without a body")?;
    let body = serde_json::from_str(&json).map_err(|e| format!("a message that does not parse ({e}): {json:.200}"))?;
    let attachments = js_sys::Reflect::get(message, &"attachments".into())
        .ok()
        .and_then(|a| a.dyn_into::<js_sys::Array>().ok())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    Ok((body, attachments))
}
