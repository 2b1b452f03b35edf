//! The page's end of the link to the engine: a dedicated worker running the same wasm (the
//! default), or the engine on the page's own thread (`?worker=0`, or a browser without WebGPU
//! in workers). Commands go one way and updates come back, the same messages either way.

use std::cell::RefCell;
use std::rc::Rc;

use leptos::prelude::{GetUntracked, Set};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::state::Ui;
use crate::web::engine::commands as engine;
use crate::web::protocol::{decode, encode, Command, Update};

enum Link {
    Local,
    Worker(web_sys::Worker),
}

/// What the page does with an update (`actions::apply`, handed in by the app, so the link
/// does not import the module that sends through it).
pub type Apply = Rc<dyn Fn(Update, Vec<JsValue>)>;

thread_local! {
    static LINK: RefCell<Option<Link>> = const { RefCell::new(None) };
    static APPLY: RefCell<Option<Apply>> = const { RefCell::new(None) };
}

/// The page's handler of updates; one that drops them (logged) before `start`.
fn apply() -> Apply {
    APPLY.with(|a| a.borrow().clone())
        .unwrap_or_else(|| Rc::new(|update, _| log::warn!("engine update before the page listened: {update:?}")))
}

/// Whether the engine runs in a worker.
pub fn in_worker() -> bool {
    LINK.with(|l| matches!(*l.borrow(), Some(Link::Worker(_))))
}

/// Starts the engine where the page's settings say, and sends it `Command::Start`; its
/// updates go to `apply`.
pub fn start(ui: Ui, apply: Apply) {
    APPLY.with(|a| *a.borrow_mut() = Some(apply));
    if ui.worker.get_untracked() {
        match spawn_worker(ui) {
            Ok(worker) => {
                LINK.with(|l| *l.borrow_mut() = Some(Link::Worker(worker)));
                ui.engine_thread.set("Engine: in a dedicated worker (the page stays responsive while a step runs)".into());
                return send(start_command(ui), Vec::new());
            }
            Err(e) => return fall_back(ui, &format!("the worker could not start: {e}")),
        }
    }
    ui.engine_thread.set("Engine: on the page's thread (?worker=0)".into());
    local(ui);
}

fn start_command(ui: Ui) -> Command {
    let mut options = ui.options.get_untracked();
    options.page_has_webgpu = crate::web::js::has_navigator_gpu();
    Command::Start(options)
}

/// The engine on the page's thread: updates go straight to the signals.
fn local(ui: Ui) {
    engine::set_sink(apply());
    LINK.with(|l| *l.borrow_mut() = Some(Link::Local));
    send(start_command(ui), Vec::new());
}

/// Moves the engine onto the page's thread, saying why.
pub fn fall_back(ui: Ui, why: &str) {
    log::warn!("engine on the page's thread: {why}");
    if let Some(Link::Worker(w)) = LINK.with(|l| l.borrow_mut().take()) {
        w.terminate();
    }
    ui.engine_thread.set(format!("Engine: on the page's thread ({why}); the page may not answer while a step runs"));
    local(ui);
}

/// Sends a command to the engine with its attachments (files are cloned handles).
pub fn send(command: Command, attachments: Vec<JsValue>) {
    let worker = LINK.with(|l| match &*l.borrow() {
        Some(Link::Worker(w)) => Some(Some(w.clone())),
        Some(Link::Local) => Some(None),
        None => None,
    });
    match worker {
        Some(Some(worker)) => {
            if let Err(e) = worker.post_message(&encode(&command, &attachments)) {
                log::error!("could not send {command:?} to the engine: {e:?}");
            }
        }
        Some(None) => engine::handle(command, attachments),
        None => log::warn!("no engine yet for {command:?}"),
    }
}

/// The engine's worker (`spawn.rs`), its updates handed to the page.
fn spawn_worker(ui: Ui) -> Result<web_sys::Worker, String> {
    let worker = crate::web::spawn::module_worker()?;
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
        let data = event.data();
        if let Some(error) = js_sys::Reflect::get(&data, &"bootError".into()).ok().and_then(|e| e.as_string()) {
            return fall_back(ui, &format!("the worker could not start: {error}"));
        }
        match decode::<Update>(&data) {
            Ok((update, attachments)) => {
                engine_answered();
                apply()(update, attachments)
            }
            Err(e) => log::error!("engine update dropped: {e}"),
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
        let message = js_sys::Reflect::get(&event, &"message".into()).ok().and_then(|m| m.as_string());
        // Only a worker that never came up is replaced; a later error is the engine's panic,
        // which the panic banner shows.
        if in_worker() && !ENGINE_UP.with(|u| u.get()) {
            fall_back(ui, &format!("the worker failed: {}", message.unwrap_or_else(|| "no reason given".into())));
        }
    });
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();

    crate::web::spawn::boot(&worker, "cifar10_worker_main")?;
    Ok(worker)
}

thread_local! {
    /// Whether the worker's engine has answered once.
    static ENGINE_UP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Notes that the worker's engine answered (called for every update from it).
fn engine_answered() {
    ENGINE_UP.with(|u| u.set(true));
}
