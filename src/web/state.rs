//! The page's state: reactive signals for what is shown, and the engine objects (data, model)
//! that stay outside the reactive system.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use leptos::prelude::*;

use super::gpu::GpuInfo;
use super::loader::Progress;
use crate::augment::Normalization;
use crate::bench::StepBench;
use crate::data::Cifar10;
use crate::metrics::{BatchStats, EpochStats, Evaluation, RunLog};
use crate::model::ResNet9;
use crate::schedule::OneCycle;
use crate::train::Control;
use crate::saved::SavedRun;

/// Where the training run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    FindingLr,
    Benchmarking,
    Running,
    Paused,
    Stopped,
    Finished,
    Failed,
}

/// Engine objects, kept out of signals (large, not reactive).
#[derive(Default)]
pub struct Engine {
    pub gpu: Option<GpuInfo>,
    /// The GPU self-test's outcome (`None` while it runs; `Err` when the device did not answer).
    pub selftest: Option<Result<crate::selftest::Report, String>>,
    pub data: Option<Rc<Cifar10>>,
    pub norm: Option<Normalization>,
    /// The latest consistent model on the GPU (epoch end, pause, stop or import).
    pub model: Option<ResNet9>,
    /// The run at its last completed epoch (weights, momentum, position), on the CPU: it
    /// survives a lost device, stays exportable and continues on a new one.
    pub saved: Option<SavedRun>,
    pub log: RunLog,
    /// Convolution choices made this session, by `conv_choice_key` (also in localStorage,
    /// which a browser may refuse): the algorithm and the line that explains it.
    pub conv_choices: std::collections::HashMap<String, (crate::model::ConvAlgorithm, String)>,
}

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::default());
    static CONTROL: Rc<Cell<Control>> = Rc::new(Cell::new(Control::Run));
}

/// Runs `f` with the engine (never hold this across an `.await`).
pub fn with_engine<R>(f: impl FnOnce(&mut Engine) -> R) -> R {
    ENGINE.with(|e| f(&mut e.borrow_mut()))
}

/// The pause/stop switch shared with the training task.
pub fn control() -> Rc<Cell<Control>> {
    CONTROL.with(|c| c.clone())
}

/// The card a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Data,
    LrFinder,
    Train,
    Weights,
}

/// Every signal the page reads. `Copy`, so components take it by value.
#[derive(Clone, Copy)]
pub struct Ui {
    pub gpu: RwSignal<Option<Result<String, String>>>,
    /// The self-test line: passed, and what it says.
    pub selftest: RwSignal<Option<(bool, String)>>,
    /// Test-only: the self-test check whose GPU result is corrupted (`?selftest_fault=`).
    pub selftest_fault: RwSignal<Option<String>>,
    pub data_status: RwSignal<Option<String>>,
    pub data_error: RwSignal<Option<String>>,
    pub progress: RwSignal<Option<Progress>>,
    pub data_version: RwSignal<u32>,
    pub form: RwSignal<Vec<(String, String)>>,
    pub form_errors: RwSignal<Vec<(String, String)>>,
    pub data_url: RwSignal<String>,
    pub data_files: RwSignal<Vec<String>>,
    pub lr_steps: RwSignal<usize>,
    pub phase: RwSignal<Phase>,
    /// The Train card's message (training, benchmark).
    pub message: RwSignal<Option<(bool, String)>>,
    /// Messages shown in the other cards, next to the control the user acted on.
    pub data_message: RwSignal<Option<(bool, String)>>,
    pub lr_message: RwSignal<Option<(bool, String)>>,
    pub weights_message: RwSignal<Option<(bool, String)>>,
    pub schedule: RwSignal<Option<OneCycle>>,
    pub steps_per_epoch: RwSignal<usize>,
    pub total_epochs: RwSignal<usize>,
    /// Whether the run uses Lookahead (its decay is drawn on the schedule chart).
    pub lookahead: RwSignal<bool>,
    pub batches: RwSignal<Vec<BatchStats>>,
    pub epochs: RwSignal<Vec<EpochStats>>,
    pub evaluation: RwSignal<Option<Evaluation>>,
    pub lr_points: RwSignal<Vec<(f64, f32)>>,
    pub lr_suggestion: RwSignal<Option<f64>>,
    pub exportable: RwSignal<bool>,
    pub predict: RwSignal<Option<Result<String, String>>>,
    /// The last step benchmark, or why it failed.
    pub bench: RwSignal<Option<Result<StepBench, String>>>,
    /// Timed steps of the benchmark (`?bench_steps=`).
    pub bench_steps: RwSignal<usize>,
    /// Whether the convolution algorithm is timed on this GPU (`?conv=auto` or no `conv`) rather
    /// than set by the link.
    pub conv_auto: RwSignal<bool>,
    /// How the convolutions are computed and why (`data-testid="conv-choice"`).
    pub conv_choice: RwSignal<String>,
    /// Why the GPU device was lost, while it is (offers "Continue on a new device").
    pub device_lost: RwSignal<Option<String>>,
    /// Test-only (`?test_lose_device=N`): destroy the device during epoch N of the next run.
    pub lose_device_in_epoch: RwSignal<Option<usize>>,
    /// Test-only (`?test_gpu_error=N`): provoke an uncaptured GPU error during epoch N.
    pub gpu_error_in_epoch: RwSignal<Option<usize>>,
}

impl Ui {
    pub fn new() -> Self {
        Self {
            gpu: RwSignal::new(None),
            selftest: RwSignal::new(None),
            selftest_fault: RwSignal::new(None),
            data_status: RwSignal::new(None),
            data_error: RwSignal::new(None),
            progress: RwSignal::new(None),
            data_version: RwSignal::new(0),
            form: RwSignal::new(Vec::new()),
            form_errors: RwSignal::new(Vec::new()),
            data_url: RwSignal::new("data/cifar-10-batches-bin/".into()),
            data_files: RwSignal::new(super::loader::official_files()),
            lr_steps: RwSignal::new(200),
            phase: RwSignal::new(Phase::Idle),
            message: RwSignal::new(None),
            data_message: RwSignal::new(None),
            lr_message: RwSignal::new(None),
            weights_message: RwSignal::new(None),
            schedule: RwSignal::new(None),
            steps_per_epoch: RwSignal::new(0),
            total_epochs: RwSignal::new(0),
            lookahead: RwSignal::new(false),
            batches: RwSignal::new(Vec::new()),
            epochs: RwSignal::new(Vec::new()),
            evaluation: RwSignal::new(None),
            lr_points: RwSignal::new(Vec::new()),
            lr_suggestion: RwSignal::new(None),
            exportable: RwSignal::new(false),
            predict: RwSignal::new(None),
            bench: RwSignal::new(None),
            bench_steps: RwSignal::new(20),
            conv_auto: RwSignal::new(true),
            conv_choice: RwSignal::new("Convolutions: the fastest on this GPU, timed when you train or benchmark".into()),
            device_lost: RwSignal::new(None),
            lose_device_in_epoch: RwSignal::new(None),
            gpu_error_in_epoch: RwSignal::new(None),
        }
    }

    /// Whether a run, the LR finder or the benchmark is using the GPU.
    pub fn busy(&self) -> bool {
        matches!(self.phase.get(), Phase::Running | Phase::Paused | Phase::FindingLr | Phase::Benchmarking)
    }

    /// Shows an error (`true`) or information line in the Train card.
    pub fn say(&self, error: bool, text: impl Into<String>) {
        self.say_in(Place::Train, error, text);
    }

    /// Shows an error (`true`) or information line in the card of `place`, where the user
    /// acted, not in a card that may be off screen.
    pub fn say_in(&self, place: Place, error: bool, text: impl Into<String>) {
        let signal = match place {
            Place::Data => self.data_message,
            Place::LrFinder => self.lr_message,
            Place::Train => self.message,
            Place::Weights => self.weights_message,
        };
        signal.set(Some((error, text.into())));
    }
}

impl Default for Ui {
    fn default() -> Self {
        Self::new()
    }
}
