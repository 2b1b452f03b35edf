//! The browser app: Leptos components wired to the engine's events.

pub mod actions;
pub mod app;
pub mod charts;
pub mod engine;
pub mod gpu;
pub mod link;
pub mod loader;
pub mod probe;
pub mod protocol;
pub mod state;
pub mod worker;

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

/// Runs the static constructors once, installs the panic hook and mounts the app on `<body>`.
/// In the engine's worker (the same wasm, started by `worker::cifar10_worker_main`) there is
/// no page to mount.
pub fn start() {
    crate::ctors::run_once();
    if web_sys::window().is_none() {
        return;
    }
    install_panic_hook();
    leptos::mount::mount_to_body(app::App);
}

/// Shows any panic in the page (`data-testid="panic"`) as well as in the console, so a crash
/// is never a silent blank page.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        show_panic(&format!("The app crashed: {info}. Reload the page; please report this."));
    }));
}

/// Puts a message in the page's panic banner (`data-testid="panic"`), creating it if needed.
pub fn show_panic(message: &str) {
    {
        let Some(document) = web_sys::window().and_then(|w| w.document()) else { return };
        let node = match document.query_selector("[data-testid=panic]").ok().flatten() {
            Some(node) => node,
            None => {
                let Ok(div) = document.create_element("div") else { return };
                let _ = div.set_attribute("data-testid", "panic");
                let _ = div.set_attribute("class", "panic");
                if let Some(body) = document.body() {
                    let _ = body.prepend_with_node_1(&div);
                }
                div
            }
        };
        if let Some(el) = node.dyn_ref::<web_sys::HtmlElement>() {
            el.set_inner_text(message);
        }
    }
}
