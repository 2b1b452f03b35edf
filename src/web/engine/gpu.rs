//! WebGPU start-up: one burn device per page, created asynchronously before any tensor.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use burn::prelude::*;
use burn::tensor::wgpu::{wgpu, WgpuSetup};

use crate::web::protocol::GpuUnavailable;

/// The adapter burn picked, for the status line.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub device: Device,
    pub name: String,
    /// What the page can see of the adapter (`conv_choice::device_key`): where its choice of
    /// convolution algorithm is remembered.
    pub key: String,
    pub backend: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    /// The wgpu objects behind `device`: the page listens on them for a lost device.
    pub setup: WgpuSetup,
}

impl GpuInfo {
    /// One-line description shown in `webgpu-status`.
    pub fn summary(&self) -> String {
        format!(
            "WebGPU ready: {} ({}) · maxBufferSize {} MiB · maxStorageBufferBindingSize {} MiB",
            self.name,
            self.backend,
            self.max_buffer_size >> 20,
            self.max_storage_buffer_binding_size >> 20
        )
    }
}

/// How to get WebGPU, in words for anyone.
pub const HOW_TO_GET_WEBGPU: &str = "To train on your GPU, open this page in Chrome or Edge \
(version 113 or later, desktop) or Safari 26+; in Firefox turn on dom.webgpu.enabled in \
about:config. On Linux, Chrome may also need chrome://flags/#enable-unsafe-webgpu.";

enum State {
    Idle,
    Busy,
    Done(Result<GpuInfo, GpuUnavailable>),
}

thread_local! {
    static GPU: RefCell<State> = const { RefCell::new(State::Idle) };
}

/// The browser's own `GPUAdapterInfo` (wgpu leaves it empty on the web): vendor,
/// architecture, device and description, each empty where the browser keeps it to itself.
async fn browser_adapter_info() -> Option<Vec<(&'static str, String)>> {
    use wasm_bindgen_futures::JsFuture;
    let navigator = crate::web::js::global("navigator")?;
    let gpu = js_sys::Reflect::get(&navigator, &"gpu".into()).ok()?;
    let request = js_sys::Reflect::get(&gpu, &"requestAdapter".into()).ok()?;
    let request: js_sys::Function = wasm_bindgen::JsCast::dyn_into(request).ok()?;
    let promise: js_sys::Promise = wasm_bindgen::JsCast::dyn_into(request.call0(&gpu).ok()?).ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    let info = js_sys::Reflect::get(&adapter, &"info".into()).ok()?;
    let field = |k: &str| js_sys::Reflect::get(&info, &k.into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    Some(["vendor", "architecture", "device", "description"].into_iter().map(|k| (k, field(k))).collect())
}

/// The adapter's name for people: wgpu's, else the description, else vendor and architecture.
fn adapter_name(wgpu_name: &str, browser: &[(&str, String)]) -> String {
    let field = |k: &str| browser.iter().find(|(key, _)| *key == k).map(|(_, v)| v.trim().to_string()).unwrap_or_default();
    let name = if !wgpu_name.is_empty() {
        wgpu_name.to_string()
    } else if !field("description").is_empty() {
        field("description")
    } else {
        format!("{} {}", field("vendor"), field("architecture")).trim().to_string()
    };
    if name.is_empty() { "unnamed adapter".into() } else { name }
}

/// Initialises burn's WebGPU device once per page; later calls return the same result.
pub async fn init() -> Result<GpuInfo, GpuUnavailable> {
    // cubecl's registrations live in static constructors: they must have run.
    crate::ctors::run_once();
    loop {
        let ready = GPU.with(|g| match &*g.borrow() {
            State::Done(r) => Some(Some(r.clone())),
            State::Busy => Some(None),
            State::Idle => None,
        });
        match ready {
            Some(Some(r)) => return r,
            Some(None) => gloo::timers::future::TimeoutFuture::new(20).await,
            None => break,
        }
    }
    GPU.with(|g| *g.borrow_mut() = State::Busy);
    let result = if !crate::web::js::has_navigator_gpu() {
        Err(GpuUnavailable {
            plain: "This browser does not offer WebGPU.".into(),
            reason: "this browser has no WebGPU".into(),
            detail: "navigator.gpu is missing".into(),
        })
    } else {
        match Device::wgpu_options().init_with_setup_async().await {
            Ok((device, setup)) => Ok(describe(device, setup).await),
            Err(e) => Err(GpuUnavailable {
                plain: "This browser has WebGPU but no graphics adapter it lets this page use.".into(),
                reason: "WebGPU found no usable graphics adapter".into(),
                detail: format!("WebGPU initialisation failed: {e}"),
            }),
        }
    };
    GPU.with(|g| *g.borrow_mut() = State::Done(result.clone()));
    result
}

async fn describe(device: Device, setup: WgpuSetup) -> GpuInfo {
    let info = setup.adapter.get_info();
    let limits = setup.device.limits();
    let browser = browser_adapter_info().await.unwrap_or_default();
    let name = adapter_name(&info.name, &browser);
    let mut seen: Vec<(&str, &str)> = browser.iter().map(|(k, v)| (*k, v.as_str())).collect();
    seen.push(("name", &info.name));
    let key = crate::conv_choice::device_key(
        &seen,
        &format!("{:?}", setup.adapter.limits()),
        &format!("{:?}", setup.adapter.features()),
    );
    GpuInfo {
        device,
        name,
        key,
        backend: format!("{:?}", info.backend),
        max_buffer_size: limits.max_buffer_size,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size as u64,
        setup,
    }
}

/// A new WebGPU device after the first was lost, without a reload. burn keeps its runtime for
/// the lost device registered (a second default init is refused), so the new one is built
/// from raw wgpu objects and registered as a device of its own.
pub async fn replace() -> Result<GpuInfo, String> {
    let instance = wgpu::Instance::default();
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions::default())
        .await
        .map_err(|e| format!("no WebGPU adapter is available any more ({e}). {HOW_TO_GET_WEBGPU}"))?;
    // The adapter's own limits, as burn asks for them: large batches need its largest buffers.
    let descriptor = wgpu::DeviceDescriptor {
        label: Some("cifar10-webgpu (replacement)"),
        required_limits: adapter.limits(),
        required_features: adapter.features(),
        ..Default::default()
    };
    let (device, queue) =
        adapter.request_device(&descriptor).await.map_err(|e| format!("the GPU refused a new device: {e}"))?;
    let backend = adapter.get_info().backend;
    let setup = WgpuSetup { instance, adapter, device, queue, backend };
    let device = Device::wgpu_options()
        .setup(setup.clone())
        .init()
        .map_err(|e| format!("burn could not use the new device: {e}"))?;
    let info = describe(device, setup).await;
    GPU.with(|g| *g.borrow_mut() = State::Done(Ok(info.clone())));
    Ok(info)
}

/// Resolves when the browser reports the device lost (`GPUDevice.lost`), with its reason and
/// message. A promise has room for any number of listeners: cubecl's own (which fails every
/// later GPU call) stays in place.
pub async fn lost(info: &GpuInfo) -> Option<String> {
    let device = info.setup.device.as_webgpu()?;
    let promise: js_sys::Promise = wasm_bindgen::JsCast::unchecked_into(device.lost());
    let lost = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let field = |k: &str| js_sys::Reflect::get(&lost, &k.into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    Some(format!("{} {}", field("reason"), field("message")).trim().to_string())
}

/// Test-only: destroys the device (`GPUDevice.destroy()`), as a driver reset would lose it.
pub fn destroy(info: &GpuInfo) {
    info.setup.device.destroy();
}

/// The first uncaptured GPU error since it was last taken.
static GPU_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Records uncaptured GPU errors (validation, out of memory, internal) instead of panicking.
/// This replaces cubecl's handler, which panics on a healthy device, and a panic ends a wasm
/// page, run and weights included; the page instead stops what runs on the GPU and says why
/// (`take_error`). cubecl's device-lost callback, a separate one, stays.
pub fn watch_errors(info: &GpuInfo) {
    info.setup.device.on_uncaptured_error(Arc::new(|error: wgpu::Error| {
        log::error!("uncaptured GPU error: {error}");
        if let Ok(mut slot) = GPU_ERROR.lock() {
            slot.get_or_insert_with(|| error.to_string());
        }
    }));
}

/// The uncaptured GPU error recorded since the last call, if any.
pub fn take_error() -> Option<String> {
    GPU_ERROR.lock().ok()?.take()
}

/// Test-only: asks for a buffer larger than the device allows, a validation error that no
/// call returns (like a kernel the driver rejects).
pub fn provoke_error(info: &GpuInfo) {
    let _ = info.setup.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("test: larger than maxBufferSize"),
        size: info.max_buffer_size.saturating_add(256),
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
}
