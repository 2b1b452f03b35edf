//! A CPU helper: this wasm once more, in a worker the engine started (`pool.rs`), holding one
//! replica of the model (`replicas::replica`). Jobs arrive one at a time as messages
//! (`{task: JSON, weights?: Float32Array, images: Float32Array}`) and each is answered with
//! `{answer: JSON, flat: Float32Array}` or `{error: text}`; arrays are transferred.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::replicas::replica::Helper;
use crate::replicas::{Job, Task};
use crate::web::spawn::{floats, read_floats};

fn scope() -> Option<web_sys::DedicatedWorkerGlobalScope> {
    js_sys::global().dyn_into().ok()
}

fn post(message: &js_sys::Object, transfer: &js_sys::Array) {
    if let Some(scope) = scope() {
        if let Err(e) = scope.post_message_with_transfer(message, transfer) {
            web_sys::console::error_1(&format!("a CPU helper could not answer: {e:?}").into());
        }
    }
}

fn error(text: &str) {
    let message = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&message, &"error".into(), &text.into());
    post(&message, &js_sys::Array::new());
}

/// Decodes a job message (see the module's comment).
pub fn decode_job(message: &JsValue) -> Result<Job, String> {
    let task = js_sys::Reflect::get(message, &"task".into()).ok().and_then(|t| t.as_string()).ok_or("a job without a task")?;
    let task: Task = serde_json::from_str(&task).map_err(|e| e.to_string())?;
    let has_weights = js_sys::Reflect::get(message, &"weights".into()).is_ok_and(|w| !w.is_undefined());
    Ok(Job { task, weights: has_weights.then(|| read_floats(message, "weights")), images: read_floats(message, "images") })
}

/// A job as a message, with the buffers to transfer.
pub fn encode_job(job: &Job) -> (js_sys::Object, js_sys::Array) {
    let message = js_sys::Object::new();
    let transfer = js_sys::Array::new();
    let _ = js_sys::Reflect::set(&message, &"task".into(), &serde_json::to_string(&job.task).unwrap_or_default().into());
    let images = floats(&job.images);
    transfer.push(&images.buffer());
    let _ = js_sys::Reflect::set(&message, &"images".into(), &images);
    if let Some(weights) = &job.weights {
        let weights = floats(weights);
        transfer.push(&weights.buffer());
        let _ = js_sys::Reflect::set(&message, &"weights".into(), &weights);
    }
    (message, transfer)
}

/// The helper's entry point, called by the boot script (`spawn.rs`) with the messages that
/// arrived before. Answers `{ready: true}` once it listens.
#[wasm_bindgen]
pub fn cifar10_helper_main(early: js_sys::Array) {
    crate::ctors::run_once();
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        error(&format!("the CPU helper crashed: {info}"));
    }));
    let helper = Rc::new(RefCell::new(Helper::new(super::device::cpu(), crate::web::js::now_ms)));
    // Jobs run one after another: the engine sends the next only after this one's answer.
    let queue: Rc<RefCell<Vec<JsValue>>> = Rc::new(RefCell::new(early.iter().collect()));
    let busy = Rc::new(std::cell::Cell::new(false));
    let run = {
        let (helper, queue, busy) = (helper.clone(), queue.clone(), busy.clone());
        Rc::new(move || drain(helper.clone(), queue.clone(), busy.clone()))
    };
    let Some(scope) = scope() else { return };
    let on_message = {
        let (queue, run) = (queue.clone(), run.clone());
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            queue.borrow_mut().push(event.data());
            run();
        })
    };
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    let ready = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&ready, &"ready".into(), &true.into());
    post(&ready, &js_sys::Array::new());
    run();
}

/// Answers the queued jobs in order, one at a time.
fn drain(helper: Rc<RefCell<Helper>>, queue: Rc<RefCell<Vec<JsValue>>>, busy: Rc<std::cell::Cell<bool>>) {
    if busy.get() {
        return;
    }
    busy.set(true);
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let next = {
                let mut q = queue.borrow_mut();
                (!q.is_empty()).then(|| q.remove(0))
            };
            let Some(message) = next else { break };
            let job = match decode_job(&message) {
                Ok(job) => job,
                Err(e) => {
                    error(&format!("a job the helper cannot read: {e}"));
                    continue;
                }
            };
            // The helper is only ever borrowed here, one job at a time.
            let mut h = helper.borrow_mut();
            match h.handle(job).await {
                Ok(answer) => {
                    let message = js_sys::Object::new();
                    let transfer = js_sys::Array::new();
                    let flat = floats(&answer.flat);
                    transfer.push(&flat.buffer());
                    let _ = js_sys::Reflect::set(&message, &"answer".into(), &serde_json::to_string(&answer).unwrap_or_default().into());
                    let _ = js_sys::Reflect::set(&message, &"flat".into(), &flat);
                    post(&message, &transfer);
                }
                Err(e) => error(&e),
            }
        }
        busy.set(false);
    });
}
