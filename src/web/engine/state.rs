//! The engine's state and its one way out: the objects it holds (data, device, model, the
//! saved run, the CPU's helper pool), the run's phase and pause/stop switch, and the sink that
//! carries `Update`s to the page. Every other file of `engine/` reads and writes through here;
//! this one imports none of them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::prelude::*;
use wasm_bindgen::JsValue;

use super::device;
use super::gpu::GpuInfo;
use crate::augment::Normalization;
use crate::data::Cifar10;
use crate::model::ResNet9;
use crate::saved::SavedRun;
use crate::train::Control;
use crate::web::protocol::{Command, Phase, Place, StartOptions, Update};

/// Where updates go: posted to the page (worker) or applied to its signals (same thread).
pub type Sink = Rc<dyn Fn(Update, Vec<JsValue>)>;

/// Engine objects: large, and only ever touched on the engine's thread.
#[derive(Default)]
pub struct Engine {
    pub gpu: Option<GpuInfo>,
    /// Why the engine computes on the CPU (`device::cpu`), when it does; `gpu` is then `None`.
    pub cpu: Option<String>,
    /// The GPU self-test's outcome (`None` while it runs; `Err` when the device did not answer).
    pub selftest: Option<Result<crate::selftest::Report, String>>,
    pub data: Option<Rc<Cifar10>>,
    pub norm: Option<Normalization>,
    /// The latest consistent model on the GPU (epoch end, pause, stop or import).
    pub model: Option<ResNet9>,
    /// The run at its last completed epoch (weights, momentum, position), on the CPU: it
    /// survives a lost device, stays exportable and continues on a new one.
    pub saved: Option<SavedRun>,
    pub log: crate::metrics::RunLog,
    pub options: StartOptions,
    /// Whether the link left the convolutions to be timed (no `?conv=`).
    pub conv_auto: bool,
    /// Whether WebGPU's start-up has ended (with a device or an error).
    pub gpu_settled: bool,
    /// A GPU action clicked before the self-test ended: it runs once the self-test passes.
    pub waiting: Option<Command>,
    /// On the CPU: the helper workers that share each batch (`pool.rs`), when there are any.
    pub pool: Option<Rc<super::pool::Pool>>,
}

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::default());
    static CONTROL: Rc<Cell<Control>> = Rc::new(Cell::new(Control::Run));
    static PHASE: Cell<Phase> = const { Cell::new(Phase::Idle) };
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
    static DEVICE_LOST: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the engine (never hold this across an `.await`, nor while emitting).
pub fn with_engine<R>(f: impl FnOnce(&mut Engine) -> R) -> R {
    ENGINE.with(|e| f(&mut e.borrow_mut()))
}

/// The pause/stop switch read by the training loop between batches.
pub fn control() -> Rc<Cell<Control>> {
    CONTROL.with(|c| c.clone())
}

/// Where updates go from now on.
pub fn set_sink(sink: Sink) {
    SINK.with(|s| *s.borrow_mut() = Some(sink));
}

/// Reports an update with attachments (files, byte arrays).
pub fn emit_with(update: Update, attachments: Vec<JsValue>) {
    let sink = SINK.with(|s| s.borrow().clone());
    match sink {
        Some(sink) => sink(update, attachments),
        None => log::warn!("engine update with nowhere to go: {update:?}"),
    }
}

pub fn emit(update: Update) {
    emit_with(update, Vec::new());
}

pub fn say(place: Place, error: bool, text: impl Into<String>) {
    emit(Update::Message { place, message: Some((error, text.into())) });
}

pub fn set_phase(phase: Phase) {
    PHASE.with(|p| p.set(phase));
    emit(Update::Phase(phase));
}

pub fn phase() -> Phase {
    PHASE.with(|p| p.get())
}

/// Whether a run, the LR finder or the benchmark is using the GPU.
pub fn busy() -> bool {
    matches!(phase(), Phase::Running | Phase::Paused | Phase::FindingLr | Phase::Benchmarking)
}

/// Whether the device is lost (or failed) and not yet replaced.
pub fn device_lost() -> bool {
    DEVICE_LOST.with(|d| d.get())
}

pub fn set_device_lost(reason: Option<String>) {
    DEVICE_LOST.with(|d| d.set(reason.is_some()));
    emit(Update::DeviceLost(reason));
}

pub fn bytes(data: &[u8]) -> JsValue {
    js_sys::Uint8Array::from(data).into()
}

/// The device GPU actions use, with the storage-binding limit that bounds a buffer (none on
/// the CPU), or the message that says why there is none.
pub fn compute_device() -> Result<(Device, Option<u64>), &'static str> {
    with_engine(|e| {
        match (&e.gpu, &e.cpu) {
        (Some(g), _) => Ok((g.device.clone(), Some(g.max_storage_buffer_binding_size))),
        (None, Some(_)) => Ok((device::cpu(), None)),
        (None, None) => Err("WebGPU is not available and this link asks for the GPU only (?device=gpu): nothing can train (see the status above)."),
    }
    })
}
