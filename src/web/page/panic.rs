//! A crash is never a silent blank page: the panic shows in a banner as well as the console.

use wasm_bindgen::JsCast;

/// Shows any panic in the page (`data-testid="panic"`) as well as in the console.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        show(&format!("The app crashed: {info}. Reload the page; please report this."));
    }));
}

/// Puts a message in the page's panic banner (`data-testid="panic"`), creating it if needed.
pub fn show(message: &str) {
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
