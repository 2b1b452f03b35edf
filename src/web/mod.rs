//! The browser app: Leptos components wired to the engine's events.

pub mod actions;
pub mod app;
pub mod charts;
pub mod gpu;
pub mod loader;
pub mod probe;
pub mod state;

use wasm_bindgen::JsCast;

/// Runs the static constructors once, installs the panic hook and mounts the app on `<body>`.
pub fn start() {
    crate::ctors::run_once();
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
