//! The browser app, in two sides that talk only through `protocol.rs`:
//! - `page/`: the Leptos UI, its signals and canvases, on the page's thread;
//! - `engine/`: data, the compute device (WebGPU, or the CPU where WebGPU is missing),
//!   training, exports, in a dedicated worker (or on the page's thread with `?worker=0`).
//!
//! `js.rs` and `probe.rs` are small helpers both sides use.

pub mod engine;
pub mod js;
pub mod page;
pub mod probe;
pub mod protocol;
pub mod spawn;

/// The wasm's start: the static constructors once, then the page mounts. In the engine's
/// worker (the same wasm, started by `engine::worker::cifar10_worker_main`) there is no page.
pub fn start() {
    crate::ctors::run_once();
    if web_sys::window().is_none() {
        return;
    }
    page::mount();
}
