//! The CPU engine's helpers: workers that each run this wasm once more (`spawn.rs`,
//! `helper.rs`) and hold a replica of the model, so a batch's forward and backward passes and
//! each evaluation run on as many cores as the browser reports (`replicas`). Nothing is
//! shared: weights and images go out, gradients come back, as transferred arrays.
//!
//! A helper that fails to start is left out; one that dies later (an error event, a crash it
//! reports, or the test hook `?test_kill_cpu_worker=STEP`) answers its job with an error, is
//! retired, and the step computes its slice on the engine's thread: the run goes on with the
//! helpers left and the page is told (`on_retire`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::helper::encode_job;
use crate::replicas::{Answer, Gathered, Helpers, Job};
use crate::web::spawn::read_floats;

/// How long a helper may take to start (fetching nothing: the module is sent compiled).
const START_MS: i32 = 30_000;

struct Slot {
    worker: web_sys::Worker,
    /// Resolves the promise of the message awaited from this worker (ready, or an answer).
    resolve: Rc<RefCell<Option<js_sys::Function>>>,
    /// Why it died, once it has.
    dead: Rc<RefCell<Option<String>>>,
}

impl Slot {
    /// A promise of the next message from this worker (or of `{error}` when it dies).
    fn next_message(&self) -> js_sys::Promise {
        let resolve = self.resolve.clone();
        let dead = self.dead.borrow().clone();
        js_sys::Promise::new(&mut |res, _| match &dead {
            Some(why) => {
                let _ = res.call1(&JsValue::NULL, &error_message(why));
            }
            None => *resolve.borrow_mut() = Some(res),
        })
    }

    /// Marks the worker dead and answers what waits on it.
    fn die(&self, why: &str) {
        self.dead.borrow_mut().get_or_insert_with(|| why.to_string());
        if let Some(res) = self.resolve.borrow_mut().take() {
            let _ = res.call1(&JsValue::NULL, &error_message(why));
        }
    }
}

fn error_message(why: &str) -> JsValue {
    let message = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&message, &"error".into(), &why.into());
    message.into()
}

fn error_of(message: &JsValue) -> Option<String> {
    js_sys::Reflect::get(message, &"error".into()).ok().and_then(|e| e.as_string())
        .or_else(|| js_sys::Reflect::get(message, &"bootError".into()).ok().and_then(|e| e.as_string()))
}

/// A started helper worker, its messages routed to its slot.
fn spawn() -> Result<Slot, String> {
    let worker = crate::web::spawn::module_worker()?;
    let resolve: Rc<RefCell<Option<js_sys::Function>>> = Rc::new(RefCell::new(None));
    let dead: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let on_message = {
        let resolve = resolve.clone();
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            match resolve.borrow_mut().take() {
                Some(res) => {
                    let _ = res.call1(&JsValue::NULL, &event.data());
                }
                None => log::warn!("a CPU helper's message nobody waited for"),
            }
        })
    };
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    let slot = Slot { worker, resolve, dead };
    let on_error = {
        let (resolve, dead) = (slot.resolve.clone(), slot.dead.clone());
        Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let text = js_sys::Reflect::get(&event, &"message".into()).ok().and_then(|m| m.as_string());
            let why = format!("its worker failed: {}", text.unwrap_or_else(|| "no reason given".into()));
            dead.borrow_mut().get_or_insert_with(|| why.clone());
            if let Some(res) = resolve.borrow_mut().take() {
                let _ = res.call1(&JsValue::NULL, &error_message(&why));
            }
        })
    };
    slot.worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();
    Ok(slot)
}

/// The engine's helper workers.
pub struct Pool {
    alive: RefCell<Vec<Slot>>,
    /// The answers awaited from the last `send`, in job order.
    pending: RefCell<Vec<js_sys::Promise>>,
    configured: RefCell<Option<String>>,
    /// Test hook: the step during which the first helper is killed, after its job was sent.
    kill_at: Cell<Option<usize>>,
    kill_now: Cell<bool>,
    /// Told why a helper was retired and how many are left.
    on_retire: Rc<dyn Fn(String, usize)>,
}

impl Pool {
    /// Starts `n` helpers and waits until each listens; those that do not within 30 s, or fail,
    /// are left out (their reasons returned).
    pub async fn start(n: usize, kill_at: Option<usize>, on_retire: Rc<dyn Fn(String, usize)>) -> (Pool, Vec<String>) {
        let mut failures = Vec::new();
        let mut starting = Vec::new();
        for _ in 0..n {
            match spawn().and_then(|slot| {
                let ready = slot.next_message();
                crate::web::spawn::boot(&slot.worker, "cifar10_helper_main")?;
                Ok((slot, ready))
            }) {
                Ok(s) => starting.push(s),
                Err(e) => failures.push(e),
            }
        }
        let mut alive = Vec::new();
        for (slot, ready) in starting {
            let timeout = js_sys::Promise::new(&mut |res, _| {
                if let Some(g) = crate::web::js::global("setTimeout").and_then(|f| f.dyn_into::<js_sys::Function>().ok()) {
                    let _ = g.call2(&JsValue::NULL, &res, &START_MS.into());
                }
            });
            let first = JsFuture::from(js_sys::Promise::race(&js_sys::Array::of2(&ready, &timeout))).await;
            let ok = first.as_ref().ok().and_then(|m| js_sys::Reflect::get(m, &"ready".into()).ok()).is_some_and(|r| r.is_truthy());
            if ok {
                alive.push(slot);
            } else {
                let why = first.ok().and_then(|m| error_of(&m)).unwrap_or_else(|| format!("it did not start within {} s", START_MS / 1000));
                slot.resolve.borrow_mut().take();
                slot.worker.terminate();
                failures.push(why);
            }
        }
        let pool = Pool {
            alive: RefCell::new(alive),
            pending: RefCell::new(Vec::new()),
            configured: RefCell::new(None),
            kill_at: Cell::new(kill_at),
            kill_now: Cell::new(false),
            on_retire,
        };
        (pool, failures)
    }

    /// Stops every helper (the engine leaves the CPU).
    pub fn stop(&self) {
        for slot in self.alive.borrow_mut().drain(..) {
            slot.die("stopped");
            slot.worker.terminate();
        }
    }
}

impl Helpers for Pool {
    fn count(&self) -> usize {
        self.alive.borrow().len()
    }

    fn send(&self, jobs: Vec<Job>) {
        let alive = self.alive.borrow();
        let mut pending = Vec::with_capacity(jobs.len());
        for (job, slot) in jobs.iter().zip(alive.iter()) {
            let answer = slot.next_message();
            let (message, transfer) = encode_job(job);
            if let Err(e) = slot.worker.post_message_with_transfer(&message, &transfer) {
                slot.die(&format!("a job could not be sent: {e:?}"));
            }
            pending.push(answer);
        }
        if self.kill_now.replace(false) {
            if let Some(slot) = alive.first() {
                log::warn!("test hook: killing a CPU helper while it holds its slice");
                slot.worker.terminate();
                slot.die("it was stopped by the test hook ?test_kill_cpu_worker");
            }
        }
        *self.pending.borrow_mut() = pending;
    }

    fn gather(&self) -> Gathered<'_> {
        Box::pin(async move {
            let pending = std::mem::take(&mut *self.pending.borrow_mut());
            let mut answers = Vec::with_capacity(pending.len());
            for promise in pending {
                let answer = match JsFuture::from(promise).await {
                    Ok(message) => match error_of(&message) {
                        Some(e) => Err(e),
                        None => js_sys::Reflect::get(&message, &"answer".into())
                            .ok()
                            .and_then(|a| a.as_string())
                            .ok_or_else(|| "an answer without its figures".to_string())
                            .and_then(|a| serde_json::from_str::<Answer>(&a).map_err(|e| e.to_string()))
                            .map(|mut a| {
                                a.flat = read_floats(&message, "flat");
                                a
                            }),
                    },
                    Err(e) => Err(format!("{e:?}")),
                };
                answers.push(answer);
            }
            // Retire the helpers that failed, last first so the indices hold.
            let failed: Vec<(usize, String)> =
                answers.iter().enumerate().filter_map(|(i, a)| a.as_ref().err().map(|e| (i, e.clone()))).collect();
            for (i, why) in failed.into_iter().rev() {
                let slot = self.alive.borrow_mut().remove(i);
                slot.die(&why);
                slot.worker.terminate();
                let left = self.count();
                (self.on_retire)(why, left);
            }
            answers
        })
    }

    fn at_step(&self, step: usize) {
        if self.kill_at.get() == Some(step) {
            self.kill_at.set(None);
            self.kill_now.set(true);
        }
    }

    fn configured(&self) -> Option<String> {
        self.configured.borrow().clone()
    }

    fn set_configured(&self, key: String) {
        *self.configured.borrow_mut() = Some(key);
    }
}
