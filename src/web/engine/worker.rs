//! The engine's worker: the page's own wasm, started a second time in a dedicated worker by
//! `link.rs`. Commands arrive as messages and updates go back as messages; byte arrays are
//! transferred, not copied.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::commands as engine;
use crate::web::protocol::{decode, encode, Command, DeviceChoice, Update};

fn scope() -> Option<web_sys::DedicatedWorkerGlobalScope> {
    js_sys::global().dyn_into().ok()
}

/// Posts an update to the page, transferring the buffers of byte-array attachments.
fn post(update: Update, attachments: Vec<JsValue>) {
    let Some(scope) = scope() else { return };
    let transfer: js_sys::Array = attachments
        .iter()
        .filter_map(|a| a.dyn_ref::<js_sys::Uint8Array>().map(|a| JsValue::from(a.buffer())))
        .collect();
    if let Err(e) = scope.post_message_with_transfer(&encode(&update, &attachments), &transfer) {
        web_sys::console::error_1(&format!("the engine could not post {update:?}: {e:?}").into());
    }
}

fn on_command(message: &JsValue) {
    match decode::<Command>(message) {
        // No WebGPU here but on the page (a browser may expose it to pages only): the page runs
        // the engine, on its GPU. Without WebGPU anywhere the engine stays here, on the CPU.
        Ok((Command::Start(options), _))
            if !crate::web::js::has_navigator_gpu() && options.page_has_webgpu && options.device != DeviceChoice::Cpu =>
        {
            post(Update::NoWebGpuInWorker, Vec::new())
        }
        Ok((command, attachments)) => engine::handle(command, attachments),
        Err(e) => web_sys::console::error_1(&format!("engine: command dropped: {e}").into()),
    }
}

/// The worker's entry point, called by the boot script once the wasm is up, with the commands
/// that arrived before.
#[wasm_bindgen]
pub fn cifar10_worker_main(early: js_sys::Array) {
    crate::ctors::run_once();
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        post(Update::Panic(format!("The engine crashed: {info}. Reload the page; please report this.")), Vec::new());
    }));
    engine::set_sink(Rc::new(post));
    let Some(scope) = scope() else { return };
    let handler = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(|event: web_sys::MessageEvent| on_command(&event.data()));
    scope.set_onmessage(Some(handler.as_ref().unchecked_ref()));
    handler.forget();
    for message in early.iter() {
        on_command(&message);
    }
}
