//! The JavaScript globals both sides need, in a window or a worker alike.

use wasm_bindgen::{JsCast, JsValue};

/// A property of the global object: the same code runs in the page and in the engine's worker,
/// where there is no `window`.
pub fn global(name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(&js_sys::global(), &name.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// `performance.now()` in a window or a worker.
pub fn now_ms() -> f64 {
    global("performance")
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// Whether this global (the page or a worker) has `navigator.gpu`.
pub fn has_navigator_gpu() -> bool {
    global("navigator")
        .and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()).ok())
        .is_some_and(|gpu| !gpu.is_undefined() && !gpu.is_null())
}
