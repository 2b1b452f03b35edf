//! WebGPU start-up: one burn device per page, created asynchronously before any tensor.

use std::cell::RefCell;

use burn::prelude::*;

/// The adapter burn picked, for the status line.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub device: Device,
    pub name: String,
    pub backend: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
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

/// Advice when WebGPU is missing or failed.
pub const NO_WEBGPU_HELP: &str = "This app trains on your GPU through WebGPU. Use a recent \
Chrome or Edge (113+, desktop) or Safari 26+; in Firefox enable dom.webgpu.enabled. On Linux \
Chrome may need chrome://flags/#enable-unsafe-webgpu (and #enable-vulkan). Headless Chromium \
needs --enable-unsafe-webgpu.";

enum State {
    Idle,
    Busy,
    Done(Result<GpuInfo, String>),
}

thread_local! {
    static GPU: RefCell<State> = const { RefCell::new(State::Idle) };
}

/// The adapter's description from the browser's own `GPUAdapterInfo` (wgpu leaves the name
/// empty on the web): description, else vendor and architecture.
async fn browser_adapter_name() -> Option<String> {
    use wasm_bindgen_futures::JsFuture;
    let navigator = web_sys::window()?.navigator();
    let gpu = js_sys::Reflect::get(&navigator, &"gpu".into()).ok()?;
    let request = js_sys::Reflect::get(&gpu, &"requestAdapter".into()).ok()?;
    let request: js_sys::Function = wasm_bindgen::JsCast::dyn_into(request).ok()?;
    let promise: js_sys::Promise = wasm_bindgen::JsCast::dyn_into(request.call0(&gpu).ok()?).ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    let info = js_sys::Reflect::get(&adapter, &"info".into()).ok()?;
    let field = |k: &str| js_sys::Reflect::get(&info, &k.into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    let description = field("description");
    let name = if description.is_empty() {
        format!("{} {}", field("vendor"), field("architecture")).trim().to_string()
    } else {
        description
    };
    (!name.is_empty()).then_some(name)
}

fn has_navigator_gpu() -> bool {
    web_sys::window()
        .map(|w| w.navigator())
        .and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()).ok())
        .is_some_and(|gpu| !gpu.is_undefined() && !gpu.is_null())
}

/// Initialises burn's WebGPU device once per page; later calls return the same result.
pub async fn init() -> Result<GpuInfo, String> {
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
    let result = if !has_navigator_gpu() {
        Err(format!("WebGPU is not available in this browser (navigator.gpu is missing). {NO_WEBGPU_HELP}"))
    } else {
        match Device::wgpu_options().init_with_setup_async().await {
            Ok((device, setup)) => {
                let info = setup.adapter.get_info();
                let limits = setup.device.limits();
                let name = if info.name.is_empty() {
                    browser_adapter_name().await.unwrap_or_else(|| "unnamed adapter".into())
                } else {
                    info.name
                };
                Ok(GpuInfo {
                    device,
                    name,
                    backend: format!("{:?}", info.backend),
                    max_buffer_size: limits.max_buffer_size,
                    max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size as u64,
                })
            }
            Err(e) => Err(format!("WebGPU initialisation failed: {e}. {NO_WEBGPU_HELP}")),
        }
    };
    GPU.with(|g| *g.borrow_mut() = State::Done(result.clone()));
    result
}
